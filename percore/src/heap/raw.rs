//! The heap's unsafe code: claiming raw memory, and the entry points that take pointers.
//!
//! Soundness argument, in one place (with `link`, the writes into freed blocks).
//! [`Heap::new`] is told by its caller that the extents are RAM nobody else uses; from
//! then on the heap is the only writer of those bytes, apart from the blocks it hands
//! out. The heap writes in exactly two ways: its page maps (slices carved here at the
//! start of each extent and never handed out), and one `u16` free-list link at the
//! start of a block that has been freed (`Claim::write_link`, whose `Claim` only
//! [`Heap::new`] makes). The free entry points ([`Heap::dealloc`],
//! [`Heap::dealloc_or_forward`]) are `unsafe` because only their caller can promise that
//! a block is no longer used; remote batches can only be filled through the latter, so
//! [`Heap::receive_remote`](super::Heap::receive_remote) is safe. Everything else in
//! `heap` is safe code whose correctness (blocks never overlap, a link is only written
//! into a free block) the tests check.

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ops::Range;
use core::ptr::NonNull;

use super::allocator::{Claimed, Heap};
use super::link::Claim;
use super::owner::OwnerMap;
use super::pages::{Extent, ExtentPlan, PageInfo, PageMap};
use super::remote::{RemoteFreeBatch, RemoteFrees};
use crate::memory::MAX_EXTENTS;

/// Returns the page map of the extent planned by `plan`, written at its start and filled
/// with [`PageInfo::METADATA`].
///
/// # Safety
/// `plan.map_pages` pages at `plan.base` must be valid RAM that nothing else uses for
/// as long as the returned slice lives.
unsafe fn carve_page_map(plan: &ExtentPlan) -> &'static mut [PageInfo] {
    let first: *mut MaybeUninit<PageInfo> = core::ptr::with_exposed_provenance_mut(plan.base);
    debug_assert!(plan.pages * size_of::<PageInfo>() <= plan.map_pages * super::pages::PAGE);
    // SAFETY: the map fits in the extent's first `map_pages` pages (`ExtentPlan::new`),
    // which the caller vouches for; the base is page aligned, so aligned for `PageInfo`;
    // `MaybeUninit` makes no claim about the bytes before they are written.
    let map = unsafe { core::slice::from_raw_parts_mut(first, plan.pages) };
    map.fill(MaybeUninit::new(PageInfo::METADATA));
    // SAFETY: every element was initialised just above.
    unsafe { &mut *(core::ptr::from_mut(map) as *mut [PageInfo]) }
}

impl Heap {
    /// Returns a heap over `extents`, which may come in any order.
    ///
    /// Each extent is shrunk to whole pages (and loses page zero, so no block is null),
    /// and starts with its page map; an extent too small to hold anything after its map
    /// is left unused. O(pages) to write the page maps; no other work.
    ///
    /// # Safety
    /// The bytes of every extent must be RAM, readable and writable at their addresses,
    /// that nothing else reads or writes while the heap or any block from it is alive.
    ///
    /// # Panics
    /// Panics when more than [`MAX_EXTENTS`] extents are usable or two extents overlap.
    pub unsafe fn new(extents: &[Range<usize>]) -> Heap {
        let mut plans: heapless::Vec<ExtentPlan, MAX_EXTENTS> = heapless::Vec::new();
        for range in extents {
            if let Some(plan) = ExtentPlan::new(range) {
                assert!(
                    plans.push(plan).is_ok(),
                    "heap: more than {MAX_EXTENTS} extents"
                );
            }
        }
        plans.sort_unstable_by_key(|plan| plan.base);
        for pair in plans.windows(2) {
            assert!(
                pair[0].range().end <= pair[1].base,
                "heap: extents {:#x?} and {:#x?} overlap",
                pair[0].range(),
                pair[1].range()
            );
        }
        let mut list = heapless::Vec::new();
        for plan in plans {
            // SAFETY: the plan lies inside one of the caller's extents, which they
            // vouch for, and plans do not overlap (checked above).
            let map = unsafe { carve_page_map(&plan) };
            let extent = Extent {
                base: plan.base,
                map,
            };
            // As many entries as `plans`, which has the same capacity.
            let _ = list.push((extent, plan.map_pages));
        }
        // SAFETY: the caller vouches that the extents are the heap's alone.
        let claim = unsafe { Claim::new() };
        Heap::from_parts(PageMap::new(list), claim)
    }

    /// Frees the block at `ptr`, allocated from this heap with `layout`. O(1) for small
    /// blocks; O(1) for large ones (the run merges with its free neighbours).
    ///
    /// # Safety
    /// `ptr` must come from [`Heap::alloc`] of this heap with the same `layout`, must not
    /// have been freed since, and the block must not be used afterwards.
    ///
    /// # Panics
    /// Panics when `ptr` is not in this heap, or the page map shows that `ptr` is not
    /// the start of a live block of `layout` (these checks catch most misuse, not all).
    pub unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) {
        self.free(ptr.as_ptr().addr(), Claimed::Layout(layout));
    }

    /// Frees the block at `ptr`, whichever core's heap it came from: this heap's blocks
    /// are freed here, any other is queued in `outbox` for its owner, found in `owners`.
    ///
    /// Returns a full batch when this free filled one: the caller sends it to
    /// [`RemoteFreeBatch::owner`] by message, and that core passes it to
    /// [`Heap::receive_remote`](super::Heap::receive_remote). This core never writes
    /// another core's heap or block.
    ///
    /// # Safety
    /// `ptr` must come from [`Heap::alloc`] of some core's heap with the same `layout`,
    /// must not have been freed since, and the block must not be used afterwards.
    ///
    /// # Panics
    /// Panics when no core owns `ptr`, its owner is not below `CORES`, or a local free
    /// fails the checks of [`Heap::dealloc`].
    pub unsafe fn dealloc_or_forward<const CORES: usize>(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        owners: &OwnerMap,
        outbox: &mut RemoteFrees<CORES>,
    ) -> Option<RemoteFreeBatch> {
        let addr = ptr.as_ptr().addr();
        if self.owns(ptr.as_ptr()) {
            self.free(addr, Claimed::Layout(layout));
            return None;
        }
        let Some(owner) = owners.owner_of(addr) else {
            panic!("heap: free of {addr:#x}, which no core owns");
        };
        self.count_forwarded();
        outbox.push(owner, addr, layout.size())
    }
}

impl Heap {
    /// Frees blocks that came home from other cores as `(address, size)` pairs: the
    /// blocks of a [`RemoteFreeBatch`] that the kernel carried in several messages.
    /// Returns how many it freed.
    ///
    /// # Safety
    /// Every pair must be one of [`RemoteFreeBatch::blocks`] of a batch that
    /// [`Heap::dealloc_or_forward`] filled for this core, delivered once.
    ///
    /// # Panics
    /// As [`Heap::receive_remote`].
    pub unsafe fn receive_remote_blocks(&mut self, blocks: &[(usize, usize)]) -> usize {
        for &(addr, size) in blocks {
            self.free(addr, Claimed::AtLeast(size));
            self.count_received();
        }
        blocks.len()
    }
}
