//! The ACPI walk on QEMU 7.2's own tables (q35, pc and microvm, 4 and 64 processors,
//! dumped from guest memory: see `data/acpi/README.md`), checked against the `acpi`
//! crate as an oracle; then on corrupted, truncated and made-up tables.

use percore::acpi::{
    self, AcpiError, AmlBlock, Clocks, Ecam, PhysicalMemory, PmTimer, Problem, Processor, Root,
    RsdpSource, Table, Topology, HEADER_LENGTH,
};

/// Physical memory made of a few regions; everything else is unreadable.
#[derive(Debug, Clone)]
struct Regions(Vec<(u64, Vec<u8>)>);

impl PhysicalMemory for Regions {
    fn read(&self, address: u64, length: usize) -> Option<&[u8]> {
        self.0.iter().find_map(|(start, bytes)| {
            let offset = usize::try_from(address.checked_sub(*start)?).ok()?;
            bytes.get(offset..offset.checked_add(length)?)
        })
    }
}

impl Regions {
    /// Loads a dump: records of a u64 address, a u32 length and that many bytes.
    fn load(name: &str) -> Regions {
        let path = format!(
            "{}/tests/data/acpi/{name}.regions",
            env!("CARGO_MANIFEST_DIR")
        );
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut regions = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let address = u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
            let length = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
            regions.push((address, data[at + 12..at + 12 + length].to_vec()));
            at += 12 + length;
        }
        Regions(regions)
    }

    /// Returns the RSDP's address: the first "RSD PTR " on a 16-byte boundary.
    fn rsdp(&self) -> u64 {
        self.0
            .iter()
            .find_map(|(start, bytes)| {
                (0..bytes.len().saturating_sub(8))
                    .filter(|offset| (start + *offset as u64).is_multiple_of(16))
                    .find(|&offset| &bytes[offset..offset + 8] == b"RSD PTR ")
                    .map(|offset| start + offset as u64)
            })
            .expect("the dump holds the RSDP")
    }

    /// Returns the address and length of the RSDP (`RSD PTR `), the root table or the
    /// table with `signature`, found by the walk under test while the dump is intact.
    fn locate(&self, signature: &[u8]) -> (u64, usize) {
        if signature == b"RSD PTR " {
            return (self.rsdp(), 36);
        }
        let root = Root::locate(self, Some(self.rsdp())).unwrap();
        let table = if signature == root.table().signature() {
            root.table()
        } else {
            root.find(signature.try_into().unwrap()).unwrap().unwrap()
        };
        (table.address(), table.bytes().len())
    }

    /// Returns the bytes of the RSDP, the root table or the table with `signature`.
    fn table_mut(&mut self, signature: &[u8]) -> &mut [u8] {
        let (address, length) = self.locate(signature);
        self.0
            .iter_mut()
            .find_map(|(start, bytes)| {
                let offset = usize::try_from(address.checked_sub(*start)?).ok()?;
                bytes.get_mut(offset..offset + length)
            })
            .unwrap()
    }

    /// Changes the table with `signature` by `change` (given the table and what follows
    /// it in memory), then makes its checksum right again for the length it then states.
    fn edit(&mut self, signature: &[u8; 4], change: impl FnOnce(&mut [u8])) {
        let (address, _) = self.locate(signature);
        let region = self
            .0
            .iter_mut()
            .find(|(start, bytes)| (*start..*start + bytes.len() as u64).contains(&address))
            .unwrap();
        let rest = &mut region.1[(address - region.0) as usize..];
        change(rest);
        let length = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
        fix_checksum(&mut rest[..length]);
    }
}

fn fix_checksum(table: &mut [u8]) {
    table[9] = 0;
    let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    table[9] = sum.wrapping_neg();
}

const DUMPS: [&str; 5] = ["q35-4", "q35-64", "pc-4", "microvm-4", "microvm-64"];

fn topology(memory: &Regions) -> Topology {
    Root::locate(memory, Some(memory.rsdp()))
        .and_then(|root| root.topology())
        .expect("QEMU's tables are valid")
}

fn apic_ids(topology: &Topology) -> Vec<u32> {
    topology.processors.iter().map(|p| p.apic_id).collect()
}

#[test]
fn q35_tables() {
    let memory = Regions::load("q35-4");
    let root = Root::locate(&memory, Some(memory.rsdp())).unwrap();
    assert_eq!(root.source(), RsdpSource::Given);
    // SeaBIOS writes ACPI 1.0 pointers: an RSDT of 32-bit entries.
    assert_eq!(&root.table().signature(), b"RSDT");
    let topology = root.topology().unwrap();
    assert_eq!(apic_ids(&topology), [0, 1, 2, 3]);
    assert_eq!(topology.processors_disabled, 0);
    assert_eq!(topology.local_apic_address, 0xFEE0_0000);
    assert_eq!(topology.io_apics.as_slice(), [0xFEC0_0000]);
    assert_eq!(
        root.clocks(),
        Clocks {
            hpet: Some(0xFED0_0000),
            pm_timer: Some(PmTimer {
                port: 0x608,
                is_32_bit: false
            })
        }
    );
    assert_eq!(
        root.ecam(),
        Some(Ecam {
            base: 0xB000_0000,
            segment: 0,
            first_bus: 0,
            last_bus: 255
        })
    );
    let aml = root.aml_tables();
    assert_eq!(aml.len(), 1, "q35 has a DSDT and no SSDT");
    let dsdt = memory
        .read(aml[0].address - HEADER_LENGTH as u64, 4)
        .unwrap();
    assert_eq!(dsdt, b"DSDT");
}

#[test]
fn pc_and_microvm_tables() {
    let pc = Regions::load("pc-4");
    let root = Root::locate(&pc, Some(pc.rsdp())).unwrap();
    assert_eq!(apic_ids(&root.topology().unwrap()), [0, 1, 2, 3]);
    assert_eq!(root.ecam(), None, "pc has no PCI Express");
    assert_eq!(root.clocks().pm_timer.map(|timer| timer.port), Some(0x608));

    let microvm = Regions::load("microvm-4");
    let root = Root::locate(&microvm, Some(microvm.rsdp())).unwrap();
    // qboot writes an ACPI 2.0 RSDP and an XSDT.
    assert_eq!(&root.table().signature(), b"XSDT");
    let topology = root.topology().unwrap();
    assert_eq!(apic_ids(&topology), [0, 1, 2, 3]);
    assert_eq!(root.clocks().hpet, None);
    assert_eq!(
        root.clocks().pm_timer,
        None,
        "hardware-reduced ACPI has no PM timer"
    );
    assert_eq!(root.ecam(), None);
    assert_eq!(root.aml_tables().len(), 1);
}

#[test]
fn sixty_four_processors() {
    for name in ["q35-64", "microvm-64"] {
        let memory = Regions::load(name);
        assert_eq!(
            apic_ids(&topology(&memory)),
            (0..64).collect::<Vec<_>>(),
            "{name}"
        );
    }
}

#[test]
fn rsdp_found_in_the_bios_area_without_a_given_address() {
    for name in DUMPS {
        let memory = Regions::load(name);
        for given in [None, Some(0x1234), Some(memory.rsdp() + 16)] {
            let root = Root::locate(&memory, given).unwrap();
            assert_eq!(root.source(), RsdpSource::BiosArea, "{name} {given:?}");
            assert_eq!(root.topology().unwrap(), topology(&memory));
        }
    }
}

/// The `acpi` crate reads the same tables through raw pointers into the dump.
mod oracle {
    use super::Regions;
    use acpi::madt::{Madt, MadtEntry};
    use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
    use core::ptr::NonNull;

    #[derive(Clone)]
    struct Handler(std::sync::Arc<Regions>);

    impl AcpiHandler for Handler {
        unsafe fn map_physical_region<T>(
            &self,
            physical_address: usize,
            size: usize,
        ) -> PhysicalMapping<Self, T> {
            let bytes =
                percore::acpi::PhysicalMemory::read(&*self.0, physical_address as u64, size)
                    .expect("the oracle reads inside the dump");
            let pointer = NonNull::new(bytes.as_ptr() as *mut T).unwrap();
            // SAFETY: the bytes live as long as the Arc in the handler, which the
            // mapping holds; the crate reads through the pointer only.
            unsafe { PhysicalMapping::new(physical_address, pointer, size, size, self.clone()) }
        }

        fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
    }

    /// Returns the enabled processors' APIC ids, the disabled count, the local APIC
    /// address and the IOAPICs as the `acpi` crate reads them.
    pub fn madt(memory: &Regions) -> (Vec<u32>, usize, u64, Vec<u64>) {
        let handler = Handler(std::sync::Arc::new(memory.clone()));
        // SAFETY: the address is the dump's RSDP; the handler maps only dump bytes.
        let tables = unsafe { AcpiTables::from_rsdp(handler, memory.rsdp() as usize) }.unwrap();
        let madt = tables.find_table::<Madt>().unwrap();
        let (mut ids, mut disabled, mut io) = (Vec::new(), 0, Vec::new());
        let mut local = u64::from(madt.get().local_apic_address);
        for entry in madt.get().entries() {
            match entry {
                MadtEntry::LocalApic(e) if e.flags & 1 == 1 => ids.push(u32::from(e.apic_id)),
                MadtEntry::LocalX2Apic(e) if e.flags & 1 == 1 => ids.push(e.x2apic_id),
                MadtEntry::LocalApic(_) | MadtEntry::LocalX2Apic(_) => disabled += 1,
                MadtEntry::IoApic(e) => io.push(u64::from(e.io_apic_address)),
                MadtEntry::LocalApicAddressOverride(e) => local = e.local_apic_address,
                _ => {}
            }
        }
        (ids, disabled, local, io)
    }

    /// What the `acpi` crate reads besides the MADT.
    pub struct Others {
        /// The PM timer's port and whether it counts 32 bits.
        pub pm_timer: Option<(u16, bool)>,
        pub hpet: Option<u64>,
        /// Segment 0's ECAM base.
        pub ecam: Option<u64>,
        /// The AML blocks: address and length.
        pub aml: Vec<(u64, usize)>,
    }

    /// Returns the PM timer, the HPET's base, segment 0's ECAM base and the AML blocks
    /// as the `acpi` crate reads them.
    pub fn others(memory: &Regions) -> Others {
        use acpi::address::AddressSpace;
        let handler = Handler(std::sync::Arc::new(memory.clone()));
        // SAFETY: as in `madt`.
        let tables = unsafe { AcpiTables::from_rsdp(handler, memory.rsdp() as usize) }.unwrap();
        let pm_timer = tables
            .find_table::<acpi::fadt::Fadt>()
            .ok()
            .and_then(|fadt| {
                let block = fadt.pm_timer_block().ok().flatten()?;
                (block.address_space == AddressSpace::SystemIo)
                    .then_some((block.address as u16, { fadt.flags }.pm_timer_is_32_bit()))
            });
        let hpet = acpi::HpetInfo::new(&tables)
            .ok()
            .map(|hpet| hpet.base_address as u64);
        let ecam = tables
            .find_table::<acpi::mcfg::Mcfg>()
            .ok()
            .and_then(|mcfg| {
                mcfg.entries()
                    .iter()
                    .find(|entry| entry.pci_segment_group == 0)
                    .map(|entry| entry.base_address)
            });
        let aml = tables
            .dsdt()
            .into_iter()
            .chain(tables.ssdts())
            .map(|table| (table.address as u64, table.length as usize))
            .collect();
        Others {
            pm_timer,
            hpet,
            ecam,
            aml,
        }
    }
}

#[test]
fn agrees_with_the_acpi_crate() {
    for name in DUMPS {
        let memory = Regions::load(name);
        let ours = topology(&memory);
        let (ids, disabled, local, io) = oracle::madt(&memory);
        assert_eq!(apic_ids(&ours), ids, "{name}");
        assert_eq!(ours.processors_disabled, disabled, "{name}");
        assert_eq!(ours.local_apic_address, local, "{name}");
        assert_eq!(ours.io_apics.to_vec(), io, "{name}");
        let oracle::Others {
            pm_timer,
            hpet,
            ecam,
            aml,
        } = oracle::others(&memory);
        let root = Root::locate(&memory, Some(memory.rsdp())).unwrap();
        let clocks = root.clocks();
        let timer = clocks.pm_timer.map(|timer| (timer.port, timer.is_32_bit));
        assert_eq!((timer, clocks.hpet), (pm_timer, hpet), "{name}");
        assert_eq!(root.ecam().map(|ecam| ecam.base), ecam, "{name}");
        let blocks: Vec<(u64, usize)> = root
            .aml_tables()
            .iter()
            .map(|block| (block.address, block.length))
            .collect();
        assert_eq!(blocks, aml, "{name}");
    }
}

#[test]
fn a_bad_checksum_refuses_the_madt_and_skips_a_clock() {
    let mut memory = Regions::load("q35-4");
    memory.table_mut(b"APIC")[40] ^= 1;
    let error = Root::locate(&memory, Some(memory.rsdp()))
        .unwrap()
        .topology()
        .unwrap_err();
    assert!(
        matches!(error, AcpiError::Table { signature, problem: Problem::Checksum, .. } if &signature == b"APIC"),
        "{error:?}"
    );

    let mut memory = Regions::load("q35-4");
    memory.table_mut(b"HPET")[50] ^= 1;
    memory.table_mut(b"FACP")[76] ^= 1;
    memory.table_mut(b"MCFG")[44] ^= 1;
    let root = Root::locate(&memory, Some(memory.rsdp())).unwrap();
    assert!(root.topology().is_ok());
    assert_eq!(
        root.clocks(),
        Clocks {
            hpet: None,
            pm_timer: None
        }
    );
    assert_eq!(root.ecam(), None);
    assert!(root.aml_tables().is_empty(), "no valid FADT: no DSDT");
}

#[test]
fn a_corrupt_pointer_or_root_table_is_refused() {
    let mut memory = Regions::load("q35-4");
    memory.table_mut(b"RSD PTR ")[12] ^= 1;
    assert_eq!(
        Root::locate(&memory, Some(memory.rsdp())).unwrap_err(),
        AcpiError::NoRsdp
    );

    let mut memory = Regions::load("microvm-4");
    // The ACPI 2.0 RSDP's second checksum covers the XSDT address (the first does not).
    memory.table_mut(b"RSD PTR ")[24] ^= 1;
    assert_eq!(
        Root::locate(&memory, Some(memory.rsdp())).unwrap_err(),
        AcpiError::NoRsdp
    );

    let mut memory = Regions::load("q35-4");
    memory.table_mut(b"RSDT")[40] ^= 1;
    assert!(matches!(
        Root::locate(&memory, Some(memory.rsdp())).unwrap_err(),
        AcpiError::Table {
            problem: Problem::Checksum,
            ..
        }
    ));
}

#[test]
fn lengths_are_bounded() {
    for (length, problem) in [
        (0u32, Problem::Length(0)),
        (35, Problem::Length(35)),
        (u32::MAX, Problem::Length(u32::MAX)),
        // Longer than the bytes there are: reading it would run past the table.
        (100_000, Problem::Unreadable),
    ] {
        let mut memory = Regions::load("q35-4");
        memory.table_mut(b"APIC")[4..8].copy_from_slice(&length.to_le_bytes());
        let error = Root::locate(&memory, Some(memory.rsdp()))
            .unwrap()
            .topology()
            .unwrap_err();
        assert!(
            matches!(error, AcpiError::Table { problem: p, .. } if p == problem),
            "length {length}: {error:?}"
        );
    }
}

#[test]
fn malformed_madt_entries_are_refused() {
    // The first entry after the 44 bytes of header and MADT fields.
    for (what, change) in [
        ("zero length", (45usize, 0u8)),
        ("one byte", (45, 1)),
        ("past the end", (45, 255)),
        ("local APIC entry too short", (45, 3)),
    ] {
        let mut memory = Regions::load("q35-4");
        memory.edit(b"APIC", |madt| {
            assert_eq!(madt[44], 0, "the first entry is a local APIC");
            madt[change.0] = change.1;
        });
        let error = Root::locate(&memory, Some(memory.rsdp()))
            .unwrap()
            .topology()
            .unwrap_err();
        assert!(
            matches!(
                error,
                AcpiError::Table {
                    problem: Problem::Truncated,
                    ..
                }
            ),
            "{what}: {error:?}"
        );
    }
    // An entry cut short by the end of the table.
    let mut memory = Regions::load("q35-4");
    memory.edit(b"APIC", |madt| {
        let length = u32::from_le_bytes(madt[4..8].try_into().unwrap()) - 2;
        madt[4..8].copy_from_slice(&length.to_le_bytes());
    });
    assert!(Root::locate(&memory, Some(memory.rsdp()))
        .unwrap()
        .topology()
        .is_err());
}

/// Returns a table with `signature` and `body`, its length and checksum filled in.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER_LENGTH];
    bytes[..4].copy_from_slice(signature);
    bytes[8] = revision;
    bytes.extend_from_slice(body);
    let length = bytes.len() as u32;
    bytes[4..8].copy_from_slice(&length.to_le_bytes());
    fix_checksum(&mut bytes);
    bytes
}

/// Returns memory with an ACPI 2.0 RSDP at 0xE0000 whose XSDT lists `tables`, placed
/// one per 64 KiB from 0x100000.
fn machine(tables: &[Vec<u8>]) -> Regions {
    let addresses: Vec<u64> = (0..tables.len() as u64)
        .map(|i| 0x10_0000 + i * 0x1_0000)
        .collect();
    let entries: Vec<u8> = addresses.iter().flat_map(|a| a.to_le_bytes()).collect();
    let xsdt_address = 0xF_0000u64;
    let mut rsdp = vec![0u8; 36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[15] = 2;
    rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
    rsdp[24..32].copy_from_slice(&xsdt_address.to_le_bytes());
    let first = rsdp[..20].iter().fold(0u8, |s, b| s.wrapping_add(*b));
    rsdp[8] = first.wrapping_neg();
    let all = rsdp.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    rsdp[32] = all.wrapping_neg();
    let mut regions = vec![
        (0xE_0000, rsdp),
        (xsdt_address, table(b"XSDT", 1, &entries)),
    ];
    regions.extend(addresses.into_iter().zip(tables.iter().cloned()));
    Regions(regions)
}

fn madt(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    for entry in entries {
        body.extend_from_slice(entry);
    }
    table(b"APIC", 4, &body)
}

fn local_apic(id: u8, flags: u32) -> Vec<u8> {
    let mut entry = vec![0, 8, id, id];
    entry.extend_from_slice(&flags.to_le_bytes());
    entry
}

fn local_x2apic(id: u32, flags: u32) -> Vec<u8> {
    let mut entry = vec![9, 16, 0, 0];
    entry.extend_from_slice(&id.to_le_bytes());
    entry.extend_from_slice(&flags.to_le_bytes());
    entry.extend_from_slice(&id.to_le_bytes());
    entry
}

#[test]
fn processors_listed_twice_count_once_and_disabled_ones_are_counted() {
    let x2 = local_x2apic(300, 1);
    let entries: [&[u8]; 6] = [
        &local_apic(0, 1),
        &local_apic(1, 1),
        &local_x2apic(1, 1),
        &local_apic(2, 0),
        &x2,
        &x2,
    ];
    let override_entry = {
        let mut entry = vec![5, 12, 0, 0];
        entry.extend_from_slice(&0x1_2345_6000u64.to_le_bytes());
        entry
    };
    let mut all = entries.to_vec();
    all.push(&override_entry);
    let memory = machine(&[madt(&all)]);
    let root = Root::locate(&memory, None).unwrap();
    let topology = root.topology().unwrap();
    assert_eq!(
        topology.processors.as_slice(),
        [
            Processor {
                apic_id: 0,
                x2apic_entry: false
            },
            Processor {
                apic_id: 1,
                x2apic_entry: false
            },
            Processor {
                apic_id: 300,
                x2apic_entry: true
            },
        ]
    );
    assert_eq!(topology.processors_disabled, 1);
    assert_eq!(topology.local_apic_address, 0x1_2345_6000);
    assert_eq!(root.clocks().hpet, None);
}

#[test]
fn no_madt_is_an_error() {
    let memory = machine(&[table(b"HPET", 1, &[0; 20])]);
    assert_eq!(
        Root::locate(&memory, None).unwrap().topology().unwrap_err(),
        AcpiError::NoMadt
    );
}

#[test]
fn aml_of_the_dsdt_and_the_valid_ssdts() {
    let dsdt = table(b"DSDT", 2, b"dsdt aml");
    let mut fadt_body = vec![0u8; 276 - HEADER_LENGTH];
    // The 64-bit DSDT field (offset 140), with a wrong 32-bit one that must lose.
    fadt_body[140 - HEADER_LENGTH..148 - HEADER_LENGTH]
        .copy_from_slice(&0x20_0000u64.to_le_bytes());
    fadt_body[40 - HEADER_LENGTH..44 - HEADER_LENGTH].copy_from_slice(&0x1234u32.to_le_bytes());
    let fadt = table(b"FACP", 6, &fadt_body);
    let ssdt = table(b"SSDT", 2, b"first ssdt");
    let mut bad_ssdt = table(b"SSDT", 2, b"bad ssdt");
    bad_ssdt[HEADER_LENGTH] ^= 1;
    let last_ssdt = table(b"SSDT", 2, b"last");
    let mut memory = machine(&[madt(&[&local_apic(0, 1)]), fadt, ssdt, bad_ssdt, last_ssdt]);
    memory.0.push((0x20_0000, dsdt));
    let root = Root::locate(&memory, None).unwrap();
    let aml = root.aml_tables();
    let bodies: Vec<&[u8]> = aml
        .iter()
        .map(|block: &AmlBlock| memory.read(block.address, block.length).unwrap())
        .collect();
    assert_eq!(bodies, [&b"dsdt aml"[..], b"first ssdt", b"last"]);
}

#[test]
fn random_corruption_never_panics() {
    let mut random = percore::random::XorShift64::new(0x9E37_79B9_7F4A_7C15);
    let mut next = || random.next_u64();
    // Each dump with the tables there are to corrupt: the RSDP, the root table and
    // every table it lists.
    let dumps = DUMPS.map(|name| {
        let memory = Regions::load(name);
        let root = Root::locate(&memory, Some(memory.rsdp())).unwrap();
        let mut tables = vec![(memory.rsdp(), 36), {
            let table = root.table();
            (table.address(), table.bytes().len())
        }];
        for address in root.entries() {
            let table = Table::read(&memory, address).unwrap();
            tables.push((address, table.bytes().len()));
        }
        (memory.rsdp(), tables, memory)
    });
    for round in 0..10_000 {
        let (rsdp, tables, memory) = &dumps[round % dumps.len()];
        let mut memory = memory.clone();
        let (address, length) = tables[(next() % tables.len() as u64) as usize];
        let region = memory
            .0
            .iter_mut()
            .find(|(start, bytes)| (*start..*start + bytes.len() as u64).contains(&address))
            .unwrap();
        let table = &mut region.1[(address - region.0) as usize..];
        for _ in 0..1 + next() % 4 {
            table[(next() % length as u64) as usize] = next() as u8;
        }
        // Half the time the checksum is made right again (for the length the table now
        // states, where that fits), so that the walk reads the changed fields.
        let stated = u32::from_le_bytes(table[4..8].try_into().unwrap()) as usize;
        if next() % 2 == 0 && (HEADER_LENGTH..=table.len()).contains(&stated) && address != *rsdp {
            fix_checksum(&mut table[..stated]);
        }
        if let Ok(root) = Root::locate(&memory, Some(*rsdp)) {
            let _ = root.topology();
            let _ = root.clocks();
            let _ = root.ecam();
            for block in root.aml_tables() {
                assert!(memory.read(block.address, block.length).is_some());
            }
        }
    }
}

#[test]
fn table_from_bytes_checks_length_and_checksum() {
    let good = table(b"TEST", 1, b"body");
    assert!(Table::from_bytes(0, &good).is_ok());
    assert_eq!(
        Table::from_bytes(0, &good[..good.len() - 1]).unwrap_err(),
        Problem::Length(good.len() as u32)
    );
    let mut bad = good.clone();
    bad[HEADER_LENGTH] ^= 1;
    assert_eq!(Table::from_bytes(0, &bad).unwrap_err(), Problem::Checksum);
    assert_eq!(acpi::hpet_base(&Table::from_bytes(0, &good).unwrap()), None);
}
