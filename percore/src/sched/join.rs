//! Join handles: a thread's result travels to whoever joins it, on any core.
//!
//! The packet is the one piece of memory both cores touch: the finishing thread writes
//! the result once, then publishes `DONE`; the joiner either sees `DONE` and takes the
//! result, or registers itself as the waiter and blocks. Whichever of the two swaps the
//! state second learns what the other did, so a wake-up is never lost:
//!
//! * finisher: write result; `swap(DONE)`; if it replaced a waiter, wake that thread.
//! * joiner: `compare_exchange(RUNNING -> waiter)`; on success block until woken; on
//!   failure the state was `DONE`. Then take the result.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use alloc::sync::Arc;

use super::scheduler::{self, WaiterToken};

const RUNNING: usize = 0;
const DONE: usize = 1;

/// The meeting point of a thread's result and its joiner.
pub(crate) struct Packet<T> {
    /// `RUNNING`, `DONE`, or the waiter's token (never 0 or 1).
    state: AtomicUsize,
    result: UnsafeCell<Option<T>>,
}

// SAFETY: `result` is written only by the finisher before it publishes `DONE` with
// Release, and read only by the joiner after it saw `DONE` with Acquire; T moves
// between cores, so it must be Send.
unsafe impl<T: Send> Sync for Packet<T> {}

impl<T> Packet<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicUsize::new(RUNNING),
            result: UnsafeCell::new(None),
        }
    }

    /// Stores the result and wakes the joiner if it is already waiting.
    pub(crate) fn complete(&self, value: T) {
        // SAFETY: only the finishing thread calls `complete`, once, before `DONE` is
        // published; the joiner does not read `result` before seeing `DONE`.
        unsafe { *self.result.get() = Some(value) };
        let previous = self.state.swap(DONE, Ordering::AcqRel);
        if previous != RUNNING {
            scheduler::wake(WaiterToken::from_raw(previous));
        }
    }

    /// Blocks the calling thread until the result is there, and takes it.
    fn wait(&self) -> T {
        let token = scheduler::current_waiter_token();
        if self
            .state
            .compare_exchange(
                RUNNING,
                token.into_raw(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            scheduler::block_until_woken();
        }
        debug_assert_eq!(self.state.load(Ordering::Acquire), DONE);
        // SAFETY: the state is DONE (we saw it, or we were woken by the finisher after
        // its swap), so the finisher's write happened before and nobody writes again;
        // only this handle's owner reads.
        unsafe { (*self.result.get()).take() }.expect("a finished thread left its result")
    }
}

/// Waits for a thread and returns its result; works from any core.
pub struct JoinHandle<T> {
    packet: Arc<Packet<T>>,
    core: usize,
}

impl<T> core::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(packet: Arc<Packet<T>>, core: usize) -> Self {
        Self { packet, core }
    }

    /// Returns the core the thread runs on.
    pub fn core(&self) -> usize {
        self.core
    }

    /// Returns true once the thread has finished (its result is waiting).
    pub fn is_finished(&self) -> bool {
        self.packet.state.load(Ordering::Acquire) == DONE
    }

    /// Blocks the calling thread (its core runs others meanwhile) until the thread
    /// finished, and returns its result.
    pub fn join(self) -> T {
        self.packet.wait()
    }
}
