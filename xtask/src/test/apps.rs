//! Application tests: the guide's worked examples, an application crate made by
//! `cargo xtask new` outside the repository and run as a user would, and the smoke tests
//! an application crate declares (`cargo xtask test --app-crate PATH`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::runner::{
    remove_scratch, require_line, require_success, run_xtask_with, Case, CaseResult, Context,
    Failure, Start,
};
use crate::app_crate::SmokeTest;
use crate::qemu::Machine;
use crate::tools::Workspace;

/// How long making, building and booting a new crate may take: the first build in a
/// fresh target folder compiles the kernel and its dependencies.
const NEW_CRATE_LIMIT: Duration = Duration::from_secs(900);

/// Returns the application tests.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for cores in [4, 1] {
        cases.push(Case::boot(format!("primes q35 x{cores}"), move |context| {
            let outcome = context.run(&context.config(Machine::Q35, cores, "primes"))?;
            require_success(&outcome)?;
            // 78,498 primes below 10^6 is the known value, not the app's own check.
            require_line(&outcome, "primes: 78498 primes below 1000000 on cores")
        }));
    }
    for (machine, cores) in [(Machine::Q35, 3), (Machine::Pc, 1)] {
        cases.push(Case::boot(
            format!("pipeline {} x{cores}", machine.name()),
            move |context| {
                let outcome = context.run(&context.config(machine, cores, "pipeline"))?;
                require_success(&outcome)?;
                // The longest Collatz chain below 100,001 starts at 77,031: 350 steps.
                require_line(
                    &outcome,
                    "pipeline: 100000 numbers, longest chain below 100001 starts at 77031 (350 steps)",
                )
            },
        ));
    }
    cases.push(
        Case::boot(
            "app crate: xtask new, then run it outside the repository",
            new_crate,
        )
        .starting(Start::First),
    );
    cases
}

/// Makes a crate with `cargo xtask new` in the temporary folder, then builds and boots it
/// on two cores with `cargo xtask run --app-crate`, as the guide says, and checks that
/// its two threads on two cores exchanged their messages.
fn new_crate(context: &Context) -> CaseResult {
    let scratch = std::env::temp_dir().join(format!("manada-new-crate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)
        .map_err(|error| format!("cannot create {}: {error}", scratch.display()))?;
    let dir = scratch.join("pingpong");
    let dir_text = dir.display().to_string();
    // Built in a folder of this checkout's target, kept between runs, and offline: the
    // new crate's Cargo.lock is this checkout's, so every dependency is in cargo's cache.
    let workspace = crate::tools::workspace()?;
    let target = workspace.target_dir.join("app-crate-test");
    let target_text = target.display().to_string();
    let environment = [
        ("CARGO_TARGET_DIR", target_text.as_str()),
        ("CARGO_NET_OFFLINE", "true"),
    ];

    let made = run_xtask_with(&["new", &dir_text], &environment, NEW_CRATE_LIMIT)?;
    if !made.success || !dir.join("src/main.rs").is_file() {
        return Err(Failure {
            reason: "cargo xtask new failed".into(),
            tail: tail(&made.output),
        });
    }
    let accel = context.accel.name();
    let ran = run_xtask_with(
        &[
            "run",
            "--app-crate",
            &dir_text,
            "--cores",
            "2",
            "--net",
            "none",
            "--accel",
            accel,
            "--timeout",
            "120",
        ],
        &environment,
        NEW_CRATE_LIMIT,
    )?;
    let wanted = [
        "manada: running app pingpong on 2 cores",
        "ping-pong: 1000 round trips between core 0 and core 1",
        "manada: app pingpong finished: success",
        "xtask: app pingpong finished: success",
    ];
    for line in wanted {
        if !ran.output.lines().any(|seen| seen.starts_with(line)) {
            return Err(Failure {
                reason: format!("no `{line}` line (run succeeded: {})", ran.success),
                tail: tail(&ran.output),
            });
        }
    }
    if !ran.success {
        return Err(Failure {
            reason: "cargo xtask run --app-crate failed".into(),
            tail: tail(&ran.output),
        });
    }
    // Its own smoke tests pass too, run the way the crate's README says.
    let tested = run_xtask_with(
        &["test", "--app-crate", &dir_text, "--accel", accel],
        &environment,
        NEW_CRATE_LIMIT,
    )?;
    if !tested.success || !tested.output.contains("2 passed, 0 failed") {
        return Err(Failure {
            reason: "cargo xtask test --app-crate failed".into(),
            tail: tail(&tested.output),
        });
    }
    remove_scratch(&scratch);
    Ok(())
}

/// Returns the last 30 lines of an output, for a failure report.
fn tail(output: &str) -> Vec<String> {
    let lines: Vec<String> = output.lines().map(str::to_string).collect();
    lines[lines.len().saturating_sub(30)..].to_vec()
}

/// Returns the cases of an application crate's smoke tests; `package` is the crate's
/// application when a test names none.
pub fn smoke_cases(tests: Vec<SmokeTest>, package: &str) -> Vec<Case> {
    tests
        .into_iter()
        .map(|test| {
            let app = test.app.clone().unwrap_or_else(|| package.to_string());
            let name = format!("{app}: {}", test.name);
            Case::boot(name, move |context| {
                let mut config = context.config(test.machine, test.cores, &app);
                config.kernel_args = test.kernel_args.clone();
                let outcome = context.run(&config)?;
                require_success(&outcome)?;
                test.expect
                    .iter()
                    .try_for_each(|line| require_line(&outcome, line))
            })
        })
        .collect()
}

/// Builds the application crate in `dir` and returns its image and smoke-test cases.
pub fn crate_tests(
    workspace: &Workspace,
    dir: &Path,
    release: bool,
) -> Result<(PathBuf, Vec<Case>), String> {
    let tests = crate::app_crate::read_tests(dir)?;
    let built = crate::app_crate::build(workspace, dir, release)?;
    Ok((built.image, smoke_cases(tests, &built.package)))
}
