//! `primes`, a worked example of the guide (apps/README.md): split a computation over
//! every application core, gather the parts, and check them.
//!
//! It counts the primes below `limit=N` (default 1,000,000) twice: once on core 0 alone,
//! then in blocks dealt round-robin to a thread on every application core, and compares
//! the two counts and times. Run it with `cargo xtask run --app primes --cores 4 --net none`.

use alloc::vec::Vec;
use core::ops::Range;

use manada::{println, App, AppError, Instant, JoinHandle};

pub(crate) const APP: App = App {
    name: "primes",
    summary: "counts primes on every application core and checks the count against one core",
    main,
};

const DEFAULT_LIMIT: u64 = 1_000_000;
/// Numbers per block. Blocks are dealt round-robin, not in one range per core: testing a
/// large number costs more than a small one, so each core gets a share of both.
const BLOCK: u64 = 10_000;

fn main() -> Result<(), AppError> {
    let limit = match manada::command_line().get("limit").map(str::parse::<u64>) {
        None => DEFAULT_LIMIT,
        Some(Ok(limit)) => limit,
        Some(Err(_)) => return Err(AppError("limit=N takes a number")),
    };
    let cores = manada::app_cores();

    let started = Instant::now();
    let alone = count_primes(0..limit);
    let one_core = started.elapsed();

    let started = Instant::now();
    // One thread per application core, each with its own list of blocks; the blocks
    // move into the thread (the closure owns them), the counts come back through join.
    let workers: Vec<JoinHandle<u64>> = cores
        .iter()
        .enumerate()
        .map(|(rank, &core)| {
            let blocks = deal_blocks(limit, rank, cores.len());
            manada::spawn_on(core, move || blocks.into_iter().map(count_primes).sum())
        })
        .collect();
    let mut together = 0;
    for worker in workers {
        together += manada::join(worker)?;
    }
    let all_cores = started.elapsed();

    println!(
        "primes: {together} primes below {limit} on cores {cores:?} in {} ms; one core: {alone} in {} ms ({}.{:02}x)",
        all_cores.as_millis(),
        one_core.as_millis(),
        speedup_hundredths(one_core.as_micros(), all_cores.as_micros()) / 100,
        speedup_hundredths(one_core.as_micros(), all_cores.as_micros()) % 100,
    );
    if together == alone {
        Ok(())
    } else {
        Err(AppError(
            "the cores' counts do not add up to the one-core count",
        ))
    }
}

/// Returns the blocks of `0..limit` that worker `rank` of `workers` counts: blocks
/// `rank`, `rank + workers`, `rank + 2 * workers`, ...
fn deal_blocks(limit: u64, rank: usize, workers: usize) -> Vec<Range<u64>> {
    (0..limit.div_ceil(BLOCK))
        .skip(rank)
        .step_by(workers)
        .map(|block| block * BLOCK..((block + 1) * BLOCK).min(limit))
        .collect()
}

/// Returns how many primes `numbers` holds.
///
/// A thread is never interrupted: it keeps its core until it yields or blocks. This
/// one yields after every thousand numbers so that the other threads of its core (a
/// device service, another application thread) are never held up for long.
fn count_primes(numbers: Range<u64>) -> u64 {
    let mut count = 0;
    for (index, number) in numbers.enumerate() {
        if index % 1_000 == 999 {
            manada::yield_now();
        }
        count += u64::from(is_prime(number));
    }
    count
}

/// Returns whether `number` is prime (trial division by 2 and the odd numbers up to its
/// square root).
fn is_prime(number: u64) -> bool {
    if number < 4 {
        return number >= 2;
    }
    if number.is_multiple_of(2) {
        return false;
    }
    let mut divisor = 3;
    while divisor * divisor <= number {
        if number.is_multiple_of(divisor) {
            return false;
        }
        divisor += 2;
    }
    true
}

/// Returns `before / after` in hundredths (0 when `after` is 0).
fn speedup_hundredths(before: u128, after: u128) -> u128 {
    (before * 100).checked_div(after).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_known_values() {
        assert_eq!(count_primes(0..100), 25);
        assert_eq!(count_primes(0..10_000), 1_229);
        assert!(!is_prime(1) && is_prime(2) && is_prime(3) && !is_prime(9) && !is_prime(25));
        assert!(is_prime(999_983) && !is_prime(999_981));
    }

    #[test]
    fn the_blocks_cover_every_number_once() {
        let limit = 123_456;
        let mut covered: Vec<Range<u64>> = (0..3)
            .flat_map(|rank| deal_blocks(limit, rank, 3))
            .collect();
        covered.sort_by_key(|block| block.start);
        let mut next = 0;
        for block in covered {
            assert_eq!(block.start, next);
            next = block.end;
        }
        assert_eq!(next, limit);
        assert!(
            deal_blocks(5, 1, 3).is_empty(),
            "one block, and it is rank 0's"
        );
    }

    #[test]
    fn the_app_runs_on_a_host_machine() {
        assert_eq!(percore::host::run(crate::HOST_CORES, main), Ok(()));
    }
}
