//! What the hardware does for a core's kernel: the hooks `boot` installs once, before
//! the cores run their kernels (waking and halting a core, its timer, guard pages,
//! raising an injected fault, telling that a core failed).
//!
//! A module of its own, below everything that uses a hook, so that the mailbox, the
//! scheduler and fault containment reach the hardware without reaching each other. On
//! the host (tests) `percore::host` installs hooks made of host threads, and without
//! hooks a core spins instead of halting.

use crate::injection::FaultKind;
use crate::KernelCapability;

/// What the hardware does for a core's kernel (installed by `boot`).
#[derive(Debug, Clone, Copy)]
pub struct Hooks {
    /// Sends the wake-up interrupt to the core with this APIC id.
    pub wake: fn(u32),
    /// Halts until an interrupt arrives (interrupts masked before and after).
    pub halt: fn(),
    /// Arms this core's timer to interrupt at this TSC value (`None`: disarm).
    pub arm_timer: fn(Option<u64>),
    /// Unmaps (`true`) or maps again (`false`) the page at this address: a thread
    /// stack's guard page. Returns false when it could not (no memory for a page
    /// table): the thread is then not created.
    pub protect: fn(usize, bool) -> bool,
    /// Raises the deliberate fault the fault injector asks for (`selftest=fault:...`).
    pub raise: fn(FaultKind),
    /// Told, on every core that goes on, that this core failed (after the core's waiters
    /// on it were failed).
    pub core_failed: fn(usize),
}

static HOOKS: spin::Once<Hooks> = spin::Once::new();

/// Installs the platform's hooks. Only the first call has an effect; kernel only.
pub fn install_hooks(_kernel: &KernelCapability, hooks: Hooks) {
    HOOKS.call_once(|| hooks);
}

/// Returns the installed hooks.
pub(crate) fn hooks() -> Hooks {
    // Without hooks (host tests), waking is a no-op and halting is a spin hint.
    HOOKS.get().copied().unwrap_or(Hooks {
        wake: |_| {},
        halt: core::hint::spin_loop,
        arm_timer: |_| {},
        protect: |_, _| true,
        raise: |kind| panic!("injected fault {kind:?}"),
        core_failed: |_| {},
    })
}
