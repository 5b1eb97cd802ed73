//! The serial console: COM1 as the sink of the kernel console (`percore::console`).
//!
//! Start-up output is held ([`hold`]) and the UART set up only when the cores are online
//! ([`init`], before any core but the boot core runs past its start-up): under QEMU both
//! cost milliseconds that the boot core would otherwise spend before it wakes the
//! others. A fatal report before that goes out by the emergency path.

use devices::serial::{self, Serial};
use percore::console::CONSOLE;
use percore::KernelCapability;

static mut SERIAL: Option<Serial> = None;

/// Makes the console keep what is printed until [`init`] and release; a fatal report
/// still goes out at once (by raw writes to COM1), after what was held.
pub fn hold(kernel: &KernelCapability) {
    CONSOLE.install_emergency(kernel, serial::write_unsynchronized);
    CONSOLE.hold();
}

/// Installs COM1 as the console (a second call does nothing). Boot core only; before
/// other cores print.
pub fn init(kernel: &KernelCapability) {
    let Ok(port) = Serial::take_com1() else {
        // Taken already, or no working UART: then there is nobody to tell, and the exit
        // status still speaks.
        return;
    };
    let slot = &raw mut SERIAL;
    // SAFETY: called once on the boot core before any other core starts, so nothing
    // else references SERIAL; from here on it is only reached through the console lock.
    let sink: &'static mut Serial = unsafe { (*slot).insert(port) };
    CONSOLE.install(kernel, sink, serial::write_unsynchronized);
}

/// Sets the UART up if it is not yet, and writes out what was held.
pub fn release(kernel: &KernelCapability) {
    init(kernel);
    CONSOLE.release();
}
