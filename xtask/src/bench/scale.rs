//! The scale suite: app `scale` booted at each core count, its five workloads' rates
//! per core and in total, and scaling efficiency against the fewest cores measured.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use super::context::{median, progress, Context, Record};
use super::{plot, report};
use crate::qemu;

/// A workload of app `scale` (apps/src/scale.rs) and how many cores do it.
struct Workload {
    name: &'static str,
    /// Returns how many cores report a rate for it at `cores` cores.
    workers: fn(usize) -> usize,
}

/// The workloads, in the order the app runs them.
const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "compute",
        workers: |cores| cores,
    },
    Workload {
        name: "pingpong",
        workers: across_cores,
    },
    Workload {
        name: "alloc",
        workers: |cores| cores,
    },
    // The last core serves; every other core calls.
    Workload {
        name: "rpc",
        workers: |cores| cores.saturating_sub(1),
    },
    Workload {
        name: "spawn",
        workers: across_cores,
    },
];

/// Every core, for workloads that need a second core (none on one).
fn across_cores(cores: usize) -> usize {
    if cores >= 2 {
        cores
    } else {
        0
    }
}

/// Guest time per workload, in milliseconds.
const DURATION_MS: u64 = 500;
const QUICK_DURATION_MS: u64 = 200;

/// A rate line of app `scale`: `scale: WORKLOAD core=K RATE UNIT` or
/// `scale: WORKLOAD total RATE UNIT` (`core` is `None`).
#[derive(Clone, Debug, PartialEq)]
struct Line {
    workload: String,
    core: Option<usize>,
    rate: f64,
    unit: String,
}

/// Returns the rate lines in `scale`'s console output.
fn parse_lines(lines: &[String]) -> Vec<Line> {
    lines
        .iter()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let ["scale:", workload, which, rate, unit] = words.as_slice() else {
                return None;
            };
            let core = match *which {
                "total" => None,
                which => Some(which.strip_prefix("core=")?.parse().ok()?),
            };
            Some(Line {
                workload: workload.to_string(),
                core,
                rate: rate.parse().ok()?,
                unit: unit.to_string(),
            })
        })
        .collect()
}

/// What one boot measured for one workload.
#[derive(Clone, Debug, PartialEq)]
struct Measured {
    total: f64,
    workers: usize,
    unit: String,
}

/// Returns each workload's total from one boot at `cores` cores, after checking that
/// every core that should report did so once and that the total is their sum.
fn check_run(lines: &[Line], cores: usize) -> Result<BTreeMap<&'static str, Measured>, String> {
    let mut measured = BTreeMap::new();
    for workload in &WORKLOADS {
        let workers = (workload.workers)(cores);
        let mine: Vec<&Line> = lines
            .iter()
            .filter(|line| line.workload == workload.name)
            .collect();
        let mut reporting: Vec<usize> = mine.iter().filter_map(|line| line.core).collect();
        reporting.sort_unstable();
        reporting.dedup();
        let per_core = mine.iter().filter(|line| line.core.is_some()).count();
        if per_core != workers || reporting.len() != workers {
            return Err(format!(
                "{}: {per_core} per-core rates from {} cores, expected one from each of {workers}",
                workload.name,
                reporting.len()
            ));
        }
        if workers == 0 {
            continue;
        }
        let sum: f64 = mine
            .iter()
            .filter(|line| line.core.is_some())
            .map(|line| line.rate)
            .sum();
        let total = mine
            .iter()
            .find(|line| line.core.is_none())
            .ok_or_else(|| format!("{}: no total", workload.name))?;
        if (total.rate - sum).abs() > 0.5 {
            return Err(format!(
                "{}: total {} is not the sum {sum} of the cores' rates",
                workload.name, total.rate
            ));
        }
        measured.insert(
            workload.name,
            Measured {
                total: total.rate,
                workers,
                unit: total.unit.clone(),
            },
        );
    }
    Ok(measured)
}

/// Returns the records of all boots: `runs[i]` holds the boots at `counts[i]` cores.
/// Efficiency is the rate per working core over that of the fewest cores measured (at
/// one core: throughput(N) / (N x throughput(1))).
fn records(counts: &[usize], runs: &[Vec<BTreeMap<&'static str, Measured>>]) -> Vec<Record> {
    let mut records = Vec::new();
    for workload in &WORKLOADS {
        let mut baseline: Option<f64> = None;
        for (&cores, boots) in counts.iter().zip(runs) {
            let measured: Vec<&Measured> = boots
                .iter()
                .filter_map(|boot| boot.get(workload.name))
                .collect();
            let Some(first) = measured.first() else {
                continue;
            };
            let unit = first.unit.clone();
            let totals: Vec<f64> = measured.iter().map(|m| m.total).collect();
            let per_core: Vec<f64> = measured
                .iter()
                .map(|m| m.total / m.workers.max(1) as f64)
                .collect();
            let base = *baseline.get_or_insert(median(&per_core));
            let name = workload.name;
            records.push(Record::new(format!("{name}/total"), cores, &unit, totals));
            if base > 0.0 {
                let efficiency = per_core.iter().map(|rate| rate / base).collect();
                records.push(Record::new(
                    format!("{name}/per_core"),
                    cores,
                    &unit,
                    per_core,
                ));
                records.push(Record::new(
                    format!("{name}/efficiency"),
                    cores,
                    "x",
                    efficiency,
                ));
            }
        }
    }
    records
}

/// The scale suite: app `scale` booted `repeat` times at each core count.
pub(super) fn scale_suite(context: &Context) -> Result<Vec<Record>, String> {
    let args = context.args;
    let duration = if args.quick {
        QUICK_DURATION_MS
    } else {
        DURATION_MS
    };
    let total = context.cores.len() * context.repeat;
    let mut runs = Vec::new();
    for (index, &cores) in context.cores.iter().enumerate() {
        let config = context.guest("scale", cores, vec![format!("duration_ms={duration}")]);
        let mut boots = Vec::new();
        for run in 1..=context.repeat {
            progress(
                "scale",
                index * context.repeat + run,
                total,
                &format!("cores={cores} repeat {run}/{}", context.repeat),
            );
            let outcome = qemu::run(&config, Some(Duration::from_secs(args.timeout)), false)?;
            let tail = || outcome.tail(20).join("\n    | ");
            let measured = outcome
                .verdict()
                .and_then(|()| check_run(&parse_lines(&outcome.console), cores))
                .map_err(|reason| {
                    format!("scale on {cores} cores failed: {reason}\n    | {}", tail())
                })?;
            boots.push(measured);
        }
        runs.push(boots);
    }
    Ok(records(&context.cores, &runs))
}

/// Checks a scale run's output folder, for `cargo xtask test`: `scale.json` holds a
/// positive total for every workload at every count of `cores` where it runs, and
/// efficiency 1 at the fewest cores; both plots are well-formed SVG with a line per
/// workload; `report.md` has the scale table and links the plots.
pub fn check_smoke_run(dir: &Path, cores: &[usize]) -> Result<(), String> {
    let read = |name: &str| {
        fs::read_to_string(dir.join(name)).map_err(|error| format!("cannot read {name}: {error}"))
    };
    let report = report::parse_json(&read("scale.json")?)?;
    if report.environment.suite != "scale" {
        return Err(format!("scale.json is suite {}", report.environment.suite));
    }
    let find = |name: &str, count: usize| {
        report
            .records
            .iter()
            .find(|record| record.name == name && record.cores == count)
    };
    let mut lines = 0;
    for workload in &WORKLOADS {
        let counts: Vec<usize> = cores
            .iter()
            .copied()
            .filter(|&count| (workload.workers)(count) > 0)
            .collect();
        for &count in &counts {
            let name = format!("{}/total", workload.name);
            match find(&name, count) {
                Some(record) if record.value > 0.0 && !record.runs.is_empty() => {}
                other => return Err(format!("{name} at {count} cores: {other:?}")),
            }
        }
        if let Some(&fewest) = counts.first() {
            lines += 1;
            let name = format!("{}/efficiency", workload.name);
            match find(&name, fewest) {
                Some(record) if (record.value - 1.0).abs() < 1e-9 => {}
                other => return Err(format!("{name} at {fewest} cores: {other:?}")),
            }
        }
    }
    for name in ["scale-throughput.svg", "scale-efficiency.svg"] {
        let root = plot::xml::parse(&read(name)?).map_err(|error| format!("{name}: {error}"))?;
        let drawn = root
            .all()
            .into_iter()
            .filter(|element| element.attribute("class") == Some("series"))
            .count();
        if root.name != "svg" || drawn != lines {
            return Err(format!("{name}: {drawn} lines, expected {lines}"));
        }
    }
    let markdown = read("report.md")?;
    if !markdown.contains("## scale") || !markdown.contains("(scale-throughput.svg)") {
        return Err("report.md lacks the scale table or its plot".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    const TWO_CORES: &str = "\
scale: 2 cores, 300 ms per workload
scale: compute core=0 430 ops/s
scale: compute core=1 440 ops/s
scale: compute total 870 ops/s
scale: pingpong core=0 1375309 msgs/s
scale: pingpong core=1 1375300 msgs/s
scale: pingpong total 2750609 msgs/s
scale: alloc core=0 2639165 pairs/s
scale: alloc core=1 2221698 pairs/s
scale: alloc total 4860863 pairs/s
scale: rpc core=0 982725 calls/s
scale: rpc total 982725 calls/s
scale: spawn core=0 10876 spawns/s
scale: spawn core=1 10879 spawns/s
scale: spawn total 21755 spawns/s
manada: app scale finished: success";

    const ONE_CORE: &str = "\
scale: compute core=0 400 ops/s
scale: compute total 400 ops/s
scale: pingpong skipped: it needs 2 cores
scale: alloc core=0 3000000 pairs/s
scale: alloc total 3000000 pairs/s
scale: rpc skipped: it needs 2 cores
scale: spawn skipped: it needs 2 cores";

    #[test]
    fn parses_rate_lines_only() {
        let lines = parse_lines(&console(
            "scale: rpc core=2 5 calls/s\nscale: rpc total 5 calls/s\nscale: rpc core=x 5 calls/s\n\
             scale: pingpong skipped: it needs 2 cores\nhello from core 0/2",
        ));
        assert_eq!(
            lines,
            vec![
                Line {
                    workload: "rpc".into(),
                    core: Some(2),
                    rate: 5.0,
                    unit: "calls/s".into()
                },
                Line {
                    workload: "rpc".into(),
                    core: None,
                    rate: 5.0,
                    unit: "calls/s".into()
                },
            ]
        );
    }

    #[test]
    fn checks_every_worker_reported_and_totals_add_up() {
        let two = check_run(&parse_lines(&console(TWO_CORES)), 2).unwrap();
        assert_eq!(two.len(), 5);
        assert_eq!(two["rpc"].workers, 1);
        assert_eq!(two["compute"].total, 870.0);
        assert_eq!(two["spawn"].unit, "spawns/s");
        let one = check_run(&parse_lines(&console(ONE_CORE)), 1).unwrap();
        assert_eq!(
            one.keys().copied().collect::<Vec<_>>(),
            vec!["alloc", "compute"]
        );
        // At 4 cores two cores are missing.
        assert!(check_run(&parse_lines(&console(TWO_CORES)), 4).is_err());
        let wrong_total = TWO_CORES.replace("compute total 870", "compute total 900");
        assert!(check_run(&parse_lines(&console(&wrong_total)), 2)
            .unwrap_err()
            .contains("not the sum"));
        let twice = TWO_CORES.replace("compute core=1", "compute core=0");
        assert!(check_run(&parse_lines(&console(&twice)), 2).is_err());
        let no_total = TWO_CORES.replace("scale: alloc total 4860863 pairs/s", "");
        assert!(check_run(&parse_lines(&console(&no_total)), 2).is_err());
    }

    #[test]
    fn efficiency_is_per_working_core_over_the_fewest_cores() {
        let one = check_run(&parse_lines(&console(ONE_CORE)), 1).unwrap();
        let two = check_run(&parse_lines(&console(TWO_CORES)), 2).unwrap();
        let records = records(&[1, 2], &[vec![one], vec![two.clone(), two]]);
        let find = |name: &str, cores: usize| {
            records
                .iter()
                .find(|record| record.name == name && record.cores == cores)
                .unwrap_or_else(|| panic!("{name} at {cores}"))
        };
        assert_eq!(find("compute/efficiency", 1).value, 1.0);
        // 870 over 2 x 400.
        assert!((find("compute/efficiency", 2).value - 870.0 / 800.0).abs() < 1e-12);
        assert_eq!(find("compute/total", 2).runs, vec![870.0, 870.0]);
        assert_eq!(find("compute/per_core", 2).value, 435.0);
        // Workloads that need two cores start at two: efficiency 1 there.
        assert_eq!(find("rpc/efficiency", 2).value, 1.0);
        assert_eq!(find("rpc/per_core", 2).unit, "calls/s");
        assert!(records
            .iter()
            .all(|record| !(record.name.starts_with("rpc") && record.cores == 1)));
        assert_eq!(records.len(), 2 * 3 * 2 + 3 * 3);
    }

    #[test]
    fn smoke_check_reads_back_what_the_suite_writes() {
        use crate::bench::report::{self, environment, SuiteReport};
        let one = check_run(&parse_lines(&console(ONE_CORE)), 1).unwrap();
        let two = check_run(&parse_lines(&console(TWO_CORES)), 2).unwrap();
        let write = |records: Vec<Record>| {
            let dir = std::env::temp_dir().join(format!("xtask-smoke-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let report = SuiteReport {
                environment: environment("scale", 2),
                records,
            };
            fs::write(dir.join("scale.json"), report::to_json(&report)).unwrap();
            for (name, svg) in plot::suite_plots(&report) {
                fs::write(dir.join(name), svg).unwrap();
            }
            report::write_combined(&dir).unwrap();
            dir
        };
        let all = records(&[1, 2], &[vec![one], vec![two]]);
        let dir = write(all.clone());
        assert_eq!(check_smoke_run(&dir, &[1, 2]), Ok(()));
        let without_rpc: Vec<Record> = all
            .iter()
            .filter(|record| record.name != "rpc/total")
            .cloned()
            .collect();
        let dir = write(without_rpc);
        assert!(check_smoke_run(&dir, &[1, 2])
            .unwrap_err()
            .contains("rpc/total"));
        let dir = write(all);
        fs::write(dir.join("scale-efficiency.svg"), "<svg><g></svg>").unwrap();
        assert!(check_smoke_run(&dir, &[1, 2]).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
