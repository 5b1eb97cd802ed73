//! `blk-bench`: what an application core gets from the blk service on `disk0`:
//! sequential reads in 64 KiB requests, and 4 KiB random reads with one request in
//! flight and with 32. Results are lines `blk-bench: NAME VALUE UNIT`.

use alloc::vec;
use alloc::vec::Vec;

use devices::disk::Disk;
use manada::{App, AppError};
use percore::random::XorShift64;
use percore::{println, Instant};

pub(crate) const APP: App = App {
    name: "blk-bench",
    summary: "sequential MB/s and random 4 KiB IOPS at queue depth 1 and 32 on disk0",
    main,
};

const SEQUENTIAL_REQUEST: usize = 64 * 1024;
const RANDOM_REQUEST: usize = 4096;
const RANDOM_READS: u64 = 4096;
const DEPTH: u64 = 32;

fn random_reads(disk: Disk, count: u64, seed: u64) -> Result<(), AppError> {
    let blocks = disk.capacity() / (RANDOM_REQUEST / 512) as u64;
    // Seeded: the same offsets every run.
    let mut random = XorShift64::new(seed);
    let mut buffer = vec![0u8; RANDOM_REQUEST];
    for _ in 0..count {
        let block = random.below(blocks);
        disk.read(block * (RANDOM_REQUEST / 512) as u64, &mut buffer)
            .map_err(|_| AppError("a random read failed"))?;
    }
    Ok(())
}

fn main() -> Result<(), AppError> {
    let disk = Disk::open("disk0").ok_or(AppError("no disk0 (attach one with --disk)"))?;
    let bytes = disk.capacity() * 512;
    let mut buffer = vec![0u8; SEQUENTIAL_REQUEST];
    let start = Instant::now();
    let mut sector = 0;
    while (sector + (SEQUENTIAL_REQUEST / 512) as u64) * 512 <= bytes {
        disk.read(sector, &mut buffer)
            .map_err(|_| AppError("a sequential read failed"))?;
        sector += (SEQUENTIAL_REQUEST / 512) as u64;
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "blk-bench: seq_read_64k {:.1} MB/s",
        (sector * 512) as f64 / seconds / 1e6
    );

    let start = Instant::now();
    random_reads(disk, RANDOM_READS, 0x9E37_79B9)?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "blk-bench: rand_read_4k_qd1 {:.0} IOPS",
        RANDOM_READS as f64 / seconds
    );

    let start = Instant::now();
    let readers: Vec<_> = (0..DEPTH)
        .map(|reader| {
            percore::spawn(move || random_reads(disk, RANDOM_READS / DEPTH, 0x1234_5678 + reader))
        })
        .collect();
    for reader in readers {
        manada::join(reader)??;
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "blk-bench: rand_read_4k_qd32 {:.0} IOPS",
        RANDOM_READS as f64 / seconds
    );
    Ok(())
}
