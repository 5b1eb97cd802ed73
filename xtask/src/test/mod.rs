//! `cargo xtask test`: the host tools first, then host unit tests, then QEMU integration
//! tests with markers and timeouts. Ends with `N passed, N failed`.
//!
//! `host` runs the cargo test steps; `runner` runs the integration cases, which each area
//! module (`boot`, `clock`, `apps`, `blk`, `fs`, `fs_crash`, `net`, `httpd`, `faults`,
//! `bench`) lists in its own `cases()`. With `--app-crate PATH` it runs that crate's smoke
//! tests instead.

mod apps;
mod bench;
mod blk;
mod boot;
mod clock;
mod faults;
mod fs;
mod fs_crash;
mod host;
mod httpd;
mod net;
mod runner;

use std::path::PathBuf;

use clap::Args;

use crate::qemu::AccelChoice;
use crate::tools;

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

/// Runs an application crate's smoke tests and prints `N passed, N failed` last.
fn app_crate_tests(
    args: &TestArgs,
    workspace: &tools::Workspace,
    dir: &std::path::Path,
) -> Result<(), String> {
    let (image, cases) = apps::crate_tests(workspace, dir, args.release)?;
    let totals = runner::run_cases(args, cases, || runner::context_for(args, image));
    println!("{} passed, {} failed", totals.passed, totals.failed);
    if totals.failed > 0 {
        return Err(String::new());
    }
    Ok(())
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

/// Runs every test tier and prints `N passed, N failed` last.
pub fn main(args: &TestArgs) -> Result<(), String> {
    let workspace = tools::workspace()?;
    if let Some(dir) = &args.app_crate {
        return app_crate_tests(args, &workspace, dir);
    }
    // Before the first test: the fs host tests need mkfs.fat and mtools as much as the
    // QEMU tests need QEMU, so a fresh machine gets them all now, or one clear command.
    tools::ensure_test_tools(!args.host_only)?;
    let mut totals = Totals::default();
    if !args.qemu_only {
        totals += host::run_all(&workspace);
    }
    if !args.host_only {
        totals += runner::run_qemu_tests(args, &workspace);
    }
    // The last line of the output, for people and scripts alike.
    println!("{} passed, {} failed", totals.passed, totals.failed);
    if totals.failed > 0 {
        return Err(String::new());
    }
    Ok(())
}
