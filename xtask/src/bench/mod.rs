//! `cargo xtask bench`: benchmark suites that boot the kernel and report medians.
//!
//! Each suite writes `<out>/<suite>.json` and `.md`; after every suite the combined
//! `<out>/report.md` is rewritten from all the JSON files there, with SVG plots for the
//! suites that measure throughput at several core counts (`report`, `plot`).

mod breakdown;
mod http;
mod net;
mod plot;
mod report;
mod scale;
mod suites;

use std::fs;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::build;
use crate::qemu::{self, Accel, AccelChoice, Machine, MemSize, QemuConfig};
use crate::tools;

pub use scale::check_smoke_run;

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The suite to run; all suites when omitted.
    #[arg(value_enum)]
    pub suite: Option<Suite>,
    /// Core counts to measure, comma separated [default: 1, 2 and the host's CPU count].
    #[arg(long, value_delimiter = ',', value_name = "N,N,...", value_parser = qemu::parse_cores)]
    pub cores: Vec<usize>,
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Q35)]
    pub machine: Machine,
    /// Boots (or host runs) per measure; the median is reported [default: 5, 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub repeat: Option<u64>,
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
    /// A short smoke run: one repeat unless --repeat says otherwise, 100,000 messages,
    /// shorter scale workloads, fewer bytes and connections for net, the host benches'
    /// quick mode.
    #[arg(long)]
    pub quick: bool,
    /// Where the reports go [default: <target>/bench].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// http suite: switch the guest's trace on (`trace=1`) and add its counters per
    /// request (cross-core calls, frames, cycles of the net core) to the breakdown.
    #[arg(long)]
    pub trace: bool,
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
    /// Scaling: compute, all-pairs ping-pong, allocator churn, RPC to a service core and
    /// cross-core spawn, on every core at once, at each core count; with plots.
    Scale,
    /// The blk service on a 64 MiB image: sequential reads in 64 KiB requests, random 4 KiB
    /// reads at queue depth 1 and 32, from an application core (2 cores: one client, one
    /// service).
    Blk,
    /// The fs service on a FAT16 image: a 16 MiB file read sequentially, and 200 small
    /// files (3 cores: client, fs service, blk service).
    Fs,
    /// The net service from the host: TCP echo throughput, connections per second, and
    /// the net core's heap before and after many connections.
    Net,
    /// App `httpd` serving a 615-byte page from a FAT16 share at 2 and 4 cores (or
    /// `--cores`): single requests timed with curl, then `wrk` with and without
    /// keep-alive (requests/s, latency percentiles), and a per-request breakdown of the
    /// keep-alive runs (host CPU per vCPU; with `--trace` the guest's counters). `wrk`
    /// is installed when missing (as root), else xtask says what to run.
    Http,
}

impl Suite {
    /// The suites `cargo xtask bench` runs when none is named, in that order.
    const ALL: &'static [Suite] = &[
        Suite::Boot,
        Suite::Ipc,
        Suite::Percore,
        Suite::Scale,
        Suite::Blk,
        Suite::Fs,
        Suite::Net,
        Suite::Http,
    ];

    /// Returns the suite's name, also the stem of its report files.
    fn name(self) -> &'static str {
        match self {
            Suite::Boot => "boot",
            Suite::Ipc => "ipc",
            Suite::Percore => "percore",
            Suite::Scale => "scale",
            Suite::Blk => "blk",
            Suite::Fs => "fs",
            Suite::Net => "net",
            Suite::Http => "http",
        }
    }

    /// Returns the core counts the suite boots with, of those asked for.
    fn core_counts(self, asked: &[usize]) -> Vec<usize> {
        match self {
            Suite::Boot | Suite::Percore | Suite::Scale => asked.to_vec(),
            Suite::Ipc => asked.iter().copied().filter(|&cores| cores >= 2).collect(),
            Suite::Blk => vec![2],
            Suite::Fs => vec![3],
            Suite::Net => vec![net::CORES],
            Suite::Http => http::CORES.to_vec(),
        }
    }

    /// Runs the suite and returns its measures.
    fn run(self, context: &Context) -> Result<Vec<Record>, String> {
        match self {
            Suite::Boot => suites::boot_suite(context),
            Suite::Ipc => suites::ipc_suite(context),
            Suite::Percore => suites::percore_suite(context),
            Suite::Scale => scale::scale_suite(context),
            Suite::Blk => suites::blk_suite(context),
            Suite::Fs => suites::fs_suite(context),
            Suite::Net => net::net_suite(context),
            Suite::Http => http::http_suite(context),
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
    /// The core counts to measure: `--cores`, or 1, 2 and the host's CPU count.
    cores: Vec<usize>,
    /// Boots (or host runs) per measure.
    repeat: usize,
    /// Where the reports go.
    out: PathBuf,
    /// When the run started (UTC) and the commit measured, for the reports.
    date: String,
    commit: String,
}

impl Context<'_> {
    /// Returns the QEMU configuration of one guest: `app` on `cores` cores with
    /// `kernel_args`, on the bench's machine, memory and accelerator; no disk and no
    /// network until the suite adds them.
    fn guest(&self, app: &str, cores: usize, kernel_args: Vec<String>) -> QemuConfig {
        let mut config = QemuConfig::new(
            self.kernel.clone(),
            self.args.machine,
            cores,
            self.accel,
            app,
        );
        config.mem = self.args.mem;
        config.kernel_args = kernel_args;
        config
    }
}

/// One measure: the median of its runs.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    name: String,
    cores: usize,
    value: f64,
    unit: String,
    runs: Vec<f64>,
}

impl Record {
    /// Returns a record whose value is the median of `runs`.
    fn new(
        name: impl Into<String>,
        cores: usize,
        unit: impl Into<String>,
        runs: Vec<f64>,
    ) -> Record {
        Record {
            name: name.into(),
            cores,
            value: median(&runs),
            unit: unit.into(),
            runs,
        }
    }
}

/// Returns the core counts to measure: those asked for, or 1, 2 and `host_cpus`; sorted,
/// without duplicates, within the kernel's limit.
fn core_counts(asked: &[usize], host_cpus: usize) -> Vec<usize> {
    let mut counts = if asked.is_empty() {
        vec![1, 2, host_cpus.clamp(1, crate::MAX_CORES)]
    } else {
        asked.to_vec()
    };
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// Returns the runs per measure: `--repeat`, else 1 with `--quick` and 5 without.
fn repeat_count(repeat: Option<u64>, quick: bool) -> usize {
    let default = if quick { 1 } else { 5 };
    repeat.map_or(default, |repeat| usize::try_from(repeat).unwrap_or(default))
}

/// Returns the warning for `cores` virtual CPUs on `host_cpus`, if they are more.
fn oversubscription(cores: usize, host_cpus: usize) -> Option<String> {
    (cores > host_cpus).then(|| {
        format!(
            "{cores} vCPUs > {host_cpus} host CPUs: vCPUs share host CPUs, so per-core rates \
             drop and scaling efficiency says little beyond {host_cpus} cores"
        )
    })
}

/// Prints a progress line for long runs: `[SUITE STEP/TOTAL] DETAIL ...`.
fn progress(suite: &str, step: usize, total: usize, detail: &str) {
    eprintln!("[{suite} {step}/{total}] {detail} ...");
}

/// Runs the chosen suites; after each, writes its reports and rewrites `report.md`.
pub fn main(args: &BenchArgs) -> Result<(), String> {
    let workspace = tools::workspace()?;
    let kernel = build::kernel_or_build(&workspace, args.kernel.as_deref(), !args.debug)?;
    tools::ensure_qemu()?;
    let accel = tools::resolve_accel(args.accel)?;
    let host_cpus = tools::host_cpus();
    let context = Context {
        args,
        kernel,
        accel,
        host_cpus,
        cores: core_counts(&args.cores, host_cpus),
        repeat: repeat_count(args.repeat, args.quick),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| workspace.target_dir.join("bench")),
        date: report::utc_now(),
        commit: report::git_commit(&workspace.root),
    };
    let suites = args.suite.map_or(Suite::ALL.to_vec(), |suite| vec![suite]);
    for suite in suites {
        let counts = suite.core_counts(&context.cores);
        if let Some(warning) = counts
            .iter()
            .max()
            .and_then(|&most| oversubscription(most, host_cpus))
        {
            eprintln!("xtask: warning: {} suite: {warning}", suite.name());
        }
        eprintln!(
            "xtask: bench {} under {} on {host_cpus} host CPUs, cores {counts:?}, {} run(s) each",
            suite.name(),
            accel.name(),
            context.repeat
        );
        let records = suite.run(&context)?;
        write_suite(&context, suite.name(), &records)?;
    }
    Ok(())
}

/// Writes the suite's JSON, Markdown and plots into the output folder, prints its table,
/// and rewrites `report.md` from every suite's JSON there.
fn write_suite(context: &Context, suite: &str, records: &[Record]) -> Result<(), String> {
    let dir = &context.out;
    let io =
        |path: &Path, error: std::io::Error| format!("cannot write {}: {error}", path.display());
    fs::create_dir_all(dir).map_err(|error| io(dir, error))?;
    let report = report::SuiteReport::new(context, suite, records);
    let json_path = dir.join(format!("{suite}.json"));
    fs::write(&json_path, report::to_json(&report)).map_err(|error| io(&json_path, error))?;
    let markdown = report::to_markdown(&report);
    let markdown_path = dir.join(format!("{suite}.md"));
    fs::write(&markdown_path, &markdown).map_err(|error| io(&markdown_path, error))?;
    for (name, svg) in plot::suite_plots(&report) {
        let path = dir.join(&name);
        fs::write(&path, svg).map_err(|error| io(&path, error))?;
    }
    println!("{markdown}");
    report::write_combined(dir)?;
    eprintln!(
        "xtask: wrote {}, {} and {}",
        json_path.display(),
        markdown_path.display(),
        dir.join("report.md").display()
    );
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(words: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(words.iter().copied()))
            .map(|cli| cli.bench)
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.5]), 7.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn default_cores_are_one_two_and_the_host() {
        assert_eq!(core_counts(&[], 2), vec![1, 2]);
        assert_eq!(core_counts(&[], 1), vec![1, 2]);
        assert_eq!(core_counts(&[], 16), vec![1, 2, 16]);
        assert_eq!(core_counts(&[], 512), vec![1, 2, crate::MAX_CORES]);
        assert_eq!(core_counts(&[8, 1, 4, 2, 4], 2), vec![1, 2, 4, 8]);
    }

    #[test]
    fn parses_suites_cores_repeat_and_quick() {
        let args = parse(&["scale", "--cores", "1,2,4,8", "--repeat", "3", "--quick"]).unwrap();
        assert_eq!(args.suite, Some(Suite::Scale));
        assert_eq!(args.cores, vec![1, 2, 4, 8]);
        assert_eq!(repeat_count(args.repeat, args.quick), 3);
        let args = parse(&["net", "--quick", "--out", "/tmp/x"]).unwrap();
        assert_eq!(args.suite, Some(Suite::Net));
        assert!(args.cores.is_empty());
        assert_eq!(repeat_count(args.repeat, args.quick), 1);
        assert_eq!(args.out, Some(PathBuf::from("/tmp/x")));
        let args = parse(&[]).unwrap();
        assert_eq!(args.suite, None);
        assert_eq!(repeat_count(args.repeat, args.quick), 5);
        assert!(parse(&["--cores", "0"]).is_err());
        assert!(parse(&["--cores", "65"]).is_err());
        assert!(parse(&["--repeat", "0"]).is_err());
        assert!(parse(&["nosuch"]).is_err());
    }

    #[test]
    fn suites_boot_the_core_counts_they_need() {
        assert_eq!(Suite::Ipc.core_counts(&[1, 2, 4]), vec![2, 4]);
        assert_eq!(Suite::Scale.core_counts(&[1, 2, 4]), vec![1, 2, 4]);
        assert_eq!(Suite::Fs.core_counts(&[1, 2, 4]), vec![3]);
        assert!(Suite::ALL.contains(&Suite::Scale));
    }

    #[test]
    fn warns_only_when_vcpus_exceed_host_cpus() {
        assert_eq!(oversubscription(2, 2), None);
        let warning = oversubscription(8, 2).unwrap();
        assert!(warning.contains("8 vCPUs > 2 host CPUs"), "{warning}");
    }
}
