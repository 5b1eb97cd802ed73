//! The running core's scheduler state, reached through its core-local block.

use crate::cpu;
use crate::threads::{Scheduler, SchedulerStats};

/// Runs `f` with this core's scheduler. No switch may happen inside `f`: every switch
/// happens after the closure returned, so no borrow is ever held across one.
///
/// # Panics
/// Panics on a core without a `CoreLocal`, or when called from inside `f`.
pub(super) fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let local = cpu::current().expect("the scheduler runs on a numbered core");
    let mut scheduler = local.scheduler.borrow_mut();
    f(&mut scheduler)
}

/// Returns this core's scheduler counters.
pub fn stats() -> SchedulerStats {
    with(|s| s.stats)
}

/// Returns true when the caller is a thread (not the core's loop or start-up code).
pub fn in_thread() -> bool {
    cpu::current().is_some_and(|local| local.scheduler.borrow().current.is_some())
}
