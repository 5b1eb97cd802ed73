//! `percore-bench`: what a core's own kernel costs: allocation rate on every core at
//! once, spawn + join, a yield between two threads, and frees that travel home.
//!
//! Results are lines `percore-bench: NAME VALUE UNIT` that `cargo xtask bench percore`
//! collects; `ops=N` sets the allocation pairs per core (default 2,000,000).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use manada::{on_every_core, App, AppError};
use percore::{println, Instant};

pub(crate) const APP: App = App {
    name: "percore-bench",
    summary: "allocation rate per core, spawn+join, yield and remote-free costs",
    main,
};

const DEFAULT_OPS: u64 = 2_000_000;
const BATCH: usize = 64;
const ROUNDS: u64 = 10_000;

/// Returns `ops=N` from the command line, or the default.
fn ops() -> Result<u64, AppError> {
    Ok(percore::boot_info()
        .command_line()
        .number("ops")
        .map_err(|_| AppError("ops=N takes a number"))?
        .unwrap_or(DEFAULT_OPS))
}

fn cycles_per(start: Instant, count: u64) -> u64 {
    (Instant::now().ticks() - start.ticks()) / count.max(1)
}

/// Allocates and frees `ops=N` blocks of 16..=1024 bytes, 64 live at a time; returns
/// allocation+free pairs per second on this core.
fn allocation_rate() -> u64 {
    // `main` refused a malformed value before any core got here.
    let pairs = ops().unwrap_or(DEFAULT_OPS);
    let sizes: [usize; BATCH] = core::array::from_fn(|i| 16 + (i * 53) % 1009);
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let start = Instant::now();
    let mut done = 0;
    while done < pairs {
        // `with_capacity` allocates without touching the bytes: the allocator alone.
        blocks.extend(sizes.iter().map(|&size| Vec::with_capacity(size)));
        while let Some(block) = blocks.pop() {
            drop(block);
        }
        done += BATCH as u64;
    }
    let nanos = start.elapsed().as_nanos().max(1);
    (u128::from(done) * 1_000_000_000 / nanos) as u64
}

fn main() -> Result<(), AppError> {
    let cores = percore::core_count();
    ops()?;
    for (core, rate) in on_every_core(allocation_rate)?.into_iter().enumerate() {
        println!("percore-bench: alloc_pairs_per_s core={core} {rate} pairs/s");
    }

    let start = Instant::now();
    for i in 0..ROUNDS {
        manada::join(percore::spawn(move || i))?;
    }
    println!(
        "percore-bench: spawn_join_local {} cycles",
        cycles_per(start, ROUNDS)
    );
    if cores > 1 {
        let start = Instant::now();
        for i in 0..ROUNDS / 10 {
            manada::join(percore::spawn_on(1, move || i))?;
        }
        println!(
            "percore-bench: spawn_join_remote {} cycles",
            cycles_per(start, ROUNDS / 10)
        );
    }

    let partner = percore::spawn(|| {
        for _ in 0..ROUNDS {
            percore::yield_now();
        }
    });
    let start = Instant::now();
    for _ in 0..ROUNDS {
        percore::yield_now();
    }
    let per_yield = cycles_per(start, ROUNDS);
    manada::join(partner)?;
    println!("percore-bench: yield {per_yield} cycles");

    if cores > 1 {
        let blocks_count = 200_000usize;
        let blocks: Vec<Box<[u8; 32]>> = (0..blocks_count).map(|_| Box::new([7; 32])).collect();
        let before = percore::global::heap_stats().remote_frees_received;
        let start = Instant::now();
        manada::join(percore::spawn_on(1, move || drop(blocks)))?;
        // The Vec's buffer and every box come home: wait until they all did.
        let mut waited = 0;
        while percore::global::heap_stats().remote_frees_received - before < blocks_count as u64 + 1
        {
            percore::sleep(Duration::from_micros(100));
            waited += 1;
            if waited > 100_000 {
                return Err(AppError("remote frees did not all come home"));
            }
        }
        let nanos = start.elapsed().as_nanos().max(1);
        let rate = (blocks_count as u128 * 1_000_000_000 / nanos) as u64;
        println!("percore-bench: remote_free_blocks_per_s {rate} blocks/s");
    }
    Ok(())
}
