//! What every bench suite shares: the command's options, the suites' names, the context
//! a suite runs in, and the records it returns.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::qemu::{self, Accel, AccelChoice, Machine, MemSize, QemuConfig};

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
    /// Where the reports go [default: target/bench].
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
    pub(super) const ALL: &'static [Suite] = &[
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
    pub(super) fn name(self) -> &'static str {
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
}

/// What every suite shares.
#[derive(Debug)]
pub(super) struct Context<'a> {
    pub(super) args: &'a BenchArgs,
    pub(super) kernel: PathBuf,
    pub(super) accel: Accel,
    pub(super) host_cpus: usize,
    /// The core counts to measure: `--cores`, or 1, 2 and the host's CPU count.
    pub(super) cores: Vec<usize>,
    /// Boots (or host runs) per measure.
    pub(super) repeat: usize,
    /// Where the reports go.
    pub(super) out: PathBuf,
    /// When the run started (UTC) and the commit measured, for the reports.
    pub(super) date: String,
    pub(super) commit: String,
}

impl Context<'_> {
    /// Returns the QEMU configuration of one guest: `app` on `cores` cores with
    /// `kernel_args`, on the bench's machine, memory and accelerator; no disk and no
    /// network until the suite adds them.
    pub(super) fn guest(&self, app: &str, cores: usize, kernel_args: Vec<String>) -> QemuConfig {
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
pub(super) struct Record {
    pub(super) name: String,
    pub(super) cores: usize,
    pub(super) value: f64,
    pub(super) unit: String,
    pub(super) runs: Vec<f64>,
}

impl Record {
    /// Returns a record whose value is the median of `runs`.
    pub(super) fn new(
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

/// Returns the warning for `cores` virtual CPUs on `host_cpus`, if they are more.
pub(super) fn oversubscription(cores: usize, host_cpus: usize) -> Option<String> {
    (cores > host_cpus).then(|| {
        format!(
            "{cores} vCPUs > {host_cpus} host CPUs: vCPUs share host CPUs, so per-core rates \
             drop and scaling efficiency says little beyond {host_cpus} cores"
        )
    })
}

/// Prints a progress line for long runs: `[SUITE STEP/TOTAL] DETAIL ...`.
pub(super) fn progress(suite: &str, step: usize, total: usize, detail: &str) {
    eprintln!("[{suite} {step}/{total}] {detail} ...");
}

/// Returns the median (the mean of the middle two for an even count; 0 when empty).
pub(super) fn median(values: &[f64]) -> f64 {
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

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.5]), 7.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn warns_only_when_vcpus_exceed_host_cpus() {
        assert_eq!(oversubscription(2, 2), None);
        let warning = oversubscription(8, 2).unwrap();
        assert!(warning.contains("8 vCPUs > 2 host CPUs"), "{warning}");
    }
}
