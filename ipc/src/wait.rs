//! What a sender does while the ring it sends on is full.
//!
//! Back-pressure never drops or overwrites a message: the sender keeps its message and
//! waits. How it waits is the caller's choice: a spin hint on a service core that polls
//! anyway, a yield to the core's scheduler for a cooperative thread.

/// A policy for waiting until a full ring has room again.
///
/// Implemented for every `FnMut()`, so a closure that yields to the scheduler is a policy.
/// A sender that batches wake-ups must ring the receiver's doorbell before it waits
/// (see [`crate::Doorbell::notify`]): a halted receiver never frees a slot.
pub trait Wait {
    /// Waits a little; called once per failed attempt to send.
    fn wait(&mut self);
}

impl<F: FnMut()> Wait for F {
    fn wait(&mut self) {
        self()
    }
}

/// A waiting policy that only hints the processor that this is a busy-wait loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spin;

impl Wait for Spin {
    fn wait(&mut self) {
        #[cfg(loom)]
        loom::thread::yield_now();
        #[cfg(not(loom))]
        core::hint::spin_loop();
    }
}
