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
mod options;
mod runner;

use crate::tools::{self, Workspace};

pub use options::TestArgs;
use options::Totals;
use runner::Case;

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

/// Returns every integration test, in the order they start.
fn catalogue() -> Vec<Case> {
    let mut cases: Vec<Case> = [
        boot::cases(),
        apps::cases(),
        clock::cases(),
        blk::cases(),
        fs::cases(),
        fs_crash::cases(),
        net::cases(),
        httpd::cases(),
        faults::cases(),
        bench::cases(),
    ]
    .into_iter()
    .flatten()
    .collect();
    // A stable sort keeps the catalogue order within each group.
    cases.sort_by_key(|case| case.start);
    cases
}

/// Returns the boot tests' context: the kernel built, QEMU present, the accelerator chosen.
fn boot_context(args: &TestArgs, workspace: &Workspace) -> Result<runner::Context, String> {
    let kernel = crate::build::kernel_or_build(workspace, args.kernel.as_deref(), args.release)?;
    runner::context_for(args, kernel)
}

/// Runs the integration tests `args.jobs` at a time and returns their counts.
fn run_qemu_tests(args: &TestArgs, workspace: &Workspace) -> Totals {
    runner::run_cases(args, catalogue(), || boot_context(args, workspace))
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
        totals += run_qemu_tests(args, &workspace);
    }
    // The last line of the output, for people and scripts alike.
    println!("{} passed, {} failed", totals.passed, totals.failed);
    if totals.failed > 0 {
        return Err(String::new());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::Start;

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for case in catalogue() {
            assert!(
                seen.insert(case.name.clone()),
                "two cases named {}",
                case.name
            );
        }
    }

    #[test]
    fn long_cases_start_first_and_host_cases_last() {
        let starts: Vec<Start> = catalogue().iter().map(|case| case.start).collect();
        let mut sorted = starts.clone();
        sorted.sort();
        assert_eq!(starts, sorted);
        assert_eq!(starts.first(), Some(&Start::First));
        assert_eq!(starts.last(), Some(&Start::Last));
    }
}
