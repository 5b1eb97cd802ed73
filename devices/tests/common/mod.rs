//! What the virtio device tests share: a seeded generator and page-aligned host memory
//! that plays the role of DMA memory.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::alloc::{alloc_zeroed, dealloc, Layout};

use devices::virtio::dma::{DmaRegion, PAGE_SIZE};

/// The shared generator: seeded, so a failure replays.
#[allow(unused_imports)] // Each test binary uses its own subset.
pub use percore::random::XorShift64 as Rng;

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
