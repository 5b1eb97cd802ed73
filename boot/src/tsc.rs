//! The TSC rate, found without waiting where it is stated, and busy-wait delays.
//!
//! First what CPUID states (`percore::calibration`: the hypervisor's timing leaf, Intel's
//! leaves 0x15 and 0x16); else a short measurement against the best reference clock the
//! machine has: the HPET (10 ns on QEMU), the ACPI PM timer (279 ns), or the PIT
//! (838 ns; the only one on microvm), each read between two TSC reads so that the
//! bound of the result is known. The local APIC timer is measured against the TSC over
//! the same window, so its rate costs no wait of its own.
//!
//! The PIT's channel 0 is read by latching, without its gate or speaker port, so the
//! same code works on `pc`, `q35` and `microvm`.

use crate::acpi::Topology;
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
const TRIES_PER_READING: usize = 4;
/// Windows tried before giving up on a clock (a window fails when the processor was
/// away long enough to hide a wrap, or its bound is above [`ACCEPTED_ERROR_PPM`]).
const WINDOWS_PER_CLOCK: usize = 3;
/// A window whose error bound is above this is measured again (0.5 %).
const ACCEPTED_ERROR_PPM: u64 = 5_000;
/// Reads of a reference clock in one window before it is declared broken.
const MOST_POLLS: u64 = 10_000_000;
/// The APIC timer is measured for at least this long when the TSC rate was stated.
const APIC_WINDOW_US: u64 = 200;
/// What the TSC is taken to run at when nothing states or measures it.
const ASSUMED_HZ: u64 = 2_000_000_000;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

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

    fn reference(&self) -> Reference {
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
            Found::Measured(clock, measured) => {
                let micros = measured.micros(&clock.reference());
                write!(
                    formatter,
                    "{} us against the {}, within {}.{:02}%",
                    micros,
                    clock.name(),
                    measured.error_ppm / 10_000,
                    measured.error_ppm / 100 % 100
                )
            }
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

/// Returns the reference clocks this machine has, best first: the HPET (enabled here if
/// firmware left it off), the PM timer, the PIT (if its counter moves).
pub fn find_clocks(topology: &Topology) -> heapless::Vec<Clock, 3> {
    let mut clocks = heapless::Vec::new();
    if let Some(base) = topology.hpet {
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
    if let Some((port, is_32_bit)) = topology.pm_timer {
        let _ = clocks.push(Clock::PmTimer {
            port,
            reference: Reference::pm_timer(is_32_bit),
        });
    }
    if pit_runs() {
        let _ = clocks.push(Clock::Pit);
    }
    clocks
}

/// Starts the PIT's channel 0 and returns true when its counter moves (a machine
/// without a PIT reads a constant).
fn pit_runs() -> bool {
    // SAFETY: channel 0, lobyte/hibyte, mode 2 (rate generator), reload 65536. Its IRQ
    // is masked at the PIC and interrupts are off, so it only counts.
    unsafe {
        x86::io::outb(PIT_COMMAND, 0x34);
        x86::io::outb(PIT_CHANNEL0, 0);
        x86::io::outb(PIT_CHANNEL0, 0);
    }
    let first = Clock::Pit.reading().value;
    (0..100_000).any(|_| Clock::Pit.reading().value != first)
}

/// Measures the TSC against `clock` over one window, and the local APIC timer against
/// the TSC over the same window. Returns the measurement and the APIC timer's ticks
/// per 2^20 TSC ticks.
pub fn measure(clock: &Clock) -> Result<(Measurement, u64), WindowError> {
    let apic_start = apic::timer_reading();
    let mut window = Window::open(clock.reference(), clock.best_reading());
    let want = clock.window_counts();
    let mut polls = 0;
    loop {
        let reading = clock.reading();
        if window.poll(reading.value, reading.tsc_after) >= want {
            break;
        }
        polls += 1;
        if polls > MOST_POLLS {
            return Err(WindowError::Stopped);
        }
    }
    let measured = window.close(clock.best_reading())?;
    let apic_end = apic::timer_reading();
    Ok((measured, apic::rate_between(apic_start, apic_end)))
}

/// Finds the TSC rate (stated, else measured; see the module documentation), remembers
/// it with the APIC timer's, and returns it with how it was found.
pub fn establish(topology: &Topology) -> (u64, Found) {
    let facts = cpuid_facts();
    apic::start_counting();
    let stated = facts.stated_tsc_hz();
    let mut found = None;
    if stated.is_none() {
        found = find_clocks(topology).iter().find_map(|clock| {
            let mut best: Option<(Measurement, u64)> = None;
            for _ in 0..WINDOWS_PER_CLOCK {
                if let Ok((measured, apic_rate)) = measure(clock) {
                    if best.is_none_or(|(b, _)| measured.error_ppm < b.error_ppm) {
                        best = Some((measured, apic_rate));
                    }
                    if measured.error_ppm <= ACCEPTED_ERROR_PPM {
                        break;
                    }
                }
            }
            best.map(|(measured, apic_rate)| (*clock, measured, apic_rate))
        });
    }
    let (hz, how) = match (stated, found) {
        (Some((hz, by)), _) => (hz, Found::Stated(by)),
        (None, Some((clock, measured, apic_rate))) => {
            apic::set_timer_rate(apic_rate);
            (measured.hz, Found::Measured(clock, measured))
        }
        (None, None) => (ASSUMED_HZ, Found::Assumed),
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    if !matches!(how, Found::Measured(..)) {
        match facts.stated_apic_hz() {
            Some(apic_hz) => apic::set_timer_rate_from_hz(apic_hz, hz),
            None => {
                let start = apic::timer_reading();
                delay_us(APIC_WINDOW_US);
                apic::set_timer_rate(apic::rate_between(start, apic::timer_reading()));
            }
        }
    }
    apic::stop_counting();
    (hz, how)
}

/// Returns the TSC frequency in Hz.
pub fn hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Spins for at least `micros` microseconds.
pub fn delay_us(micros: u64) {
    let end = deadline_us(micros);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Returns a TSC value `micros` microseconds from now.
pub fn deadline_us(micros: u64) -> u64 {
    rdtsc().saturating_add(micros.saturating_mul(hz()) / 1_000_000)
}
