//! Walks the bus tree from bus 0 through PCI-to-PCI bridges, sizing BARs and reading
//! capability lists. Every walk is bounded: a broken device cannot make it loop.

use super::device::{Bar, Capability, Function, PciDevice};
use super::{Bdf, ConfigSpace};

/// The most functions recorded.
pub const MAX_DEVICES: usize = 64;

const VENDOR_NONE: u16 = 0xFFFF;
const COMMAND: u16 = 0x04;
const COMMAND_DECODE: u32 = 0b11; // I/O and memory space
const STATUS_CAPABILITIES: u32 = 1 << (16 + 4);
const CAPABILITIES_POINTER: u16 = 0x34;
const HEADER_TYPE: u16 = 0x0E;
const BAR0: u16 = 0x10;
const BRIDGE_BUSES: u16 = 0x18;

/// The functions enumeration found.
pub type Devices = heapless::Vec<PciDevice, MAX_DEVICES>;

/// Adds to `found` every function reachable from bus 0, in bus order (the list is
/// filled in place: it is too big to move around on a boot stack).
pub fn enumerate(config: &dyn ConfigSpace, found: &mut Devices) {
    let mut visited = [false; 256];
    scan_bus(config, 0, &mut visited, found);
}

fn scan_bus(
    config: &dyn ConfigSpace,
    bus: u8,
    visited: &mut [bool; 256],
    found: &mut heapless::Vec<PciDevice, MAX_DEVICES>,
) {
    // A bridge that names an already visited bus (or itself) is ignored: no loops.
    if core::mem::replace(&mut visited[usize::from(bus)], true) {
        return;
    }
    for device in 0..32 {
        let first = Bdf {
            bus,
            device,
            function: 0,
        };
        if config.read16(first, 0) == VENDOR_NONE {
            continue;
        }
        let functions = if config.read8(first, HEADER_TYPE) & 0x80 != 0 {
            8
        } else {
            1
        };
        for function in 0..functions {
            let bdf = Bdf {
                bus,
                device,
                function,
            };
            if config.read16(bdf, 0) == VENDOR_NONE {
                continue;
            }
            let header = config.read8(bdf, HEADER_TYPE) & 0x7F;
            let _ = found.push(probe(config, bdf, header));
            if header == 1 {
                let secondary = config.read8(bdf, BRIDGE_BUSES + 1);
                if secondary != 0 {
                    scan_bus(config, secondary, visited, found);
                }
            }
        }
    }
}

fn probe(config: &dyn ConfigSpace, bdf: Bdf, header: u8) -> PciDevice {
    let class = config.read32(bdf, 0x08);
    let id = Function {
        vendor: config.read16(bdf, 0),
        device: config.read16(bdf, 2),
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
        prog_if: (class >> 8) as u8,
        revision: class as u8,
    };
    let bar_count = match header {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    PciDevice {
        bdf,
        id,
        bars: size_bars(config, bdf, bar_count),
        capabilities: capabilities(config, bdf),
    }
}

/// Sizes the first `count` BARs, with decoding off meanwhile so a half-written BAR is
/// never live.
fn size_bars(config: &dyn ConfigSpace, bdf: Bdf, count: usize) -> [Bar; 6] {
    let mut bars = [Bar::None; 6];
    if count == 0 {
        return bars;
    }
    let command = config.read32(bdf, COMMAND);
    config.write32(bdf, COMMAND, command & !COMMAND_DECODE);
    let mut index = 0;
    while index < count {
        let offset = BAR0 + 4 * index as u16;
        let original = config.read32(bdf, offset);
        config.write32(bdf, offset, u32::MAX);
        let mask = config.read32(bdf, offset);
        config.write32(bdf, offset, original);
        if original & 1 == 1 {
            // I/O BARs decode at most 16 address bits.
            let size = (!(mask & !0x3)).wrapping_add(1) & 0xFFFF;
            if mask & !0x3 != 0 {
                bars[index] = Bar::Io {
                    port: original & !0x3,
                    size,
                };
            }
            index += 1;
            continue;
        }
        let wide = (original >> 1) & 0b11 == 0b10 && index + 1 < count;
        let prefetchable = original & 0b1000 != 0;
        let (address, mask) = if wide {
            let upper_offset = offset + 4;
            let upper = config.read32(bdf, upper_offset);
            config.write32(bdf, upper_offset, u32::MAX);
            let upper_mask = config.read32(bdf, upper_offset);
            config.write32(bdf, upper_offset, upper);
            (
                u64::from(upper) << 32 | u64::from(original & !0xF),
                u64::from(upper_mask) << 32 | u64::from(mask & !0xF),
            )
        } else {
            (
                u64::from(original & !0xF),
                u64::from(mask & !0xF) | 0xFFFF_FFFF_0000_0000,
            )
        };
        if mask & 0xFFFF_FFFF != 0 || wide && mask != 0 {
            let size = (!mask).wrapping_add(1);
            if size != 0 {
                bars[index] = Bar::Memory {
                    address,
                    size,
                    wide,
                    prefetchable,
                };
            }
        }
        index += if wide { 2 } else { 1 };
    }
    config.write32(bdf, COMMAND, command);
    bars
}

/// Reads the capability list, at most 48 entries (a list cannot be longer in 256 bytes
/// of configuration space), stopping at pointers outside the device-specific area.
fn capabilities(config: &dyn ConfigSpace, bdf: Bdf) -> heapless::Vec<Capability, 16> {
    let mut list = heapless::Vec::new();
    if config.read32(bdf, COMMAND) & STATUS_CAPABILITIES == 0 {
        return list;
    }
    let mut offset = config.read8(bdf, CAPABILITIES_POINTER) & !3;
    for _ in 0..48 {
        if offset < 0x40 {
            break;
        }
        let header = config.read16(bdf, u16::from(offset));
        if list
            .push(Capability {
                id: header as u8,
                offset,
            })
            .is_err()
        {
            break;
        }
        offset = ((header >> 8) as u8) & !3;
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// A configuration space of a few functions, with BAR size masks.
    #[derive(Default)]
    struct FakeSpace {
        words: RefCell<HashMap<(Bdf, u16), u32>>,
        /// Size masks of BARs: writes of all ones read back as the mask.
        masks: HashMap<(Bdf, u16), u32>,
    }

    impl FakeSpace {
        fn set(&mut self, bdf: Bdf, offset: u16, value: u32) {
            self.words.get_mut().insert((bdf, offset), value);
        }
    }

    impl ConfigSpace for FakeSpace {
        fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
            *self.words.borrow().get(&(bdf, offset)).unwrap_or(&u32::MAX)
        }

        fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
            let stored = match self.masks.get(&(bdf, offset)) {
                Some(&mask) if value == u32::MAX => mask,
                _ => value,
            };
            self.words.borrow_mut().insert((bdf, offset), stored);
        }
    }

    fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf {
            bus,
            device,
            function,
        }
    }

    fn function(space: &mut FakeSpace, at: Bdf, vendor: u16, device: u16, class: u32, header: u8) {
        space.set(at, 0, u32::from(device) << 16 | u32::from(vendor));
        space.set(at, 0x08, class << 8);
        space.set(at, 0x0C, u32::from(header) << 16);
        space.set(at, COMMAND, 0b111);
        for bar in 0..6 {
            space.set(at, BAR0 + 4 * bar, 0);
        }
    }

    #[test]
    fn finds_devices_behind_bridges_and_sizes_their_bars() {
        let mut space = FakeSpace::default();
        function(&mut space, bdf(0, 0, 0), 0x8086, 0x29C0, 0x06_00_00, 0);
        // A virtio-blk with a 32-bit I/O BAR, a 32-bit memory BAR and a 64-bit one.
        let blk = bdf(0, 3, 0);
        function(&mut space, blk, 0x1AF4, 0x1042, 0x01_00_00, 0);
        space.set(blk, BAR0, 0xC001);
        space.masks.insert((blk, BAR0), 0xFFFF_FFC1);
        space.set(blk, BAR0 + 4, 0xFEB0_0000);
        space.masks.insert((blk, BAR0 + 4), 0xFFFF_F000);
        space.set(blk, BAR0 + 16, 0x0000_000C);
        space.masks.insert((blk, BAR0 + 16), 0xFFFF_C00C);
        space.set(blk, BAR0 + 20, 0x0000_0080);
        space.masks.insert((blk, BAR0 + 20), 0xFFFF_FFFF);
        // A bridge to bus 1 with one device, a multi-function device on bus 0.
        let bridge = bdf(0, 4, 0);
        function(&mut space, bridge, 0x1B36, 0x000C, 0x06_04_00, 1);
        space.set(bridge, BRIDGE_BUSES, 0x00_01_00);
        function(&mut space, bdf(1, 0, 0), 0x1AF4, 0x1041, 0x02_00_00, 0);
        function(&mut space, bdf(0, 31, 0), 0x8086, 0x2918, 0x06_01_00, 0x80);
        function(&mut space, bdf(0, 31, 3), 0x8086, 0x2930, 0x0C_05_00, 0);

        let mut found = Devices::new();
        enumerate(&space, &mut found);
        let addresses: Vec<Bdf> = found.iter().map(|d| d.bdf).collect();
        assert_eq!(
            addresses,
            [
                bdf(0, 0, 0),
                bdf(0, 3, 0),
                bdf(0, 4, 0),
                bdf(1, 0, 0),
                bdf(0, 31, 0),
                bdf(0, 31, 3)
            ]
        );
        let blk = &found[1];
        assert_eq!(blk.name(), "virtio-blk");
        assert_eq!(
            blk.bars[0],
            Bar::Io {
                port: 0xC000,
                size: 0x40
            }
        );
        assert_eq!(
            blk.bars[1],
            Bar::Memory {
                address: 0xFEB0_0000,
                size: 0x1000,
                wide: false,
                prefetchable: false
            }
        );
        assert_eq!(
            blk.bars[4],
            Bar::Memory {
                address: 0x80_0000_0000,
                size: 0x4000,
                wide: true,
                prefetchable: true
            }
        );
        assert_eq!(blk.bars[5], Bar::None, "upper half of a 64-bit BAR");
        // Sizing put every BAR and the command register back.
        assert_eq!(space.read32(bdf(0, 3, 0), BAR0 + 4), 0xFEB0_0000);
        assert_eq!(space.read32(bdf(0, 3, 0), COMMAND), 0b111);
        assert!(found[3]
            .to_string()
            .starts_with("01:00.0 1af4:1041 class 02.00 virtio-net"));
    }

    #[test]
    fn capability_lists_are_read_and_loops_are_cut() {
        let mut space = FakeSpace::default();
        let at = bdf(0, 2, 0);
        function(&mut space, at, 0x1AF4, 0x1042, 0x01_00_00, 0);
        space.set(at, COMMAND, 0b111 | STATUS_CAPABILITIES);
        space.set(at, CAPABILITIES_POINTER, 0x40);
        space.set(at, 0x40, 0x50_09); // vendor (virtio), next 0x50
        space.set(at, 0x50, 0x60_09);
        space.set(at, 0x60, 0x40_11); // MSI-X, next back to 0x40: a loop
        let mut found = Devices::new();
        enumerate(&space, &mut found);
        let caps = &found[0].capabilities;
        assert_eq!(caps.len(), 16, "the loop is cut at the list's capacity");
        assert_eq!(
            found[0].capabilities(0x11).next(),
            Some(Capability {
                id: 0x11,
                offset: 0x60
            })
        );
        assert_eq!(found[0].capabilities(0x09).take(2).count(), 2);
    }

    #[test]
    fn bridges_that_loop_back_are_not_followed_twice() {
        let mut space = FakeSpace::default();
        let down = bdf(0, 1, 0);
        function(&mut space, down, 0x1B36, 0x000C, 0x06_04_00, 1);
        space.set(down, BRIDGE_BUSES, 0x00_01_00);
        let back = bdf(1, 0, 0);
        function(&mut space, back, 0x1B36, 0x000C, 0x06_04_00, 1);
        space.set(back, BRIDGE_BUSES, 0x00_00_01);
        let mut found = Devices::new();
        enumerate(&space, &mut found);
        assert_eq!(
            found.iter().map(|d| d.bdf).collect::<Vec<_>>(),
            [down, back]
        );
    }
}
