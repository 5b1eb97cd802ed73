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
const PAGE_2M: u64 = 2 << 20;

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

/// Prints what ACPI said about the processors and interrupt controllers.
pub fn report_topology(topology: &Topology, x2apic: bool) {
    println!(
        "manada: ACPI (RSDP from {}): {} processors enabled, {} disabled, {} IOAPICs; {} at {:#x}",
        topology.rsdp_source,
        topology.processors.len() + topology.processors_dropped,
        topology.processors_disabled,
        topology.io_apics.len(),
        if x2apic { "x2APIC" } else { "xAPIC" },
        topology.local_apic_address,
    );
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

/// Splits RAM among the cores, maps what lies above 4 GiB, and carves each core's
/// stacks and local page from its own share.
pub fn build_plan(
    ram: &[PhysRange],
    topology: &Topology,
    apic_ids: &[u32],
) -> (heapless::Vec<Slot, MAX_CORES>, Option<PhysRange>) {
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

    // Page tables for RAM above 4 GiB come from the first usable RAM below 4 GiB,
    // which the entry code already mapped.
    let gib_above_4g: u64 = ram
        .iter()
        .filter(|r| r.end > FOUR_GIB)
        .map(|r| (r.end - r.start.max(FOUR_GIB)) >> 30)
        .sum();
    // One table per 2 MiB of usable RAM too: the cores' memory is split into 4 KiB pages.
    let small_tables: u64 = usable.iter().map(|r| r.len() / PAGE_2M + 2).sum();
    let table_bytes = (gib_above_4g + small_tables + 8) * memory::PAGE_SIZE;
    let Some(table_area) = usable
        .iter_mut()
        .find(|r| r.end <= FOUR_GIB && r.len() >= table_bytes + memory::PAGE_SIZE)
    else {
        fatal(format_args!("no room below 4 GiB for page tables"))
    };
    let mut next_frame = (table_area.start + memory::PAGE_SIZE - 1) & !(memory::PAGE_SIZE - 1);
    let frames_end = next_frame + table_bytes;
    table_area.start = frames_end;
    let mut frames = move || {
        (next_frame < frames_end).then(|| {
            next_frame += memory::PAGE_SIZE;
            next_frame - memory::PAGE_SIZE
        })
    };
    if let Err(error) = paging::init(ram, &mut frames) {
        fatal(format_args!("cannot map RAM: {error:?}"));
    }
    for &mmio in core::iter::once(&topology.local_apic_address).chain(topology.io_apics.iter()) {
        if let Err(error) = paging::map_mmio(mmio, 4096, &mut frames) {
            fatal(format_args!(
                "cannot map the interrupt controllers: {error:?}"
            ));
        }
    }

    crate::pci::discover(topology, &mut frames);
    for range in usable.iter().copied() {
        if let Err(error) = paging::split(range, &mut frames) {
            fatal(format_args!(
                "cannot map the cores' memory in 4 KiB pages: {error:?}"
            ));
        }
    }

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
        let mut carve = |size: u64| match memory.carve(size) {
            Some(range) => range,
            None => fatal(format_args!(
                "core with APIC id {apic_id} has too little memory for its stacks"
            )),
        };
        let stack_top = carve(KERNEL_STACK_SIZE).end;
        let ist_tops: [u64; IST_STACKS] = core::array::from_fn(|_| carve(IST_STACK_SIZE).end);
        let local_page = carve(core::mem::size_of::<LocalPage>() as u64).start;
        let rings = carve((apic_ids.len() * core::mem::size_of::<Ring>()) as u64).start;
        let _ = plan.push(Slot {
            apic_id,
            stack_top,
            ist_tops,
            local_page,
            rings,
            memory,
        });
    }
    (plan, reserve)
}
