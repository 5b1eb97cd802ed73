//! Fault containment tests: a fault injected from the kernel command line ends one
//! thread, or fences one core, and the rest of the machine goes on. `httpd` on 6 cores
//! keeps serving the whole host check (files byte for byte) after a worker thread, then
//! a whole worker core, failed; the `faults` app sees a join, a park, a spawn, a
//! `run_on` and a send towards a failed core end with errors in bounded time.

use std::time::{Duration, Instant};

use super::runner::{
    remove_scratch, require_line, scratch_dir, Case, CaseResult, Context, Failure, WithTail,
};
use crate::httpcheck;
use crate::markers::{self, Marker};
use crate::qemu::{self, Machine, Status};
use crate::tools;

/// A fault to inject, and where the tests expect it.
#[derive(Clone, Copy, Debug)]
struct Injected {
    core: usize,
    kind: &'static str,
    /// The kernel loop (the core fails) rather than a thread (the thread ends alone).
    in_loop: bool,
    after_ms: u64,
}

impl Injected {
    /// Returns the kernel argument that injects it.
    fn kernel_arg(&self) -> String {
        format!(
            "selftest=fault:core={}:kind={}:in={}:after={}",
            self.core,
            self.kind,
            if self.in_loop { "loop" } else { "thread" },
            self.after_ms
        )
    }
}

/// Returns the fault containment tests.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Each machine gets other fault kinds, so every kind is raised somewhere.
    let thread_faults = [(Machine::Q35, "page-fault"), (Machine::Pc, "panic")];
    for (machine, kind) in thread_faults {
        let injected = Injected {
            core: 1,
            kind,
            in_loop: false,
            after_ms: 1000,
        };
        cases.push(Case::boot(
            format!("httpd {} x6 fault in a worker thread", machine.name()),
            move |context: &Context| httpd_survives(context, machine, injected),
        ));
    }
    let core_faults = [
        (Machine::Q35, "invalid-opcode"),
        (Machine::Pc, "general-protection"),
    ];
    for (machine, kind) in core_faults {
        let injected = Injected {
            core: 2,
            kind,
            in_loop: true,
            after_ms: 3000,
        };
        cases.push(Case::boot(
            format!("httpd {} x6 fault fails a worker core", machine.name()),
            move |context: &Context| httpd_survives(context, machine, injected),
        ));
    }
    let probes = [
        (Machine::Q35, "invalid-opcode"),
        (Machine::Pc, "divide-error"),
    ];
    for (machine, kind) in probes {
        cases.push(Case::boot(
            format!("faults {} x3 waits on a failed core end", machine.name()),
            move |context: &Context| waits_end(context, machine, kind),
        ));
    }
    cases
}

/// The idle timeout the server gets (kernel argument `idle_ms`), as in the httpd tests.
const IDLE: Duration = Duration::from_secs(2);
/// How long the client waits for the injected fault to be reported.
const FAULT_PATIENCE: Duration = Duration::from_secs(60);

/// `httpd` on 6 cores (workers on cores 0 to 2, the services on 3 to 5) with `injected`
/// in a worker thread or a worker core: once the fault is reported, the whole host check
/// passes, and QEMU is still running when the client is done.
fn httpd_survives(context: &Context, machine: Machine, injected: Injected) -> CaseResult {
    let port = tools::free_port()?;
    let name = format!(
        "faults-httpd-{}-{}",
        machine.name(),
        if injected.in_loop { "core" } else { "thread" }
    );
    let dir = scratch_dir(&name)?;
    let share = dir.join("www");
    let site = httpcheck::build_site(&share)?;
    let mut config = context.config(machine, 6, "httpd");
    config.disks = vec![qemu::DiskSpec {
        path: format!("fat:rw:{}", share.display()),
        read_only: false,
    }];
    config.kernel_args = vec![
        "fs.disk=disk0".into(),
        format!("idle_ms={}", IDLE.as_millis()),
        // 32 per worker core: after one fails, 64 still take the 50 concurrent clients.
        "workers=96".into(),
        injected.kernel_arg(),
    ];
    config.net = Some(vec![(port, 80)]);
    // Twice the usual limit: the fault comes first, then the whole check, on 6 vCPUs.
    let limit = context.timeout * 2;
    let (outcome, client) = qemu::serve_watching(&config, limit, |guest| {
        let reported = |line: &str| match markers::parse_line(line) {
            Some(Marker::ThreadEnded { core, .. }) | Some(Marker::CoreFailed { core, .. }) => {
                core == injected.core
            }
            _ => false,
        };
        // Serving first; then, for a fault in a thread, traffic until one of the core's
        // workers runs after the delay and takes the fault (a request it had may fail).
        // The net core answers cached files itself, so the traffic asks for files that
        // do not exist: a miss always goes to a worker.
        httpcheck::first_response(port, &site)?;
        if injected.in_loop {
            if guest.wait_for_line(FAULT_PATIENCE, reported).is_none() {
                return Err(format!("core {} did not report failing", injected.core));
            }
        } else {
            let deadline = Instant::now() + FAULT_PATIENCE;
            while guest.wait_for_line(Duration::ZERO, reported).is_none() {
                if guest.ended() || Instant::now() >= deadline {
                    return Err(format!(
                        "no worker on core {} reported the injected fault",
                        injected.core
                    ));
                }
                let _ = httpcheck::Client::connect(port, Duration::from_secs(3))
                    .and_then(|mut client| client.request("GET", "/no-such-file.txt"));
            }
        }
        httpcheck::check(port, &site, IDLE)
    });
    let outcome = outcome?;
    let figures = client.tail_of(&outcome)?;
    check_contained(&outcome, injected)?;
    require_line(&outcome, "httpd: serving the share on port 80")?;
    println!(
        "xtask: httpd {} x6 after a fault {}: {} keep-alive clients served in {:.1} s",
        machine.name(),
        if injected.in_loop {
            "that failed worker core 2"
        } else {
            "in a worker thread on core 1"
        },
        httpcheck::CONCURRENT_CLIENTS,
        figures.concurrent_seconds
    );
    remove_scratch(&dir);
    Ok(())
}

/// Returns `Ok` when the run reported `injected` on its core, ended exactly what it
/// should (that thread, or that core), and was still running when the client stopped it.
fn check_contained(outcome: &qemu::Outcome, injected: Injected) -> CaseResult {
    let seen: Vec<Marker> = outcome
        .console
        .iter()
        .filter_map(|line| markers::parse_line(line))
        .collect();
    let fault = seen.iter().find_map(|marker| match marker {
        Marker::Panic { core, thread, .. } | Marker::Exception { core, thread, .. } => {
            Some((*core, *thread))
        }
        _ => None,
    });
    let ended: Vec<(usize, u64)> = seen
        .iter()
        .filter_map(|marker| match marker {
            Marker::ThreadEnded { core, thread } => Some((*core, *thread)),
            _ => None,
        })
        .collect();
    let failed: Vec<usize> = seen
        .iter()
        .filter_map(|marker| match marker {
            Marker::CoreFailed { core, .. } => Some(*core),
            _ => None,
        })
        .collect();
    let problem = match (fault, injected.in_loop) {
        (None, _) => Some("no PANIC or EXCEPTION report".to_string()),
        (Some((core, _)), _) if core != injected.core => Some(format!(
            "the fault was reported on core {core}, not core {}",
            injected.core
        )),
        (Some((_, Some(thread))), false) if ended != [(injected.core, thread)] => Some(format!(
            "threads ended: {ended:?}, expected thread {thread} of core {} alone",
            injected.core
        )),
        (Some((_, None)), false) => Some("the report names no thread".into()),
        (Some(_), false) if !failed.is_empty() => Some(format!("cores {failed:?} failed too")),
        (Some((_, Some(_))), true) => Some("the loop fault was reported in a thread".into()),
        (Some(_), true) if failed != [injected.core] || !ended.is_empty() => Some(format!(
            "cores failed: {failed:?}, threads ended: {ended:?}; expected core {} alone",
            injected.core
        )),
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(problem).tail_of(outcome);
    }
    if outcome.status != Status::TimedOut {
        // The client stops a server that is still running: anything else means it ended.
        return Err(format!(
            "the server ended by itself ({:?}) instead of serving on",
            outcome.status
        ))
        .tail_of(outcome);
    }
    Ok(())
}

/// The `faults` app on 3 cores with core 1 failing in its loop (`kind`): every wait on
/// core 1 ends with an error in bounded time, and the run ends in failure with the count.
fn waits_end(context: &Context, machine: Machine, kind: &'static str) -> CaseResult {
    let mut config = context.config(machine, 3, "faults");
    let injected = Injected {
        core: 1,
        kind,
        in_loop: true,
        after_ms: 1500,
    };
    config.kernel_args = vec![injected.kernel_arg()];
    let outcome = context.run(&config)?;
    for line in [
        "faults: a thread on core 2 panicked and ended alone; core 2 ran the next thread",
        "faults: the join of a thread on failed core 1 returned CoreFailed(1)",
        "faults: a thread parked on failed core 1 was woken with CoreFailed(1)",
        "faults: a spawn, a run_on, a park_on and a send towards failed core 1 were refused",
        "faults: every wait on failed core 1 ended with an error; core 2 went on",
        "manada: 1 thread and 1 core failed during the run",
        "manada: app faults failed: its main returned success, but part of the run failed",
    ] {
        require_line(&outcome, line)?;
    }
    let failed: Vec<usize> = outcome
        .console
        .iter()
        .filter_map(|line| match markers::parse_line(line) {
            Some(Marker::CoreFailed { core, .. }) => Some(core),
            _ => None,
        })
        .collect();
    if failed != [1] {
        return Err(format!("cores {failed:?} failed, expected core 1 alone")).tail_of(&outcome);
    }
    if outcome.status != Status::KernelFailure {
        return Err(Failure {
            reason: format!(
                "QEMU ended with {:?}, not the kernel's failure status",
                outcome.status
            ),
            tail: outcome.tail(20),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Status, lines: &[&str]) -> qemu::Outcome {
        qemu::Outcome::new(
            status,
            lines.iter().map(|line| line.to_string()).collect(),
            None,
        )
    }

    const THREAD: Injected = Injected {
        core: 1,
        kind: "page-fault",
        in_loop: false,
        after_ms: 1000,
    };
    const CORE: Injected = Injected {
        core: 2,
        kind: "invalid-opcode",
        in_loop: true,
        after_ms: 3000,
    };

    #[test]
    fn the_injection_is_spelled_as_the_kernel_parses_it() {
        assert_eq!(
            CORE.kernel_arg(),
            "selftest=fault:core=2:kind=invalid-opcode:in=loop:after=3000"
        );
        assert_eq!(
            THREAD.kernel_arg(),
            "selftest=fault:core=1:kind=page-fault:in=thread:after=1000"
        );
    }

    #[test]
    fn containment_check_wants_exactly_the_injected_failure() {
        let thread_ok = [
            "EXCEPTION on core 1, thread 9: #PF page fault (vector 14), RIP 0x1",
            "manada: core 1 goes on without thread 9 (the thread took CPU exception 14); its stack and what it held are leaked",
        ];
        assert!(check_contained(&outcome(Status::TimedOut, &thread_ok), THREAD).is_ok());
        assert!(
            check_contained(&outcome(Status::KernelFailure, &thread_ok), THREAD).is_err(),
            "the server must still run"
        );
        assert!(check_contained(&outcome(Status::TimedOut, &thread_ok[..1]), THREAD).is_err());
        let wrong_core = [
            "EXCEPTION on core 0, thread 9: #PF",
            "manada: core 0 goes on without thread 9 (x)",
        ];
        assert!(check_contained(&outcome(Status::TimedOut, &wrong_core), THREAD).is_err());
        let core_ok = [
            "EXCEPTION on core 2: #UD invalid opcode (vector 6), RIP 0x1",
            "manada: core 2 failed: the fault struck its kernel loop; it is fenced and halts, the other cores go on",
        ];
        assert!(check_contained(&outcome(Status::TimedOut, &core_ok), CORE).is_ok());
        assert!(check_contained(&outcome(Status::TimedOut, &core_ok), THREAD).is_err());
        let two_cores = [
            core_ok[0],
            core_ok[1],
            "manada: core 3 failed: a double fault; it is fenced",
        ];
        assert!(check_contained(&outcome(Status::TimedOut, &two_cores), CORE).is_err());
        assert!(check_contained(&outcome(Status::TimedOut, &[]), CORE).is_err());
    }

    #[test]
    fn every_case_is_listed_for_both_machines() {
        let names: Vec<String> = cases().into_iter().map(|case| case.name).collect();
        for machine in ["q35", "pc"] {
            for name in [
                format!("httpd {machine} x6 fault in a worker thread"),
                format!("httpd {machine} x6 fault fails a worker core"),
                format!("faults {machine} x3 waits on a failed core end"),
            ] {
                assert!(names.contains(&name), "no case {name}");
            }
        }
    }
}
