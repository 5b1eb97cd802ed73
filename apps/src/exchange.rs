//! `ipc`: every core sends a numbered, checksummed stream to every other core at once,
//! and checks what it receives: nothing lost, duplicated, reordered or corrupted.
//!
//! `messages=M` on the kernel command line sets the messages per ordered pair
//! (default 100,000). At the end every core reports to core 0 and halts until core 0
//! answers, which exercises the idle doorbell and the wake-up interrupt.

use crate::app::{on_every_core, App, AppError};
use ipc::message::{bytes_from_words, words_from_bytes};
use ipc::{Kind, Message};
use percore::{println, Instant, MAX_CORES};

pub(crate) const APP: App = App {
    name: "ipc",
    summary: "all-to-all message exchange with sequence numbers and checksums",
    main,
};

fn main() -> Result<(), AppError> {
    on_every_core(run)?.into_iter().collect()
}

const DEFAULT_MESSAGES: u64 = 100_000;
const DATA: Kind = Kind::new(0x100);
const FINISHED: Kind = Kind::new(0x101);
const ALL_FINISHED: Kind = Kind::new(0x102);
/// Messages sent to one destination before moving on to the next.
const SEND_BATCH: u64 = 16;

/// Returns the six payload words of message `sequence` from `source` to `destination`.
fn payload(source: usize, destination: usize, sequence: u64) -> [u64; 6] {
    let mut state = sequence ^ (source as u64) << 48 ^ (destination as u64) << 56;
    let mut words = [sequence, 0, 0, 0, 0, 0];
    for word in &mut words[1..] {
        // splitmix64: every word depends on the pair and the sequence number.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        *word = z ^ (z >> 31);
    }
    words
}

fn run() -> Result<(), AppError> {
    let me = percore::current_core();
    let cores = percore::core_count();
    let per_pair = percore::boot_info()
        .command_line()
        .get("messages")
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(DEFAULT_MESSAGES);
    let mut sent = [0u64; MAX_CORES];
    let mut received = [0u64; MAX_CORES];
    let mut error: Option<AppError> = None;
    // Core 0 counts the cores that finished; a fast core may report during the exchange.
    let mut reported = 1;
    let started = Instant::now();

    percore::with_mailbox(|mailbox| {
        let pending =
            |counts: &[u64; MAX_CORES]| (0..cores).any(|c| c != me && counts[c] < per_pair);
        while pending(&sent) || pending(&received) {
            for to in (0..cores).filter(|&to| to != me) {
                let before = sent[to];
                while sent[to] < per_pair && sent[to] - before < SEND_BATCH {
                    let words = payload(me, to, sent[to]);
                    let message = Message::new(DATA, me as u16, bytes_from_words(&words));
                    if mailbox.try_send(to, message).is_err() {
                        break; // Full: receive for a while, then try again.
                    }
                    sent[to] += 1;
                }
                if sent[to] != before {
                    mailbox.notify(to);
                }
            }
            mailbox.poll(|source, message| {
                let header = message.header();
                if header.kind() == FINISHED && me == 0 {
                    reported += 1;
                    return;
                }
                let expected = payload(source, me, received[source]);
                if header.kind() != DATA || usize::from(header.source()) != source {
                    error.get_or_insert(AppError("a message arrived with a wrong header"));
                } else if words_from_bytes(message.inline()) != expected {
                    error.get_or_insert(AppError("a message was lost, reordered or corrupted"));
                }
                received[source] += 1;
            });
            if error.is_some() {
                break;
            }
        }
    });
    let elapsed = started.elapsed();
    if let Some(error) = error {
        return Err(error);
    }
    let total: u64 = received.iter().sum();
    let rate = total as u128 * 1_000_000 / elapsed.as_micros().max(1);
    println!(
        "ipc: core {me} received {per_pair} messages from each of {} cores in order, checksums ok ({} ms, {rate} messages/s)",
        cores - 1,
        elapsed.as_millis()
    );
    finish(me, cores, reported);
    Ok(())
}

/// Reports to core 0 and waits, halted, for its answer; core 0 answers once all
/// reported (`reported` of them already did, itself included).
fn finish(me: usize, cores: usize, mut reported: usize) {
    percore::with_mailbox(|mailbox| {
        if me == 0 {
            while reported < cores {
                if mailbox
                    .poll(|_, message| reported += usize::from(message.header().kind() == FINISHED))
                    == 0
                {
                    mailbox.wait();
                }
            }
            for to in 1..cores {
                mailbox
                    .send(
                        to,
                        Message::new(ALL_FINISHED, 0, [0; 48]),
                        core::hint::spin_loop,
                    )
                    .unwrap_or_else(|error| panic!("ipc: cannot send: {error}"));
            }
        } else {
            mailbox
                .send(
                    0,
                    Message::new(FINISHED, me as u16, [0; 48]),
                    core::hint::spin_loop,
                )
                .unwrap_or_else(|error| panic!("ipc: cannot send: {error}"));
            let mut answered = false;
            while !answered {
                if mailbox.poll(|_, message| answered |= message.header().kind() == ALL_FINISHED)
                    == 0
                {
                    mailbox.wait();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_differ_by_pair_and_sequence() {
        assert_ne!(payload(0, 1, 5), payload(1, 0, 5));
        assert_ne!(payload(0, 1, 5), payload(0, 1, 6));
        assert_ne!(payload(0, 1, 5), payload(0, 2, 5));
        assert_eq!(payload(3, 2, 9), payload(3, 2, 9));
        assert_eq!(payload(3, 2, 9)[0], 9);
    }
}
