//! The panic handler, and what every fault ends in: after the report, the faulting
//! thread ends alone when its core's kernel state is intact, else the core is fenced and
//! halts; the other cores go on (`percore::fault` decides which).

use core::fmt;

use percore::fault::{Containment, CoreFailure, FaultSite};

use crate::exit::{exit, Outcome};

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

/// Prints `, thread T` for the running thread in fatal reports (nothing in the core's
/// loop).
pub struct ThreadName(Option<u64>);

impl ThreadName {
    /// Returns the name of the running thread.
    pub fn current() -> Self {
        ThreadName(percore::fault::running_thread_id())
    }
}

impl fmt::Display for ThreadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(thread) => write!(f, ", thread {thread}"),
            None => Ok(()),
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
    let thread = ThreadName::current();
    match info.location() {
        Some(at) => percore::console::CONSOLE.print_fatal(format_args!(
            "PANIC on core {core}{thread}: {} at {}:{}\n",
            info.message(),
            at.file(),
            at.line()
        )),
        None => percore::console::CONSOLE.print_fatal(format_args!(
            "PANIC on core {core}{thread}: {}\n",
            info.message()
        )),
    }
    let marker = 0u8;
    contain(FaultSite {
        vector: None,
        // Where this handler's frame is: on the panicking thread's stack.
        stack_pointer: core::hint::black_box(&raw const marker) as usize,
    })
}

/// Ends what the reported fault at `site` must end: the running thread, the core, or
/// (before the core runs its own kernel instance) the run.
pub fn contain(site: FaultSite) -> ! {
    match percore::fault::contain(site) {
        Containment::EndRun => exit(Outcome::Failure),
        Containment::EndThread { thread, error } => {
            percore::console::CONSOLE.print_fatal(format_args!(
                "manada: core {} goes on without thread {thread} ({error}); its stack and what it held are leaked\n",
                CoreName::current(),
            ));
            percore::sched::end_failed_thread(error)
        }
        Containment::FailCore(reason) => fail_core(reason),
        Containment::Halt => {
            // No report (printing may be what faults), but the console stays usable.
            percore::console::CONSOLE.release_if_held_here();
            percore::fault::fence_this_core();
            crate::cpu::halt_forever()
        }
    }
}

/// Fences this core and halts it for good, after waking every other core so that they
/// fail at once what waits on it. The last core standing ends the run instead.
fn fail_core(reason: CoreFailure) -> ! {
    let core = CoreName::current();
    percore::console::CONSOLE.print_fatal(format_args!(
        "manada: core {core} failed: {reason}; it is fenced and halts, the other cores go on\n"
    ));
    let Some(index) = percore::fault::fence_this_core() else {
        exit(Outcome::Failure)
    };
    let mut others = 0;
    if let Some(info) = percore::bootinfo::try_boot_info() {
        for (other, desc) in info.cores.iter().enumerate() {
            if other != index && !percore::core_failed(other) {
                others += 1;
                crate::apic::send_interrupt(desc.apic_id, crate::vectors::WAKEUP_VECTOR);
            }
        }
    }
    if others == 0 {
        percore::console::CONSOLE.print_fatal(format_args!(
            "manada: no core is left to run; {}\n",
            percore::fault::failures()
        ));
        exit(Outcome::Failure)
    }
    crate::cpu::halt_forever()
}
