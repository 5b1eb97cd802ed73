//! `scale`: how throughput grows with cores. Five workloads, each run on every core at
//! once for `duration_ms=D` (default 500 ms of guest time):
//!
//! - `compute`: a xorshift64 pass over a 16 KiB buffer of each core's own (words/s);
//! - `pingpong`: every core keeps one ping in flight to every other core through the
//!   mailbox rings and answers the pings it receives (messages/s, pings and pongs);
//! - `alloc`: allocator churn, 64 live blocks of 16 bytes to 16 KiB replaced at random
//!   (allocation+free pairs/s);
//! - `rpc`: the last core serves requests that every other core sends it, one call in
//!   flight per client, every answer checked (calls/s, counted at the clients);
//! - `spawn`: every core spawns a thread on the next core and joins it (spawns/s).
//!
//! `pingpong`, `rpc` and `spawn` need two cores and are skipped on one.
//!
//! `workloads=compute,rpc` picks some (default all). Results are lines
//! `scale: WORKLOAD core=K VALUE UNIT`, one per core that did the work, then
//! `scale: WORKLOAD total VALUE UNIT`; `cargo xtask bench scale` collects them.

use alloc::vec::Vec;
use core::time::Duration;

use ipc::{Kind, Message};
use manada::{App, AppError};
use percore::placement::{service_core, Service};
use percore::random::XorShift64;
use percore::{println, Instant, Mailbox};

pub(crate) const APP: App = App {
    name: "scale",
    summary: "throughput of compute, messages, allocation, RPC and spawn on every core at once",
    main,
};

/// A workload of the scaling benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Compute,
    PingPong,
    Alloc,
    Rpc,
    Spawn,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::Compute,
        Workload::PingPong,
        Workload::Alloc,
        Workload::Rpc,
        Workload::Spawn,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::Compute => "compute",
            Workload::PingPong => "pingpong",
            Workload::Alloc => "alloc",
            Workload::Rpc => "rpc",
            Workload::Spawn => "spawn",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Workload::Compute => "ops/s",
            Workload::PingPong => "msgs/s",
            Workload::Alloc => "pairs/s",
            Workload::Rpc => "calls/s",
            Workload::Spawn => "spawns/s",
        }
    }

    /// Returns the workloads named in a comma-separated list, in its order.
    fn parse_list(text: &str) -> Result<Vec<Workload>, AppError> {
        let mut workloads = Vec::new();
        for name in text.split(',').filter(|name| !name.is_empty()) {
            let workload = Workload::ALL
                .into_iter()
                .find(|workload| workload.name() == name)
                .ok_or(AppError(
                    "scale: unknown workload (compute, pingpong, alloc, rpc, spawn)",
                ))?;
            if !workloads.contains(&workload) {
                workloads.push(workload);
            }
        }
        if workloads.is_empty() {
            return Err(AppError("scale: workloads= names no workload"));
        }
        Ok(workloads)
    }
}

const DEFAULT_DURATION_MS: u64 = 500;
const MAX_DURATION_MS: u64 = 60_000;

/// What the command line asks for.
#[derive(Debug, PartialEq)]
struct Settings {
    workloads: Vec<Workload>,
    duration: Duration,
}

impl Settings {
    /// Returns the settings in `workloads=` and `duration_ms=` (absent: the defaults).
    fn parse(workloads: Option<&str>, duration_ms: Option<&str>) -> Result<Settings, AppError> {
        let workloads = match workloads {
            Some(text) => Workload::parse_list(text)?,
            None => Workload::ALL.to_vec(),
        };
        let millis = match duration_ms {
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|millis| (1..=MAX_DURATION_MS).contains(millis))
                .ok_or(AppError("scale: duration_ms= must be 1 to 60000"))?,
            None => DEFAULT_DURATION_MS,
        };
        Ok(Settings {
            workloads,
            duration: Duration::from_millis(millis),
        })
    }
}

/// Returns `count` events in `elapsed` as events per second.
fn per_second(count: u64, elapsed: Duration) -> u64 {
    let nanos = elapsed.as_nanos().max(1);
    u64::try_from(u128::from(count) * 1_000_000_000 / nanos).unwrap_or(u64::MAX)
}

/// Words in each core's compute buffer: 16 KiB, within every core's own cache.
const COMPUTE_WORDS: usize = 2048;

/// Mixes the generator into every word of `buffer`.
fn compute_pass(buffer: &mut [u64], random: &mut XorShift64) {
    for word in buffer.iter_mut() {
        *word = word.rotate_left(5) ^ random.next_u64();
    }
}

/// Returns words processed per second on this core.
fn compute(_cores: usize, duration: Duration) -> Result<u64, AppError> {
    let me = percore::current_core() as u64;
    let mut buffer = alloc::vec![me; COMPUTE_WORDS];
    let mut random = XorShift64::new(me + 1);
    let start = Instant::now();
    let mut words = 0u64;
    while start.elapsed() < duration {
        compute_pass(&mut buffer, &mut random);
        words += COMPUTE_WORDS as u64;
    }
    let elapsed = start.elapsed();
    core::hint::black_box(&buffer);
    Ok(per_second(words, elapsed))
}

/// Blocks alive at once in the allocation churn.
const LIVE_BLOCKS: usize = 64;

/// Returns a block size for a random word: mostly slab sizes (16..=2048 bytes), one in
/// sixteen a page run (4..=16 KiB).
fn churn_size(random: u64) -> usize {
    let spread = (random >> 8) as usize;
    if random.is_multiple_of(16) {
        4096 + spread % (12 * 1024 + 1)
    } else {
        16 + spread % (2048 - 16 + 1)
    }
}

/// Returns allocation+free pairs per second on this core.
fn alloc_churn(_cores: usize, duration: Duration) -> Result<u64, AppError> {
    let me = percore::current_core() as u64;
    let mut generator = XorShift64::new(0x2545_F491_4F6C_DD1D ^ (me + 1));
    let mut blocks: Vec<Vec<u8>> = (0..LIVE_BLOCKS)
        .map(|_| Vec::with_capacity(churn_size(generator.next_u64())))
        .collect();
    let start = Instant::now();
    let mut pairs = 0u64;
    while start.elapsed() < duration {
        for _ in 0..256 {
            let random = generator.next_u64();
            let slot = (random >> 40) as usize % LIVE_BLOCKS;
            let mut block = Vec::with_capacity(churn_size(random));
            // One write, so the block is really handed out.
            block.push(random as u8);
            blocks[slot] = block;
        }
        pairs += 256;
    }
    let elapsed = start.elapsed();
    drop(blocks);
    Ok(per_second(pairs, elapsed))
}

/// Returns spawn+join pairs per second, each thread spawned on the next core.
fn spawn_join(cores: usize, duration: Duration) -> Result<u64, AppError> {
    let target = (percore::current_core() + 1) % cores;
    let start = Instant::now();
    let mut spawns = 0u64;
    while start.elapsed() < duration {
        let value = spawns;
        if percore::spawn_on(target, move || value.wrapping_mul(3)).join() != Ok(value * 3) {
            return Err(AppError("scale: a spawned thread returned a wrong value"));
        }
        spawns += 1;
    }
    Ok(per_second(spawns, start.elapsed()))
}

const PING: Kind = Kind::new(0x300);
const PONG: Kind = Kind::new(0x301);
const PING_DONE: Kind = Kind::new(0x302);
const REQUEST: Kind = Kind::new(0x310);
const RESPONSE: Kind = Kind::new(0x311);
const RPC_DONE: Kind = Kind::new(0x312);

/// Empty polls before a waiting core halts until a message comes.
const SPIN_POLLS: u32 = 2_000;

fn message(kind: Kind, words: [u64; 2]) -> Message {
    let mut inline = [0; 48];
    inline[..8].copy_from_slice(&words[0].to_le_bytes());
    inline[8..16].copy_from_slice(&words[1].to_le_bytes());
    Message::new(kind, percore::current_core() as u16, inline)
}

/// Spins a while when nothing came, then halts until something does.
fn idle(mailbox: &mut Mailbox, handled: usize, empty: &mut u32) {
    if handled > 0 {
        *empty = 0;
    } else {
        *empty += 1;
        if *empty >= SPIN_POLLS {
            *empty = 0;
            mailbox.wait();
        }
    }
}

/// Returns messages per second (pings sent and pongs received) on this core, which
/// keeps one ping in flight to every other core and answers theirs. It stops pinging
/// after `duration`, then answers until every other core said it stopped too.
fn pingpong(cores: usize, duration: Duration) -> Result<u64, AppError> {
    let me = percore::current_core();
    let mut next = [0u64; percore::MAX_CORES];
    let mut peers_done = 0;
    let mut round_trips = 0u64;
    let mut result = None;
    let mut replies: Vec<(usize, Message)> = Vec::new();
    let mut error = None;
    let mut empty = 0;
    let start = Instant::now();
    percore::with_mailbox(|mailbox| {
        for peer in (0..cores).filter(|&peer| peer != me) {
            mailbox
                .send(peer, message(PING, [0, 0]), core::hint::spin_loop)
                .unwrap_or_else(|error| panic!("scale: cannot send: {error}"));
        }
        while peers_done < cores - 1 || result.is_none() {
            if result.is_none() && start.elapsed() >= duration {
                result = Some(per_second(2 * round_trips, start.elapsed()));
                replies.extend(
                    (0..cores)
                        .filter(|&peer| peer != me)
                        .map(|peer| (peer, message(PING_DONE, [0, 0]))),
                );
            }
            let pinging = result.is_none();
            let handled = mailbox.poll(|source, received| {
                let kind = received.header().kind();
                let sequence = received.inline_word(0);
                if kind == PING {
                    replies.push((source, message(PONG, [sequence, 0])));
                } else if kind == PONG && pinging {
                    if sequence != next[source] {
                        error.get_or_insert(AppError("scale: a pong answered the wrong ping"));
                    }
                    round_trips += 1;
                    next[source] += 1;
                    replies.push((source, message(PING, [next[source], 0])));
                } else if kind == PING_DONE {
                    peers_done += 1;
                }
            });
            for (to, reply) in replies.drain(..) {
                mailbox
                    .send(to, reply, core::hint::spin_loop)
                    .unwrap_or_else(|error| panic!("scale: cannot send: {error}"));
            }
            idle(mailbox, handled, &mut empty);
        }
    });
    match error {
        Some(error) => Err(error),
        None => Ok(result.unwrap_or(0)),
    }
}

/// Returns the server's answer to `value`, which the client checks.
fn rpc_answer(value: u64) -> u64 {
    XorShift64::new(value).next_u64().rotate_left(7)
}

/// Serves calls on this core until all `clients` said they are done; returns how many
/// it answered.
fn rpc_server(clients: usize) -> u64 {
    let mut done = 0;
    let mut answered = 0u64;
    let mut replies: Vec<(usize, Message)> = Vec::new();
    let mut empty = 0;
    percore::with_mailbox(|mailbox| {
        while done < clients {
            let handled = mailbox.poll(|source, received| {
                let kind = received.header().kind();
                if kind == REQUEST {
                    let words = [received.inline_word(0), rpc_answer(received.inline_word(1))];
                    replies.push((source, message(RESPONSE, words)));
                } else if kind == RPC_DONE {
                    done += 1;
                }
            });
            answered += replies.len() as u64;
            for (to, reply) in replies.drain(..) {
                mailbox
                    .send(to, reply, core::hint::spin_loop)
                    .unwrap_or_else(|error| panic!("scale: cannot send: {error}"));
            }
            idle(mailbox, handled, &mut empty);
        }
    });
    answered
}

/// Calls the server on core `server` one call at a time for `duration`; returns calls
/// per second.
fn rpc_client(server: usize, duration: Duration) -> Result<u64, AppError> {
    let me = percore::current_core() as u64;
    let mut values = XorShift64::new(0x5DEE_CE66_D1CE_4E5B ^ me);
    let mut calls = 0u64;
    let mut error = None;
    let mut empty = 0;
    let start = Instant::now();
    percore::with_mailbox(|mailbox| {
        while start.elapsed() < duration && error.is_none() {
            let value = values.next_u64();
            mailbox
                .send(
                    server,
                    message(REQUEST, [calls, value]),
                    core::hint::spin_loop,
                )
                .unwrap_or_else(|error| panic!("scale: cannot send: {error}"));
            let mut answered = false;
            while !answered {
                let handled = mailbox.poll(|_, received| {
                    if received.header().kind() == RESPONSE {
                        answered = true;
                        if received.inline_word(0) != calls
                            || received.inline_word(1) != rpc_answer(value)
                        {
                            error.get_or_insert(AppError("scale: a wrong RPC answer"));
                        }
                    }
                });
                idle(mailbox, handled, &mut empty);
            }
            calls += 1;
        }
        mailbox
            .send(server, message(RPC_DONE, [calls, 0]), core::hint::spin_loop)
            .unwrap_or_else(|error| panic!("scale: cannot send: {error}"));
    });
    match error {
        Some(error) => Err(error),
        None => Ok(per_second(calls, start.elapsed())),
    }
}

/// Runs `work(cores, duration)` on every core in `workers` at once; returns each
/// core's result with its index.
fn on_cores(
    workers: core::ops::Range<usize>,
    cores: usize,
    duration: Duration,
    work: fn(usize, Duration) -> Result<u64, AppError>,
) -> Result<Vec<(usize, u64)>, AppError> {
    let handles: Vec<_> = workers
        .map(|core| (core, percore::spawn_on(core, move || work(cores, duration))))
        .collect();
    // Join all before looking at any result: no thread is left running.
    let results: Vec<_> = handles
        .into_iter()
        .map(|(core, handle)| (core, manada::join(handle).and_then(|rate| rate)))
        .collect();
    results
        .into_iter()
        .map(|(core, result)| result.map(|rate| (core, rate)))
        .collect()
}

/// Runs `workload`; returns each working core's rate (none when there are too few cores).
fn run(
    workload: Workload,
    cores: usize,
    duration: Duration,
) -> Result<Vec<(usize, u64)>, AppError> {
    match workload {
        Workload::Compute => on_cores(0..cores, cores, duration, compute),
        Workload::Alloc => on_cores(0..cores, cores, duration, alloc_churn),
        // Across cores only: a local spawn is a different, much cheaper operation.
        Workload::Spawn | Workload::PingPong | Workload::Rpc if cores < 2 => Ok(Vec::new()),
        Workload::Spawn => on_cores(0..cores, cores, duration, spawn_join),
        Workload::PingPong => on_cores(0..cores, cores, duration, pingpong),
        Workload::Rpc => {
            let server = cores - 1;
            let clients = cores - 1;
            let serving = percore::spawn_on(server, move || rpc_server(clients));
            let rates = on_cores(0..clients, server, duration, rpc_client);
            let answered = manada::join(serving);
            let rates = rates?;
            if answered? == 0 {
                return Err(AppError("scale: the RPC server answered no call"));
            }
            Ok(rates)
        }
    }
}

fn main() -> Result<(), AppError> {
    let command_line = percore::boot_info().command_line();
    let settings = Settings::parse(
        command_line.get("workloads"),
        command_line.get("duration_ms"),
    )?;
    let cores = percore::core_count();
    println!(
        "scale: {cores} cores, {} ms per workload",
        settings.duration.as_millis()
    );
    // The workloads use every core; a polling net service would share its core with them.
    if let Some(core) = service_core(Service::Net) {
        println!(
            "scale: note: the net service shares core {core} with the workloads; boot with --net none (as `cargo xtask bench scale` does) for clean figures"
        );
    }
    for workload in settings.workloads {
        let rates = run(workload, cores, settings.duration)?;
        if rates.is_empty() {
            println!("scale: {} skipped: it needs 2 cores", workload.name());
            continue;
        }
        let (name, unit) = (workload.name(), workload.unit());
        for &(core, rate) in &rates {
            println!("scale: {name} core={core} {rate} {unit}");
        }
        let total: u64 = rates.iter().map(|&(_, rate)| rate).sum();
        println!("scale: {name} total {total} {unit}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_workload_lists_and_durations() {
        let all = Settings::parse(None, None).unwrap();
        assert_eq!(all.workloads, Workload::ALL.to_vec());
        assert_eq!(all.duration, Duration::from_millis(DEFAULT_DURATION_MS));
        let some = Settings::parse(Some("rpc,compute,rpc"), Some("250")).unwrap();
        assert_eq!(some.workloads, vec![Workload::Rpc, Workload::Compute]);
        assert_eq!(some.duration, Duration::from_millis(250));
        assert!(Settings::parse(Some("compute,nope"), None).is_err());
        assert!(Settings::parse(Some(","), None).is_err());
        assert!(Settings::parse(None, Some("0")).is_err());
        assert!(Settings::parse(None, Some("60001")).is_err());
        assert!(Settings::parse(None, Some("-5")).is_err());
        for workload in Workload::ALL {
            assert_eq!(
                Workload::parse_list(workload.name()).unwrap(),
                vec![workload]
            );
            assert!(workload.unit().ends_with("/s"));
        }
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000);
        assert_eq!(per_second(3, Duration::from_secs(2)), 1);
        assert_eq!(per_second(7, Duration::ZERO), 7_000_000_000);
        assert_eq!(per_second(u64::MAX, Duration::from_nanos(1)), u64::MAX);
    }

    #[test]
    fn compute_passes_are_deterministic_and_change_every_word() {
        let (mut a, mut b) = ([5u64; 64], [5u64; 64]);
        let (mut random_a, mut random_b) = (XorShift64::new(1), XorShift64::new(1));
        compute_pass(&mut a, &mut random_a);
        compute_pass(&mut b, &mut random_b);
        assert_eq!((a, &random_a), (b, &random_b));
        assert!(a.iter().all(|&word| word != 5));
        let mut c = [5u64; 64];
        compute_pass(&mut c, &mut XorShift64::new(2));
        assert_ne!(c, a, "another seed, another pass");
        let before = a;
        compute_pass(&mut a, &mut random_a);
        assert!(a.iter().zip(before).all(|(now, then)| *now != then));
    }

    #[test]
    fn churn_sizes_mix_slabs_and_page_runs() {
        let mut generator = XorShift64::new(1);
        let (mut small, mut large) = (0, 0);
        for _ in 0..10_000 {
            let size = churn_size(generator.next_u64());
            assert!((16..=16 * 1024).contains(&size), "{size}");
            if size > 2048 {
                assert!(size >= 4096);
                large += 1;
            } else {
                small += 1;
            }
        }
        assert!(large > 300 && small > 8000, "{small} small, {large} large");
    }

    #[test]
    fn rpc_answers_depend_on_the_request() {
        assert_ne!(rpc_answer(1), rpc_answer(2));
        assert_ne!(rpc_answer(0), 0);
        assert_eq!(rpc_answer(12345), rpc_answer(12345));
    }
}
