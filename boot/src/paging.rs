//! The kernel's one set of page tables: an identity map with 2 MiB pages.
//!
//! The entry code maps 0..4 GiB. [`init`] then marks the 2 MiB pages of the low 4 GiB
//! that hold no RAM (LAPIC, IOAPIC, PCI windows, ECAM) uncached, and maps RAM above
//! 4 GiB; [`map_mmio`] adds device windows anywhere in the physical address space.
//! The cores' memory is then split into 4 KiB pages ([`split`]), so that a thread stack
//! can have an unmapped guard page below it.
//!
//! Architecture invariant: only the boot core writes these tables, and only before the
//! other cores start, with one exception: a core may flip the present bit of a 4 KiB
//! page of its own memory ([`set_present`], the guard pages of its thread stacks). No
//! other core uses that page, so only the local TLB entry needs flushing.

use crate::entry::page_table_root;
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
    // source), identity mapped, 4 KiB aligned; only the boot core touches the tables,
    // before other cores start (module invariant), so no other reference exists.
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
    for (gib, &pd_entry) in pdpt.iter().take(4).enumerate() {
        let pd = table(pd_entry & ADDRESS_MASK);
        for (i, entry) in pd.iter_mut().enumerate() {
            let start = (gib as u64) << 30 | (i as u64) << 21;
            let page = PhysRange::new(start, start + PAGE_2M);
            if !ram.iter().any(|r| r.overlaps(&page)) {
                *entry |= CACHE_DISABLE | WRITE_THROUGH;
            }
        }
    }
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

/// Splits the 2 MiB pages that hold `range` into 4 KiB pages (same addresses and
/// attributes). Boot core only, before other cores start.
pub fn split(range: PhysRange, frames: FrameSource<'_>) -> Result<(), MapError> {
    let mut page = range.start & !(PAGE_2M - 1);
    while page < range.end {
        let pml4 = table(page_table_root());
        let pdpt = table(next_level(&mut pml4[(page >> 39) as usize & 511], frames)?);
        let pd = table(next_level(&mut pdpt[(page >> 30) as usize & 511], frames)?);
        let entry = &mut pd[(page >> 21) as usize & 511];
        if *entry & PRESENT != 0 && *entry & HUGE != 0 {
            let frame = frames().ok_or(MapError::OutOfFrames)?;
            let flags = *entry & 0xFFF & !HUGE;
            let base = *entry & ADDRESS_MASK & !(PAGE_2M - 1);
            for (i, small) in table(frame).iter_mut().enumerate() {
                *small = (base + (i as u64) * 4096) | flags;
            }
            *entry = frame | PRESENT | WRITABLE;
        }
        page += PAGE_2M;
    }
    flush();
    Ok(())
}

/// Maps (`present`) or unmaps the 4 KiB page at `address` on the running core.
/// Returns false when the page is not a split 4 KiB page.
///
/// Callers keep the module invariant: the page is in the running core's own memory
/// and no other core uses it.
pub fn set_present(address: u64, present: bool) -> bool {
    let entry = |table_address: u64, index: u64| (table_address + index * 8) as *const u64;
    let read = |pointer: *const u64| {
        // SAFETY: page-table entries are identity-mapped, 8-byte aligned words; reading
        // one races with nothing but the owner's own writes (module invariant).
        unsafe { core::ptr::read_volatile(pointer) }
    };
    let pml4e = read(entry(page_table_root(), address >> 39 & 511));
    if pml4e & PRESENT == 0 {
        return false;
    }
    let pdpte = read(entry(pml4e & ADDRESS_MASK, address >> 30 & 511));
    if pdpte & PRESENT == 0 || pdpte & HUGE != 0 {
        return false;
    }
    let pde = read(entry(pdpte & ADDRESS_MASK, address >> 21 & 511));
    if pde & PRESENT == 0 || pde & HUGE != 0 {
        return false;
    }
    let pte = entry(pde & ADDRESS_MASK, address >> 12 & 511) as *mut u64;
    let value = read(pte);
    let value = if present {
        value | PRESENT
    } else {
        value & !PRESENT
    };
    // SAFETY: this entry maps a page of the running core's own memory, which only this
    // core changes (module invariant); invlpg drops the stale local translation.
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
    while page < end {
        map_2m(page, CACHE_DISABLE | WRITE_THROUGH, frames)?;
        page += PAGE_2M;
    }
    flush();
    Ok(())
}
