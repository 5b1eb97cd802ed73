//! One core's scheduler state and its thread records, as data: what `sched` works on.
//!
//! A thread's record lives in the core's heap and is named by a pointer (`ThreadRef`),
//! which only its own core dereferences: the running thread, the queues, the waits and
//! the waiter tokens all hold such pointers. The scheduler lives in the core's
//! `CoreLocal`, behind a `RefCell` that only this core borrows.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::AtomicUsize;

use super::packet::{Abandon, JoinError};
use super::queue::{RunQueue, SleepQueue};
use super::state::Wakeup;
use super::token::WaiterToken;
use crate::arch::Context;

/// Usable stack of every thread.
pub const STACK_SIZE: usize = 64 * 1024;
/// The unmapped page below each stack: an overflow faults instead of corrupting.
pub const GUARD_SIZE: usize = 4096;

/// Returns the layout of a thread's stack allocation: the guard page, then the stack.
pub(crate) fn stack_layout() -> Layout {
    Layout::from_size_align(STACK_SIZE + GUARD_SIZE, GUARD_SIZE).expect("constant layout")
}

/// What a new thread runs.
pub(crate) type Job = Box<dyn FnOnce()>;

/// A job for the core's loop, outside any thread (`run_on`).
pub(crate) type RunJob = Box<dyn FnOnce() + Send>;

/// A thread to start on another core: its job and, when someone may join it, the
/// packet to fail if it cannot start or faults. It travels in a kernel message.
pub(crate) struct Start {
    pub(crate) job: Box<dyn FnOnce() + Send>,
    pub(crate) packet: Option<Arc<dyn Abandon + Send + Sync>>,
}

/// A thread: its saved context, its stack and, until it starts, its job.
///
/// Aligned to 16 bytes so that waiter tokens (which hold its address) keep their low
/// bits free for the join packet's tags.
#[repr(C, align(16))]
pub(crate) struct Thread {
    pub(crate) context: Context,
    /// Start of the allocation: the guard page, then the stack.
    pub(crate) stack: usize,
    pub(crate) job: Option<Job>,
    /// The packet of its join handle, failed if the thread faults.
    pub(crate) packet: Option<Arc<dyn Abandon>>,
    /// Its number on this core, for fault reports.
    pub(crate) id: u64,
    pub(crate) wakeup: Wakeup,
    /// Open `fault::critical` sections: a fault inside one fails the core.
    pub(crate) critical: u32,
    /// The core this thread waited on failed before answering (`park_on`).
    pub(crate) lost_core: bool,
}

/// A thread of this core, named by its record.
pub(crate) type ThreadRef = NonNull<Thread>;

/// Counters of one core's scheduler.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Threads created on this core.
    pub spawned: u64,
    /// Threads that ended.
    pub finished: u64,
    /// Threads ended by a fault (not counted in `finished`).
    pub failed: u64,
    /// Switches into a thread.
    pub switches: u64,
    /// Threads alive now (ready, running, sleeping or blocked).
    pub live: u64,
}

/// Packets to fail from the loop, with why (at most this many per turn of the loop).
const ABANDONED: usize = 32;

/// One core's scheduler state.
pub struct Scheduler {
    pub(crate) ready: RunQueue<ThreadRef>,
    pub(crate) sleeping: SleepQueue<ThreadRef>,
    pub(crate) current: Option<ThreadRef>,
    pub(crate) home: Context,
    /// A thread that ended and whose stack the loop frees (it could not free its own).
    pub(crate) dead: Option<ThreadRef>,
    /// Jobs other cores sent with `run_on`, run by the loop outside any borrow.
    pub(crate) jobs: VecDeque<RunJob>,
    /// Join packets of threads that failed or could not start, failed by the loop (the
    /// wake-up it may send cannot go out from a fault handler or with the mailbox held).
    pub(crate) abandoned: heapless::Deque<(Arc<dyn Abandon>, JoinError), ABANDONED>,
    /// Threads blocked on another core, failed if it fails. Its capacity is kept at
    /// least the number of live threads (each has one wait at most), so registering a
    /// wait never allocates.
    pub(crate) remote_waits: Vec<RemoteWait>,
    /// The fenced cores whose waiters this core has failed already.
    pub(crate) known_fenced: u64,
    pub(crate) next_id: u64,
    pub(crate) stats: SchedulerStats,
}

impl core::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Scheduler")
            .field("ready", &self.ready.len())
            .field("sleeping", &self.sleeping.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Returns a scheduler with no threads.
    pub const fn new() -> Self {
        Self {
            ready: RunQueue::new(),
            sleeping: SleepQueue::new(),
            current: None,
            home: Context::empty(),
            dead: None,
            jobs: VecDeque::new(),
            abandoned: heapless::Deque::new(),
            remote_waits: Vec::new(),
            known_fenced: 0,
            next_id: 1,
            stats: SchedulerStats {
                spawned: 0,
                finished: 0,
                failed: 0,
                switches: 0,
                live: 0,
            },
        }
    }

    /// Returns the running thread, as the fault handler needs to know it (`None` in the
    /// core's loop).
    pub fn running_view(&self) -> Option<ThreadView> {
        self.current.map(|me| {
            // SAFETY: the running thread is alive; this is a read on its own core.
            let thread = unsafe { &*me.as_ptr() };
            ThreadView {
                id: thread.id,
                stack: thread.stack..thread.stack + stack_layout().size(),
                critical: thread.critical > 0,
            }
        })
    }

    /// Adds `delta` to the running thread's open critical sections (nothing outside a
    /// thread). Takes `&self`: the count is in the thread's record, not in the scheduler.
    pub fn adjust_critical(&self, delta: i32) {
        if let Some(me) = self.current {
            // SAFETY: the running thread is alive and only this core touches it; nothing
            // else holds a reference to its record while it runs this code.
            let thread = unsafe { &mut *me.as_ptr() };
            thread.critical = thread.critical.saturating_add_signed(delta);
        }
    }

    /// Makes `thread` (of this core) ready if it waits; a stale wake-up does nothing.
    pub(crate) fn wake(&mut self, thread: ThreadRef) {
        // SAFETY: tokens name threads of this core whose records are alive: a thread ends
        // only after its waits ended, and failed threads' records are never freed.
        if unsafe { (*thread.as_ptr()).wakeup.wake() } {
            self.ready.push(thread);
        }
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a thread could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// No memory for the thread's stack (the size asked for).
    OutOfMemory(usize),
    /// The core does not exist in this run.
    NoSuchCore(usize),
    /// The core failed and was fenced.
    CoreFailed(usize),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::OutOfMemory(size) => {
                write!(f, "out of memory for a {size}-byte thread stack")
            }
            SpawnError::NoSuchCore(core) => write!(f, "no core {core} in this run"),
            SpawnError::CoreFailed(core) => write!(f, "core {core} failed"),
        }
    }
}

/// What the fault handler needs to know about the running thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadView {
    /// Its number on this core.
    pub id: u64,
    /// Its stack, guard page included.
    pub stack: core::ops::Range<usize>,
    /// It was inside a `fault::critical` section.
    pub critical: bool,
}

/// A thread blocked on another core.
#[derive(Clone, Copy)]
pub(crate) struct RemoteWait {
    pub(crate) thread: ThreadRef,
    pub(crate) core: usize,
    /// The join packet's state word, for a join (it lives as long as the joiner waits,
    /// which holds the packet); `None` for `park_on`.
    pub(crate) packet_state: Option<NonNull<AtomicUsize>>,
}

impl WaiterToken {
    /// Returns the token of `thread` on core `core`.
    pub(crate) fn new(core: usize, thread: ThreadRef) -> Self {
        Self::from_parts(core, thread.as_ptr() as usize)
    }

    /// Returns the thread the token names (of core [`WaiterToken::core`]).
    pub(crate) fn thread(self) -> ThreadRef {
        NonNull::new(self.address() as *mut Thread).expect("a token names a thread")
    }
}
