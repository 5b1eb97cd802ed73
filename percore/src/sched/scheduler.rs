//! One core's cooperative scheduler: its threads, their stacks, and the loop that runs
//! them, serves the mailbox, wakes sleepers and halts when there is nothing to do.
//!
//! Every switch goes through the core's *home* context (the loop in [`run`], on the
//! core's own kernel stack): a thread that yields, sleeps, blocks or ends saves itself
//! and resumes the loop, which picks the next ready thread. The scheduler lives in the
//! core's `CoreLocal`; it takes no lock (only this core touches it) and no `RefCell`
//! borrow is held across a switch.

use alloc::boxed::Box;
use core::alloc::Layout;
use core::ptr::NonNull;

use ipc::{Kind, Message};

use super::queue::{RunQueue, SleepQueue};
use crate::arch::{self, Context};
use crate::cpu;
use crate::mailbox::{self, hooks};
use crate::time;

/// Usable stack of every thread.
pub const STACK_SIZE: usize = 64 * 1024;
/// The unmapped page below each stack: an overflow faults instead of corrupting.
pub const GUARD_SIZE: usize = 4096;

/// Kernel message: run the boxed job (word 0: `Box<Box<dyn FnOnce() + Send>>`) here.
pub(crate) const SPAWN: Kind = Kind::new(mailbox::KERNEL_KINDS + 1);
/// Kernel message: make the blocked thread of the token in word 0 ready.
pub(crate) const WAKE: Kind = Kind::new(mailbox::KERNEL_KINDS + 2);
/// Run this job in the core's loop, outside any thread (`run_on`).
pub(crate) const RUN: Kind = Kind::new(mailbox::KERNEL_KINDS + 4);

type Job = Box<dyn FnOnce()>;

/// A thread: its saved context, its stack and, until it starts, its job.
pub(crate) struct Thread {
    context: Context,
    /// Start of the allocation: the guard page, then the stack.
    stack: usize,
    job: Option<Job>,
}

type ThreadRef = NonNull<Thread>;

/// Counters of one core's scheduler.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Threads created on this core.
    pub spawned: u64,
    /// Threads that ended.
    pub finished: u64,
    /// Switches into a thread.
    pub switches: u64,
    /// Threads alive now (ready, running, sleeping or blocked).
    pub live: u64,
}

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
            stats: SchedulerStats {
                spawned: 0,
                finished: 0,
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
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::OutOfMemory(size) => {
                write!(f, "out of memory for a {size}-byte thread stack")
            }
            SpawnError::NoSuchCore(core) => write!(f, "no core {core} in this run"),
        }
    }
}

fn stack_layout() -> Layout {
    Layout::from_size_align(STACK_SIZE + GUARD_SIZE, GUARD_SIZE).expect("constant layout")
}

/// Creates a thread running `job` on this core and makes it ready.
pub(crate) fn spawn_local(job: Job) -> Result<(), SpawnError> {
    let layout = stack_layout();
    let stack = crate::global::try_alloc(layout).ok_or(SpawnError::OutOfMemory(layout.size()))?;
    if !(hooks().protect)(stack, true) {
        // SAFETY: allocated just above with this layout, never used.
        unsafe { crate::global::dealloc(stack, layout) };
        return Err(SpawnError::OutOfMemory(layout.size()));
    }
    let thread = Box::new(Thread {
        context: Context::empty(),
        stack,
        job: Some(job),
    });
    let thread = NonNull::from(Box::leak(thread));
    // SAFETY: the stack was just allocated for this thread alone; `thread_entry` never
    // returns; the thread pointer stays valid until the loop reclaims the thread.
    let context = unsafe {
        Context::new(
            stack + layout.size(),
            thread_entry,
            thread.as_ptr() as usize,
        )
    };
    // SAFETY: the thread is not running and nothing else refers to it yet.
    unsafe { (*thread.as_ptr()).context = context };
    with(|s| {
        s.ready.push(thread);
        s.stats.spawned += 1;
        s.stats.live += 1;
    });
    Ok(())
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
        match how {
            Leave::Yield => s.ready.push(me),
            Leave::Sleep(deadline) => s.sleeping.sleep(me, deadline),
            Leave::Block => {}
            Leave::Exit => {
                s.dead = Some(me);
                s.stats.finished += 1;
                s.stats.live -= 1;
            }
        }
        // SAFETY: `me` is alive (it is running this code); the home context lives in
        // the core's CoreLocal, which never moves.
        (
            unsafe { &raw mut (*me.as_ptr()).context },
            &raw const s.home,
        )
    });
    cpu::set_guard_page(0);
    // SAFETY: the home context was saved by the loop when it switched to this thread.
    unsafe { arch::switch(save, load) };
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

    fn core(self) -> usize {
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

/// Blocks the running thread until someone calls [`wake`] with its token.
pub(crate) fn block_until_woken() {
    leave(Leave::Block);
}

/// Makes the thread of `token` ready, on whichever core it lives.
pub(crate) fn wake(token: WaiterToken) {
    if token.core() == crate::current_core() {
        with(|s| s.ready.push(token.thread()));
    } else {
        let message = Message::new(
            WAKE,
            crate::current_core() as u16,
            words([token.into_raw() as u64]),
        );
        send_kernel(token.core(), message);
    }
}

/// Returns 48 inline bytes holding `values` (the rest zero).
pub(crate) fn words<const N: usize>(values: [u64; N]) -> [u8; 48] {
    let mut all = [0u64; 6];
    all[..N].copy_from_slice(&values);
    ipc::message::bytes_from_words(&all)
}

/// Sends a kernel message to `to`, never dropping it: while the ring is full, a thread
/// yields (its core's loop keeps serving the mailbox) and the loop serves it directly.
pub(crate) fn send_kernel(to: usize, message: Message) {
    let mut message = message;
    loop {
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
}

/// Handles a kernel message that arrived in this core's mailbox.
pub(crate) fn on_kernel_message(_source: usize, message: Message) {
    let kind = message.header().kind();
    if kind == SPAWN {
        let raw = message.inline_word(0) as usize as *mut Job;
        // SAFETY: the spawning core boxed the job and sent its pointer once
        // (`spawn_on`); ownership moved with the message.
        let job = unsafe { Box::from_raw(raw) };
        if let Err(error) = spawn_local(*job) {
            panic!("cannot start a thread sent by another core: {error}");
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
        with(|s| s.ready.push(token.thread()));
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

/// Frees the stack of the thread that ended last.
fn reclaim() {
    if let Some(thread) = with(|s| s.dead.take()) {
        // SAFETY: the thread ended and was switched away from for good; it was leaked
        // from a Box in `spawn_local`.
        let thread = unsafe { Box::from_raw(thread.as_ptr()) };
        // Mapping a page back never needs memory: it was split when it was unmapped.
        let _ = (hooks().protect)(thread.stack, false);
        // SAFETY: allocated in `spawn_local` with this layout, no longer in use.
        unsafe { crate::global::dealloc(thread.stack, stack_layout()) };
    }
}

/// Runs the core: threads, mailbox, sleepers, remote frees; halts when idle.
pub fn run() -> ! {
    loop {
        reclaim();
        serve_mailbox();
        run_jobs();
        crate::global::send_remote_frees();
        let now = time::ticks();
        let next = with(|s| {
            while let Some(thread) = s.sleeping.wake_one(now) {
                s.ready.push(thread);
            }
            let next = s.ready.pop()?;
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
/// the next sleeper's deadline or a retry of blocked remote frees.
fn idle() {
    crate::global::flush_outbox();
    // Sending may have served the mailbox and queued jobs: run them before halting.
    if crate::global::send_remote_frees() || with(|s| !s.jobs.is_empty()) {
        return;
    }
    let deadline = with(|s| s.sleeping.next_deadline());
    let retry = crate::global::remote_frees_pending()
        .then(|| time::ticks() + time::ticks_per_micro() * 100);
    let wake_at = match (deadline, retry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (hooks().arm_timer)(wake_at);
    cpu::with_mailbox(|mailbox| mailbox.wait());
}
