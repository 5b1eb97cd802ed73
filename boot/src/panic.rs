//! The panic handler: report the core and the message, end the run with failure.

use core::fmt;

/// Names the running core in fatal reports: its index once it has one, otherwise its
/// APIC id (a core can fail before it is numbered).
pub struct CoreName(Option<usize>, u32);

impl CoreName {
    /// Returns the name of the running core.
    pub fn current() -> Self {
        let index = percore::cpu::current().map(percore::CoreLocal::index);
        CoreName(index, crate::apic::id_from_cpuid())
    }
}

impl fmt::Display for CoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(index) => write!(f, "{index}"),
            None => write!(f, "? (APIC id {}, not yet numbered)", self.1),
        }
    }
}

/// Prints `, fault address X` for a page fault's CR2 (nothing for 0).
pub struct FaultAddress(pub u64);

impl fmt::Display for FaultAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 {
            write!(f, ", fault address {:#x}", self.0)?;
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let core = CoreName::current();
    match info.location() {
        Some(at) => percore::console::CONSOLE.print_fatal(format_args!(
            "PANIC on core {core}: {} at {}:{}\n",
            info.message(),
            at.file(),
            at.line()
        )),
        None => percore::console::CONSOLE
            .print_fatal(format_args!("PANIC on core {core}: {}\n", info.message())),
    }
    crate::exit::exit(crate::exit::Outcome::Failure)
}
