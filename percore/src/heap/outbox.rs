//! One core's remote frees on their way home: the batching outbox, and the full batches
//! waiting to be sent, kept in lists linked through the freed blocks themselves.
//!
//! The blocks of full batches wait in `pending`, an intrusive list per owner (every
//! block has at least 16 bytes: a link and its size), as in snmalloc: queueing a free
//! never allocates, so it cannot recurse into the allocator, and it has no limit. The
//! kernel's loop takes them a message's worth at a time (`take_chunk`) and puts back
//! what a full ring refused (`put_back`); blocks of a failed owner are forgotten
//! (`discard`).

use alloc::boxed::Box;

use super::link::BlockList;
use super::remote::{RemoteFreeBatch, RemoteFrees};
use crate::MAX_CORES;

/// Freed blocks that travel in one kernel message.
pub const BLOCKS_PER_MESSAGE: usize = 3;

/// This core's remote-free state, kept in its `CoreLocal`.
pub struct RemoteState {
    outbox: Box<RemoteFrees<MAX_CORES>>,
    /// Blocks of full batches not sent yet, per owner core.
    pending: [BlockList; MAX_CORES],
    /// Bit `c` set: `pending[c]` is not empty. The core's loop checks this on every
    /// turn, so an idle outbox costs one load, not a walk over every core's list.
    owners_pending: u64,
}

// `owners_pending` has a bit per core.
const _: () = assert!(MAX_CORES <= 64);

impl RemoteState {
    /// Returns the state around `outbox`, with nothing pending.
    pub fn new(outbox: Box<RemoteFrees<MAX_CORES>>) -> Self {
        Self {
            outbox,
            pending: [BlockList::EMPTY; MAX_CORES],
            owners_pending: 0,
        }
    }

    /// Returns the outbox that frees of other cores' blocks fill.
    pub fn outbox(&mut self) -> &mut RemoteFrees<MAX_CORES> {
        &mut self.outbox
    }

    /// Queues the blocks of a full `batch` for sending.
    pub fn queue(&mut self, batch: &RemoteFreeBatch) {
        let list = &mut self.pending[batch.owner()];
        for (addr, size) in batch.blocks() {
            list.push(addr, size);
        }
        if list.len > 0 {
            self.owners_pending |= 1 << batch.owner();
        }
    }

    /// Moves the outbox's partial batches to the pending blocks (the core is idle).
    pub fn flush_outbox(&mut self) {
        while let Some(batch) = self.outbox.flush() {
            self.queue(&batch);
        }
    }

    /// Returns the owners with blocks pending: bit `c` for core `c`.
    pub fn owners_pending(&self) -> u64 {
        self.owners_pending
    }

    /// Takes up to a message's worth of `owner`'s pending blocks.
    pub fn take_chunk(
        &mut self,
        owner: usize,
    ) -> heapless::Vec<(usize, usize), BLOCKS_PER_MESSAGE> {
        let mut chunk = heapless::Vec::new();
        while !chunk.is_full() {
            let Some(block) = self.pending[owner].pop() else {
                break;
            };
            let _ = chunk.push(block);
        }
        if self.pending[owner].len == 0 {
            self.owners_pending &= !(1 << owner);
        }
        chunk
    }

    /// Puts a chunk that could not be sent back in front, in order.
    pub fn put_back(&mut self, owner: usize, chunk: &[(usize, usize)]) {
        for &(addr, size) in chunk.iter().rev() {
            self.pending[owner].push_front(addr, size);
        }
        if !chunk.is_empty() {
            self.owners_pending |= 1 << owner;
        }
    }

    /// Forgets `owner`'s pending blocks: its core failed, and nobody frees memory into
    /// a failed core (the blocks are leaked). Returns how many there were.
    pub fn discard(&mut self, owner: usize) -> usize {
        let count = self.pending[owner].len;
        self.pending[owner] = BlockList::EMPTY;
        self.owners_pending &= !(1 << owner);
        count
    }

    /// Returns the number of freed blocks not yet home (queued or pending).
    pub fn in_flight(&self) -> usize {
        self.outbox.queued() + self.pending_blocks()
    }

    fn pending_blocks(&self) -> usize {
        self.pending.iter().map(|list| list.len).sum()
    }
}

impl core::fmt::Debug for RemoteState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RemoteState")
            .field("queued", &self.outbox.queued())
            .field("pending", &self.pending_blocks())
            .finish()
    }
}
