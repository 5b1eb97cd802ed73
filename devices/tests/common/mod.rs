//! What the virtio device tests share: a seeded generator and page-aligned host memory
//! that plays the role of DMA memory.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::alloc::{alloc_zeroed, dealloc, Layout};

use devices::virtio::dma::{DmaRegion, PAGE_SIZE};

/// xorshift64*: seeded, so a failure replays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Page-aligned, zeroed host memory that hands out DMA views of itself.
pub struct HostMemory {
    base: *mut u8,
    layout: Layout,
}

impl HostMemory {
    pub fn new(len: usize) -> HostMemory {
        let layout = Layout::from_size_align(len, PAGE_SIZE).expect("layout");
        // SAFETY: `len` is never zero here.
        let base = unsafe { alloc_zeroed(layout) };
        assert!(!base.is_null());
        HostMemory { base, layout }
    }

    /// Returns a view; every test drops its views (and joins the device) before the memory.
    pub fn region(&self) -> DmaRegion {
        // SAFETY: the allocation is live and page-aligned until `drop`, which comes after
        // the scoped device thread and every view are gone; all views access it atomically.
        unsafe { DmaRegion::from_raw(self.base, self.layout.size()) }.expect("region")
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.base, self.layout) }
    }
}
