//! Time on a core: the TSC, calibrated once at boot.
//!
//! Under KVM and on modern hardware the TSC is invariant and synchronised across cores;
//! under TCG it follows the host's. An [`Instant`] is meaningful on any core.

use core::time::Duration;

/// A moment, as a TSC value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(u64);

impl Instant {
    /// Returns the current moment.
    pub fn now() -> Instant {
        Instant(ticks())
    }

    /// Returns the raw TSC value of this moment.
    pub fn ticks(self) -> u64 {
        self.0
    }

    /// Returns the time from `earlier` to `self` for a TSC of `hz` ticks per second
    /// (zero if `earlier` is later).
    pub fn duration_since_at(self, earlier: Instant, hz: u64) -> Duration {
        let ticks = self.0.saturating_sub(earlier.0);
        let nanos = (u128::from(ticks) * 1_000_000_000)
            .checked_div(u128::from(hz))
            .unwrap_or(0);
        Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }

    /// Returns the time from `earlier` to `self`.
    ///
    /// # Panics
    /// Panics before the boot core published the TSC rate.
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.duration_since_at(earlier, crate::boot_info().tsc_hz)
    }

    /// Returns the time since `self`.
    pub fn elapsed(self) -> Duration {
        Instant::now().duration_since(self)
    }
}

/// Returns TSC ticks per microsecond (at least 1; 1 before the rate is published, as
/// in host tests).
pub fn ticks_per_micro() -> u64 {
    crate::bootinfo::try_boot_info().map_or(1, |info| (info.tsc_hz / 1_000_000).max(1))
}

/// Returns the time-stamp counter.
#[allow(unsafe_code)]
pub fn ticks() -> u64 {
    // SAFETY: RDTSC only reads a counter; the kernel leaves CR4.TSD clear, and user
    // space on the host (tests) may use it too.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_ticks() {
        let start = Instant(1_000);
        let end = Instant(3_001_000);
        assert_eq!(
            end.duration_since_at(start, 3_000_000_000),
            Duration::from_millis(1)
        );
        assert_eq!(start.duration_since_at(end, 3_000_000_000), Duration::ZERO);
        assert_eq!(end.duration_since_at(start, 0), Duration::ZERO);
    }

    #[test]
    fn the_counter_moves_forward() {
        let a = Instant::now();
        let b = Instant::now();
        assert!(b >= a);
    }
}
