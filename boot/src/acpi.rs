//! ACPI through the identity map: the boot core's reads of the firmware's tables with
//! `percore::acpi`'s walk. Before the cores start it reads only what starting them
//! needs (the MADT); the HPET and FADT (the TSC's reference clocks), the MCFG and the
//! AML tables (DSDT, SSDTs, which are large and checksummed whole) wait until the cores
//! are online.

use percore::acpi::{AcpiError, PhysicalMemory, Root, RsdpSource};
pub use percore::acpi::{AmlBlock, Clocks, Ecam, Topology};

/// The end of what the entry code identity-maps (and `paging` never unmaps).
const IDENTITY_MAPPED_END: u64 = 4 << 30;

/// Physical memory below 4 GiB, read through the identity map.
#[derive(Debug)]
pub struct IdentityMap;

impl PhysicalMemory for IdentityMap {
    fn read(&self, address: u64, length: usize) -> Option<&[u8]> {
        let end = address.checked_add(length as u64)?;
        if address == 0 || end > IDENTITY_MAPPED_END {
            return None;
        }
        // SAFETY: 0..4 GiB is identity mapped for the life of the kernel (`entry`,
        // `paging`), and the range is inside it; firmware tables are never written, so
        // the bytes do not change under the slice.
        Some(unsafe { core::slice::from_raw_parts(address as *const u8, length) })
    }
}

/// The firmware's root table, found once and kept for the later reads.
pub type Tables = Root<'static, IdentityMap>;

/// Returns the root table, through the RSDP at `rsdp` (from PVH start_info) or, failing
/// that, one found in the BIOS areas.
pub fn locate(rsdp: Option<u64>) -> Result<Tables, AcpiError> {
    Root::locate(&IdentityMap, rsdp)
}

/// Returns how the RSDP was found, as the start-up report says it.
pub fn rsdp_source(tables: &Tables) -> &'static str {
    match tables.source() {
        RsdpSource::Given => "start_info",
        RsdpSource::BiosArea => "BIOS area scan",
    }
}

/// What the devices' discovery needs from ACPI, read once the cores are online.
#[derive(Debug)]
pub struct DeviceTables {
    /// PCI Express configuration space (segment 0), from the MCFG table if valid.
    pub ecam: Option<Ecam>,
    /// The AML of the DSDT and the SSDTs (checksums checked), in that order.
    pub aml_tables: heapless::Vec<AmlBlock, { percore::acpi::MAX_AML_TABLES }>,
}

/// Reads the MCFG and finds the AML tables.
pub fn device_tables(tables: &Tables) -> DeviceTables {
    DeviceTables {
        ecam: tables.ecam(),
        aml_tables: tables.aml_tables(),
    }
}
