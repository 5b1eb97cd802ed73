//! The PVH entry point: from QEMU's 32-bit protected mode into long mode on the boot core.
//!
//! QEMU (like Firecracker and cloud-hypervisor) finds `pvh_start32` through the Xen ELF
//! note, jumps there in 32-bit protected mode with paging off and `ebx` pointing at the
//! `hvm_start_info` block. The code below zeroes `.bss`, identity-maps the first 4 GiB
//! with 2 MiB pages, enables long mode and calls `boot_core_main(start_info)` on the boot
//! stack. The page tables and the GDT it uses stay in use on every core; `paging` adds
//! RAM and MMIO above 4 GiB later.

use core::arch::global_asm;

/// Size of the boot core's first stack (until it moves onto its own, carved stack).
pub const BOOT_STACK_SIZE: usize = 128 * 1024;

/// Selector of the 64-bit kernel code segment in every GDT the kernel loads.
pub const KERNEL_CODE_SELECTOR: u16 = 0x08;
/// Selector of the kernel data segment.
pub const KERNEL_DATA_SELECTOR: u16 = 0x10;

/// The entries of the start-up GDT, in its two copies: the boot core's (`BOOT_GDT`) and
/// the AP trampoline's, which must lie in the trampoline's page (a core in real mode
/// loads it from there). `KERNEL_CODE_SELECTOR` and `KERNEL_DATA_SELECTOR` name them.
macro_rules! start_up_gdt_entries {
    () => {
        "
    .quad 0                             /* null */
    .quad 0x00AF9A000000FFFF            /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: data */
    .quad 0x00CF9A000000FFFF            /* 0x18: 32-bit code (AP trampoline) */
"
    };
}

/// The first instructions in long mode (64-bit code), on the boot core and on every
/// woken core alike: the data selector into DS, ES and SS, the null selector into FS and
/// GS (their bases are MSRs from here on). Clobbers AX. The trampoline's stop in 32-bit
/// protected mode loads DS, ES and SS on its own: other code, in another mode.
macro_rules! long_mode_data_segments {
    () => {
        "
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
"
    };
}

pub(crate) use {long_mode_data_segments, start_up_gdt_entries};

global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4                     /* name size: "Xen\0" */
    .long 8                     /* descriptor size */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32
    .p2align 2

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, %esi                     /* keep start_info */

    rdtsc
    movl %eax, %ebp                     /* TSC at entry, low half */
    movl %edx, %ebx                     /* high half */

    /* Zero .bss (page tables, statics) 64 bytes a round: TCG runs each round of a rep
       prefix on its own (26,000 rounds of rep stosl took 0.15 ms), an unrolled round
       in one go. The linker script aligns both ends to 64 bytes. The stacks are kept
       out of .bss: they need no zeroing. */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    xorl %eax, %eax
    jmp 5f
4:
    movl %eax, 0(%edi)
    movl %eax, 4(%edi)
    movl %eax, 8(%edi)
    movl %eax, 12(%edi)
    movl %eax, 16(%edi)
    movl %eax, 20(%edi)
    movl %eax, 24(%edi)
    movl %eax, 28(%edi)
    movl %eax, 32(%edi)
    movl %eax, 36(%edi)
    movl %eax, 40(%edi)
    movl %eax, 44(%edi)
    movl %eax, 48(%edi)
    movl %eax, 52(%edi)
    movl %eax, 56(%edi)
    movl %eax, 60(%edi)
    addl $64, %edi
5:
    cmpl %ecx, %edi
    jb 4b

    movl %ebp, BOOT_TSC
    movl %ebx, BOOT_TSC + 4

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories. */
    movl $BOOT_PDPT, %eax
    orl $0x3, %eax
    movl %eax, BOOT_PML4
    xorl %ecx, %ecx
1:
    movl %ecx, %eax
    shll $12, %eax
    addl $BOOT_PD, %eax
    orl $0x3, %eax
    movl %eax, BOOT_PDPT(,%ecx,8)
    incl %ecx
    cmpl $4, %ecx
    jb 1b

    /* 2048 entries of 2 MiB: identity map of 0..4 GiB (present, writable, huge). */
    xorl %ecx, %ecx
2:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, BOOT_PD(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jb 2b

    movl $BOOT_PML4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax                     /* PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx              /* EFER */
    rdmsr
    orl $0x100, %eax                    /* LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax               /* PG | PE */
    movl %eax, %cr0

    lgdt BOOT_GDTR
    pushl $0x08
    pushl $boot_long_mode
    lret

    .code64
boot_long_mode:
"#,
    long_mode_data_segments!(),
    r#"
    movabsq $BOOT_STACK_TOP, %rsp
    movl %esi, %edi                     /* start_info, zero-extended */
    call boot_core_main
3:
    cli
    hlt
    jmp 3b

    .section .rodata.boot_gdt, "a"
    .p2align 3
    .global BOOT_GDT
BOOT_GDT:
"#,
    start_up_gdt_entries!(),
    r#"
BOOT_GDT_END:
    .p2align 3
BOOT_GDTR:
    .word BOOT_GDT_END - BOOT_GDT - 1
    .quad BOOT_GDT

    .section .data.boot_tsc, "aw"
    .p2align 3
    .global BOOT_TSC
BOOT_TSC:
    .quad 0

    .section .bss.boot_tables, "aw", @nobits
    .p2align 12
    .global BOOT_PML4
BOOT_PML4:
    .skip 4096
    .global BOOT_PDPT
BOOT_PDPT:
    .skip 4096
    .global BOOT_PD
BOOT_PD:
    .skip 4 * 4096

    .section .bss.stacks.boot, "aw", @nobits
    .p2align 4
BOOT_STACK:
    .skip {stack_size}
BOOT_STACK_TOP:
"#,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);

extern "C" {
    static BOOT_TSC: u64;
    static BOOT_PML4: u8;
}

/// Returns the TSC value read on the first instruction of the kernel.
pub fn boot_tsc() -> u64 {
    // SAFETY: written once by the entry code before any Rust code ran; read-only since.
    unsafe { core::ptr::read_volatile(&raw const BOOT_TSC) }
}

/// Returns the physical address of the kernel's top-level page table.
pub fn page_table_root() -> u64 {
    &raw const BOOT_PML4 as u64
}
