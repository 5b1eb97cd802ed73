//! A machine of cores on the host, for tests and runnable examples: every core is a host
//! thread that runs this crate's real scheduler, heap and mailbox rings.
//!
//! [`run`] starts a machine and runs a function as a thread on its core 0, the way the
//! kernel runs an application's `main`, then returns what it returned. Threads, `join`,
//! `sleep`, `park`, `run_on` and channels work as in the kernel; what differs is below
//! the hooks: halting parks the host thread, the wake-up interrupt unparks it, and the
//! timer is the park's timeout, and the console is standard output. Guard pages are not
//! mapped out.
//!
//! The boot information (the core count, the TSC rate) is published once per process,
//! so every machine of one process has the same number of cores. A machine's cores
//! stay parked after its function returned; they cost nothing but their memory.
//! A panic in the function is passed on to the caller; a panic in another thread of the
//! machine aborts the process (it cannot unwind out of a thread's own stack).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread::Thread;

use ipc::Doorbell;

use crate::bootinfo::{self, BootInfo, CoreDesc};
use crate::heap::Heap;
use crate::mailbox::{MailboxLocation, Ring};
use crate::platform::{self, Hooks};
use crate::{CoreLocal, KernelCapability, Mailbox, MAX_CORES};

/// Each core's heap on the host.
const HEAP_BYTES: usize = 8 << 20;
/// The longest a halted core sleeps without a timer: a safety net, never needed for
/// correctness (a wake-up is never lost: see `ipc::doorbell`).
const LONGEST_HALT: Duration = Duration::from_millis(50);

/// The host threads of every core of every machine, by APIC id (unique per process).
static THREADS: Mutex<Option<HashMap<u32, Thread>>> = Mutex::new(None);
/// The next free APIC id.
static NEXT_APIC_ID: AtomicU32 = AtomicU32::new(0x1000);
/// Installs the console's sink once for the process.
static CONSOLE_ONCE: std::sync::Once = std::sync::Once::new();
/// The TSC rate measured once for the process.
static TSC_HZ: OnceLock<u64> = OnceLock::new();

std::thread_local! {
    /// This core's timer: the TSC value at which its halt ends.
    static TIMER: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `main` as a thread on core 0 of a machine of `cores` cores (host threads), and
/// returns its result once it returned.
///
/// ```
/// let sum = percore::host::run(2, || {
///     let other = percore::spawn_on(1, || percore::current_core() * 10);
///     percore::current_core() + other.join().unwrap()
/// });
/// assert_eq!(sum, 10);
/// ```
///
/// # Panics
/// Panics if `cores` is 0 or more than [`MAX_CORES`], if an earlier machine of this
/// process had another number of cores, or with `main`'s own panic.
pub fn run<T: Send + 'static>(cores: usize, main: impl FnOnce() -> T + Send + 'static) -> T {
    assert!(
        (1..=MAX_CORES).contains(&cores),
        "a machine has 1 to {MAX_CORES} cores"
    );
    let first_apic_id = NEXT_APIC_ID.fetch_add(cores as u32, Ordering::Relaxed);
    let locations: &'static [MailboxLocation] = Box::leak(
        (0..cores)
            .map(|core| MailboxLocation {
                inbound: Box::leak((0..cores).map(|_| Ring::new()).collect::<Vec<_>>().into()),
                doorbell: Box::leak(Box::new(Doorbell::new())),
                apic_id: first_apic_id + core as u32,
            })
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    // SAFETY: a host machine is made here, so this function plays the kernel's start-up;
    // the capability goes only to the kernel-only entry points it calls below.
    let kernel = unsafe { KernelCapability::new() };
    publish_machine(&kernel, cores, locations);
    CONSOLE_ONCE.call_once(|| {
        crate::console::CONSOLE.install(&kernel, Box::leak(Box::new(StandardOutput)), |args| {
            std::eprint!("{args}")
        });
    });
    platform::install_hooks(
        &kernel,
        Hooks {
            wake,
            halt,
            arm_timer: |deadline| TIMER.with(|timer| timer.set(deadline)),
            protect: |_, _| true,
            raise: |kind| panic!("injected fault {kind:?}"),
            core_failed: |_| {},
        },
    );

    let (result_sender, result) = mpsc::channel();
    let mut main = Some(main);
    for core in 0..cores {
        let job = if core == 0 { main.take() } else { None };
        let result_sender = result_sender.clone();
        let (started_sender, started) = mpsc::channel();
        std::thread::Builder::new()
            .name(std::format!("core {core}"))
            .spawn(move || {
                let apic_id = locations[core].apic_id;
                threads()
                    .get_or_insert_with(HashMap::new)
                    .insert(apic_id, std::thread::current());
                started_sender.send(()).expect("the caller waits");
                enter_core(core, apic_id, locations);
                if let Some(job) = job {
                    crate::spawn(move || {
                        let outcome = std::panic::catch_unwind(core::panic::AssertUnwindSafe(job));
                        let _ = result_sender.send(outcome);
                    });
                }
                crate::sched::run()
            })
            .expect("the host starts a thread per core");
        // Every core's thread is known before any core may wake it.
        started.recv().expect("the core's thread starts");
    }
    match result.recv().expect("core 0 answers") {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Publishes the boot information of a `cores`-core machine, once per process.
fn publish_machine(kernel: &KernelCapability, cores: usize, locations: &'static [MailboxLocation]) {
    let descriptions = locations
        .iter()
        .map(|location| CoreDesc {
            apic_id: location.apic_id,
            memory: heapless::Vec::new(),
            mailbox: *location,
        })
        .collect();
    let info = bootinfo::publish(
        kernel,
        BootInfo {
            cores: descriptions,
            cmdline: heapless::String::new(),
            tsc_hz: tsc_hz(),
            timeline: crate::timeline::Timeline::new(0),
            x2apic: false,
            service_reserve: None,
            services: crate::placement::Placement::decide(cores, &[], |_| None)
                .expect("no services to place"),
        },
    );
    assert_eq!(
        info.cores.len(),
        cores,
        "every machine of one process has the same number of cores"
    );
}

/// Makes the calling host thread core `core`: its mailbox, its heap, its `CoreLocal`.
fn enter_core(core: usize, apic_id: u32, locations: &'static [MailboxLocation]) {
    let mailbox = Mailbox::open(core, locations).expect("a fresh machine's rings are free");
    let memory = leak_memory(HEAP_BYTES);
    // SAFETY: the range is a leaked host allocation that only this core's heap uses.
    let heap = unsafe { Heap::new(&[memory]) };
    let local = Box::leak(Box::new(CoreLocal::new(
        core,
        apic_id,
        Some(mailbox),
        Some(heap),
    )));
    // SAFETY: the host stand-in for the GS base is a thread-local; always safe.
    unsafe { crate::cpu::install(local) };
}

/// Returns the address range of `bytes` of leaked, page-aligned host memory, its
/// provenance exposed so the heap may turn addresses in it back into pointers.
fn leak_memory(bytes: usize) -> Range<usize> {
    let layout = core::alloc::Layout::from_size_align(bytes, 4096).expect("constant layout");
    // SAFETY: the layout is not zero-sized.
    let base = unsafe { std::alloc::alloc(layout) };
    assert!(!base.is_null(), "no host memory for a core's heap");
    let start = base.expose_provenance();
    start..start + bytes
}

/// The console of a host machine: the process's standard output.
struct StandardOutput;

impl core::fmt::Write for StandardOutput {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        use std::io::Write;
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|_| core::fmt::Error)
    }
}

fn threads() -> std::sync::MutexGuard<'static, Option<HashMap<u32, Thread>>> {
    THREADS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The wake-up interrupt: unparks the core's host thread (a park that follows returns
/// at once, so a wake-up is never lost).
fn wake(apic_id: u32) {
    if let Some(thread) = threads().get_or_insert_with(HashMap::new).get(&apic_id) {
        thread.unpark();
    }
}

/// The halt: parks until woken or until the timer's deadline.
fn halt() {
    let longest = LONGEST_HALT;
    let wait = TIMER.with(Cell::get).map_or(longest, |deadline| {
        let ticks = deadline.saturating_sub(crate::time::ticks());
        let micros = ticks / crate::time::ticks_per_micro();
        Duration::from_micros(micros).min(longest)
    });
    std::thread::park_timeout(wait);
}

/// Returns the TSC rate, measured once against the host's clock.
fn tsc_hz() -> u64 {
    *TSC_HZ.get_or_init(|| {
        let start = (std::time::Instant::now(), crate::time::ticks());
        std::thread::sleep(Duration::from_millis(20));
        let ticks = crate::time::ticks() - start.1;
        let nanos = start.0.elapsed().as_nanos().max(1);
        (u128::from(ticks) * 1_000_000_000 / nanos) as u64
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every test of this crate that starts a machine uses this many cores.
    pub(crate) const CORES: usize = 4;

    #[test]
    fn threads_run_on_the_core_they_were_placed_on() {
        let cores = run(CORES, || {
            let handles: Vec<_> = (0..CORES)
                .map(|core| crate::spawn_on(core, crate::current_core))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(cores, [0, 1, 2, 3]);
    }

    #[test]
    fn sleep_lasts_at_least_its_duration() {
        let slept = run(CORES, || {
            let start = std::time::Instant::now();
            crate::spawn_on(2, || crate::sleep(Duration::from_millis(30)))
                .join()
                .unwrap();
            start.elapsed()
        });
        assert!(slept >= Duration::from_millis(30), "slept {slept:?}");
    }

    /// A job another core sends while a thread polls the raw mailbox is kept for the
    /// kernel by that poll and runs once the thread lets go of the mailbox and yields.
    #[test]
    fn kernel_messages_met_by_an_application_poll_still_arrive() {
        use std::sync::atomic::AtomicBool;
        static RAN: AtomicBool = AtomicBool::new(false);
        let ran = run(CORES, || {
            let kind = ipc::Kind::new(7);
            let sender = crate::spawn_on(1, move || {
                crate::run_on(0, || RAN.store(true, Ordering::Relaxed)).unwrap();
                let message = ipc::Message::new(kind, 1, [0; 48]);
                crate::with_mailbox(|mailbox| mailbox.send(0, message, core::hint::spin_loop))
                    .unwrap();
            });
            let mut arrived = false;
            crate::with_mailbox(|mailbox| {
                while !arrived {
                    mailbox.poll(|_, message| arrived = message.header().kind() == kind);
                }
            });
            sender.join().unwrap();
            // The job runs in this core's loop, which the thread reaches by yielding.
            let start = std::time::Instant::now();
            while !RAN.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(5) {
                crate::yield_now();
            }
            RAN.load(Ordering::Relaxed)
        });
        assert!(ran, "the job sent while the thread polled ran");
    }

    #[test]
    fn a_panic_in_main_reaches_the_caller() {
        let outcome = std::panic::catch_unwind(|| run(CORES, || panic!("on purpose")));
        assert!(outcome.is_err());
    }
}
