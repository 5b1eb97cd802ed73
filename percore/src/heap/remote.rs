//! Remote frees: blocks freed on a core that does not own them go home in batches.
//!
//! As in snmalloc, a core that frees another core's block does not touch that core's
//! heap: it notes the block in its outbox ([`RemoteFrees`]), one pending batch per owner.
//! When a batch fills up, the free that filled it returns it and the kernel sends it to
//! the owner by message (a pointer to the batch; ownership moves with it). The owner
//! frees the whole batch in one go with [`Heap::receive_remote`], on its own core, so its
//! heap stays lock free. Batching turns up to [`REMOTE_BATCH_CAPACITY`] cross-core cache
//! line transfers into one message. An idle core flushes its partial batches
//! ([`RemoteFrees::flush`]) so that memory does not sit in an outbox forever.

use core::fmt;

use super::allocator::{Claimed, Heap};

/// Blocks per remote free batch.
pub const REMOTE_BATCH_CAPACITY: usize = 32;

/// Up to [`REMOTE_BATCH_CAPACITY`] blocks of one owner core, on their way home.
///
/// Only [`Heap::dealloc_or_forward`] can add a block, which is why it is safe for the
/// owner to free every block of a batch it is handed. Not `Clone`: each block is in one
/// batch once.
pub struct RemoteFreeBatch {
    owner: usize,
    len: usize,
    /// Address and size of each block.
    blocks: [(usize, usize); REMOTE_BATCH_CAPACITY],
}

impl RemoteFreeBatch {
    /// An empty batch.
    pub const EMPTY: RemoteFreeBatch = RemoteFreeBatch {
        owner: 0,
        len: 0,
        blocks: [(0, 0); REMOTE_BATCH_CAPACITY],
    };

    /// Returns the index of the core whose blocks these are.
    pub fn owner(&self) -> usize {
        self.owner
    }

    /// Returns the number of blocks in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns true when the batch holds no block.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns true when the batch cannot take another block.
    pub fn is_full(&self) -> bool {
        self.len == REMOTE_BATCH_CAPACITY
    }

    /// Returns the address and size of each block in the batch.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.blocks[..self.len].iter().copied()
    }

    fn push(&mut self, owner: usize, addr: usize, size: usize) {
        debug_assert!(!self.is_full());
        self.owner = owner;
        self.blocks[self.len] = (addr, size);
        self.len += 1;
    }
}

impl fmt::Debug for RemoteFreeBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFreeBatch")
            .field("owner", &self.owner)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// One core's outbox of remote frees: a pending batch per owner core.
pub struct RemoteFrees<const CORES: usize> {
    pending: [RemoteFreeBatch; CORES],
    queued: usize,
}

impl<const CORES: usize> RemoteFrees<CORES> {
    /// Returns an empty outbox. A `const fn`, so an outbox can live in a static.
    pub const fn new() -> Self {
        Self {
            pending: [const { RemoteFreeBatch::EMPTY }; CORES],
            queued: 0,
        }
    }

    /// Returns the number of blocks waiting in partial batches.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Takes one non-empty pending batch, to be sent to its owner; call until it returns
    /// `None` to flush the outbox. O(CORES) per call; meant for idle time.
    pub fn flush(&mut self) -> Option<RemoteFreeBatch> {
        let batch = self.pending.iter_mut().find(|b| !b.is_empty())?;
        let batch = core::mem::replace(batch, RemoteFreeBatch::EMPTY);
        self.queued -= batch.len();
        Some(batch)
    }

    /// Queues the block at `addr` of `size` bytes for `owner`; returns the owner's batch
    /// when it is full.
    pub(super) fn push(
        &mut self,
        owner: usize,
        addr: usize,
        size: usize,
    ) -> Option<RemoteFreeBatch> {
        assert!(
            owner < CORES,
            "heap: block {addr:#x} belongs to core {owner}, beyond {CORES} cores"
        );
        let batch = &mut self.pending[owner];
        batch.push(owner, addr, size);
        if batch.is_full() {
            self.queued -= REMOTE_BATCH_CAPACITY - 1;
            Some(core::mem::replace(batch, RemoteFreeBatch::EMPTY))
        } else {
            self.queued += 1;
            None
        }
    }
}

impl<const CORES: usize> Default for RemoteFrees<CORES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CORES: usize> fmt::Debug for RemoteFrees<CORES> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFrees")
            .field("cores", &CORES)
            .field("queued", &self.queued)
            .finish()
    }
}

impl Heap {
    /// Frees every block of `batch`, which another core sent home, and empties it (so
    /// the same batch cannot be received twice). Returns the number of blocks freed.
    ///
    /// # Panics
    /// Panics when a block is not in this heap (the batch went to the wrong core) or
    /// fails the checks of [`Heap::dealloc`] against its recorded size.
    pub fn receive_remote(&mut self, batch: &mut RemoteFreeBatch) -> usize {
        let count = batch.len;
        // Emptied first: a panic below must not leave blocks to be freed again.
        batch.len = 0;
        for &(addr, size) in &batch.blocks[..count] {
            self.free(addr, Claimed::AtLeast(size));
            self.count_received();
        }
        count
    }
}
