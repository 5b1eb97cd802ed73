//! A waiter token: which thread waits, and on which core, in one word, for whoever
//! wakes it (a join packet's state word holds one; a `Wake` kernel message carries one).
//!
//! Thread records are 16-byte aligned, so a token's low four bits are zero (the join
//! packet uses them for its tags); the core is in the bits above the address.

/// Identifies a blocked thread and its core, for the one who wakes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaiterToken(usize);

const CORE_SHIFT: u32 = 48;

impl WaiterToken {
    /// Returns the token of the thread whose record is at `address`, on core `core`.
    pub(super) fn from_parts(core: usize, address: usize) -> Self {
        Self(core << CORE_SHIFT | address)
    }

    pub(crate) fn from_raw(raw: usize) -> Self {
        Self(raw)
    }

    pub(crate) fn into_raw(self) -> usize {
        self.0
    }

    /// Returns the core of the thread.
    pub(crate) fn core(self) -> usize {
        self.0 >> CORE_SHIFT
    }

    /// Returns the address of the thread's record.
    pub(super) fn address(self) -> usize {
        self.0 & ((1 << CORE_SHIFT) - 1)
    }
}
