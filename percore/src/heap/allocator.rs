//! The heap of one core: slabs of size classes for small blocks, page runs for large ones.
//!
//! A small block comes from the first slab on its class's partial list (a slab with at
//! least one block to give): the head of the slab's intrusive free list, or else the next
//! block never handed out (slabs are carved lazily, so a new slab costs O(1) however many
//! blocks it has). A slab leaves the partial list when it has nothing left to give and
//! comes back on the free that makes room. When its last block is freed, a slab becomes
//! its class's one spare (kept so that a class oscillating around a slab boundary does
//! not take and give pages on every call), or goes back to the page allocator if the
//! class has a spare already. Spares are given back too when the page allocator runs dry.
//! Every step is O(1): no search, no loop over blocks or slabs.
//!
//! A large block (above [`LARGEST_SMALL_SIZE`] bytes or aligned above it) is a run of
//! whole pages. Its length is in the page map, so a block carries no header, and a block
//! aligned to a page or more is exactly what was asked for.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use super::class::{class_for, CLASSES, CLASS_COUNT, LARGEST_SMALL_SIZE};
use super::link::Claim;
use super::pages::{Kind, PageInfo, PageMap, PageRef, NO_BLOCK, PAGE};

/// The failure of an allocation: no free memory could hold the layout asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError {
    size: usize,
    align: usize,
}

impl AllocError {
    /// Returns the size in bytes of the allocation that failed.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Returns the alignment of the allocation that failed.
    pub fn align(&self) -> usize {
        self.align
    }
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "out of memory: {} bytes aligned to {} could not be allocated",
            self.size, self.align
        )
    }
}

/// Counters of one heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes of live blocks, counted at their granted size (size class or whole pages).
    pub bytes_in_use: usize,
    /// Bytes the heap can hand out: its extents less their page maps.
    pub bytes_total: usize,
    /// Successful allocations.
    pub allocations: u64,
    /// Blocks returned to this heap, by its own core or by remote free batches.
    pub frees: u64,
    /// Allocations that failed for lack of memory.
    pub failures: u64,
    /// Blocks of other cores freed here and queued to be sent back to their owner.
    pub remote_frees_sent: u64,
    /// Blocks of this heap that came back in remote free batches.
    pub remote_frees_received: u64,
}

/// How a block is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// From a slab of this size class.
    Small(usize),
    /// As a run of this many pages, at this alignment.
    Large { pages: usize, align: usize },
}

impl Plan {
    fn of(layout: Layout) -> Plan {
        match class_for(layout) {
            Some(class) => Plan::Small(class),
            None => Plan::Large {
                pages: layout.size().max(1).div_ceil(PAGE),
                align: layout.align(),
            },
        }
    }
}

/// What a free is told about the block, to check it against the page map.
#[derive(Clone, Copy, Debug)]
pub(super) enum Claimed {
    /// The layout it was allocated with (a local free).
    Layout(Layout),
    /// At least this many bytes (a remote free, which carries no alignment).
    AtLeast(usize),
}

/// The partial-slab list and the spare slab of one size class.
#[derive(Clone, Copy, Debug)]
struct ClassState {
    partial: PageRef,
    spare: PageRef,
}

/// One core's heap over its share of RAM. See the [module documentation](super).
pub struct Heap {
    pages: PageMap,
    classes: [ClassState; CLASS_COUNT],
    stats: HeapStats,
    claim: Claim,
}

impl Heap {
    /// Returns a heap over `pages`, with `claim` for the blocks' bytes.
    pub(super) fn from_parts(pages: PageMap, claim: Claim) -> Heap {
        let stats = HeapStats {
            bytes_total: pages.usable_pages() * PAGE,
            ..HeapStats::default()
        };
        Heap {
            pages,
            classes: [ClassState {
                partial: PageRef::NONE,
                spare: PageRef::NONE,
            }; CLASS_COUNT],
            stats,
            claim,
        }
    }

    /// Allocates a block for `layout`.
    ///
    /// Small layouts take O(1); large ones O(1) as long as some free list has runs that
    /// all fit. Returns [`AllocError`] with the size asked for when no memory can hold
    /// it, including alignments no run of this heap can satisfy.
    pub fn alloc(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let addr = match Plan::of(layout) {
            Plan::Small(class) => self.alloc_small(class),
            Plan::Large { pages, align } => self.alloc_large(pages, align),
        };
        let Some(ptr) = addr.and_then(|a| NonNull::new(core::ptr::with_exposed_provenance_mut(a)))
        else {
            self.stats.failures += 1;
            return Err(AllocError {
                size: layout.size(),
                align: layout.align(),
            });
        };
        self.stats.allocations += 1;
        Ok(ptr)
    }

    /// Returns true when `ptr` lies in one of this heap's extents.
    pub fn owns(&self, ptr: *const u8) -> bool {
        self.pages.contains(ptr.addr())
    }

    /// Returns the heap's counters.
    pub fn stats(&self) -> HeapStats {
        self.stats
    }

    /// Returns the address ranges of the heap's extents (page maps included), for an
    /// [`OwnerMap`](super::OwnerMap).
    pub fn extents(&self) -> impl Iterator<Item = core::ops::Range<usize>> + '_ {
        self.pages.ranges()
    }

    /// Returns the number of pages not in any block or slab (spare slabs not counted).
    pub fn free_pages(&self) -> usize {
        self.pages.free_pages()
    }

    /// Gives every spare slab back to the page allocator.
    pub fn release_spares(&mut self) {
        for (state, class) in self.classes.iter_mut().zip(CLASSES) {
            let spare = core::mem::replace(&mut state.spare, PageRef::NONE);
            if !spare.is_none() {
                self.pages.give(spare, class.pages);
            }
        }
    }

    /// Counts one block queued for its owner core.
    pub(super) fn count_forwarded(&mut self) {
        self.stats.remote_frees_sent += 1;
    }

    /// Counts one block that came back from another core.
    pub(super) fn count_received(&mut self) {
        self.stats.remote_frees_received += 1;
    }

    /// Frees the block at `addr`, which must lie in this heap.
    ///
    /// The page map tells the block's kind and size; `claimed` is checked against it,
    /// and so is the state of the slab, which catches wrong layouts, pointers into no
    /// block and most double frees with a panic instead of a corrupt heap. The caller
    /// guarantees the block was allocated here and is not used any more: the free list
    /// link is written into it.
    pub(super) fn free(&mut self, addr: usize, claimed: Claimed) {
        let Some(page) = self.pages.locate(addr) else {
            panic!("heap: free of {addr:#x}, which is not in this heap");
        };
        let info = *self.pages.info(page);
        let head = match info.kind {
            Kind::Tail => page.back(info.len as usize),
            _ => page,
        };
        let head_info = *self.pages.info(head);
        match head_info.kind {
            Kind::Slab => {
                let class = head_info.class as usize;
                let fits = match claimed {
                    Claimed::Layout(layout) => Plan::of(layout) == Plan::Small(class),
                    Claimed::AtLeast(size) => size <= CLASSES[class].size,
                };
                assert!(
                    fits,
                    "heap: free of {addr:#x} as {claimed:?}, but it is a {}-byte block",
                    CLASSES[class].size
                );
                self.free_small(class, head, addr);
            }
            Kind::Large if addr == self.pages.address(head) => {
                let pages = head_info.len as usize;
                let fits = match claimed {
                    Claimed::Layout(layout) => match Plan::of(layout) {
                        Plan::Large { pages: p, .. } => p == pages,
                        Plan::Small(_) => false,
                    },
                    Claimed::AtLeast(size) => size <= pages * PAGE,
                };
                assert!(
                    fits,
                    "heap: free of {addr:#x} as {claimed:?}, but it is a {pages}-page block"
                );
                self.pages.give(head, pages);
                self.stats.bytes_in_use -= pages * PAGE;
                self.stats.frees += 1;
            }
            _ => panic!("heap: free of {addr:#x}, which is not an allocated block"),
        }
    }

    fn alloc_small(&mut self, class: usize) -> Option<usize> {
        let geometry = CLASSES[class];
        let mut slab = self.classes[class].partial;
        if slab.is_none() {
            slab = self.new_slab(class)?;
        }
        let base = self.pages.address(slab);
        let info = self.pages.info_mut(slab);
        let offset = if info.free != NO_BLOCK {
            let offset = info.free;
            let next = self.claim.read_link(base + offset as usize);
            // Every free block lies below the carving point; a link that does not was
            // overwritten after its block was freed.
            assert!(
                next == NO_BLOCK || next < info.bump,
                "heap: free list of the slab at {base:#x} is corrupt (use after free?)"
            );
            info.free = next;
            offset
        } else {
            let offset = info.bump;
            info.bump += geometry.size as u16;
            offset
        };
        info.in_use += 1;
        let exhausted =
            info.free == NO_BLOCK && info.bump as usize + geometry.size > geometry.slab_bytes();
        if exhausted {
            self.unlink_partial(class, slab);
        }
        self.stats.bytes_in_use += geometry.size;
        Some(base + offset as usize)
    }

    fn free_small(&mut self, class: usize, slab: PageRef, addr: usize) {
        let geometry = CLASSES[class];
        let base = self.pages.address(slab);
        let offset = addr - base;
        assert!(
            offset.is_multiple_of(geometry.size),
            "heap: free of {addr:#x}, which is inside a {}-byte block",
            geometry.size
        );
        let info = self.pages.info_mut(slab);
        assert!(
            info.in_use > 0 && offset < info.bump as usize,
            "heap: free of {addr:#x}, which is not allocated (double free?)"
        );
        let was_exhausted =
            info.free == NO_BLOCK && info.bump as usize + geometry.size > geometry.slab_bytes();
        self.claim.write_link(addr, info.free);
        info.free = offset as u16;
        info.in_use -= 1;
        let now_empty = info.in_use == 0;
        self.stats.bytes_in_use -= geometry.size;
        self.stats.frees += 1;
        if was_exhausted {
            self.link_partial(class, slab);
        }
        if now_empty {
            self.retire_slab(class, slab);
        }
    }

    fn alloc_large(&mut self, pages: usize, align: usize) -> Option<usize> {
        let take = |map: &mut PageMap| {
            if align <= PAGE {
                map.take(pages)
            } else {
                map.take_aligned(pages, align)
            }
        };
        let run = match take(&mut self.pages) {
            Some(run) => run,
            None => {
                self.release_spares();
                take(&mut self.pages)?
            }
        };
        self.stats.bytes_in_use += pages * PAGE;
        Some(self.pages.address(run))
    }

    /// Returns a slab for `class` on its partial list: the spare, or new pages.
    fn new_slab(&mut self, class: usize) -> Option<PageRef> {
        let geometry = CLASSES[class];
        let spare = core::mem::replace(&mut self.classes[class].spare, PageRef::NONE);
        let slab = if spare.is_none() {
            let slab = match self.pages.take(geometry.pages) {
                Some(slab) => slab,
                None => {
                    self.release_spares();
                    self.pages.take(geometry.pages)?
                }
            };
            for page in 1..geometry.pages {
                self.pages.info_mut(slab.forward(page)).kind = Kind::Tail;
                self.pages.info_mut(slab.forward(page)).len = page as u32;
            }
            slab
        } else {
            spare
        };
        *self.pages.info_mut(slab) = PageInfo {
            kind: Kind::Slab,
            class: class as u8,
            len: geometry.pages as u32,
            ..PageInfo::METADATA
        };
        self.link_partial(class, slab);
        Some(slab)
    }

    /// Takes an empty slab off its partial list: keeps it as the class's spare, or gives
    /// its pages back when there is a spare already.
    fn retire_slab(&mut self, class: usize, slab: PageRef) {
        self.unlink_partial(class, slab);
        if self.classes[class].spare.is_none() {
            self.classes[class].spare = slab;
        } else {
            self.pages.give(slab, CLASSES[class].pages);
        }
    }

    fn link_partial(&mut self, class: usize, slab: PageRef) {
        let old_head = self.classes[class].partial;
        let info = self.pages.info_mut(slab);
        info.next = old_head;
        info.prev = PageRef::NONE;
        if !old_head.is_none() {
            self.pages.info_mut(old_head).prev = slab;
        }
        self.classes[class].partial = slab;
    }

    fn unlink_partial(&mut self, class: usize, slab: PageRef) {
        let PageInfo { next, prev, .. } = *self.pages.info(slab);
        if !next.is_none() {
            self.pages.info_mut(next).prev = prev;
        }
        if prev.is_none() {
            self.classes[class].partial = next;
        } else {
            self.pages.info_mut(prev).next = next;
        }
    }

    #[cfg(test)]
    pub(super) fn page_map(&self) -> &PageMap {
        &self.pages
    }

    /// Checks the heap against its invariants (see [`PageMap::check`] for the pages):
    /// every slab's free list is within it, without repeats, and together with the live
    /// blocks accounts for every block carved; every slab with live blocks and room is on
    /// its class's partial list and no other slab is; every empty slab is its class's
    /// spare; and the live bytes add up to `bytes_in_use`.
    #[cfg(test)]
    pub(super) fn check(&self) {
        use std::collections::HashSet;
        let mut partial = HashSet::new();
        for (class, state) in self.classes.iter().enumerate() {
            let mut previous = PageRef::NONE;
            let mut slab = state.partial;
            while !slab.is_none() {
                let info = self.pages.info(slab);
                assert_eq!((info.kind, info.class as usize), (Kind::Slab, class));
                assert_eq!(info.prev, previous, "partial list of class {class}");
                assert!(partial.insert(slab), "partial list of class {class} loops");
                previous = slab;
                slab = info.next;
            }
        }
        let mut bytes = 0;
        for (head, pages) in self.pages.check() {
            let info = *self.pages.info(head);
            if info.kind == Kind::Large {
                bytes += pages * PAGE;
                continue;
            }
            let class = info.class as usize;
            let geometry = CLASSES[class];
            assert_eq!(pages, geometry.pages);
            let base = self.pages.address(head);
            let mut free = HashSet::new();
            let mut offset = info.free;
            while offset != NO_BLOCK {
                assert!(offset < info.bump, "slab {base:#x}: link beyond carving");
                assert_eq!(offset as usize % geometry.size, 0, "slab {base:#x}");
                assert!(free.insert(offset), "slab {base:#x}: free list loops");
                offset = self.claim.read_link(base + offset as usize);
            }
            let carved = info.bump as usize / geometry.size;
            assert_eq!(free.len() + info.in_use as usize, carved, "slab {base:#x}");
            bytes += info.in_use as usize * geometry.size;
            let has_room = !free.is_empty() || carved < geometry.blocks();
            if info.in_use == 0 {
                assert_eq!(self.classes[class].spare, head, "empty slab {base:#x}");
            } else {
                assert_eq!(partial.contains(&head), has_room, "slab {base:#x}");
            }
        }
        assert_eq!(bytes, self.stats.bytes_in_use);
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("stats", &self.stats)
            .field("free_pages", &self.pages.free_pages())
            .finish_non_exhaustive()
    }
}

// Compile-time check of the claim the module docs make.
const _: () = assert!(LARGEST_SMALL_SIZE < PAGE);
