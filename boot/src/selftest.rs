//! Deliberate CPU exceptions, so the integration tests can check that a fault is
//! reported with its core, vector and RIP, and fails the run.
//!
//! `selftest=invalid-opcode` or `selftest=page-fault` on the command line makes the
//! last core fault right before it would run the app. `selftest=dead-core` leaves the
//! last application processor asleep, as a core that never answers would be, to check
//! that it is reported and that the others go on.

/// Returns true when the command line asks to leave the last core asleep.
pub fn simulate_dead_core(cmdline: &str) -> bool {
    percore::cmdline::CommandLine::new(cmdline).get("selftest") == Some("dead-core")
}

/// Raises the exception `selftest` names, if this is the last of `cores` cores.
pub fn maybe_fault(core: usize, cores: usize) {
    if core + 1 != cores {
        return;
    }
    match percore::boot_info().command_line().get("selftest") {
        // SAFETY: raises #UD on purpose; the handler never returns here.
        Some("invalid-opcode") => unsafe { core::arch::asm!("ud2", options(nomem, nostack)) },
        Some("page-fault") => {
            // 1 TiB is far above anything the kernel maps.
            // SAFETY: faults on purpose (#PF); the handler never returns here.
            let _ = unsafe { core::ptr::read_volatile(0x100_0000_0000 as *const u64) };
        }
        Some("dead-core") => {}
        Some(other) => percore::println!("manada: unknown selftest '{other}' ignored"),
        None => {}
    }
}
