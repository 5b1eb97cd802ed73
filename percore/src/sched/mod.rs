//! Threads: cooperative, pinned to the core they were created on (Toro's model).
//!
//! `spawn` starts a thread on this core; `spawn_on` starts one on any core by sending
//! its job there as a message; `JoinHandle::join` blocks the caller (its core runs other
//! threads meanwhile) until the result is there, from any core. A thread runs until it
//! yields, sleeps, blocks in `join`, or ends; nothing preempts it.

#[allow(unsafe_code)]
mod join;
mod queue;
#[allow(unsafe_code)]
mod scheduler;

pub use join::JoinHandle;
pub use queue::{RunQueue, SleepQueue};
pub use scheduler::{in_thread, run, stats, yield_now, SchedulerStats, SpawnError, STACK_SIZE};
pub(crate) use scheduler::{on_kernel_message, send_kernel, words, Scheduler};

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::time::Duration;

use join::Packet;

/// Starts `f` in a new thread on this core.
///
/// # Panics
/// Panics when this core has no memory for the thread (see [`try_spawn_on`]).
pub fn spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> JoinHandle<T> {
    let core = crate::current_core();
    let packet = Arc::new(Packet::new());
    let finished = packet.clone();
    if let Err(error) = scheduler::spawn_local(Box::new(move || finished.complete(f()))) {
        panic!("spawn on core {core}: {error}");
    }
    JoinHandle::new(packet, core)
}

/// Starts `f` in a new thread on core `core` (this one or any other).
///
/// The closure moves to that core with what it owns; the result comes back through the
/// [`JoinHandle`], which any thread on any core may join.
///
/// ```
/// # percore::host::run(4, || {
/// let handles: Vec<_> = (0..percore::core_count())
///     .map(|core| percore::spawn_on(core, move || core * core))
///     .collect();
/// let squares: Vec<usize> = handles.into_iter().map(|handle| handle.join()).collect();
/// assert_eq!(squares, [0, 1, 4, 9]);
/// # });
/// ```
///
/// # Panics
/// Panics when `core` is not a core of this run or has no memory for the thread.
pub fn spawn_on<T: Send + 'static>(
    core: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    match try_spawn_on(core, f) {
        Ok(handle) => handle,
        Err(error) => panic!(
            "spawn_on({core}) from core {}: {error}",
            crate::current_core()
        ),
    }
}

/// Starts `f` in a new thread on core `core`, or says why it could not.
///
/// A thread for another core is sent there as a message; that core creates it, and
/// if it runs out of memory it panics with its core and the size.
pub fn try_spawn_on<T: Send + 'static>(
    core: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    let cores = crate::core_count();
    if core >= cores {
        return Err(SpawnError::NoSuchCore(core));
    }
    let packet = Arc::new(Packet::new());
    let finished = packet.clone();
    let job: Box<dyn FnOnce() + Send> = Box::new(move || finished.complete(f()));
    if core == crate::current_core() {
        scheduler::spawn_local(job)?;
    } else {
        // A thin pointer to the boxed job travels; ownership moves with the message.
        let raw = Box::into_raw(Box::new(job as Box<dyn FnOnce()>));
        let message = ipc::Message::new(
            scheduler::SPAWN,
            crate::current_core() as u16,
            words([raw as u64]),
        );
        send_kernel(core, message);
    }
    Ok(JoinHandle::new(packet, core))
}

/// Runs `job` on core `core` in its scheduler loop, outside any thread, and returns
/// without waiting for it.
///
/// Cheaper than [`spawn_on`] (no thread, no stack): the job travels as a message and
/// runs when that core serves its mailbox; on this core it runs at once. It must not
/// block, yield or sleep. The loop runs jobs after it released the mailbox, so a job may
/// send messages and wake threads; it should not hold a borrow of the core's service
/// state while it does (a send that waits for room serves the mailbox meanwhile). Services use it with [`park`]: the caller parks,
/// the job answers and unparks it.
pub fn run_on(core: usize, job: impl FnOnce() + Send + 'static) -> Result<(), SpawnError> {
    if core >= crate::core_count() {
        return Err(SpawnError::NoSuchCore(core));
    }
    if core == crate::current_core() {
        job();
        return Ok(());
    }
    let job: scheduler::RunJob = Box::new(job);
    // A thin pointer to the boxed job travels; ownership moves with the message.
    let raw = Box::into_raw(Box::new(job));
    let message = ipc::Message::new(
        scheduler::RUN,
        crate::current_core() as u16,
        words([raw as u64]),
    );
    send_kernel(core, message);
    Ok(())
}

/// A thread blocked in [`park`], and the one right to make it ready again.
///
/// It is not `Clone`: `unpark` consumes it, so a thread is made ready at most once per
/// `park`. Dropping it without `unpark` leaves the thread blocked for good.
#[derive(Debug)]
pub struct Parked(scheduler::WaiterToken);

impl Parked {
    /// Makes the parked thread ready again, on whichever core it lives.
    pub fn unpark(self) {
        scheduler::wake(self.0);
    }
}

/// Blocks the running thread until the [`Parked`] handed to `register` is unparked.
///
/// `register` runs before the thread blocks and should store the handle where the
/// waker finds it; unparking it at once (even from `register`) is allowed and simply
/// makes the thread ready again after it blocked.
///
/// ```
/// # percore::host::run(2, || {
/// // Ask core 1 to do something and wake us when it is done; meanwhile this core runs
/// // its other threads, or halts.
/// percore::park(|parked| {
///     percore::run_on(1, move || {
///         assert_eq!(percore::current_core(), 1);
///         parked.unpark();
///     })
///     .expect("core 1 exists");
/// });
/// # });
/// ```
///
/// # Panics
/// Panics when called outside a thread.
pub fn park(register: impl FnOnce(Parked)) {
    register(Parked(scheduler::current_waiter_token()));
    scheduler::block_until_woken();
}

/// Sleeps for at least `duration`; the core runs its other threads, or halts.
///
/// ```
/// # percore::host::run(1, || {
/// use core::time::Duration;
/// let start = percore::Instant::now();
/// percore::sleep(Duration::from_millis(5));
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// # });
/// ```
pub fn sleep(duration: Duration) {
    let ticks = crate::time::ticks_per_micro()
        .saturating_mul(duration.as_micros().min(u64::MAX as u128) as u64);
    scheduler::sleep_until(crate::time::ticks().saturating_add(ticks));
}
