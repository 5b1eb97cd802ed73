//! Host benchmark: this crate's ring against crossbeam, std and heapless channels.
//!
//! Two threads pinned to two different CPUs. Throughput: one thread sends 56-byte
//! messages as fast as it can, the other receives them. Round trip: one message goes
//! back and forth on a pair of channels. Each figure is the median of several runs,
//! after one warm-up run. Every channel carries the same `[u64; 7]` payload with the
//! same capacity; "spin" variants busy-poll with `try_send`/`try_recv` like the ring,
//! "blocking" ones use `send`/`recv`.
//!
//! `cargo bench -p ipc --bench ring`; `IPC_BENCH_QUICK=1` for a short smoke run;
//! `IPC_BENCH_JSON=path` also writes `[{"name", "value", "unit"}, ...]` to `path`.

// Loom's atomics only work inside a loom model, so there is nothing to measure there.
#[cfg(loom)]
fn main() {
    eprintln!("the ring benchmark does not run under --cfg loom");
}

#[cfg(not(loom))]
fn main() {
    host::main();
}

#[cfg(not(loom))]
mod host {
    use std::hint::spin_loop;
    use std::sync::Barrier;
    use std::thread;
    use std::time::{Duration, Instant};

    use ipc::{Ring, Words};

    /// Slots per channel, the same for every implementation.
    const CAPACITY: usize = 256;

    struct Config {
        runs: usize,
        messages: u64,
        round_trip_budget: Duration,
    }

    fn payload(sequence: u64) -> Words {
        [sequence, sequence ^ 1, 2, 3, 4, 5, sequence.rotate_left(7)]
    }

    /// The two CPUs the threads are pinned to, if the machine has two.
    fn cpus() -> Option<(core_affinity::CoreId, core_affinity::CoreId)> {
        let ids = core_affinity::get_core_ids()?;
        match ids.as_slice() {
            [first, second, ..] => Some((*first, *second)),
            _ => None,
        }
    }

    fn pin(cpu: Option<core_affinity::CoreId>) {
        if let Some(cpu) = cpu {
            assert!(core_affinity::set_for_current(cpu), "cannot pin to {cpu:?}");
        }
    }

    /// Returns the time to move `messages` messages from one pinned thread to the other.
    fn throughput(
        messages: u64,
        mut send: impl FnMut(Words) + Send,
        mut recv: impl FnMut() -> Words + Send,
    ) -> Duration {
        let pair = cpus();
        let start_line = Barrier::new(2);
        thread::scope(|scope| {
            scope.spawn(|| {
                pin(pair.map(|p| p.0));
                start_line.wait();
                for sequence in 0..messages {
                    send(payload(sequence));
                }
            });
            let receiver = scope.spawn(|| {
                pin(pair.map(|p| p.1));
                start_line.wait();
                let start = Instant::now();
                let mut checksum = 0u64;
                for _ in 0..messages {
                    let words = recv();
                    checksum = checksum.wrapping_add(words[0] ^ words[6]);
                }
                let elapsed = start.elapsed();
                let expected = (0..messages).fold(0u64, |sum, s| {
                    let words = payload(s);
                    sum.wrapping_add(words[0] ^ words[6])
                });
                assert_eq!(checksum, expected, "messages lost or corrupted");
                elapsed
            });
            receiver.join().unwrap()
        })
    }

    /// Marks the message that tells the echoing thread to stop.
    const STOP: u64 = u64::MAX;

    /// Returns the mean time of one ping-pong between two pinned threads, measured for
    /// about `budget` (a fixed count would take minutes with the blocking channels).
    fn round_trip(
        budget: Duration,
        mut ping_send: impl FnMut(Words) + Send,
        mut ping_recv: impl FnMut() -> Words + Send,
        mut pong_send: impl FnMut(Words) + Send,
        mut pong_recv: impl FnMut() -> Words + Send,
    ) -> Duration {
        let pair = cpus();
        let start_line = Barrier::new(2);
        thread::scope(|scope| {
            scope.spawn(|| {
                pin(pair.map(|p| p.1));
                start_line.wait();
                loop {
                    let words = ping_recv();
                    if words[1] == STOP {
                        break;
                    }
                    pong_send(words);
                }
            });
            let client = scope.spawn(|| {
                pin(pair.map(|p| p.0));
                start_line.wait();
                let start = Instant::now();
                let mut round_trips = 0u64;
                loop {
                    for _ in 0..64 {
                        ping_send(payload(round_trips));
                        let words = pong_recv();
                        assert_eq!(words[0], round_trips);
                        round_trips += 1;
                    }
                    if start.elapsed() >= budget {
                        break;
                    }
                }
                let elapsed = start.elapsed();
                ping_send([0, STOP, 0, 0, 0, 0, 0]);
                elapsed / round_trips as u32
            });
            client.join().unwrap()
        })
    }

    /// Spins on a `try_recv`-style function until it yields a message.
    fn spin_recv<E>(mut try_recv: impl FnMut() -> Result<Words, E>) -> Words {
        loop {
            if let Ok(words) = try_recv() {
                return words;
            }
            spin_loop();
        }
    }

    /// The ways of moving messages that are compared.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Contender {
        Ring,
        CrossbeamSpin,
        CrossbeamBlocking,
        StdSpin,
        StdBlocking,
        HeaplessSpin,
    }

    impl Contender {
        const ALL: [Contender; 6] = [
            Contender::Ring,
            Contender::CrossbeamSpin,
            Contender::CrossbeamBlocking,
            Contender::StdSpin,
            Contender::StdBlocking,
            Contender::HeaplessSpin,
        ];

        fn name(self) -> &'static str {
            match self {
                Contender::Ring => "ipc::Ring",
                Contender::CrossbeamSpin => "crossbeam bounded (spin)",
                Contender::CrossbeamBlocking => "crossbeam bounded (blocking)",
                Contender::StdSpin => "std sync_channel (spin)",
                Contender::StdBlocking => "std sync_channel (blocking)",
                Contender::HeaplessSpin => "heapless spsc (spin)",
            }
        }

        fn key(self) -> &'static str {
            match self {
                Contender::Ring => "ring",
                Contender::CrossbeamSpin => "crossbeam_spin",
                Contender::CrossbeamBlocking => "crossbeam_blocking",
                Contender::StdSpin => "std_spin",
                Contender::StdBlocking => "std_blocking",
                Contender::HeaplessSpin => "heapless_spin",
            }
        }

        fn throughput(self, messages: u64) -> Duration {
            match self {
                Contender::Ring => {
                    let ring = Box::new(Ring::<Words, CAPACITY>::new());
                    let (mut tx, mut rx) = ring.split().unwrap();
                    throughput(
                        messages,
                        move |words| tx.send(words, std::hint::spin_loop),
                        move || spin_recv(|| rx.try_recv().ok_or(())),
                    )
                }
                Contender::CrossbeamSpin => {
                    let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
                    throughput(
                        messages,
                        move |mut words| {
                            while let Err(error) = tx.try_send(words) {
                                words = error.into_inner();
                                spin_loop();
                            }
                        },
                        move || spin_recv(|| rx.try_recv()),
                    )
                }
                Contender::CrossbeamBlocking => {
                    let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
                    throughput(
                        messages,
                        move |words| tx.send(words).unwrap(),
                        move || rx.recv().unwrap(),
                    )
                }
                Contender::StdSpin => {
                    let (tx, rx) = std::sync::mpsc::sync_channel(CAPACITY);
                    throughput(
                        messages,
                        move |mut words| loop {
                            match tx.try_send(words) {
                                Ok(()) => break,
                                Err(std::sync::mpsc::TrySendError::Full(back)) => words = back,
                                Err(error) => panic!("{error}"),
                            }
                            spin_loop();
                        },
                        move || spin_recv(|| rx.try_recv()),
                    )
                }
                Contender::StdBlocking => {
                    let (tx, rx) = std::sync::mpsc::sync_channel(CAPACITY);
                    throughput(
                        messages,
                        move |words| tx.send(words).unwrap(),
                        move || rx.recv().unwrap(),
                    )
                }
                Contender::HeaplessSpin => {
                    // heapless keeps one slot empty: N + 1 storage for N messages.
                    let mut queue =
                        Box::new(heapless::spsc::Queue::<Words, { CAPACITY + 1 }>::new());
                    let (mut producer, mut consumer) = queue.split();
                    throughput(
                        messages,
                        move |mut words| {
                            while let Err(back) = producer.enqueue(words) {
                                words = back;
                                spin_loop();
                            }
                        },
                        move || spin_recv(|| consumer.dequeue().ok_or(())),
                    )
                }
            }
        }

        fn round_trip(self, budget: Duration) -> Duration {
            match self {
                Contender::Ring => {
                    let ping = Box::new(Ring::<Words, CAPACITY>::new());
                    let pong = Box::new(Ring::<Words, CAPACITY>::new());
                    let (mut ping_tx, mut ping_rx) = ping.split().unwrap();
                    let (mut pong_tx, mut pong_rx) = pong.split().unwrap();
                    round_trip(
                        budget,
                        move |words| ping_tx.send(words, std::hint::spin_loop),
                        move || spin_recv(|| ping_rx.try_recv().ok_or(())),
                        move |words| pong_tx.send(words, std::hint::spin_loop),
                        move || spin_recv(|| pong_rx.try_recv().ok_or(())),
                    )
                }
                Contender::CrossbeamSpin | Contender::CrossbeamBlocking => {
                    let (ping_tx, ping_rx) = crossbeam_channel::bounded::<Words>(CAPACITY);
                    let (pong_tx, pong_rx) = crossbeam_channel::bounded::<Words>(CAPACITY);
                    if self == Contender::CrossbeamSpin {
                        round_trip(
                            budget,
                            move |words| ping_tx.try_send(words).unwrap(),
                            move || spin_recv(|| ping_rx.try_recv()),
                            move |words| pong_tx.try_send(words).unwrap(),
                            move || spin_recv(|| pong_rx.try_recv()),
                        )
                    } else {
                        round_trip(
                            budget,
                            move |words| ping_tx.send(words).unwrap(),
                            move || ping_rx.recv().unwrap(),
                            move |words| pong_tx.send(words).unwrap(),
                            move || pong_rx.recv().unwrap(),
                        )
                    }
                }
                Contender::StdSpin | Contender::StdBlocking => {
                    let (ping_tx, ping_rx) = std::sync::mpsc::sync_channel::<Words>(CAPACITY);
                    let (pong_tx, pong_rx) = std::sync::mpsc::sync_channel::<Words>(CAPACITY);
                    if self == Contender::StdSpin {
                        round_trip(
                            budget,
                            move |words| ping_tx.try_send(words).unwrap(),
                            move || spin_recv(|| ping_rx.try_recv()),
                            move |words| pong_tx.try_send(words).unwrap(),
                            move || spin_recv(|| pong_rx.try_recv()),
                        )
                    } else {
                        round_trip(
                            budget,
                            move |words| ping_tx.send(words).unwrap(),
                            move || ping_rx.recv().unwrap(),
                            move |words| pong_tx.send(words).unwrap(),
                            move || pong_rx.recv().unwrap(),
                        )
                    }
                }
                Contender::HeaplessSpin => {
                    let mut ping =
                        Box::new(heapless::spsc::Queue::<Words, { CAPACITY + 1 }>::new());
                    let mut pong =
                        Box::new(heapless::spsc::Queue::<Words, { CAPACITY + 1 }>::new());
                    let (mut ping_tx, mut ping_rx) = ping.split();
                    let (mut pong_tx, mut pong_rx) = pong.split();
                    round_trip(
                        budget,
                        move |words| ping_tx.enqueue(words).unwrap(),
                        move || spin_recv(|| ping_rx.dequeue().ok_or(())),
                        move |words| pong_tx.enqueue(words).unwrap(),
                        move || spin_recv(|| pong_rx.dequeue().ok_or(())),
                    )
                }
            }
        }
    }

    /// Median, minimum and maximum of `samples`.
    struct Summary {
        median: f64,
        min: f64,
        max: f64,
    }

    fn summarize(mut samples: Vec<f64>) -> Summary {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        Summary {
            median,
            min: samples[0],
            max: samples[n - 1],
        }
    }

    struct Record {
        name: String,
        value: f64,
        unit: &'static str,
    }

    fn json_escape(text: &str) -> String {
        text.chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                '\\' => vec!['\\', '\\'],
                c => vec![c],
            })
            .collect()
    }

    fn write_json(path: &str, records: &[Record]) -> std::io::Result<()> {
        let body: Vec<String> = records
            .iter()
            .map(|record| {
                format!(
                    "  {{\"name\": \"{}\", \"value\": {:.3}, \"unit\": \"{}\"}}",
                    json_escape(&record.name),
                    record.value,
                    record.unit
                )
            })
            .collect();
        std::fs::write(path, format!("[\n{}\n]\n", body.join(",\n")))
    }

    pub fn main() {
        // `cargo bench` passes `--bench`; a filter argument selects contenders by key.
        let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
        let quick = std::env::var_os("IPC_BENCH_QUICK").is_some_and(|v| v != "0");
        let config = if quick {
            Config {
                runs: 3,
                messages: 300_000,
                round_trip_budget: Duration::from_millis(30),
            }
        } else {
            Config {
                runs: 7,
                messages: 2_000_000,
                round_trip_budget: Duration::from_millis(150),
            }
        };
        match cpus() {
            Some((first, second)) => println!(
                "threads pinned to CPUs {} and {}; capacity {CAPACITY} x 56-byte messages; \
                 {} runs, medians",
                first.id, second.id, config.runs
            ),
            None => println!("WARNING: fewer than two CPUs, threads not pinned"),
        }

        let mut records = Vec::new();
        let mut medians = Vec::new();
        println!(
            "{:<30} {:>26} {:>26}",
            "", "throughput Mmsg/s", "round trip ns"
        );
        println!(
            "{:<30} {:>26} {:>26}",
            "", "median (min..max)", "median (min..max)"
        );
        let contenders: Vec<Contender> = Contender::ALL
            .into_iter()
            .filter(|c| filter.as_deref().is_none_or(|f| c.key().contains(f)))
            .collect();
        for contender in &contenders {
            contender.throughput(config.messages / 10);
            contender.round_trip(config.round_trip_budget / 10);
        }
        // Runs are interleaved across contenders, so a burst of load from elsewhere on
        // the machine hits them all alike.
        let mut rates = vec![Vec::new(); contenders.len()];
        let mut latencies = vec![Vec::new(); contenders.len()];
        for _ in 0..config.runs {
            for (i, contender) in contenders.iter().enumerate() {
                let elapsed = contender.throughput(config.messages);
                rates[i].push(config.messages as f64 / elapsed.as_secs_f64() / 1e6);
                let round_trip = contender.round_trip(config.round_trip_budget);
                latencies[i].push(round_trip.as_nanos() as f64);
            }
        }
        for ((contender, rates), latencies) in contenders.iter().zip(rates).zip(latencies) {
            let contender = *contender;
            let rate = summarize(rates);
            let latency = summarize(latencies);
            println!(
                "{:<30} {:>10.2} ({:>6.2}..{:>6.2}) {:>10.0} ({:>6.0}..{:>6.0})",
                contender.name(),
                rate.median,
                rate.min,
                rate.max,
                latency.median,
                latency.min,
                latency.max
            );
            records.push(Record {
                name: format!("{}/throughput", contender.key()),
                value: rate.median,
                unit: "Mmsg/s",
            });
            records.push(Record {
                name: format!("{}/round_trip", contender.key()),
                value: latency.median,
                unit: "ns",
            });
            medians.push((contender, rate.median, latency.median));
        }

        let find = |wanted: Contender| medians.iter().find(|(c, _, _)| *c == wanted);
        if let Some(&(_, ring_rate, ring_latency)) = find(Contender::Ring) {
            let crossbeam = [Contender::CrossbeamSpin, Contender::CrossbeamBlocking]
                .into_iter()
                .filter_map(find)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some(&(best, rate, latency)) = crossbeam {
                let ratio = ring_rate / rate;
                println!();
                println!(
                    "ring / best crossbeam ({}): throughput {:.2}x, round trip {:.2}x faster \
                     (target: throughput >= 2x)",
                    best.name(),
                    ratio,
                    latency / ring_latency
                );
                records.push(Record {
                    name: "ring_vs_crossbeam/throughput_ratio".into(),
                    value: ratio,
                    unit: "x",
                });
                records.push(Record {
                    name: "ring_vs_crossbeam/round_trip_speedup".into(),
                    value: latency / ring_latency,
                    unit: "x",
                });
            }
        }

        if let Some(path) = std::env::var_os("IPC_BENCH_JSON") {
            let path = path.to_string_lossy().into_owned();
            match write_json(&path, &records) {
                Ok(()) => println!("wrote {path}"),
                Err(error) => {
                    eprintln!("cannot write {path}: {error}");
                    std::process::exit(1);
                }
            }
        }
    }
}
