//! `blk-test`: the blk service end to end. Every core reads a share of `disk0` at once
//! and checks the pattern the test wrote into the image; then a pattern is written,
//! read back and flushed (the host checks it after the run); a read-only `disk1`
//! refuses writes (`readonly=DISK`, default disk1; `readonly=none` skips it, said on the
//! console); requests past the end are refused.
//!
//! The image pattern: byte `i` of sector `s` is `(s * 7 + i) mod 256`. The guest writes
//! `(s * 13 + i + 1) mod 256` into sectors `WRITE_START..WRITE_START + WRITE_SECTORS`.

use alloc::vec;
use alloc::vec::Vec;

use crate::app::{App, AppError};
use devices::blk::{BlkError, Disk};
use percore::println;

pub(crate) const APP: App = App {
    name: "blk-test",
    summary: "reads, writes, flushes and refusals through the blk service",
    main,
};

const SECTOR: usize = 512;
/// Sectors per read request: 64 KiB.
const CHUNK: u64 = 128;
/// Where the guest writes its own pattern (the host checks it after the run).
pub const WRITE_START: u64 = 1024;
pub const WRITE_SECTORS: u64 = 64;

fn image_byte(sector: u64, index: usize) -> u8 {
    (sector.wrapping_mul(7) as usize + index) as u8
}

fn guest_byte(sector: u64, index: usize) -> u8 {
    (sector.wrapping_mul(13) as usize + index + 1) as u8
}

fn open(name: &str) -> Result<Disk, AppError> {
    Disk::open(name).ok_or(AppError("no such disk (attach one with --disk)"))
}

/// Reads this core's share of disk0 and counts the sectors that differ from the image
/// pattern (the guest-written area is skipped).
fn check_share() -> Result<u64, BlkError> {
    let disk = Disk::open("disk0").expect("disk0 checked by main");
    let cores = percore::core_count() as u64;
    let me = percore::current_core() as u64;
    let chunks = disk.capacity() / CHUNK;
    let mut wrong = 0;
    let mut buffer = vec![0u8; CHUNK as usize * SECTOR];
    for chunk in (0..chunks).filter(|chunk| chunk % cores == me) {
        let first = chunk * CHUNK;
        disk.read(first, &mut buffer)?;
        for (offset, sector) in (first..first + CHUNK).enumerate() {
            if (WRITE_START..WRITE_START + WRITE_SECTORS).contains(&sector) {
                continue;
            }
            let bytes = &buffer[offset * SECTOR..(offset + 1) * SECTOR];
            if bytes
                .iter()
                .enumerate()
                .any(|(i, &b)| b != image_byte(sector, i))
            {
                wrong += 1;
            }
        }
    }
    Ok(wrong)
}

fn main() -> Result<(), AppError> {
    let disk = open("disk0")?;
    let info = disk.info();
    if info.sectors < WRITE_START + WRITE_SECTORS {
        return Err(AppError("disk0 is too small for the test"));
    }
    let results = crate::app::on_every_core(check_share)?;
    let mut wrong = 0;
    for result in results {
        wrong += result.map_err(|_| AppError("a read of disk0 failed"))?;
    }
    if wrong != 0 {
        println!("blk-test: {wrong} sectors of disk0 differ from the image");
        return Err(AppError("disk0 does not read back as the image"));
    }
    println!(
        "blk-test: read {} sectors of {} from {} cores at once: pattern ok",
        info.sectors,
        info.name,
        percore::core_count()
    );

    let data: Vec<u8> = (WRITE_START..WRITE_START + WRITE_SECTORS)
        .flat_map(|sector| (0..SECTOR).map(move |i| guest_byte(sector, i)))
        .collect();
    disk.write(WRITE_START, &data)
        .map_err(|_| AppError("the write to disk0 failed"))?;
    let mut back = vec![0u8; data.len()];
    disk.read(WRITE_START, &mut back)
        .map_err(|_| AppError("reading back failed"))?;
    if back != data {
        return Err(AppError("disk0 did not read back what was written"));
    }
    match disk.flush() {
        Ok(()) | Err(BlkError::Unsupported) => {}
        Err(_) => return Err(AppError("flush failed")),
    }
    println!("blk-test: wrote, read back and flushed {WRITE_SECTORS} sectors at {WRITE_START}");

    let mut one = vec![0u8; SECTOR];
    match disk.read(info.sectors, &mut one) {
        Err(BlkError::OutOfRange) => println!("blk-test: a read past the end was refused"),
        _ => return Err(AppError("a read past the end was not refused")),
    }
    if let Ok(id) = disk.id() {
        let end = id.iter().position(|&b| b == 0).unwrap_or(id.len());
        println!(
            "blk-test: disk0 id '{}'",
            core::str::from_utf8(&id[..end]).unwrap_or("?")
        );
    }

    // The read-only disk is checked unless the command line says `readonly=none`: a
    // missing disk is a failure, never a check silently skipped.
    let readonly_name = percore::boot_info()
        .command_line()
        .get("readonly")
        .unwrap_or("disk1");
    if readonly_name == "none" {
        println!("blk-test: no read-only disk checked (readonly=none)");
    } else {
        let Some(readonly) = Disk::open(readonly_name) else {
            println!(
                "blk-test: no disk '{readonly_name}' to check read-only (attach one with --disk PATH,ro, or pass --kernel-arg readonly=none)"
            );
            return Err(AppError("the read-only disk is missing"));
        };
        if !readonly.info().read_only {
            return Err(AppError("the read-only disk accepts writes"));
        }
        readonly
            .read(0, &mut one)
            .map_err(|_| AppError("reading the read-only disk failed"))?;
        match readonly.write(0, &one) {
            Err(BlkError::ReadOnly) => {
                println!("blk-test: {readonly_name} is read-only and refused a write")
            }
            _ => return Err(AppError("a write to the read-only disk was not refused")),
        }
    }
    println!("blk-test: all checks passed");
    Ok(())
}
