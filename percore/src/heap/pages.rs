//! The page allocator: runs of contiguous 4 KiB pages over a core's extents.
//!
//! Every extent starts with its page map, a [`PageInfo`] per page carved from the extent
//! itself (20 bytes per 4 KiB, 0.5 %), so the allocator works given nothing but raw
//! memory. The map answers "what is this page" for any address in O(extents): free,
//! part of a slab of some class, or the head of a large block with its length. That is
//! how `dealloc` and remote frees find a block's size without a header in the block.
//!
//! Free memory is kept as maximal runs. A free run records its length in its first and
//! its last page (boundary tags), so a freed run merges with both neighbours in O(1).
//! Runs sit in segregated lists: one list per exact length up to 64 pages, then one per
//! power of two, with a bit mask of the non-empty lists. Taking `n` pages looks up the
//! first non-empty list whose runs all fit (one `trailing_zeros`), splits the run and
//! files the rest; only when no such list exists does it walk the one list whose runs
//! may or may not fit. Allocated runs mark their first and last page, the only pages a
//! neighbour ever reads.

use core::ops::Range;

use crate::memory::MAX_EXTENTS;

/// Bytes per page.
pub const PAGE: usize = crate::memory::PAGE_SIZE as usize;

/// Bits of a [`PageRef`] that hold the page index within its extent.
const INDEX_BITS: u32 = 29;
/// The most pages one extent may have; memory beyond it is left unused (2 TiB).
pub(super) const MAX_EXTENT_PAGES: usize = (1 << INDEX_BITS) - 1;
/// Lists with one exact run length each (1..=64 pages).
const EXACT_BINS: usize = 64;
/// The number of free lists: exact ones, then one per power of two above 64 pages.
const BINS: usize = bin_of(MAX_EXTENT_PAGES) + 1;

// The page map costs what the docs say: 20 bytes per page.
const _: () = assert!(size_of::<PageInfo>() == 20);
// Extent numbers must fit the bits a `PageRef` leaves for them.
const _: () = assert!(MAX_EXTENTS <= 1 << (32 - INDEX_BITS));
const _: () = assert!(BINS <= 128);

/// Returns the free list that holds runs of `len` pages (`len >= 1`).
const fn bin_of(len: usize) -> usize {
    if len <= EXACT_BINS {
        len - 1
    } else {
        EXACT_BINS + (usize::BITS - 1 - len.leading_zeros()) as usize - 6
    }
}

/// Returns the shortest run length filed in list `bin`.
const fn bin_floor(bin: usize) -> usize {
    if bin < EXACT_BINS {
        bin + 1
    } else if bin == EXACT_BINS {
        EXACT_BINS + 1
    } else {
        1 << (bin - EXACT_BINS + 6)
    }
}

/// A page named by its extent and its index there, packed in 32 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(transparent)]
pub(super) struct PageRef(u32);

impl PageRef {
    /// No page: the end of a list.
    pub const NONE: PageRef = PageRef(u32::MAX);

    fn new(extent: usize, index: usize) -> PageRef {
        debug_assert!(extent < MAX_EXTENTS && index < MAX_EXTENT_PAGES);
        PageRef(((extent as u32) << INDEX_BITS) | index as u32)
    }

    pub fn is_none(self) -> bool {
        self == PageRef::NONE
    }

    fn extent(self) -> usize {
        (self.0 >> INDEX_BITS) as usize
    }

    fn index(self) -> usize {
        (self.0 & ((1 << INDEX_BITS) - 1)) as usize
    }

    /// Returns the page `pages` after this one in the same extent.
    pub fn forward(self, pages: usize) -> PageRef {
        PageRef::new(self.extent(), self.index() + pages)
    }

    /// Returns the page `pages` before this one in the same extent.
    pub fn back(self, pages: usize) -> PageRef {
        PageRef::new(self.extent(), self.index() - pages)
    }
}

/// What a page is used for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(super) enum Kind {
    /// Holds the page map; never handed out.
    Metadata,
    /// First or last page of a free run; `len` is the run's length.
    Free,
    /// First page of an allocated run that is one large block; `len` is its length.
    Large,
    /// First page of a slab; `class`, `in_use`, `bump`, `free` describe it, `len` is its
    /// length in pages.
    Slab,
    /// A later page of a slab, or the last page of a large block; `len` is the distance
    /// back to the first page.
    Tail,
}

/// The page map entry of one page. Which fields mean something depends on `kind`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(super) struct PageInfo {
    pub kind: Kind,
    /// Slab: its size class.
    pub class: u8,
    /// Slab: blocks handed out and not yet freed.
    pub in_use: u16,
    /// Slab: offset of the first block never handed out; blocks are carved lazily.
    pub bump: u16,
    /// Slab: offset of the first block of its free list, or [`NO_BLOCK`].
    pub free: u16,
    /// Run length, slab length, or distance back to the first page (see [`Kind`]).
    pub len: u32,
    /// Links of the free-run list or of the partial-slab list this page heads.
    pub next: PageRef,
    pub prev: PageRef,
}

/// The end of a slab's free list.
pub(super) const NO_BLOCK: u16 = u16::MAX;

impl PageInfo {
    /// A page map entry for a metadata page; the page map starts filled with it.
    pub const METADATA: PageInfo = PageInfo {
        kind: Kind::Metadata,
        class: 0,
        in_use: 0,
        bump: 0,
        free: NO_BLOCK,
        len: 0,
        next: PageRef::NONE,
        prev: PageRef::NONE,
    };

    fn tagged(kind: Kind, len: usize) -> PageInfo {
        PageInfo {
            kind,
            len: len as u32,
            ..PageInfo::METADATA
        }
    }
}

/// Where an extent's page map goes and how many pages are left for allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ExtentPlan {
    /// Address of the extent's first page, where its page map starts.
    pub base: usize,
    /// Pages in the extent, the page map's own included.
    pub pages: usize,
    /// Pages taken by the page map at the start of the extent.
    pub map_pages: usize,
}

impl ExtentPlan {
    /// Returns the plan for `range`: shrunk to whole pages, without page zero (so no
    /// block has the null address), capped at [`MAX_EXTENT_PAGES`]. Returns `None` when
    /// nothing would be left to allocate once the page map is carved.
    pub fn new(range: &Range<usize>) -> Option<ExtentPlan> {
        let start = range.start.max(PAGE).checked_next_multiple_of(PAGE)?;
        let end = range.end & !(PAGE - 1);
        if end <= start {
            return None;
        }
        let pages = ((end - start) / PAGE).min(MAX_EXTENT_PAGES);
        let map_pages = (pages * size_of::<PageInfo>()).div_ceil(PAGE);
        (map_pages < pages).then_some(ExtentPlan {
            base: start,
            pages,
            map_pages,
        })
    }

    /// Returns the address range the plan covers.
    pub fn range(&self) -> Range<usize> {
        self.base..self.base + self.pages * PAGE
    }
}

/// One extent: its first address and its page map (one entry per page).
pub(super) struct Extent {
    pub base: usize,
    pub map: &'static mut [PageInfo],
}

impl Extent {
    fn end(&self) -> usize {
        self.base + self.map.len() * PAGE
    }
}

/// The page allocator of one core.
pub(super) struct PageMap {
    extents: heapless::Vec<Extent, MAX_EXTENTS>,
    bins: [PageRef; BINS],
    /// Bit `b` is set when list `b` is not empty.
    nonempty: u128,
    free_pages: usize,
    usable_pages: usize,
}

impl PageMap {
    /// Returns the allocator over `extents`, whose page maps hold [`PageInfo::METADATA`]
    /// everywhere; everything after each map becomes one free run.
    pub fn new(extents: heapless::Vec<(Extent, usize), MAX_EXTENTS>) -> PageMap {
        let mut map = PageMap {
            extents: heapless::Vec::new(),
            bins: [PageRef::NONE; BINS],
            nonempty: 0,
            free_pages: 0,
            usable_pages: 0,
        };
        for (index, (extent, map_pages)) in extents.into_iter().enumerate() {
            let usable = extent.map.len() - map_pages;
            // Capacity is the same as the argument's.
            let _ = map.extents.push(extent);
            map.insert_free(PageRef::new(index, map_pages), usable);
            map.free_pages += usable;
            map.usable_pages += usable;
        }
        map
    }

    /// Returns the number of pages not allocated.
    pub fn free_pages(&self) -> usize {
        self.free_pages
    }

    /// Returns the number of pages there are to allocate (page maps excluded).
    pub fn usable_pages(&self) -> usize {
        self.usable_pages
    }

    /// Returns the address ranges of the extents, page maps included.
    pub fn ranges(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.extents.iter().map(|e| e.base..e.end())
    }

    /// Returns true when `addr` lies in one of the extents.
    pub fn contains(&self, addr: usize) -> bool {
        self.locate(addr).is_some()
    }

    /// Returns the page holding `addr`, or `None` when no extent holds it.
    pub fn locate(&self, addr: usize) -> Option<PageRef> {
        let index = self
            .extents
            .iter()
            .position(|e| e.base <= addr && addr < e.end())?;
        Some(PageRef::new(
            index,
            (addr - self.extents[index].base) / PAGE,
        ))
    }

    /// Returns the address of page `page`.
    pub fn address(&self, page: PageRef) -> usize {
        self.extents[page.extent()].base + page.index() * PAGE
    }

    pub fn info(&self, page: PageRef) -> &PageInfo {
        &self.extents[page.extent()].map[page.index()]
    }

    pub fn info_mut(&mut self, page: PageRef) -> &mut PageInfo {
        &mut self.extents[page.extent()].map[page.index()]
    }

    /// Takes a run of `pages` pages. Its first page is marked [`Kind::Large`] and its
    /// last [`Kind::Tail`]; the caller may mark them otherwise. Returns `None` when no
    /// free run is long enough.
    pub fn take(&mut self, pages: usize) -> Option<PageRef> {
        if pages == 0 || pages > MAX_EXTENT_PAGES {
            return None;
        }
        let bin = bin_of(pages);
        // Every run in a list at or above `first` is long enough.
        let first = if pages <= bin_floor(bin) {
            bin
        } else {
            bin + 1
        };
        let fitting = if first < 128 {
            self.nonempty & (u128::MAX << first)
        } else {
            0
        };
        let run = if fitting != 0 {
            self.bins[fitting.trailing_zeros() as usize]
        } else {
            self.search(bin, pages)?
        };
        let len = self.info(run).len as usize;
        self.remove_free(run);
        if len > pages {
            self.insert_free(run.forward(pages), len - pages);
        }
        self.mark_allocated(run, pages);
        self.free_pages -= pages;
        Some(run)
    }

    /// Takes a run of `pages` pages whose address is a multiple of `align` (a power of
    /// two above [`PAGE`]): takes a longer run and gives back both ends.
    pub fn take_aligned(&mut self, pages: usize, align: usize) -> Option<PageRef> {
        let slack = align / PAGE - 1;
        let total = pages.checked_add(slack)?;
        let run = self.take(total)?;
        let start = self.address(run);
        let Some(aligned) = start.checked_next_multiple_of(align) else {
            self.give(run, total);
            return None;
        };
        let before = (aligned - start) / PAGE;
        let after = total - before - pages;
        let block = run.forward(before);
        // Mark the block first: giving back its ends merges with what is free around.
        self.mark_allocated(block, pages);
        if before > 0 {
            self.give(run, before);
        }
        if after > 0 {
            self.give(block.forward(pages), after);
        }
        Some(block)
    }

    /// Gives back the run of `pages` pages at `run`, merging it with free neighbours.
    pub fn give(&mut self, run: PageRef, pages: usize) {
        let extent_pages = self.extents[run.extent()].map.len();
        let mut start = run;
        let mut len = pages;
        if run.index() > 0 {
            let left = *self.info(run.back(1));
            if left.kind == Kind::Free {
                start = run.back(left.len as usize);
                len += left.len as usize;
                self.remove_free(start);
            }
        }
        if run.index() + pages < extent_pages {
            let right_page = run.forward(pages);
            let right = *self.info(right_page);
            if right.kind == Kind::Free {
                len += right.len as usize;
                self.remove_free(right_page);
            }
        }
        self.insert_free(start, len);
        self.free_pages += pages;
    }

    /// Returns the number of free runs and the length of the longest (for checks).
    #[cfg(test)]
    pub fn free_runs(&self) -> (usize, usize) {
        let mut runs = 0;
        let mut longest = 0;
        for head in self.bins {
            let mut run = head;
            while !run.is_none() {
                runs += 1;
                longest = longest.max(self.info(run).len as usize);
                run = self.info(run).next;
            }
        }
        (runs, longest)
    }

    /// Checks the page map against its invariants and returns the allocated runs (first
    /// page and length): every extent is tiled by its page map and runs whose first and
    /// last pages say so, no two free runs touch, every free run is on the right list
    /// and every list entry is a free run, and the count of free pages is right.
    #[cfg(test)]
    pub fn check(&self) -> std::vec::Vec<(PageRef, usize)> {
        let mut allocated = std::vec::Vec::new();
        let mut free_runs = 0;
        let mut free_pages = 0;
        for (e, extent) in self.extents.iter().enumerate() {
            let map = &extent.map;
            let mut i = map.iter().take_while(|p| p.kind == Kind::Metadata).count();
            assert!(i > 0, "extent {e} has no page map pages");
            let mut previous_free = false;
            while i < map.len() {
                let info = map[i];
                let len = info.len as usize;
                assert!(
                    len >= 1 && i + len <= map.len(),
                    "extent {e} page {i}: {info:?}"
                );
                let last = map[i + len - 1];
                match info.kind {
                    Kind::Free => {
                        assert!(!previous_free, "extent {e}: free runs touch at page {i}");
                        assert_eq!((last.kind, last.len), (Kind::Free, info.len), "page {i}");
                        free_runs += 1;
                        free_pages += len;
                    }
                    Kind::Large if len > 1 => {
                        assert_eq!((last.kind, last.len as usize), (Kind::Tail, len - 1));
                    }
                    Kind::Large => {}
                    Kind::Slab => {
                        for k in 1..len {
                            assert_eq!((map[i + k].kind, map[i + k].len as usize), (Kind::Tail, k));
                        }
                    }
                    _ => panic!("extent {e} page {i} starts no run: {info:?}"),
                }
                previous_free = info.kind == Kind::Free;
                if !previous_free {
                    allocated.push((PageRef::new(e, i), len));
                }
                i += len;
            }
        }
        assert_eq!(free_pages, self.free_pages);
        let mut listed = 0;
        for (bin, &head) in self.bins.iter().enumerate() {
            assert_eq!(
                self.nonempty & (1 << bin) != 0,
                !head.is_none(),
                "list {bin}"
            );
            let mut previous = PageRef::NONE;
            let mut run = head;
            while !run.is_none() {
                let info = self.info(run);
                assert_eq!(info.kind, Kind::Free, "list {bin} holds {run:?}");
                assert_eq!(bin_of(info.len as usize), bin, "{run:?} on the wrong list");
                assert_eq!(info.prev, previous, "{run:?}: broken back link");
                listed += 1;
                assert!(listed <= free_runs, "list {bin} has a cycle or a stale run");
                previous = run;
                run = info.next;
            }
        }
        assert_eq!(listed, free_runs, "free runs missing from the lists");
        allocated
    }

    fn mark_allocated(&mut self, run: PageRef, pages: usize) {
        *self.info_mut(run) = PageInfo::tagged(Kind::Large, pages);
        if pages > 1 {
            *self.info_mut(run.forward(pages - 1)) = PageInfo::tagged(Kind::Tail, pages - 1);
        }
    }

    /// Returns the first run of at least `pages` pages in list `bin`.
    fn search(&self, bin: usize, pages: usize) -> Option<PageRef> {
        let mut run = self.bins[bin];
        while !run.is_none() {
            if self.info(run).len as usize >= pages {
                return Some(run);
            }
            run = self.info(run).next;
        }
        None
    }

    fn insert_free(&mut self, run: PageRef, len: usize) {
        let bin = bin_of(len);
        let old_head = self.bins[bin];
        *self.info_mut(run) = PageInfo {
            next: old_head,
            ..PageInfo::tagged(Kind::Free, len)
        };
        if len > 1 {
            *self.info_mut(run.forward(len - 1)) = PageInfo::tagged(Kind::Free, len);
        }
        if !old_head.is_none() {
            self.info_mut(old_head).prev = run;
        }
        self.bins[bin] = run;
        self.nonempty |= 1 << bin;
    }

    fn remove_free(&mut self, run: PageRef) {
        let PageInfo {
            next, prev, len, ..
        } = *self.info(run);
        debug_assert_eq!(self.info(run).kind, Kind::Free);
        if !next.is_none() {
            self.info_mut(next).prev = prev;
        }
        if prev.is_none() {
            let bin = bin_of(len as usize);
            self.bins[bin] = next;
            if next.is_none() {
                self.nonempty &= !(1 << bin);
            }
        } else {
            self.info_mut(prev).next = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_every_length_once_and_in_order() {
        let mut previous = 0;
        for len in 1..=1 << 20 {
            let bin = bin_of(len);
            assert!(bin == previous || bin == previous + 1, "len {len}");
            assert!(bin_floor(bin) <= len, "len {len} below floor of {bin}");
            if bin + 1 < BINS {
                assert!(
                    len < bin_floor(bin + 1),
                    "len {len} reaches list {}",
                    bin + 1
                );
            }
            previous = bin;
        }
        assert_eq!(bin_of(MAX_EXTENT_PAGES), BINS - 1);
    }

    #[test]
    fn plans_skip_page_zero_and_partial_pages() {
        assert_eq!(ExtentPlan::new(&(0..10)), None);
        let plan = ExtentPlan::new(&(0..1024 * PAGE)).unwrap();
        assert_eq!(plan.base, PAGE);
        assert_eq!(plan.pages, 1023);
        assert_eq!(
            plan.map_pages,
            (1023 * size_of::<PageInfo>()).div_ceil(PAGE)
        );
        assert_eq!(
            ExtentPlan::new(&(PAGE + 1..3 * PAGE + 5)),
            None,
            "one page, all of it page map"
        );
        let plan = ExtentPlan::new(&(PAGE + 1..300 * PAGE + 5)).unwrap();
        assert_eq!((plan.base, plan.pages, plan.map_pages), (2 * PAGE, 298, 2));
    }

    /// Returns a page map over made-up addresses: the page allocator never touches the
    /// pages themselves, only their map, so no real memory is needed.
    fn fake(extents: &[(usize, usize)]) -> PageMap {
        let mut list = heapless::Vec::new();
        for &(base, pages) in extents {
            let plan = ExtentPlan::new(&(base..base + pages * PAGE)).unwrap();
            let map = vec![PageInfo::METADATA; plan.pages].leak();
            let extent = Extent {
                base: plan.base,
                map,
            };
            assert!(list.push((extent, plan.map_pages)).is_ok());
        }
        PageMap::new(list)
    }

    #[test]
    fn runs_split_and_merge_back_into_one() {
        let mut map = fake(&[(1 << 30, 1000)]);
        let usable = map.usable_pages();
        assert_eq!(usable, 1000 - 5);
        let a = map.take(10).unwrap();
        let b = map.take(1).unwrap();
        let c = map.take(100).unwrap();
        assert_eq!(map.address(b), map.address(a) + 10 * PAGE);
        assert_eq!(map.address(c), map.address(b) + PAGE);
        assert_eq!(map.free_pages(), usable - 111);
        map.give(b, 1);
        assert_eq!(map.free_runs(), (2, usable - 111));
        map.give(a, 10);
        assert_eq!(map.free_runs(), (2, usable - 111), "a and b merged");
        assert_eq!(map.take(11), Some(a), "the merged hole is reused");
        map.give(a, 11);
        map.give(c, 100);
        assert_eq!(map.free_runs(), (1, usable));
        assert_eq!(map.free_pages(), usable);
        assert!(map.take(usable + 1).is_none());
        assert!(map.take(0).is_none());
        let all = map.take(usable).unwrap();
        assert_eq!(map.free_pages(), 0);
        assert!(map.take(1).is_none());
        map.give(all, usable);
    }

    #[test]
    fn aligned_runs_give_back_their_slack() {
        let mut map = fake(&[(1 << 30, 4096)]);
        let usable = map.usable_pages();
        let first = map.take(1).unwrap();
        let block = map.take_aligned(3, 64 * PAGE).unwrap();
        assert_eq!(map.address(block) % (64 * PAGE), 0);
        assert_eq!(map.free_pages(), usable - 4);
        assert_eq!(map.free_runs().0, 2, "slack before and after went back");
        map.give(block, 3);
        map.give(first, 1);
        assert_eq!(map.free_runs(), (1, usable));
        assert!(map.take_aligned(1, 1 << 40).is_none());
        assert_eq!(
            map.free_pages(),
            usable,
            "a failed aligned take keeps nothing"
        );
    }

    #[test]
    fn random_runs_never_overlap_and_coalesce_fully() {
        let extents = [(1 << 30, 3000), (1 << 32, 5000), (1 << 34, 70)];
        let mut map = fake(&extents);
        let usable = map.usable_pages();
        let mut live: Vec<(usize, usize, PageRef)> = Vec::new();
        let mut random = crate::random::XorShift64::new(1);
        let mut next = || random.next_u64();
        for _ in 0..20_000 {
            if live.is_empty() || next() % 3 != 0 {
                let pages = match next() % 10 {
                    0 => 1 + (next() % 600) as usize,
                    1 => 65 + (next() % 100) as usize,
                    _ => 1 + (next() % 8) as usize,
                };
                let run = if next() % 8 == 0 {
                    map.take_aligned(pages, PAGE << (1 + next() % 6))
                } else {
                    map.take(pages)
                };
                if let Some(run) = run {
                    let start = map.address(run);
                    live.push((start, pages, run));
                }
            } else {
                let i = (next() as usize) % live.len();
                let (_, pages, run) = live.swap_remove(i);
                map.give(run, pages);
            }
            let used: usize = live.iter().map(|l| l.1).sum();
            assert_eq!(map.free_pages() + used, usable);
        }
        live.sort_by_key(|l| l.0);
        for pair in live.windows(2) {
            assert!(pair[0].0 + pair[0].1 * PAGE <= pair[1].0, "{pair:?}");
        }
        for (start, pages, _) in &live {
            assert!(map
                .ranges()
                .any(|r| r.start <= *start && start + pages * PAGE <= r.end));
        }
        for (_, pages, run) in live.drain(..) {
            map.give(run, pages);
        }
        assert_eq!(map.free_runs(), (3, 5000 - 25), "one run per extent");
        assert_eq!(map.free_pages(), usable);
    }

    #[test]
    fn page_ref_packs_extent_and_index() {
        let page = PageRef::new(7, MAX_EXTENT_PAGES - 1);
        assert_ne!(page, PageRef::NONE);
        assert_eq!(page.extent(), 7);
        assert_eq!(page.forward(0).index(), MAX_EXTENT_PAGES - 1);
        assert_eq!(page.back(5).index(), MAX_EXTENT_PAGES - 6);
    }
}
