//! Each core's own GDT and TSS, with IST stacks for faults that must not trust the
//! current stack (double fault, NMI, machine check).

use crate::entry::{KERNEL_CODE_SELECTOR, KERNEL_DATA_SELECTOR};

/// IST slot (1-based, as the IDT wants it) for each fault that gets its own stack.
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;
/// A page fault may be a thread overflowing into its guard page: it cannot use that stack.
pub const IST_PAGE_FAULT: u8 = 4;
/// Number of IST stacks each core carves.
pub const IST_STACKS: usize = 4;

const TSS_SELECTOR: u16 = 0x18;

/// The 64-bit task-state segment.
#[repr(C, packed(4))]
#[derive(Debug)]
pub struct Tss {
    reserved0: u32,
    privilege_stacks: [u64; 3],
    reserved1: u64,
    interrupt_stacks: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    io_map_base: u16,
}

/// A core's descriptor tables; lives in a page of that core's own memory.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct CoreTables {
    gdt: [u64; 5],
    tss: Tss,
}

impl CoreTables {
    /// Returns tables whose IST entries point at `ist_tops` (stack tops, in IST order).
    pub fn new(ist_tops: [u64; IST_STACKS]) -> Self {
        let mut interrupt_stacks = [0; 7];
        interrupt_stacks[..IST_STACKS].copy_from_slice(&ist_tops);
        Self {
            gdt: [0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0, 0],
            tss: Tss {
                reserved0: 0,
                privilege_stacks: [0; 3],
                reserved1: 0,
                interrupt_stacks,
                reserved2: 0,
                reserved3: 0,
                io_map_base: core::mem::size_of::<Tss>() as u16,
            },
        }
    }

    /// Loads these tables on the running core.
    ///
    /// # Safety
    /// `self` must stay in place and untouched for as long as the core runs, and the
    /// core must be in long mode with interrupts off.
    pub unsafe fn load(&'static mut self) {
        let base = &raw const self.tss as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        self.gdt[3] = (limit & 0xFFFF)
            | (base & 0xFF_FFFF) << 16
            | 0x89 << 40
            | ((limit >> 16) & 0xF) << 48
            | ((base >> 24) & 0xFF) << 56;
        self.gdt[4] = base >> 32;

        #[repr(C, packed)]
        struct Pointer {
            limit: u16,
            base: u64,
        }
        let pointer = Pointer {
            limit: (core::mem::size_of_val(&self.gdt) - 1) as u16,
            base: self.gdt.as_ptr() as u64,
        };
        // SAFETY: the GDT is valid and 'static (caller's contract); selectors 0x08/0x10
        // are the same code/data layout as the boot GDT, so reloading them keeps the
        // running code and stack valid; 0x18 is the TSS descriptor just written.
        unsafe {
            core::arch::asm!(
                "lgdt [{pointer}]",
                "push {code}",
                "lea {tmp}, [rip + 2f]",
                "push {tmp}",
                "retfq",
                "2:",
                "mov ds, {data:x}",
                "mov es, {data:x}",
                "mov ss, {data:x}",
                "ltr {tss:x}",
                pointer = in(reg) &pointer,
                code = in(reg) u64::from(KERNEL_CODE_SELECTOR),
                data = in(reg) u64::from(KERNEL_DATA_SELECTOR),
                tss = in(reg) u64::from(TSS_SELECTOR),
                tmp = lateout(reg) _,
            );
        }
    }
}
