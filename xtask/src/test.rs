//! `cargo xtask test`: host unit tests, then QEMU integration tests with markers and timeouts.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;

use crate::console::{self, Marker};
use crate::httpcheck;
use crate::qemu::{self, Accel, AccelChoice, Machine, MemSize, QemuConfig, Status};
use crate::tools::{self, Workspace};
use crate::{build, MAX_CORES};

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
}

/// Passed and failed counts, summed over all steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: usize,
    failed: usize,
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
    let mut totals = Totals::default();
    if !args.qemu_only {
        for step in HOST_STEPS.iter().filter(|step| (step.applies)(&workspace)) {
            totals += run_host_step(step, &workspace);
        }
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
    ["test", "--workspace", "--exclude", "boot", "--no-fail-fast"]
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

/// What a QEMU integration test checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Every core says hello once, all cores come online, the kernel reports success.
    Hello,
    /// A `PANIC on core` line, then the kernel reports failure (QEMU status 35).
    Panic,
    /// An `EXCEPTION on core` line on the last core naming this mnemonic (e.g. `#UD`),
    /// then the kernel reports failure.
    Exception(&'static str),
    /// The last core never starts: it is reported, and the others greet and succeed.
    DeadCore,
    /// App `ipc`: every core reports this many messages from each other core, in
    /// order with correct checksums, and the kernel reports success.
    Exchange(u64),
    /// The app succeeds and prints a line starting with this text.
    Success(&'static str),
    /// The kernel reports failure after printing a line containing this text.
    FailsWith(&'static str),
}

/// One integration test.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Case {
    /// Boot `app` on `machine` with `cores` cores.
    Boot {
        app: &'static str,
        machine: Machine,
        cores: usize,
        /// Further kernel command-line words.
        kernel_args: &'static [&'static str],
        expect: Expect,
    },
    /// `xtask run --cores <cores>` must be refused before QEMU starts.
    RefuseCores { cores: &'static str },
    /// App `blk-test` with a read-write and a read-only disk; the host checks what the
    /// guest wrote.
    Blk { machine: Machine, cores: usize },
    /// App `blk-errors` with a disk behind blkdebug that fails reads of sector 100.
    BlkErrors { machine: Machine },
    /// App `echo` on user networking: the host echoes 1 MiB, 100 connections at once and
    /// UDP datagrams through a forwarded port.
    Echo { machine: Machine },
    /// App `echo` while a host program injects malformed frames through a hub: the
    /// guest keeps answering ARP and echoing.
    NetMalformed { machine: Machine },
    /// App `files` on a host folder shared through vvfat; the host checks the new file.
    FsShare { machine: Machine },
    /// App `httpd` serving a folder (vvfat) through a forwarded port: files byte for byte,
    /// HEAD, 404, 301, 405, traversal refused, HTTP/1.0 and idle connections closed, 50
    /// keep-alive clients at once (the client is xtask/src/httpcheck.rs).
    Httpd { machine: Machine },
    /// App `files` on a FAT16 image made by mkfs.fat and mcopy; fsck.fat and mtype check
    /// it afterwards.
    FsImage { machine: Machine },
    /// `xtask bench scale --quick` at 1 and 2 cores into a scratch folder; its JSON,
    /// plots and report are read back and checked.
    BenchScale,
}

impl Case {
    /// Returns whether the test boots the kernel.
    fn needs_kernel(&self) -> bool {
        !matches!(self, Case::RefuseCores { .. })
    }

    /// Returns the name printed on the result line.
    fn name(&self) -> String {
        match self {
            Case::Boot {
                app,
                machine,
                cores,
                kernel_args,
                ..
            } => {
                let mut name = format!("{app} {} x{cores}", machine.name());
                for arg in *kernel_args {
                    name.push(' ');
                    name.push_str(arg);
                }
                name
            }
            Case::RefuseCores { cores } => format!("run --cores {cores} refused"),
            Case::Blk { machine, cores } => format!("blk-test {} x{cores}", machine.name()),
            Case::BlkErrors { machine } => format!("blk-errors {} blkdebug", machine.name()),
            Case::FsShare { machine } => format!("files {} vvfat share", machine.name()),
            Case::Echo { machine } => format!("echo {} tcp+udp", machine.name()),
            Case::Httpd { machine } => format!("httpd {} share+forward", machine.name()),
            Case::NetMalformed { machine } => format!("net {} malformed frames", machine.name()),
            Case::FsImage { machine } => format!("files {} mkfs.fat image", machine.name()),
            Case::BenchScale => "bench scale --quick smoke run".into(),
        }
    }
}

/// Returns the integration tests, in the order they start.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // The slowest (8-core) guests first, so the two slots stay busy at the end.
    for cores in [8, 4, 2, 1] {
        for machine in [Machine::Q35, Machine::Pc] {
            cases.push(Case::Boot {
                app: "hello",
                machine,
                cores,
                kernel_args: &[],
                expect: Expect::Hello,
            });
        }
        if cores != 2 {
            cases.push(Case::Boot {
                app: "hello",
                machine: Machine::Microvm,
                cores,
                kernel_args: &[],
                expect: Expect::Hello,
            });
        }
    }
    cases.push(Case::Boot {
        app: "panic",
        machine: Machine::Q35,
        cores: 4,
        kernel_args: &[],
        expect: Expect::Panic,
    });
    let faults: [(&'static [&'static str], &'static str); 2] = [
        (&["selftest=invalid-opcode"], "#UD"),
        (&["selftest=page-fault"], "#PF"),
    ];
    for (kernel_args, mnemonic) in faults {
        cases.push(Case::Boot {
            app: "hello",
            machine: Machine::Q35,
            cores: 2,
            kernel_args,
            expect: Expect::Exception(mnemonic),
        });
    }
    cases.push(Case::Boot {
        app: "hello",
        machine: Machine::Pc,
        cores: 4,
        kernel_args: &["selftest=dead-core"],
        expect: Expect::DeadCore,
    });
    // All-to-all mailbox exchange; 10^6 messages per ordered pair at 2 and 4 cores.
    let exchanges: [(Machine, usize, &'static [&'static str], u64); 4] = [
        (Machine::Q35, 4, &["messages=1000000"], 1_000_000),
        (Machine::Q35, 2, &["messages=1000000"], 1_000_000),
        (Machine::Q35, 8, &["messages=100000"], 100_000),
        (Machine::Pc, 4, &["messages=100000"], 100_000),
    ];
    for (machine, cores, kernel_args, messages) in exchanges {
        cases.push(Case::Boot {
            app: "ipc",
            machine,
            cores,
            kernel_args,
            expect: Expect::Exchange(messages),
        });
    }
    // Threads and the per-core heaps.
    let successes: [(&'static str, Machine, usize, &'static str); 5] = [
        (
            "threads",
            Machine::Q35,
            1,
            "threads: 1000 threads on 1 cores joined with correct results",
        ),
        (
            "threads",
            Machine::Q35,
            4,
            "threads: 1000 threads on 4 cores joined with correct results",
        ),
        (
            "threads",
            Machine::Pc,
            8,
            "threads: 1000 threads on 8 cores joined with correct results",
        ),
        (
            "free-storm",
            Machine::Q35,
            2,
            "free-storm: 6000 blocks freed across cores; every heap back to its baseline",
        ),
        (
            "free-storm",
            Machine::Q35,
            4,
            "free-storm: 12000 blocks freed across cores; every heap back to its baseline",
        ),
    ];
    for (app, machine, cores, line) in successes {
        cases.push(Case::Boot {
            app,
            machine,
            cores,
            kernel_args: &[],
            expect: Expect::Success(line),
        });
    }
    cases.push(Case::Boot {
        app: "oom",
        machine: Machine::Q35,
        cores: 2,
        kernel_args: &[],
        expect: Expect::FailsWith(
            "PANIC on core 1: memory allocation of 1099511627776 bytes failed",
        ),
    });
    cases.push(Case::Boot {
        app: "overflow",
        machine: Machine::Q35,
        cores: 2,
        kernel_args: &[],
        expect: Expect::Exception("#PF stack overflow"),
    });
    for machine in [Machine::Q35, Machine::Pc] {
        cases.push(Case::Blk { machine, cores: 4 });
        cases.push(Case::BlkErrors { machine });
        cases.push(Case::FsShare { machine });
        cases.push(Case::Echo { machine });
        cases.push(Case::Httpd { machine });
        cases.push(Case::NetMalformed { machine });
        cases.push(Case::FsImage { machine });
    }
    cases.push(Case::BenchScale);
    // The longest tests (the exchanges) start first, so both slots stay busy to the end.
    cases.sort_by_key(|case| !matches!(case, Case::Boot { app: "ipc", .. }));
    cases.push(Case::RefuseCores { cores: "0" });
    cases.push(Case::RefuseCores { cores: "65" });
    cases
}

/// A test's result: `Ok` or the reason and console lines to show.
type CaseResult = Result<(), (String, Vec<String>)>;

/// What every boot test shares.
#[derive(Debug)]
struct Context {
    kernel: PathBuf,
    accel: Accel,
    timeout: Duration,
}

/// Returns the boot tests' context: the kernel built, QEMU present, the accelerator chosen.
fn boot_context(args: &TestArgs, workspace: &Workspace) -> Result<Context, String> {
    let kernel = build::kernel_or_build(workspace, args.kernel.as_deref(), args.release)?;
    tools::ensure_qemu()?;
    let accel = tools::resolve_accel(args.accel)?;
    Ok(Context {
        kernel,
        accel,
        timeout: Duration::from_secs(args.timeout),
    })
}

/// Runs the integration tests `args.jobs` at a time and returns their counts.
fn run_qemu_tests(args: &TestArgs, workspace: &Workspace) -> Totals {
    let mut cases: Vec<Case> = cases()
        .into_iter()
        .filter(|case| {
            args.filter
                .as_ref()
                .is_none_or(|filter| case.name().contains(filter.as_str()))
        })
        .collect();
    let mut totals = Totals::default();
    let mut context = None;
    if cases.iter().any(|case| case.needs_kernel()) {
        match boot_context(args, workspace) {
            Ok(ready) => context = Some(ready),
            Err(error) => {
                // One failure for the setup; the boot tests cannot say more than it.
                totals.failed += 1;
                let booting = cases.iter().filter(|case| case.needs_kernel()).count();
                println!("FAIL QEMU test setup: {error} ({booting} boot tests not run)");
                cases.retain(|case| !case.needs_kernel());
            }
        }
    }
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
                let result = run_case(case, context.as_ref());
                let seconds = started.elapsed().as_secs_f64();
                let mut totals = results
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match result {
                    Ok(()) => {
                        totals.passed += 1;
                        println!("ok   {} ({seconds:.1} s)", case.name());
                    }
                    Err((reason, tail)) => {
                        totals.failed += 1;
                        let mut report = format!("FAIL {} ({seconds:.1} s): {reason}", case.name());
                        for line in tail {
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

/// Runs one integration test; boot tests need the `context`.
fn run_case(case: &Case, context: Option<&Context>) -> CaseResult {
    match *case {
        Case::Boot {
            app,
            machine,
            cores,
            kernel_args,
            expect,
        } => {
            let context = context.ok_or_else(|| ("no kernel or QEMU".to_string(), Vec::new()))?;
            let config = QemuConfig {
                kernel: context.kernel.clone(),
                machine,
                cores,
                mem: MemSize::from_mebibytes(512),
                accel: context.accel,
                app: app.to_string(),
                kernel_args: kernel_args.iter().map(|arg| arg.to_string()).collect(),
                disks: Vec::new(),
                net: None,
                inject: None,
                gdb: false,
            };
            let outcome = qemu::run(&config, Some(context.timeout), false)
                .map_err(|error| (error, Vec::new()))?;
            let tail = || outcome.tail(20);
            match expect {
                Expect::Hello => {
                    outcome.verdict().map_err(|reason| (reason, tail()))?;
                    console::check_hello(&outcome.console, cores).map_err(|reason| (reason, tail()))
                }
                Expect::Panic => check_panic(&outcome, cores).map_err(|reason| (reason, tail())),
                Expect::Exception(mnemonic) => {
                    check_exception(&outcome, cores, mnemonic).map_err(|reason| (reason, tail()))
                }
                Expect::Exchange(messages) => {
                    outcome.verdict().map_err(|reason| (reason, tail()))?;
                    check_exchange(&outcome.console, cores, messages)
                        .map_err(|reason| (reason, tail()))
                }
                Expect::Success(line) => {
                    outcome.verdict().map_err(|reason| (reason, tail()))?;
                    require_line(&outcome, line).map_err(|reason| (reason, tail()))
                }
                Expect::FailsWith(text) => {
                    let seen = outcome.console.iter().any(|line| line.contains(text));
                    if !seen {
                        Err((format!("no line containing `{text}`"), tail()))
                    } else if outcome.status != Status::KernelFailure {
                        Err((
                            format!(
                                "QEMU ended with {:?}, not the kernel's failure status",
                                outcome.status
                            ),
                            tail(),
                        ))
                    } else {
                        Ok(())
                    }
                }
                Expect::DeadCore => {
                    outcome.verdict().map_err(|reason| (reason, tail()))?;
                    if !outcome
                        .console
                        .iter()
                        .any(|line| line.contains("did not come up"))
                    {
                        return Err(("the sleeping core was not reported".into(), tail()));
                    }
                    console::check_hello(&outcome.console, cores - 1)
                        .map_err(|reason| (reason, tail()))
                }
            }
        }
        Case::RefuseCores { cores } => check_refused(cores),
        Case::Blk { machine, cores } => {
            let context = context.ok_or_else(|| ("no kernel or QEMU".to_string(), Vec::new()))?;
            run_blk_test(context, machine, cores)
        }
        Case::BlkErrors { machine } => {
            let context = context.ok_or_else(|| ("no kernel or QEMU".to_string(), Vec::new()))?;
            run_blk_errors(context, machine)
        }
        Case::Echo { machine } => {
            let context = context.ok_or_else(|| ("no kernel or QEMU".to_string(), Vec::new()))?;
            run_echo(context, machine, false)
        }
        Case::NetMalformed { machine } => {
            let context = context.ok_or_else(|| ("no kernel or QEMU".to_string(), Vec::new()))?;
            run_echo(context, machine, true)
        }
        Case::Httpd { machine } => {
            let context = context.ok_or_else(|| ("no kernel or QEMU".to_string(), Vec::new()))?;
            run_httpd(context, machine)
        }
        Case::FsShare { machine } => {
            let context = context.ok_or_else(|| ("no kernel or QEMU".to_string(), Vec::new()))?;
            run_fs_share(context, machine)
        }
        Case::FsImage { machine } => {
            let context = context.ok_or_else(|| ("no kernel or QEMU".to_string(), Vec::new()))?;
            run_fs_image(context, machine)
        }
        Case::BenchScale => {
            let context = context.ok_or_else(|| ("no kernel or QEMU".to_string(), Vec::new()))?;
            run_bench_scale(context)
        }
    }
}

/// Runs `xtask bench scale --quick --cores 1,2 --repeat 1` into a scratch folder and
/// checks what it wrote.
fn run_bench_scale(context: &Context) -> CaseResult {
    let fail = |reason: String| (reason, Vec::new());
    let dir = scratch_dir("bench-scale").map_err(fail)?;
    let exe = std::env::current_exe()
        .map_err(|error| fail(format!("cannot find xtask's binary: {error}")))?;
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
        .map_err(|error| fail(format!("cannot run xtask bench: {error}")))?;
    let tail = || {
        let text = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<String> = text.lines().map(String::from).collect();
        lines[lines.len().saturating_sub(20)..].to_vec()
    };
    if !output.status.success() {
        return Err((format!("xtask bench failed: {}", output.status), tail()));
    }
    crate::bench::check_smoke_run(&dir, &[1, 2]).map_err(|reason| (reason, tail()))?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// Returns `Ok` when the run shows a panic on the last core and the kernel reported failure.
fn check_panic(outcome: &qemu::Outcome, cores: usize) -> Result<(), String> {
    let panic_core = outcome
        .console
        .iter()
        .find_map(|line| match console::parse_line(line) {
            Some(Marker::Panic { core, .. }) => Some(core),
            _ => None,
        });
    match panic_core {
        None => Err("no `PANIC on core` line".into()),
        // The panic app panics on the last core, so an AP's panic must reach the console.
        Some(core) if core != cores - 1 => Err(format!(
            "panic on core {core}, expected the last core ({})",
            cores - 1
        )),
        Some(_) if outcome.status == Status::KernelFailure => Ok(()),
        Some(_) => Err(format!(
            "panic seen but QEMU ended with {:?}, not the kernel's failure status",
            outcome.status
        )),
    }
}

/// Returns `Ok` when every core of `cores` reported receiving `messages` from each other
/// core in order with correct checksums.
fn check_exchange(console: &[String], cores: usize, messages: u64) -> Result<(), String> {
    for core in 0..cores {
        let expected = format!(
            "ipc: core {core} received {messages} messages from each of {} cores in order, checksums ok",
            cores - 1
        );
        if !console.iter().any(|line| line.starts_with(&expected)) {
            return Err(format!("no `{expected}` line"));
        }
    }
    Ok(())
}

/// Returns `Ok` when the last core reported CPU exception `mnemonic` and the kernel then
/// reported failure.
fn check_exception(outcome: &qemu::Outcome, cores: usize, mnemonic: &str) -> Result<(), String> {
    let exception = outcome
        .console
        .iter()
        .find_map(|line| match console::parse_line(line) {
            Some(Marker::Exception { core, detail }) => Some((core, detail)),
            _ => None,
        });
    match exception {
        None => Err("no `EXCEPTION on core` line".into()),
        Some((core, _)) if core != cores - 1 => Err(format!(
            "exception on core {core}, expected the last core ({})",
            cores - 1
        )),
        Some((_, detail)) if !detail.starts_with(mnemonic) || !detail.contains("RIP 0x") => Err(
            format!("exception report `{detail}` lacks {mnemonic} or the RIP"),
        ),
        Some(_) if outcome.status == Status::KernelFailure => Ok(()),
        Some(_) => Err(format!(
            "exception seen but QEMU ended with {:?}, not the kernel's failure status",
            outcome.status
        )),
    }
}

/// Returns `Ok` when a console line starts with `prefix`.
fn require_line(outcome: &qemu::Outcome, prefix: &str) -> Result<(), String> {
    if outcome.console.iter().any(|line| line.starts_with(prefix)) {
        Ok(())
    } else {
        Err(format!("no `{prefix}` line"))
    }
}

/// Sectors of the test images (2 MiB).
const TEST_DISK_SECTORS: u64 = 4096;
/// Where and how much `blk-test` writes (see apps/src/blk_test.rs).
const GUEST_WRITE: std::ops::Range<u64> = 1024..1088;

/// Byte `index` of sector `sector` in a fresh test image (apps/src/blk_test.rs checks it).
fn image_byte(sector: u64, index: usize) -> u8 {
    (sector.wrapping_mul(7) as usize + index) as u8
}

/// Byte `index` of sector `sector` as `blk-test` writes it.
fn guest_byte(sector: u64, index: usize) -> u8 {
    (sector.wrapping_mul(13) as usize + index + 1) as u8
}

/// Returns a fresh directory for one test's disk images.
fn scratch_dir(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("manada-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    Ok(dir)
}

/// Writes a test image with the pattern into `path`.
fn write_test_image(path: &Path) -> Result<(), String> {
    let mut bytes = Vec::with_capacity(TEST_DISK_SECTORS as usize * 512);
    for sector in 0..TEST_DISK_SECTORS {
        bytes.extend((0..512).map(|index| image_byte(sector, index)));
    }
    fs::write(path, bytes).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn blk_config(
    context: &Context,
    machine: Machine,
    cores: usize,
    app: &str,
    disks: Vec<qemu::DiskSpec>,
) -> QemuConfig {
    QemuConfig {
        kernel: context.kernel.clone(),
        machine,
        cores,
        mem: MemSize::from_mebibytes(512),
        accel: context.accel,
        app: app.to_string(),
        kernel_args: Vec::new(),
        disks,
        net: None,
        inject: None,
        gdb: false,
    }
}

/// Runs `blk-test` with a read-write and a read-only image, then checks on the host that
/// the guest's writes landed and nothing else changed.
fn run_blk_test(context: &Context, machine: Machine, cores: usize) -> CaseResult {
    let fail = |reason: String| (reason, Vec::new());
    let dir = scratch_dir(&format!("blk-{}", machine.name())).map_err(fail)?;
    let (writable, readonly) = (dir.join("disk0.img"), dir.join("disk1.img"));
    write_test_image(&writable).map_err(fail)?;
    write_test_image(&readonly).map_err(fail)?;
    let disks = vec![
        qemu::DiskSpec {
            path: writable.display().to_string(),
            read_only: false,
        },
        qemu::DiskSpec {
            path: readonly.display().to_string(),
            read_only: true,
        },
    ];
    let config = blk_config(context, machine, cores, "blk-test", disks);
    let outcome = qemu::run(&config, Some(context.timeout), false).map_err(fail)?;
    let tail = || outcome.tail(20);
    outcome.verdict().map_err(|reason| (reason, tail()))?;
    for line in [
        "blk-test: all checks passed",
        "blk-test: disk0 id 'manada-disk0'",
    ] {
        require_line(&outcome, line).map_err(|reason| (reason, tail()))?;
    }
    let bytes = fs::read(&writable)
        .map_err(|error| fail(format!("cannot read back the image: {error}")))?;
    for sector in 0..TEST_DISK_SECTORS {
        let expected: fn(u64, usize) -> u8 = if GUEST_WRITE.contains(&sector) {
            guest_byte
        } else {
            image_byte
        };
        let data = &bytes[sector as usize * 512..][..512];
        if data
            .iter()
            .enumerate()
            .any(|(index, &byte)| byte != expected(sector, index))
        {
            return Err((
                format!("sector {sector} of the image is not what the guest should have left"),
                tail(),
            ));
        }
    }
    let untouched = fs::read(&readonly).map_err(|error| fail(error.to_string()))?;
    if untouched
        != bytes
            .iter()
            .enumerate()
            .map(|(i, _)| image_byte(i as u64 / 512, i % 512))
            .collect::<Vec<u8>>()
    {
        return Err(("the read-only image changed".into(), tail()));
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// Runs `blk-errors` with disk0 behind blkdebug failing reads of sector 100.
fn run_blk_errors(context: &Context, machine: Machine) -> CaseResult {
    let fail = |reason: String| (reason, Vec::new());
    let dir = scratch_dir(&format!("blkdebug-{}", machine.name())).map_err(fail)?;
    let (image, rules) = (dir.join("disk0.img"), dir.join("rules.conf"));
    write_test_image(&image).map_err(fail)?;
    fs::write(
        &rules,
        "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"100\"\n",
    )
    .map_err(|error| fail(error.to_string()))?;
    let disk = qemu::DiskSpec {
        path: format!("blkdebug:{}:{}", rules.display(), image.display()),
        read_only: false,
    };
    let config = blk_config(context, machine, 2, "blk-errors", vec![disk]);
    let outcome = qemu::run(&config, Some(context.timeout), false).map_err(fail)?;
    let tail = || outcome.tail(20);
    outcome.verdict().map_err(|reason| (reason, tail()))?;
    let errors = outcome
        .console
        .iter()
        .filter(|line| line.contains("failed with an I/O error, as injected"))
        .count();
    if errors != 3 {
        return Err((
            format!("{errors} injected errors reported, expected 3"),
            tail(),
        ));
    }
    require_line(&outcome, "blk-errors: sector 0 still reads")
        .map_err(|reason| (reason, tail()))?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// Byte `i` of connection `c`'s stream in the echo test.
fn echo_byte(c: usize, i: usize) -> u8 {
    (i.wrapping_mul(31) ^ c.wrapping_mul(101)) as u8
}

/// Opens connection `c` to the echo server on `port` and waits until its first byte came
/// back, so the connection surely reached the guest.
fn open_echo(port: u16, c: usize) -> Result<std::net::TcpStream, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|error| format!("connection {c}: connect: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|error| error.to_string())?;
    let mut first = [echo_byte(c, 0)];
    stream
        .write_all(&first)
        .and_then(|()| stream.read_exact(&mut first))
        .map_err(|error| format!("connection {c}: first byte: {error}"))?;
    if first[0] != echo_byte(c, 0) {
        return Err(format!("connection {c}: byte 0 differs"));
    }
    Ok(stream)
}

/// Sends bytes 1..`length` of connection `c` on `stream` (byte 0 went in `open_echo`)
/// while reading them back, and checks every one.
fn echo_rest(mut stream: std::net::TcpStream, c: usize, length: usize) -> Result<(), String> {
    use std::io::{Read, Write};
    let data: Vec<u8> = (1..length).map(|i| echo_byte(c, i)).collect();
    let mut writer = stream.try_clone().map_err(|error| error.to_string())?;
    let sender = thread::spawn(move || writer.write_all(&data));
    let mut back = vec![0u8; length - 1];
    stream
        .read_exact(&mut back)
        .map_err(|error| format!("connection {c}: {error}"))?;
    sender
        .join()
        .map_err(|_| "writer panicked".to_string())?
        .map_err(|error| error.to_string())?;
    match back
        .iter()
        .enumerate()
        .find(|(i, &byte)| byte != echo_byte(c, *i + 1))
    {
        Some((i, _)) => Err(format!("connection {c}: byte {} differs", i + 1)),
        None => Ok(()),
    }
}

/// Sends `length` bytes on a new connection to `port` and checks that they come back.
fn echo_stream(port: u16, c: usize, length: usize) -> Result<(), String> {
    echo_rest(open_echo(port, c)?, c, length)
}

/// Connections the echo test holds open at once, all streaming together.
///
/// They are opened one after the other: QEMU's user networking listens on the host with
/// a backlog of one, so a burst of connects overflows the host's accept queue, and the
/// host kernel then retries the handshake with backoff for up to half a minute before
/// the guest ever sees a SYN (a packet capture shows those connections never reach the
/// guest). Once open, all of them stream at the same time.
const CONCURRENT_CONNECTIONS: usize = 100;

/// Echoes 1 MiB on one connection, retrying while the guest boots: until it has its
/// address, QEMU's user networking accepts and then resets connections.
fn echo_first(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(40);
    while let Err(error) = echo_stream(port, 0, 1 << 20) {
        if Instant::now() >= deadline {
            return Err(format!("the first echo never worked: {error}"));
        }
        thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

/// The host side of the echo test, run while the guest serves.
fn echo_client(port: u16) -> Result<(), String> {
    echo_tcp(port)?;
    echo_udp(port)
}

/// The TCP part of the echo test: 1 MiB on one connection, then many at once.
fn echo_tcp(port: u16) -> Result<(), String> {
    echo_first(port)?;
    let streams = (1..=CONCURRENT_CONNECTIONS)
        .map(|c| open_echo(port, c).map(|stream| (c, stream)))
        .collect::<Result<Vec<_>, String>>()?;
    let clients: Vec<_> = streams
        .into_iter()
        .map(|(c, stream)| thread::spawn(move || echo_rest(stream, c, 4096)))
        .collect();
    for client in clients {
        client
            .join()
            .map_err(|_| "a client panicked".to_string())??;
    }
    Ok(())
}

/// The UDP part of the echo test, through the forwarded port.
fn echo_udp(port: u16) -> Result<(), String> {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
    udp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|error| error.to_string())?;
    let mut buffer = [0u8; 64];
    for attempt in 0..5 {
        let message = format!("datagram {attempt}");
        udp.send_to(message.as_bytes(), ("127.0.0.1", port))
            .map_err(|error| error.to_string())?;
        if let Ok((count, _)) = udp.recv_from(&mut buffer) {
            if &buffer[..count] == message.as_bytes() {
                return Ok(());
            }
        }
    }
    Err("no UDP echo".into())
}

/// Sends an ARP request for the guest through the injection socket and waits for the
/// reply (frames from user networking also arrive there and are skipped).
fn arp_answered(socket: &std::net::UdpSocket, qemu: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = vec![0u8; 65536];
    while Instant::now() < deadline {
        socket
            .send_to(&crate::frames::arp_request(), ("127.0.0.1", qemu))
            .map_err(|error| format!("inject: {error}"))?;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Ok(count) = socket.recv(&mut buffer) {
                if crate::frames::is_arp_reply(&buffer[..count]) {
                    return Ok(());
                }
            }
        }
    }
    Err("the guest did not answer ARP through the injection socket".into())
}

/// The host side of the malformed-frames test: the echo works, ARP through the
/// injection socket is answered (so injected frames reach the stack), then the
/// catalogue of malformed frames goes in, and ARP, TCP and UDP echo still work.
fn inject_malformed(port: u16, qemu: u16, socket: &std::net::UdpSocket) -> Result<(), String> {
    echo_first(port)?;
    arp_answered(socket, qemu)?;
    let frames = crate::frames::malformed(0x6d61_6e61_6461);
    for (round, (name, frame)) in frames.iter().enumerate() {
        socket
            .send_to(frame, ("127.0.0.1", qemu))
            .map_err(|error| format!("inject {name}: {error}"))?;
        // Let the guest's receive ring drain now and then, so frames are not simply
        // dropped by QEMU for want of buffers.
        if round % 64 == 63 {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let after = |error: String| format!("after {} malformed frames: {error}", frames.len());
    arp_answered(socket, qemu).map_err(after)?;
    // UDP through the injection socket: QEMU's user networking also sees the injected
    // frames (it sits on the same hub), which confuses its own UDP forwarding.
    udp_echo_injected(socket, qemu).map_err(after)?;
    echo_tcp(port).map_err(after)
}

/// Sends a UDP datagram to the guest's echo port through the injection socket and waits
/// for it to come back.
fn udp_echo_injected(socket: &std::net::UdpSocket, qemu: u16) -> Result<(), String> {
    let mut buffer = vec![0u8; 65536];
    for attempt in 0..5 {
        let payload = format!("injected datagram {attempt}");
        socket
            .send_to(
                &crate::frames::udp_datagram(7, payload.as_bytes()),
                ("127.0.0.1", qemu),
            )
            .map_err(|error| format!("inject: {error}"))?;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Ok(count) = socket.recv(&mut buffer) {
                if crate::frames::udp_payload_to_fake_host(&buffer[..count])
                    == Some(payload.as_bytes())
                {
                    return Ok(());
                }
            }
        }
    }
    Err("no UDP echo through the injection socket".into())
}

/// `echo` on user networking, checked from the host through a forwarded port; with
/// `malformed`, also with frames injected through a hub.
fn run_echo(context: &Context, machine: Machine, malformed: bool) -> CaseResult {
    let fail = |reason: String| (reason, Vec::new());
    let port = tools::free_port().map_err(fail)?;
    let mut config = blk_config(context, machine, 4, "echo", Vec::new());
    config.net = Some(vec![(port, 7)]);
    let injector = if malformed {
        let socket =
            std::net::UdpSocket::bind("127.0.0.1:0").map_err(|error| fail(error.to_string()))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|error| fail(error.to_string()))?;
        let own = socket
            .local_addr()
            .map_err(|error| fail(error.to_string()))?
            .port();
        let qemu = tools::free_port().map_err(fail)?;
        config.inject = Some((qemu, own));
        Some((socket, qemu))
    } else {
        None
    };
    let (outcome, client) = qemu::serve_while(&config, context.timeout, |_| match &injector {
        Some((socket, qemu)) => inject_malformed(port, *qemu, socket),
        None => echo_client(port),
    });
    let outcome = outcome.map_err(fail)?;
    let tail = || outcome.tail(20);
    if let Some(fatal) = &outcome.fatal {
        return Err((format!("the kernel failed: {fatal}"), tail()));
    }
    client.map_err(|reason| (reason, tail()))?;
    require_line(&outcome, "manada: net: address 10.0.2.15/24").map_err(|reason| (reason, tail()))
}

/// The idle timeout the httpd test gives the server (kernel argument `idle_ms`).
const HTTPD_IDLE: Duration = Duration::from_secs(2);

/// `httpd` on a vvfat share of the test site, checked from the host through a forwarded
/// port while it serves.
fn run_httpd(context: &Context, machine: Machine) -> CaseResult {
    let fail = |reason: String| (reason, Vec::new());
    let port = tools::free_port().map_err(fail)?;
    let dir = scratch_dir(&format!("httpd-{}", machine.name())).map_err(fail)?;
    let share = dir.join("www");
    let site = httpcheck::build_site(&share).map_err(fail)?;
    let disk = qemu::DiskSpec {
        path: format!("fat:rw:{}", share.display()),
        read_only: false,
    };
    let mut config = blk_config(context, machine, 4, "httpd", vec![disk]);
    config.kernel_args = vec![
        "fs.disk=disk0".into(),
        format!("idle_ms={}", HTTPD_IDLE.as_millis()),
    ];
    config.net = Some(vec![(port, 80)]);
    let (outcome, client) = qemu::serve_while(&config, context.timeout, |_| {
        httpcheck::check(port, &site, HTTPD_IDLE)
    });
    let outcome = outcome.map_err(fail)?;
    let tail = || outcome.tail(20);
    if let Some(fatal) = &outcome.fatal {
        return Err((format!("the kernel failed: {fatal}"), tail()));
    }
    let figures = client.map_err(|reason| (reason, tail()))?;
    require_line(
        &outcome,
        "httpd: serving the share on port 80 with 64 workers on cores [0]",
    )
    .map_err(|reason| (reason, tail()))?;
    println!(
        "xtask: httpd {}: {} keep-alive clients x {} requests served in {:.1} s",
        machine.name(),
        httpcheck::CONCURRENT_CLIENTS,
        httpcheck::REQUESTS_PER_CLIENT,
        figures.concurrent_seconds
    );
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// What `files` writes (apps/src/files.rs) when it runs on 4 cores.
const FILES_WRITTEN: &str = "from-manada/greeting.txt";
const FILES_TEXT: &str = "written by manada on 4 cores\n";
const HELLO_TEXT: &str = "hello from the host, for the test\n";

/// Fills `dir` with the files `files` expects: hello.txt, and a long name in a folder.
fn fill_share(dir: &Path) -> Result<(), String> {
    let io = |error: std::io::Error| format!("cannot fill {}: {error}", dir.display());
    fs::write(dir.join("hello.txt"), HELLO_TEXT).map_err(io)?;
    fs::create_dir_all(dir.join("docs")).map_err(io)?;
    fs::write(dir.join("docs").join("A long file name.txt"), "nested\n").map_err(io)
}

/// Runs `files` with `disk` as the fs service's volume and checks the console.
fn run_files(context: &Context, machine: Machine, disk: qemu::DiskSpec) -> CaseResult {
    let mut config = blk_config(context, machine, 4, "files", vec![disk]);
    config.kernel_args = vec!["fs.disk=disk0".into()];
    let outcome =
        qemu::run(&config, Some(context.timeout), false).map_err(|error| (error, Vec::new()))?;
    let tail = || outcome.tail(20);
    outcome.verdict().map_err(|reason| (reason, tail()))?;
    for line in [
        "files: hello.txt says: hello from the host, for the test",
        "files:   docs/",
        "files: wrote /from-manada/greeting.txt (29 bytes) and read it back",
    ] {
        require_line(&outcome, line).map_err(|reason| (reason, tail()))?;
    }
    Ok(())
}

/// Returns a new scratch folder `scratch` and, inside it, the folder `name` holding the
/// files the `files` app expects.
fn filled_folder(scratch: &str, name: &str) -> Result<(PathBuf, PathBuf), String> {
    let dir = scratch_dir(scratch)?;
    let folder = dir.join(name);
    fs::create_dir_all(&folder).map_err(|error| error.to_string())?;
    fill_share(&folder)?;
    Ok((dir, folder))
}

/// `files` on a folder shared through vvfat; the new file must appear on the host.
fn run_fs_share(context: &Context, machine: Machine) -> CaseResult {
    let fail = |reason: String| (reason, Vec::new());
    let (dir, share) =
        filled_folder(&format!("share-{}", machine.name()), "share").map_err(fail)?;
    let disk = qemu::DiskSpec {
        path: format!("fat:rw:{}", share.display()),
        read_only: false,
    };
    run_files(context, machine, disk)?;
    let written = fs::read_to_string(share.join(FILES_WRITTEN)).map_err(|error| {
        fail(format!(
            "the guest's file is not in the shared folder: {error}"
        ))
    })?;
    if written != FILES_TEXT {
        return Err(fail(format!(
            "the shared folder holds {written:?}, expected {FILES_TEXT:?}"
        )));
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// `files` on an image made by mkfs.fat and mcopy; fsck.fat must find it clean and
/// mtype must read the guest's file.
fn run_fs_image(context: &Context, machine: Machine) -> CaseResult {
    let fail = |reason: String| (reason, Vec::new());
    let (dir, content) =
        filled_folder(&format!("image-{}", machine.name()), "content").map_err(fail)?;
    let image = dir.join("volume.img");
    crate::mkimage::main(&crate::mkimage::MkimageArgs {
        dir: content,
        image: image.clone(),
        size_mib: 32,
    })
    .map_err(fail)?;
    let disk = qemu::DiskSpec {
        path: image.display().to_string(),
        read_only: false,
    };
    run_files(context, machine, disk)?;
    let fsck = Command::new("fsck.fat")
        .arg("-n")
        .arg(&image)
        .output()
        .map_err(|error| fail(format!("cannot run fsck.fat: {error}")))?;
    if !fsck.status.success() {
        let report = String::from_utf8_lossy(&fsck.stdout)
            .lines()
            .map(String::from)
            .collect();
        return Err((
            "fsck.fat -n found problems in the image the guest wrote".into(),
            report,
        ));
    }
    let mtype = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&image)
        .arg(format!("::/{FILES_WRITTEN}"))
        .output()
        .map_err(|error| fail(format!("cannot run mtype: {error}")))?;
    if String::from_utf8_lossy(&mtype.stdout) != FILES_TEXT {
        return Err(fail(format!(
            "mtype reads {:?} from the image",
            String::from_utf8_lossy(&mtype.stdout)
        )));
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// Returns `Ok` when `xtask run --cores <cores>` fails, names the valid range and starts no QEMU.
fn check_refused(cores: &str) -> CaseResult {
    let fail = |reason: String| (reason, Vec::new());
    let exe = std::env::current_exe()
        .map_err(|error| fail(format!("cannot find xtask's binary: {error}")))?;
    // A bogus kernel path keeps a broken check from building or booting anything.
    let mut child = Command::new(exe)
        .args([
            "run",
            "--cores",
            cores,
            "--timeout",
            "5",
            "--kernel",
            "/nonexistent/manada",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| fail(format!("cannot run xtask: {error}")))?;
    let stdout = child.stdout.take().map(read_all_in_background);
    let stderr = child.stderr.take().map(read_all_in_background);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail("xtask run did not exit within 30 s".into()));
            }
            Err(error) => return Err(fail(error.to_string())),
        }
    };
    let output: String = [stdout, stderr]
        .into_iter()
        .flatten()
        .map(|reader| reader.join().unwrap_or_default())
        .collect();
    let tail: Vec<String> = output.lines().map(String::from).collect();
    let range = format!("1..={MAX_CORES}");
    if status.success() {
        Err((format!("xtask run --cores {cores} succeeded"), tail))
    } else if output.contains("xtask: running") || output.contains(qemu::QEMU) {
        Err(("QEMU was started".into(), tail))
    } else if !output.contains(&range) {
        Err((format!("message does not name the range {range}"), tail))
    } else {
        Ok(())
    }
}

/// Returns a thread that reads `stream` to its end.
fn read_all_in_background(mut stream: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
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

    #[test]
    fn case_list_covers_the_matrix() {
        let names: Vec<String> = cases().iter().map(Case::name).collect();
        for machine in ["q35", "pc"] {
            for cores in [1, 2, 4, 8] {
                assert!(names.contains(&format!("hello {machine} x{cores}")));
            }
        }
        for cores in [1, 4, 8] {
            assert!(names.contains(&format!("hello microvm x{cores}")));
        }
        assert!(!names.contains(&"hello microvm x2".to_string()));
        assert!(names.contains(&"panic q35 x4".to_string()));
        assert!(names.contains(&"run --cores 0 refused".to_string()));
        assert!(names.contains(&"run --cores 65 refused".to_string()));
        assert!(names.contains(&"hello q35 x2 selftest=invalid-opcode".to_string()));
        assert!(names.contains(&"hello q35 x2 selftest=page-fault".to_string()));
        assert!(names.contains(&"hello pc x4 selftest=dead-core".to_string()));
        assert!(names.contains(&"ipc q35 x4 messages=1000000".to_string()));
        assert!(names.contains(&"threads q35 x4".to_string()));
        assert!(names.contains(&"overflow q35 x2".to_string()));
        assert!(names.contains(&"blk-test q35 x4".to_string()));
        assert!(names.contains(&"blk-errors pc blkdebug".to_string()));
        assert!(names.contains(&"files pc vvfat share".to_string()));
        assert!(names.contains(&"echo q35 tcp+udp".to_string()));
        assert!(names.contains(&"httpd q35 share+forward".to_string()));
        assert!(names.contains(&"httpd pc share+forward".to_string()));
        assert!(names.contains(&"net pc malformed frames".to_string()));
        assert!(names.contains(&"bench scale --quick smoke run".to_string()));
        assert_eq!(names.len(), 11 + 1 + 2 + 3 + 4 + 7 + 14 + 1);
    }

    #[test]
    fn panic_check_needs_the_line_and_the_failure_status() {
        let mut outcome = qemu::Outcome::new(
            Status::KernelFailure,
            vec!["PANIC on core 3: on purpose".into()],
            None,
        );
        assert_eq!(check_panic(&outcome, 4), Ok(()));
        assert!(check_panic(&outcome, 2).is_err());
        assert!(check_panic(&outcome, 8).is_err());
        outcome.status = Status::NoKernelCode;
        assert!(check_panic(&outcome, 4).is_err());
        outcome.status = Status::KernelFailure;
        outcome.console.clear();
        assert!(check_panic(&outcome, 4).is_err());
    }
}
