//! ACPI tables as the boot core reads them: the RSDP, the root table (RSDT or XSDT) and
//! the few tables the kernel uses (the MADT before the other cores start; the HPET,
//! FADT, MCFG and where the DSDT and SSDTs lie, after).
//!
//! Pure parsing over [`PhysicalMemory`]: the boot core passes its identity map, the host
//! tests pass QEMU's own tables dumped into files. A [`Table`] exists only once its
//! length is bounded and its checksum checked, and every field is read with a bounds
//! check, so a corrupt table is refused (or, for a table the kernel can do without,
//! skipped), never read past its end. Under QEMU's TCG the boot core pays for each
//! instruction it runs for the first time (see ARCHITECTURE.md, "Boot flow"), so the
//! walk is short on purpose: one pass over the root table per lookup, nothing parsed that
//! the kernel does not use, the large AML tables checksummed only when they are scanned.

use core::fmt;

/// Physical memory the tables are read from.
pub trait PhysicalMemory {
    /// Returns the `length` bytes at physical address `address`, or `None` where this
    /// memory may not be read.
    fn read(&self, address: u64, length: usize) -> Option<&[u8]>;
}

/// The length of every table's header (signature, length, revision, checksum, OEM ids).
pub const HEADER_LENGTH: usize = 36;
/// The longest table accepted (a DSDT of a large server is a few hundred KiB).
pub const MAX_TABLE_LENGTH: usize = 4 << 20;
/// The most processors the MADT walk records (more are counted, not kept).
pub const MAX_PROCESSORS: usize = 256;
/// The most AML tables (the DSDT and SSDTs) kept.
pub const MAX_AML_TABLES: usize = 8;
/// The longest RSDP accepted (36 bytes in every ACPI version so far).
const MAX_RSDP_LENGTH: usize = 256;
/// Where the BIOS areas searched for the RSDP lie: the first KiB of the EBDA (its
/// segment is at 0x40E) and 0xE0000..0x100000, on 16-byte boundaries.
const EBDA_POINTER: u64 = 0x40E;
const BIOS_AREA: core::ops::Range<u64> = 0xE_0000..0x10_0000;

/// Why a table cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Its bytes cannot be read (outside the memory the kernel may read).
    Unreadable,
    /// Its length is below the header's or above [`MAX_TABLE_LENGTH`].
    Length(u32),
    /// Its bytes do not sum to zero.
    Checksum,
    /// It is too short for a field the kernel reads, or an entry overruns it.
    Truncated,
    /// It is not the kind of table the pointer to it promised (an RSDP's root table).
    Signature,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unreadable => f.write_str("cannot be read"),
            Problem::Length(length) => write!(f, "has length {length}"),
            Problem::Checksum => f.write_str("has a bad checksum"),
            Problem::Truncated => f.write_str("is truncated or has a malformed entry"),
            Problem::Signature => f.write_str("is not the table the RSDP points to"),
        }
    }
}

/// Why the ACPI tables cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// No valid RSDP at the given address nor in the BIOS areas.
    NoRsdp,
    /// The root table (RSDT or XSDT) or a table the kernel needs is unusable.
    Table {
        signature: [u8; 4],
        address: u64,
        problem: Problem,
    },
    /// The root table lists no MADT.
    NoMadt,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::NoRsdp => f.write_str("no valid RSDP in start_info or the BIOS area"),
            AcpiError::Table {
                signature,
                address,
                problem,
            } => write!(
                f,
                "the {} table at {address:#x} {problem}",
                core::str::from_utf8(signature).unwrap_or("????")
            ),
            AcpiError::NoMadt => f.write_str("no MADT (the processors' table)"),
        }
    }
}

fn sums_to_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte)) == 0
}

fn field<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    field(bytes, offset).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    field(bytes, offset).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    field(bytes, offset).map(u64::from_le_bytes)
}

/// A system description table whose length and checksum were checked.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    address: u64,
    bytes: &'a [u8],
}

impl<'a> Table<'a> {
    /// Reads the table at `address`: its header, then the length it states, checked.
    pub fn read(memory: &'a impl PhysicalMemory, address: u64) -> Result<Table<'a>, AcpiError> {
        let header = memory.read(address, HEADER_LENGTH);
        let refuse = |problem| AcpiError::Table {
            signature: header.and_then(|h| field(h, 0)).unwrap_or(*b"????"),
            address,
            problem,
        };
        let length = header
            .and_then(|h| u32_at(h, 4))
            .ok_or(refuse(Problem::Unreadable))?;
        if !(HEADER_LENGTH..=MAX_TABLE_LENGTH).contains(&(length as usize)) {
            return Err(refuse(Problem::Length(length)));
        }
        let bytes = memory
            .read(address, length as usize)
            .ok_or(refuse(Problem::Unreadable))?;
        if !sums_to_zero(bytes) {
            return Err(refuse(Problem::Checksum));
        }
        Ok(Table { address, bytes })
    }

    /// Returns the table in `bytes` (found at `address`) once its stated length equals
    /// `bytes.len()`, lies between the header's and [`MAX_TABLE_LENGTH`], and its bytes
    /// sum to zero.
    pub fn from_bytes(address: u64, bytes: &'a [u8]) -> Result<Table<'a>, Problem> {
        let length = u32_at(bytes, 4).ok_or(Problem::Length(bytes.len() as u32))?;
        if length as usize != bytes.len()
            || !(HEADER_LENGTH..=MAX_TABLE_LENGTH).contains(&bytes.len())
        {
            return Err(Problem::Length(length));
        }
        if !sums_to_zero(bytes) {
            return Err(Problem::Checksum);
        }
        Ok(Table { address, bytes })
    }

    /// Returns the table's signature (`APIC` for the MADT, `FACP` for the FADT, ...).
    pub fn signature(&self) -> [u8; 4] {
        field(self.bytes, 0).unwrap_or(*b"????")
    }

    /// Returns the table's physical address.
    pub fn address(&self) -> u64 {
        self.address
    }

    /// Returns the whole table, header included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Returns the table's revision.
    pub fn revision(&self) -> u8 {
        self.bytes[8]
    }

    fn problem(&self, problem: Problem) -> AcpiError {
        AcpiError::Table {
            signature: self.signature(),
            address: self.address,
            problem,
        }
    }
}

fn signature_at(memory: &impl PhysicalMemory, address: u64) -> Option<[u8; 4]> {
    field(memory.read(address, 4)?, 0)
}

/// Where the RSDP was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsdpSource {
    /// At the address the boot loader gave.
    Given,
    /// By a search of the BIOS areas.
    BiosArea,
}

/// The root table (the XSDT, or the RSDT of ACPI 1.0 firmware), found through the RSDP.
#[derive(Debug)]
pub struct Root<'a, M: PhysicalMemory> {
    memory: &'a M,
    table: Table<'a>,
    /// 8 for the XSDT's 64-bit entries, 4 for the RSDT's.
    entry_size: usize,
    source: RsdpSource,
}

impl<'a, M: PhysicalMemory> Root<'a, M> {
    /// Returns the root table through the RSDP at `given` (from the boot loader) or,
    /// when that is absent or invalid, through one found in the BIOS areas.
    pub fn locate(memory: &'a M, given: Option<u64>) -> Result<Root<'a, M>, AcpiError> {
        let (pointer, source) = match given.and_then(|address| rsdp_at(memory, address)) {
            Some(pointer) => (pointer, RsdpSource::Given),
            None => (
                search_bios_areas(memory).ok_or(AcpiError::NoRsdp)?,
                RsdpSource::BiosArea,
            ),
        };
        let (address, entry_size) = pointer;
        let table = Table::read(memory, address)?;
        let expected = if entry_size == 8 { b"XSDT" } else { b"RSDT" };
        if &table.signature() != expected {
            return Err(AcpiError::Table {
                signature: table.signature(),
                address,
                problem: Problem::Signature,
            });
        }
        Ok(Root {
            memory,
            table,
            entry_size,
            source,
        })
    }

    /// Returns where the RSDP was found.
    pub fn source(&self) -> RsdpSource {
        self.source
    }

    /// Returns the root table itself.
    pub fn table(&self) -> Table<'a> {
        self.table
    }

    /// Returns the physical addresses the root table lists, in its order.
    pub fn entries(&self) -> impl Iterator<Item = u64> + 'a {
        let (bytes, size) = (self.table.bytes, self.entry_size);
        (0..(bytes.len() - HEADER_LENGTH) / size).map(move |index| entry(bytes, size, index))
    }

    /// Returns every listed table with `signature`, each read and checked, in the root
    /// table's order.
    pub fn tables(
        &self,
        signature: [u8; 4],
    ) -> impl Iterator<Item = Result<Table<'a>, AcpiError>> + 'a {
        let memory = self.memory;
        self.entries()
            .filter(move |&address| signature_at(memory, address) == Some(signature))
            .map(move |address| Table::read(memory, address))
    }

    /// Returns the first listed table with `signature`, read and checked; `None` when
    /// there is none. A plain loop: it runs before the cores start.
    pub fn find(&self, signature: [u8; 4]) -> Option<Result<Table<'a>, AcpiError>> {
        let (bytes, size) = (self.table.bytes, self.entry_size);
        for index in 0..(bytes.len() - HEADER_LENGTH) / size {
            let address = entry(bytes, size, index);
            if signature_at(self.memory, address) == Some(signature) {
                return Some(Table::read(self.memory, address));
            }
        }
        None
    }

    /// Returns the processors and interrupt controllers (the MADT): what the kernel
    /// needs before the other cores start.
    pub fn topology(&self) -> Result<Topology, AcpiError> {
        let madt = self.find(*b"APIC").ok_or(AcpiError::NoMadt)??;
        read_madt(&madt)
    }

    /// Returns the clocks the TSC can be measured against: the HPET and the FADT's PM
    /// timer (a table of these that fails its checks is left out, as if absent).
    pub fn clocks(&self) -> Clocks {
        Clocks {
            hpet: self
                .find(*b"HPET")
                .and_then(Result::ok)
                .and_then(|t| hpet_base(&t)),
            pm_timer: self
                .find(*b"FACP")
                .and_then(Result::ok)
                .and_then(|t| pm_timer(&t)),
        }
    }

    /// Returns PCI Express configuration space for segment 0, from the MCFG table (none
    /// when there is no valid one: the `pc` machine, microvm).
    pub fn ecam(&self) -> Option<Ecam> {
        let mcfg = self.find(*b"MCFG")?.ok()?;
        // 8 reserved bytes after the header, then 16-byte entries.
        mcfg.bytes
            .get(HEADER_LENGTH + 8..)?
            .chunks_exact(16)
            .map(|entry| Ecam {
                base: u64_at(entry, 0).unwrap_or(0),
                segment: u16_at(entry, 8).unwrap_or(u16::MAX),
                first_bus: entry[10],
                last_bus: entry[11],
            })
            .find(|ecam| ecam.segment == 0 && ecam.base != 0 && ecam.first_bus <= ecam.last_bus)
    }

    /// Returns the AML of the DSDT (named by the FADT) and of every SSDT, in that order,
    /// each table checked; a table that fails its checks is left out.
    pub fn aml_tables(&self) -> heapless::Vec<AmlBlock, MAX_AML_TABLES> {
        let dsdt = self
            .find(*b"FACP")
            .and_then(Result::ok)
            .and_then(|fadt| dsdt_address(&fadt))
            .and_then(|address| Table::read(self.memory, address).ok())
            .filter(|table| &table.signature() == b"DSDT");
        let ssdts = self.tables(*b"SSDT").filter_map(Result::ok);
        dsdt.into_iter()
            .chain(ssdts)
            .map(|table| AmlBlock {
                address: table.address + HEADER_LENGTH as u64,
                length: table.bytes.len() - HEADER_LENGTH,
            })
            .take(MAX_AML_TABLES)
            .collect()
    }
}

/// Returns entry `index` of a root table's `bytes` (entries of `size` bytes: 4 or 8).
fn entry(bytes: &[u8], size: usize, index: usize) -> u64 {
    let at = HEADER_LENGTH + index * size;
    match size {
        8 => u64_at(bytes, at),
        _ => u32_at(bytes, at).map(u64::from),
    }
    .unwrap_or(0)
}

/// Returns the root table's address and entry size from the RSDP at `address`, if one
/// with a valid signature and checksum (both, for ACPI 2.0 and later) is there.
fn rsdp_at(memory: &impl PhysicalMemory, address: u64) -> Option<(u64, usize)> {
    let first = memory.read(address, 20)?;
    if first.get(..8)? != b"RSD PTR " || !sums_to_zero(first) {
        return None;
    }
    if first[15] >= 2 {
        let length = u32_at(memory.read(address, 24)?, 20)? as usize;
        if !(36..=MAX_RSDP_LENGTH).contains(&length) {
            return None;
        }
        let whole = memory.read(address, length)?;
        if !sums_to_zero(whole) {
            return None;
        }
        let xsdt = u64_at(whole, 24)?;
        if xsdt != 0 {
            return Some((xsdt, 8));
        }
    }
    let rsdt = u32_at(first, 16)?;
    (rsdt != 0).then_some((u64::from(rsdt), 4))
}

/// Returns the root table an RSDP in the BIOS areas points to: the first KiB of the
/// EBDA, then 0xE0000..0x100000, where BIOS firmware (SeaBIOS, qboot) puts it.
fn search_bios_areas(memory: &impl PhysicalMemory) -> Option<(u64, usize)> {
    let ebda = memory
        .read(EBDA_POINTER, 2)
        .and_then(|bytes| u16_at(bytes, 0))
        .map(|segment| u64::from(segment) << 4)
        .filter(|&start| start != 0);
    let ebda = ebda.map(|start| start..start + 1024);
    ebda.into_iter()
        .chain(core::iter::once(BIOS_AREA))
        .flat_map(|area| area.step_by(16))
        .find_map(|address| rsdp_at(memory, address))
}

/// A processor the firmware reported as enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processor {
    pub apic_id: u32,
    /// True when the MADT listed it as an x2APIC entry.
    pub x2apic_entry: bool,
}

/// The processors and interrupt controllers the firmware describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Enabled processors, each once, in MADT order.
    pub processors: heapless::Vec<Processor, MAX_PROCESSORS>,
    /// Enabled processors that did not fit in `processors`.
    pub processors_dropped: usize,
    /// Processors the firmware listed as disabled (absent or hot-pluggable).
    pub processors_disabled: usize,
    pub local_apic_address: u64,
    pub io_apics: heapless::Vec<u64, 8>,
}

/// The clocks the firmware describes besides the PIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    /// The HPET's register block (physical address), from the HPET table.
    pub hpet: Option<u64>,
    /// The ACPI PM timer (FADT); `None` on hardware-reduced ACPI (microvm).
    pub pm_timer: Option<PmTimer>,
}

/// The ACPI PM timer: its I/O port and whether it counts 32 bits (else 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmTimer {
    pub port: u16,
    pub is_32_bit: bool,
}

/// A memory-mapped PCI configuration window: base address (for bus 0) and bus range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecam {
    pub base: u64,
    pub segment: u16,
    pub first_bus: u8,
    pub last_bus: u8,
}

/// Where an AML table's code is: after its header, `length` bytes from `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmlBlock {
    pub address: u64,
    pub length: usize,
}

const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_LOCAL_APIC_ADDRESS_OVERRIDE: u8 = 5;
const MADT_LOCAL_X2APIC: u8 = 9;
/// Flags of a processor entry: bit 0, enabled.
const PROCESSOR_ENABLED: u32 = 1;

/// Returns the processors and interrupt controllers the MADT `madt` lists. Every entry
/// must fit the table and be as long as its type needs.
pub fn read_madt(madt: &Table<'_>) -> Result<Topology, AcpiError> {
    let bytes = madt.bytes;
    let truncated = || madt.problem(Problem::Truncated);
    let mut topology = Topology {
        processors: heapless::Vec::new(),
        processors_dropped: 0,
        processors_disabled: 0,
        local_apic_address: u64::from(u32_at(bytes, HEADER_LENGTH).ok_or_else(truncated)?),
        io_apics: heapless::Vec::new(),
    };
    // Ids below 256 (every xAPIC id) are checked for duplicates in a bitmap, so the walk
    // stays linear in the processors; a larger id is looked for among the others.
    let mut seen = [0u64; 4];
    let mut offset = HEADER_LENGTH + 8;
    while offset < bytes.len() {
        let kind = bytes[offset];
        let length = usize::from(*bytes.get(offset + 1).ok_or_else(truncated)?);
        let entry = bytes
            .get(offset..offset + length)
            .filter(|_| length >= 2)
            .ok_or_else(truncated)?;
        offset += length;
        let (apic_id, flags, x2apic_entry) = match kind {
            MADT_LOCAL_APIC => (
                u32::from(*entry.get(3).ok_or_else(truncated)?),
                u32_at(entry, 4).ok_or_else(truncated)?,
                false,
            ),
            MADT_LOCAL_X2APIC => (
                u32_at(entry, 4).ok_or_else(truncated)?,
                u32_at(entry, 8).ok_or_else(truncated)?,
                true,
            ),
            MADT_IO_APIC => {
                let address = u32_at(entry, 4).ok_or_else(truncated)?;
                let _ = topology.io_apics.push(u64::from(address));
                continue;
            }
            MADT_LOCAL_APIC_ADDRESS_OVERRIDE => {
                topology.local_apic_address = u64_at(entry, 4).ok_or_else(truncated)?;
                continue;
            }
            _ => continue,
        };
        if flags & PROCESSOR_ENABLED == 0 {
            topology.processors_disabled += 1;
            continue;
        }
        // Firmware may list a processor both as LocalApic and LocalX2Apic.
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

/// Returns the HPET's register block from the HPET table `hpet`: a generic address at
/// offset 40, which must be in system memory (address space 0) and not zero.
pub fn hpet_base(hpet: &Table<'_>) -> Option<u64> {
    let address = u64_at(hpet.bytes, 44)?;
    (hpet.bytes[40] == 0 && address != 0).then_some(address)
}

/// FADT offsets.
const FADT_DSDT: usize = 40;
const FADT_PM_TIMER_BLOCK: usize = 76;
const FADT_PM_TIMER_LENGTH: usize = 91;
const FADT_FLAGS: usize = 112;
const FADT_X_DSDT: usize = 140;
const FADT_X_PM_TIMER_BLOCK: usize = 208;
/// FADT flag: the PM timer counts 32 bits.
const TIMER_VALUE_EXTENDED: u32 = 1 << 8;
/// Generic address space: system I/O.
const SYSTEM_IO: u8 = 1;

/// Returns the PM timer the FADT `fadt` describes: the extended block (ACPI 2.0 and
/// later) when set, else the legacy one; only a 4-byte block in I/O space counts.
pub fn pm_timer(fadt: &Table<'_>) -> Option<PmTimer> {
    let bytes = fadt.bytes;
    if *bytes.get(FADT_PM_TIMER_LENGTH)? != 4 {
        return None;
    }
    let extended = (fadt.revision() >= 2)
        .then(|| u64_at(bytes, FADT_X_PM_TIMER_BLOCK + 4))
        .flatten()
        .filter(|&address| address != 0);
    let (space, address) = match extended {
        Some(address) => (bytes[FADT_X_PM_TIMER_BLOCK], address),
        None => (SYSTEM_IO, u64::from(u32_at(bytes, FADT_PM_TIMER_BLOCK)?)),
    };
    let port = u16::try_from(address).ok().filter(|&port| port != 0)?;
    (space == SYSTEM_IO).then_some(PmTimer {
        port,
        is_32_bit: u32_at(bytes, FADT_FLAGS)? & TIMER_VALUE_EXTENDED != 0,
    })
}

/// Returns the DSDT's address from the FADT `fadt`: the 64-bit field (ACPI 2.0 and
/// later) when set, else the 32-bit one.
pub fn dsdt_address(fadt: &Table<'_>) -> Option<u64> {
    let extended = (fadt.revision() >= 2)
        .then(|| u64_at(fadt.bytes, FADT_X_DSDT))
        .flatten()
        .filter(|&address| address != 0);
    extended
        .or_else(|| u32_at(fadt.bytes, FADT_DSDT).map(u64::from))
        .filter(|&address| address != 0)
}
