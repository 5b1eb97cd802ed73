//! ACPI: find the RSDP and read the processors and interrupt controllers from the MADT,
//! the timers the TSC can be measured against (FADT's PM timer, the HPET table); note
//! where the AML tables (DSDT, SSDTs) are, for the virtio-mmio scan.

use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::hpet::HpetTable;
use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;

/// The most processors the MADT walk records (more are counted, not kept).
pub const MAX_PROCESSORS: usize = 256;

/// ACPI tables are in identity-mapped RAM, so "mapping" is taking the address.
#[derive(Clone, Copy, Debug)]
struct IdentityMapped;

impl AcpiHandler for IdentityMapped {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virtual_start =
            NonNull::new(physical_address as *mut T).expect("ACPI table at physical address 0");
        // SAFETY: the whole RAM below 4 GiB and above is identity mapped (`paging`), and
        // the caller (the acpi crate) guarantees a valid `T` lives there.
        unsafe { PhysicalMapping::new(physical_address, virtual_start, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// A processor the firmware reported as enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processor {
    pub apic_id: u32,
    /// True when the MADT listed it as an x2APIC entry.
    pub x2apic_entry: bool,
}

/// What the MADT told us.
#[derive(Debug)]
pub struct Topology {
    pub processors: heapless::Vec<Processor, MAX_PROCESSORS>,
    /// Enabled processors that did not fit in `processors`.
    pub processors_dropped: usize,
    /// Processors the firmware listed as disabled (absent or hot-pluggable).
    pub processors_disabled: usize,
    pub local_apic_address: u64,
    pub io_apics: heapless::Vec<u64, 8>,
    /// Where the RSDP was found.
    pub rsdp_source: &'static str,
    /// PCI Express configuration space (segment 0), from the MCFG table if there is one.
    pub ecam: Option<Ecam>,
    /// The ACPI PM timer's I/O port and whether it is 32 bits wide (else 24), from the
    /// FADT; `None` on hardware-reduced ACPI (microvm) or without a FADT.
    pub pm_timer: Option<(u16, bool)>,
    /// The HPET's register block (physical address), from the HPET table.
    pub hpet: Option<u64>,
    /// The AML of the DSDT and the SSDTs (checksums checked), in that order.
    pub aml_tables: heapless::Vec<AmlBlock, 8>,
}

/// Where an AML table's code is: after its header, `length` bytes from `address`.
#[derive(Debug, Clone, Copy)]
pub struct AmlBlock {
    pub address: u64,
    pub length: usize,
}

/// A memory-mapped PCI configuration window: base address (for bus 0) and bus range.
#[derive(Debug, Clone, Copy)]
pub struct Ecam {
    pub base: u64,
    pub first_bus: u8,
    pub last_bus: u8,
}

/// Why ACPI could not be read.
#[derive(Debug)]
pub enum AcpiError {
    NoRsdp(acpi::AcpiError),
    NoMadt(acpi::AcpiError),
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiError::NoRsdp(e) => {
                write!(f, "no valid RSDP in start_info or the BIOS area ({e:?})")
            }
            AcpiError::NoMadt(e) => write!(f, "no valid MADT ({e:?})"),
        }
    }
}

/// Reads the MADT, starting from the RSDP at `rsdp` (from PVH start_info) or, failing
/// that, from a scan of the BIOS area.
pub fn read_topology(rsdp: Option<u64>) -> Result<Topology, AcpiError> {
    let from_start_info = rsdp.and_then(|address| {
        // SAFETY: the PVH loader's rsdp_paddr points at the RSDP; from_rsdp validates
        // its signature and checksum before trusting it.
        unsafe { AcpiTables::from_rsdp(IdentityMapped, address as usize) }.ok()
    });
    let (tables, rsdp_source) = match from_start_info {
        Some(tables) => (tables, "start_info"),
        None => {
            // SAFETY: QEMU's firmware (SeaBIOS, qboot) is a BIOS platform, so the EBDA
            // and 0xE0000..0xFFFFF are RAM/ROM that may hold the RSDP; the scan checks
            // signature and checksum.
            let tables = unsafe { AcpiTables::search_for_rsdp_bios(IdentityMapped) }
                .map_err(AcpiError::NoRsdp)?;
            (tables, "BIOS area scan")
        }
    };
    let ecam = tables.find_table::<Mcfg>().ok().and_then(|mcfg| {
        mcfg.entries()
            .iter()
            .find(|entry| entry.pci_segment_group == 0)
            .map(|entry| Ecam {
                base: entry.base_address,
                first_bus: entry.bus_number_start,
                last_bus: entry.bus_number_end,
            })
    });
    let pm_timer = tables.find_table::<Fadt>().ok().and_then(|fadt| {
        let block = fadt.pm_timer_block().ok().flatten()?;
        let port = u16::try_from(block.address).ok()?;
        let is_32_bit = { fadt.flags }.pm_timer_is_32_bit();
        (block.address_space == AddressSpace::SystemIo && port != 0).then_some((port, is_32_bit))
    });
    let hpet = tables.find_table::<HpetTable>().ok().and_then(|table| {
        let length = table.header().length as usize;
        // The table's fields are private: read the base address (a generic address at
        // offset 40: address space byte, then the 64-bit address at 44) from its bytes.
        // SAFETY: the acpi crate mapped and checksummed all `length` bytes of the table.
        let bytes = unsafe {
            core::slice::from_raw_parts(table.virtual_start().as_ptr().cast::<u8>(), length)
        };
        let address = u64::from_le_bytes(bytes.get(44..52)?.try_into().ok()?);
        // Address space 0 is system memory, the only one an HPET may be in.
        (bytes[40] == 0 && address != 0).then_some(address)
    });
    // The acpi crate validates each table's signature, length and checksum here.
    let aml_tables = tables
        .dsdt()
        .into_iter()
        .chain(tables.ssdts())
        .map(|table| AmlBlock {
            address: table.address as u64,
            length: table.length as usize,
        })
        .take(8)
        .collect();
    let madt = tables.find_table::<Madt>().map_err(AcpiError::NoMadt)?;
    let madt = madt.get();

    let mut topology = Topology {
        processors: heapless::Vec::new(),
        processors_dropped: 0,
        processors_disabled: 0,
        local_apic_address: u64::from(madt.local_apic_address),
        io_apics: heapless::Vec::new(),
        rsdp_source,
        ecam,
        pm_timer,
        hpet,
        aml_tables,
    };
    const ENABLED: u32 = 1;
    let mut seen = [0u64; 4];
    for entry in madt.entries() {
        let (apic_id, flags, x2apic_entry) = match entry {
            MadtEntry::LocalApic(e) => (u32::from(e.apic_id), e.flags, false),
            MadtEntry::LocalX2Apic(e) => (e.x2apic_id, e.flags, true),
            MadtEntry::IoApic(e) => {
                let _ = topology.io_apics.push(u64::from(e.io_apic_address));
                continue;
            }
            MadtEntry::LocalApicAddressOverride(e) => {
                topology.local_apic_address = e.local_apic_address;
                continue;
            }
            _ => continue,
        };
        if flags & ENABLED == 0 {
            topology.processors_disabled += 1;
            continue;
        }
        // Firmware may list a processor both as LocalApic and LocalX2Apic. Ids below 256
        // (every xAPIC id) are checked in a bitmap, so the walk stays linear in the
        // processors; a larger id is looked for among the others.
        let listed_before = match seen.get_mut(apic_id as usize / 64) {
            Some(word) => {
                let bit = 1u64 << (apic_id % 64);
                let listed_before = *word & bit != 0;
                *word |= bit;
                listed_before
            }
            None => topology.processors.iter().any(|p| p.apic_id == apic_id),
        };
        let processor = Processor {
            apic_id,
            x2apic_entry,
        };
        if !listed_before && topology.processors.push(processor).is_err() {
            topology.processors_dropped += 1;
        }
    }
    Ok(topology)
}
