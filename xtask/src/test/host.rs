//! The host tiers of `cargo xtask test`: every crate's unit tests, then the loom models.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::options::Totals;
use crate::tools::{self, Workspace};

/// Runs every host step that applies to `workspace` and returns the summed counts.
pub fn run_all(workspace: &Workspace) -> Totals {
    let mut totals = Totals::default();
    for step in HOST_STEPS.iter().filter(|step| (step.applies)(workspace)) {
        totals += run_host_step(step, workspace);
    }
    totals
}

/// One cargo invocation that runs host tests.
#[derive(Debug)]
struct HostStep {
    /// What the step tests, for messages.
    name: &'static str,
    /// Cargo's arguments.
    args: fn(&Workspace) -> Vec<String>,
    /// Extra environment.
    env: &'static [(&'static str, &'static str)],
    /// Whether the step applies to this workspace.
    applies: fn(&Workspace) -> bool,
}

/// The host test steps, in order.
const HOST_STEPS: &[HostStep] = &[
    HostStep {
        name: "host unit tests",
        args: unit_test_args,
        env: &[],
        applies: always,
    },
    HostStep {
        name: "loom models of ipc",
        args: loom_args,
        env: &[("RUSTFLAGS", "--cfg loom"), ("LOOM_MAX_PREEMPTIONS", "2")],
        applies: ipc_has_loom_tests,
    },
];

fn always(_: &Workspace) -> bool {
    true
}

fn unit_test_args(_: &Workspace) -> Vec<String> {
    ["test", "--workspace", "--no-fail-fast"]
        .map(String::from)
        .to_vec()
}

fn loom_args(workspace: &Workspace) -> Vec<String> {
    let target_dir = workspace.target_dir.join("loom").display().to_string();
    let mut args: Vec<String> = [
        "test",
        "-p",
        "ipc",
        "--release",
        "--target-dir",
        &target_dir,
    ]
    .map(String::from)
    .to_vec();
    // A name filter matches test names, not test binaries: a `tests/loom.rs` binary whose
    // tests are not named "loom..." would be filtered out entirely, so select it by name.
    if workspace.root.join("ipc/tests/loom.rs").is_file() {
        args.extend(["--test", "loom"].map(String::from));
    } else {
        args.extend(["--lib", "--", "loom"].map(String::from));
    }
    args
}

fn ipc_has_loom_tests(workspace: &Workspace) -> bool {
    let ipc = workspace.root.join("ipc");
    [ipc.join("src"), ipc.join("tests")]
        .iter()
        .any(|dir| tree_contains(dir, "cfg(loom)"))
}

/// Returns whether any `.rs` file under `dir` contains `needle`.
fn tree_contains(dir: &Path, needle: &str) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            tree_contains(&path, needle)
        } else {
            path.extension().is_some_and(|extension| extension == "rs")
                && fs::read_to_string(&path).is_ok_and(|text| text.contains(needle))
        }
    })
}

/// Returns the counts on a libtest summary line (`test result: ok. 3 passed; 0 failed; ...`).
fn parse_test_result(line: &str) -> Option<Totals> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut totals = Totals::default();
    let (mut saw_passed, mut saw_failed) = (false, false);
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(count), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(count) = count.parse::<usize>() else {
            continue;
        };
        match kind {
            "passed" => (totals.passed, saw_passed) = (count, true),
            "failed" => (totals.failed, saw_failed) = (count, true),
            _ => {}
        }
    }
    (saw_passed && saw_failed).then_some(totals)
}

/// Runs one host step, streaming its output, and returns its summed counts.
fn run_host_step(step: &HostStep, workspace: &Workspace) -> Totals {
    let args = (step.args)(workspace);
    println!("xtask: {}: cargo {}", step.name, args.join(" "));
    let mut command = Command::new(tools::cargo());
    command
        .args(&args)
        .current_dir(&workspace.root)
        .stdout(Stdio::piped());
    for (key, value) in step.env {
        command.env(key, value);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            println!("FAIL {}: cannot run cargo: {error}", step.name);
            return Totals {
                passed: 0,
                failed: 1,
            };
        }
    };
    let mut totals = Totals::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("{line}");
            if let Some(counts) = parse_test_result(&line) {
                totals += counts;
            }
        }
    }
    match child.wait() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            println!("FAIL {}: cargo exited with {status}", step.name);
            // A build error fails the step even though no test reported a failure.
            if totals.failed == 0 {
                totals.failed = 1;
            }
        }
        Err(error) => {
            println!("FAIL {}: {error}", step.name);
            totals.failed += 1;
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summaries() {
        let ok = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(
            parse_test_result(ok),
            Some(Totals {
                passed: 12,
                failed: 0
            })
        );
        let failed =
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(
            parse_test_result(failed),
            Some(Totals {
                passed: 3,
                failed: 2
            })
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
        assert_eq!(parse_test_result("test result: ok."), None);
    }
}
