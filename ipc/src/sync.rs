//! Atomics shim: `core` atomics normally, `loom`'s under `--cfg loom` so the models can
//! explore every interleaving of the same code the kernel runs.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

/// Marks the payload reads and writes of a slot for loom's race detector.
///
/// The payload is made of atomics, which loom cannot tell were raced: a relaxed load
/// that overlaps a write just reads some value. Under `--cfg loom` each payload access
/// also touches a `loom::cell::UnsafeCell`, so an overwrite that is not ordered after
/// the receiver's reads fails the model. Normally this is zero-sized and does nothing.
#[derive(Debug, Default)]
pub(crate) struct AccessCheck {
    #[cfg(loom)]
    cell: loom::cell::UnsafeCell<()>,
}

impl AccessCheck {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {}
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            cell: loom::cell::UnsafeCell::new(()),
        }
    }

    /// Records a read of the guarded data.
    #[inline(always)]
    pub(crate) fn read(&self) {
        #[cfg(loom)]
        self.cell.with(|_| ());
    }

    /// Records a write of the guarded data.
    #[inline(always)]
    pub(crate) fn write(&self) {
        #[cfg(loom)]
        self.cell.with_mut(|_| ());
    }
}
