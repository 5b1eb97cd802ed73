//! `free-storm`: every core allocates thousands of blocks and hands them to the next
//! core, which frees them; the frees travel home by message. Afterwards every core's
//! bytes in use must return to what it was before.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use crate::app::{on_every_core, App, AppError};
use percore::println;

pub(crate) const APP: App = App {
    name: "free-storm",
    summary: "cross-core frees; every core's heap returns to its baseline",
    main,
};

const BLOCKS_PER_CORE: usize = 3000;

fn bytes_in_use() -> usize {
    percore::global::heap_stats().bytes_in_use
}

/// Returns every core's bytes in use. The other cores measure in threads of their own
/// (those threads' memory is theirs and comes and goes the same way every time); core
/// 0 measures last, after a pause in which the others hand home what they freed of its
/// memory while measuring (the boxed jobs and join packets come from core 0).
fn measure() -> Result<[usize; percore::MAX_CORES], AppError> {
    let mut all = [0; percore::MAX_CORES];
    let others: Vec<_> = (1..percore::core_count())
        .map(|core| percore::spawn_on(core, bytes_in_use))
        .collect();
    for (core, handle) in (1..).zip(others) {
        all[core] = crate::app::join(handle)?;
    }
    percore::sleep(Duration::from_millis(20));
    all[0] = bytes_in_use();
    Ok(all)
}

fn storm(core: usize) -> usize {
    let blocks: Vec<Box<[u8]>> = (0..BLOCKS_PER_CORE)
        .map(|i| vec![i as u8; 16 + (i * 37 + core) % 3000].into_boxed_slice())
        .collect();
    let next = (core + 1) % percore::core_count();
    percore::spawn_on(next, move || {
        let freed = blocks.len();
        let intact = blocks
            .iter()
            .enumerate()
            .all(|(i, block)| block.iter().all(|&b| b == i as u8));
        drop(blocks);
        if intact {
            freed
        } else {
            0
        }
    })
    .join()
    // Counted as lost: the check below fails.
    .unwrap_or(0)
}

fn main() -> Result<(), AppError> {
    let cores = percore::core_count();
    let baseline = measure()?;
    let handles: Vec<_> = (0..cores)
        .map(|core| percore::spawn_on(core, move || storm(core)))
        .collect();
    let freed = handles
        .into_iter()
        .map(crate::app::join)
        .sum::<Result<usize, AppError>>()?;
    if freed != cores * BLOCKS_PER_CORE {
        return Err(AppError(
            "blocks were lost or corrupted on their way to another core",
        ));
    }
    // Frees in flight land once the cores go idle; wait for them (bounded).
    let mut now = measure()?;
    for _ in 0..300 {
        if now == baseline {
            break;
        }
        percore::sleep(Duration::from_millis(10));
        now = measure()?;
    }
    let stats = on_every_core(percore::global::heap_stats)?;
    for (core, stats) in stats.iter().enumerate() {
        println!(
            "free-storm: core {core}: {} bytes in use (baseline {}), remote frees sent {} received {}",
            now[core], baseline[core], stats.remote_frees_sent, stats.remote_frees_received
        );
    }
    if now != baseline {
        return Err(AppError(
            "a core's bytes in use did not return to its baseline",
        ));
    }
    println!("free-storm: {freed} blocks freed across cores; every heap back to its baseline");
    Ok(())
}
