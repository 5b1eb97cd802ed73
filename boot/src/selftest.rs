//! Self tests the integration tests ask for on the command line (`selftest=WORD`).
//!
//! `invalid-opcode` or `page-fault` make the last core fault right before it would run
//! the app, to check that a fault is reported with its core, vector and RIP, and fails
//! the run. `dead-core` leaves the last application processor asleep, as a core that
//! never answers would be, to check that it is reported and that the others go on.
//! `sleep` sleeps 2 s between two console lines, whose arrival the host times, so a
//! wrong TSC or APIC timer rate cannot pass unseen. `tsc` measures the TSC for 200 ms
//! against the clock it was measured against at boot and prints both rates.

/// Returns true when the command line asks to leave the last core asleep.
pub fn simulate_dead_core(cmdline: &str) -> bool {
    percore::cmdline::CommandLine::new(cmdline).get("selftest") == Some("dead-core")
}

/// How long `selftest=sleep` sleeps.
pub const SLEEP: core::time::Duration = core::time::Duration::from_secs(2);
/// How long `selftest=tsc` measures.
const LONG_WINDOW_US: u64 = 200_000;

/// Runs the self test that runs on core 0's main thread before the app, if asked for.
pub fn before_app() {
    match percore::boot_info().command_line().get("selftest") {
        Some("sleep") => {
            percore::println!("manada: selftest: sleep {} ms begins", SLEEP.as_millis());
            percore::sleep(SLEEP);
            percore::println!("manada: selftest: sleep ends");
        }
        Some("tsc") => check_tsc(),
        _ => {}
    }
}

/// Measures the TSC for [`LONG_WINDOW_US`] against the boot's clock and prints both.
fn check_tsc() {
    let boot_hz = percore::boot_info().tsc_hz;
    let Some(crate::tsc::Found::Measured(clock, at_boot)) = crate::tsc::found() else {
        percore::println!("manada: selftest: tsc: the rate was not measured at boot");
        return;
    };
    match crate::tsc::measure_for(&clock, LONG_WINDOW_US) {
        Ok(long) => percore::println!(
            "manada: selftest: tsc: boot {boot_hz} Hz within {} ppm over {} us; {} us against the {}: {} Hz within {} ppm; difference {} ppm",
            at_boot.error_ppm,
            at_boot.micros(&clock.reference()),
            long.micros(&clock.reference()),
            clock.name(),
            long.hz,
            long.error_ppm,
            percore::calibration::difference_ppm(boot_hz, long.hz)
        ),
        Err(error) => percore::println!("manada: selftest: tsc: long window failed: {error:?}"),
    }
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
        Some("dead-core" | "sleep" | "tsc") => {}
        Some(other) => percore::println!("manada: unknown selftest '{other}' ignored"),
        None => {}
    }
}
