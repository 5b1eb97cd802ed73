//! Fault containment, the part that is logic: whether a fault ends the running thread or
//! its whole core, the count of what failed, the critical sections that turn a thread's
//! fault into its core's, and arming and raising the fault the tests inject from the
//! command line (what to inject, and its parsing, is `injection`'s).
//!
//! The unit of failure is the thread where this core's own kernel state is intact,
//! else the core; never the machine. `boot`'s panic and exception handlers report the
//! fault, then ask [`contain`] what to end: a thread is ended by
//! `sched::end_failed_thread`, a core fences itself ([`fence_this_core`]) and halts, and
//! the other cores fail whatever waited on it.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::injection::Armed;
pub use crate::injection::{FaultKind, Injection, InjectionError, Place};
use crate::threads::{JoinError, ThreadView};
use crate::MAX_CORES;

/// Arms `injection` on the running core, its delay counted from now.
pub fn arm(injection: &Injection) {
    if let Some(local) = crate::cpu::current() {
        let ticks =
            crate::time::ticks_per_micro().saturating_mul(injection.after_ms.saturating_mul(1000));
        let deadline = crate::time::ticks().saturating_add(ticks);
        local.injection.set(Some(Armed::new(injection, deadline)));
    }
}

/// Returns when the fault armed for `place` on this core is due, for the idle timer.
pub(crate) fn injection_deadline(place: Place) -> Option<u64> {
    crate::cpu::current()?.injection.get()?.deadline_at(place)
}

/// Raises the fault armed on this core if it is due at `place` (once).
pub(crate) fn maybe_inject(place: Place) {
    let Some(local) = crate::cpu::current() else {
        return;
    };
    let Some(armed) = local.injection.get() else {
        return;
    };
    if let Some(kind) = armed.due(place, crate::time::ticks()) {
        local.injection.set(None);
        (crate::platform::hooks().raise)(kind);
    }
}

/// Threads that failed, per core; each counter is written only by its own core.
static FAILED_THREADS: [AtomicU32; MAX_CORES] = [const { AtomicU32::new(0) }; MAX_CORES];

/// Counts a failed thread of the running core.
pub(crate) fn count_failed_thread() {
    if let Some(local) = crate::cpu::current() {
        FAILED_THREADS[local.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// What failed during the run so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// Threads ended by a fault (on cores that went on).
    pub threads: u32,
    /// Cores that failed and were fenced.
    pub cores: u32,
}

impl Failures {
    /// Returns true when anything failed.
    pub fn any(&self) -> bool {
        self.threads + self.cores > 0
    }
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |count: u32| if count == 1 { "" } else { "s" };
        write!(
            f,
            "{} thread{} and {} core{} failed during the run",
            self.threads,
            plural(self.threads),
            self.cores,
            plural(self.cores)
        )
    }
}

/// Returns what failed during the run so far, on every core.
pub fn failures() -> Failures {
    Failures {
        threads: FAILED_THREADS
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum(),
        cores: crate::fence::FENCED.bits().count_ones(),
    }
}

/// An open critical section of the running thread (see [`critical`]); it closes when
/// dropped. It stays on its thread.
#[derive(Debug)]
pub struct Critical {
    _on_this_thread: PhantomData<*const ()>,
}

/// Opens a critical section on the running thread: until the guard is dropped, a fault
/// of this thread fails its whole core instead of the thread alone. For a thread that
/// holds state others depend on outside any `RefCell` (a service's volume taken out of
/// its state, a service's polling thread): ending it alone would leave that state lost
/// and its users waiting for good; failing the core fences it, and they get errors.
pub fn critical() -> Critical {
    adjust_critical(1);
    Critical {
        _on_this_thread: PhantomData,
    }
}

impl Drop for Critical {
    fn drop(&mut self) {
        adjust_critical(-1);
    }
}

/// Adds `delta` to the running thread's open critical sections (nothing outside a
/// thread).
fn adjust_critical(delta: i32) {
    if let Some(local) = crate::cpu::current() {
        local.scheduler.borrow().adjust_critical(delta);
    }
}

/// Returns the running thread (`Ok(None)` in the core's loop), or `Err` when the
/// scheduler's state is in use (the fault hit the scheduler itself).
fn running_thread() -> Result<Option<ThreadView>, ()> {
    let local = crate::cpu::current().ok_or(())?;
    let scheduler = local.scheduler.try_borrow_mut().map_err(|_| ())?;
    Ok(scheduler.running_view())
}

/// Where a fault struck, as the handler saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSite {
    /// The CPU exception's vector; `None` for a panic.
    pub vector: Option<u8>,
    /// The stack pointer at the fault.
    pub stack_pointer: usize,
}

/// What a fault ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// The core does not run its own kernel instance yet (start-up): the run ends.
    EndRun,
    /// The running thread ends alone; its joiner gets `error`.
    EndThread {
        /// The thread's number on its core.
        thread: u64,
        /// What its join returns.
        error: JoinError,
    },
    /// The core fails and is fenced.
    FailCore(CoreFailure),
    /// A fault struck while the core was failing already: it fences itself and halts at
    /// once, printing nothing more (what it would print may be what faults).
    Halt,
}

/// Why a fault fails its whole core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreFailure {
    /// The fault struck while the core handled another fault.
    Nested,
    /// A double fault, a non-maskable interrupt or a machine check (this vector).
    Vector(u8),
    /// This kernel state of the core was in use (a held `RefCell` borrow).
    Busy(&'static str),
    /// No thread ran: the fault struck the core's kernel loop.
    KernelLoop,
    /// The thread (this one) was inside a critical section.
    CriticalThread(u64),
    /// The stack pointer was outside the running thread's (this one's) stack.
    ForeignStack(u64),
}

impl fmt::Display for CoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreFailure::Nested => f.write_str("a fault while it handled a fault"),
            CoreFailure::Vector(8) => f.write_str("a double fault"),
            CoreFailure::Vector(2) => f.write_str("a non-maskable interrupt"),
            CoreFailure::Vector(18) => f.write_str("a machine check"),
            CoreFailure::Vector(vector) => write!(f, "exception {vector}"),
            CoreFailure::Busy(what) => write!(f, "the fault struck while its {what} was in use"),
            CoreFailure::KernelLoop => f.write_str("the fault struck its kernel loop"),
            CoreFailure::CriticalThread(thread) => {
                write!(f, "thread {thread} faulted inside a critical section")
            }
            CoreFailure::ForeignStack(thread) => {
                write!(f, "thread {thread} faulted off its own stack")
            }
        }
    }
}

/// What the handler found on the core, for [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The core runs its own kernel instance (it has its `CoreLocal`).
    pub numbered: bool,
    /// Faults the core was handling already when this one struck.
    pub nested: u8,
    /// The exception's vector (`None`: a panic).
    pub vector: Option<u8>,
    /// Kernel state that was in use, if any.
    pub busy: Option<&'static str>,
    /// The running thread (`None`: the kernel loop).
    pub thread: Option<ThreadView>,
    /// The stack pointer at the fault.
    pub stack_pointer: usize,
}

/// Returns what a fault seen as `snapshot` must end.
pub fn decide(snapshot: &Snapshot) -> Containment {
    if !snapshot.numbered {
        return Containment::EndRun;
    }
    match snapshot.nested {
        0 => {}
        1 => return Containment::FailCore(CoreFailure::Nested),
        _ => return Containment::Halt,
    }
    if let Some(vector @ (2 | 8 | 18)) = snapshot.vector {
        return Containment::FailCore(CoreFailure::Vector(vector));
    }
    if let Some(what) = snapshot.busy {
        return Containment::FailCore(CoreFailure::Busy(what));
    }
    let Some(thread) = &snapshot.thread else {
        return Containment::FailCore(CoreFailure::KernelLoop);
    };
    if thread.critical {
        return Containment::FailCore(CoreFailure::CriticalThread(thread.id));
    }
    if !thread.stack.contains(&snapshot.stack_pointer) {
        return Containment::FailCore(CoreFailure::ForeignStack(thread.id));
    }
    Containment::EndThread {
        thread: thread.id,
        error: match snapshot.vector {
            None => JoinError::Panicked,
            Some(vector) => JoinError::Exception(vector),
        },
    }
}

/// Returns what the fault at `site` on the running core must end, and records that the
/// core handles a fault (a second fault before the thread is ended fails the core).
pub fn contain(site: FaultSite) -> Containment {
    let Some(local) = crate::cpu::current() else {
        return decide(&Snapshot {
            numbered: false,
            nested: 0,
            vector: site.vector,
            busy: None,
            thread: None,
            stack_pointer: site.stack_pointer,
        });
    };
    let nested = local.faults_handled.get();
    local.faults_handled.set(nested.saturating_add(1));
    let scheduler = running_thread();
    let busy = match scheduler {
        Err(()) => Some("scheduler"),
        Ok(_) => local.busy_state(),
    };
    decide(&Snapshot {
        numbered: true,
        nested,
        vector: site.vector,
        busy,
        thread: scheduler.ok().flatten(),
        stack_pointer: site.stack_pointer,
    })
}

/// Records that the running core no longer handles a fault (its failed thread ended).
pub(crate) fn fault_handled() {
    if let Some(local) = crate::cpu::current() {
        local.faults_handled.set(0);
    }
}

/// Returns the number of the running thread on this core, for fault reports; `None` in
/// the kernel loop, or when the scheduler's state is in use.
pub fn running_thread_id() -> Option<u64> {
    running_thread().ok().flatten().map(|thread| thread.id)
}

/// Fences the running core: from now on every other core treats it as failed. Returns
/// its index (`None` before it has one). The caller then wakes the others and halts.
pub fn fence_this_core() -> Option<usize> {
    let index = crate::cpu::current()?.index();
    crate::fence::FENCED.fence(index);
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(critical: bool) -> ThreadView {
        ThreadView {
            id: 7,
            stack: 0x10_0000..0x11_1000,
            critical,
        }
    }

    fn in_thread(vector: Option<u8>) -> Snapshot {
        Snapshot {
            numbered: true,
            nested: 0,
            vector,
            busy: None,
            thread: Some(thread(false)),
            stack_pointer: 0x10_8000,
        }
    }

    #[test]
    fn a_fault_in_a_thread_with_the_kernel_intact_ends_the_thread() {
        assert_eq!(
            decide(&in_thread(None)),
            Containment::EndThread {
                thread: 7,
                error: JoinError::Panicked
            }
        );
        for vector in [0, 6, 13, 14] {
            assert_eq!(
                decide(&in_thread(Some(vector))),
                Containment::EndThread {
                    thread: 7,
                    error: JoinError::Exception(vector)
                }
            );
        }
        // A stack overflow: the stack pointer in the guard page, which is part of it.
        let mut overflow = in_thread(Some(14));
        overflow.stack_pointer = 0x10_0ff8;
        assert!(matches!(decide(&overflow), Containment::EndThread { .. }));
    }

    #[test]
    fn a_fault_in_kernel_state_fails_the_core() {
        let mut busy = in_thread(None);
        busy.busy = Some("heap");
        assert_eq!(
            decide(&busy),
            Containment::FailCore(CoreFailure::Busy("heap"))
        );
        let mut in_loop = in_thread(Some(6));
        in_loop.thread = None;
        assert_eq!(
            decide(&in_loop),
            Containment::FailCore(CoreFailure::KernelLoop)
        );
        let mut nested = in_thread(None);
        nested.nested = 1;
        assert_eq!(decide(&nested), Containment::FailCore(CoreFailure::Nested));
        nested.nested = 2;
        assert_eq!(decide(&nested), Containment::Halt, "a fault while failing");
        for vector in [2, 8, 18] {
            assert_eq!(
                decide(&in_thread(Some(vector))),
                Containment::FailCore(CoreFailure::Vector(vector))
            );
        }
        let mut critical = in_thread(Some(14));
        critical.thread = Some(thread(true));
        assert_eq!(
            decide(&critical),
            Containment::FailCore(CoreFailure::CriticalThread(7))
        );
        let mut elsewhere = in_thread(Some(13));
        elsewhere.stack_pointer = 0x20_0000;
        assert_eq!(
            decide(&elsewhere),
            Containment::FailCore(CoreFailure::ForeignStack(7))
        );
    }

    #[test]
    fn a_fault_before_the_core_is_numbered_ends_the_run() {
        let mut early = in_thread(Some(14));
        early.numbered = false;
        early.thread = None;
        assert_eq!(decide(&early), Containment::EndRun);
    }

    #[test]
    fn the_summary_counts_threads_and_cores_in_words() {
        let summary = |threads, cores| std::format!("{}", Failures { threads, cores });
        assert_eq!(summary(1, 0), "1 thread and 0 cores failed during the run");
        assert_eq!(summary(2, 1), "2 threads and 1 core failed during the run");
        assert!(!Failures {
            threads: 0,
            cores: 0
        }
        .any());
        assert!(Failures {
            threads: 0,
            cores: 1
        }
        .any());
    }
}
