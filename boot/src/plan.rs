//! The start-up plan: which cores start, where each one's stacks, tables, mailbox rings
//! and memory share lie, and the memory set aside for device services. Decided by the
//! boot core before any other core runs; read-only once published.

use crate::acpi::Topology;
use crate::gdt::{CoreTables, IST_STACKS};
use crate::kernel::fatal;
use crate::paging;
use ipc::Doorbell;
use percore::bootinfo;
use percore::mailbox::{MailboxLocation, Ring};
use percore::memory::{self, CoreMemory, PhysRange};
use percore::{println, CoreLocal, MAX_CORES};

const KERNEL_STACK_SIZE: u64 = 64 * 1024;
const IST_STACK_SIZE: u64 = 16 * 1024;
const MIB: u64 = 1 << 20;
const FOUR_GIB: u64 = 4 << 30;

/// One core's start-up resources, decided by the boot core before any other core runs.
#[derive(Debug)]
pub struct Slot {
    pub apic_id: u32,
    pub stack_top: u64,
    pub ist_tops: [u64; IST_STACKS],
    /// A page of the core's own memory for its GDT, TSS, doorbell and `CoreLocal`.
    pub local_page: u64,
    /// The core's inbound mailbox rings, one per planned core.
    pub rings: u64,
    /// Page-table frames for splitting the 2 MiB pages of the core's memory when a
    /// thread's guard page goes there (`paging::TablePool`).
    pub table_frames: PhysRange,
    pub memory: CoreMemory,
}

/// The start-up plan, decided by the boot core. Read-only once published.
#[derive(Debug)]
pub struct Plan {
    /// Slot 0 is the boot core.
    pub slots: heapless::Vec<Slot, MAX_CORES>,
    pub cmdline: heapless::String<{ bootinfo::CMDLINE_MAX }>,
    pub app: &'static crate::App,
    pub service_reserve: Option<PhysRange>,
    /// True when every processor the firmware lists (enabled or not) has a slot, so
    /// waking "all but self" wakes exactly the planned cores.
    pub every_processor_planned: bool,
    /// What the start-up report says about the machine.
    pub machine: crate::report::Machine,
}

pub static PLAN: spin::Once<Plan> = spin::Once::new();
extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// The layout of a core's local page.
#[repr(C)]
pub struct LocalPage {
    pub tables: CoreTables,
    pub doorbell: Doorbell,
    pub local: CoreLocal,
}

/// Returns where `slot`'s mailbox lives, for a run of `cores` online cores.
pub fn mailbox_location(slot: &Slot, cores: usize) -> MailboxLocation {
    let page = slot.local_page as *const LocalPage;
    // SAFETY: the core of this slot initialised its rings (at least `cores` of them:
    // one per planned core) and its doorbell before it reported online, and never
    // moves or frees them; they are only used through their atomics from now on.
    let (inbound, doorbell) = unsafe {
        (
            core::slice::from_raw_parts(slot.rings as *const Ring, cores),
            &(*page).doorbell,
        )
    };
    MailboxLocation {
        inbound,
        doorbell,
        apic_id: slot.apic_id,
    }
}

/// Returns the APIC ids that get a start-up slot, boot core first.
pub fn choose_cores(
    topology: &Topology,
    boot_apic_id: u32,
    x2apic: bool,
) -> heapless::Vec<u32, MAX_CORES> {
    let mut ids: heapless::Vec<u32, MAX_CORES> = heapless::Vec::new();
    let _ = ids.push(boot_apic_id);
    let mut left_out = topology.processors_dropped;
    for processor in topology
        .processors
        .iter()
        .filter(|p| p.apic_id != boot_apic_id)
    {
        if !x2apic && processor.apic_id > 0xFE {
            println!(
                "manada: APIC id {} needs x2APIC, which this CPU lacks; leaving it out",
                processor.apic_id
            );
            left_out += 1;
        } else if ids.push(processor.apic_id).is_err() {
            left_out += 1;
        }
    }
    if left_out > 0 {
        println!(
            "manada: {left_out} processors left out (this kernel runs at most {MAX_CORES} cores)"
        );
    }
    ids
}

/// Page-table frames for the boot core's mappings (RAM above 4 GiB, device windows),
/// carved from usable RAM below 4 GiB, which the entry code already mapped.
#[derive(Debug)]
pub struct TableFrames {
    next: u64,
    end: u64,
}

impl TableFrames {
    /// Returns the next frame, or `None` when all are taken.
    pub fn take(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            self.next += memory::PAGE_SIZE;
            self.next - memory::PAGE_SIZE
        })
    }
}

/// Returns the RAM the cores may have (all of `ram` but the first MiB and the kernel
/// image) less the page-table frames, and those frames.
pub fn usable_memory(ram: &[PhysRange]) -> (heapless::Vec<PhysRange, 64>, TableFrames) {
    let mut usable: heapless::Vec<PhysRange, 64> = ram.iter().copied().collect();
    let kernel = PhysRange::new(
        &raw const __kernel_start as u64,
        &raw const __kernel_end as u64,
    );
    for hole in [PhysRange::new(0, MIB), kernel] {
        if !memory::subtract(&mut usable, hole) {
            fatal(format_args!("memory map too fragmented"));
        }
    }
    // A page directory per GiB above 4 GiB, their directory-pointer tables, and room for
    // device windows anywhere (each may need a pointer table and a directory).
    let gib_above_4g: u64 = ram
        .iter()
        .filter(|r| r.end > FOUR_GIB)
        .map(|r| (r.end - r.start.max(FOUR_GIB)).div_ceil(1 << 30))
        .sum();
    let table_bytes = (gib_above_4g + 16) * memory::PAGE_SIZE;
    let Some(table_area) = usable
        .iter_mut()
        .find(|r| r.end <= FOUR_GIB && r.len() >= table_bytes + memory::PAGE_SIZE)
    else {
        fatal(format_args!("no room below 4 GiB for page tables"))
    };
    let next = (table_area.start + memory::PAGE_SIZE - 1) & !(memory::PAGE_SIZE - 1);
    table_area.start = next + table_bytes;
    let frames = TableFrames {
        next,
        end: next + table_bytes,
    };
    (usable, frames)
}

/// Marks device memory below 4 GiB uncached, maps RAM above 4 GiB, and the interrupt
/// controllers wherever they are: a fixed number of page-table entries, whatever the
/// amount of RAM (2 MiB pages; a thread's guard page is split off when it is placed).
pub fn map_memory(ram: &[PhysRange], topology: &Topology, frames: &mut TableFrames) {
    let mut take = || frames.take();
    if let Err(error) = paging::init(ram, &mut take) {
        fatal(format_args!("cannot map RAM: {error:?}"));
    }
    for &mmio in core::iter::once(&topology.local_apic_address).chain(topology.io_apics.iter()) {
        if let Err(error) = paging::map_mmio(mmio, 4096, &mut take) {
            fatal(format_args!(
                "cannot map the interrupt controllers: {error:?}"
            ));
        }
    }
}

/// Splits `usable` (of `ram`) among the cores of `apic_ids` after setting the service
/// reserve aside, and carves each core's stacks, local page and rings from its own share.
pub fn carve(
    ram: &[PhysRange],
    mut usable: heapless::Vec<PhysRange, 64>,
    apic_ids: &[u32],
) -> (heapless::Vec<Slot, MAX_CORES>, Option<PhysRange>) {
    let total: u64 = usable.iter().map(PhysRange::len).sum();
    crate::services::MEMORY_TOTALS.call_once(|| (ram.iter().map(PhysRange::len).sum(), total));
    let reserve = memory::take_reserve(&mut usable, memory::service_reserve_size(total), FOUR_GIB);
    let Some(shares) = memory::partition::<MAX_CORES>(&usable, apic_ids.len()) else {
        fatal(format_args!(
            "cannot split memory among {} cores",
            apic_ids.len()
        ))
    };
    let mut plan = heapless::Vec::new();
    for (&apic_id, mut memory) in apic_ids.iter().zip(shares) {
        let carve = |memory: &mut CoreMemory, size: u64| match memory.carve(size) {
            Some(range) => range,
            None => fatal(format_args!(
                "core with APIC id {apic_id} has too little memory for its stacks"
            )),
        };
        let stack_top = carve(&mut memory, KERNEL_STACK_SIZE).end;
        let ist_tops: [u64; IST_STACKS] =
            core::array::from_fn(|_| carve(&mut memory, IST_STACK_SIZE).end);
        let local_page = carve(&mut memory, core::mem::size_of::<LocalPage>() as u64).start;
        let rings = carve(
            &mut memory,
            (apic_ids.len() * core::mem::size_of::<Ring>()) as u64,
        )
        .start;
        // Enough for every 2 MiB page of what is left (the frames' own pages included).
        let tables: u64 = memory
            .extents()
            .iter()
            .map(|extent| paging::tables_to_split(*extent))
            .sum();
        let table_frames = carve(&mut memory, tables * memory::PAGE_SIZE);
        let _ = plan.push(Slot {
            apic_id,
            stack_top,
            ist_tops,
            local_page,
            rings,
            table_frames,
            memory,
        });
    }
    (plan, reserve)
}
