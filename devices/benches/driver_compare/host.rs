//! Host memory and CPUs: page-aligned zeroed memory the drivers and the device share
//! (identity-mapped), and pinning threads to CPUs.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use devices::virtio::dma::{DmaRegion, PAGE_SIZE};

/// Page-aligned, zeroed host memory, freed on drop.
pub(crate) struct HostMemory {
    pub(crate) base: NonNull<u8>,
    layout: Layout,
}

impl HostMemory {
    pub(crate) fn new(len: usize) -> HostMemory {
        let layout = Layout::from_size_align(len, PAGE_SIZE).expect("layout");
        // SAFETY: `len` is never zero here.
        let base = unsafe { alloc_zeroed(layout) };
        HostMemory {
            base: NonNull::new(base).expect("host allocation failed"),
            layout,
        }
    }

    /// Returns the address a device is given (identity mapping: the pointer value).
    pub(crate) fn address(&self) -> u64 {
        self.base.as_ptr().expose_provenance() as u64
    }

    /// Returns a DMA view for this crate's driver.
    pub(crate) fn region(&self) -> DmaRegion {
        // SAFETY: the allocation is live and page-aligned until `drop`, which comes after the
        // device thread is joined and the driver is gone; every view accesses it atomically.
        unsafe { DmaRegion::from_raw(self.base.as_ptr(), self.layout.size()) }.expect("region")
    }

    /// Returns the memory as bytes, for virtio-drivers, which takes buffers as slices.
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the allocation is live, initialised (zeroed) and borrowed exclusively.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.layout.size()) }
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}

#[cfg(target_os = "linux")]
pub(crate) mod affinity {
    /// Words in a `cpu_set_t` (1024 CPUs).
    const WORDS: usize = 16;

    extern "C" {
        fn sched_getaffinity(pid: i32, size: usize, mask: *mut u64) -> i32;
        fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }

    /// Returns the CPUs this process may run on.
    pub fn allowed() -> Vec<usize> {
        let mut mask = [0u64; WORDS];
        // SAFETY: `mask` is a writable `cpu_set_t`-sized buffer; pid 0 is this thread.
        let result = unsafe { sched_getaffinity(0, size_of_val(&mask), mask.as_mut_ptr()) };
        if result != 0 {
            return Vec::new();
        }
        (0..WORDS * 64)
            .filter(|cpu| mask[cpu / 64] & (1 << (cpu % 64)) != 0)
            .collect()
    }

    /// Pins the calling thread to `cpu`; returns false if that failed.
    pub fn pin(cpu: usize) -> bool {
        let mut mask = [0u64; WORDS];
        mask[cpu / 64] |= 1 << (cpu % 64);
        // SAFETY: `mask` is a readable `cpu_set_t`-sized buffer; pid 0 is this thread.
        unsafe { sched_setaffinity(0, size_of_val(&mask), mask.as_ptr()) == 0 }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) mod affinity {
    pub fn allowed() -> Vec<usize> {
        Vec::new()
    }

    pub fn pin(_cpu: usize) -> bool {
        false
    }
}
