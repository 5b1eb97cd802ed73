//! `faults`: what the cores that go on see of a failure. A thread on core 2 panics and
//! ends alone; core 1 fails (the test injects it: `selftest=fault:core=1:kind=...:
//! in=loop:after=MS`), and a join, a `park_on`, then a spawn, a `run_on`, a `park_on` and
//! a mailbox send towards it all end with an error, none waiting for good. Needs 3 cores.

use core::time::Duration;

use percore::{println, Instant, JoinError, SpawnError};

use crate::app::{App, AppError};

pub(crate) const APP: App = App {
    name: "faults",
    summary: "waits on a core that fails (inject it with selftest=fault:core=1:...:in=loop); every wait ends with an error",
    main,
};

/// The core the test makes fail.
const FAILING: usize = 1;
/// The core that keeps running threads.
const HEALTHY: usize = 2;
/// How long a wait on the failing core may take, from the moment its failure is visible.
const BOUND: Duration = Duration::from_secs(2);
/// How long the app waits for the failure at most.
const PATIENCE: Duration = Duration::from_secs(30);

fn main() -> Result<(), AppError> {
    if percore::core_count() < 3 {
        return Err(AppError("faults needs 3 cores"));
    }
    thread_fails_alone()?;

    // Waits that begin before core 1 fails: a join of a thread there, and a thread
    // parked on it (its unpark is held by core 1, which never sends it).
    let sleeper = percore::try_spawn_on(FAILING, || {
        percore::sleep(Duration::from_secs(3600));
    })
    .map_err(|_| AppError("no thread started on core 1 before it failed"))?;
    let parker = percore::spawn_on(HEALTHY, || {
        percore::park_on(FAILING, |parked| {
            // Core 1 gets the unpark and never uses it (a job that drops it unused).
            let _ = percore::run_on(FAILING, move || {
                let _unused = parked;
            });
        })
    });
    // A watcher notes when the failure becomes visible, so the waits can be timed from it.
    let watcher = percore::spawn_on(HEALTHY, || {
        let start = Instant::now();
        while !percore::core_failed(FAILING) && start.elapsed() < PATIENCE {
            percore::sleep(Duration::from_millis(1));
        }
        Instant::now()
    });

    let joined = sleeper.join();
    let returned = Instant::now();
    let seen = crate::app::join(watcher)?;
    if !percore::core_failed(FAILING) {
        return Err(AppError("core 1 did not fail (was the fault injected?)"));
    }
    let late = returned.duration_since(seen);
    match joined {
        Err(JoinError::CoreFailed(FAILING)) if late < BOUND => println!(
            "faults: the join of a thread on failed core 1 returned CoreFailed(1) at most {} ms after the failure was seen",
            late.as_millis()
        ),
        Err(JoinError::CoreFailed(FAILING)) => {
            return Err(AppError("the join on core 1 took too long to fail"))
        }
        other => {
            println!("faults: the join of a thread on core 1 gave {other:?}");
            return Err(AppError("the join on core 1 did not fail with CoreFailed(1)"));
        }
    }
    match crate::app::join(parker)? {
        Err(percore::CoreFailed(FAILING)) => {
            println!("faults: a thread parked on failed core 1 was woken with CoreFailed(1)")
        }
        other => {
            println!("faults: the thread parked on core 1 got {other:?}");
            return Err(AppError("park_on core 1 did not fail"));
        }
    }
    after_the_failure()?;
    println!("faults: every wait on failed core 1 ended with an error; core 2 went on");
    Ok(())
}

/// A thread on the healthy core panics: its join says so, and the core runs the next one.
fn thread_fails_alone() -> Result<(), AppError> {
    let failed = percore::spawn_on(HEALTHY, || -> u32 {
        panic!(
            "faults: a deliberate panic on core {}",
            percore::current_core()
        )
    })
    .join();
    if failed != Err(JoinError::Panicked) {
        println!("faults: the panicking thread's join gave {failed:?}");
        return Err(AppError("a panicking thread's join did not say Panicked"));
    }
    let next = crate::app::join(percore::spawn_on(HEALTHY, percore::current_core))?;
    if next != HEALTHY {
        return Err(AppError("the next thread ran on another core"));
    }
    println!("faults: a thread on core 2 panicked and ended alone; core 2 ran the next thread");
    Ok(())
}

/// Everything towards the failed core is refused at once; the healthy core still works.
fn after_the_failure() -> Result<(), AppError> {
    let start = Instant::now();
    match percore::try_spawn_on(FAILING, || ()) {
        Err(SpawnError::CoreFailed(FAILING)) => {}
        other => {
            println!("faults: a spawn on core 1 gave {other:?}");
            return Err(AppError("a spawn on failed core 1 was not refused"));
        }
    }
    if percore::run_on(FAILING, || ()) != Err(SpawnError::CoreFailed(FAILING)) {
        return Err(AppError("run_on failed core 1 was not refused"));
    }
    if percore::park_on(FAILING, |_| ()) != Err(percore::CoreFailed(FAILING)) {
        return Err(AppError("park_on failed core 1 did not fail"));
    }
    let message = ipc::Message::new(ipc::Kind::new(0x200), 0, [0; 48]);
    let sent = percore::with_mailbox(|mailbox| mailbox.send(FAILING, message, || ()));
    if sent != Err(percore::mailbox::MailboxError::CoreFailed(FAILING)) {
        return Err(AppError("a send to failed core 1 was not refused"));
    }
    println!(
        "faults: a spawn, a run_on, a park_on and a send towards failed core 1 were refused in {} us",
        start.elapsed().as_micros()
    );
    let value = crate::app::join(percore::spawn_on(HEALTHY, || 6 * 7))?;
    if value != 42 {
        return Err(AppError("the healthy core returned a wrong value"));
    }
    Ok(())
}
