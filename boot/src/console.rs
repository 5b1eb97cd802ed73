//! Connects COM1 to the kernel console.

use devices::serial::{self, Serial};

static mut SERIAL: Option<Serial> = None;

/// Installs COM1 as the console. Call once, on the boot core, before other cores run.
pub fn init() {
    let Ok(port) = Serial::take_com1() else {
        // Without a working UART there is nobody to tell; the exit status still speaks.
        return;
    };
    let slot = &raw mut SERIAL;
    // SAFETY: called once on the boot core before any other core starts, so nothing
    // else references SERIAL; from here on it is only reached through the console lock.
    let sink: &'static mut Serial = unsafe { (*slot).insert(port) };
    percore::console::CONSOLE.install(sink, serial::write_unsynchronized);
}
