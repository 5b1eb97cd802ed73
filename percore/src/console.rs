//! The console: every `println!` reaches the sink as one uninterrupted line.
//!
//! One lock guards the sink and is held for a whole `print!`/`println!` call, so two
//! cores' lines never interleave. The console is the one device every core may use
//! directly; it is for people, not a data path. A core that fails (panic, exception)
//! prints through [`Console::print_fatal`], which waits a bounded time for the lock and
//! then falls back to the emergency writer, so a core that died holding the lock cannot
//! silence the report. A core that faults while it holds the lock itself (a panic while
//! formatting a line) releases it there, so the other cores, which go on, can print.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Where console output goes; the boot core installs the serial port here.
pub type Sink = &'static mut (dyn Write + Send);

/// A lock-protected sink plus an emergency path.
pub struct Console {
    sink: spin::Mutex<Option<Sink>>,
    emergency: spin::Once<fn(fmt::Arguments<'_>)>,
    /// The index + 1 of the core that holds the lock (0: none, or not known); written
    /// only by the holder, while it holds the lock.
    holder: AtomicUsize,
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
            sink: spin::Mutex::new(None),
            emergency: spin::Once::new(),
            holder: AtomicUsize::new(0),
        }
    }

    /// Installs the sink and the emergency writer (a lock-free path to the same device).
    pub fn install(&self, sink: Sink, emergency: fn(fmt::Arguments<'_>)) {
        *self.sink.lock() = Some(sink);
        self.emergency.call_once(|| emergency);
    }

    /// Writes `args` as one unit.
    pub fn print(&self, args: fmt::Arguments<'_>) {
        let mut sink = self.sink.lock();
        self.holder.store(running_core(), Ordering::Relaxed);
        if let Some(sink) = sink.as_mut() {
            let _ = sink.write_fmt(args);
        }
        self.holder.store(0, Ordering::Relaxed);
    }

    /// Writes `args` even if the lock is never released (its holder may have died).
    pub fn print_fatal(&self, args: fmt::Arguments<'_>) {
        self.release_if_held_here();
        for _ in 0..FATAL_LOCK_ATTEMPTS {
            if let Some(mut guard) = self.sink.try_lock() {
                self.holder.store(running_core(), Ordering::Relaxed);
                if let Some(sink) = guard.as_mut() {
                    let _ = sink.write_fmt(args);
                }
                self.holder.store(0, Ordering::Relaxed);
                if guard.is_some() {
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

    /// Releases the lock if the running core holds it: it faulted in the middle of a
    /// line, and the code that took the lock will never run again (the fault ends it
    /// without unwinding), so nothing else would ever release it.
    pub fn release_if_held_here(&self) {
        let me = running_core();
        if me != 0 && self.holder.load(Ordering::Relaxed) == me {
            self.holder.store(0, Ordering::Relaxed);
            // SAFETY: this core holds the lock (only the holder writes `holder`, and it
            // clears it before unlocking), and the code that held it never runs again.
            unsafe { self.sink.force_unlock() };
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

/// Returns the running core's index + 1, or 0 before it has one.
fn running_core() -> usize {
    crate::cpu::current().map_or(0, |local| local.index() + 1)
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
        console.install(sink, |_| {
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
        console.install(sink, |_| {
            USED.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        let held = console.sink.lock();
        console.print_fatal(format_args!("core 1 panicked"));
        drop(held);
        assert!(USED.load(std::sync::atomic::Ordering::SeqCst));
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
            console.install(sink, |_| panic!("the lock should have been released"));
            // As if core 2 faulted inside `print`: the lock stays held by it.
            let held = console.sink.lock();
            console.holder.store(running_core(), Ordering::Relaxed);
            core::mem::forget(held);
            console.print_fatal(format_args!("PANIC on core 2\n"));
            console.print(format_args!("the others go on\n"));
            assert_eq!(*text.lock().unwrap(), "PANIC on core 2\nthe others go on\n");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn output_before_install_is_dropped_quietly() {
        let console = Console::new();
        console.print(format_args!("nobody hears this"));
        console.print_fatal(format_args!("nor this"));
    }
}
