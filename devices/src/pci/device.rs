//! What enumeration learns about a function: ids, class, BARs and capabilities.

use core::fmt;

use super::Bdf;

/// A base address register, sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// Not implemented (or the upper half of a 64-bit BAR).
    None,
    /// I/O ports.
    Io { port: u32, size: u32 },
    /// Memory: address, size, 64-bit or not, prefetchable or not.
    Memory {
        address: u64,
        size: u64,
        wide: bool,
        prefetchable: bool,
    },
}

impl Bar {
    /// Returns the memory window `(address, size)` of a memory BAR.
    pub fn memory(&self) -> Option<(u64, u64)> {
        match *self {
            Bar::Memory { address, size, .. } => Some((address, size)),
            _ => None,
        }
    }
}

/// A capability in a function's list: its id and where it is in configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    pub id: u8,
    pub offset: u8,
}

/// The identity of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub revision: u8,
}

/// A PCI function found by enumeration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    pub bdf: Bdf,
    pub id: Function,
    /// Header type 0 (device) BARs; bridges only have the first two.
    pub bars: [Bar; 6],
    pub capabilities: heapless::Vec<Capability, 16>,
}

impl PciDevice {
    /// Returns the capabilities with id `id` (vendor-specific ones repeat, e.g. virtio).
    pub fn capabilities(&self, id: u8) -> impl Iterator<Item = Capability> + '_ {
        self.capabilities
            .iter()
            .copied()
            .filter(move |c| c.id == id)
    }

    /// Returns a short name for well-known functions.
    pub fn name(&self) -> &'static str {
        match (
            self.id.vendor,
            self.id.device,
            self.id.class,
            self.id.subclass,
        ) {
            (0x1AF4, 0x1041 | 0x1000, ..) => "virtio-net",
            (0x1AF4, 0x1042 | 0x1001, ..) => "virtio-blk",
            (0x1AF4, ..) => "virtio",
            (_, _, 0x06, 0x00) => "host bridge",
            (_, _, 0x06, 0x01) => "ISA bridge",
            (_, _, 0x06, 0x04) => "PCI bridge",
            (_, _, 0x01, 0x01) => "IDE controller",
            (_, _, 0x01, 0x06) => "SATA controller",
            (_, _, 0x02, _) => "network controller",
            (_, _, 0x03, _) => "display controller",
            (_, _, 0x0C, 0x05) => "SMBus controller",
            _ => "device",
        }
    }
}

impl fmt::Display for PciDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04x}:{:04x} class {:02x}.{:02x} {}",
            self.bdf,
            self.id.vendor,
            self.id.device,
            self.id.class,
            self.id.subclass,
            self.name()
        )?;
        for (index, bar) in self.bars.iter().enumerate() {
            match *bar {
                Bar::None => {}
                Bar::Io { port, size } => write!(f, ", BAR{index} io {port:#x}+{size:#x}")?,
                Bar::Memory {
                    address,
                    size,
                    wide,
                    ..
                } => {
                    let bits = if wide { 64 } else { 32 };
                    write!(f, ", BAR{index} mem{bits} {address:#x}+{size:#x}")?
                }
            }
        }
        Ok(())
    }
}
