//! The cores that failed: one word, a bit per core, set once by the failing core itself.
//!
//! Every other core reads it on each turn of its loop (to fail the waits on a failed
//! core) and before every send to a core (nobody sends to a fenced core). It is one
//! word of the whole run, below everything that reads it.

use core::sync::atomic::{fence, AtomicU64, Ordering};

/// The cores that failed: bit `c` for core `c`.
///
/// Each bit is set once, by the failing core itself, and never cleared; every core reads
/// the word on each turn of its loop. It is one word for all cores (not a flag in each
/// doorbell) because a doorbell's line is written by its owner every idle period, while
/// this line is written at most once per core per run, so reading it costs no cache
/// traffic.
#[derive(Debug)]
pub struct FenceSet(AtomicU64);

// One bit per core.
const _: () = assert!(crate::MAX_CORES <= 64);

impl FenceSet {
    /// Returns a set with no core fenced.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Fences `core`. Only that core calls it, as it fails, after its last message was
    /// published: a core that sees the bit (Acquire) then sees every message it sent.
    pub fn fence(&self, core: usize) {
        self.0.fetch_or(1 << core, Ordering::Release);
        // Orders the bit before the wake-up interrupts that follow (pairs with the
        // doorbell's fences on the halting side).
        fence(Ordering::SeqCst);
    }

    /// Returns true when `core` failed.
    pub fn contains(&self, core: usize) -> bool {
        core < 64 && self.0.load(Ordering::Acquire) & (1 << core) != 0
    }

    /// Returns the set as a bit mask.
    pub fn bits(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

impl Default for FenceSet {
    fn default() -> Self {
        Self::new()
    }
}

/// The run's fenced cores.
pub static FENCED: FenceSet = FenceSet::new();

/// Returns true when core `core` failed and was fenced.
pub fn is_fenced(core: usize) -> bool {
    FENCED.contains(core)
}

/// The core a thread waited on failed and was fenced; it will never answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreFailed(pub usize);

impl core::fmt::Display for CoreFailed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "core {} failed", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_stays_set_and_names_only_its_core() {
        let set = FenceSet::new();
        assert!(!set.contains(3));
        set.fence(3);
        set.fence(63);
        assert!(set.contains(3) && set.contains(63));
        assert!(!set.contains(2) && !set.contains(64));
        assert_eq!(set.bits(), 1 << 3 | 1 << 63);
        set.fence(3);
        assert_eq!(
            set.bits(),
            1 << 3 | 1 << 63,
            "fencing twice changes nothing"
        );
    }
}
