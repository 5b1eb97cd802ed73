//! Bench reports: each suite's JSON and Markdown, read back to build the combined
//! `report.md` (a table per suite, its environment, links to its plots).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::context::{oversubscription, Context, Record, Suite};
use super::http::LISTEN_OVERFLOWS;
use crate::tools;

/// Where and how a suite was measured.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Environment {
    pub suite: String,
    /// `kvm` or `tcg`.
    pub accel: String,
    pub host_cpus: usize,
    pub machine: String,
    /// `release` or `debug`.
    pub profile: String,
    pub kernel: String,
    /// When the run started, UTC.
    pub date: String,
    /// The commit measured (`-dirty` when the work tree had changes).
    pub commit: String,
}

/// A suite's environment and records, as written to and read back from its JSON.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct SuiteReport {
    pub environment: Environment,
    pub records: Vec<Record>,
}

impl SuiteReport {
    /// Returns the report of `suite`'s `records` measured in `context`.
    pub fn new(context: &Context, suite: &str, records: &[Record]) -> SuiteReport {
        let profile = if context.args.debug {
            "debug"
        } else {
            "release"
        };
        SuiteReport {
            environment: Environment {
                suite: suite.into(),
                accel: context.accel.name().into(),
                host_cpus: context.host_cpus,
                machine: context.args.machine.name().into(),
                profile: profile.into(),
                kernel: context.kernel.display().to_string(),
                date: context.date.clone(),
                commit: context.commit.clone(),
            },
            records: records.to_vec(),
        }
    }

    /// Returns the warning for this report's most cores, if they exceed the host's CPUs.
    fn warning(&self) -> Option<String> {
        let most = self.records.iter().map(|record| record.cores).max()?;
        oversubscription(most, self.environment.host_cpus)
    }
}

/// Returns `value` with as many decimals as its size and unit deserve.
fn readable(value: f64, unit: &str) -> String {
    if unit == "x" {
        format!("{value:.3}")
    } else if matches!(unit, "bytes" | "sockets" | "errors" | "drops" | "segments") {
        // Counts: every digit matters (a heap that grew by a few bytes).
        format!("{value:.0}")
    } else if value.abs() >= 1e9 {
        format!("{:.2} G", value / 1e9)
    } else if value.abs() >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
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
        format!("{value:.3}")
    } else {
        "null".into()
    }
}

/// Returns the JSON report of a suite: the environment, then one record per line.
pub(super) fn to_json(report: &SuiteReport) -> String {
    let environment = &report.environment;
    let mut json = String::from("{\n");
    for (key, value) in [
        ("suite", &environment.suite),
        ("accel", &environment.accel),
        ("machine", &environment.machine),
        ("profile", &environment.profile),
        ("kernel", &environment.kernel),
        ("date", &environment.date),
        ("git_commit", &environment.commit),
    ] {
        let _ = writeln!(json, "  \"{key}\": {},", json_string(value));
    }
    let _ = writeln!(json, "  \"host_cpus\": {},", environment.host_cpus);
    let _ = writeln!(json, "  \"records\": [");
    for (index, record) in report.records.iter().enumerate() {
        let runs: Vec<String> = record.runs.iter().map(|&run| json_number(run)).collect();
        let _ = write!(
            json,
            "    {{\"name\": {}, \"cores\": {}, \"value\": {}, \"unit\": {}, \"runs\": [{}]}}",
            json_string(&record.name),
            record.cores,
            json_number(record.value),
            json_string(&record.unit),
            runs.join(", ")
        );
        json.push_str(if index + 1 < report.records.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    json.push_str("  ]\n}\n");
    json
}

/// Returns the number after `"key":` in `text`.
fn json_number_field(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(&format!("\"{key}\":"))? + key.len() + 3..];
    let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Returns the report in a suite's JSON as [`to_json`] writes it (older files without
/// a date or commit read as `unknown`).
pub(super) fn parse_json(json: &str) -> Result<SuiteReport, String> {
    let (header, body) = json
        .split_once("\"records\"")
        .ok_or("no \"records\" in the JSON")?;
    let field =
        |key: &str| tools::json_string_field(header, key).unwrap_or_else(|| "unknown".to_string());
    let suite = tools::json_string_field(header, "suite").ok_or("no \"suite\" in the JSON")?;
    let host_cpus = json_number_field(header, "host_cpus").ok_or("no \"host_cpus\"")?;
    let mut records = Vec::new();
    for line in body.lines().filter(|line| line.contains("\"name\"")) {
        let bad = || format!("bad record line: {}", line.trim());
        let name = tools::json_string_field(line, "name").ok_or_else(bad)?;
        let unit = tools::json_string_field(line, "unit").ok_or_else(bad)?;
        let cores = json_number_field(line, "cores").ok_or_else(bad)?;
        let value = json_number_field(line, "value").ok_or_else(bad)?;
        let runs_text = line
            .split_once("\"runs\": [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(runs, _)| runs)
            .ok_or_else(bad)?;
        let runs = runs_text
            .split(',')
            .filter_map(|run| run.trim().parse::<f64>().ok())
            .collect();
        records.push(Record {
            name,
            cores: cores as usize,
            value,
            unit,
            runs,
        });
    }
    Ok(SuiteReport {
        environment: Environment {
            suite,
            accel: field("accel"),
            host_cpus: host_cpus as usize,
            machine: field("machine"),
            profile: field("profile"),
            kernel: field("kernel"),
            date: field("date"),
            commit: field("git_commit"),
        },
        records,
    })
}

/// Returns the Markdown of a suite: a table of its measures, per-pair and host measures
/// left to the JSON and the host table.
///
/// Measures named `GROUP/MEASURE` (the scale suite's `compute/total`, ...) get one row per
/// group and core count; the others one row per core count and a column each.
pub(super) fn to_markdown(report: &SuiteReport) -> String {
    let environment = &report.environment;
    // The heading is the bare name, so `#suite` links to it.
    let mut markdown = format!(
        "## {}\n\n{}, {}, {} host CPUs, {} kernel; medians. Measured {} at commit {}.\n\n",
        environment.suite,
        environment.accel,
        environment.machine,
        environment.host_cpus,
        environment.profile,
        environment.date,
        environment.commit
    );
    if let Some(warning) = report.warning() {
        let _ = writeln!(markdown, "> **Warning:** {warning}.\n");
    }
    let shown = |record: &&Record| {
        !record.name.contains("->")
            && !record.name.starts_with("host/")
            && !record.name.starts_with("breakdown/")
    };
    let (grouped, plain): (Vec<&Record>, Vec<&Record>) = report
        .records
        .iter()
        .filter(shown)
        .partition(|record| record.name.contains('/'));
    if !plain.is_empty() {
        markdown.push_str(&plain_table(&plain));
    }
    if !grouped.is_empty() {
        if !plain.is_empty() {
            markdown.push('\n');
        }
        markdown.push_str(&grouped_table(&grouped));
    }
    let host_drops: f64 = report
        .records
        .iter()
        .filter(|record| record.name.ends_with(&format!("/{LISTEN_OVERFLOWS}")))
        .flat_map(|record| &record.runs)
        .sum();
    if host_drops > 0.0 {
        markdown.push_str(
            "\n> **Note:** `listen_overflows` counts handshakes the host dropped at the \
             forwarded port before QEMU accepted them: QEMU's user networking listens with a \
             backlog of one, and wrk opens its 16 connections at once. Each drop is a TCP \
             retransmission on the host (0.2 s, then doubling; 1 s for a connection request) \
             before the guest sees the connection: that wait is in `max`, and in `p99` where \
             the waits add up to more than 1% of the run (wrk counts a wait as the requests \
             the connection would have sent meanwhile). The counters are the host's, so only \
             a quiet host's mean this.\n",
        );
    }
    let breakdown: Vec<&Record> = report
        .records
        .iter()
        .filter(|record| record.name.starts_with("breakdown/"))
        .collect();
    if !breakdown.is_empty() {
        markdown.push_str(&breakdown_table(&breakdown));
    }
    let host: Vec<&Record> = report
        .records
        .iter()
        .filter(|record| record.name.starts_with("host/"))
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

/// The per-request breakdown: one row per measure, one column per core count.
fn breakdown_table(records: &[&Record]) -> String {
    let measures = unique(
        records
            .iter()
            .map(|record| &record.name["breakdown/".len()..]),
    );
    let mut cores = unique(records.iter().map(|record| record.cores));
    cores.sort_unstable();
    let mut table = String::from(
        "\n### per request (keep-alive runs)\n\n`vcpuK_cpu`: host CPU of vCPU K; `qemu_main_cpu`: \
         QEMU's main thread (user networking, device emulation). With `--trace`, the guest's \
         counters per request: cross-core calls (`net_calls`, `fs_calls`), requests handed \
         to a worker, cache hits, frames, device notifications, and thousands of TSC cycles \
         of the net core's work.\n\n| measure |",
    );
    for count in &cores {
        let _ = write!(table, " {count} cores |");
    }
    table.push_str("\n|---|");
    table.push_str(&"---:|".repeat(cores.len()));
    table.push('\n');
    for measure in measures {
        let _ = write!(table, "| {measure} |");
        for &count in &cores {
            let found = records.iter().find(|record| {
                record.cores == count && &record.name["breakdown/".len()..] == measure
            });
            let _ = write!(table, " {} |", cell(found));
        }
        table.push('\n');
    }
    table
}

/// Returns the items of `items` once each, in the order they first appear.
fn unique<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// Returns `record`'s value and unit as a table cell.
fn cell(record: Option<&&Record>) -> String {
    match record {
        Some(record) if record.unit == "x" => readable(record.value, &record.unit),
        Some(record) => format!("{} {}", readable(record.value, &record.unit), record.unit),
        None => "-".into(),
    }
}

/// One row per core count, one column per measure.
fn plain_table(records: &[&Record]) -> String {
    let names = unique(records.iter().map(|record| record.name.as_str()));
    let cores = unique(records.iter().map(|record| record.cores));
    let mut table = String::from("| cores |");
    for name in &names {
        let _ = write!(table, " {name} |");
    }
    table.push_str(" runs |\n|---:|");
    table.push_str(&"---:|".repeat(names.len() + 1));
    table.push('\n');
    for &count in &cores {
        let row: Vec<&&Record> = names
            .iter()
            .filter_map(|name| {
                records
                    .iter()
                    .find(|record| record.cores == count && record.name == *name)
            })
            .collect();
        let _ = write!(table, "| {count} |");
        for name in &names {
            let found = row.iter().copied().find(|record| record.name == *name);
            let _ = write!(table, " {} |", cell(found));
        }
        let runs = row
            .iter()
            .map(|record| record.runs.len())
            .max()
            .unwrap_or(0);
        let _ = writeln!(table, " {runs} |");
    }
    table
}

/// One row per group and core count, one column per measure of the groups.
fn grouped_table(records: &[&Record]) -> String {
    let split = |record: &Record| -> (String, String) {
        let (group, measure) = record.name.split_once('/').unwrap_or(("", &record.name));
        (group.to_string(), measure.to_string())
    };
    let groups = unique(records.iter().map(|record| split(record).0));
    let measures = unique(records.iter().map(|record| split(record).1));
    let mut table = String::from("| workload | cores |");
    for measure in &measures {
        let _ = write!(table, " {} |", measure.replace('_', " "));
    }
    table.push_str(" runs |\n|---|---:|");
    table.push_str(&"---:|".repeat(measures.len() + 1));
    table.push('\n');
    for group in &groups {
        let in_group: Vec<&&Record> = records
            .iter()
            .filter(|record| split(record).0 == *group)
            .collect();
        for count in unique(in_group.iter().map(|record| record.cores)) {
            let _ = write!(table, "| {group} | {count} |");
            let mut runs = 0;
            for measure in &measures {
                let found = in_group
                    .iter()
                    .copied()
                    .find(|record| record.cores == count && split(record).1 == *measure);
                runs = runs.max(found.map_or(0, |record| record.runs.len()));
                let _ = write!(table, " {} |", cell(found));
            }
            let _ = writeln!(table, " {runs} |");
        }
    }
    table
}

/// Returns the combined report of `reports`, each with the plots in `plots` that start
/// with its suite's name.
pub(super) fn combined(reports: &[SuiteReport], plots: &[String]) -> String {
    let mut markdown = String::from(
        "# Manada benchmarks\n\nWritten by `cargo xtask bench` from the JSON files beside it. \
         Under TCG only ratios and medians mean much; absolute figures mean something only \
         under KVM. Scaling efficiency at N cores is the throughput at N over N times the \
         throughput at one core (per working core, over the smallest core count measured, \
         for workloads that need two cores).\n\n\
         | suite | accel | host CPUs | machine | kernel | date | commit |\n\
         |---|---|---:|---|---|---|---|\n",
    );
    for report in reports {
        let environment = &report.environment;
        let _ = writeln!(
            markdown,
            "| [{suite}](#{suite}) | {} | {} | {} | {} | {} | {} |",
            environment.accel,
            environment.host_cpus,
            environment.machine,
            environment.profile,
            environment.date,
            environment.commit,
            suite = environment.suite,
        );
    }
    for report in reports {
        markdown.push('\n');
        markdown.push_str(&to_markdown(report));
        let prefix = format!("{}-", report.environment.suite);
        let own: Vec<&String> = plots
            .iter()
            .filter(|plot| plot.starts_with(&prefix))
            .collect();
        if !own.is_empty() {
            markdown.push('\n');
            for plot in own {
                let _ = writeln!(markdown, "![{plot}]({plot})");
            }
        }
    }
    markdown
}

/// Returns the suites' names in report order: the known suites first, then the others.
fn report_order(name: &str) -> (usize, String) {
    let position = Suite::ALL
        .iter()
        .position(|suite| suite.name() == name)
        .unwrap_or(Suite::ALL.len());
    (position, name.to_string())
}

/// Rewrites `dir/report.md` from every `*.json` suite report in `dir`.
pub(super) fn write_combined(dir: &Path) -> Result<(), String> {
    let entries =
        fs::read_dir(dir).map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    let mut reports = Vec::new();
    let mut plots = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".svg") {
            plots.push(name);
        } else if let Some(stem) = name.strip_suffix(".json") {
            // Host benches' raw output (`ring-host.json`) is not a suite report.
            let Ok(text) = fs::read_to_string(entry.path()) else {
                continue;
            };
            match parse_json(&text) {
                Ok(report) if report.environment.suite == stem => reports.push(report),
                _ => {}
            }
        }
    }
    reports.sort_by_key(|report| report_order(&report.environment.suite));
    plots.sort();
    let path = dir.join("report.md");
    fs::write(&path, combined(&reports, &plots))
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Returns `seconds` since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
fn utc_date(seconds: u64) -> String {
    let percore::time::DateTime {
        year,
        month,
        day,
        hour,
        minute,
        ..
    } = percore::time::DateTime::from_unix_seconds(seconds);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// Returns the current date and time, UTC.
pub(super) fn utc_now() -> String {
    utc_date(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
    )
}

/// Returns the checked-out commit of the repository at `root` (with `-dirty` when
/// tracked files changed), or `unknown`.
pub(super) fn git_commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        _ => "unknown".into(),
    }
}

/// An environment for the tests of the bench modules: TCG on q35, a release kernel.
#[cfg(test)]
pub(super) fn environment(suite: &str, host_cpus: usize) -> Environment {
    Environment {
        suite: suite.into(),
        accel: "tcg".into(),
        host_cpus,
        machine: "q35".into(),
        profile: "release".into(),
        kernel: "/k \"quoted\"".into(),
        date: "2026-12-01 10:00 UTC".into(),
        commit: "abc123".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot_report() -> SuiteReport {
        SuiteReport {
            environment: environment("boot", 2),
            records: vec![
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
            ],
        }
    }

    fn scale_report() -> SuiteReport {
        SuiteReport {
            environment: environment("scale", 2),
            records: vec![
                Record::new("compute/total", 1, "ops/s", vec![4.0e8]),
                Record::new("compute/efficiency", 1, "x", vec![1.0]),
                Record::new("compute/total", 4, "ops/s", vec![8.0e8]),
                Record::new("compute/efficiency", 4, "x", vec![0.5]),
                Record::new("rpc/total", 4, "calls/s", vec![4.0e5]),
            ],
        }
    }

    #[test]
    fn escapes_json_strings() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
        assert_eq!(json_number(f64::NAN), "null");
        assert_eq!(json_number(1.23456), "1.235");
    }

    #[test]
    fn json_reports_round_trip() {
        for report in [boot_report(), scale_report()] {
            let json = to_json(&report);
            assert!(json.contains("\"accel\": \"tcg\""));
            assert!(json.contains("\"git_commit\": \"abc123\""));
            assert!(json.trim_end().ends_with("]\n}"));
            assert_eq!(parse_json(&json).unwrap(), report);
        }
        let json = to_json(&boot_report());
        assert!(json.contains(
            "{\"name\": \"boot_to_all_online_host_ms\", \"cores\": 1, \"value\": 400.000, \"unit\": \"ms\", \
             \"runs\": [400.000, 380.000, 420.000]},"
        ));
    }

    #[test]
    fn reads_older_reports_and_refuses_other_json() {
        let old = "{\n  \"suite\": \"percore\",\n  \"accel\": \"tcg\",\n  \"host_cpus\": 2,\n  \"records\": [\n    {\"name\": \"yield\", \"cores\": 1, \"value\": 2227.000, \"unit\": \"cycles\", \"runs\": [2227.000, null]}\n  ]\n}\n";
        let report = parse_json(old).unwrap();
        assert_eq!(report.environment.date, "unknown");
        assert_eq!(report.records[0].runs, vec![2227.0]);
        assert!(parse_json("[{\"name\": \"ring\", \"value\": 1}]").is_err());
        assert!(parse_json("{\"suite\": \"x\", \"records\": [\n{\"name\": \"y\"}\n]}").is_err());
    }

    #[test]
    fn markdown_tables_per_core_count_and_per_workload() {
        let markdown = to_markdown(&boot_report());
        assert!(markdown.contains(
            "| cores | boot_to_all_online_host_ms | boot_to_all_online_kernel_ms | runs |"
        ));
        assert!(markdown.contains("| 2 | 410.0 ms | 13.0 ms | 3 |"));
        assert!(markdown.starts_with("## boot\n\ntcg, q35, 2 host CPUs, release kernel; medians."));
        assert!(!markdown.contains("Warning"));
        let markdown = to_markdown(&scale_report());
        assert!(markdown.contains("| workload | cores | total | efficiency | runs |"));
        assert!(markdown.contains("| compute | 4 | 800.00 M ops/s | 0.500 | 1 |"));
        assert!(markdown.contains("| rpc | 4 | 400000 calls/s | - | 1 |"));
        assert!(markdown.contains("> **Warning:** 4 vCPUs > 2 host CPUs"));
        assert_eq!(readable(1_590_144.0, "bytes"), "1590144");
        assert_eq!(readable(1_590_144.0, "conn/s"), "1.59 M");
    }

    #[test]
    fn host_drops_at_the_forwarded_port_are_explained() {
        let http = |drops: f64| SuiteReport {
            environment: environment("http", 2),
            records: vec![
                Record::new("keep-alive/p99", 2, "ms", vec![2.5, 600.0, 3.0]),
                Record::new(
                    "keep-alive/listen_overflows",
                    2,
                    "drops",
                    vec![0.0, drops, 0.0],
                ),
                Record::new("close/listen_overflows", 2, "drops", vec![0.0]),
            ],
        };
        // The median of one run's drops among three is 0: the note is for any drop.
        let markdown = to_markdown(&http(56.0));
        assert!(markdown.contains("> **Note:** `listen_overflows` counts handshakes"));
        assert!(markdown.contains("| keep-alive | 2 |"));
        assert!(!to_markdown(&http(0.0)).contains("**Note:**"));
    }

    #[test]
    fn combined_report_has_environment_tables_and_plot_links() {
        let plots = vec![
            "scale-efficiency.svg".to_string(),
            "scale-throughput.svg".to_string(),
        ];
        let markdown = combined(&[boot_report(), scale_report()], &plots);
        assert!(markdown.contains(
            "| [scale](#scale) | tcg | 2 | q35 | release | 2026-12-01 10:00 UTC | abc123 |"
        ));
        assert!(markdown.find("## boot").unwrap() < markdown.find("## scale").unwrap());
        assert!(markdown.contains("![scale-throughput.svg](scale-throughput.svg)"));
        assert_eq!(markdown.matches("![").count(), 2);
    }

    #[test]
    fn writes_the_combined_report_from_a_folder() {
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("boot.json"), to_json(&boot_report())).unwrap();
        fs::write(dir.join("scale.json"), to_json(&scale_report())).unwrap();
        fs::write(
            dir.join("ring-host.json"),
            "[{\"name\": \"x\", \"value\": 1}]",
        )
        .unwrap();
        fs::write(dir.join("misnamed.json"), to_json(&boot_report())).unwrap();
        write_combined(&dir).unwrap();
        let markdown = fs::read_to_string(dir.join("report.md")).unwrap();
        assert_eq!(markdown.matches("\n## ").count(), 2, "{markdown}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc_date(4_102_444_799), "2099-12-31 23:59 UTC");
    }
}
