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
}

/// A benchmark suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// Time from QEMU start (host) and from kernel entry (guest) until all cores are online.
    Boot,
}

impl Suite {
    /// Every suite, in the order `cargo xtask bench` runs them.
    const ALL: &'static [Suite] = &[Suite::Boot];

    /// Returns the suite's name, also the stem of its report files.
    fn name(self) -> &'static str {
        match self {
            Suite::Boot => "boot",
        }
    }

    /// Runs the suite and returns its measures.
    fn run(self, context: &Context) -> Result<Vec<Record>, String> {
        match self {
            Suite::Boot => boot_suite(context),
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
    name: &'static str,
    cores: usize,
    value: f64,
    unit: &'static str,
    runs: Vec<f64>,
}

impl Record {
    /// Returns a record whose value is the median of `runs`.
    fn new(name: &'static str, cores: usize, unit: &'static str, runs: Vec<f64>) -> Record {
        Record {
            name,
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
    let repeat = usize::try_from(args.repeat).unwrap_or(1);
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
            json_string(record.name),
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
    for record in records {
        if !names.contains(&record.name) {
            names.push(record.name);
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
                    let _ = write!(markdown, " {:.1} {} |", record.value, record.unit);
                    runs = runs.max(record.runs.len());
                }
                None => markdown.push_str(" - |"),
            }
        }
        let _ = writeln!(markdown, " {runs} |");
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
}
