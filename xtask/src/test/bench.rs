//! The bench smoke test: a quick `bench scale` run whose JSON, plots and report are read
//! back and checked.

use std::process::{Command, Stdio};

use super::runner::{remove_scratch, scratch_dir, Case, CaseResult, Context, Failure};

/// Returns the bench smoke test.
pub fn cases() -> Vec<Case> {
    vec![Case::boot("bench scale --quick smoke run", run_bench_scale)]
}

/// Runs `xtask bench scale --quick --cores 1,2 --repeat 1` into a scratch folder and
/// checks what it wrote.
fn run_bench_scale(context: &Context) -> CaseResult {
    let dir = scratch_dir("bench-scale")?;
    let exe =
        std::env::current_exe().map_err(|error| format!("cannot find xtask's binary: {error}"))?;
    let output = Command::new(exe)
        .args([
            "bench", "scale", "--quick", "--cores", "1,2", "--repeat", "1",
        ])
        .args(["--accel", context.accel.name(), "--timeout"])
        .arg(context.timeout.as_secs().to_string())
        .arg("--kernel")
        .arg(&context.kernel)
        .arg("--out")
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run xtask bench: {error}"))?;
    let tail = || {
        let text = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<String> = text.lines().map(String::from).collect();
        lines[lines.len().saturating_sub(20)..].to_vec()
    };
    if !output.status.success() {
        return Err(Failure {
            reason: format!("xtask bench failed: {}", output.status),
            tail: tail(),
        });
    }
    crate::bench::check_smoke_run(&dir, &[1, 2]).map_err(|reason| Failure {
        reason,
        tail: tail(),
    })?;
    remove_scratch(&dir);
    Ok(())
}
