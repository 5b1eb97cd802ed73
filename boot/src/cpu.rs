//! Small CPU helpers: CPUID, the TSC, MSRs, halting.

use x86::cpuid::native_cpuid::cpuid_count;

/// Returns `(eax, ebx, ecx, edx)` of CPUID leaf `leaf`, sub-leaf `sub`.
pub fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    let r = cpuid_count(leaf, sub);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Returns the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads a counter; CR4.TSD is clear, so it works in any ring.
    unsafe { x86::time::rdtsc() }
}

/// Returns the value of model-specific register `msr`.
///
/// # Safety
/// `msr` must exist on this CPU (reading an absent MSR raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: the caller guarantees the MSR exists; kernel code runs in ring 0.
    unsafe { x86::msr::rdmsr(msr) }
}

/// Writes `value` to model-specific register `msr`.
///
/// # Safety
/// `msr` must exist, and the write must not break an invariant the kernel relies on.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded caller's contract.
    unsafe { x86::msr::wrmsr(msr, value) }
}

/// Stops this core for good, interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: disabling interrupts and halting touch no memory; nothing wakes us
        // but an NMI, after which we halt again.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}
