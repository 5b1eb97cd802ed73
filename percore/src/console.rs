//! The console: every `println!` reaches the sink as one uninterrupted line.
//!
//! One lock guards the sink and is held for a whole `print!`/`println!` call, so two
//! cores' lines never interleave. The console is the one device every core may use
//! directly; it is for people, not a data path. A core that fails (panic, exception)
//! prints through [`Console::print_fatal`], which waits a bounded time for the lock and
//! then falls back to the emergency writer, so a core that died holding the lock cannot
//! silence the report. A core that faults while it holds the lock itself (a panic while
//! formatting a line) releases it there, so the other cores, which go on, can print.
//!
//! The boot core may [`Console::hold`] output while it brings the machine up and
//! [`Console::release`] it once the cores are online: under QEMU's TCG every byte sent to
//! the UART costs about ten microseconds, so a line costs about a millisecond, which
//! printing at the end of start-up overlaps with the other cores' own set-up. Held text
//! comes out first and in order, whatever happens: a full buffer, a fatal report.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Where console output goes; the boot core installs the serial port here.
pub type Sink = &'static mut (dyn Write + Send);

/// Bytes a held console keeps before it writes them out anyway.
pub const HELD_BYTES: usize = 8192;

/// What the lock guards: the sink, and the held text while the console holds output.
struct State {
    sink: Option<Sink>,
    held: Option<heapless::String<HELD_BYTES>>,
}

impl State {
    /// Writes the held text out (through the sink, else `emergency`) and empties it.
    fn flush_held(&mut self, emergency: Option<&fn(fmt::Arguments<'_>)>) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        if !held.is_empty() {
            match (self.sink.as_mut(), emergency) {
                (Some(sink), _) => {
                    let _ = sink.write_str(held);
                }
                (None, Some(emergency)) => emergency(format_args!("{held}")),
                // Nobody to tell yet: keep it for the sink to come.
                (None, None) => return,
            }
            held.clear();
        }
    }

    /// Writes `args` to the sink, if there is one.
    fn write(&mut self, args: fmt::Arguments<'_>) {
        if let Some(sink) = self.sink.as_mut() {
            let _ = sink.write_fmt(args);
        }
    }
}

/// A lock-protected sink plus an emergency path.
pub struct Console {
    state: spin::Mutex<State>,
    /// The index + 1 of the core that holds the lock (0: none, or not known); written
    /// only by the holder, while it holds the lock.
    holder: AtomicUsize,
    emergency: spin::Once<fn(fmt::Arguments<'_>)>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// How often [`Console::print_fatal`] retries the lock before it gives up on it.
const FATAL_LOCK_ATTEMPTS: u32 = 1 << 22;

impl Console {
    /// Returns a console with no sink: output is dropped until [`Console::install`].
    pub const fn new() -> Self {
        Self {
            state: spin::Mutex::new(State {
                sink: None,
                held: None,
            }),
            holder: AtomicUsize::new(0),
            emergency: spin::Once::new(),
        }
    }

    /// Installs the sink and the emergency writer (a lock-free path to the same device).
    pub fn install(
        &self,
        _kernel: &crate::KernelCapability,
        sink: Sink,
        emergency: fn(fmt::Arguments<'_>),
    ) {
        self.emergency.call_once(|| emergency);
        self.state.lock().sink = Some(sink);
    }

    /// Installs only the emergency writer, so that a fatal report can be written before
    /// the sink is (the sink's device is not set up yet).
    pub fn install_emergency(
        &self,
        _kernel: &crate::KernelCapability,
        emergency: fn(fmt::Arguments<'_>),
    ) {
        self.emergency.call_once(|| emergency);
    }

    /// Keeps what is printed from now on in a buffer of [`HELD_BYTES`] until
    /// [`Console::release`] (a full buffer is written out first, so nothing is lost).
    pub fn hold(&self) {
        let mut state = self.state.lock();
        if state.held.is_none() {
            state.held = Some(heapless::String::new());
        }
    }

    /// Writes out what was held and prints directly again.
    pub fn release(&self) {
        let mut state = self.state.lock();
        state.flush_held(self.emergency.get());
        if state.held.as_ref().is_some_and(|held| held.is_empty()) {
            state.held = None;
        }
    }

    /// Writes `args` as one unit (into the held text while the console holds output).
    pub fn print(&self, args: fmt::Arguments<'_>) {
        let mut state = self.state.lock();
        self.holder.store(running_core(), Ordering::Relaxed);
        self.print_locked(&mut state, args);
        self.holder.store(0, Ordering::Relaxed);
    }

    /// Writes `args` with the lock held.
    fn print_locked(&self, state: &mut State, args: fmt::Arguments<'_>) {
        if let Some(held) = state.held.as_mut() {
            let length = held.len();
            if held.write_fmt(args).is_ok() {
                return;
            }
            held.truncate(length);
            // Full: out with what is held, then this, as it comes.
            state.flush_held(self.emergency.get());
            match state.held.as_mut() {
                Some(held) if held.is_empty() => {
                    if held.write_fmt(args).is_ok() {
                        return;
                    }
                    held.clear();
                }
                _ => {}
            }
            if state.sink.is_none() {
                if let Some(emergency) = self.emergency.get() {
                    emergency(args);
                }
                return;
            }
        }
        state.write(args);
    }

    /// Writes `args` even if the lock is never released (its holder may have died),
    /// after any held text.
    pub fn print_fatal(&self, args: fmt::Arguments<'_>) {
        self.release_if_held_here();
        for _ in 0..FATAL_LOCK_ATTEMPTS {
            if let Some(mut state) = self.state.try_lock() {
                self.holder.store(running_core(), Ordering::Relaxed);
                state.flush_held(self.emergency.get());
                let written = state.sink.is_some();
                if written {
                    state.write(args);
                }
                self.holder.store(0, Ordering::Relaxed);
                if written {
                    return;
                }
                break;
            }
            core::hint::spin_loop();
        }
        if let Some(emergency) = self.emergency.get() {
            emergency(args);
        }
    }
}

impl Console {
    /// Releases the lock if the running core holds it: it faulted in the middle of a
    /// line, and the code that took the lock will never run again (the fault ends it
    /// without unwinding), so nothing else would ever release it.
    pub fn release_if_held_here(&self) {
        let me = running_core();
        if me != 0 && self.holder.load(Ordering::Relaxed) == me {
            self.holder.store(0, Ordering::Relaxed);
            // SAFETY: this core holds the lock (only the holder writes `holder`, and it
            // clears it before unlocking), and the code that held it never runs again.
            unsafe { self.state.force_unlock() };
        }
    }
}

/// Returns the running core's index + 1, or 0 before it has one.
fn running_core() -> usize {
    crate::cpu::current().map_or(0, |local| local.index() + 1)
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's console.
pub static CONSOLE: Console = Console::new();

/// Prints to the console without a newline.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::CONSOLE.print(format_args!($($arg)*))
    };
}

/// Prints one line to the console; lines of different cores never interleave.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::CONSOLE.print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::CONSOLE.print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    // SAFETY: the tests play the kernel's start-up, for consoles of their own.
    const KERNEL: crate::KernelCapability = unsafe { crate::KernelCapability::new() };
    use std::sync::{Arc, Mutex};

    /// A sink that appends to a shared string, one character per call, so that any
    /// interleaving between writers would show.
    struct Recorder(Arc<Mutex<String>>);

    impl Write for Recorder {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                self.0.lock().unwrap().push(c);
                std::thread::yield_now();
            }
            Ok(())
        }
    }

    fn leak_console() -> (&'static Console, Arc<Mutex<String>>) {
        let text = Arc::new(Mutex::new(String::new()));
        let console: &'static Console = Box::leak(Box::new(Console::new()));
        let sink: Sink = Box::leak(Box::new(Recorder(text.clone())));
        console.install(&KERNEL, sink, |_| {
            panic!("emergency path used while the lock was free")
        });
        (console, text)
    }

    #[test]
    fn lines_from_many_threads_never_interleave() {
        let (console, text) = leak_console();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..50 {
                        console.print(format_args!("thread {t} line {i} ends here\n"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = text.lock().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 200);
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words.len(), 6, "interleaved line: {line:?}");
            assert_eq!(
                (words[0], words[2], words[4], words[5]),
                ("thread", "line", "ends", "here")
            );
        }
    }

    #[test]
    fn fatal_print_falls_back_when_the_lock_is_held() {
        static USED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let console: &'static Console = Box::leak(Box::new(Console::new()));
        let sink: Sink = Box::leak(Box::new(String::new()));
        console.install(&KERNEL, sink, |_| {
            USED.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        let held = console.state.lock();
        console.print_fatal(format_args!("core 1 panicked"));
        drop(held);
        assert!(USED.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// Returns a held console with a recording sink; the emergency path records into
    /// `emergency`, which the test passes as a static.
    fn held_console(
        emergency: fn(fmt::Arguments<'_>),
        with_sink: bool,
    ) -> (&'static Console, Arc<Mutex<String>>) {
        let text = Arc::new(Mutex::new(String::new()));
        let console: &'static Console = Box::leak(Box::new(Console::new()));
        console.install_emergency(&KERNEL, emergency);
        console.hold();
        if with_sink {
            let sink: Sink = Box::leak(Box::new(Recorder(text.clone())));
            console.install(&KERNEL, sink, emergency);
        }
        (console, text)
    }

    #[test]
    fn held_lines_come_out_in_order_on_release() {
        let (console, text) = held_console(|_| panic!("no emergency expected"), false);
        console.print(format_args!("one\n"));
        let sink: Sink = Box::leak(Box::new(Recorder(text.clone())));
        console.install(&KERNEL, sink, |_| panic!("no emergency expected"));
        console.print(format_args!("two\n"));
        assert_eq!(*text.lock().unwrap(), "", "held until released");
        console.release();
        assert_eq!(*text.lock().unwrap(), "one\ntwo\n");
        console.print(format_args!("three\n"));
        assert_eq!(*text.lock().unwrap(), "one\ntwo\nthree\n");
    }

    #[test]
    fn a_full_hold_writes_out_and_loses_nothing() {
        let (console, text) = held_console(|_| panic!("no emergency expected"), true);
        let line = "x".repeat(1000);
        for i in 0..20 {
            console.print(format_args!("{i} {line}\n"));
        }
        let long = "y".repeat(HELD_BYTES + 10);
        console.print(format_args!("{long}\n"));
        console.release();
        let text = text.lock().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 21);
        for (i, got) in lines[..20].iter().enumerate() {
            assert_eq!(*got, format!("{i} {line}"));
        }
        assert_eq!(lines[20], long);
    }

    static EMERGENCY: Mutex<String> = Mutex::new(String::new());

    fn record_emergency(args: fmt::Arguments<'_>) {
        EMERGENCY.lock().unwrap().push_str(&args.to_string());
    }

    #[test]
    fn a_fatal_report_comes_after_the_held_text() {
        let (console, text) = held_console(record_emergency, true);
        console.print(format_args!("booting\n"));
        console.print_fatal(format_args!("PANIC on core 0: early\n"));
        assert_eq!(*text.lock().unwrap(), "booting\nPANIC on core 0: early\n");

        // Before the sink exists, held text and report go the emergency way.
        let (early, _) = held_console(record_emergency, false);
        early.print(format_args!("held early\n"));
        early.print_fatal(format_args!("manada: unknown app\n"));
        let emergency = EMERGENCY.lock().unwrap();
        assert!(
            emergency.contains("held early\nmanada: unknown app\n"),
            "{emergency:?}"
        );
    }

    #[test]
    fn output_before_install_is_dropped_quietly() {
        let console = Console::new();
        console.print(format_args!("nobody hears this"));
        console.print_fatal(format_args!("nor this"));
    }

    #[test]
    fn a_core_that_faults_holding_the_lock_releases_it() {
        std::thread::spawn(|| {
            let local = Box::leak(Box::new(crate::CoreLocal::new(2, 2, None, None)));
            // SAFETY: host stand-in, always safe.
            unsafe { crate::cpu::install(local) };
            let text = Arc::new(Mutex::new(String::new()));
            let console: &'static Console = Box::leak(Box::new(Console::new()));
            let sink: Sink = Box::leak(Box::new(Recorder(text.clone())));
            console.install(&KERNEL, sink, |_| {
                panic!("the lock should have been released")
            });
            // As if core 2 faulted inside `print`: the lock stays held by it.
            let held = console.state.lock();
            console.holder.store(running_core(), Ordering::Relaxed);
            core::mem::forget(held);
            console.print_fatal(format_args!("PANIC on core 2\n"));
            console.print(format_args!("the others go on\n"));
            assert_eq!(*text.lock().unwrap(), "PANIC on core 2\nthe others go on\n");
        })
        .join()
        .unwrap();
    }
}
