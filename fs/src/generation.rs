//! The volume's generation: a number that changes whenever a file or directory may have
//! changed through the fs service, so a cache on another core knows what it holds is
//! still right with one load and no message.
//!
//! Callers that change the volume bump it after the change is done (their call
//! returned); a cache reads it *before* reading what it caches and keeps the number with
//! it, so anything read before a change carries an older number than the one the change
//! leaves behind. One atomic word, written by whichever core changed the volume and read
//! by any: the documented exception to "no shared mutable state" beside the doorbells.

use core::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Returns the volume's generation now.
pub fn current() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Records that the volume changed (or may have: a failed write can have done part).
pub(crate) fn bump() {
    GENERATION.fetch_add(1, Ordering::Release);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bump_changes_the_generation() {
        let before = super::current();
        super::bump();
        assert!(super::current() > before);
    }
}
