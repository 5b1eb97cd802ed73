//! The start-up plan: which cores start, where each one's stacks, local page and mailbox
//! rings lie (its block of the start-up area, `percore::memory::BlockLayout`), each
//! one's memory share, and the memory set aside for device services. Decided by the boot
//! core before any other core runs, read-only once published; each core works out its
//! own block ([`Plan::slot`]) and page-table frames ([`Plan::memory`]) from it, so the
//! boot core's part grows with the core count only by a list of APIC ids and shares.

use crate::acpi::Topology;
use crate::exit::fatal;
use crate::gdt::{CoreTables, IST_STACKS};
use crate::paging;
use ipc::Doorbell;
use percore::mailbox::{MailboxLocation, Ring};
use percore::memory::{self, CoreMemory, PhysRange};
use percore::{println, CoreLocal, MAX_CORES};

const KERNEL_STACK_SIZE: u64 = 64 * 1024;
const IST_STACK_SIZE: u64 = 16 * 1024;
const FOUR_GIB: u64 = 4 << 30;

/// One core's start-up resources: its block of the start-up area.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub apic_id: u32,
    pub stack_top: u64,
    pub ist_tops: [u64; IST_STACKS],
    /// A page for the core's GDT, TSS, doorbell and `CoreLocal`.
    pub local_page: u64,
    /// The core's inbound mailbox rings, one per planned core.
    pub rings: u64,
}

/// The pieces of a block of the start-up area: the kernel stack, the IST stacks, the
/// local page, the rings.
const PIECES: usize = 3 + IST_STACKS;
const LOCAL_PAGE_PIECE: usize = 1 + IST_STACKS;
const RINGS_PIECE: usize = 2 + IST_STACKS;

/// The start-up plan, decided by the boot core. Read-only once published.
#[derive(Debug)]
pub struct Plan {
    /// The planned cores' APIC ids in start-up slot order; slot 0 is the boot core.
    pub apic_ids: heapless::Vec<u32, MAX_CORES>,
    /// Where the start-up area begins (one block per slot), and its blocks' layout.
    area: u64,
    block: memory::BlockLayout<PIECES>,
    /// The memory shares, set by the boot core once the cores are online (they need
    /// them only after `GO`).
    shares: spin::Once<Shares>,
}

/// The cores' shares of memory and the service reserve ([`share_out`]).
#[derive(Debug)]
pub struct Shares {
    /// Each planned core's share, in slot order.
    pub cores: heapless::Vec<CoreMemory, MAX_CORES>,
    pub service_reserve: Option<PhysRange>,
}

impl Plan {
    /// Returns the plan for the cores of `apic_ids`, whose blocks [`take_area`] found.
    pub fn new(apic_ids: heapless::Vec<u32, MAX_CORES>, area: Area) -> Plan {
        Plan {
            apic_ids,
            area: area.start,
            block: area.block,
            shares: spin::Once::new(),
        }
    }

    /// Records the shares ([`share_out`]). Boot core, before `GO`.
    pub fn set_shares(&self, shares: Shares) -> &Shares {
        self.shares.call_once(|| shares)
    }

    /// Returns how many cores are planned.
    pub fn cores(&self) -> usize {
        self.apic_ids.len()
    }

    /// Returns the start-up resources of slot `index`.
    pub fn slot(&self, index: usize) -> Slot {
        let start = self.area + index as u64 * self.block.size();
        Slot {
            apic_id: self.apic_ids[index],
            stack_top: self.block.piece(start, 0).end,
            ist_tops: core::array::from_fn(|ist| self.block.piece(start, 1 + ist).end),
            local_page: self.block.piece(start, LOCAL_PAGE_PIECE).start,
            rings: self.block.piece(start, RINGS_PIECE).start,
        }
    }

    /// Returns slot `index`'s share of memory split in two: page-table frames for
    /// splitting its 2 MiB pages when a thread's guard page goes there
    /// (`paging::TablePool`; one per 2 MiB page of the share, their own included), and
    /// the rest, its heap's.
    pub fn memory(&self, index: usize) -> (PhysRange, CoreMemory) {
        let shares = self.shares.get().expect("shares are set before GO");
        let mut share = shares.cores[index].clone();
        let tables: u64 = share
            .extents()
            .iter()
            .map(|extent| paging::tables_to_split(*extent))
            .sum();
        let frames = share
            .carve(tables * memory::PAGE_SIZE)
            .unwrap_or(PhysRange::new(0, 0));
        (frames, share)
    }
}

pub static PLAN: spin::Once<Plan> = spin::Once::new();
extern "C" {
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
    // The image is linked at 1 MiB (linker script), so the first MiB and the image are
    // one hole, below its end.
    let image_end = &raw const __kernel_end as u64;
    let mut usable: heapless::Vec<PhysRange, 64> = ram
        .iter()
        .map(|range| PhysRange::new(range.start.max(image_end), range.end))
        .filter(|range| !range.is_empty())
        .collect();
    // A page directory per GiB above 4 GiB, their directory-pointer tables, and room for
    // device windows anywhere (each may need a pointer table and a directory).
    let gib_above_4g: u64 = ram
        .iter()
        .filter(|r| r.end > FOUR_GIB)
        .map(|r| (r.end - r.start.max(FOUR_GIB)).div_ceil(1 << 30))
        .sum();
    let table_bytes = (gib_above_4g + 16) * memory::PAGE_SIZE;
    let Some(tables) =
        memory::take_front(&mut usable, table_bytes).filter(|tables| tables.end <= FOUR_GIB)
    else {
        fatal(format_args!("no room below 4 GiB for page tables"))
    };
    let frames = TableFrames {
        next: tables.start,
        end: tables.end,
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

/// The start-up area: where it begins, and the layout of its blocks.
#[derive(Debug)]
pub struct Area {
    pub start: u64,
    pub block: memory::BlockLayout<PIECES>,
}

/// Takes the start-up area, one block per core of a run of `cores`, from the front of
/// `usable`.
pub fn take_area(usable: &mut heapless::Vec<PhysRange, 64>, cores: usize) -> Area {
    let block = block_layout(cores);
    let needed = block.size() * cores as u64;
    let Some(area) = memory::take_front(usable, needed) else {
        let largest = usable.iter().map(PhysRange::len).max().unwrap_or(0);
        fatal(format_args!(
            "too little memory to start {cores} core{}: their start-up area needs {} KiB in \
             one piece and the largest free piece has {} KiB; run with more memory (--mem)",
            if cores == 1 { "" } else { "s" },
            needed.div_ceil(1024),
            largest / 1024
        ))
    };
    Area {
        start: area.start,
        block,
    }
}

/// Sets the service reserve aside from `usable` (what is left of `ram` after the
/// start-up area) and splits the rest among `cores` cores.
pub fn share_out(
    ram: &[PhysRange],
    mut usable: heapless::Vec<PhysRange, 64>,
    cores: usize,
) -> Shares {
    let total: u64 = usable.iter().map(PhysRange::len).sum();
    crate::services::MEMORY_TOTALS.call_once(|| (ram.iter().map(PhysRange::len).sum(), total));
    let service_reserve =
        memory::take_reserve(&mut usable, memory::service_reserve_size(total), FOUR_GIB);
    let Some(shares) = memory::partition::<MAX_CORES>(&usable, cores) else {
        fatal(format_args!("cannot split memory among {cores} cores"))
    };
    if shares.iter().any(|share| share.bytes() < MIN_SHARE) {
        fatal(format_args!(
            "too little memory for {cores} cores: each needs {} KiB",
            MIN_SHARE / 1024
        ));
    }
    Shares {
        cores: shares,
        service_reserve,
    }
}

/// The least memory share a core starts with: its page-table frames and a heap for its
/// scheduler and first thread (a 64 KiB stack and its record).
const MIN_SHARE: u64 = 256 * 1024;

/// Returns the layout of a block of the start-up area for a run of `cores` planned cores.
fn block_layout(cores: usize) -> memory::BlockLayout<PIECES> {
    let mut sizes = [IST_STACK_SIZE; PIECES];
    sizes[0] = KERNEL_STACK_SIZE;
    sizes[LOCAL_PAGE_PIECE] = core::mem::size_of::<LocalPage>() as u64;
    sizes[RINGS_PIECE] = (cores * core::mem::size_of::<Ring>()) as u64;
    memory::BlockLayout::new(sizes)
}
