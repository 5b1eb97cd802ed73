//! The local APIC, in xAPIC (MMIO) or x2APIC (MSR) mode: identity, enabling, and the
//! INIT and STARTUP IPIs that wake the other cores.
//!
//! The boot core picks the mode once: x2APIC when CPUID offers it (usual under KVM),
//! xAPIC otherwise (QEMU's TCG has no x2APIC). Every core then enables the same mode.

use crate::cpu::{cpuid, rdmsr, wrmsr};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use percore::calibration::Reading;

const IA32_APIC_BASE: u32 = 0x1B;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
const APIC_X2_ENABLE: u64 = 1 << 10;
const X2APIC_MSR_BASE: u32 = 0x800;

const REG_EOI: u32 = 0xB0;
const REG_TIMER: u32 = 0x320;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3E0;
/// Divide configuration value for "divide by 16".
const TIMER_DIVIDE_16: u32 = 0b0011;
const REG_SPURIOUS: u32 = 0xF0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;

const SPURIOUS_VECTOR: u32 = crate::vectors::SPURIOUS_VECTOR as u32;
const SOFTWARE_ENABLE: u32 = 1 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_INIT_ASSERT: u32 = 0x0000_4500;
const ICR_STARTUP: u32 = 0x0000_4600;
/// Destination shorthand: all cores but the sender (the destination field is ignored).
const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;

static X2APIC: AtomicBool = AtomicBool::new(false);
/// APIC timer ticks (divided by 16) per 2^20 TSC ticks, measured once on the boot core.
static TIMER_PER_TSC_2_20: AtomicU64 = AtomicU64::new(0);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0xFEE0_0000);

/// Returns true when the CPU supports x2APIC mode.
pub fn x2apic_supported() -> bool {
    cpuid(1, 0).2 & (1 << 21) != 0
}

/// Chooses the APIC mode for every core. Boot core only, before other cores start.
pub fn choose_mode(xapic_base: u64) -> bool {
    XAPIC_BASE.store(xapic_base, Ordering::Relaxed);
    let x2 = x2apic_supported();
    X2APIC.store(x2, Ordering::Relaxed);
    x2
}

/// Returns true when cores run their APIC in x2APIC mode.
pub fn is_x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

fn xapic_register(offset: u32) -> *mut u32 {
    (XAPIC_BASE.load(Ordering::Relaxed) + u64::from(offset)) as *mut u32
}

fn read(register: u32) -> u32 {
    if is_x2apic() {
        // SAFETY: x2APIC mode is enabled on this core (`enable`), so the MSR exists.
        unsafe { rdmsr(X2APIC_MSR_BASE + (register >> 4)) as u32 }
    } else {
        // SAFETY: the xAPIC page is identity mapped uncached (`paging`); registers are
        // 32-bit and 16-byte aligned.
        unsafe { core::ptr::read_volatile(xapic_register(register)) }
    }
}

fn write(register: u32, value: u32) {
    if is_x2apic() {
        // SAFETY: as in `read`; writing a register of this core's own APIC.
        unsafe { wrmsr(X2APIC_MSR_BASE + (register >> 4), u64::from(value)) }
    } else {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(xapic_register(register), value) }
    }
}

/// Enables this core's APIC in the chosen mode, spurious vector 0xFF.
pub fn enable() {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; we keep its base address and
    // only set the enable bits (x2APIC only when CPUID reported it).
    unsafe {
        let mut base = rdmsr(IA32_APIC_BASE) | APIC_GLOBAL_ENABLE;
        if is_x2apic() {
            base |= APIC_X2_ENABLE;
        }
        wrmsr(IA32_APIC_BASE, base);
    }
    write(REG_SPURIOUS, SOFTWARE_ENABLE | SPURIOUS_VECTOR);
}

/// Returns this core's initial APIC id from CPUID (works before [`enable`]).
pub fn id_from_cpuid() -> u32 {
    if cpuid(0, 0).0 >= 0xB && cpuid(0xB, 0).1 != 0 {
        cpuid(0xB, 0).3
    } else {
        cpuid(1, 0).1 >> 24
    }
}

fn send_ipi(destination: u32, command: u32) {
    if is_x2apic() {
        // SAFETY: x2APIC mode is on; the ICR MSR takes destination and command at once.
        unsafe {
            wrmsr(
                X2APIC_MSR_BASE + (REG_ICR_LOW >> 4),
                u64::from(destination) << 32 | u64::from(command),
            )
        };
    } else {
        // The previous IPI must have left the ICR first. Waiting before the write
        // rather than after it (as Linux does) leaves the register alone right after
        // an IPI, when under QEMU the cores it woke want the emulator's lock.
        let mut spins = 0u32;
        while read(REG_ICR_LOW) & ICR_DELIVERY_PENDING != 0 && spins < 1_000_000 {
            core::hint::spin_loop();
            spins += 1;
        }
        write(REG_ICR_HIGH, destination << 24);
        write(REG_ICR_LOW, command);
    }
}

/// Starts this core's timer counting down from its largest value, masked, so that
/// [`timer_reading`]s taken a while apart measure it against the TSC.
pub fn start_counting() {
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_16);
    write(REG_TIMER, 1 << 16); // masked while counting
    write(REG_TIMER_INITIAL, u32::MAX);
}

/// Stops the count [`start_counting`] began.
pub fn stop_counting() {
    write(REG_TIMER_INITIAL, 0);
}

/// Returns this core's timer count read between two TSC reads.
pub fn timer_reading() -> Reading {
    let tsc_before = crate::cpu::rdtsc();
    let value = u64::from(read(REG_TIMER_CURRENT));
    Reading {
        tsc_before,
        value,
        tsc_after: crate::cpu::rdtsc(),
    }
}

/// Returns the timer's ticks per 2^20 TSC ticks between two [`timer_reading`]s of one
/// count (it counts down and lasts over a minute, so it did not wrap).
pub fn rate_between(start: Reading, end: Reading) -> u64 {
    let counted = start.value.saturating_sub(end.value);
    let ticks = end.tsc().saturating_sub(start.tsc()).max(1);
    ((u128::from(counted) << 20) / u128::from(ticks)) as u64
}

/// Sets the timer's rate for every core: `per_tsc_2_20` ticks (divided by 16) per 2^20
/// TSC ticks. Boot core, before the other cores use their timers.
pub fn set_timer_rate(per_tsc_2_20: u64) {
    TIMER_PER_TSC_2_20.store(per_tsc_2_20, Ordering::Relaxed);
}

/// Sets the timer's rate from its input clock, `bus_hz`, and the TSC's, `tsc_hz`.
pub fn set_timer_rate_from_hz(bus_hz: u64, tsc_hz: u64) {
    let divided = u128::from(bus_hz / 16);
    set_timer_rate(((divided << 20) / u128::from(tsc_hz.max(1))) as u64);
}

/// Divide configuration value for "divide by 1".
const TIMER_DIVIDE_1: u32 = 0b1011;

/// Makes this core's timer interrupt at `vector` once, after `counts` of its input
/// clock (divided by 1), whose rate need not be known yet.
pub fn arm_timer_counts(vector: u8, counts: u32) {
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_1);
    write(REG_TIMER, u32::from(vector));
    write(REG_TIMER_INITIAL, counts);
}

/// Sets this core's timer up: one-shot, `vector`, stopped.
pub fn enable_timer(vector: u8) {
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_16);
    write(REG_TIMER, u32::from(vector));
    write(REG_TIMER_INITIAL, 0);
}

/// Makes this core's timer interrupt at TSC value `deadline` (at once if it passed);
/// `None` stops it.
pub fn arm_timer(deadline: Option<u64>) {
    let Some(deadline) = deadline else {
        write(REG_TIMER_INITIAL, 0);
        return;
    };
    let tsc = deadline.saturating_sub(crate::cpu::rdtsc());
    let rate = TIMER_PER_TSC_2_20.load(Ordering::Relaxed);
    let count = ((u128::from(tsc) * u128::from(rate)) >> 20).clamp(1, u128::from(u32::MAX));
    write(REG_TIMER_INITIAL, count as u32);
}

/// Acknowledges the interrupt being handled.
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}

/// Sends a fixed interrupt `vector` to the core with APIC id `destination`.
pub fn send_interrupt(destination: u32, vector: u8) {
    send_ipi(destination, 0x4000 | u32::from(vector));
}

/// Sends a fixed interrupt `vector` to every core but this one (one IPI, whatever the
/// number of cores).
pub fn send_interrupt_to_others(vector: u8) {
    send_ipi(0, ICR_ALL_BUT_SELF | 0x4000 | u32::from(vector));
}

/// Sends INIT to every core but this one.
pub fn send_init_to_others() {
    send_ipi(0, ICR_ALL_BUT_SELF | ICR_INIT_ASSERT);
}

/// Sends STARTUP to every core but this one: they start in real mode at `page * 4096`.
pub fn send_startup_to_others(page: u8) {
    send_ipi(0, ICR_ALL_BUT_SELF | ICR_STARTUP | u32::from(page));
}

/// Sends STARTUP to `destination`: it starts in real mode at `page * 4096`.
pub fn send_startup(destination: u32, page: u8) {
    send_ipi(destination, ICR_STARTUP | u32::from(page));
}
