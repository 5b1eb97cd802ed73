//! The QEMU integration tests: what a case is, what every boot shares, and running the
//! catalogue a few at a time.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::options::{TestArgs, Totals};
use crate::qemu::{self, Accel, Machine, QemuConfig};
use crate::tools;

/// Why a case failed: the reason, and the console lines to show with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub tail: Vec<String>,
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure {
            reason,
            tail: Vec::new(),
        }
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Self {
        Failure::from(reason.to_string())
    }
}

/// A test's result.
pub type CaseResult = Result<(), Failure>;

/// Returns `Failure`s carrying the last console lines of `outcome`.
pub trait WithTail<T> {
    /// Returns the result with `outcome`'s last 20 console lines added to an error.
    fn tail_of(self, outcome: &qemu::Outcome) -> Result<T, Failure>;
}

impl<T> WithTail<T> for Result<T, String> {
    fn tail_of(self, outcome: &qemu::Outcome) -> Result<T, Failure> {
        self.map_err(|reason| Failure {
            reason,
            tail: outcome.tail(20),
        })
    }
}

/// What every boot test shares.
#[derive(Debug)]
pub struct Context {
    pub kernel: PathBuf,
    pub accel: Accel,
    pub timeout: Duration,
}

impl Context {
    /// Returns the configuration of a test guest: `app` on `machine` with `cores` cores.
    pub fn config(&self, machine: Machine, cores: usize, app: &str) -> QemuConfig {
        QemuConfig::new(self.kernel.clone(), machine, cores, self.accel, app)
    }

    /// Boots `config` until the kernel ends it (or the timeout).
    pub fn run(&self, config: &QemuConfig) -> Result<qemu::Outcome, Failure> {
        qemu::run(config, Some(self.timeout), false).map_err(Failure::from)
    }

    /// Boots `config` like [`Context::run`] with three times the timeout: for the long
    /// runs (10^6 messages per pair of cores) that start together first and share the
    /// host's CPUs with everything else, so that a loaded machine does not fail them.
    pub fn run_long(&self, config: &QemuConfig) -> Result<qemu::Outcome, Failure> {
        qemu::run(config, Some(self.timeout * 3), false).map_err(Failure::from)
    }
}

/// How a case runs.
pub enum Body {
    /// Boots the kernel: needs the built image and QEMU.
    Boot(Box<dyn Fn(&Context) -> CaseResult + Send + Sync>),
    /// Runs on the host alone.
    Host(Box<dyn Fn() -> CaseResult + Send + Sync>),
}

/// When a case starts: the longest first, so the slots stay busy to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Start {
    /// Long runs (the 10^6-message exchanges).
    First,
    /// Most cases, in catalogue order.
    Normal,
    /// Quick host-only checks.
    Last,
}

/// One integration test.
pub struct Case {
    /// The name printed on the result line, and matched by `--filter`.
    pub name: String,
    pub start: Start,
    pub body: Body,
}

impl Case {
    /// Returns a case that boots the kernel.
    pub fn boot(
        name: impl Into<String>,
        body: impl Fn(&Context) -> CaseResult + Send + Sync + 'static,
    ) -> Case {
        Case {
            name: name.into(),
            start: Start::Normal,
            body: Body::Boot(Box::new(body)),
        }
    }

    /// Returns a case that runs on the host alone.
    pub fn host(
        name: impl Into<String>,
        body: impl Fn() -> CaseResult + Send + Sync + 'static,
    ) -> Case {
        Case {
            name: name.into(),
            start: Start::Last,
            body: Body::Host(Box::new(body)),
        }
    }

    /// Returns the case, started at `start`.
    pub fn starting(mut self, start: Start) -> Case {
        self.start = start;
        self
    }

    /// Returns whether the case boots the kernel.
    pub fn needs_kernel(&self) -> bool {
        matches!(self.body, Body::Boot(_))
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

/// Returns the context of boot tests of `kernel`: QEMU present, the accelerator chosen.
pub fn context_for(args: &TestArgs, kernel: PathBuf) -> Result<Context, String> {
    tools::ensure_qemu()?;
    let accel = tools::resolve_accel(args.accel)?;
    Ok(Context {
        kernel,
        accel,
        timeout: Duration::from_secs(args.timeout),
    })
}

/// Runs the `cases` that `--filter` selects, `args.jobs` at a time, the boot cases in
/// the context `context` makes (only if one needs it), and returns their counts.
pub fn run_cases(
    args: &TestArgs,
    cases: Vec<Case>,
    context: impl FnOnce() -> Result<Context, String>,
) -> Totals {
    let mut cases: Vec<Case> = cases
        .into_iter()
        .filter(|case| {
            args.filter
                .as_ref()
                .is_none_or(|filter| case.name.contains(filter.as_str()))
        })
        .collect();
    let mut totals = Totals::default();
    if let (Some(filter), true) = (&args.filter, cases.is_empty()) {
        // A mistyped filter must not look like a green run.
        println!("FAIL --filter {filter:?} matches no QEMU test");
        totals.failed += 1;
        return totals;
    }
    let context = match cases.iter().any(Case::needs_kernel) {
        false => None,
        true => match context() {
            Ok(ready) => Some(ready),
            Err(error) => {
                // One failure for the setup; the boot tests cannot say more than it.
                totals.failed += 1;
                let booting = cases.iter().filter(|case| case.needs_kernel()).count();
                println!("FAIL QEMU test setup: {error} ({booting} boot tests not run)");
                cases.retain(|case| !case.needs_kernel());
                None
            }
        },
    };
    println!(
        "xtask: {} integration tests, {} at a time, {} s timeout each",
        cases.len(),
        args.jobs,
        args.timeout
    );
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Totals::default());
    let jobs = usize::try_from(args.jobs)
        .unwrap_or(1)
        .min(cases.len().max(1));
    thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(index) else { break };
                let started = Instant::now();
                let result = match (&case.body, context.as_ref()) {
                    (Body::Boot(body), Some(context)) => body(context),
                    (Body::Boot(_), None) => Err(Failure::from("no kernel or QEMU")),
                    (Body::Host(body), _) => body(),
                };
                let seconds = started.elapsed().as_secs_f64();
                let mut totals = results
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match result {
                    Ok(()) => {
                        totals.passed += 1;
                        println!("ok   {} ({seconds:.1} s)", case.name);
                    }
                    Err(failure) => {
                        totals.failed += 1;
                        let mut report =
                            format!("FAIL {} ({seconds:.1} s): {}", case.name, failure.reason);
                        for line in failure.tail {
                            report.push_str("\n     | ");
                            report.push_str(&line);
                        }
                        println!("{report}");
                    }
                }
            });
        }
    });
    totals += results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    totals
}

/// Returns `Ok` when a console line starts with `prefix`.
pub fn require_line(outcome: &qemu::Outcome, prefix: &str) -> Result<(), Failure> {
    if outcome.console.iter().any(|line| line.starts_with(prefix)) {
        Ok(())
    } else {
        Err(format!("no `{prefix}` line")).tail_of(outcome)
    }
}

/// Returns `Ok` when the kernel reported success, else why not with the console's tail.
pub fn require_success(outcome: &qemu::Outcome) -> Result<(), Failure> {
    outcome.verdict().tail_of(outcome)
}

/// Returns `Ok` when the kernel printed no panic or exception line while it served.
pub fn require_no_fatal(outcome: &qemu::Outcome) -> Result<(), Failure> {
    match &outcome.fatal {
        Some(fatal) => Err(format!("the kernel failed: {fatal}")).tail_of(outcome),
        None => Ok(()),
    }
}

/// Returns a fresh directory for one test's files, under the system's temporary folder.
pub fn scratch_dir(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("manada-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    Ok(dir)
}

/// Removes a scratch directory once its test passed (a failed test's files stay).
pub fn remove_scratch(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
}

/// How a run of xtask itself ended.
#[derive(Debug)]
pub struct XtaskRun {
    pub success: bool,
    /// Its standard output, then its standard error.
    pub output: String,
}

/// Runs this xtask binary with `args` (stdin closed), killing it after `limit`.
pub fn run_xtask(args: &[&str], limit: Duration) -> Result<XtaskRun, Failure> {
    run_xtask_with(args, &[], limit)
}

/// Runs this xtask binary with `args` and the extra `environment` (stdin closed),
/// killing it after `limit`.
pub fn run_xtask_with(
    args: &[&str],
    environment: &[(&str, &str)],
    limit: Duration,
) -> Result<XtaskRun, Failure> {
    let exe =
        std::env::current_exe().map_err(|error| format!("cannot find xtask's binary: {error}"))?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .envs(environment.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run xtask: {error}"))?;
    let stdout = child.stdout.take().map(read_all_in_background);
    let stderr = child.stderr.take().map(read_all_in_background);
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::from(format!(
                    "xtask {} did not exit within {} s",
                    args.join(" "),
                    limit.as_secs()
                )));
            }
            Err(error) => return Err(Failure::from(error.to_string())),
        }
    };
    let output: String = [stdout, stderr]
        .into_iter()
        .flatten()
        .map(|reader| reader.join().unwrap_or_default())
        .collect();
    Ok(XtaskRun {
        success: status.success(),
        output,
    })
}

/// Returns a thread that reads `stream` to its end.
fn read_all_in_background(mut stream: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
}
