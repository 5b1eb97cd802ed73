//! The heap's writes into freed blocks, its only `unsafe` besides claiming memory
//! (`raw`): the `u16` free-list link at the start of a freed slab block, and the links
//! of blocks queued to go home to their owner core.
//!
//! A freed block is dead memory that its heap (or the core that freed it and has not
//! handed it home yet) may write; nothing else holds it.

/// The heap's right to the bytes of its free blocks. Only `Heap::new` makes one, so
/// only a heap can read or write free-list links.
#[derive(Debug)]
pub(super) struct Claim {
    _private: (),
}

impl Claim {
    /// Returns the claim of a heap over memory that is its alone.
    ///
    /// # Safety
    /// The heap that keeps the claim must own its extents: RAM that nothing else reads
    /// or writes while the heap or any block from it is alive (`Heap::new`'s contract).
    pub(super) unsafe fn new() -> Claim {
        Claim { _private: () }
    }

    /// Returns the free-list link stored in the free block at `addr`.
    pub(super) fn read_link(&self, addr: usize) -> u16 {
        let link: *const u16 = core::ptr::with_exposed_provenance(addr);
        // SAFETY: the heap calls this only for a block on a slab's free list: inside its
        // extents (valid, owned by the heap per `Heap::new`), aligned to at least 16,
        // written by `write_link` when it was freed, and not lent to anybody since.
        unsafe { link.read() }
    }

    /// Stores `link` in the block at `addr`, which has just been freed.
    pub(super) fn write_link(&mut self, addr: usize, link: u16) {
        let slot: *mut u16 = core::ptr::with_exposed_provenance_mut(addr);
        // SAFETY: the heap calls this only for a block that its page map shows allocated
        // inside its extents and whose free the caller of `dealloc` (or of
        // `dealloc_or_forward` on another core) has promised: no one uses it any more.
        // Blocks are at least 16 bytes and 16-aligned.
        unsafe { slot.write(link) }
    }
}

/// A list of freed blocks of one owner, linked through the blocks.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct BlockList {
    head: usize,
    tail: usize,
    pub(super) len: usize,
}

impl BlockList {
    pub(super) const EMPTY: BlockList = BlockList {
        head: 0,
        tail: 0,
        len: 0,
    };

    /// Appends the block at `addr` of `size` bytes (at least 16, dead, ours to write).
    pub(super) fn push(&mut self, addr: usize, size: usize) {
        // SAFETY: the block was freed by this core and not yet handed back; every block
        // spans at least 16 bytes (the smallest size class) and is 16-byte aligned.
        unsafe {
            core::ptr::write(addr as *mut [usize; 2], [0, size]);
            if self.len > 0 {
                core::ptr::write(self.tail as *mut usize, addr);
            }
        }
        if self.len == 0 {
            self.head = addr;
        }
        self.tail = addr;
        self.len += 1;
    }

    /// Takes the first block: `(address, size)`.
    pub(super) fn pop(&mut self) -> Option<(usize, usize)> {
        if self.len == 0 {
            return None;
        }
        let addr = self.head;
        // SAFETY: written by `push` or `push_front` into a block still queued here.
        let [next, size] = unsafe { core::ptr::read(addr as *const [usize; 2]) };
        self.head = next;
        self.len -= 1;
        Some((addr, size))
    }

    /// Puts a block back at the front.
    pub(super) fn push_front(&mut self, addr: usize, size: usize) {
        // SAFETY: as in `push`.
        unsafe { core::ptr::write(addr as *mut [usize; 2], [self.head, size]) };
        if self.len == 0 {
            self.tail = addr;
        }
        self.head = addr;
        self.len += 1;
    }
}
