//! `threads`: 1,000 threads spread over all cores, some yielding, some sleeping, some
//! joining threads on other cores; every result is checked.

use alloc::vec::Vec;
use core::time::Duration;

use crate::app::{App, AppError};
use percore::{println, Instant};

pub(crate) const APP: App = App {
    name: "threads",
    summary: "1,000 threads over all cores, joined from core 0 with checked results",
    main,
};

const THREADS: u64 = 1000;

/// The work of thread `i`: a little arithmetic, with yields in between.
fn work(i: u64) -> u64 {
    let mut value = i;
    for step in 0..64 {
        value = value.wrapping_mul(6364136223846793005).wrapping_add(step);
        if step % 16 == 0 {
            percore::yield_now();
        }
    }
    value
}

fn expected(i: u64) -> u64 {
    let mut value = i;
    for step in 0..64 {
        value = value.wrapping_mul(6364136223846793005).wrapping_add(step);
    }
    value
}

fn main() -> Result<(), AppError> {
    let cores = percore::core_count();
    let started = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let core = i as usize % cores;
            percore::spawn_on(core, move || {
                if i % 100 == 0 {
                    percore::sleep(Duration::from_millis(2));
                }
                if i % 250 == 1 {
                    // A thread that itself waits for a thread on the next core.
                    let next = (percore::current_core() + 1) % percore::core_count();
                    let inner = percore::spawn_on(next, move || (percore::current_core(), work(i)));
                    // A wrong core (none here) fails the check below.
                    let (ran_on, value) = inner.join().unwrap_or((usize::MAX, 0));
                    return (
                        percore::current_core(),
                        if ran_on == next { value } else { 0 },
                    );
                }
                (percore::current_core(), work(i))
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let placed = handle.core();
        let (ran_on, value) = crate::app::join(handle)?;
        if ran_on != placed || ran_on != i % cores {
            return Err(AppError(
                "a thread ran on another core than the one it was placed on",
            ));
        }
        if value != expected(i as u64) {
            return Err(AppError("a thread returned a wrong result"));
        }
    }
    println!(
        "threads: {THREADS} threads on {cores} cores joined with correct results ({} ms)",
        started.elapsed().as_millis()
    );
    Ok(())
}
