//! `ipc-bench`: round-trip time and throughput between every ordered pair of cores.
//!
//! The pairs take turns; the cores not measuring wait halted at a barrier, so they
//! neither disturb the pair nor take host CPU under TCG. For each pair (a, b): 1,001
//! ping-pongs (median round trip in TSC cycles), then `messages=M` one-way messages
//! (default 10,000,000) timed from a's first send to b's acknowledgement of the last.
//! Results are lines `ipc-bench: rtt A->B C cycles N ns` and
//! `ipc-bench: throughput A->B R messages/s`, which `cargo xtask bench ipc` collects.

use ipc::{Kind, Message};
use manada::{on_every_core, App, AppError};
use percore::{println, Instant, Mailbox};

pub(crate) const APP: App = App {
    name: "ipc-bench",
    summary: "round-trip time and messages per second between every pair of cores",
    main,
};

fn main() -> Result<(), AppError> {
    on_every_core(run)?.into_iter().collect()
}

const DEFAULT_MESSAGES: u64 = 10_000_000;
const ROUND_TRIPS: usize = 1001;
const SEND_BATCH: u64 = 16;

const PING: Kind = Kind::new(0x200);
const PONG: Kind = Kind::new(0x201);
const DATA: Kind = Kind::new(0x202);
const RECEIVED_ALL: Kind = Kind::new(0x203);
const ARRIVED: Kind = Kind::new(0x204);
const RELEASE: Kind = Kind::new(0x205);

/// What a core keeps across phases: barrier arrivals that came early (core 0 only),
/// and messages of the next phase that arrived while it was still at the barrier.
struct Node {
    me: usize,
    cores: usize,
    arrivals: usize,
    early: heapless::Deque<(usize, Message), 64>,
}

impl Node {
    /// Receives what arrived early, then one round from the mailbox; counts barrier
    /// arrivals and hands everything else to `handle`. Returns how many it handled.
    fn poll(&mut self, mailbox: &mut Mailbox, mut handle: impl FnMut(usize, Message)) -> usize {
        let mut handled = 0;
        while let Some((source, message)) = self.early.pop_front() {
            handle(source, message);
            handled += 1;
        }
        let arrivals = &mut self.arrivals;
        handled
            + mailbox.poll(|source, message| {
                if message.header().kind() == ARRIVED {
                    *arrivals += 1;
                } else {
                    handle(source, message);
                }
            })
    }

    /// Waits until every core reached this point; cores wait halted.
    fn barrier(&mut self, mailbox: &mut Mailbox) {
        if self.me == 0 {
            while self.arrivals < self.cores - 1 {
                if self.poll(mailbox, |_, _| {}) == 0 {
                    mailbox.wait();
                }
            }
            self.arrivals -= self.cores - 1;
            for to in 1..self.cores {
                mailbox
                    .send(to, signal(RELEASE, 0, 0), core::hint::spin_loop)
                    .unwrap_or_else(|error| panic!("ipc-bench: cannot send: {error}"));
            }
        } else {
            mailbox
                .send(0, signal(ARRIVED, self.me, 0), core::hint::spin_loop)
                .unwrap_or_else(|error| panic!("ipc-bench: cannot send: {error}"));
            let mut released = false;
            while !released {
                // The release and the next phase's first message can come in one round.
                let early = &mut self.early;
                let handled = mailbox.poll(|source, message| {
                    if message.header().kind() == RELEASE {
                        released = true;
                    } else if early.push_back((source, message)).is_err() {
                        panic!("ipc-bench: more than 64 messages ahead of the barrier");
                    }
                });
                if handled == 0 {
                    mailbox.wait();
                }
            }
        }
    }
}

fn signal(kind: Kind, me: usize, value: u64) -> Message {
    let mut inline = [0; 48];
    inline[..8].copy_from_slice(&value.to_le_bytes());
    Message::new(kind, me as u16, inline)
}

fn run() -> Result<(), AppError> {
    let me = percore::current_core();
    let cores = percore::core_count();
    if cores < 2 {
        return Err(AppError("ipc-bench needs at least 2 cores"));
    }
    let messages = percore::boot_info()
        .command_line()
        .number("messages")
        .map_err(|_| AppError("messages=M takes a number"))?
        .unwrap_or(DEFAULT_MESSAGES);
    let tsc_hz = percore::boot_info().tsc_hz;
    let mut node = Node {
        me,
        cores,
        arrivals: 0,
        early: heapless::Deque::new(),
    };
    percore::with_mailbox(|mailbox| {
        node.barrier(mailbox);
        for a in 0..cores {
            for b in (0..cores).filter(|&b| b != a) {
                if me == a {
                    let cycles = ping(&mut node, mailbox, b);
                    let nanos = cycles as u128 * 1_000_000_000 / u128::from(tsc_hz.max(1));
                    println!("ipc-bench: rtt {a}->{b} {cycles} cycles {nanos} ns");
                    let rate = stream(&mut node, mailbox, b, messages, tsc_hz);
                    println!("ipc-bench: throughput {a}->{b} {rate} messages/s");
                } else if me == b {
                    pong(&mut node, mailbox, a);
                    drain(&mut node, mailbox, a, messages);
                }
                node.barrier(mailbox);
            }
        }
    });
    Ok(())
}

/// Returns the median round trip to `peer` in TSC cycles.
fn ping(node: &mut Node, mailbox: &mut Mailbox, peer: usize) -> u64 {
    let mut samples = [0u64; ROUND_TRIPS];
    for (round, sample) in samples.iter_mut().enumerate() {
        let start = Instant::now();
        mailbox
            .send(
                peer,
                signal(PING, node.me, round as u64),
                core::hint::spin_loop,
            )
            .unwrap_or_else(|error| panic!("ipc-bench: cannot send: {error}"));
        let mut answered = false;
        while !answered {
            node.poll(mailbox, |_, m| {
                answered |= m.header().kind() == PONG && m.inline_word(0) == round as u64
            });
        }
        *sample = Instant::now().ticks() - start.ticks();
    }
    samples.sort_unstable();
    samples[ROUND_TRIPS / 2]
}

fn pong(node: &mut Node, mailbox: &mut Mailbox, peer: usize) {
    let mut answered = 0;
    while answered < ROUND_TRIPS {
        let mut round = None;
        node.poll(mailbox, |_, m| {
            if m.header().kind() == PING {
                round = Some(m.inline_word(0));
            }
        });
        if let Some(round) = round {
            mailbox
                .send(peer, signal(PONG, node.me, round), core::hint::spin_loop)
                .unwrap_or_else(|error| panic!("ipc-bench: cannot send: {error}"));
            answered += 1;
        }
    }
}

/// Sends `messages` to `peer` and returns messages per second, up to its acknowledgement.
fn stream(node: &mut Node, mailbox: &mut Mailbox, peer: usize, messages: u64, tsc_hz: u64) -> u64 {
    let start = Instant::now();
    let mut sent = 0;
    let mut acknowledged = false;
    while !acknowledged {
        let before = sent;
        while sent < messages && sent - before < SEND_BATCH {
            if mailbox.try_send(peer, signal(DATA, node.me, sent)).is_err() {
                break;
            }
            sent += 1;
        }
        if sent != before {
            mailbox.notify(peer);
        }
        node.poll(mailbox, |_, m| {
            acknowledged |= m.header().kind() == RECEIVED_ALL
        });
    }
    let seconds_scaled = Instant::now()
        .duration_since_at(start, tsc_hz)
        .as_nanos()
        .max(1);
    (u128::from(messages) * 1_000_000_000 / seconds_scaled) as u64
}

fn drain(node: &mut Node, mailbox: &mut Mailbox, peer: usize, messages: u64) {
    let mut received = 0;
    while received < messages {
        node.poll(mailbox, |_, m| {
            received += u64::from(m.header().kind() == DATA)
        });
    }
    mailbox
        .send(
            peer,
            signal(RECEIVED_ALL, node.me, received),
            core::hint::spin_loop,
        )
        .unwrap_or_else(|error| panic!("ipc-bench: cannot send: {error}"));
}
