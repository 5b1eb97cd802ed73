//! The options of `cargo xtask test` and the counts every step returns.

use std::path::PathBuf;

use clap::Args;

use crate::qemu::AccelChoice;

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test the release kernel.
    #[arg(long)]
    pub release: bool,
    /// Accelerator for the QEMU tests.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// QEMU tests run at the same time.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,
    /// Per-test timeout for QEMU tests, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Run only the host unit tests.
    #[arg(long, conflicts_with = "qemu_only")]
    pub host_only: bool,
    /// Run only the QEMU integration tests.
    #[arg(long)]
    pub qemu_only: bool,
    /// Run only the QEMU tests whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Boot this kernel image instead of building one.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,
    /// Run only the QEMU smoke tests of the application crate in this folder (its
    /// qemu-tests.toml; see `cargo xtask new`).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["kernel", "host_only"])]
    pub app_crate: Option<PathBuf>,
}

/// Passed and failed counts, summed over all steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}
