//! Join handles: waiting, from any core, for a thread's result or for why there is none.
//!
//! The packet (`threads::Packet`) is the one piece of memory both sides touch; here is
//! the joiner's side: register its wait in the packet's state word, block until the
//! finisher or a failure wakes it, and take what the packet holds. When the thread's
//! core fails, the joiner's own core turns its wait into `JoinError::CoreFailed`.

use alloc::sync::Arc;

use super::wait;
use crate::fence;
use crate::threads::{Abandon, JoinError, Packet};

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
    pub(super) fn new(packet: Arc<Packet<T>>, core: usize) -> Self {
        Self { packet, core }
    }

    /// Returns the core the thread runs on.
    pub fn core(&self) -> usize {
        self.core
    }

    /// Returns true once the thread has finished or failed, or its core failed (`join`
    /// will not block).
    pub fn is_finished(&self) -> bool {
        self.packet.is_settled() || fence::is_fenced(self.core)
    }

    /// Blocks the calling thread (its core runs others meanwhile) until the thread
    /// finished, and returns its result; or returns why there is none: the thread
    /// panicked or faulted, or its core failed (then within one turn of this core's loop
    /// after the failure, never waiting for good).
    pub fn join(self) -> Result<T, JoinError> {
        let (packet, core) = (&self.packet, self.core);
        let here = crate::current_core();
        if core != here && fence::is_fenced(core) {
            // What the thread finished before its core failed still counts; nobody waits
            // in the packet yet, so there is nobody to wake.
            let _ = packet.abandon(JoinError::CoreFailed(core));
            return packet.take();
        }
        let token = wait::begin_wait();
        if !packet.register(token) {
            wait::cancel_wait();
        } else if core == here {
            wait::block_until_woken();
        } else {
            // The wait is registered with the core's scheduler, so that it fails if that
            // core does; the packet's state says how it ended.
            let _ = wait::block_on_remote(core, Some(packet.state()));
        }
        packet.take()
    }
}
