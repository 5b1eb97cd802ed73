//! One core's cooperative scheduler: its threads, their stacks, and the loop that runs
//! them, serves the mailbox, wakes sleepers and halts when there is nothing to do.
//!
//! Every switch goes through the core's *home* context (the loop in [`run`], on the
//! core's own kernel stack): a thread that yields, sleeps, blocks or ends saves itself
//! and resumes the loop, which picks the next ready thread. The scheduler lives in the
//! core's `CoreLocal`; it takes no lock (only this core touches it) and no `RefCell`
//! borrow is held across a switch.
//!
//! A thread that faults is ended from the fault handler ([`end_failed_thread`]), which
//! switches to the home context for good; its record and stack are leaked (what it owned
//! may still be in use by a device, and a late wake-up must still find its record).
//! Waits and wake-ups are in `wait`, kernel messages in `messages`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;

use super::join::{Abandon, JoinError};
use super::queue::{RunQueue, SleepQueue};
use super::state::{RunState, Wakeup};
use super::wait::{self, notice_failures, RemoteWait};
use crate::arch::{self, Context};
use crate::cpu;
use crate::fault::{self, Place};
use crate::platform::hooks;
use crate::time;

/// Usable stack of every thread.
pub const STACK_SIZE: usize = 64 * 1024;
/// The unmapped page below each stack: an overflow faults instead of corrupting.
pub const GUARD_SIZE: usize = 4096;

pub(crate) type Job = Box<dyn FnOnce()>;

/// A thread: its saved context, its stack and, until it starts, its job.
///
/// Aligned to 16 bytes so that waiter tokens (which hold its address) keep their low
/// bits free for the join packet's tags.
#[repr(C, align(16))]
pub(crate) struct Thread {
    context: Context,
    /// Start of the allocation: the guard page, then the stack.
    stack: usize,
    job: Option<Job>,
    /// The packet of its join handle, failed if the thread faults.
    packet: Option<Arc<dyn Abandon>>,
    /// Its number on this core, for fault reports.
    id: u64,
    pub(super) wakeup: Wakeup,
    /// Open `fault::critical` sections: a fault inside one fails the core.
    critical: u32,
    /// The core this thread waited on failed before answering (`park_on`).
    pub(super) lost_core: bool,
}

pub(super) type ThreadRef = NonNull<Thread>;

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
    pub(super) ready: RunQueue<ThreadRef>,
    sleeping: SleepQueue<ThreadRef>,
    pub(super) current: Option<ThreadRef>,
    home: Context,
    /// A thread that ended and whose stack the loop frees (it could not free its own).
    dead: Option<ThreadRef>,
    /// Jobs other cores sent with `run_on`, run by the loop outside any borrow.
    pub(super) jobs: alloc::collections::VecDeque<RunJob>,
    /// Join packets of threads that failed or could not start, failed by the loop (the
    /// wake-up it may send cannot go out from a fault handler or with the mailbox held).
    pub(super) abandoned: heapless::Deque<(Arc<dyn Abandon>, JoinError), ABANDONED>,
    /// Threads blocked on another core, failed if it fails. Its capacity is kept at
    /// least the number of live threads (each has one wait at most), so registering a
    /// wait never allocates.
    pub(super) remote_waits: Vec<RemoteWait>,
    /// The fenced cores whose waiters this core has failed already.
    pub(super) known_fenced: u64,
    next_id: u64,
    stats: SchedulerStats,
}

/// A job for the loop (`run_on`).
pub(crate) type RunJob = Box<dyn FnOnce() + Send>;

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
            jobs: alloc::collections::VecDeque::new(),
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
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

pub(super) fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let local = cpu::current().expect("the scheduler runs on a numbered core");
    let mut scheduler = local.scheduler.borrow_mut();
    f(&mut scheduler)
}

/// Returns this core's scheduler counters.
pub fn stats() -> SchedulerStats {
    with(|s| s.stats)
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

fn stack_layout() -> Layout {
    Layout::from_size_align(STACK_SIZE + GUARD_SIZE, GUARD_SIZE).expect("constant layout")
}

/// Creates a thread running `job` on this core and makes it ready; `packet` is failed if
/// the thread faults.
pub(crate) fn spawn_local(job: Job, packet: Option<&Arc<dyn Abandon>>) -> Result<(), SpawnError> {
    let layout = stack_layout();
    let stack = crate::global::try_alloc(layout).ok_or(SpawnError::OutOfMemory(layout.size()))?;
    let record = Layout::new::<Thread>();
    // Room for this thread's remote wait, so registering one never allocates.
    let (reserved, id) = with(|s| {
        let live = usize::try_from(s.stats.live).unwrap_or(usize::MAX);
        let reserved = s
            .remote_waits
            .try_reserve(live.saturating_add(1).saturating_sub(s.remote_waits.len()))
            .is_ok();
        s.next_id += 1;
        (reserved, s.next_id - 1)
    });
    let thread = if reserved {
        crate::global::try_alloc(record).and_then(|address| NonNull::new(address as *mut Thread))
    } else {
        None
    };
    let Some(thread) = thread else {
        // SAFETY: allocated above with this layout and never used.
        unsafe { crate::global::dealloc(stack, layout) };
        return Err(SpawnError::OutOfMemory(layout.size()));
    };
    // The guard page may need a page table of its own (RAM is mapped in 2 MiB pages):
    // without memory for one, there is no thread.
    if !(hooks().protect)(stack, true) {
        // SAFETY: both allocated above with these layouts and never used.
        unsafe {
            crate::global::dealloc(stack, layout);
            crate::global::dealloc(thread.as_ptr() as usize, record);
        }
        return Err(SpawnError::OutOfMemory(layout.size()));
    }
    // SAFETY: the stack was just allocated for this thread alone; `thread_entry` never
    // returns; the thread pointer stays valid until the loop reclaims the thread.
    let context = unsafe {
        Context::new(
            stack + layout.size(),
            thread_entry,
            thread.as_ptr() as usize,
        )
    };
    // SAFETY: `thread` is a fresh block of `Thread`'s layout; nothing refers to it yet.
    unsafe {
        thread.as_ptr().write(Thread {
            context,
            stack,
            job: Some(job),
            packet: packet.cloned(),
            id,
            wakeup: Wakeup::new(),
            critical: 0,
            lost_core: false,
        })
    };
    with(|s| {
        s.ready.push(thread);
        s.stats.spawned += 1;
        s.stats.live += 1;
    });
    Ok(())
}

/// Frees a thread record made by `spawn_local`.
///
/// # Safety
/// `thread` came from `spawn_local`, ended, and nothing refers to it any more.
unsafe fn free_record(thread: ThreadRef) {
    // SAFETY: the caller's contract; the record was written in place by `spawn_local`.
    unsafe {
        core::ptr::drop_in_place(thread.as_ptr());
        crate::global::dealloc(thread.as_ptr() as usize, Layout::new::<Thread>());
    }
}

extern "C" fn thread_entry(thread: usize) -> ! {
    let thread = thread as *mut Thread;
    // SAFETY: the loop switched to this thread, so it is alive and only this code
    // touches its job now.
    let job = unsafe { (*thread).job.take() }.expect("a new thread has its job");
    job();
    leave(Leave::Exit);
    unreachable!("an ended thread is never switched to again");
}

/// How the running thread leaves the CPU.
pub(super) enum Leave {
    Yield,
    Sleep(u64),
    Block,
    Exit,
}

/// Saves the running thread and resumes the core's loop; returns when the thread runs
/// again (never, for `Exit`).
pub(super) fn leave(how: Leave) {
    let (save, load) = with(|s| {
        let me = s
            .current
            .take()
            .expect("only a thread can yield, sleep, block or exit");
        // SAFETY: `me` is alive (it is running this code) and only this core touches it.
        let thread = unsafe { &mut *me.as_ptr() };
        match how {
            Leave::Yield => {
                thread.wakeup.set(RunState::Ready);
                s.ready.push(me);
            }
            Leave::Sleep(deadline) => {
                thread.wakeup.set(RunState::Sleeping);
                s.sleeping.sleep(me, deadline);
            }
            Leave::Block => {
                if thread.wakeup.block() {
                    s.ready.push(me);
                }
            }
            Leave::Exit => {
                thread.wakeup.set(RunState::Exited);
                s.dead = Some(me);
                s.stats.finished += 1;
                s.stats.live -= 1;
            }
        }
        // The home context lives in the core's CoreLocal, which never moves.
        (&raw mut thread.context, &raw const s.home)
    });
    cpu::set_guard_page(0);
    // SAFETY: the home context was saved by the loop when it switched to this thread.
    unsafe { arch::switch(save, load) };
    fault::maybe_inject(Place::Thread);
}

/// Ends the running thread, which faulted, and resumes the core's loop for good: no
/// unwinding, so its stack and what it owned stay as they were (leaked). Its join
/// packet fails with `error`. Called from the fault handler, which checked that no
/// kernel state of this core was in use.
///
/// # Panics
/// Panics outside a thread.
pub fn end_failed_thread(error: JoinError) -> ! {
    let (save, load) = with(|s| {
        let me = s.current.take().expect("only a thread fails alone");
        // SAFETY: `me` ran until the fault; only this core touches it. Its record is
        // never freed: a late wake-up for it must still find it (and ignore it).
        let thread = unsafe { &mut *me.as_ptr() };
        thread.wakeup.fail();
        // It may have faulted after registering a wait (in `park_on`'s `register`).
        s.remote_waits.retain(|wait| wait.thread != me);
        if let Some(packet) = thread.packet.take() {
            // Failed by the loop: waking the joiner may mean a message, not from here.
            if s.abandoned.push_back((packet, error)).is_err() {
                crate::println!(
                    "manada: core {}: too many failed threads at once; a join of thread {} waits",
                    crate::current_core(),
                    thread.id
                );
            }
        }
        s.stats.failed += 1;
        s.stats.live -= 1;
        (&raw mut thread.context, &raw const s.home)
    });
    fault::count_failed_thread();
    fault::fault_handled();
    cpu::set_guard_page(0);
    // SAFETY: the home context was saved by the loop when it switched to this thread,
    // and nothing switches back to a failed thread.
    unsafe { arch::switch(save, load) };
    unreachable!("a failed thread is never switched to again")
}

/// Lets the other ready threads of this core run, then continues.
///
/// Threads are cooperative: one that computes without yielding, blocking or sleeping
/// keeps its core, and no other thread of that core (a device service among them) runs
/// meanwhile. A long loop yields now and then:
///
/// ```
/// # percore::host::run(1, || {
/// let mut sum = 0u64;
/// for i in 0..1_000_000u64 {
///     sum = sum.wrapping_add(i * i);
///     if i % 10_000 == 0 {
///         percore::yield_now();
///     }
/// }
/// # assert_eq!(sum, 333_332_833_333_500_000);
/// # });
/// ```
pub fn yield_now() {
    if in_thread() {
        leave(Leave::Yield);
    }
}

/// Sleeps until `deadline` (a TSC value); the core runs other threads or halts.
pub fn sleep_until(deadline: u64) {
    if in_thread() {
        leave(Leave::Sleep(deadline));
    } else {
        while time::ticks() < deadline {
            core::hint::spin_loop();
        }
    }
}

/// Returns true when the caller is a thread (not the core's loop or start-up code).
pub fn in_thread() -> bool {
    cpu::current().is_some_and(|local| local.scheduler.borrow().current.is_some())
}

/// Adds `delta` to the running thread's open critical sections (nothing outside a
/// thread).
pub(crate) fn adjust_critical(delta: i32) {
    if let Some(local) = cpu::current() {
        if let Some(me) = local.scheduler.borrow().current {
            // SAFETY: the running thread is alive and only this core touches it.
            let thread = unsafe { &mut *me.as_ptr() };
            thread.critical = thread.critical.saturating_add_signed(delta);
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

/// Returns the running thread (`Ok(None)` in the core's loop), or `Err` when the
/// scheduler's state is in use (the fault hit the scheduler itself).
pub(crate) fn running_thread() -> Result<Option<ThreadView>, ()> {
    let local = cpu::current().ok_or(())?;
    let scheduler = local.scheduler.try_borrow_mut().map_err(|_| ())?;
    Ok(scheduler.current.map(|me| {
        // SAFETY: the running thread is alive; this is a read on its own core.
        let thread = unsafe { &*me.as_ptr() };
        ThreadView {
            id: thread.id,
            stack: thread.stack..thread.stack + stack_layout().size(),
            critical: thread.critical > 0,
        }
    }))
}

/// Serves the mailbox from the core's loop: kernel messages now, the others are kept
/// for the application.
pub(super) fn serve_mailbox() -> usize {
    cpu::with_mailbox(|mailbox| mailbox.poll_for_kernel())
}

/// Runs the jobs other cores sent (`run_on`), in the order they came, outside any
/// borrow of the mailbox or the scheduler.
fn run_jobs() {
    while let Some(job) = with(|s| s.jobs.pop_front()) {
        job();
    }
}

/// Frees the stack of the thread that ended last, and fails the join packets of threads
/// that failed or could not start.
fn reclaim() {
    if let Some(thread) = with(|s| s.dead.take()) {
        // SAFETY: the thread ended and was switched away from for good.
        let stack = unsafe { (*thread.as_ptr()).stack };
        // Mapping a page back never needs memory: it was split when it was unmapped.
        let _ = (hooks().protect)(stack, false);
        // SAFETY: allocated in `spawn_local` with this layout, no longer in use; the
        // record likewise, and no wake-up can name it (its waits all ended).
        unsafe {
            crate::global::dealloc(stack, stack_layout());
            free_record(thread);
        }
    }
    while let Some((packet, error)) = with(|s| s.abandoned.pop_front()) {
        if let Some(token) = packet.abandon(error) {
            wait::wake(token);
        }
    }
}

/// Runs the core: threads, mailbox, sleepers, remote frees; halts when idle.
pub fn run() -> ! {
    loop {
        notice_failures();
        fault::maybe_inject(Place::Loop);
        reclaim();
        serve_mailbox();
        run_jobs();
        crate::global::send_remote_frees();
        let now = time::ticks();
        let next = with(|s| {
            while let Some(thread) = s.sleeping.wake_one(now) {
                // SAFETY: sleeping threads are alive; only this core touches them.
                unsafe { (*thread.as_ptr()).wakeup.set(RunState::Ready) };
                s.ready.push(thread);
            }
            let next = s.ready.pop()?;
            // SAFETY: ready threads are alive; only this core touches them.
            unsafe { (*next.as_ptr()).wakeup.set(RunState::Running) };
            s.current = Some(next);
            s.stats.switches += 1;
            // SAFETY: `next` is alive (ready threads are); the home context is in the
            // core's CoreLocal, which never moves.
            Some((
                &raw mut s.home,
                unsafe { &raw const (*next.as_ptr()).context },
                next,
            ))
        });
        if let Some((save, load, next)) = next {
            // SAFETY: reading the stack address of a live thread.
            cpu::set_guard_page(unsafe { (*next.as_ptr()).stack });
            // SAFETY: `load` is a ready thread's saved context; no borrow is held.
            unsafe { arch::switch(save, load) };
            continue;
        }
        idle();
    }
}

/// Nothing is ready: hand partial remote-free batches home, then halt until a message,
/// the next sleeper's deadline, a retry of blocked remote frees or an injected fault.
fn idle() {
    crate::global::flush_outbox();
    // Sending may have served the mailbox and queued jobs: run them before halting.
    if crate::global::send_remote_frees() || with(|s| !s.jobs.is_empty() || !s.abandoned.is_empty())
    {
        return;
    }
    let deadline = with(|s| s.sleeping.next_deadline());
    let retry = crate::global::remote_frees_pending()
        .then(|| time::ticks() + time::ticks_per_micro() * 100);
    let wake_at = [deadline, retry, fault::injection_deadline(Place::Loop)]
        .into_iter()
        .flatten()
        .min();
    (hooks().arm_timer)(wake_at);
    cpu::with_mailbox(|mailbox| mailbox.wait());
}
