//! The suites that boot one app per measure: boot, ipc, percore, blk and fs.

use std::fs;
use std::time::Duration;

use super::context::{median, progress, Context, Record};
use crate::qemu::{self, QemuConfig};
use crate::tools::{self, Workspace};

/// The boot suite: boots app hello `repeat` times per core count; records the time to
/// all cores online (host and kernel) and each phase of the kernel's boot timeline.
pub(super) fn boot_suite(context: &Context) -> Result<Vec<Record>, String> {
    let args = context.args;
    let repeat = context.repeat;
    let total = context.cores.len() * repeat;
    let mut records = Vec::new();
    for (index, &cores) in context.cores.iter().enumerate() {
        let config = context.guest("hello", cores, Vec::new());
        let (mut host_runs, mut kernel_runs) = (Vec::new(), Vec::new());
        let mut timelines = Vec::new();
        for run in 1..=repeat {
            progress(
                "boot",
                index * repeat + run,
                total,
                &format!("cores={cores} repeat {run}/{repeat}"),
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
            // A kernel from before the timeline (`--kernel`) has none: then no phases.
            timelines.extend(timeline_of(&outcome.console));
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
        if !timelines.is_empty() {
            records.extend(timeline_records(cores, &timelines));
        }
    }
    Ok(records)
}

/// Returns the kernel's boot timeline in `console`: the total and each phase, in ms.
fn timeline_of(console: &[String]) -> Option<(f64, Vec<(String, f64)>)> {
    console
        .iter()
        .find_map(|line| match crate::markers::parse_line(line) {
            Some(crate::markers::Marker::Timeline { total_ms, phases }) => Some((total_ms, phases)),
            _ => None,
        })
}

/// Returns one record per timeline phase (`timeline/<phase>`, in the order the kernel
/// printed them) and one for the whole (`timeline/all_phases`), each the median over
/// the runs that had it.
fn timeline_records(cores: usize, timelines: &[(f64, Vec<(String, f64)>)]) -> Vec<Record> {
    let mut names: Vec<&str> = Vec::new();
    for (_, phases) in timelines {
        for (name, _) in phases {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let mut records: Vec<Record> = names
        .iter()
        .map(|&name| {
            let runs = timelines
                .iter()
                .filter_map(|(_, phases)| {
                    phases
                        .iter()
                        .find(|(phase, _)| phase == name)
                        .map(|&(_, ms)| ms)
                })
                .collect();
            Record::new(format!("timeline/{name}"), cores, "ms", runs)
        })
        .collect();
    let totals = timelines.iter().map(|&(total, _)| total).collect();
    records.push(Record::new("timeline/all_phases", cores, "ms", totals));
    records
}

/// The ipc suite: the host bench of the ring against other channels, then `ipc-bench`
/// in the guest at each core count of at least 2.
pub(super) fn ipc_suite(context: &Context) -> Result<Vec<Record>, String> {
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
        progress(
            "ipc",
            index + 1,
            counts.len(),
            &format!("cores={cores}: {pairs} pairs, {messages} messages each"),
        );
        let config = context.guest("ipc-bench", cores, vec![format!("messages={messages}")]);
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
pub(super) fn percore_suite(context: &Context) -> Result<Vec<Record>, String> {
    let args = context.args;
    let repeat = context.repeat;
    let ops = if args.quick { 200_000 } else { 2_000_000 };
    let mut records = Vec::new();
    let mut single_core_total = None;
    for (index, &cores) in context.cores.iter().enumerate() {
        let config = context.guest("percore-bench", cores, vec![format!("ops={ops}")]);
        let mut runs: Vec<PercoreRun> = Vec::new();
        for run in 1..=repeat {
            progress(
                "percore",
                index * repeat + run,
                context.cores.len() * repeat,
                &format!("cores={cores} repeat {run}/{repeat}"),
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
    let repeat = context.repeat;
    let app = &config.app;
    let prefix = format!("{app}:");
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); measures.len()];
    for run in 1..=repeat {
        progress(
            app,
            run,
            repeat,
            &format!("cores={} repeat {run}/{repeat}", config.cores),
        );
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
        .map(|((name, unit), values)| Record::new(*name, config.cores, *unit, values))
        .collect())
}

/// The blk suite: `blk-bench` on a 64 MiB image, `repeat` boots, 2 cores.
pub(super) fn blk_suite(context: &Context) -> Result<Vec<Record>, String> {
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
    let mut config = context.guest("blk-bench", 2, Vec::new());
    config.disks = vec![qemu::DiskSpec {
        path: image.display().to_string(),
        read_only: false,
    }];
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
pub(super) fn fs_suite(context: &Context) -> Result<Vec<Record>, String> {
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
    let mut config = context.guest("fs-bench", 3, vec!["fs.disk=disk0".into()]);
    config.disks = vec![qemu::DiskSpec {
        path: image.display().to_string(),
        read_only: false,
    }];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_records_take_medians_per_phase() {
        let console: Vec<String> = vec![
            "manada: 2 cores online in 0.90 ms".into(),
            "manada: boot 2.00 ms: acpi 0.50, tsc 1.00, aps 0.50".into(),
        ];
        let first = timeline_of(&console).unwrap();
        let timelines = vec![
            first,
            (3.0, vec![("acpi".into(), 0.7), ("tsc".into(), 2.0)]),
            (
                4.0,
                vec![
                    ("acpi".into(), 0.6),
                    ("tsc".into(), 3.0),
                    ("aps".into(), 0.4),
                ],
            ),
        ];
        let records = timeline_records(2, &timelines);
        let names: Vec<&str> = records.iter().map(|record| record.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "timeline/acpi",
                "timeline/tsc",
                "timeline/aps",
                "timeline/all_phases"
            ]
        );
        assert_eq!(records[0].value, 0.6);
        assert_eq!(records[1].value, 2.0);
        assert_eq!(records[2].runs, vec![0.5, 0.4]);
        assert_eq!(records[2].value, 0.45);
        assert_eq!(records[3].value, 3.0);
        assert!(records
            .iter()
            .all(|record| record.cores == 2 && record.unit == "ms"));
        assert_eq!(
            timeline_of(&["manada: 1 core online in 1 ms".to_string()]),
            None
        );
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
