//! PCI: configuration space access (ECAM or ports 0xCF8/0xCFC), enumeration of every
//! bus behind the host bridge, BAR sizing and capability lists.
//!
//! Enumeration is logic over the [`ConfigSpace`] trait, so it is tested on the host
//! against a fake configuration space; the two real accessors live in `access`, the
//! only module here with `unsafe`.

#[allow(unsafe_code)]
mod access;
mod device;
mod enumerate;

pub use access::{Ecam, PortIo};
pub use device::{Bar, Capability, Function, PciDevice};
pub use enumerate::{enumerate, Devices, MAX_DEVICES};

use core::fmt;

/// A PCI function's address: bus, device, function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Reads and writes 32-bit words of configuration space (`offset` 4-byte aligned).
pub trait ConfigSpace {
    /// Returns the word at `offset` of function `bdf` (all ones if it does not exist).
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
    /// Writes the word at `offset` of function `bdf`.
    fn write32(&self, bdf: Bdf, offset: u16, value: u32);

    /// Returns the byte at `offset`.
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        (self.read32(bdf, offset & !3) >> (8 * (offset & 3))) as u8
    }

    /// Returns the 16-bit word at `offset` (2-byte aligned).
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        (self.read32(bdf, offset & !3) >> (8 * (offset & 2))) as u16
    }
}
