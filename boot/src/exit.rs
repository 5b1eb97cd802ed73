//! Ending the run: QEMU's `isa-debug-exit` device turns a port write into an exit status.
//!
//! Writing `v` to port 0xF4 makes QEMU exit with `(v << 1) | 1`: 0x10 gives 33 (success),
//! 0x11 gives 35 (failure). A triple fault under `-no-reboot` exits with 0, which is why
//! success is not 0. `cargo xtask run` maps 33 to 0 and 35 to 1.

use crate::cpu::halt_forever;

const DEBUG_EXIT_PORT: u16 = 0xF4;

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success = 0x10,
    Failure = 0x11,
}

/// Ends the run with `outcome`; halts this core if no exit device is present.
pub fn exit(outcome: Outcome) -> ! {
    // SAFETY: port 0xF4 is QEMU's isa-debug-exit (or nothing); a write only ends the VM.
    unsafe { x86::io::outl(DEBUG_EXIT_PORT, outcome as u32) };
    percore::console::CONSOLE.print_fatal(format_args!(
        "manada: no isa-debug-exit device; halting ({outcome:?})\n"
    ));
    halt_forever()
}

/// Reports a start-up failure and ends the run. Before the console has its UART
/// (`serial::init`), the report goes out by the console's emergency path, which
/// `serial::hold` installs first thing at boot, after what was held.
pub fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    percore::console::CONSOLE.print_fatal(format_args!("manada: {args}\n"));
    exit(Outcome::Failure)
}
