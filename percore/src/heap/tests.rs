//! Host tests of the heap, over "physical memory" that is a large aligned host allocation.
//!
//! Random workloads are driven by a seeded generator, so a failure reproduces. Every
//! block is checked against an oracle kept here: inside the heap's extents, aligned, not
//! overlapping any live block, its contents intact until it is freed, and the heap's
//! byte count equal to the sum of the granted sizes.

use std::alloc::{alloc, dealloc as release, Layout};
use std::collections::BTreeMap;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::mpsc;
use std::vec::Vec;

use super::class::{class_for, CLASSES};
use super::*;

const MIB: usize = 1 << 20;

/// Host memory standing in for a core's share of RAM, aligned to 2 MiB.
struct Region {
    base: *mut u8,
    layout: Layout,
}

impl Region {
    fn new(bytes: usize) -> Region {
        let layout = Layout::from_size_align(bytes, 2 * MIB).unwrap();
        // SAFETY: the layout is not zero-sized.
        let base = unsafe { alloc(layout) };
        assert!(!base.is_null(), "host allocation of {bytes} bytes failed");
        Region { base, layout }
    }

    /// Returns the region's address range, exposing its provenance so that the heap may
    /// turn addresses in it back into pointers.
    fn range(&self) -> Range<usize> {
        let start = self.base.expose_provenance();
        start..start + self.layout.size()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; every test drops its heap first.
        unsafe { release(self.base, self.layout) }
    }
}

/// Returns a heap over `ranges`.
fn heap_over(ranges: &[Range<usize>]) -> Heap {
    // SAFETY: each range lies in a live `Region` that nothing else uses, and each test
    // declares its heap after its regions, so the heap is dropped first.
    unsafe { Heap::new(ranges) }
}

/// The shared generator, seeded so that a failure replays, with the `usize` bounds these
/// tests pick sizes and indices with.
struct Rng(crate::random::XorShift64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(crate::random::XorShift64::new(seed))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}

/// Returns a layout from a mix: mostly small, some slab-sized, some large, alignments
/// from 1 to 64 KiB.
fn random_layout(rng: &mut Rng) -> Layout {
    let size = match rng.below(1000) {
        0..700 => rng.below(257),
        700..950 => rng.below(LARGEST_SMALL_SIZE + 1),
        950..995 => rng.below(64 * 1024 + 1),
        _ => rng.below(512 * 1024 + 1),
    };
    let align = match rng.below(100) {
        0..60 => 1 << rng.below(4),
        60..97 => 1 << rng.below(13),
        _ => 1 << (13 + rng.below(4)),
    };
    Layout::from_size_align(size, align).unwrap()
}

/// Returns the bytes the heap should grant for `layout`, computed independently of it.
fn granted(layout: Layout) -> usize {
    match class_for(layout) {
        Some(class) => CLASSES[class].size,
        None => layout.size().max(1).next_multiple_of(PAGE),
    }
}

fn fill(addr: usize, len: usize, pattern: u8) {
    let ptr: *mut u8 = std::ptr::with_exposed_provenance_mut(addr);
    // SAFETY: the block was just allocated for at least `len` bytes and is ours.
    unsafe { ptr.write_bytes(pattern, len) }
}

fn intact(addr: usize, len: usize, pattern: u8) -> bool {
    let ptr: *const u8 = std::ptr::with_exposed_provenance(addr);
    // SAFETY: a live block of at least `len` bytes, filled by `fill`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    bytes.iter().all(|&b| b == pattern)
}

fn pointer(addr: usize) -> NonNull<u8> {
    NonNull::new(std::ptr::with_exposed_provenance_mut(addr)).unwrap()
}

#[derive(Clone, Copy, Debug)]
struct Block {
    layout: Layout,
    pattern: u8,
}

/// The oracle: every live block of one heap, by address.
struct Checker {
    ranges: Vec<Range<usize>>,
    live: BTreeMap<usize, Block>,
    in_use: usize,
    failures: u64,
    next_pattern: u8,
    /// Which of `ranges` served a block at least once.
    served: Vec<bool>,
}

impl Checker {
    fn new(ranges: &[Range<usize>]) -> Checker {
        Checker {
            ranges: ranges.to_vec(),
            live: BTreeMap::new(),
            in_use: 0,
            failures: 0,
            next_pattern: 1,
            served: vec![false; ranges.len()],
        }
    }

    /// Allocates `layout` and checks the block; returns false when the heap is full.
    fn alloc(&mut self, heap: &mut Heap, layout: Layout) -> bool {
        let ptr = match heap.alloc(layout) {
            Ok(ptr) => ptr,
            Err(error) => {
                assert_eq!(error.size(), layout.size());
                assert_eq!(error.align(), layout.align());
                self.failures += 1;
                assert_eq!(heap.stats().failures, self.failures);
                return false;
            }
        };
        let addr = ptr.as_ptr().addr();
        let len = granted(layout);
        assert_eq!(
            addr % layout.align(),
            0,
            "{addr:#x} misaligned for {layout:?}"
        );
        let Some(range) = self
            .ranges
            .iter()
            .position(|r| r.start <= addr && addr + len <= r.end)
        else {
            panic!("{addr:#x}+{len} outside the heap's memory");
        };
        self.served[range] = true;
        assert!(heap.owns(ptr.as_ptr()));
        if let Some((&before, block)) = self.live.range(..addr).next_back() {
            assert!(
                before + granted(block.layout) <= addr,
                "{addr:#x} ({layout:?}) overlaps {before:#x} ({:?})",
                block.layout
            );
        }
        if let Some((&after, block)) = self.live.range(addr..).next() {
            assert!(
                addr + len <= after,
                "{addr:#x} ({layout:?}) overlaps {after:#x} ({:?})",
                block.layout
            );
        }
        let pattern = self.next_pattern;
        self.next_pattern = self.next_pattern.wrapping_add(1).max(1);
        fill(addr, layout.size(), pattern);
        self.live.insert(addr, Block { layout, pattern });
        self.in_use += len;
        assert_eq!(heap.stats().bytes_in_use, self.in_use);
        true
    }

    /// Checks and frees the block at `addr`.
    fn free(&mut self, heap: &mut Heap, addr: usize) {
        let block = self.live.remove(&addr).unwrap();
        assert!(
            intact(addr, block.layout.size(), block.pattern),
            "block {addr:#x} ({:?}) was overwritten",
            block.layout
        );
        // SAFETY: allocated by `alloc` above with this layout, freed once (it just left
        // `live`), and not touched again.
        unsafe { heap.dealloc(pointer(addr), block.layout) };
        self.in_use -= granted(block.layout);
        assert_eq!(heap.stats().bytes_in_use, self.in_use);
    }

    fn free_random(&mut self, heap: &mut Heap, rng: &mut Rng) {
        let skip = rng.below(self.live.len());
        // Pick near a random address rather than walk to the n-th entry: O(log n).
        let probe = self.live.keys().next().unwrap()
            + skip * (self.live.keys().next_back().unwrap() - self.live.keys().next().unwrap())
                / self.live.len().max(1);
        let addr = *self
            .live
            .range(probe..)
            .next()
            .or_else(|| self.live.iter().next())
            .unwrap()
            .0;
        self.free(heap, addr);
    }

    fn free_all(&mut self, heap: &mut Heap) {
        while let Some((&addr, _)) = self.live.iter().next() {
            self.free(heap, addr);
        }
        assert_eq!(heap.stats().bytes_in_use, 0);
        heap.check();
    }

    /// Runs `steps` random allocations and frees with about `target` blocks live.
    fn churn(&mut self, heap: &mut Heap, rng: &mut Rng, steps: usize, target: usize) {
        for step in 0..steps {
            if step % 1000 == 0 {
                heap.check();
            }
            if self.live.is_empty() || rng.below(2 * target) >= self.live.len() {
                let layout = random_layout(rng);
                self.alloc(heap, layout);
            } else {
                self.free_random(heap, rng);
            }
        }
    }
}

/// Returns how many one-page blocks the heap gives before it fails, and frees them.
fn count_pages(heap: &mut Heap) -> usize {
    let page = Layout::from_size_align(PAGE, PAGE).unwrap();
    let mut blocks = Vec::new();
    while let Ok(ptr) = heap.alloc(page) {
        blocks.push(ptr);
    }
    for &ptr in &blocks {
        // SAFETY: allocated just above with `page`, freed once.
        unsafe { heap.dealloc(ptr, page) };
    }
    blocks.len()
}

#[test]
fn random_workload_keeps_blocks_apart_aligned_and_intact() {
    let region = Region::new(32 * MIB);
    let ranges = [region.range()];
    let mut heap = heap_over(&ranges);
    let mut checker = Checker::new(&ranges);
    let mut rng = Rng::new(1);
    checker.churn(&mut heap, &mut rng, 150_000, 1500);
    for (&addr, block) in &checker.live {
        assert!(intact(addr, block.layout.size(), block.pattern));
    }
    let stats = heap.stats();
    assert!(stats.allocations > 70_000, "{stats:?}");
    checker.free_all(&mut heap);
    let stats = heap.stats();
    assert_eq!(stats.allocations, stats.frees);
    assert_eq!(stats.bytes_in_use, 0);
    assert_eq!(stats.failures, checker.failures);
}

#[test]
fn freeing_everything_makes_the_whole_region_allocatable_again() {
    let region = Region::new(8 * MIB);
    let ranges = [region.range()];
    let mut heap = heap_over(&ranges);
    let capacity = heap.stats().bytes_total / PAGE;
    // 8 MiB less one page of page map (2048 pages of 20 bytes fit in 10 pages).
    assert_eq!(capacity, 2048 - 10);
    assert_eq!(count_pages(&mut heap), capacity);

    let mut checker = Checker::new(&ranges);
    let mut rng = Rng::new(2);
    checker.churn(&mut heap, &mut rng, 30_000, 400);
    checker.free_all(&mut heap);
    assert_eq!(
        count_pages(&mut heap),
        capacity,
        "pages lost after a workload"
    );

    // Fill the heap with the smallest blocks: every page becomes a slab.
    let tiny = Layout::from_size_align(16, 16).unwrap();
    let mut blocks = Vec::new();
    while let Ok(ptr) = heap.alloc(tiny) {
        blocks.push(ptr);
    }
    assert_eq!(blocks.len(), capacity * PAGE / 16);
    for ptr in blocks {
        // SAFETY: allocated above with `tiny`, freed once.
        unsafe { heap.dealloc(ptr, tiny) };
    }
    assert_eq!(heap.stats().bytes_in_use, 0);

    // One block of every page: only possible when all free runs merged back into one
    // (the spare slab left by the loop above is given back on the way).
    let everything = Layout::from_size_align(capacity * PAGE, PAGE).unwrap();
    let ptr = heap.alloc(everything).expect("the region did not coalesce");
    assert_eq!(heap.stats().bytes_in_use, capacity * PAGE);
    assert!(heap.alloc(tiny).is_err());
    // SAFETY: allocated just above, freed once.
    unsafe { heap.dealloc(ptr, everything) };
    assert_eq!(heap.free_pages(), capacity);
    assert_eq!(heap.page_map().free_runs(), (1, capacity));
}

#[test]
fn out_of_memory_is_an_error_with_the_size() {
    let region = Region::new(MIB);
    let mut heap = heap_over(&[region.range()]);
    let capacity = heap.stats().bytes_total;
    let huge = Layout::from_size_align(2 * MIB, 8).unwrap();
    assert_eq!(heap.alloc(huge).unwrap_err().size(), 2 * MIB);
    let over_aligned = Layout::from_size_align(64, 1 << 40).unwrap();
    let error = heap.alloc(over_aligned).unwrap_err();
    assert_eq!((error.size(), error.align()), (64, 1 << 40));
    let largest = Layout::from_size_align(isize::MAX as usize - 4096, 1).unwrap();
    assert_eq!(heap.alloc(largest).unwrap_err().size(), largest.size());

    let page = Layout::from_size_align(PAGE, 8).unwrap();
    let mut pages = Vec::new();
    while let Ok(ptr) = heap.alloc(page) {
        pages.push(ptr);
    }
    assert_eq!(pages.len() * PAGE, capacity);
    let small = Layout::from_size_align(24, 8).unwrap();
    let error = heap.alloc(small).unwrap_err();
    assert_eq!(error.size(), 24);
    assert!(error.to_string().contains("24 bytes"));
    assert_eq!(heap.stats().failures, 5);

    // SAFETY: allocated above with `page`, freed once.
    unsafe { heap.dealloc(pages.pop().unwrap(), page) };
    let ptr = heap.alloc(small).expect("a freed page serves a slab");
    // SAFETY: allocated just above, freed once.
    unsafe { heap.dealloc(ptr, small) };
    for ptr in pages {
        // SAFETY: allocated above with `page`, freed once.
        unsafe { heap.dealloc(ptr, page) };
    }
    assert_eq!(heap.stats().bytes_in_use, 0);
}

#[test]
fn a_heap_without_usable_memory_fails_every_allocation() {
    let region = Region::new(2 * MIB);
    let start = region.range().start;
    // One page, all of which its page map would need; and half a page.
    let mut heap = heap_over(&[
        start..start + PAGE,
        start + 2 * PAGE..start + 2 * PAGE + 100,
    ]);
    assert_eq!(heap.stats().bytes_total, 0);
    assert!(heap.alloc(Layout::new::<u8>()).is_err());
    assert!(!heap.owns(std::ptr::with_exposed_provenance(start)));
}

#[test]
fn several_extents_with_holes_are_one_heap() {
    let region = Region::new(16 * MIB);
    let base = region.range().start;
    // Out of order and unaligned; the holes between them are not the heap's.
    let ranges = [
        base + 9 * MIB + 100..base + 16 * MIB,
        base..base + 3 * MIB,
        base + 4 * MIB..base + 4 * MIB + 3 * PAGE,
        base + 5 * MIB..base + 8 * MIB - 7,
    ];
    let mut heap = heap_over(&ranges);
    for (addr, owned) in [
        (base, true),
        (base + 3 * MIB - 1, true),
        (base + 3 * MIB, false),
        (base + 4 * MIB + 3 * PAGE, false),
        (base + 8 * MIB - 1, false),
        (base + 9 * MIB + 100, false),
        (base + 9 * MIB + PAGE, true),
        (base + 16 * MIB, false),
    ] {
        let ptr: *const u8 = std::ptr::with_exposed_provenance(addr);
        assert_eq!(heap.owns(ptr), owned, "{:#x}", addr - base);
    }
    assert_eq!(heap.extents().count(), 4);
    let capacity = heap.stats().bytes_total / PAGE;
    let mut checker = Checker::new(&ranges);
    let mut rng = Rng::new(3);
    checker.churn(&mut heap, &mut rng, 40_000, 3000);
    assert_eq!(checker.served, [true; 4], "every extent served blocks");
    checker.free_all(&mut heap);
    assert_eq!(count_pages(&mut heap), capacity);
    assert_eq!(heap.page_map().free_runs().0, 4, "one run per extent");
}

#[test]
fn large_alignments_are_served_with_page_runs() {
    let region = Region::new(16 * MIB);
    let ranges = [region.range()];
    let mut heap = heap_over(&ranges);
    let mut checker = Checker::new(&ranges);
    for (size, align) in [
        (1, 4096),
        (100, 8192),
        (5000, 1 << 16),
        (3 * PAGE, 1 << 20),
        (0, 1 << 21),
        (2048, 2048),
        (2049, 1),
    ] {
        let layout = Layout::from_size_align(size, align).unwrap();
        assert!(checker.alloc(&mut heap, layout), "{layout:?}");
    }
    let used = heap.stats().bytes_in_use;
    assert_eq!(used, PAGE + PAGE + 2 * PAGE + 3 * PAGE + PAGE + 2048 + PAGE);
    // Everything not in a block went back: the slack of aligned runs is free again.
    assert_eq!(
        heap.free_pages() * PAGE + used - 2048 + PAGE,
        heap.stats().bytes_total,
        "the 2048-byte block holds a one-page slab"
    );
    checker.free_all(&mut heap);
    assert_eq!(
        heap.page_map().free_runs().0,
        2,
        "the spare slab splits the rest"
    );
    heap.release_spares();
    assert_eq!(heap.page_map().free_runs().0, 1);
}

#[test]
fn an_empty_slab_is_kept_once_and_then_given_back() {
    let region = Region::new(4 * MIB);
    let mut heap = heap_over(&[region.range()]);
    let all = heap.free_pages();
    let layout = Layout::from_size_align(1024, 8).unwrap();
    // Four 1 KiB blocks per one-page slab.
    let blocks: Vec<_> = (0..8).map(|_| heap.alloc(layout).unwrap()).collect();
    assert_eq!(heap.free_pages(), all - 2);
    for &ptr in &blocks {
        // SAFETY: allocated above with `layout`, freed once.
        unsafe { heap.dealloc(ptr, layout) };
    }
    assert_eq!(
        heap.free_pages(),
        all - 1,
        "one empty slab stays as the spare"
    );
    for _ in 0..100 {
        let ptr = heap.alloc(layout).unwrap();
        assert_eq!(
            heap.free_pages(),
            all - 1,
            "the spare serves the class again"
        );
        // SAFETY: allocated just above, freed once.
        unsafe { heap.dealloc(ptr, layout) };
    }
    heap.release_spares();
    assert_eq!(heap.free_pages(), all);
}

#[test]
fn slab_blocks_are_reused_last_freed_first() {
    let region = Region::new(MIB);
    let mut heap = heap_over(&[region.range()]);
    let layout = Layout::from_size_align(40, 8).unwrap();
    let a = heap.alloc(layout).unwrap();
    let b = heap.alloc(layout).unwrap();
    assert_eq!(b.as_ptr().addr() - a.as_ptr().addr(), 48);
    // SAFETY: `a` is allocated with `layout` and freed once.
    unsafe { heap.dealloc(a, layout) };
    assert_eq!(heap.alloc(layout).unwrap(), a);
}

#[test]
fn a_full_slab_serves_again_once_a_block_is_freed() {
    let region = Region::new(MIB);
    let mut heap = heap_over(&[region.range()]);
    let layout = Layout::from_size_align(1000, 8).unwrap();
    // Four 1 KiB blocks fill a one-page slab.
    let blocks: Vec<_> = (0..4).map(|_| heap.alloc(layout).unwrap()).collect();
    let free_pages = heap.free_pages();
    heap.check();
    // SAFETY: allocated above with `layout`, freed once.
    unsafe { heap.dealloc(blocks[2], layout) };
    heap.check();
    assert_eq!(heap.alloc(layout).unwrap(), blocks[2]);
    assert_eq!(
        heap.free_pages(),
        free_pages,
        "no new slab for a block the full one has"
    );
    let fifth = heap.alloc(layout).unwrap();
    assert_eq!(heap.free_pages(), free_pages - 1);
    heap.check();
    for ptr in blocks.into_iter().chain([fifth]) {
        // SAFETY: allocated above with `layout`, each freed once.
        unsafe { heap.dealloc(ptr, layout) };
        heap.check();
    }
}

#[test]
#[should_panic(expected = "but it is a 64-byte block")]
fn freeing_with_another_layout_panics() {
    let region = Region::new(MIB);
    let mut heap = heap_over(&[region.range()]);
    let ptr = heap.alloc(Layout::from_size_align(64, 8).unwrap()).unwrap();
    // SAFETY: deliberately wrong layout; the heap must refuse before touching anything.
    unsafe { heap.dealloc(ptr, Layout::from_size_align(16, 8).unwrap()) };
}

#[test]
#[should_panic(expected = "not an allocated block")]
fn freeing_a_large_block_twice_panics() {
    let region = Region::new(MIB);
    let mut heap = heap_over(&[region.range()]);
    let layout = Layout::from_size_align(3 * PAGE, 8).unwrap();
    let ptr = heap.alloc(layout).unwrap();
    // SAFETY: the first free is legitimate; the second is the misuse under test, which
    // the page map catches (the run is free) before anything is written.
    unsafe {
        heap.dealloc(ptr, layout);
        heap.dealloc(ptr, layout);
    }
}

#[test]
#[should_panic(expected = "double free")]
fn freeing_the_last_small_block_twice_panics() {
    let region = Region::new(MIB);
    let mut heap = heap_over(&[region.range()]);
    let layout = Layout::from_size_align(32, 8).unwrap();
    let ptr = heap.alloc(layout).unwrap();
    // SAFETY: as above; the empty slab's count catches the second free.
    unsafe {
        heap.dealloc(ptr, layout);
        heap.dealloc(ptr, layout);
    }
}

#[test]
#[should_panic(expected = "not in this heap")]
fn freeing_a_foreign_pointer_panics() {
    let one = Region::new(MIB);
    let two = Region::new(MIB);
    let mut first = heap_over(&[one.range()]);
    let mut second = heap_over(&[two.range()]);
    let layout = Layout::new::<u64>();
    let ptr = second.alloc(layout).unwrap();
    // SAFETY: the misuse under test; caught before anything is written.
    unsafe { first.dealloc(ptr, layout) };
}

#[test]
fn remote_frees_travel_in_full_batches_and_a_flush() {
    let one = Region::new(4 * MIB);
    let two = Region::new(4 * MIB);
    let mut owners = OwnerMap::new();
    owners.insert(0, one.range()).unwrap();
    owners.insert(1, two.range()).unwrap();
    let mut home = heap_over(&[one.range()]);
    let mut away = heap_over(&[two.range()]);
    let mut outbox = RemoteFrees::<2>::new();

    let layouts = [
        Layout::from_size_align(24, 8).unwrap(),
        Layout::from_size_align(3000, 8).unwrap(),
        Layout::from_size_align(700, 256).unwrap(),
    ];
    let blocks: Vec<_> = (0..100)
        .map(|i| {
            let layout = layouts[i % 3];
            (home.alloc(layout).unwrap(), layout)
        })
        .collect();
    let baseline = home.stats();
    assert!(baseline.bytes_in_use > 0);

    let mut batches = Vec::new();
    for (i, &(ptr, layout)) in blocks.iter().enumerate() {
        // SAFETY: allocated by `home` with `layout`, freed once, not used again.
        let full = unsafe { away.dealloc_or_forward(ptr, layout, &owners, &mut outbox) };
        if let Some(batch) = full {
            assert_eq!(i % REMOTE_BATCH_CAPACITY, REMOTE_BATCH_CAPACITY - 1);
            assert!(batch.is_full());
            batches.push(batch);
        }
    }
    assert_eq!(batches.len(), 3);
    assert_eq!(outbox.queued(), 4);
    assert_eq!(home.stats(), baseline, "nothing reached the owner yet");
    assert_eq!(away.stats().remote_frees_sent, 100);
    assert_eq!(away.stats().frees, 0);
    let last = outbox.flush().unwrap();
    assert_eq!((last.owner(), last.len()), (0, 4));
    assert!(outbox.flush().is_none());
    assert_eq!(outbox.queued(), 0);
    batches.push(last);

    for batch in &mut batches {
        assert_eq!(batch.owner(), 0);
        let expected = batch.len();
        assert_eq!(home.receive_remote(batch), expected);
        assert!(batch.is_empty());
        assert_eq!(home.receive_remote(batch), 0, "a batch is received once");
    }
    home.check();
    let stats = home.stats();
    assert_eq!(stats.bytes_in_use, 0);
    assert_eq!(stats.remote_frees_received, 100);
    assert_eq!(stats.frees, 100);

    // A block of its own is freed at once.
    let ptr = away.alloc(layouts[0]).unwrap();
    // SAFETY: allocated just above, freed once.
    let batch = unsafe { away.dealloc_or_forward(ptr, layouts[0], &owners, &mut outbox) };
    assert!(batch.is_none());
    assert_eq!(outbox.queued(), 0);
    assert_eq!(away.stats().bytes_in_use, 0);
}

#[test]
#[should_panic(expected = "not in this heap")]
fn a_batch_sent_to_the_wrong_core_panics() {
    let one = Region::new(MIB);
    let two = Region::new(MIB);
    let mut owners = OwnerMap::new();
    owners.insert(0, one.range()).unwrap();
    owners.insert(1, two.range()).unwrap();
    let mut first = heap_over(&[one.range()]);
    let mut second = heap_over(&[two.range()]);
    let mut outbox = RemoteFrees::<2>::new();
    let layout = Layout::new::<[u8; 100]>();
    let ptr = first.alloc(layout).unwrap();
    // SAFETY: allocated by `first`, freed once.
    unsafe { second.dealloc_or_forward(ptr, layout, &owners, &mut outbox) };
    let mut batch = outbox.flush().unwrap();
    second.receive_remote(&mut batch);
}

/// What the cores of the threaded test tell each other.
enum Message {
    /// A block changes hands: the receiver checks it and frees it.
    Handover { addr: usize, block: Block },
    /// Blocks freed elsewhere, coming home.
    Batch(Box<RemoteFreeBatch>),
    /// The sender hands over no more blocks.
    DoneHandingOver,
    /// The sender has flushed its outbox; no more batches come from it.
    DoneFlushing,
}

const CORES: usize = 4;

/// One "core" of the threaded test: its heap, its outbox and its links to the others.
struct Core<'a> {
    core: usize,
    heap: Heap,
    outbox: RemoteFrees<CORES>,
    owners: &'a OwnerMap,
    peers: Vec<mpsc::Sender<Message>>,
    done_handing: usize,
    done_flushing: usize,
}

impl Core<'_> {
    fn send_home(&self, batch: RemoteFreeBatch) {
        assert_ne!(batch.owner(), self.core);
        self.peers[batch.owner()]
            .send(Message::Batch(Box::new(batch)))
            .unwrap();
    }

    /// Checks and frees a block, whatever core it belongs to.
    fn free(&mut self, addr: usize, block: Block) {
        assert!(
            intact(addr, block.layout.size(), block.pattern),
            "{addr:#x} overwritten"
        );
        // SAFETY: the block was allocated with `block.layout` by its owner and handed to
        // this thread alone, which frees it once and forgets it.
        let full = unsafe {
            self.heap
                .dealloc_or_forward(pointer(addr), block.layout, self.owners, &mut self.outbox)
        };
        if let Some(batch) = full {
            self.send_home(batch);
        }
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Handover { addr, block } => self.free(addr, block),
            Message::Batch(mut batch) => {
                assert_eq!(batch.owner(), self.core);
                self.heap.receive_remote(&mut batch);
            }
            Message::DoneHandingOver => self.done_handing += 1,
            Message::DoneFlushing => self.done_flushing += 1,
        }
    }

    fn tell_others(&self, message: fn() -> Message) {
        for (to, peer) in self.peers.iter().enumerate() {
            if to != self.core {
                peer.send(message()).unwrap();
            }
        }
    }
}

/// Returns the next message; a peer that panicked sends no more, so this fails instead
/// of waiting forever.
fn receive(inbox: &mpsc::Receiver<Message>) -> Message {
    inbox
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("no message for 20 s: a peer core failed")
}

/// Runs one core of the threaded test: allocates, hands blocks to other cores, frees
/// the blocks it is handed (most of them someone else's), and takes its own back.
fn run_core(
    core: usize,
    range: Range<usize>,
    owners: &OwnerMap,
    inbox: mpsc::Receiver<Message>,
    peers: Vec<mpsc::Sender<Message>>,
) -> HeapStats {
    let heap = heap_over(std::slice::from_ref(&range));
    let baseline = heap.stats().bytes_in_use;
    let mut me = Core {
        core,
        heap,
        outbox: RemoteFrees::new(),
        owners,
        peers,
        done_handing: 0,
        done_flushing: 0,
    };
    let mut rng = Rng::new(100 + core as u64);
    let mut own: Vec<(usize, Block)> = Vec::new();

    for round in 0..20_000 {
        let size = match rng.below(10) {
            0 => rng.below(20_000),
            _ => rng.below(600),
        };
        let layout = Layout::from_size_align(size, 1 << rng.below(7)).unwrap();
        let ptr = me
            .heap
            .alloc(layout)
            .expect("16 MiB is plenty for this test");
        let block = Block {
            layout,
            pattern: (round % 251) as u8 + 1,
        };
        let addr = ptr.as_ptr().addr();
        fill(addr, layout.size(), block.pattern);
        let to = rng.below(CORES);
        if to == core {
            own.push((addr, block));
        } else {
            me.peers[to]
                .send(Message::Handover { addr, block })
                .unwrap();
        }
        if own.len() > 50 {
            let (addr, block) = own.swap_remove(rng.below(own.len()));
            me.free(addr, block);
        }
        while let Ok(message) = inbox.try_recv() {
            me.handle(message);
        }
    }
    me.tell_others(|| Message::DoneHandingOver);
    while me.done_handing < CORES - 1 {
        me.handle(receive(&inbox));
    }
    // No more handovers can come: free what is left and send everything home.
    for (addr, block) in own.drain(..) {
        me.free(addr, block);
    }
    while let Some(batch) = me.outbox.flush() {
        me.send_home(batch);
    }
    me.tell_others(|| Message::DoneFlushing);
    while me.done_flushing < CORES - 1 {
        me.handle(receive(&inbox));
    }
    assert_eq!(
        me.outbox.queued(),
        0,
        "core {core}: frees left in the outbox"
    );
    let stats = me.heap.stats();
    me.heap.check();
    assert_eq!(stats.bytes_in_use, baseline, "core {core}: {stats:?}");
    assert_eq!(stats.allocations, stats.frees, "core {core}");
    assert_eq!(
        count_pages(&mut me.heap),
        stats.bytes_total / PAGE,
        "core {core}: pages lost"
    );
    stats
}

#[test]
fn cores_free_each_others_blocks_through_batches() {
    let regions: Vec<Region> = (0..CORES).map(|_| Region::new(16 * MIB)).collect();
    let mut owners = OwnerMap::new();
    for (core, region) in regions.iter().enumerate() {
        owners.insert(core, region.range()).unwrap();
    }
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..CORES).map(|_| mpsc::channel()).unzip();
    let stats: Vec<HeapStats> = std::thread::scope(|scope| {
        let handles: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(core, inbox)| {
                let range = regions[core].range();
                let peers = senders.clone();
                let owners = &owners;
                scope.spawn(move || run_core(core, range, owners, inbox, peers))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sent: u64 = stats.iter().map(|s| s.remote_frees_sent).sum();
    let received: u64 = stats.iter().map(|s| s.remote_frees_received).sum();
    assert_eq!(sent, received);
    assert!(sent > 40_000, "only {sent} remote frees");
    for s in &stats {
        assert!(
            s.remote_frees_received > 0 && s.remote_frees_sent > 0,
            "{s:?}"
        );
    }
}
