//! Deliberate faults, reachable only from the kernel command line, so the integration
//! tests can check that a fault is reported with its core, vector and RIP and contained.
//!
//! - `selftest=invalid-opcode` or `selftest=page-fault`: the last core faults right
//!   before it enters its scheduler (outside any thread, so the core fails).
//! - `selftest=dead-core`: the last application processor is left asleep, as a core
//!   that never answers would be, to check that it is reported and the others go on.
//! - `selftest=fault:core=K:kind=KIND[:in=thread|loop][:after=MS]`: core K raises KIND
//!   (`panic`, `page-fault`, `invalid-opcode`, `general-protection`, `divide-error`) MS
//!   milliseconds (default 0) after it started its scheduler: `in=thread` (the default)
//!   in the first of its threads that resumes from a yield, sleep or wait from then on,
//!   which fails alone (its core, if the thread was in a critical section); `in=loop` in
//!   its kernel loop, which fails the core.
//! - `selftest=sleep`: sleeps 2 s between two console lines, whose arrival the host
//!   times, so a wrong TSC or APIC timer rate cannot pass unseen.
//! - `selftest=tsc`: measures the TSC for 200 ms against the clock it was measured
//!   against at boot and prints both rates.

use percore::cmdline::CommandLine;
use percore::fault::{FaultKind, Injection, InjectionError};
use percore::println;

/// What `selftest=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selftest {
    /// No selftest, or a word this kernel does not know (reported, ignored).
    None,
    /// The last core faults before its scheduler runs.
    EarlyFault(FaultKind),
    /// The last application processor stays asleep.
    DeadCore,
    /// One core faults as the injection says.
    Fault(Injection),
    /// Core 0 sleeps 2 s between two console lines before the app.
    Sleep,
    /// Core 0 measures the TSC for 200 ms before the app.
    Tsc,
}

/// Returns the selftest the command line asks for; a `fault:` word that does not parse
/// is an error (a test that injects nothing must not pass).
pub fn parse(command_line: &str) -> Result<Selftest, InjectionError> {
    Ok(match CommandLine::new(command_line).get("selftest") {
        None => Selftest::None,
        Some("invalid-opcode") => Selftest::EarlyFault(FaultKind::InvalidOpcode),
        Some("page-fault") => Selftest::EarlyFault(FaultKind::PageFault),
        Some("dead-core") => Selftest::DeadCore,
        Some("sleep") => Selftest::Sleep,
        Some("tsc") => Selftest::Tsc,
        Some(text) if text.starts_with("fault:") => Selftest::Fault(Injection::parse(text)?),
        Some(_) => Selftest::None,
    })
}

/// Returns the selftest of the published command line (checked at boot).
fn current() -> Selftest {
    parse(percore::boot_info().command_line().as_str()).unwrap_or(Selftest::None)
}

/// Returns true when the command line asks to leave the last core asleep. The boot
/// core asks before it starts the others, so only the one word is compared (under TCG
/// every instruction it runs first costs its translation; `check` parses the rest).
pub fn simulate_dead_core(command_line: &str) -> bool {
    CommandLine::new(command_line).get("selftest") == Some("dead-core")
}

/// Checks the selftest words at boot: an injection that does not parse, or names a
/// core outside the run, ends the run with a clear error; an unknown word is reported.
pub fn check(command_line: &str, cores: usize) {
    match parse(command_line) {
        Err(error) => crate::exit::fatal(format_args!("selftest: {error}")),
        Ok(Selftest::Fault(injection)) if injection.core >= cores => {
            crate::exit::fatal(format_args!(
                "selftest: core {} is not a core of this run (0 to {})",
                injection.core,
                cores - 1
            ))
        }
        Ok(Selftest::Fault(injection)) => println!(
            "manada: selftest: core {} will raise {} in {} after {} ms",
            injection.core,
            injection.kind.name(),
            match injection.place {
                percore::fault::Place::Thread => "a thread",
                percore::fault::Place::Loop => "its kernel loop",
            },
            injection.after_ms
        ),
        Ok(Selftest::None) => {
            if let Some(word) = CommandLine::new(command_line).get("selftest") {
                println!("manada: unknown selftest '{word}' ignored");
            }
        }
        Ok(_) => {}
    }
}

/// Prepares this core's selftest as it starts: the last of `cores` cores raises an early
/// fault now; the core an injection names arms it.
pub fn start_core(core: usize, cores: usize) {
    match current() {
        Selftest::EarlyFault(kind) if core + 1 == cores => raise(kind),
        Selftest::Fault(injection) if injection.core == core => percore::fault::arm(&injection),
        _ => {}
    }
}

/// Raises `kind` on the running core, now (the injector's hook).
pub fn raise(kind: FaultKind) {
    let core = percore::cpu::current().map_or(usize::MAX, percore::CoreLocal::index);
    println!("manada: selftest: core {core} raises {}", kind.name());
    match kind {
        FaultKind::Panic => panic!("selftest: deliberate panic on core {core}"),
        FaultKind::PageFault => {
            // 1 TiB is far above anything the kernel maps.
            // SAFETY: faults on purpose (#PF); the handler never returns here.
            let _ = unsafe { core::ptr::read_volatile(0x100_0000_0000 as *const u64) };
        }
        // SAFETY: raises #UD on purpose; the handler never returns here.
        FaultKind::InvalidOpcode => unsafe { core::arch::asm!("ud2", options(nomem, nostack)) },
        FaultKind::GeneralProtection => {
            // A non-canonical address: #GP, not #PF.
            // SAFETY: faults on purpose; the handler never returns here.
            let _ = unsafe { core::ptr::read_volatile(0x8000_0000_0000_0000_u64 as *const u64) };
        }
        FaultKind::DivideError => {
            // SAFETY: divides by zero on purpose (#DE); the handler never returns here.
            unsafe {
                core::arch::asm!(
                    "xor edx, edx",
                    "div ecx",
                    inout("eax") 1u32 => _,
                    in("ecx") 0u32,
                    out("edx") _,
                    options(nomem, nostack),
                )
            };
        }
    }
}

/// How long `selftest=sleep` sleeps.
pub const SLEEP: core::time::Duration = core::time::Duration::from_secs(2);
/// How long `selftest=tsc` measures.
const LONG_WINDOW_US: u64 = 200_000;

/// Runs the self test that runs on core 0's main thread before the app, if asked for.
pub fn before_app() {
    match current() {
        Selftest::Sleep => {
            percore::println!("manada: selftest: sleep {} ms begins", SLEEP.as_millis());
            percore::sleep(SLEEP);
            percore::println!("manada: selftest: sleep ends");
        }
        Selftest::Tsc => check_tsc(),
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
