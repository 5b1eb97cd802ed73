//! The COM1 serial port (16550 UART at I/O port 0x3F8): the kernel console.
//!
//! [`Serial::take_com1`] hands out the port once, so only one owner drives the UART.
//! [`write_unsynchronized`] is the fatal-path escape hatch: it writes bytes straight
//! to the port, for a panic or exception report when the owner cannot be reached.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550Tty};

const COM1: u16 = 0x3F8;
const LINE_STATUS: u16 = COM1 + 5;
const TRANSMIT_EMPTY: u8 = 1 << 5;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The initialised COM1 port. Writing a `\n` sends `\r\n`.
#[derive(Debug)]
pub struct Serial(Uart16550Tty<PioBackend>);

/// Why COM1 could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialError {
    /// The port was already handed out.
    AlreadyTaken,
    /// The UART did not initialise or failed its loopback self-test.
    NotWorking,
}

impl Serial {
    /// Returns COM1, initialised (115200 8N1) and self-tested, the first time it is
    /// called; later calls return [`SerialError::AlreadyTaken`].
    ///
    /// Only meaningful in ring 0 on a PC-compatible machine (port I/O faults elsewhere).
    pub fn take_com1() -> Result<Serial, SerialError> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return Err(SerialError::AlreadyTaken);
        }
        // SAFETY: 0x3F8..0x400 is COM1 on every PC-compatible machine, and the `TAKEN`
        // flag makes this the only owner of those eight ports.
        unsafe { Uart16550Tty::new_port(COM1, Config::default()) }
            .map(Serial)
            .map_err(|_| SerialError::NotWorking)
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(s)
    }
}

/// Writes `args` to COM1 byte by byte, bypassing its owner. For panic and exception
/// reports only: it may interleave with a line the owner is writing at that moment.
pub fn write_unsynchronized(args: fmt::Arguments<'_>) {
    struct Raw;
    impl fmt::Write for Raw {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for byte in s.bytes() {
                if byte == b'\n' {
                    put(b'\r');
                }
                put(byte);
            }
            Ok(())
        }
    }
    let _ = fmt::Write::write_fmt(&mut Raw, args);
}

fn put(byte: u8) {
    // Bounded wait: a UART that never drains must not hang the fatal path.
    for _ in 0..100_000 {
        // SAFETY: reading COM1's line status register has no side effect.
        if unsafe { x86::io::inb(LINE_STATUS) } & TRANSMIT_EMPTY != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: writing a byte to COM1's transmit register only sends it.
    unsafe { x86::io::outb(COM1, byte) };
}
