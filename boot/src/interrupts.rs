//! The IDT (one table, shared read-only by every core) and the CPU exception handler.
//!
//! Each of the 32 exception vectors has a small stub that pushes a uniform frame
//! (a dummy error code where the CPU pushes none, then the vector) and the general
//! registers, and calls [`exception_entry`]. The handler prints the core, thread, vector,
//! error code and RIP, then contains the fault (`panic::contain`): the thread ends alone
//! where its core's kernel state is intact, else the core is fenced. The handler never
//! returns to the faulting code.

use crate::entry::KERNEL_CODE_SELECTOR;
use crate::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI, IST_PAGE_FAULT};
use crate::vectors::{DEVICE_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR, WAKEUP_VECTOR};
use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.exceptions, "ax"
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .p2align 4
exception_stub_\vector:
    .if (\vector == 8) || (\vector == 10) || (\vector == 11) || (\vector == 12) || (\vector == 13) || (\vector == 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    push 0
    .endif
    push \vector
    jmp exception_common
    .endr

exception_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call exception_entry
    ud2

    /* An interrupt stub that saves the registers a Rust call may change, calls
       HANDLER and returns from the interrupt. */
    .macro caller_saved_stub name, handler
    .p2align 4
    .global \name
\name:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    cld
    call \handler
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
    .endm

    /* Wake-up IPI: only acknowledges; its purpose is to end a `hlt`. */
    caller_saved_stub wakeup_stub, wakeup_interrupt

    /* A device's MSI-X interrupt (the net core's network device): wakes its service. */
    caller_saved_stub device_stub, device_interrupt

    /* Spurious APIC interrupt: no acknowledgement is due. */
    .p2align 4
    .global spurious_stub
spurious_stub:
    iretq

    .section .rodata.exceptions, "a"
    .p2align 3
    .global EXCEPTION_STUBS
EXCEPTION_STUBS:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\vector
    .endr
"#
);

extern "C" {
    static EXCEPTION_STUBS: [u64; 32];
    fn wakeup_stub();
    fn device_stub();
    fn spurious_stub();
}

/// What the stubs leave on the stack, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_middle: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CODE_SELECTOR,
            ist,
            attributes: 0x8E, // present, ring 0, 64-bit interrupt gate
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

/// The IDT every core loads: written by the boot core in [`init`], in place (under TCG
/// a built copy moved into a `Once` cost two 4 KiB copies and their code before the
/// others could start), read-only afterwards.
#[repr(C, align(16))]
struct Idt(core::cell::UnsafeCell<[Gate; 256]>);

// SAFETY: the table is written only by `init`, on the boot core before any other core
// runs and before any core loads it; afterwards only the processors read it.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(core::cell::UnsafeCell::new([Gate::MISSING; 256]));

/// Fills the IDT. Boot core, once, before other cores start; read-only afterwards.
pub fn init() {
    // SAFETY: see `Idt`: the boot core alone, before any core loads the table, so no
    // other reference to it exists.
    let gates = unsafe { &mut *IDT.0.get() };
    // SAFETY: the stub table is immutable data emitted by the assembly above.
    let stubs = unsafe { &EXCEPTION_STUBS };
    for (vector, &stub) in stubs.iter().enumerate() {
        let ist = match vector {
            2 => IST_NMI,
            8 => IST_DOUBLE_FAULT,
            14 => IST_PAGE_FAULT,
            18 => IST_MACHINE_CHECK,
            _ => 0,
        };
        gates[vector] = Gate::interrupt(stub, ist);
    }
    gates[usize::from(WAKEUP_VECTOR)] = Gate::interrupt(wakeup_stub as *const () as u64, 0);
    gates[usize::from(TIMER_VECTOR)] = Gate::interrupt(wakeup_stub as *const () as u64, 0);
    gates[usize::from(DEVICE_VECTOR)] = Gate::interrupt(device_stub as *const () as u64, 0);
    gates[usize::from(SPURIOUS_VECTOR)] = Gate::interrupt(spurious_stub as *const () as u64, 0);
}

/// Loads the IDT on the running core.
pub fn load() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: &raw const IDT as u64,
    };
    // SAFETY: the IDT is a static that `init` filled before any core loads it and that
    // nothing writes afterwards (`IDT.0` is its first and only field).
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags))
    };
}

/// Returns the mnemonic and name of exception `vector`.
fn describe(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection fault"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point error"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        _ => ("#??", "reserved exception"),
    }
}

#[unsafe(no_mangle)]
extern "C" fn wakeup_interrupt() {
    crate::apic::end_of_interrupt();
}

/// The network device's interrupt: it came while the net core halted (interrupts are
/// enabled only during `hlt`), with no borrow of the scheduler held, so the service
/// thread can be made ready here.
#[unsafe(no_mangle)]
extern "C" fn device_interrupt() {
    net::service::device_event();
    crate::apic::end_of_interrupt();
}

/// Halts until an interrupt arrives, with interrupts enabled only during the halt.
///
/// `sti` delays interrupt delivery until after the next instruction, so an interrupt
/// that became pending before this call still ends the `hlt` instead of being taken
/// between `sti` and `hlt` and lost.
pub fn halt_until_interrupt() {
    // SAFETY: the IDT handles every vector that can arrive (the wake-up IPI, spurious
    // interrupts, exceptions); interrupts are off again when this returns.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

#[unsafe(no_mangle)]
extern "C" fn exception_entry(frame: &ExceptionFrame) -> ! {
    let (mnemonic, name) = describe(frame.vector);
    let fault_address = if frame.vector == 14 {
        // SAFETY: reading CR2 has no side effect.
        unsafe { x86::controlregs::cr2() as u64 }
    } else {
        0
    };
    let core = crate::panic::CoreName::current();
    let thread = crate::panic::ThreadName::current();
    let guard = percore::cpu::current().map_or(0, percore::CoreLocal::guard_page) as u64;
    let (mnemonic, name) =
        if frame.vector == 14 && guard != 0 && (guard..guard + 4096).contains(&fault_address) {
            (
                "#PF",
                "stack overflow: the running thread hit its stack's guard page",
            )
        } else {
            (mnemonic, name)
        };
    percore::console::CONSOLE.print_fatal(format_args!(
        "EXCEPTION on core {core}{thread}: {mnemonic} {name} (vector {}), error code {:#x}, RIP {:#x}, RSP {:#x}{}\n",
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.rsp,
        crate::panic::FaultAddress(fault_address),
    ));
    crate::panic::contain(percore::fault::FaultSite {
        vector: Some(frame.vector as u8),
        stack_pointer: frame.rsp as usize,
    })
}
