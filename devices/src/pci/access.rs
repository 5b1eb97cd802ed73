//! The two ways to reach configuration space: memory-mapped ECAM (PCIe, from the ACPI
//! MCFG table; q35) and the legacy ports 0xCF8/0xCFC (pc).

use super::{Bdf, ConfigSpace};

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

/// Configuration space through I/O ports 0xCF8/0xCFC (buses 0..=255, offsets < 256).
#[derive(Debug)]
pub struct PortIo {
    _private: (),
}

impl PortIo {
    /// Returns the port accessor.
    ///
    /// # Safety
    /// Ring 0 on a PC-compatible machine, and nothing else may use ports 0xCF8-0xCFF
    /// while this value is alive (the address/data pair is not atomic).
    pub unsafe fn new() -> PortIo {
        PortIo { _private: () }
    }

    fn select(bdf: Bdf, offset: u16) {
        let address = 1 << 31
            | u32::from(bdf.bus) << 16
            | u32::from(bdf.device & 31) << 11
            | u32::from(bdf.function & 7) << 8
            | u32::from(offset & 0xFC);
        // SAFETY: the constructor's contract gives us these ports.
        unsafe { x86::io::outl(CONFIG_ADDRESS, address) };
    }
}

impl ConfigSpace for PortIo {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        if offset >= 256 {
            return u32::MAX;
        }
        Self::select(bdf, offset);
        // SAFETY: as in `select`.
        unsafe { x86::io::inl(CONFIG_DATA) }
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if offset >= 256 {
            return;
        }
        Self::select(bdf, offset);
        // SAFETY: as in `select`.
        unsafe { x86::io::outl(CONFIG_DATA, value) };
    }
}

/// Memory-mapped configuration space (ECAM): 4 KiB per function.
#[derive(Debug)]
pub struct Ecam {
    base: usize,
    first_bus: u8,
    last_bus: u8,
}

impl Ecam {
    /// Returns the ECAM accessor for buses `first_bus..=last_bus` whose window starts
    /// (for bus 0) at `base`.
    ///
    /// # Safety
    /// The window must be mapped uncached at its physical address and really be the
    /// ECAM region the firmware described (ACPI MCFG).
    pub unsafe fn new(base: usize, first_bus: u8, last_bus: u8) -> Ecam {
        Ecam {
            base,
            first_bus,
            last_bus,
        }
    }

    fn address(&self, bdf: Bdf, offset: u16) -> Option<*mut u32> {
        if bdf.bus < self.first_bus || bdf.bus > self.last_bus || offset >= 4096 {
            return None;
        }
        let offset = (usize::from(bdf.bus) << 20)
            | (usize::from(bdf.device & 31) << 15)
            | (usize::from(bdf.function & 7) << 12)
            | usize::from(offset & 0xFFC);
        Some((self.base + offset) as *mut u32)
    }
}

impl ConfigSpace for Ecam {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        match self.address(bdf, offset) {
            // SAFETY: inside the mapped ECAM window (constructor's contract), aligned.
            Some(pointer) => unsafe { core::ptr::read_volatile(pointer) },
            None => u32::MAX,
        }
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(pointer) = self.address(bdf, offset) {
            // SAFETY: as in `read32`.
            unsafe { core::ptr::write_volatile(pointer, value) };
        }
    }
}
