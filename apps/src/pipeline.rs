//! `pipeline`, a worked example of the guide (apps/README.md): three stages on three
//! cores, passing batches through bounded channels.
//!
//! The source deals the numbers `1..=count=N` (default 100,000) in batches; the middle
//! stage computes each number's Collatz chain length; the sink keeps the longest chain
//! and the total. A batch is a `Vec` that moves from stage to stage: its ownership goes
//! with the message, nothing is copied. The channels hold a few batches each, so a fast
//! stage waits for a slow one instead of filling memory. `main` checks the sink's result
//! against the same computation on one core. Run it with
//! `cargo xtask run --app pipeline --cores 4 --net none`.

use alloc::vec::Vec;

use manada::{channel, println, App, AppError, Instant, Receiver, Sender};

pub(crate) const APP: App = App {
    name: "pipeline",
    summary: "three stages on three cores pass batches through bounded channels",
    main,
};

const DEFAULT_COUNT: u64 = 100_000;
/// Numbers per batch: one message per batch, not per number.
const BATCH: usize = 256;
/// Batches a channel holds before its sender waits.
const IN_FLIGHT: usize = 4;

/// What the sink found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Summary {
    /// The number whose chain is the longest (the smallest such), and the chain's steps.
    longest: (u64, u32),
    /// The steps of every chain, added up.
    total_steps: u64,
    /// How many numbers reached the sink.
    numbers: u64,
}

fn main() -> Result<(), AppError> {
    let count = match manada::command_line().get("count").map(str::parse::<u64>) {
        None => DEFAULT_COUNT,
        Some(Ok(count)) if count > 0 => count,
        Some(_) => return Err(AppError("count=N takes a number above 0")),
    };
    // One stage per application core while there are enough; with fewer, stages share
    // cores (cooperative threads interleave at every send and receive).
    let cores = manada::app_cores();
    let [source_core, middle_core, sink_core] = [0, 1, 2].map(|stage| cores[stage % cores.len()]);
    println!("pipeline: source on core {source_core}, chains on core {middle_core}, sink on core {sink_core}");

    let started = Instant::now();
    // Each channel is made for the core its receiver will run on.
    let (to_middle, middle_inbox) = channel::<Vec<u64>>(middle_core, IN_FLIGHT);
    let (to_sink, sink_inbox) = channel::<Vec<(u64, u32)>>(sink_core, IN_FLIGHT);
    let sink = manada::spawn_on(sink_core, move || sink_stage(sink_inbox));
    let middle = manada::spawn_on(middle_core, move || middle_stage(middle_inbox, to_sink));
    let source = manada::spawn_on(source_core, move || source_stage(count, to_middle));
    // A stage that gave no result (it faulted, or its core failed) fails the run.
    manada::join(source)?;
    manada::join(middle)?;
    let summary = manada::join(sink)?;
    let elapsed = started.elapsed();

    let (number, steps) = summary.longest;
    println!(
        "pipeline: {} numbers, longest chain below {} starts at {number} ({steps} steps), {} steps in all, {} ms",
        summary.numbers,
        count + 1,
        summary.total_steps,
        elapsed.as_millis()
    );
    if summary == one_core(count) {
        Ok(())
    } else {
        Err(AppError("the pipeline's result differs from one core's"))
    }
}

/// Sends `1..=count` in batches; dropping the sender at the end tells the next stage.
fn source_stage(count: u64, output: Sender<Vec<u64>>) {
    let mut batch = Vec::with_capacity(BATCH);
    for number in 1..=count {
        batch.push(number);
        if batch.len() == BATCH {
            let full = core::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if output.send(full).is_err() {
                return; // The next stage is gone: nobody wants the rest.
            }
        }
    }
    if !batch.is_empty() {
        let _ = output.send(batch);
    }
}

/// Turns every batch of numbers into a batch of (number, chain steps).
fn middle_stage(input: Receiver<Vec<u64>>, output: Sender<Vec<(u64, u32)>>) {
    while let Ok(numbers) = input.recv() {
        let chains = numbers
            .into_iter()
            .map(|number| (number, collatz_steps(number)))
            .collect();
        if output.send(chains).is_err() {
            return;
        }
    }
}

/// Folds every batch into the summary, until the middle stage is done.
fn sink_stage(input: Receiver<Vec<(u64, u32)>>) -> Summary {
    let mut summary = Summary::default();
    while let Ok(chains) = input.recv() {
        for (number, steps) in chains {
            summary.add(number, steps);
        }
    }
    summary
}

impl Summary {
    fn add(&mut self, number: u64, steps: u32) {
        let (best, best_steps) = self.longest;
        if steps > best_steps || (steps == best_steps && (number < best || best == 0)) {
            self.longest = (number, steps);
        }
        self.total_steps += u64::from(steps);
        self.numbers += 1;
    }
}

/// Returns the summary computed on this core alone, to check the pipeline's.
fn one_core(count: u64) -> Summary {
    let mut summary = Summary::default();
    for number in 1..=count {
        summary.add(number, collatz_steps(number));
        if number % 4_096 == 0 {
            manada::yield_now();
        }
    }
    summary
}

/// Returns the steps from `number` down to 1, halving even numbers and taking odd ones
/// to `3n + 1`.
fn collatz_steps(number: u64) -> u32 {
    let mut value = number;
    let mut steps = 0;
    while value > 1 {
        value = if value.is_multiple_of(2) {
            value / 2
        } else {
            3 * value + 1
        };
        steps += 1;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_match_known_values() {
        assert_eq!(collatz_steps(1), 0);
        assert_eq!(collatz_steps(6), 8);
        assert_eq!(collatz_steps(27), 111);
        // The longest chain below 100,000 starts at 77,031 (350 steps).
        assert_eq!(one_core(99_999).longest, (77_031, 350));
    }

    #[test]
    fn the_app_runs_on_a_host_machine() {
        assert_eq!(percore::host::run(crate::HOST_CORES, main), Ok(()));
    }
}
