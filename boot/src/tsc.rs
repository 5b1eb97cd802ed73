//! The TSC rate, found without waiting where it is stated, and busy-wait delays.
//!
//! First what CPUID states (`percore::calibration`: the hypervisor's timing leaf, Intel's
//! leaves 0x15 and 0x16); else a short measurement against the best reference clock the
//! machine has: the HPET (10 ns on QEMU), the ACPI PM timer (279 ns), or the PIT
//! (838 ns; the only one on microvm), each read between two TSC reads so that the
//! bound of the result is known. The window opens once the boot core is online and stays
//! open while the others start (see [`Pending`]), so it costs no wait of its own where
//! there are others (at one core it waits out 0.5 ms, 1 ms on the PIT). The local APIC
//! timer is measured against the TSC twice: roughly at the start of the window, for the
//! boot core's wait for the others, and for good while the boot core then enumerates
//! the devices ([`settle_apic_timer`]).
//!
//! The PIT's channel 0 is read by latching, without its gate or speaker port, so the
//! same code works on `pc`, `q35` and `microvm`.

use crate::acpi::Clocks;
use crate::cpu::{cpuid, rdtsc};
use crate::{apic, paging};
use core::sync::atomic::{AtomicU64, Ordering};
use percore::calibration::{
    self, CpuidFacts, Measurement, Reading, Reference, Stated, Vendor, Window, WindowError,
};

const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
const HPET_CAPABILITIES: u64 = 0x000;
const HPET_CONFIGURATION: u64 = 0x010;
const HPET_COUNTER: u64 = 0x0F0;
const HPET_ENABLE: u64 = 1;
/// Reads of a clock per reading; the one with the tightest TSC bracket is kept.
const TRIES_PER_READING: usize = 3;
/// Windows tried before giving up on a clock (a window fails when the processor was
/// away long enough to hide a wrap, or its bound is above [`ACCEPTED_ERROR_PPM`]).
const WINDOWS_PER_CLOCK: usize = 3;
/// A window whose error bound is above this is measured again (0.5 %).
const ACCEPTED_ERROR_PPM: u64 = 5_000;
/// How long a window may wait for its clock to move, in TSC ticks (20 ms at 2.5 GHz,
/// 100 ms at the slowest TSC): a clock that does not move by then is not there.
const LONGEST_WAIT_TICKS: u64 = 50_000_000;
/// How long a wait on a clock spins between two reads of it, in TSC ticks (4 µs at
/// 2.5 GHz, 20 µs at the slowest TSC): under QEMU each read takes the emulator's lock,
/// which the cores starting meanwhile want too.
const POLL_GAP_TICKS: u64 = 10_000;
/// The APIC timer's rate for good is measured over at least this long (while the boot
/// core enumerates the devices, so normally with no wait). Under KVM, where the
/// hypervisor states both rates, it is not measured at all.
const APIC_WINDOW_US: u64 = 200;
/// The provisional rates (TSC and APIC timer, for the start-up's own delays and
/// time-outs, good to a few percent) are taken over at least this long, spun out while
/// the others start: short, since under TCG a spinning boot core takes a host CPU from
/// them.
const PROVISIONAL_WINDOW_US: u64 = 20;
/// What the TSC is taken to run at when nothing states or measures it.
const ASSUMED_HZ: u64 = 2_000_000_000;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static FOUND: spin::Once<Found> = spin::Once::new();

/// A clock the TSC can be measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The HPET's main counter (low 32 bits), registers at this physical address.
    Hpet { base: u64, reference: Reference },
    /// The ACPI PM timer at this I/O port.
    PmTimer { port: u16, reference: Reference },
    /// The PIT's channel 0.
    Pit,
}

impl Clock {
    /// Returns the clock's name on the console.
    pub fn name(&self) -> &'static str {
        match self {
            Clock::Hpet { .. } => "hpet",
            Clock::PmTimer { .. } => "pm-timer",
            Clock::Pit => "pit",
        }
    }

    /// Returns what the clock counts.
    pub fn reference(&self) -> Reference {
        match *self {
            Clock::Hpet { reference, .. } | Clock::PmTimer { reference, .. } => reference,
            Clock::Pit => Reference::PIT,
        }
    }

    /// Returns the window to measure over: 0.5 ms for the fine clocks, 1 ms for the PIT,
    /// in counts of the clock.
    fn window_counts(&self) -> u64 {
        let micros = if matches!(self, Clock::Pit) {
            1000
        } else {
            500
        };
        self.reference().hz * micros / 1_000_000
    }

    /// Reads the clock between two TSC reads (for the PIT the bracket holds the latch,
    /// which is when the value was taken).
    fn reading(&self) -> Reading {
        match *self {
            Clock::Hpet { base, .. } => {
                let tsc_before = rdtsc();
                // SAFETY: `find_clocks` checked the HPET's registers and mapped them.
                let value = u64::from(unsafe {
                    core::ptr::read_volatile((base + HPET_COUNTER) as *const u32)
                });
                Reading {
                    tsc_before,
                    value,
                    tsc_after: rdtsc(),
                }
            }
            Clock::PmTimer { port, .. } => {
                let tsc_before = rdtsc();
                // SAFETY: the FADT names this port as the PM timer; reading it has no
                // side effect.
                let value = u64::from(unsafe { x86::io::inl(port) });
                Reading {
                    tsc_before,
                    value,
                    tsc_after: rdtsc(),
                }
            }
            Clock::Pit => {
                let tsc_before = rdtsc();
                // SAFETY: latching PIT channel 0 only freezes its output latch.
                unsafe { x86::io::outb(PIT_COMMAND, 0x00) };
                let tsc_after = rdtsc();
                // SAFETY: reading the latched count, low byte then high byte.
                let value = unsafe {
                    u16::from_le_bytes([x86::io::inb(PIT_CHANNEL0), x86::io::inb(PIT_CHANNEL0)])
                };
                Reading {
                    tsc_before,
                    value: u64::from(value),
                    tsc_after,
                }
            }
        }
    }

    /// Returns the reading with the tightest bracket of a few.
    fn best_reading(&self) -> Reading {
        let tries: [Reading; TRIES_PER_READING] = core::array::from_fn(|_| self.reading());
        Reading::tightest(&tries).expect("at least one try")
    }
}

/// How the TSC rate was found.
#[derive(Debug, Clone, Copy)]
pub enum Found {
    /// Stated by CPUID.
    Stated(Stated),
    /// Measured against `Clock` over a window.
    Measured(Clock, Measurement),
    /// Nothing stated or measured it: [`ASSUMED_HZ`].
    Assumed,
}

impl core::fmt::Display for Found {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Found::Stated(by) => write!(formatter, "stated by {}", by.name()),
            Found::Measured(clock, measured) => write!(
                formatter,
                "{} us against the {}, within {} ppm",
                measured.micros(&clock.reference()),
                clock.name(),
                measured.error_ppm
            ),
            Found::Assumed => write!(formatter, "assumed: no clock to measure it against"),
        }
    }
}

/// Returns what CPUID says about the processor's timing and start-up.
pub fn cpuid_facts() -> CpuidFacts {
    let (max_leaf, ebx, ecx, edx) = cpuid(0, 0);
    let (leaf_1_eax, _, leaf_1_ecx, _) = cpuid(1, 0);
    let hypervisor = leaf_1_ecx & (1 << 31) != 0;
    let mut facts = CpuidFacts {
        vendor: Some(Vendor::from_signature(ebx, edx, ecx)),
        family: calibration::family(leaf_1_eax),
        max_leaf,
        hypervisor,
        ..CpuidFacts::default()
    };
    // A leaf above the highest one returns another leaf's values: never read it.
    if max_leaf >= 0x15 {
        let (a, b, c, _) = cpuid(0x15, 0);
        facts.leaf_15 = [a, b, c];
    }
    if max_leaf >= 0x16 {
        facts.base_mhz = cpuid(0x16, 0).0 & 0xFFFF;
    }
    if hypervisor {
        facts.max_hypervisor_leaf = cpuid(0x4000_0000, 0).0;
        if facts.max_hypervisor_leaf >= 0x4000_0010 {
            let (khz, bus_khz, ..) = cpuid(0x4000_0010, 0);
            facts.hypervisor_timing = [khz, bus_khz];
        }
    }
    facts
}

/// Returns the reference clocks this machine may have, best first: the HPET (enabled
/// here if firmware left it off), the PM timer, the PIT (started here; a machine
/// without one shows a counter that never moves, and the window on it fails).
pub fn find_clocks(firmware: &Clocks) -> heapless::Vec<Clock, 3> {
    let mut clocks = heapless::Vec::new();
    if let Some(base) = firmware.hpet {
        // The HPET's page is uncached since `paging::init` (below 4 GiB) or mapped here.
        let mut no_frames = || None;
        if paging::map_mmio(base, 4096, &mut no_frames).is_ok() {
            // SAFETY: the HPET table names this register block; reading the capabilities
            // and setting the enable bit only starts the main counter (its timers stay
            // off, so it raises no interrupt).
            let reference = unsafe {
                let capabilities =
                    core::ptr::read_volatile((base + HPET_CAPABILITIES) as *const u64);
                let configuration = (base + HPET_CONFIGURATION) as *mut u64;
                let value = core::ptr::read_volatile(configuration);
                if value & HPET_ENABLE == 0 {
                    core::ptr::write_volatile(configuration, value | HPET_ENABLE);
                }
                Reference::hpet((capabilities >> 32) as u32)
            };
            if let Some(reference) = reference {
                let _ = clocks.push(Clock::Hpet { base, reference });
            }
        }
    }
    if let Some(timer) = firmware.pm_timer {
        let _ = clocks.push(Clock::PmTimer {
            port: timer.port,
            reference: Reference::pm_timer(timer.is_32_bit),
        });
    }
    // SAFETY: channel 0, lobyte/hibyte, mode 2 (rate generator), reload 65536. Its IRQ
    // is masked at the PIC and interrupts are off, so it only counts.
    unsafe {
        x86::io::outb(PIT_COMMAND, 0x34);
        x86::io::outb(PIT_CHANNEL0, 0);
        x86::io::outb(PIT_CHANNEL0, 0);
    }
    let _ = clocks.push(Clock::Pit);
    clocks
}

/// Measures the TSC against `clock` over a window of its own of `micros`.
pub fn measure_for(clock: &Clock, micros: u64) -> Result<Measurement, WindowError> {
    let mut running = Running::open(*clock);
    running.wait_for(clock.reference().hz * micros / 1_000_000)?;
    running.close()
}

/// Measures the TSC against `clock` over one window of its own.
fn measure(clock: &Clock) -> Result<Measurement, WindowError> {
    let mut running = Running::open(*clock);
    running.wait_out()?;
    running.close()
}

/// A window in progress on a clock.
#[derive(Debug)]
struct Running {
    clock: Clock,
    window: Window,
}

impl Running {
    fn open(clock: Clock) -> Running {
        Running {
            clock,
            window: Window::open(clock.reference(), clock.best_reading()),
        }
    }

    /// Reads the clock once; returns the counts since the window opened.
    fn poll(&mut self) -> u64 {
        let reading = self.clock.reading();
        self.window.poll(reading.value, reading.tsc_after)
    }

    /// Polls until the window holds `want` counts of the clock; fails when the clock
    /// has not moved for [`LONGEST_WAIT_TICKS`].
    fn wait_for(&mut self, want: u64) -> Result<(), WindowError> {
        let mut counts = self.poll();
        let mut moved = rdtsc();
        while counts < want {
            spin_until(rdtsc() + POLL_GAP_TICKS);
            let now = self.poll();
            if now != counts {
                counts = now;
                moved = rdtsc();
            } else if rdtsc().saturating_sub(moved) > LONGEST_WAIT_TICKS {
                return Err(WindowError::Stopped);
            }
        }
        Ok(())
    }

    /// Polls until the window is as long as the clock needs.
    fn wait_out(&mut self) -> Result<(), WindowError> {
        self.wait_for(self.clock.window_counts())
    }

    /// Returns the rate the window shows so far, if the clock moved.
    fn rate_so_far(&self) -> Option<u64> {
        let last = self.clock.reading();
        self.window
            .clone()
            .close(last)
            .ok()
            .map(|measured| measured.hz)
    }

    fn close(self) -> Result<Measurement, WindowError> {
        self.window.close(self.clock.best_reading())
    }
}

/// The TSC rate being found while the boot core does other work: stated (nothing to
/// wait for), or a window open on the best clock since [`begin`], which the boot core
/// [`poll`]s between its steps (so that it sees every wrap of the clock) and closes in
/// [`finish`] once the cores are online. Meanwhile [`provisional`] gives rates good to a
/// few percent for the start-up's own delays and time-outs. The window is as long as the
/// others took to start, so the measurement costs no waiting of its own.
#[derive(Debug)]
struct Pending {
    facts: CpuidFacts,
    stated: Option<(u64, Stated)>,
    running: Option<Running>,
    clocks: heapless::Vec<Clock, 3>,
    apic_start: Reading,
    /// Set once [`provisional`] ran (the APIC timer's count is stopped then).
    provisional: bool,
}

/// The measurement in progress; the boot core's alone, between [`begin`] and [`finish`].
static PENDING: spin::Mutex<Option<Pending>> = spin::Mutex::new(None);

/// Starts finding the TSC rate (see [`Pending`]), given what CPUID says (`facts`,
/// from [`cpuid_facts`]). Once; a second call changes nothing. Boot core, with its APIC
/// enabled and the clocks' registers mapped.
pub fn begin(firmware: &Clocks, facts: CpuidFacts) {
    let mut pending = PENDING.lock();
    if pending.is_some() || FOUND.get().is_some() {
        return;
    }
    apic::start_counting();
    let apic_start = apic::timer_reading();
    let stated = facts.stated_tsc_hz();
    let clocks = if stated.is_none() {
        find_clocks(firmware)
    } else {
        heapless::Vec::new()
    };
    let running = clocks.first().map(|&clock| Running::open(clock));
    *pending = Some(Pending {
        facts,
        stated,
        running,
        clocks,
        apic_start,
        provisional: false,
    });
}

/// Reads the clock once, so that the window sees every wrap of it. The boot core calls
/// this between steps that take under a few milliseconds.
pub fn poll() {
    if let Some(running) = PENDING.lock().as_mut().and_then(|p| p.running.as_mut()) {
        running.poll();
    }
}

/// Sets provisional rates for the TSC (from the window so far) and the APIC timer
/// (against the TSC since [`begin`]), both over at least [`PROVISIONAL_WINDOW_US`], and
/// stops the APIC timer's count so the timer can be used. [`finish`] and
/// [`settle_apic_timer`] replace them. Once; a second call changes nothing.
pub fn provisional() {
    let mut guard = PENDING.lock();
    let Some(pending) = guard.as_mut().filter(|pending| !pending.provisional) else {
        return;
    };
    pending.provisional = true;
    let hz = match (pending.stated, pending.running.as_mut()) {
        (Some((hz, _)), _) => hz,
        (None, Some(running)) => {
            let want = running.clock.reference().hz * PROVISIONAL_WINDOW_US / 1_000_000;
            match running
                .wait_for(want)
                .ok()
                .and_then(|()| running.rate_so_far())
            {
                Some(hz) => hz,
                None => {
                    // This clock does not run: `finish` tries the others on their own.
                    let broken = running.clock;
                    pending.running = None;
                    pending.clocks.retain(|clock| *clock != broken);
                    ASSUMED_HZ
                }
            }
        }
        (None, None) => ASSUMED_HZ,
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    match pending.facts.stated_apic_hz() {
        Some(apic_hz) => apic::set_timer_rate_from_hz(apic_hz, hz),
        None => {
            spin_until(pending.apic_start.tsc_after + PROVISIONAL_WINDOW_US * hz / 1_000_000);
            apic::set_timer_rate(apic::rate_between(
                pending.apic_start,
                apic::timer_reading(),
            ));
        }
    }
    apic::stop_counting();
}

/// Closes the window and returns the TSC rate and how it was found (after windows of
/// their own on the clocks if this one failed: the processor was away too long).
pub fn finish() -> (u64, Found) {
    let Some(mut pending) = PENDING.lock().take() else {
        return (hz(), found().unwrap_or(Found::Assumed));
    };
    let first = pending.running.take().and_then(|mut running| {
        let clock = running.clock;
        let measured = running.wait_out().and_then(|()| running.close()).ok()?;
        (measured.error_ppm <= ACCEPTED_ERROR_PPM).then_some((clock, measured))
    });
    let found = match (pending.stated, first) {
        (None, None) => pending.clocks.iter().find_map(measure_again),
        (_, first) => first,
    };
    let (hz, how) = match (pending.stated, found) {
        (Some((hz, by)), _) => (hz, Found::Stated(by)),
        (None, Some((clock, measured))) => (measured.hz, Found::Measured(clock, measured)),
        (None, None) => (ASSUMED_HZ, Found::Assumed),
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    FOUND.call_once(|| how);
    if pending.facts.stated_apic_hz().is_none() {
        // The APIC timer counts again, to be measured over what the boot core does next.
        apic::start_counting();
        *APIC_COUNT.lock() = Some(apic::timer_reading());
    }
    (hz, how)
}

/// Where the APIC timer's second count began ([`finish`]); taken by
/// [`settle_apic_timer`].
static APIC_COUNT: spin::Mutex<Option<Reading>> = spin::Mutex::new(None);

/// Sets the APIC timer's rate for good from the count [`finish`] began (at least
/// [`APIC_WINDOW_US`] of it, waited out if need be) and stops the count. Boot core,
/// after [`finish`], before any core arms its timer for the run.
pub fn settle_apic_timer() {
    let Some(start) = APIC_COUNT.lock().take() else {
        return;
    };
    spin_until(start.tsc_after + APIC_WINDOW_US * hz() / 1_000_000);
    apic::set_timer_rate(apic::rate_between(start, apic::timer_reading()));
    apic::stop_counting();
}

/// Measures against `clock` in windows of their own until one is within
/// [`ACCEPTED_ERROR_PPM`], keeping the best; `None` when every window failed.
fn measure_again(clock: &Clock) -> Option<(Clock, Measurement)> {
    let mut best: Option<Measurement> = None;
    for _ in 0..WINDOWS_PER_CLOCK {
        if let Ok(measured) = measure(clock) {
            if best.is_none_or(|b| measured.error_ppm < b.error_ppm) {
                best = Some(measured);
            }
            if measured.error_ppm <= ACCEPTED_ERROR_PPM {
                break;
            }
        }
    }
    best.map(|measured| (*clock, measured))
}

/// Returns how the TSC rate was found, once [`finish`] ran.
pub fn found() -> Option<Found> {
    FOUND.get().copied()
}

/// Returns the TSC frequency in Hz.
pub fn hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Spins until the TSC reaches `deadline`.
pub fn spin_until(deadline: u64) {
    while rdtsc() < deadline {
        core::hint::spin_loop();
    }
}

/// Returns a TSC value `micros` microseconds from now.
pub fn deadline_us(micros: u64) -> u64 {
    rdtsc().saturating_add(micros.saturating_mul(hz()) / 1_000_000)
}
