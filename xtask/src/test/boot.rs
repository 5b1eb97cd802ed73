//! Boot tests: every core online at every size and machine, faults reported, the
//! mailbox exchange, threads and heaps, and `--cores` and `--mem` values refused.

use std::fs;
use std::time::Duration;

use super::runner::{
    remove_scratch, require_line, require_success, run_xtask, scratch_dir, Case, CaseResult,
    Context, Failure, Start, WithTail,
};
use crate::markers::{self, Marker};
use crate::qemu::{self, Machine, Status};
use crate::MAX_CORES;

/// Returns a case that boots `app` on `machine` with `cores` cores and `kernel_args`, then
/// applies `check` to the outcome.
fn boot_case(
    app: &'static str,
    machine: Machine,
    cores: usize,
    kernel_args: &'static [&'static str],
    check: impl Fn(&qemu::Outcome, usize) -> CaseResult + Send + Sync + 'static,
) -> Case {
    let mut name = format!("{app} {} x{cores}", machine.name());
    for arg in kernel_args {
        name.push(' ');
        name.push_str(arg);
    }
    Case::boot(name, move |context: &Context| {
        let mut config = context.config(machine, cores, app);
        config.kernel_args = kernel_args.iter().map(|arg| arg.to_string()).collect();
        // The long exchanges (started first, all together) get room for a busy host.
        let outcome = if app == "ipc" {
            context.run_long(&config)?
        } else {
            context.run(&config)?
        };
        check(&outcome, cores)
    })
}

/// Every core says hello once, all cores come online, the kernel reports success.
fn hello(outcome: &qemu::Outcome, cores: usize) -> CaseResult {
    require_success(outcome)?;
    markers::check_hello(&outcome.console, cores).tail_of(outcome)
}

/// Returns a check that the app succeeded and printed a line starting with `line`.
fn success_with(
    line: &'static str,
) -> impl Fn(&qemu::Outcome, usize) -> CaseResult + Send + Sync + 'static {
    move |outcome, _| {
        require_success(outcome)?;
        require_line(outcome, line)
    }
}

/// Returns the boot tests.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // The kernel's most cores (every core starts at once; nothing on the boot core may
    // grow faster than the core count).
    for machine in [Machine::Q35, Machine::Microvm] {
        cases.push(boot_case("hello", machine, MAX_CORES, &[], hello).starting(Start::First));
    }
    // The slowest (8-core) guests first, so the slots stay busy at the end.
    for cores in [8, 4, 2, 1] {
        for machine in [Machine::Q35, Machine::Pc] {
            cases.push(boot_case("hello", machine, cores, &[], hello));
        }
        if cores != 2 {
            cases.push(boot_case("hello", Machine::Microvm, cores, &[], hello));
        }
    }
    cases.push(boot_case(
        "panic",
        Machine::Q35,
        4,
        &[],
        |outcome, cores| check_panic(outcome, cores).tail_of(outcome),
    ));
    let faults: [(&'static [&'static str], &'static str); 2] = [
        (&["selftest=invalid-opcode"], "#UD"),
        (&["selftest=page-fault"], "#PF"),
    ];
    for (kernel_args, mnemonic) in faults {
        cases.push(boot_case(
            "hello",
            Machine::Q35,
            2,
            kernel_args,
            move |outcome, cores| {
                check_exception(outcome, cores, mnemonic, Ended::Core).tail_of(outcome)
            },
        ));
    }
    cases.push(boot_case(
        "hello",
        Machine::Pc,
        4,
        &["selftest=dead-core"],
        |outcome, cores| {
            require_success(outcome)?;
            if !outcome
                .console
                .iter()
                .any(|line| line.contains("did not come up"))
            {
                return Err("the sleeping core was not reported".to_string()).tail_of(outcome);
            }
            markers::check_hello(&outcome.console, cores - 1).tail_of(outcome)
        },
    ));
    // All-to-all mailbox exchange; 10^6 messages per ordered pair at 2 and 4 cores.
    let exchanges: [(Machine, usize, &'static [&'static str], u64); 4] = [
        (Machine::Q35, 4, &["messages=1000000"], 1_000_000),
        (Machine::Q35, 2, &["messages=1000000"], 1_000_000),
        (Machine::Q35, 8, &["messages=100000"], 100_000),
        (Machine::Pc, 4, &["messages=100000"], 100_000),
    ];
    for (machine, cores, kernel_args, messages) in exchanges {
        cases.push(
            boot_case("ipc", machine, cores, kernel_args, move |outcome, cores| {
                require_success(outcome)?;
                check_exchange(&outcome.console, cores, messages).tail_of(outcome)
            })
            .starting(Start::First),
        );
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
        cases.push(boot_case(app, machine, cores, &[], success_with(line)));
    }
    cases.push(boot_case("oom", Machine::Q35, 2, &[], |outcome, _| {
        fails_with(outcome, "memory allocation of 1099511627776 bytes failed")?;
        check_thread_ended(outcome, 1).tail_of(outcome)
    }));
    cases.push(boot_case(
        "overflow",
        Machine::Q35,
        2,
        &[],
        |outcome, cores| {
            check_exception(outcome, cores, "#PF stack overflow", Ended::Thread).tail_of(outcome)
        },
    ));
    // The whole command line is read: a word after 3,000 bytes still counts, and one
    // longer than the kernel takes is refused at boot, never cut.
    let padding = format!("pad={}", "x".repeat(3000));
    cases.push(Case::boot("hello q35 x2 selftest after 3000 bytes", {
        let padding = padding.clone();
        move |context: &Context| {
            let mut config = context.config(Machine::Q35, 2, "hello");
            config.kernel_args = vec![padding.clone(), "selftest=page-fault".into()];
            let outcome = context.run(&config)?;
            check_exception(&outcome, 2, "#PF", Ended::Core).tail_of(&outcome)
        }
    }));
    cases.push(Case::boot(
        "hello q35 x1 command line too long",
        |context: &Context| {
            let mut config = context.config(Machine::Q35, 1, "hello");
            // 4,104 bytes in all: past the kernel's 4,096, within what QEMU's PVH loader
            // copies without overwriting start_info (about 4,100 to 4,200).
            config.kernel_args = vec![format!("pad={}", "x".repeat(4090))];
            let outcome = context.run(&config)?;
            fails_with(
            &outcome,
            "manada: cannot read PVH start_info: the kernel command line is longer than 4096 bytes",
        )
        },
    ));
    for cores in ["0", "65"] {
        cases.push(Case::host(
            format!("run --cores {cores} refused"),
            move || check_refused(cores),
        ));
    }
    cases.push(Case::host(
        "run --mem smaller than the image refused",
        check_memory_refused,
    ));
    cases.push(Case::boot(
        format!("hello q35 x{MAX_CORES} --mem 16M names the memory needed"),
        |context: &Context| {
            let mut config = context.config(Machine::Q35, MAX_CORES, "hello");
            config.mem = qemu::MemSize::from_mebibytes(16);
            let outcome = context.run(&config)?;
            fails_with(
                &outcome,
                &format!("manada: too little memory to start {MAX_CORES} cores: their start-up area needs"),
            )?;
            fails_with(&outcome, "run with more memory (--mem)")
        },
    ));
    cases
}

/// Returns `Ok` when the kernel reported failure after printing a line containing `text`.
fn fails_with(outcome: &qemu::Outcome, text: &str) -> CaseResult {
    if !outcome.console.iter().any(|line| line.contains(text)) {
        Err(format!("no line containing `{text}`")).tail_of(outcome)
    } else if outcome.status != Status::KernelFailure {
        Err(format!(
            "QEMU ended with {:?}, not the kernel's failure status",
            outcome.status
        ))
        .tail_of(outcome)
    } else {
        Ok(())
    }
}

/// Returns `Ok` when the run shows a panic in a thread on the last core, that thread
/// ended alone (its core went on, and its join said it panicked), and the kernel then
/// counted it and reported failure.
fn check_panic(outcome: &qemu::Outcome, cores: usize) -> Result<(), String> {
    let panic = outcome
        .console
        .iter()
        .find_map(|line| match markers::parse_line(line) {
            Some(Marker::Panic { core, thread, .. }) => Some((core, thread)),
            _ => None,
        });
    match panic {
        None => return Err("no `PANIC on core` line".into()),
        // The panic app panics on the last core, so an AP's panic must reach the console.
        Some((core, _)) if core != cores - 1 => {
            return Err(format!(
                "panic on core {core}, expected the last core ({})",
                cores - 1
            ))
        }
        Some((_, None)) => return Err("the panic report names no thread".into()),
        Some(_) => {}
    }
    check_thread_ended(outcome, cores - 1)?;
    if !outcome
        .console
        .iter()
        .any(|line| line.starts_with("panic: the join of the panicking thread"))
    {
        return Err("the app's join did not report the panic".into());
    }
    if outcome.status != Status::KernelFailure {
        return Err(format!(
            "panic seen but QEMU ended with {:?}, not the kernel's failure status",
            outcome.status
        ));
    }
    Ok(())
}

/// How a fault was contained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// The faulting thread ended alone.
    Thread,
    /// The faulting core was fenced.
    Core,
}

/// Returns `Ok` when a thread on core `core` ended alone, its core went on, and the
/// run's count says one thread and no core failed.
fn check_thread_ended(outcome: &qemu::Outcome, core: usize) -> Result<(), String> {
    let seen: Vec<Marker> = outcome
        .console
        .iter()
        .filter_map(|line| markers::parse_line(line))
        .collect();
    if !seen
        .iter()
        .any(|marker| matches!(marker, Marker::ThreadEnded { core: c, .. } if *c == core))
    {
        return Err(format!(
            "core {core} did not report going on without the thread"
        ));
    }
    if let Some(failed) = seen
        .iter()
        .find(|marker| matches!(marker, Marker::CoreFailed { .. }))
    {
        return Err(format!(
            "a core failed, where only a thread should have: {failed:?}"
        ));
    }
    if !seen.contains(&Marker::Failures {
        threads: 1,
        cores: 0,
    }) {
        return Err("no `1 thread and 0 cores failed` count at the end".into());
    }
    Ok(())
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

/// Returns `Ok` when the last core reported CPU exception `mnemonic`, the fault ended
/// what `ended` says (and nothing more), and the kernel then reported failure.
fn check_exception(
    outcome: &qemu::Outcome,
    cores: usize,
    mnemonic: &str,
    ended: Ended,
) -> Result<(), String> {
    let last = cores - 1;
    match ended {
        Ended::Thread => check_thread_ended(outcome, last)?,
        Ended::Core => {
            let failed: Vec<usize> = outcome
                .console
                .iter()
                .filter_map(|line| match markers::parse_line(line) {
                    Some(Marker::CoreFailed { core, .. }) => Some(core),
                    _ => None,
                })
                .collect();
            if failed != [last] {
                return Err(format!(
                    "cores {failed:?} reported failing, expected the last core ({last}) alone"
                ));
            }
        }
    }
    let exception = outcome
        .console
        .iter()
        .find_map(|line| match markers::parse_line(line) {
            Some(Marker::Exception { core, detail, .. }) => Some((core, detail)),
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

/// Returns `Ok` when `xtask run --cores <cores>` fails, names the valid range and starts no QEMU.
fn check_refused(cores: &str) -> CaseResult {
    // A bogus kernel path keeps a broken check from building or booting anything.
    let run = run_xtask(
        &[
            "run",
            "--cores",
            cores,
            "--timeout",
            "5",
            "--kernel",
            "/nonexistent/manada",
        ],
        Duration::from_secs(30),
    )?;
    let tail: Vec<String> = run.output.lines().map(String::from).collect();
    let range = format!("1..={MAX_CORES}");
    let reason = if run.success {
        format!("xtask run --cores {cores} succeeded")
    } else if run.output.contains("xtask: running") || run.output.contains(qemu::QEMU) {
        "QEMU was started".into()
    } else if !run.output.contains(&range) {
        format!("message does not name the range {range}")
    } else {
        return Ok(());
    };
    Err(Failure { reason, tail })
}

/// Returns `Ok` when `xtask run --mem 2M` with an image that ends at 2.5 MiB fails, names
/// the smallest memory that holds it (4M) and starts no QEMU: such a guest would hang or
/// triple-fault before the kernel could say why.
fn check_memory_refused() -> CaseResult {
    let dir = scratch_dir("small-mem").map_err(Failure::from)?;
    // An ELF64 header and one loaded segment at 1 MiB of 1.5 MiB (what QEMU reads of it).
    let mut image = vec![0u8; 64 + 56];
    image[..6].copy_from_slice(b"\x7fELF\x02\x01");
    image[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    image[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    image[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    image[64..68].copy_from_slice(&1u32.to_le_bytes());
    image[64 + 0x18..64 + 0x20].copy_from_slice(&0x10_0000u64.to_le_bytes());
    image[64 + 0x28..64 + 0x30].copy_from_slice(&0x18_0000u64.to_le_bytes());
    let kernel = dir.join("small.elf");
    fs::write(&kernel, image)
        .map_err(|error| Failure::from(format!("cannot write {}: {error}", kernel.display())))?;
    let kernel = kernel.display().to_string();
    let run = run_xtask(
        &["run", "--mem", "2M", "--timeout", "5", "--kernel", &kernel],
        Duration::from_secs(30),
    )?;
    let tail: Vec<String> = run.output.lines().map(String::from).collect();
    let reason = if run.success {
        "xtask run --mem 2M succeeded".to_string()
    } else if run.output.contains("xtask: running") || run.output.contains(qemu::QEMU) {
        "QEMU was started".into()
    } else if !run.output.contains("--mem 2M is too small") || !run.output.contains("at least 4M") {
        "the error does not say that 2M is too small and 4M is needed".into()
    } else {
        remove_scratch(&dir);
        return Ok(());
    };
    Err(Failure { reason, tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_is_covered() {
        let names: Vec<String> = cases().into_iter().map(|case| case.name).collect();
        for machine in ["q35", "pc"] {
            for cores in [1, 2, 4, 8] {
                assert!(names.contains(&format!("hello {machine} x{cores}")));
            }
        }
        for cores in [1, 4, 8, MAX_CORES] {
            assert!(names.contains(&format!("hello microvm x{cores}")));
        }
        assert!(names.contains(&format!("hello q35 x{MAX_CORES}")));
        for name in [
            "panic q35 x4",
            "run --cores 0 refused",
            "run --cores 65 refused",
            "hello q35 x2 selftest=invalid-opcode",
            "hello q35 x2 selftest=page-fault",
            "hello pc x4 selftest=dead-core",
            "ipc q35 x4 messages=1000000",
            "threads q35 x4",
            "overflow q35 x2",
        ] {
            assert!(names.iter().any(|n| n == name), "no case {name}");
        }
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| line.to_string()).collect()
    }

    #[test]
    fn panic_check_needs_the_lines_and_the_failure_status() {
        let good = lines(&[
            "PANIC on core 3, thread 1: on purpose at apps/src/panic.rs:16",
            "manada: core 3 goes on without thread 1 (the thread panicked); its stack and what it held are leaked",
            "panic: the join of the panicking thread on core 3 says it panicked",
            "manada: 1 thread and 0 cores failed during the run",
        ]);
        let mut outcome = qemu::Outcome::new(Status::KernelFailure, good.clone(), None);
        assert_eq!(check_panic(&outcome, 4), Ok(()));
        assert!(check_panic(&outcome, 2).is_err());
        assert!(check_panic(&outcome, 8).is_err());
        outcome.status = Status::NoKernelCode;
        assert!(check_panic(&outcome, 4).is_err());
        outcome.status = Status::KernelFailure;
        for missing in 0..good.len() {
            let mut console = good.clone();
            console.remove(missing);
            outcome.console = console;
            assert!(
                check_panic(&outcome, 4).is_err(),
                "passed without line {missing}"
            );
        }
        outcome.console = good;
        outcome
            .console
            .push("manada: core 3 failed: the fault struck its kernel loop; it is fenced".into());
        assert!(check_panic(&outcome, 4).is_err(), "a core failed too");
    }

    #[test]
    fn exception_check_tells_a_failed_core_from_an_ended_thread() {
        let core_failed = lines(&[
            "EXCEPTION on core 1: #UD invalid opcode (vector 6), error code 0x0, RIP 0x1000, RSP 0x2",
            "manada: core 1 failed: the fault struck its kernel loop; it is fenced and halts, the other cores go on",
        ]);
        let outcome = qemu::Outcome::new(Status::KernelFailure, core_failed, None);
        assert_eq!(check_exception(&outcome, 2, "#UD", Ended::Core), Ok(()));
        assert!(check_exception(&outcome, 2, "#UD", Ended::Thread).is_err());
        assert!(check_exception(&outcome, 2, "#PF", Ended::Core).is_err());
        assert!(check_exception(&outcome, 4, "#UD", Ended::Core).is_err());
    }
}
