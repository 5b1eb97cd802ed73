//! MSI-X for the network device, so the net core can halt when idle and be woken by a
//! received frame: the boot core enables MSI-X in the device's configuration space
//! (every table entry still masked, as after reset), and the net core points entry 0 at
//! itself when its service starts.

use devices::pci::{Bar, ConfigSpace, PciDevice};

/// The command register (low half of the word at 0x04).
const COMMAND: u16 = 0x04;
/// Command: the function may master the bus (its MSI writes among its accesses).
const COMMAND_BUS_MASTER: u32 = 1 << 2;
/// PCI capability id of MSI-X.
const CAPABILITY_MSIX: u8 = 0x11;
/// Message control: MSI-X enable.
const CONTROL_ENABLE: u16 = 1 << 15;
/// Message control: function mask.
const CONTROL_MASK_ALL: u16 = 1 << 14;
/// Bytes of a table entry: address low, address high, data, vector control.
const ENTRY_SIZE: usize = 16;
/// The xAPIC's MSI address window; the destination APIC id goes in bits 12 to 19.
const MSI_ADDRESS: u32 = 0xFEE0_0000;

/// A device's MSI-X table, in one of its memory BARs (mapped uncached at boot).
#[derive(Debug, Clone, Copy)]
pub struct MsixTable {
    address: usize,
    entries: u16,
}

/// The network device's table, once MSI-X is enabled on it.
static NET_TABLE: spin::Once<MsixTable> = spin::Once::new();

/// Enables MSI-X on the network device `device` (boot core, with its configuration
/// space `config`); its entries stay masked until [`route_net`]. Devices without MSI-X
/// (or with a table outside a memory BAR) are left polled.
pub fn enable_for_net(config: &dyn ConfigSpace, device: &PciDevice) {
    let Some(capability) = device.capabilities(CAPABILITY_MSIX).next() else {
        return;
    };
    let at = u16::from(capability.offset);
    // The capability's first word: id, next pointer, then message control.
    let header = config.read32(device.bdf, at);
    let control = (header >> 16) as u16;
    let table = config.read32(device.bdf, at + 4);
    let bar = (table & 0x7) as usize;
    let offset = (table & !0x7) as u64;
    let entries = (control & 0x7FF) + 1;
    let Some(Bar::Memory { address, size, .. }) = device.bars.get(bar).copied() else {
        return;
    };
    if offset + u64::from(entries) * ENTRY_SIZE as u64 > size {
        return;
    }
    // An MSI is a write by the device: without bus mastering QEMU drops it (virtio's
    // rings do not need it there, so nothing else turned it on).
    let command = config.read32(device.bdf, COMMAND);
    config.write32(device.bdf, COMMAND, command | COMMAND_BUS_MASTER);
    let control = (control | CONTROL_ENABLE) & !CONTROL_MASK_ALL;
    config.write32(device.bdf, at, (header & 0xFFFF) | u32::from(control) << 16);
    NET_TABLE.call_once(|| MsixTable {
        address: (address + offset) as usize,
        entries,
    });
}

/// Points the network device's MSI-X entry `entry` at the APIC `apic_id`, with
/// `vector`, and unmasks it; returns false when the device has no such entry or the id
/// does not fit an xAPIC message (then the service keeps polling).
pub fn route_net(entry: u16, apic_id: u32, vector: u8) -> bool {
    let Some(table) = NET_TABLE.get() else {
        return false;
    };
    if entry >= table.entries || apic_id > 0xFF {
        return false;
    }
    let at = table.address + usize::from(entry) * ENTRY_SIZE;
    let words = [
        MSI_ADDRESS | (apic_id << 12),
        0,
        u32::from(vector),
        // Vector control: bit 0 clear unmasks the entry.
        0,
    ];
    for (index, word) in words.iter().enumerate() {
        // SAFETY: the table lies inside the device's memory BAR (checked in
        // `enable_for_net`), which `pci::discover` mapped uncached; entries are 16-byte
        // aligned, so each 32-bit word is aligned. Only the net core, which owns the
        // device, writes them, once.
        unsafe { core::ptr::write_volatile((at + 4 * index) as *mut u32, *word) };
    }
    true
}
