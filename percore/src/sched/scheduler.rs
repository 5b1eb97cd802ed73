//! One core's cooperative scheduler: its threads, their stacks, and the loop that runs
//! them, serves the mailbox, wakes sleepers and halts when there is nothing to do.
//!
//! Every switch goes through the core's *home* context (the loop in [`run`], on the
//! core's own kernel stack): a thread that yields, sleeps, blocks or ends saves itself
//! and resumes the loop, which picks the next ready thread. The scheduler lives in the
//! core's `CoreLocal`; it takes no lock (only this core touches it) and no `RefCell`
//! borrow is held across a switch.
//!
//! Faults: a thread that faults is ended from the fault handler ([`end_failed_thread`]),
//! which switches to the home context for good; its record and stack are leaked (what it
//! owned may still be in use by a device or referenced by a late wake-up). A thread
//! blocked on another core (a join of a thread there, `park_on`) is registered in
//! `remote_waits`; when that core is fenced, the loop first takes the last messages it
//! sent, then fails the waits still open on it.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::AtomicUsize;

use ipc::{Kind, Message};

use super::join::{self, Abandon, JoinError};
use super::queue::{RunQueue, SleepQueue};
use super::state::{RunState, Wakeup};
use super::CoreFailed;
use crate::arch::{self, Context};
use crate::cpu;
use crate::fault::{self, Place};
use crate::mailbox::{self, hooks};
use crate::time;

/// Usable stack of every thread.
pub const STACK_SIZE: usize = 64 * 1024;
/// The unmapped page below each stack: an overflow faults instead of corrupting.
pub const GUARD_SIZE: usize = 4096;

/// Kernel message: start a thread for the boxed [`Start`] in word 0 here.
pub(crate) const SPAWN: Kind = Kind::new(mailbox::KERNEL_KINDS + 1);
/// Kernel message: make the blocked thread of the token in word 0 ready.
pub(crate) const WAKE: Kind = Kind::new(mailbox::KERNEL_KINDS + 2);
/// Run this job in the core's loop, outside any thread (`run_on`).
pub(crate) const RUN: Kind = Kind::new(mailbox::KERNEL_KINDS + 4);

pub(crate) type Job = Box<dyn FnOnce()>;

/// A thread to start: its job and, when someone may join it, the packet to fail if it
/// cannot start or faults.
pub(crate) struct Start {
    pub(crate) job: Job,
    pub(crate) packet: Option<Arc<dyn Abandon>>,
}

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
    wakeup: Wakeup,
    /// Open `fault::critical` sections: a fault inside one fails the core.
    critical: u32,
    /// The core this thread waited on failed before answering (`park_on`).
    lost_core: bool,
}

type ThreadRef = NonNull<Thread>;

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

/// A thread blocked on another core.
#[derive(Clone, Copy)]
struct RemoteWait {
    thread: ThreadRef,
    core: usize,
    /// The join packet's state word, for a join (it lives as long as the joiner waits,
    /// which holds the packet); `None` for `park_on`.
    packet_state: Option<NonNull<AtomicUsize>>,
}

/// Packets to fail from the loop, with why (at most this many per turn of the loop).
const ABANDONED: usize = 32;

/// One core's scheduler state.
pub struct Scheduler {
    ready: RunQueue<ThreadRef>,
    sleeping: SleepQueue<ThreadRef>,
    current: Option<ThreadRef>,
    home: Context,
    /// A thread that ended and whose stack the loop frees (it could not free its own).
    dead: Option<ThreadRef>,
    /// Jobs other cores sent with `run_on`, run by the loop outside any borrow.
    jobs: alloc::collections::VecDeque<RunJob>,
    /// Join packets of threads that failed or could not start, failed by the loop (the
    /// wake-up it may send cannot go out from a fault handler or with the mailbox held).
    abandoned: heapless::Deque<(Arc<dyn Abandon>, JoinError), ABANDONED>,
    /// Threads blocked on another core, failed if it fails. Its capacity is kept at
    /// least the number of live threads (each has one wait at most), so registering a
    /// wait never allocates.
    remote_waits: Vec<RemoteWait>,
    /// The fenced cores whose waiters this core has failed already.
    known_fenced: u64,
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

fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
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
    let reserved = with(|s| {
        let live = usize::try_from(s.stats.live).unwrap_or(usize::MAX);
        s.remote_waits
            .try_reserve(live.saturating_add(1).saturating_sub(s.remote_waits.len()))
            .is_ok()
    });
    let Some(thread) = crate::global::try_alloc(record)
        .filter(|_| reserved)
        .and_then(|address| NonNull::new(address as *mut Thread))
    else {
        // SAFETY: allocated above with this layout and never used.
        unsafe { crate::global::dealloc(stack, layout) };
        return Err(SpawnError::OutOfMemory(layout.size()));
    };
    (hooks().protect)(stack, true);
    let id = with(|s| {
        s.next_id += 1;
        s.next_id - 1
    });
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
    fault::maybe_inject(Place::Thread);
    // SAFETY: the loop switched to this thread, so it is alive and only this code
    // touches its job now.
    let job = unsafe { (*thread).job.take() }.expect("a new thread has its job");
    job();
    leave(Leave::Exit);
    unreachable!("an ended thread is never switched to again");
}

/// How the running thread leaves the CPU.
enum Leave {
    Yield,
    Sleep(u64),
    Block,
    Exit,
}

/// Saves the running thread and resumes the core's loop; returns when the thread runs
/// again (never, for `Exit`).
fn leave(how: Leave) {
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

/// Identifies a blocked thread and its core, for the one who wakes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaiterToken(usize);

const CORE_SHIFT: u32 = 48;

impl WaiterToken {
    pub(crate) fn from_raw(raw: usize) -> Self {
        Self(raw)
    }

    pub(crate) fn into_raw(self) -> usize {
        self.0
    }

    pub(crate) fn core(self) -> usize {
        self.0 >> CORE_SHIFT
    }

    fn thread(self) -> ThreadRef {
        NonNull::new((self.0 & ((1 << CORE_SHIFT) - 1)) as *mut Thread)
            .expect("a token names a thread")
    }
}

/// Returns the running thread's token.
pub(crate) fn current_waiter_token() -> WaiterToken {
    let thread = with(|s| s.current.expect("only a thread can wait"));
    let core = crate::current_core();
    WaiterToken(core << CORE_SHIFT | thread.as_ptr() as usize)
}

/// Starts a wait of the running thread: one wake-up, even before it blocks, ends it.
pub(crate) fn begin_wait() {
    with_current(|thread| thread.wakeup.begin_wait());
}

/// Gives up the running thread's wait (what it waited for is done).
pub(crate) fn cancel_wait() {
    with_current(|thread| thread.wakeup.cancel_wait());
}

/// Runs `f` on the running thread's record.
fn with_current<R>(f: impl FnOnce(&mut Thread) -> R) -> R {
    with(|s| {
        let me = s.current.expect("only a thread can wait");
        // SAFETY: the running thread is alive and only this core touches it.
        f(unsafe { &mut *me.as_ptr() })
    })
}

/// Blocks the running thread until someone calls [`wake`] with its token (or did since
/// its wait began).
pub(crate) fn block_until_woken() {
    leave(Leave::Block);
}

/// Blocks the running thread, whose wait began, until it is woken or core `core` (which
/// it waits on) fails. `packet_state` is the join packet's state word for a join. Returns
/// `Err` when `core` failed before it answered a `park_on`; a join reads its packet.
pub(crate) fn block_on_remote(
    core: usize,
    packet_state: Option<&AtomicUsize>,
) -> Result<(), CoreFailed> {
    let packet_state = packet_state.map(NonNull::from);
    let me = with(|s| {
        let me = s.current.expect("only a thread can wait");
        // Never allocates: `spawn_local` reserved room for every live thread.
        s.remote_waits.push(RemoteWait {
            thread: me,
            core,
            packet_state,
        });
        me
    });
    if mailbox::is_fenced(core) {
        // The loop may have dealt with that core before this wait was registered: take
        // what it sent (its answer may be there) and fail the wait here.
        cpu::with_mailbox(|mailbox| mailbox.drain_for_kernel(core));
        with(|s| fail_wait(s, me, core, packet_state));
    }
    leave(Leave::Block);
    with(|s| {
        s.remote_waits.retain(|wait| wait.thread != me);
        // SAFETY: the running thread is alive and only this core touches it.
        let thread = unsafe { &mut *me.as_ptr() };
        if core::mem::take(&mut thread.lost_core) {
            Err(CoreFailed(core))
        } else {
            Ok(())
        }
    })
}

/// Ends the wait of `thread` on `core`, which failed, unless it ended already.
fn fail_wait(
    s: &mut Scheduler,
    thread: ThreadRef,
    core: usize,
    packet_state: Option<NonNull<AtomicUsize>>,
) {
    let token = WaiterToken(crate::current_core() << CORE_SHIFT | thread.as_ptr() as usize);
    // SAFETY: a registered thread is alive (it removes its registration before it can
    // end) and only this core touches it.
    let record = unsafe { &mut *thread.as_ptr() };
    let failed = match packet_state {
        // SAFETY: the joiner is blocked in `join`, which holds the packet.
        Some(state) => join::fail_waiter(
            unsafe { state.as_ref() },
            token,
            JoinError::CoreFailed(core),
        ),
        None => record.wakeup.is_waiting(),
    };
    if failed {
        record.lost_core = packet_state.is_none();
        if record.wakeup.wake() {
            s.ready.push(thread);
        }
    }
}

/// Makes the thread of `token` ready, on whichever core it lives.
pub(crate) fn wake(token: WaiterToken) {
    if token.core() == crate::current_core() {
        with(|s| wake_local(s, token.thread()));
    } else {
        let message = Message::new(
            WAKE,
            crate::current_core() as u16,
            words([token.into_raw() as u64]),
        );
        // A thread on a failed core is gone with it: nothing to wake.
        let _ = send_kernel(token.core(), message);
    }
}

/// Makes `thread` (of this core) ready if it waits; a stale wake-up does nothing.
fn wake_local(s: &mut Scheduler, thread: ThreadRef) {
    // SAFETY: tokens name threads of this core whose records are alive: a thread ends
    // only after its waits ended, and failed threads' records are never freed.
    if unsafe { (*thread.as_ptr()).wakeup.wake() } {
        s.ready.push(thread);
    }
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

/// Returns 48 inline bytes holding `values` (the rest zero).
pub(crate) fn words<const N: usize>(values: [u64; N]) -> [u8; 48] {
    let mut all = [0u64; 6];
    all[..N].copy_from_slice(&values);
    ipc::message::bytes_from_words(&all)
}

/// Sends a kernel message to `to`, never dropping it: while the ring is full, a thread
/// yields (its core's loop keeps serving the mailbox) and the loop serves it directly.
/// Returns `Err` (the message dropped, with what it owned) when `to` failed.
pub(crate) fn send_kernel(to: usize, message: Message) -> Result<(), CoreFailed> {
    let mut message = message;
    loop {
        if mailbox::is_fenced(to) {
            return Err(CoreFailed(to));
        }
        match cpu::with_mailbox(|mailbox| mailbox.try_send_kernel(to, message)) {
            Ok(()) => break,
            Err(back) => {
                message = back.into_inner();
                cpu::with_mailbox(|mailbox| mailbox.notify(to));
                if in_thread() {
                    yield_now();
                } else {
                    serve_mailbox();
                    core::hint::spin_loop();
                }
            }
        }
    }
    cpu::with_mailbox(|mailbox| mailbox.notify(to));
    Ok(())
}

/// Sends `start` to core `to`, which starts the thread.
pub(crate) fn send_start(to: usize, start: Start) -> Result<(), SpawnError> {
    // A thin pointer to the boxed start travels; ownership moves with the message.
    let raw = Box::into_raw(Box::new(start));
    let message = Message::new(SPAWN, crate::current_core() as u16, words([raw as u64]));
    send_kernel(to, message).map_err(|CoreFailed(core)| {
        // SAFETY: the message was not sent, so the box is still ours alone.
        drop(unsafe { Box::from_raw(raw) });
        SpawnError::CoreFailed(core)
    })
}

/// Sends `job` to core `to`, whose loop runs it.
pub(crate) fn send_job(to: usize, job: RunJob) -> Result<(), SpawnError> {
    // A thin pointer to the boxed job travels; ownership moves with the message.
    let raw = Box::into_raw(Box::new(job));
    let message = Message::new(RUN, crate::current_core() as u16, words([raw as u64]));
    send_kernel(to, message).map_err(|CoreFailed(core)| {
        // SAFETY: the message was not sent, so the box is still ours alone.
        drop(unsafe { Box::from_raw(raw) });
        SpawnError::CoreFailed(core)
    })
}

/// Handles a kernel message that arrived in this core's mailbox.
pub(crate) fn on_kernel_message(_source: usize, message: Message) {
    let kind = message.header().kind();
    if kind == SPAWN {
        let raw = message.inline_word(0) as usize as *mut Start;
        // SAFETY: the spawning core boxed the start and sent its pointer once
        // (`send_start`); ownership moved with the message.
        let start = unsafe { Box::from_raw(raw) };
        let Start { job, packet } = *start;
        if spawn_local(job, packet.as_ref()).is_err() {
            // Out of memory refuses the thread; its joiner learns it from the loop.
            if let Some(packet) = packet {
                let refused = with(|s| {
                    s.abandoned
                        .push_back((packet, JoinError::OutOfMemory))
                        .is_err()
                });
                if refused {
                    crate::println!(
                        "manada: core {}: out of memory for threads; a join waits",
                        crate::current_core()
                    );
                }
            }
        }
    } else if kind == RUN {
        let raw = message.inline_word(0) as usize as *mut RunJob;
        // SAFETY: `run_on` boxed the job and sent its pointer once; ownership moved with
        // the message.
        let job = unsafe { Box::from_raw(raw) };
        // Run by the loop after the mailbox is released: the job may send messages.
        with(|s| s.jobs.push_back(*job));
    } else if kind == WAKE {
        let token = WaiterToken::from_raw(message.inline_word(0) as usize);
        with(|s| wake_local(s, token.thread()));
    } else if kind == crate::global::REMOTE_FREE {
        crate::global::receive_remote_frees(&message);
    }
}

/// Serves the mailbox from the core's loop: kernel messages now, the others are kept
/// for the application.
fn serve_mailbox() -> usize {
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
        (hooks().protect)(stack, false);
        // SAFETY: allocated in `spawn_local` with this layout, no longer in use; the
        // record likewise, and no wake-up can name it (its waits all ended).
        unsafe {
            crate::global::dealloc(stack, stack_layout());
            free_record(thread);
        }
    }
    while let Some((packet, error)) = with(|s| s.abandoned.pop_front()) {
        if let Some(token) = packet.abandon(error) {
            wake(token);
        }
    }
}

/// Fails, once per failed core, every wait of this core's threads on it, after taking
/// the last messages it sent (a wake-up among them ends a wait the normal way).
fn notice_failures() {
    let fenced = mailbox::FENCED.bits();
    let new = with(|s| {
        let new = fenced & !s.known_fenced;
        s.known_fenced = fenced;
        new
    });
    if new == 0 {
        return;
    }
    let me = crate::current_core();
    for core in (0..crate::MAX_CORES).filter(|&core| new & (1 << core) != 0 && core != me) {
        cpu::with_mailbox(|mailbox| mailbox.drain_for_kernel(core));
        // Each thread removes its own registration when it runs again.
        with(|s| {
            for index in 0..s.remote_waits.len() {
                let RemoteWait {
                    thread,
                    core: waited_on,
                    packet_state,
                } = s.remote_waits[index];
                if waited_on == core {
                    fail_wait(s, thread, core, packet_state);
                }
            }
        });
        (hooks().core_failed)(core);
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
