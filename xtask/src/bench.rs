//! `cargo xtask bench`: benchmark suites that boot the kernel and report medians.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::build;
use crate::qemu::{self, Accel, AccelChoice, Machine, MemSize, QemuConfig};
use crate::tools::{self, Workspace};

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The suite to run; all suites when omitted.
    #[arg(value_enum)]
    pub suite: Option<Suite>,
    /// Core counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8", value_name = "N,N,...", value_parser = qemu::parse_cores)]
    pub cores: Vec<usize>,
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Q35)]
    pub machine: Machine,
    /// Boots per core count (the median is reported).
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub repeat: u64,
    /// Accelerator: KVM when usable (auto), or forced.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Guest memory, e.g. 512M or 1G.
    #[arg(long, default_value = "512M", value_name = "SIZE")]
    pub mem: MemSize,
    /// Measure the debug kernel instead of the release kernel.
    #[arg(long)]
    pub debug: bool,
    /// Per-boot timeout in seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Boot this kernel image instead of building one.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,
    /// Messages per ordered pair of cores in the guest throughput measure (ipc suite).
    #[arg(long, default_value_t = 10_000_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// A short smoke run: one repeat, 100,000 messages, the host bench's quick mode.
    #[arg(long)]
    pub quick: bool,
}

/// A benchmark suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// Time from QEMU start (host) and from kernel entry (guest) until all cores are online.
    Boot,
    /// Mailbox rings: host throughput and round trip against other channels, and in the
    /// guest the round trip and messages per second between every pair of cores.
    Ipc,
    /// Each core's own kernel: allocation rate on every core at once (and its scaling
    /// efficiency), spawn + join, yield, remote frees.
    Percore,
    /// The blk service on a 64 MiB image: sequential reads in 64 KiB requests, random 4 KiB
    /// reads at queue depth 1 and 32, from an application core (2 cores: one client, one
    /// service).
    Blk,
    /// The fs service on a FAT16 image: a 16 MiB file read sequentially, and 200 small
    /// files (3 cores: client, fs service, blk service).
    Fs,
}

impl Suite {
    /// Every suite, in the order `cargo xtask bench` runs them.
    const ALL: &'static [Suite] = &[
        Suite::Boot,
        Suite::Ipc,
        Suite::Percore,
        Suite::Blk,
        Suite::Fs,
    ];

    /// Returns the suite's name, also the stem of its report files.
    fn name(self) -> &'static str {
        match self {
            Suite::Boot => "boot",
            Suite::Ipc => "ipc",
            Suite::Percore => "percore",
            Suite::Blk => "blk",
            Suite::Fs => "fs",
        }
    }

    /// Runs the suite and returns its measures.
    fn run(self, context: &Context) -> Result<Vec<Record>, String> {
        match self {
            Suite::Boot => boot_suite(context),
            Suite::Ipc => ipc_suite(context),
            Suite::Percore => percore_suite(context),
            Suite::Blk => blk_suite(context),
            Suite::Fs => fs_suite(context),
        }
    }
}

/// What every suite shares.
#[derive(Debug)]
struct Context<'a> {
    args: &'a BenchArgs,
    kernel: PathBuf,
    accel: Accel,
    host_cpus: usize,
}

/// One measure: the median of its runs.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    name: String,
    cores: usize,
    value: f64,
    unit: &'static str,
    runs: Vec<f64>,
}

impl Record {
    /// Returns a record whose value is the median of `runs`.
    fn new(name: impl Into<String>, cores: usize, unit: &'static str, runs: Vec<f64>) -> Record {
        Record {
            name: name.into(),
            cores,
            value: median(&runs),
            unit,
            runs,
        }
    }
}

/// Runs the chosen suites, writing `<target>/bench/<suite>.json` and `.md` for each.
pub fn main(args: &BenchArgs) -> Result<(), String> {
    let workspace = tools::workspace()?;
    let kernel = build::kernel_or_build(&workspace, args.kernel.as_deref(), !args.debug)?;
    tools::ensure_qemu()?;
    let accel = tools::resolve_accel(args.accel)?;
    let context = Context {
        args,
        kernel,
        accel,
        host_cpus: tools::host_cpus(),
    };
    let suites = args.suite.map_or(Suite::ALL.to_vec(), |suite| vec![suite]);
    for suite in suites {
        let records = suite.run(&context)?;
        write_report(&workspace, &context, suite, &records)?;
    }
    Ok(())
}

/// The boot suite: boots app hello `repeat` times per core count.
fn boot_suite(context: &Context) -> Result<Vec<Record>, String> {
    let args = context.args;
    for &cores in args
        .cores
        .iter()
        .filter(|&&cores| cores > context.host_cpus)
    {
        eprintln!(
            "xtask: warning: {cores} cores > {} host CPUs: vCPUs share host CPUs, so boot times grow",
            context.host_cpus
        );
    }
    let repeat = if args.quick {
        1
    } else {
        usize::try_from(args.repeat).unwrap_or(1)
    };
    let total = args.cores.len() * repeat;
    let mut records = Vec::new();
    for (index, &cores) in args.cores.iter().enumerate() {
        let config = QemuConfig {
            kernel: context.kernel.clone(),
            machine: args.machine,
            cores,
            mem: args.mem,
            accel: context.accel,
            app: "hello".into(),
            kernel_args: Vec::new(),
            disks: Vec::new(),
            net: None,
            inject: None,
            gdb: false,
        };
        let (mut host_runs, mut kernel_runs) = (Vec::new(), Vec::new());
        for run in 1..=repeat {
            eprintln!(
                "[{}/{total}] {cores} cores, run {run}/{repeat} ...",
                index * repeat + run
            );
            let outcome = qemu::run(&config, Some(Duration::from_secs(args.timeout)), false)?;
            let checked = outcome.verdict().and_then(|()| {
                outcome
                    .online
                    .filter(|online| online.cores == cores)
                    .ok_or_else(|| format!("no `manada: {cores} cores online` line"))
            });
            let online = checked.map_err(|reason| {
                let tail = outcome.tail(20).join("\n    | ");
                format!("boot with {cores} cores failed: {reason}\n    | {tail}")
            })?;
            host_runs.push(online.after_start.as_secs_f64() * 1000.0);
            kernel_runs.push(online.kernel_ms);
        }
        records.push(Record::new(
            "boot_to_all_online_host_ms",
            cores,
            "ms",
            host_runs,
        ));
        records.push(Record::new(
            "boot_to_all_online_kernel_ms",
            cores,
            "ms",
            kernel_runs,
        ));
    }
    Ok(records)
}

/// The ipc suite: the host bench of the ring against other channels, then `ipc-bench`
/// in the guest at each core count of at least 2.
fn ipc_suite(context: &Context) -> Result<Vec<Record>, String> {
    let args = context.args;
    let workspace = tools::workspace()?;
    let mut records = run_host_bench(&workspace, &IPC_HOST_BENCH, args.quick)?;
    let messages = if args.quick { 100_000 } else { args.messages };
    let counts: Vec<usize> = args
        .cores
        .iter()
        .copied()
        .filter(|&cores| cores >= 2)
        .collect();
    for (index, &cores) in counts.iter().enumerate() {
        let pairs = cores * (cores - 1);
        eprintln!(
            "[{}/{}] ipc-bench on {cores} cores: {pairs} pairs, {messages} messages each ...",
            index + 1,
            counts.len()
        );
        let config = QemuConfig {
            kernel: context.kernel.clone(),
            machine: args.machine,
            cores,
            mem: args.mem,
            accel: context.accel,
            app: "ipc-bench".into(),
            kernel_args: vec![format!("messages={messages}")],
            disks: Vec::new(),
            net: None,
            inject: None,
            gdb: false,
        };
        // Generous: one second per million messages per pair, plus the fixed timeout.
        let timeout = args.timeout + pairs as u64 * (1 + messages / 1_000_000);
        let outcome = qemu::run(&config, Some(Duration::from_secs(timeout)), false)?;
        let tail = || outcome.tail(20).join("\n    | ");
        outcome.verdict().map_err(|reason| {
            format!(
                "ipc-bench on {cores} cores failed: {reason}\n    | {}",
                tail()
            )
        })?;
        let (rtts, rates) = parse_ipc_bench(&outcome.console);
        if rtts.len() != pairs || rates.len() != pairs {
            return Err(format!(
                "ipc-bench on {cores} cores reported {} round trips and {} rates, expected {pairs} each\n    | {}",
                rtts.len(),
                rates.len(),
                tail()
            ));
        }
        let tsc_ghz = rtts
            .iter()
            .map(|r| r.cycles as f64 / r.nanos.max(1) as f64)
            .sum::<f64>()
            / pairs as f64;
        let cycles: Vec<f64> = rtts.iter().map(|r| r.cycles as f64).collect();
        let nanos: Vec<f64> = rtts.iter().map(|r| r.nanos as f64).collect();
        let per_second: Vec<f64> = rates.iter().map(|r| r.per_second as f64).collect();
        for rtt in &rtts {
            records.push(Record::new(
                format!("rtt {}->{}", rtt.from, rtt.to),
                cores,
                "cycles",
                vec![rtt.cycles as f64],
            ));
        }
        for rate in &rates {
            records.push(Record::new(
                format!("throughput {}->{}", rate.from, rate.to),
                cores,
                "msg/s",
                vec![rate.per_second as f64],
            ));
        }
        records.push(Record::new(
            "guest_rtt_median_cycles",
            cores,
            "cycles",
            cycles,
        ));
        records.push(Record::new("guest_rtt_median_ns", cores, "ns", nanos));
        records.push(Record::new(
            "guest_throughput_per_pair_median",
            cores,
            "msg/s",
            per_second,
        ));
        eprintln!("xtask: {cores} cores: TSC {tsc_ghz:.2} GHz");
    }
    Ok(records)
}

/// A benchmark program of a library crate, run on the host.
struct HostBench {
    package: &'static str,
    bench: &'static str,
    /// The environment variable that names its JSON output.
    json_variable: &'static str,
    /// The environment variable that asks for a short run.
    quick_variable: &'static str,
}

/// The ring against other channels (ipc).
const IPC_HOST_BENCH: HostBench = HostBench {
    package: "ipc",
    bench: "ring",
    json_variable: "IPC_BENCH_JSON",
    quick_variable: "IPC_BENCH_QUICK",
};

/// Our virtio-blk driver against the virtio-drivers crate, on a fake device (devices).
const DRIVER_HOST_BENCH: HostBench = HostBench {
    package: "devices",
    bench: "driver_compare",
    json_variable: "DRIVER_COMPARE_JSON",
    quick_variable: "DRIVER_COMPARE_QUICK",
};

/// Runs a host bench (`cargo bench -p PACKAGE --bench BENCH`) and returns its records.
fn run_host_bench(
    workspace: &Workspace,
    bench: &HostBench,
    quick: bool,
) -> Result<Vec<Record>, String> {
    let dir = workspace.target_dir.join("bench");
    fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let json_path = dir.join(format!("{}-host.json", bench.bench));
    eprintln!(
        "xtask: host bench: cargo bench -p {} --bench {}{}",
        bench.package,
        bench.bench,
        if quick { " (quick)" } else { "" }
    );
    let mut command = std::process::Command::new(tools::cargo());
    command
        .current_dir(&workspace.root)
        .args([
            "bench",
            "--quiet",
            "-p",
            bench.package,
            "--bench",
            bench.bench,
        ])
        .env(bench.json_variable, &json_path);
    if quick {
        command.env(bench.quick_variable, "1");
    }
    let status = command
        .status()
        .map_err(|error| format!("cannot run cargo bench: {error}"))?;
    if !status.success() {
        return Err(format!("the host bench {} failed: {status}", bench.bench));
    }
    let json = fs::read_to_string(&json_path)
        .map_err(|error| format!("cannot read {}: {error}", json_path.display()))?;
    let records = parse_host_records(&json);
    if records.is_empty() {
        return Err(format!("{} holds no records", json_path.display()));
    }
    Ok(records)
}

/// Returns the records of the host bench's JSON (`[{"name", "value", "unit"}, ...]`).
fn parse_host_records(json: &str) -> Vec<Record> {
    json.lines()
        .filter_map(|line| {
            let name = tools::json_string_field(line, "name")?;
            let unit = tools::json_string_field(line, "unit")?;
            let value = line
                .split("\"value\":")
                .nth(1)?
                .split(',')
                .next()?
                .trim()
                .parse::<f64>()
                .ok()?;
            let unit: &'static str = match unit.as_str() {
                "Mmsg/s" => "Mmsg/s",
                "ns" => "ns",
                "x" => "x",
                "req/s" => "req/s",
                "requests/s" => "requests/s",
                _ => "",
            };
            Some(Record::new(format!("host/{name}"), 2, unit, vec![value]))
        })
        .collect()
}

/// A round trip reported by `ipc-bench`.
#[derive(Debug, PartialEq)]
struct RoundTrip {
    from: usize,
    to: usize,
    cycles: u64,
    nanos: u64,
}

/// A throughput reported by `ipc-bench`.
#[derive(Debug, PartialEq)]
struct Rate {
    from: usize,
    to: usize,
    per_second: u64,
}

/// Returns the round trips and rates in `ipc-bench`'s console lines.
fn parse_ipc_bench(lines: &[String]) -> (Vec<RoundTrip>, Vec<Rate>) {
    let (mut rtts, mut rates) = (Vec::new(), Vec::new());
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let pair = |text: &str| -> Option<(usize, usize)> {
            let (from, to) = text.split_once("->")?;
            Some((from.parse().ok()?, to.parse().ok()?))
        };
        match words.as_slice() {
            ["ipc-bench:", "rtt", link, cycles, "cycles", nanos, "ns"] => {
                if let (Some((from, to)), Ok(cycles), Ok(nanos)) =
                    (pair(link), cycles.parse(), nanos.parse())
                {
                    rtts.push(RoundTrip {
                        from,
                        to,
                        cycles,
                        nanos,
                    });
                }
            }
            ["ipc-bench:", "throughput", link, rate, "messages/s"] => {
                if let (Some((from, to)), Ok(per_second)) = (pair(link), rate.parse()) {
                    rates.push(Rate {
                        from,
                        to,
                        per_second,
                    });
                }
            }
            _ => {}
        }
    }
    (rtts, rates)
}

/// The percore suite: `percore-bench` booted `repeat` times at each core count.
fn percore_suite(context: &Context) -> Result<Vec<Record>, String> {
    let args = context.args;
    let repeat = if args.quick {
        1
    } else {
        usize::try_from(args.repeat).unwrap_or(1)
    };
    let ops = if args.quick { 200_000 } else { 2_000_000 };
    let mut records = Vec::new();
    let mut single_core_total = None;
    for (index, &cores) in args.cores.iter().enumerate() {
        if cores > context.host_cpus {
            eprintln!(
                "xtask: warning: {cores} cores > {} host CPUs: vCPUs share host CPUs, so per-core rates drop",
                context.host_cpus
            );
        }
        let config = QemuConfig {
            kernel: context.kernel.clone(),
            machine: args.machine,
            cores,
            mem: args.mem,
            accel: context.accel,
            app: "percore-bench".into(),
            kernel_args: vec![format!("ops={ops}")],
            disks: Vec::new(),
            net: None,
            inject: None,
            gdb: false,
        };
        let mut runs: Vec<PercoreRun> = Vec::new();
        for run in 1..=repeat {
            eprintln!(
                "[{}/{}] percore-bench on {cores} cores, run {run}/{repeat} ...",
                index + 1,
                args.cores.len()
            );
            let outcome = qemu::run(&config, Some(Duration::from_secs(args.timeout)), false)?;
            let tail = || outcome.tail(20).join("\n    | ");
            outcome.verdict().map_err(|reason| {
                format!(
                    "percore-bench on {cores} cores failed: {reason}\n    | {}",
                    tail()
                )
            })?;
            let parsed = parse_percore_bench(&outcome.console);
            if parsed.alloc_per_core.len() != cores {
                return Err(format!(
                    "percore-bench on {cores} cores reported {} allocation rates\n    | {}",
                    parsed.alloc_per_core.len(),
                    tail()
                ));
            }
            runs.push(parsed);
        }
        let totals: Vec<f64> = runs
            .iter()
            .map(|r| r.alloc_per_core.iter().sum::<f64>())
            .collect();
        let per_core: Vec<f64> = runs
            .iter()
            .map(|r| r.alloc_per_core.iter().sum::<f64>() / cores as f64)
            .collect();
        let total = median(&totals);
        if cores == 1 {
            single_core_total = Some(total);
        }
        records.push(Record::new(
            "alloc_pairs_per_s_total",
            cores,
            "pairs/s",
            totals,
        ));
        records.push(Record::new(
            "alloc_pairs_per_s_per_core",
            cores,
            "pairs/s",
            per_core,
        ));
        if let Some(single) = single_core_total.filter(|&single| single > 0.0) {
            let efficiency: Vec<f64> = runs
                .iter()
                .map(|r| r.alloc_per_core.iter().sum::<f64>() / (cores as f64 * single))
                .collect();
            records.push(Record::new(
                "alloc_scaling_efficiency",
                cores,
                "x",
                efficiency,
            ));
        }
        for (name, unit, pick) in [
            (
                "spawn_join_local",
                "cycles",
                (|r: &PercoreRun| r.spawn_join_local) as fn(&PercoreRun) -> Option<f64>,
            ),
            ("spawn_join_remote", "cycles", |r: &PercoreRun| {
                r.spawn_join_remote
            }),
            ("yield", "cycles", |r: &PercoreRun| r.yield_cycles),
            ("remote_free_blocks_per_s", "blocks/s", |r: &PercoreRun| {
                r.remote_frees
            }),
        ] {
            let values: Vec<f64> = runs.iter().filter_map(pick).collect();
            if !values.is_empty() {
                records.push(Record::new(name, cores, unit, values));
            }
        }
    }
    Ok(records)
}

/// Boots `config` `repeat` times (once with `--quick`) and collects, from each boot, the
/// console lines `APP: NAME VALUE UNIT` of every `(NAME, UNIT)` in `measures`; returns one
/// record per measure with the median.
fn guest_measures(
    context: &Context,
    config: &QemuConfig,
    measures: &[(&'static str, &'static str)],
) -> Result<Vec<Record>, String> {
    let args = context.args;
    let repeat = if args.quick {
        1
    } else {
        usize::try_from(args.repeat).unwrap_or(1)
    };
    let app = &config.app;
    let prefix = format!("{app}:");
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); measures.len()];
    for run in 1..=repeat {
        eprintln!("[{run}/{repeat}] {app} on {} cores ...", config.cores);
        let outcome = qemu::run(config, Some(Duration::from_secs(args.timeout)), false)?;
        outcome.verdict().map_err(|reason| {
            format!(
                "{app} failed: {reason}\n    | {}",
                outcome.tail(20).join("\n    | ")
            )
        })?;
        for (index, (name, unit)) in measures.iter().enumerate() {
            let value = outcome.console.iter().find_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    [first, found, value, found_unit]
                        if *first == prefix && found == name && found_unit == unit =>
                    {
                        value.parse::<f64>().ok()
                    }
                    _ => None,
                }
            });
            runs[index].push(value.ok_or_else(|| format!("{app} printed no {name}"))?);
        }
    }
    Ok(measures
        .iter()
        .zip(runs)
        .map(|((name, unit), values)| Record::new(*name, config.cores, unit, values))
        .collect())
}

/// The blk suite: `blk-bench` on a 64 MiB image, `repeat` boots, 2 cores.
fn blk_suite(context: &Context) -> Result<Vec<Record>, String> {
    let args = context.args;
    let workspace = tools::workspace()?;
    let dir = workspace.target_dir.join("bench");
    fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let image = dir.join("blk.img");
    let file = fs::File::create(&image)
        .map_err(|error| format!("cannot create {}: {error}", image.display()))?;
    file.set_len(64 << 20)
        .map_err(|error| format!("cannot size {}: {error}", image.display()))?;
    let config = QemuConfig {
        kernel: context.kernel.clone(),
        machine: args.machine,
        cores: 2,
        mem: args.mem,
        accel: context.accel,
        app: "blk-bench".into(),
        kernel_args: Vec::new(),
        disks: vec![qemu::DiskSpec {
            path: image.display().to_string(),
            read_only: false,
        }],
        net: None,
        inject: None,
        gdb: false,
    };
    let measures = [
        ("seq_read_64k", "MB/s"),
        ("rand_read_4k_qd1", "IOPS"),
        ("rand_read_4k_qd32", "IOPS"),
    ];
    let mut records = guest_measures(context, &config, &measures)?;
    records.extend(run_host_bench(&workspace, &DRIVER_HOST_BENCH, args.quick)?);
    Ok(records)
}

/// The fs suite: `fs-bench` on an image holding a 16 MiB file and 200 small files.
fn fs_suite(context: &Context) -> Result<Vec<Record>, String> {
    let args = context.args;
    let workspace = tools::workspace()?;
    let dir = workspace.target_dir.join("bench").join("fs-content");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("small"))
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let big: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(dir.join("big.bin"), big).map_err(|error| error.to_string())?;
    for index in 0..200 {
        fs::write(
            dir.join("small").join(format!("f{index:03}.txt")),
            vec![b'a' + (index % 26) as u8; 1000],
        )
        .map_err(|error| error.to_string())?;
    }
    let image = workspace.target_dir.join("bench").join("fs.img");
    crate::mkimage::main(&crate::mkimage::MkimageArgs {
        dir: dir.clone(),
        image: image.clone(),
        size_mib: 64,
    })?;
    let config = QemuConfig {
        kernel: context.kernel.clone(),
        machine: args.machine,
        cores: 3,
        mem: args.mem,
        accel: context.accel,
        app: "fs-bench".into(),
        kernel_args: vec!["fs.disk=disk0".into()],
        disks: vec![qemu::DiskSpec {
            path: image.display().to_string(),
            read_only: false,
        }],
        net: None,
        inject: None,
        gdb: false,
    };
    let measures = [("seq_read", "MB/s"), ("small_file_reads", "files/s")];
    guest_measures(context, &config, &measures)
}

/// What one `percore-bench` boot reported.
#[derive(Debug, Default, PartialEq)]
struct PercoreRun {
    alloc_per_core: Vec<f64>,
    spawn_join_local: Option<f64>,
    spawn_join_remote: Option<f64>,
    yield_cycles: Option<f64>,
    remote_frees: Option<f64>,
}

/// Returns the measures in `percore-bench`'s console lines.
fn parse_percore_bench(lines: &[String]) -> PercoreRun {
    let mut run = PercoreRun::default();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let value = |text: &str| text.parse::<f64>().ok();
        match words.as_slice() {
            ["percore-bench:", "alloc_pairs_per_s", core, rate, "pairs/s"]
                if core.starts_with("core=") =>
            {
                if let Some(rate) = value(rate) {
                    run.alloc_per_core.push(rate);
                }
            }
            ["percore-bench:", "spawn_join_local", cycles, "cycles"] => {
                run.spawn_join_local = value(cycles).or(run.spawn_join_local);
            }
            ["percore-bench:", "spawn_join_remote", cycles, "cycles"] => {
                run.spawn_join_remote = value(cycles).or(run.spawn_join_remote);
            }
            ["percore-bench:", "yield", cycles, "cycles"] => {
                run.yield_cycles = value(cycles).or(run.yield_cycles);
            }
            ["percore-bench:", "remote_free_blocks_per_s", rate, "blocks/s"] => {
                run.remote_frees = value(rate).or(run.remote_frees);
            }
            _ => {}
        }
    }
    run
}

/// Returns `value` with as many decimals as its size and unit deserve.
fn readable(value: f64, unit: &str) -> String {
    if unit == "x" {
        format!("{value:.3}")
    } else if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Returns the median (the mean of the middle two for an even count; 0 when empty).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        count if count % 2 == 1 => sorted[count / 2],
        count => (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0,
    }
}

/// Returns `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for char in text.chars() {
        match char {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            char if u32::from(char) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(char));
            }
            char => out.push(char),
        }
    }
    out.push('"');
    out
}

/// Returns `value` as a JSON number (JSON has no NaN or infinity: those become null).
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{:.3}", value)
    } else {
        "null".into()
    }
}

/// Returns the JSON report of a suite.
fn to_json(suite: Suite, context: &Context, records: &[Record]) -> String {
    let mut json = String::from("{\n");
    let _ = writeln!(json, "  \"suite\": {},", json_string(suite.name()));
    let _ = writeln!(json, "  \"accel\": {},", json_string(context.accel.name()));
    let _ = writeln!(json, "  \"host_cpus\": {},", context.host_cpus);
    let _ = writeln!(
        json,
        "  \"machine\": {},",
        json_string(context.args.machine.name())
    );
    let profile = if context.args.debug {
        "debug"
    } else {
        "release"
    };
    let _ = writeln!(json, "  \"profile\": {},", json_string(profile));
    let _ = writeln!(
        json,
        "  \"kernel\": {},",
        json_string(&context.kernel.display().to_string())
    );
    let _ = writeln!(json, "  \"records\": [");
    for (index, record) in records.iter().enumerate() {
        let runs: Vec<String> = record.runs.iter().map(|&run| json_number(run)).collect();
        let _ = write!(
            json,
            "    {{\"name\": {}, \"cores\": {}, \"value\": {}, \"unit\": {}, \"runs\": [{}]}}",
            json_string(&record.name),
            record.cores,
            json_number(record.value),
            json_string(record.unit),
            runs.join(", ")
        );
        json.push_str(if index + 1 < records.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    json.push_str("  ]\n}\n");
    json
}

/// Returns a Markdown table of a suite: one row per core count, one column per measure.
fn to_markdown(suite: Suite, context: &Context, records: &[Record]) -> String {
    let mut names: Vec<&str> = Vec::new();
    let mut cores: Vec<usize> = Vec::new();
    // Per-pair and host measures have tables of their own.
    for record in records
        .iter()
        .filter(|r| !r.name.contains("->") && !r.name.starts_with("host/"))
    {
        if !names.contains(&record.name.as_str()) {
            names.push(&record.name);
        }
        if !cores.contains(&record.cores) {
            cores.push(record.cores);
        }
    }
    let mut markdown = format!(
        "## {} ({}, {}, {} host CPUs; medians)\n\n| cores |",
        suite.name(),
        context.accel.name(),
        context.args.machine.name(),
        context.host_cpus
    );
    for name in &names {
        let _ = write!(markdown, " {name} |");
    }
    markdown.push_str(" runs |\n|---:|");
    markdown.push_str(&"---:|".repeat(names.len()));
    markdown.push_str("---:|\n");
    for &count in &cores {
        let _ = write!(markdown, "| {count} |");
        let mut runs = 0;
        for name in &names {
            match records
                .iter()
                .find(|record| record.cores == count && record.name == *name)
            {
                Some(record) => {
                    let _ = write!(
                        markdown,
                        " {} {} |",
                        readable(record.value, record.unit),
                        record.unit
                    );
                    runs = runs.max(record.runs.len());
                }
                None => markdown.push_str(" - |"),
            }
        }
        let _ = writeln!(markdown, " {runs} |");
    }
    let host: Vec<&Record> = records
        .iter()
        .filter(|r| r.name.starts_with("host/"))
        .collect();
    if !host.is_empty() {
        markdown.push_str(
            "\n### host (two threads pinned to two CPUs)\n\n| measure | value |\n|---|---:|\n",
        );
        for record in host {
            let _ = writeln!(
                markdown,
                "| {} | {:.3} {} |",
                &record.name[5..],
                record.value,
                record.unit
            );
        }
    }
    markdown
}

/// Writes a suite's JSON and Markdown reports and prints the table.
fn write_report(
    workspace: &Workspace,
    context: &Context,
    suite: Suite,
    records: &[Record],
) -> Result<(), String> {
    let dir = workspace.target_dir.join("bench");
    fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let json_path = dir.join(format!("{}.json", suite.name()));
    let markdown_path = dir.join(format!("{}.md", suite.name()));
    let markdown = to_markdown(suite, context, records);
    fs::write(&json_path, to_json(suite, context, records))
        .map_err(|error| format!("cannot write {}: {error}", json_path.display()))?;
    fs::write(&markdown_path, &markdown)
        .map_err(|error| format!("cannot write {}: {error}", markdown_path.display()))?;
    println!("{markdown}");
    eprintln!(
        "xtask: wrote {} and {}",
        json_path.display(),
        markdown_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.5]), 7.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn escapes_json_strings() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
        assert_eq!(json_number(f64::NAN), "null");
        assert_eq!(json_number(1.23456), "1.235");
    }

    fn sample() -> (BenchArgs, Vec<Record>) {
        let args = BenchArgs {
            suite: None,
            cores: vec![1, 2],
            machine: Machine::Microvm,
            repeat: 3,
            accel: AccelChoice::Tcg,
            mem: MemSize::from_mebibytes(512),
            debug: false,
            timeout: 120,
            kernel: None,
            messages: 1000,
            quick: false,
        };
        let records = vec![
            Record::new(
                "boot_to_all_online_host_ms",
                1,
                "ms",
                vec![400.0, 380.0, 420.0],
            ),
            Record::new(
                "boot_to_all_online_kernel_ms",
                1,
                "ms",
                vec![10.0, 12.0, 11.0],
            ),
            Record::new(
                "boot_to_all_online_host_ms",
                2,
                "ms",
                vec![410.0, 390.0, 430.0],
            ),
            Record::new(
                "boot_to_all_online_kernel_ms",
                2,
                "ms",
                vec![13.0, 12.0, 14.0],
            ),
        ];
        (args, records)
    }

    #[test]
    fn writes_json_and_markdown_reports() {
        let (args, records) = sample();
        let context = Context {
            args: &args,
            kernel: PathBuf::from("/k"),
            accel: Accel::Tcg,
            host_cpus: 2,
        };
        let json = to_json(Suite::Boot, &context, &records);
        assert!(json.contains("\"suite\": \"boot\""));
        assert!(json.contains("\"accel\": \"tcg\""));
        assert!(json.contains("\"host_cpus\": 2"));
        assert!(json.contains("\"machine\": \"microvm\""));
        assert!(json.contains("\"profile\": \"release\""));
        assert!(json.contains(
            "{\"name\": \"boot_to_all_online_host_ms\", \"cores\": 1, \"value\": 400.000, \"unit\": \"ms\", \
             \"runs\": [400.000, 380.000, 420.000]},"
        ));
        assert!(json.trim_end().ends_with("]\n}"));
        let markdown = to_markdown(Suite::Boot, &context, &records);
        assert!(markdown.contains(
            "| cores | boot_to_all_online_host_ms | boot_to_all_online_kernel_ms | runs |"
        ));
        assert!(markdown.contains("| 2 | 410.0 ms | 13.0 ms | 3 |"));
    }

    #[test]
    fn parses_ipc_bench_lines() {
        let lines: Vec<String> = [
            "ipc-bench: rtt 0->1 1874 cycles 710 ns",
            "ipc-bench: throughput 0->1 8061513 messages/s",
            "ipc-bench: rtt 1->0 oops cycles 1 ns",
            "hello from core 0/2",
        ]
        .map(String::from)
        .to_vec();
        let (rtts, rates) = parse_ipc_bench(&lines);
        assert_eq!(
            rtts,
            vec![RoundTrip {
                from: 0,
                to: 1,
                cycles: 1874,
                nanos: 710
            }]
        );
        assert_eq!(
            rates,
            vec![Rate {
                from: 0,
                to: 1,
                per_second: 8_061_513
            }]
        );
    }

    #[test]
    fn parses_host_bench_records() {
        let json = "[\n  {\"name\": \"ring/throughput\", \"value\": 53.842, \"unit\": \"Mmsg/s\"},\n  {\"name\": \"ring_vs_crossbeam/throughput_ratio\", \"value\": 2.801, \"unit\": \"x\"}\n]\n";
        let records = parse_host_records(json);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].name, "host/ring/throughput");
        assert_eq!(records[0].value, 53.842);
        assert_eq!(records[1].unit, "x");
    }

    #[test]
    fn parses_percore_bench_lines() {
        let lines: Vec<String> = [
            "percore-bench: alloc_pairs_per_s core=0 3984705 pairs/s",
            "percore-bench: alloc_pairs_per_s core=1 3975054 pairs/s",
            "percore-bench: spawn_join_local 10923 cycles",
            "percore-bench: yield 5425 cycles",
            "percore-bench: remote_free_blocks_per_s 876368 blocks/s",
            "percore-bench: yield many cycles",
        ]
        .map(String::from)
        .to_vec();
        let run = parse_percore_bench(&lines);
        assert_eq!(run.alloc_per_core, vec![3_984_705.0, 3_975_054.0]);
        assert_eq!(run.spawn_join_local, Some(10_923.0));
        assert_eq!(run.spawn_join_remote, None);
        assert_eq!(run.yield_cycles, Some(5_425.0));
        assert_eq!(run.remote_frees, Some(876_368.0));
    }
}
