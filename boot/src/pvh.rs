//! The PVH `hvm_start_info` block: memory map, command line and RSDP address.
//!
//! Everything is copied out at once, since the memory it lives in (low RAM) is reused
//! later (the AP trampoline page, for one).

use percore::PhysRange;

const START_INFO_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;
const MEMORY_MAP_MAX: usize = 64;

#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct MemoryMapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// What the boot loader told the kernel.
#[derive(Debug)]
pub struct BootParams {
    /// Usable RAM (E820 type 1), sorted and merged.
    pub ram: heapless::Vec<PhysRange, MEMORY_MAP_MAX>,
    pub cmdline: heapless::String<{ percore::bootinfo::CMDLINE_MAX }>,
    /// Physical address of the ACPI RSDP, when the loader gave one.
    pub rsdp: Option<u64>,
}

/// Why the start_info block could not be used.
#[derive(Debug)]
pub enum PvhError {
    BadMagic(u32),
    NoMemoryMap,
    /// The command line has no end within `CMDLINE_MAX` bytes.
    CommandLineTooLong,
}

impl core::fmt::Display for PvhError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PvhError::BadMagic(magic) if magic.to_le_bytes().iter().all(u8::is_ascii_graphic) => {
                write!(
                    f,
                    "bad magic {magic:#x}: text over the block, as QEMU leaves it after a command line longer than about 4 KiB"
                )
            }
            PvhError::BadMagic(magic) => {
                write!(f, "bad magic {magic:#x} (not booted through PVH?)")
            }
            PvhError::NoMemoryMap => f.write_str("no memory map (start_info version 0)"),
            PvhError::CommandLineTooLong => write!(
                f,
                "the kernel command line is longer than {} bytes; shorten it",
                percore::bootinfo::CMDLINE_MAX
            ),
        }
    }
}

/// Copies what the kernel needs out of the `hvm_start_info` block at `address`.
///
/// # Safety
/// `address` must be the value QEMU passed in `ebx` at the PVH entry, and the block it
/// points to (and its memory map and command line) must still be intact.
pub unsafe fn read(address: u64) -> Result<BootParams, PvhError> {
    // SAFETY: the caller guarantees the block is the loader's, in identity-mapped RAM.
    let info = unsafe { core::ptr::read_unaligned(address as *const StartInfo) };
    if info.magic != START_INFO_MAGIC {
        return Err(PvhError::BadMagic(info.magic));
    }
    if info.version < 1 || info.memmap_paddr == 0 || info.memmap_entries == 0 {
        return Err(PvhError::NoMemoryMap);
    }

    let mut ram: heapless::Vec<PhysRange, MEMORY_MAP_MAX> = heapless::Vec::new();
    for i in 0..info.memmap_entries as usize {
        let at = info.memmap_paddr as usize + i * core::mem::size_of::<MemoryMapEntry>();
        // SAFETY: entry `i` of the loader's memory map (caller's contract).
        let entry = unsafe { core::ptr::read_unaligned(at as *const MemoryMapEntry) };
        if entry.kind == E820_RAM && entry.size > 0 {
            let _ = ram.push(PhysRange::new(
                entry.addr,
                entry.addr.saturating_add(entry.size),
            ));
        }
    }
    ram.sort_unstable_by_key(|r| r.start);
    let mut merged: heapless::Vec<PhysRange, MEMORY_MAP_MAX> = heapless::Vec::new();
    for r in ram {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => {
                let _ = merged.push(r);
            }
        }
    }

    let mut cmdline = heapless::String::new();
    if info.cmdline_paddr != 0 {
        let mut ended = false;
        // One byte more than fits: its NUL ends a line of exactly CMDLINE_MAX bytes.
        for i in 0..=percore::bootinfo::CMDLINE_MAX as u64 {
            // SAFETY: the loader's NUL-terminated command line (caller's contract); we
            // stop at the NUL or one byte past our buffer's size.
            let byte = unsafe { core::ptr::read((info.cmdline_paddr + i) as *const u8) };
            if byte == 0 {
                ended = true;
                break;
            }
            if cmdline
                .push(if byte.is_ascii() { byte as char } else { '?' })
                .is_err()
            {
                break;
            }
        }
        if !ended {
            return Err(PvhError::CommandLineTooLong);
        }
    }

    Ok(BootParams {
        ram: merged,
        cmdline,
        rsdp: (info.rsdp_paddr != 0).then_some(info.rsdp_paddr),
    })
}
