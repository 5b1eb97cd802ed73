//! Waking the application processors: the real-mode trampoline and INIT-SIPI-SIPI.
//!
//! The trampoline is copied to [`TRAMPOLINE_PAGE`]. A woken core runs it from real mode
//! through protected mode into long mode on the kernel's page tables, takes a ticket
//! (`lock xadd`) that picks a small bootstrap stack, and calls `ap_entry(ticket)`. There
//! it finds its APIC id in the start-up plan and moves onto its own stack, in
//! its own block of the start-up area. All cores are woken together (INIT to all, then
//! STARTUP once the plan is ready; a second STARTUP 10 µs later on bare processors, and
//! the old 10 ms after INIT and 200 µs only where the processor needs them) and start in
//! parallel, so bring-up time does not grow with the core count; the boot core halts
//! meanwhile, and the last core to come online wakes it.

use crate::cpu::rdtsc;
use crate::entry::{long_mode_data_segments, start_up_gdt_entries};
use crate::{apic, interrupts, tsc, vectors};
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use percore::MAX_CORES;

/// Physical page the trampoline runs from (below 1 MiB, clear of PVH's start_info).
pub const TRAMPOLINE_PAGE: u64 = 0x8000;
const BOOTSTRAP_STACK_SIZE: usize = 8 * 1024;

global_asm!(
    r#"
    .section .text.ap_trampoline, "ax"
    .set TRAMPOLINE_BASE, 0x8000
    .global AP_TRAMPOLINE_START
    .global AP_TRAMPOLINE_END
    .global AP_TRAMPOLINE_PARAMS
    .code16
AP_TRAMPOLINE_START:
    jmp ap_real_mode

    .p2align 3
AP_TRAMPOLINE_PARAMS:
    .long 0                         /* +0  cr3 */
    .long 0                         /* +4  unused */
    .quad 0                         /* +8  bootstrap stacks base */
    .quad 0                         /* +16 bootstrap stack size */
    .quad 0                         /* +24 64-bit entry point */
    .p2align 3
ap_gdt:
"#,
    start_up_gdt_entries!(),
    r#"
ap_gdt_end:
ap_gdtr:
    .word ap_gdt_end - ap_gdt - 1
    .long TRAMPOLINE_BASE + ap_gdt - AP_TRAMPOLINE_START

ap_real_mode:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (TRAMPOLINE_BASE + ap_gdtr - AP_TRAMPOLINE_START)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(TRAMPOLINE_BASE + ap_protected_mode - AP_TRAMPOLINE_START)

    .code32
ap_protected_mode:
    /* Only what protected mode needs on the way: long mode loads them all again. */
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $0x20, %eax                 /* PAE */
    movl %eax, %cr4
    movl (TRAMPOLINE_BASE + AP_TRAMPOLINE_PARAMS - AP_TRAMPOLINE_START), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx          /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000000, %eax           /* PG */
    movl %eax, %cr0
    ljmpl $0x08, $(TRAMPOLINE_BASE + ap_long_mode - AP_TRAMPOLINE_START)

    .code64
ap_long_mode:
"#,
    long_mode_data_segments!(),
    r#"
    /* The ticket counter lives in the kernel's data, not on this page: under TCG a
       write to a page of code throws away what was translated from it, and every
       core after the first would translate the trampoline again. */
    movl $1, %eax
    movabsq $AP_TICKETS, %rcx
    lock xaddl %eax, (%rcx)
    movl %eax, %edi                 /* ticket: first argument */
    incl %eax
    imulq (TRAMPOLINE_BASE + AP_TRAMPOLINE_PARAMS - AP_TRAMPOLINE_START + 16), %rax
    addq (TRAMPOLINE_BASE + AP_TRAMPOLINE_PARAMS - AP_TRAMPOLINE_START + 8), %rax
    movq %rax, %rsp
    xorl %ebp, %ebp
    movq (TRAMPOLINE_BASE + AP_TRAMPOLINE_PARAMS - AP_TRAMPOLINE_START + 24), %rax
    call *%rax
1:
    cli
    hlt
    jmp 1b
AP_TRAMPOLINE_END:
"#,
    options(att_syntax)
);

extern "C" {
    static AP_TRAMPOLINE_START: u8;
    static AP_TRAMPOLINE_END: u8;
    static AP_TRAMPOLINE_PARAMS: u8;
}

#[repr(C)]
struct TrampolineParams {
    cr3: u32,
    unused: u32,
    stacks: u64,
    stack_size: u64,
    entry: u64,
}

#[repr(C, align(16))]
struct BootstrapStacks([[u8; BOOTSTRAP_STACK_SIZE]; MAX_CORES]);

// Not zeroed at entry (see the linker script): a stack needs no initial value.
#[unsafe(link_section = ".bss.stacks.bootstrap")]
static mut BOOTSTRAP_STACKS: BootstrapStacks =
    BootstrapStacks([[0; BOOTSTRAP_STACK_SIZE]; MAX_CORES]);

/// The next bootstrap stack's number, taken by each woken core in the trampoline.
#[unsafe(no_mangle)]
static AP_TICKETS: AtomicU32 = AtomicU32::new(0);

/// One flag per start-up slot: set by that core once it runs on its own tables.
static ONLINE: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];
/// How many slots are online (the boot core's included).
static ONLINE_COUNT: AtomicUsize = AtomicUsize::new(0);
/// How many online slots the boot core waits for; the core that completes the count
/// wakes it. Zero until the boot core starts the others.
static AWAITED: AtomicUsize = AtomicUsize::new(0);
/// The TSC value at which the latest core came online.
static LAST_ONLINE_TSC: AtomicU64 = AtomicU64::new(0);
/// The longest the boot core halts between two polls while it waits for the others
/// (the PIT, which the TSC may be measured against, wraps every 55 ms).
pub const POLL_US: u64 = 2_000;
/// The boot core's APIC id, for that wake-up.
static BOOT_APIC_ID: AtomicU32 = AtomicU32::new(0);

/// Marks start-up slot `slot` online (called by that core); the last one the boot core
/// waits for wakes it.
pub fn mark_online(slot: usize) {
    LAST_ONLINE_TSC.fetch_max(rdtsc(), Ordering::AcqRel);
    ONLINE[slot].store(true, Ordering::Release);
    let count = ONLINE_COUNT.fetch_add(1, Ordering::AcqRel) + 1;
    if slot != 0 && count == AWAITED.load(Ordering::Acquire) {
        apic::send_interrupt(BOOT_APIC_ID.load(Ordering::Relaxed), vectors::WAKEUP_VECTOR);
    }
}

/// Returns true when start-up slot `slot` reported online.
pub fn is_online(slot: usize) -> bool {
    ONLINE[slot].load(Ordering::Acquire)
}

/// Copies the trampoline to its page and fills in its parameters.
///
/// # Safety
/// Boot core only, before any AP is woken; [`TRAMPOLINE_PAGE`] must be RAM that
/// nothing else uses (it is below 1 MiB, which the kernel never hands out).
pub unsafe fn install_trampoline(cr3: u64, entry: extern "C" fn(u32) -> !) {
    let (start, end, params) = (
        &raw const AP_TRAMPOLINE_START as usize,
        &raw const AP_TRAMPOLINE_END as usize,
        &raw const AP_TRAMPOLINE_PARAMS as usize,
    );
    let length = end - start;
    assert!(length <= 4096, "AP trampoline does not fit in one page");
    assert!(
        cr3 < 1 << 32,
        "page tables must be below 4 GiB for the 32-bit trampoline"
    );
    let page = TRAMPOLINE_PAGE as *mut u8;
    // SAFETY: copying the trampoline's bytes into its dedicated, identity-mapped page
    // (caller's contract); the source is the kernel image.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, page, length) };
    let parameters = TrampolineParams {
        cr3: cr3 as u32,
        unused: 0,
        stacks: &raw const BOOTSTRAP_STACKS as u64,
        stack_size: BOOTSTRAP_STACK_SIZE as u64,
        entry: entry as usize as u64,
    };
    // SAFETY: the parameter block lies inside the page just written, 8-byte aligned.
    unsafe {
        core::ptr::write_volatile(
            page.add(params - start) as *mut TrampolineParams,
            parameters,
        )
    };
}

/// How the application processors are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// One STARTUP to all but the boot core (destination shorthand): right when every
    /// processor there is is planned, since the shorthand reaches them all. Under QEMU
    /// each IPI takes the emulator's global lock, so one for all instead of one per core
    /// lets the cores start at once.
    All,
    /// A STARTUP to each planned core (some processor must stay asleep: disabled by
    /// firmware, beyond what this kernel runs, or the dead-core self test).
    Each,
}

/// Sends INIT to every processor but this one (destination shorthand) and returns the
/// TSC value at which it was sent. Each then waits for a STARTUP; INIT is harmless to a
/// processor that will never get one, so the shorthand serves even when some processor
/// stays asleep.
pub fn send_init_to_others() -> u64 {
    apic::send_init_to_others();
    rdtsc()
}

/// Sends STARTUP to the cores with APIC ids `apic_ids` (start-up slots 1..), reset by
/// [`send_init_to_others`] (at least 10 ms before, on a processor that needs that), and
/// returns at once: they start in parallel while the boot core goes on
/// ([`repeat_startup`], [`wait_until_online`]). `left_asleep` (a self test; only with
/// [`Wake::Each`]) is never started, as a core that does not answer would not be. The
/// last of them to come online wakes `boot_apic_id`, the boot core.
///
/// Boot core, with the plan published and the trampoline in place.
pub fn start_application_processors(
    boot_apic_id: u32,
    apic_ids: &[u32],
    wake: Wake,
    left_asleep: Option<u32>,
) {
    let woken_count = woken(apic_ids, left_asleep).count();
    if woken_count == 0 {
        return;
    }
    BOOT_APIC_ID.store(boot_apic_id, Ordering::Relaxed);
    // Slot 0, the boot core, is counted when it reports online itself.
    AWAITED.store(1 + woken_count, Ordering::Release);
    send_startup(apic_ids, wake, left_asleep);
}

/// Sends the specification's second STARTUP if some core started by
/// [`start_application_processors`] has not taken its ticket `micros` after the TSC
/// value `first` (a core that did start ignores it). Needs a TSC rate.
pub fn repeat_startup(
    apic_ids: &[u32],
    wake: Wake,
    left_asleep: Option<u32>,
    first: u64,
    micros: u64,
) {
    let woken_count = woken(apic_ids, left_asleep).count();
    tsc::spin_until(first.saturating_add(micros * tsc::hz() / 1_000_000));
    if (AP_TICKETS.load(Ordering::Acquire) as usize) < woken_count {
        send_startup(apic_ids, wake, left_asleep);
    }
}

fn woken(apic_ids: &[u32], left_asleep: Option<u32>) -> impl Iterator<Item = &u32> {
    apic_ids.iter().filter(move |&&id| Some(id) != left_asleep)
}

fn send_startup(apic_ids: &[u32], wake: Wake, left_asleep: Option<u32>) {
    let vector = (TRAMPOLINE_PAGE >> 12) as u8;
    match wake {
        Wake::All => apic::send_startup_to_others(vector),
        Wake::Each => woken(apic_ids, left_asleep).for_each(|&id| apic::send_startup(id, vector)),
    }
}

/// Counts of the APIC timer's input clock that [`rest_while_starting`] halts for at most:
/// 1 ms at QEMU's 1 GHz, at most 0.1 s at 10 MHz (no processor's APIC timer runs slower:
/// their crystals and buses run at 19.2 MHz and more).
const REST_COUNTS: u32 = 1_000_000;

/// Halts until the `planned` application processors are online (the last one wakes this
/// core) or the APIC timer ran [`REST_COUNTS`], whichever comes first. Boot core, right
/// after it started them and came online itself, before it measures the TSC: under QEMU
/// every access to a clock or an APIC register takes the emulator's lock, which the
/// starting cores want too (measured at 8 cores: 0.2 ms sooner online when the boot core
/// keeps off it). Its timer's rate is not known yet, hence a count with a bound, not a
/// time; [`wait_until_online`] then waits with the time-out.
pub fn rest_while_starting(planned: usize) {
    if planned == 0 {
        return;
    }
    apic::arm_timer_counts(vectors::TIMER_VECTOR, REST_COUNTS);
    // The timer's count was loaded before the first halt: once it reads zero it fired.
    while ONLINE_COUNT.load(Ordering::Acquire) <= planned && apic::timer_reading().value != 0 {
        interrupts::halt_until_interrupt();
    }
    apic::stop_counting();
}

/// Waits, halted, until the `planned` application processors are online or
/// `timeout_us` passed, calling `poll` at least every [`POLL_US`]. Returns how many
/// came online and the TSC value at which the wait ended: when the last of them came
/// online, or when the boot core gave up on the others.
pub fn wait_until_online(planned: usize, timeout_us: u64, mut poll: impl FnMut()) -> (usize, u64) {
    let deadline = tsc::deadline_us(timeout_us);
    apic::enable_timer(vectors::TIMER_VECTOR);
    let ended = loop {
        poll();
        if ONLINE_COUNT.load(Ordering::Acquire) > planned {
            break LAST_ONLINE_TSC.load(Ordering::Acquire);
        }
        let now = rdtsc();
        if now >= deadline {
            break now;
        }
        // The last core to come online wakes this one; the timer ends the wait otherwise.
        apic::arm_timer(Some(deadline.min(tsc::deadline_us(POLL_US))));
        interrupts::halt_until_interrupt();
    };
    apic::arm_timer(None);
    let online = (1..=planned).filter(|&slot| is_online(slot)).count();
    (online, ended)
}

/// Moves the running core onto the stack ending at `top` and calls `next(argument)`.
///
/// # Safety
/// `top` must be the 16-byte aligned end of an unused stack that stays valid forever;
/// nothing on the current stack may be used afterwards.
pub unsafe fn switch_stack(top: u64, next: extern "C" fn(usize) -> !, argument: usize) -> ! {
    // SAFETY: the caller guarantees the new stack; `next` never returns.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {next}",
            "ud2",
            top = in(reg) top,
            next = in(reg) next,
            in("rdi") argument,
            options(noreturn),
        )
    }
}
