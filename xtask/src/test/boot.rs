//! Boot tests: every core online at every size and machine, faults reported, the
//! mailbox exchange, threads and heaps, and `--cores` values refused.

use std::time::Duration;

use super::runner::{
    require_line, require_success, run_xtask, Case, CaseResult, Context, Failure, Start, WithTail,
};
use crate::console::{self, Marker};
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
        let outcome = context.run(&config)?;
        check(&outcome, cores)
    })
}

/// Every core says hello once, all cores come online, the kernel reports success.
fn hello(outcome: &qemu::Outcome, cores: usize) -> CaseResult {
    require_success(outcome)?;
    console::check_hello(&outcome.console, cores).tail_of(outcome)
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
            move |outcome, cores| check_exception(outcome, cores, mnemonic).tail_of(outcome),
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
            console::check_hello(&outcome.console, cores - 1).tail_of(outcome)
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
        fails_with(
            outcome,
            "PANIC on core 1: memory allocation of 1099511627776 bytes failed",
        )
    }));
    cases.push(boot_case(
        "overflow",
        Machine::Q35,
        2,
        &[],
        |outcome, cores| check_exception(outcome, cores, "#PF stack overflow").tail_of(outcome),
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
            check_exception(&outcome, 2, "#PF").tail_of(&outcome)
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
