//! A device's memory-mapped register window: volatile reads and writes at checked offsets.
//! The only `unsafe` of the virtio-mmio transport.

/// A window of device registers at a fixed physical (identity-mapped) address.
#[derive(Debug)]
pub struct MmioWindow {
    base: usize,
    length: usize,
}

impl MmioWindow {
    /// Returns the window of `length` bytes at `base`.
    ///
    /// # Safety
    /// `[base, base + length)` must be a device's register window, mapped uncached at
    /// that address for as long as the window lives, and nothing else may access it
    /// (the window is the device's one handle: it is not `Clone`).
    pub unsafe fn new(base: usize, length: usize) -> MmioWindow {
        MmioWindow { base, length }
    }

    /// Returns the window's physical address.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Returns the window's length in bytes.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Returns true for a window of no bytes.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Returns the address of `size` bytes at `offset`, which must lie inside the
    /// window and be aligned to `size` (device registers are naturally aligned).
    fn at(&self, offset: usize, size: usize) -> usize {
        assert!(
            offset
                .checked_add(size)
                .is_some_and(|end| end <= self.length)
                && offset.is_multiple_of(size),
            "register access at {offset:#x}+{size} outside a window of {:#x} bytes",
            self.length
        );
        self.base + offset
    }

    /// Returns the 32-bit register at `offset`.
    pub fn read32(&self, offset: usize) -> u32 {
        let address = self.at(offset, 4);
        // SAFETY: inside the device's mapped window, aligned (`new`'s contract, `at`).
        unsafe { core::ptr::read_volatile(address as *const u32) }
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32(&mut self, offset: usize, value: u32) {
        let address = self.at(offset, 4);
        // SAFETY: as in `read32`; `&mut self` since the write changes the device.
        unsafe { core::ptr::write_volatile(address as *mut u32, value) }
    }

    /// Returns the byte at `offset`.
    pub fn read8(&self, offset: usize) -> u8 {
        let address = self.at(offset, 1);
        // SAFETY: as in `read32`.
        unsafe { core::ptr::read_volatile(address as *const u8) }
    }
}
