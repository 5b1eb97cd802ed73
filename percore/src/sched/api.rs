//! The thread API: starting threads on any core, running jobs on another core's loop,
//! parking and unparking, sleeping, and the raw mailbox.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::time::Duration;

use super::dispatch::serve_kept;
use super::join::JoinHandle;
use super::send::send_kernel;
use super::switch::{sleep_until, spawn_local};
use super::wait;
use crate::cpu;
use crate::fence::{self, CoreFailed};
use crate::mailbox::{KernelMessage, Mailbox};
use crate::threads::{Abandon, Job, Packet, RunJob, SpawnError, Start, WaiterToken};

/// Completes `packet` with `value` and wakes its joiner if it waits.
fn finish<T>(packet: &Packet<T>, value: T) {
    if let Some(token) = packet.complete(value) {
        wait::wake(token);
    }
}

/// Returns a job that runs `f` and completes `packet`, and the packet to fail instead.
fn job_for<T: 'static>(
    f: impl FnOnce() -> T + 'static,
    packet: &Arc<Packet<T>>,
) -> (Job, Arc<dyn Abandon>) {
    let finished = packet.clone();
    let abandon: Arc<dyn Abandon> = packet.clone();
    (Box::new(move || finish(&finished, f())), abandon)
}

/// Starts `f` in a new thread on this core.
///
/// # Panics
/// Panics when this core has no memory for the thread (see [`try_spawn_on`]).
pub fn spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> JoinHandle<T> {
    let core = crate::current_core();
    let packet = Arc::new(Packet::new());
    let (job, abandon) = job_for(f, &packet);
    if let Err(error) = spawn_local(job, Some(&abandon)) {
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
/// let squares: Vec<usize> = handles.into_iter().map(|handle| handle.join().unwrap()).collect();
/// assert_eq!(squares, [0, 1, 4, 9]);
/// # });
/// ```
///
/// # Panics
/// Panics when `core` is not a core of this run, failed, or has no memory for the
/// thread.
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
/// A thread for another core is sent there as a message; that core creates it, and if
/// it has no memory for it the join returns [`JoinError::OutOfMemory`]. A core that
/// failed is refused at once ([`SpawnError::CoreFailed`]); one that fails after the
/// message left makes the join return [`JoinError::CoreFailed`].
///
/// [`JoinError::OutOfMemory`]: crate::JoinError::OutOfMemory
/// [`JoinError::CoreFailed`]: crate::JoinError::CoreFailed
pub fn try_spawn_on<T: Send + 'static>(
    core: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    let cores = crate::core_count();
    if core >= cores {
        return Err(SpawnError::NoSuchCore(core));
    }
    if fence::is_fenced(core) {
        return Err(SpawnError::CoreFailed(core));
    }
    let packet = Arc::new(Packet::new());
    if core == crate::current_core() {
        let (job, abandon) = job_for(f, &packet);
        spawn_local(job, Some(&abandon))?;
    } else {
        let finished = packet.clone();
        let start = Start {
            job: Box::new(move || finish(&finished, f())),
            packet: Some(packet.clone()),
        };
        send_kernel(core, KernelMessage::Spawn(Box::new(start)))
            .map_err(|CoreFailed(core)| SpawnError::CoreFailed(core))?;
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
/// state while it does (a send that waits for room serves the mailbox meanwhile).
/// Services use it with [`park_on`]: the caller parks, the job answers and unparks it.
/// A core that failed is refused ([`SpawnError::CoreFailed`]) and the job dropped.
pub fn run_on(core: usize, job: impl FnOnce() + Send + 'static) -> Result<(), SpawnError> {
    if core >= crate::core_count() {
        return Err(SpawnError::NoSuchCore(core));
    }
    if core == crate::current_core() {
        job();
        return Ok(());
    }
    let job: RunJob = Box::new(job);
    send_kernel(core, KernelMessage::Run(Box::new(job)))
        .map_err(|CoreFailed(core)| SpawnError::CoreFailed(core))
}

/// A thread blocked in [`park`], and the one right to make it ready again.
///
/// It is not `Clone`: `unpark` consumes it, so a thread is made ready at most once per
/// `park`. Dropping it without `unpark` leaves the thread blocked for good.
#[derive(Debug)]
pub struct Parked(WaiterToken);

impl Parked {
    /// Makes the parked thread ready again, on whichever core it lives. A thread on a
    /// core that failed is gone: then nothing happens.
    pub fn unpark(self) {
        wait::wake(self.0);
    }

    /// Returns the core of the parked thread.
    pub fn core(&self) -> usize {
        self.0.core()
    }
}

/// Blocks the running thread until the [`Parked`] handed to `register` is unparked.
///
/// `register` runs before the thread blocks and should store the handle where the
/// waker finds it; unparking it at once (even from `register`) is allowed and simply
/// makes the thread ready again after it blocked. For a wait on another core, use
/// [`park_on`], which also ends when that core fails.
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
    register(Parked(wait::begin_wait()));
    wait::block_until_woken();
}

/// Like [`park`] for a thread that waits for core `core` to unpark it: returns `Err`
/// at once if that core failed, or as soon as this core learns that it failed before
/// unparking (within one turn of this core's loop). Give the [`Parked`] to `core` alone:
/// after a failure, this core takes the last messages `core` sent and then ends the
/// wait, which is only safe if no other core can still unpark it.
///
/// # Panics
/// Panics when called outside a thread.
pub fn park_on(core: usize, register: impl FnOnce(Parked)) -> Result<(), CoreFailed> {
    if core == crate::current_core() {
        park(register);
        return Ok(());
    }
    if fence::is_fenced(core) {
        return Err(CoreFailed(core));
    }
    register(Parked(wait::begin_wait()));
    wait::block_on_remote(core, None)
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
    sleep_until(crate::time::ticks().saturating_add(ticks));
}

/// Runs `f` with the running core's mailbox: the raw rings, for measuring them (kinds
/// below `KERNEL_KINDS`). Kernel messages that `f`'s polls meet are handled as soon as
/// `f` returned.
///
/// # Panics
/// Panics on a core without a mailbox (before it was numbered) or when called from
/// inside `f` itself.
pub fn with_mailbox<R>(f: impl FnOnce(&mut Mailbox) -> R) -> R {
    let result = cpu::with_mailbox(f);
    serve_kept();
    result
}
