//! The kernel's one set of page tables: an identity map with 2 MiB pages.
//!
//! The entry code maps 0..4 GiB. [`init`] then marks the 2 MiB pages of the low 4 GiB
//! that hold no RAM (LAPIC, IOAPIC, PCI windows, ECAM) uncached, and maps RAM above
//! 4 GiB; [`map_mmio`] adds device windows anywhere in the physical address space.
//! So boot writes a fixed number of entries, whatever the amount of RAM.
//!
//! Only a thread stack's guard page needs a 4 KiB page: the core that places one splits
//! the 2 MiB page holding it when it first needs to ([`split_at`], with a frame from its
//! [`TablePool`]), then unmaps the guard page ([`set_present`]).
//!
//! Architecture invariant: only the boot core writes these tables, and only before the
//! other cores start, with two exceptions, both on pages of a core's own memory: a core
//! may replace a 2 MiB mapping by a table of 4 KiB mappings of the same frames with the
//! same attributes (one compare-and-exchange, as a 2 MiB page may hold two cores'
//! memory), and may flip the present bit of a 4 KiB page of its own memory (the guard
//! pages of its thread stacks). No other core uses that page, so only the local TLB
//! entry needs flushing. Table frames are never freed.

use crate::entry::page_table_root;
use core::sync::atomic::{AtomicU64, Ordering};
use percore::PhysRange;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const PAGE_2M: u64 = 2 << 20;
const FOUR_GIB: u64 = 4 << 30;
/// Highest physical address the tables may map (52-bit physical addresses).
const PHYSICAL_LIMIT: u64 = 1 << 52;

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame was left for an intermediate table.
    OutOfFrames,
    /// The address is beyond what x86-64 page tables reach.
    OutOfRange(u64),
}

/// Hands out zero-filled 4 KiB frames for page tables.
pub type FrameSource<'a> = &'a mut dyn FnMut() -> Option<u64>;

fn table(physical: u64) -> &'static mut [u64; 512] {
    // SAFETY: `physical` is a page-table frame (the boot tables or one from the frame
    // source, or a new table not yet linked in), identity mapped, 4 KiB aligned; only
    // the boot core touches the linked tables through this, before other cores start
    // (module invariant), so no other reference exists.
    unsafe { &mut *(physical as *mut [u64; 512]) }
}

fn next_level(entry: &mut u64, frames: FrameSource<'_>) -> Result<u64, MapError> {
    if *entry & PRESENT == 0 {
        let frame = frames().ok_or(MapError::OutOfFrames)?;
        table(frame).fill(0);
        *entry = frame | PRESENT | WRITABLE;
    }
    Ok(*entry & ADDRESS_MASK)
}

fn map_2m(physical: u64, flags: u64, frames: FrameSource<'_>) -> Result<(), MapError> {
    if physical >= PHYSICAL_LIMIT {
        return Err(MapError::OutOfRange(physical));
    }
    let pml4 = table(page_table_root());
    let pdpt = table(next_level(
        &mut pml4[(physical >> 39) as usize & 511],
        frames,
    )?);
    let pd = table(next_level(
        &mut pdpt[(physical >> 30) as usize & 511],
        frames,
    )?);
    let entry = &mut pd[(physical >> 21) as usize & 511];
    if *entry & PRESENT == 0 {
        *entry = physical | PRESENT | WRITABLE | HUGE | flags;
    }
    Ok(())
}

fn flush() {
    // SAFETY: reloading CR3 with the same root only flushes this core's TLB.
    unsafe { x86::controlregs::cr3_write(page_table_root()) };
}

/// Marks non-RAM pages below 4 GiB uncached and maps `ram` above 4 GiB.
pub fn init(ram: &[PhysRange], frames: FrameSource<'_>) -> Result<(), MapError> {
    let low = table(page_table_root());
    let pdpt = table(low[0] & ADDRESS_MASK);
    // The entry code's four directories map 0..4 GiB in order: 2048 entries in a row.
    let mut directory = [0u64; 4];
    for (gib, entry) in directory.iter_mut().enumerate() {
        *entry = pdpt[gib] & ADDRESS_MASK;
    }
    // Every 2 MiB page that holds no byte of RAM gets uncached: walk the gaps between
    // the (sorted) RAM ranges rather than test each of the 2048 pages against them.
    let mut from = 0;
    let mark = |start: u64, end: u64| {
        let first = start.div_ceil(PAGE_2M);
        let last = (end / PAGE_2M).min(FOUR_GIB / PAGE_2M);
        for page in first..last {
            let pd = table(directory[(page / 512) as usize]);
            pd[(page % 512) as usize] |= CACHE_DISABLE | WRITE_THROUGH;
        }
    };
    for range in ram.iter().filter(|r| r.start < FOUR_GIB) {
        mark(from, range.start);
        from = from.max(range.end);
    }
    mark(from, FOUR_GIB);
    for range in ram.iter().filter(|r| r.end > FOUR_GIB) {
        let mut page = range.start.max(FOUR_GIB) & !(PAGE_2M - 1);
        while page < range.end {
            map_2m(page, 0, frames)?;
            page += PAGE_2M;
        }
    }
    flush();
    Ok(())
}

/// Returns the entry that maps `address` at the 2 MiB level (a page directory entry),
/// or `None` when no page directory covers it.
fn directory_entry(address: u64) -> Option<*mut u64> {
    let entry = |table_address: u64, index: u64| (table_address + index * 8) as *mut u64;
    let read = |pointer: *mut u64| {
        // SAFETY: page-table entries are identity-mapped, 8-byte aligned words; these
        // upper levels are written only by the boot core before the other cores start.
        unsafe { core::ptr::read_volatile(pointer) }
    };
    let pml4e = read(entry(page_table_root(), address >> 39 & 511));
    if pml4e & PRESENT == 0 {
        return None;
    }
    let pdpte = read(entry(pml4e & ADDRESS_MASK, address >> 30 & 511));
    if pdpte & PRESENT == 0 || pdpte & HUGE != 0 {
        return None;
    }
    Some(entry(pdpte & ADDRESS_MASK, address >> 21 & 511))
}

/// Returns whether the 2 MiB page holding `address` is mapped with 4 KiB pages
/// (`Some(true)`), as one 2 MiB page (`Some(false)`), or not at all (`None`).
pub fn is_split(address: u64) -> Option<bool> {
    let pde = directory_entry(address)?;
    // SAFETY: an identity-mapped, aligned entry; it changes only by a whole-word swap
    // in `split_at`, so any value read is a valid one.
    let value = unsafe { AtomicU64::from_ptr(pde) }.load(Ordering::Acquire);
    (value & PRESENT != 0).then_some(value & HUGE == 0)
}

/// Maps the 2 MiB page holding `address` with 4 KiB pages (same frames, same
/// attributes) through the page table in `frame`, a 4 KiB frame the caller gives up.
/// Returns `Err(frame)`, untouched, when the page is not a mapped 2 MiB page (another
/// core split it first, or it is not mapped): the caller frees it.
///
/// A 2 MiB page may hold the memory of two cores; both may split it at once, so the
/// entry is swapped in with one compare-and-exchange and the loser keeps its frame.
/// The translation does not change, so other cores' TLB entries for the 2 MiB page stay
/// right (Intel SDM 4.10.2.3: same frames and attributes) and need no shootdown.
pub fn split_at(address: u64, frame: u64) -> Result<(), u64> {
    let Some(pde) = directory_entry(address) else {
        return Err(frame);
    };
    // SAFETY: as in `is_split`.
    let directory = unsafe { AtomicU64::from_ptr(pde) };
    let mut huge = directory.load(Ordering::Acquire);
    loop {
        if huge & PRESENT == 0 || huge & HUGE == 0 {
            return Err(frame);
        }
        // Bit 7 is the page size in a directory entry but PAT in a table entry: dropped.
        let flags = huge & 0xFFF & !HUGE;
        let base = huge & ADDRESS_MASK & !(PAGE_2M - 1);
        for (i, small) in table(frame).iter_mut().enumerate() {
            *small = (base + (i as u64) * 4096) | flags;
        }
        match directory.compare_exchange(
            huge,
            frame | PRESENT | WRITABLE,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Ok(()),
            // The processor set the accessed or dirty bit meanwhile (copy it too), or
            // another core split the page (then the loop gives the frame back).
            Err(now) => huge = now,
        }
    }
}

/// Page-table frames a core keeps for splitting 2 MiB pages of its own memory: carved
/// from its share at boot (one per 2 MiB page the share touches, so it never runs out)
/// and written only when used. Used by its core alone.
#[derive(Debug)]
pub struct TablePool {
    next: AtomicU64,
    end: AtomicU64,
}

impl TablePool {
    /// Returns an empty pool.
    pub const fn new() -> TablePool {
        TablePool {
            next: AtomicU64::new(0),
            end: AtomicU64::new(0),
        }
    }

    /// Fills the pool with the frames of `frames`. Its core, once, before it splits.
    pub fn fill(&self, frames: PhysRange) {
        self.next.store(frames.start, Ordering::Relaxed);
        self.end.store(frames.end, Ordering::Relaxed);
    }

    /// Returns a frame, or `None` when the pool is empty.
    pub fn take(&self) -> Option<u64> {
        let next = self.next.load(Ordering::Relaxed);
        (next + 4096 <= self.end.load(Ordering::Relaxed)).then(|| {
            self.next.store(next + 4096, Ordering::Relaxed);
            next
        })
    }

    /// Puts back `frame`, the last one taken and not used.
    pub fn give_back(&self, frame: u64) {
        if self.next.load(Ordering::Relaxed) == frame + 4096 {
            self.next.store(frame, Ordering::Relaxed);
        }
    }
}

/// Returns how many page-table frames splitting every 2 MiB page that `range` touches
/// takes.
pub fn tables_to_split(range: PhysRange) -> u64 {
    if range.is_empty() {
        return 0;
    }
    let first = range.start & !(PAGE_2M - 1);
    let end = (range.end + PAGE_2M - 1) & !(PAGE_2M - 1);
    (end - first) / PAGE_2M
}

/// Maps (`present`) or unmaps the 4 KiB page at `address` on the running core.
/// Returns false when the page is not a 4 KiB page (its 2 MiB page is not split).
///
/// Callers keep the module invariant: the page is in the running core's own memory
/// and no other core uses it.
pub fn set_present(address: u64, present: bool) -> bool {
    let Some(pde) = directory_entry(address) else {
        return false;
    };
    // SAFETY: as in `is_split`.
    let pde = unsafe { AtomicU64::from_ptr(pde) }.load(Ordering::Acquire);
    if pde & PRESENT == 0 || pde & HUGE != 0 {
        return false;
    }
    let pte = (pde & ADDRESS_MASK) as *mut u64;
    // SAFETY: the entry of this 4 KiB page in its table, identity mapped and aligned;
    // only the core whose memory it maps writes it (module invariant).
    let pte = unsafe { pte.add((address >> 12 & 511) as usize) };
    // SAFETY: as just above.
    let value = unsafe { core::ptr::read_volatile(pte) };
    let value = if present {
        value | PRESENT
    } else {
        value & !PRESENT
    };
    // SAFETY: this entry maps a page of the running core's own memory, which only this
    // core changes (module invariant); invlpg drops the stale local translation (of the
    // 4 KiB page, or of the 2 MiB page it was part of before the split).
    unsafe {
        core::ptr::write_volatile(pte, value);
        core::arch::asm!("invlpg [{}]", in(reg) address, options(nostack, preserves_flags));
    }
    true
}

/// Maps the device window `[physical, physical + len)` uncached (no-op below 4 GiB,
/// where the entry code already mapped everything).
pub fn map_mmio(physical: u64, len: u64, frames: FrameSource<'_>) -> Result<(), MapError> {
    let end = physical
        .checked_add(len)
        .ok_or(MapError::OutOfRange(physical))?;
    let mut page = physical.max(FOUR_GIB) & !(PAGE_2M - 1);
    if page >= end {
        // Below 4 GiB: `init` mapped it uncached already, and a flush would only cost
        // every page's translation again.
        return Ok(());
    }
    while page < end {
        map_2m(page, CACHE_DISABLE | WRITE_THROUGH, frames)?;
        page += PAGE_2M;
    }
    flush();
    Ok(())
}
