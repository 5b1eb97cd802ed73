//! TSC calibration against the PIT (fallbacks: CPUID leaves), and busy-wait delays.
//!
//! The PIT's channel 0 is read by latching, without its gate or speaker port, so the
//! same code works on `pc`, `q35` and `microvm`.

use crate::cpu::{cpuid, rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

const PIT_HZ: u64 = 1_193_182;
const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Calibration window: 10 ms of PIT ticks.
const WINDOW_TICKS: u64 = PIT_HZ / 100;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Where the TSC frequency came from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Pit,
    Hypervisor,
    CpuidCrystal,
    Assumed,
}

/// Measures the TSC frequency once, remembers it and returns it with its source.
pub fn calibrate() -> (u64, Source) {
    let (hz, source) = match measure_with_pit() {
        Some(hz) => (hz, Source::Pit),
        None => from_cpuid().unwrap_or((2_000_000_000, Source::Assumed)),
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    (hz, source)
}

/// Returns the calibrated TSC frequency in Hz.
pub fn hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Spins for at least `micros` microseconds.
pub fn delay_us(micros: u64) {
    let end = rdtsc().saturating_add(micros.saturating_mul(hz()) / 1_000_000);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Returns a TSC value `micros` microseconds from now.
pub fn deadline_us(micros: u64) -> u64 {
    rdtsc().saturating_add(micros.saturating_mul(hz()) / 1_000_000)
}

fn read_pit() -> u16 {
    // SAFETY: latching and reading PIT channel 0 only reads its counter.
    unsafe {
        x86::io::outb(PIT_COMMAND, 0x00);
        let low = x86::io::inb(PIT_CHANNEL0);
        let high = x86::io::inb(PIT_CHANNEL0);
        u16::from_le_bytes([low, high])
    }
}

fn measure_with_pit() -> Option<u64> {
    // SAFETY: channel 0, lobyte/hibyte, mode 2 (rate generator), reload 65536. Its IRQ
    // is masked at the PIC and interrupts are off, so it only counts.
    unsafe {
        x86::io::outb(PIT_COMMAND, 0x34);
        x86::io::outb(PIT_CHANNEL0, 0);
        x86::io::outb(PIT_CHANNEL0, 0);
    }
    // Wait for the counter to move at all; a machine without a PIT reads a constant.
    let first = read_pit();
    let mut previous = first;
    let mut spins = 0u32;
    while previous == first {
        previous = read_pit();
        spins += 1;
        if spins > 1_000_000 {
            return None;
        }
    }
    let start = rdtsc();
    let mut elapsed = 0u64;
    let mut reads = 0u64;
    while elapsed < WINDOW_TICKS {
        let now = read_pit();
        elapsed += u64::from(previous.wrapping_sub(now));
        previous = now;
        reads += 1;
        if reads > 50_000_000 {
            return None;
        }
    }
    let ticks = rdtsc().wrapping_sub(start);
    Some((ticks as u128 * PIT_HZ as u128 / elapsed as u128) as u64)
}

fn from_cpuid() -> Option<(u64, Source)> {
    let (max_hypervisor_leaf, ..) = cpuid(0x4000_0000, 0);
    if max_hypervisor_leaf >= 0x4000_0010 {
        let (khz, ..) = cpuid(0x4000_0010, 0);
        if khz != 0 {
            return Some((u64::from(khz) * 1000, Source::Hypervisor));
        }
    }
    let (max_leaf, ..) = cpuid(0, 0);
    if max_leaf >= 0x15 {
        let (denominator, numerator, crystal_hz, _) = cpuid(0x15, 0);
        if denominator != 0 && numerator != 0 && crystal_hz != 0 {
            let hz = u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator);
            return Some((hz, Source::CpuidCrystal));
        }
    }
    None
}
