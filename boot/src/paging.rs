//! The kernel's one set of page tables: an identity map with 2 MiB pages.
//!
//! The entry code maps 0..4 GiB. [`init`] then marks the 2 MiB pages of the low 4 GiB
//! that hold no RAM (LAPIC, IOAPIC, PCI windows, ECAM) uncached, and maps RAM above
//! 4 GiB; [`map_mmio`] adds device windows anywhere in the physical address space.
//! Architecture invariant: only the boot core writes these tables, and only before the
//! other cores start; afterwards they are read-only and shared by every core.

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
