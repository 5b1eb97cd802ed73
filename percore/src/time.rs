//! Time on a core: the TSC, calibrated once at boot, and the wall clock.
//!
//! Under KVM and on modern hardware the TSC is invariant and synchronised across cores;
//! under TCG it follows the host's. An [`Instant`] is meaningful on any core.
//!
//! The wall clock is the date and time the boot core read from the real-time clock
//! ([`publish_wall_clock`], once, before applications run) advanced by the TSC since
//! that read: [`wall_clock`] costs one `rdtsc` and takes no lock. The RTC counts UTC
//! (QEMU's default `-rtc base=utc`), so the wall clock is UTC ([`DateTime`]).

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

/// Where the wall clock starts: the Unix time the boot core read from the real-time
/// clock, and the TSC at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClockBase {
    /// Seconds since 1970-01-01 00:00:00 UTC when the clock was read.
    pub unix_seconds: u64,
    /// The TSC when the clock was read.
    pub tsc: u64,
}

impl WallClockBase {
    /// Returns the time since the Unix epoch at TSC value `now` for a TSC of `hz` ticks
    /// per second (the base itself if `now` is earlier or `hz` is 0).
    pub fn at(self, now: u64, hz: u64) -> Duration {
        Duration::from_secs(self.unix_seconds)
            + Instant(now).duration_since_at(Instant(self.tsc), hz)
    }
}

static WALL_CLOCK: spin::Once<WallClockBase> = spin::Once::new();

/// Publishes where the wall clock starts; the boot core calls it once at start-up,
/// before applications run. Later calls have no effect. Kernel only.
pub fn publish_wall_clock(_kernel: &crate::KernelCapability, base: WallClockBase) {
    WALL_CLOCK.call_once(|| base);
}

/// Returns the time since the Unix epoch (UTC), or `None` when the boot core found no
/// real-time clock (or did not publish one yet).
pub fn wall_clock() -> Option<Duration> {
    let base = WALL_CLOCK.get()?;
    let hz = crate::bootinfo::try_boot_info()?.tsc_hz;
    Some(base.at(ticks(), hz))
}

/// A calendar date and time of day in UTC (proleptic Gregorian calendar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    /// The year, 1970 or later.
    pub year: u32,
    /// The month, 1 to 12.
    pub month: u8,
    /// The day of the month, 1 to 31.
    pub day: u8,
    /// The hour, 0 to 23.
    pub hour: u8,
    /// The minute, 0 to 59.
    pub minute: u8,
    /// The second, 0 to 59.
    pub second: u8,
}

/// Returns whether `year` has a 29th of February.
pub const fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// Returns the number of days of `month` (1 to 12) in `year`, 0 for another month.
pub const fn days_in_month(year: u32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

const SECONDS_PER_DAY: u64 = 86_400;

impl DateTime {
    /// Returns the date and time `seconds` after 1970-01-01 00:00:00 UTC.
    pub fn from_unix_seconds(seconds: u64) -> DateTime {
        let days = seconds / SECONDS_PER_DAY;
        let in_day = seconds % SECONDS_PER_DAY;
        // Howard Hinnant's civil_from_days, in eras of 400 years from 0000-03-01.
        let z = days + 719_468;
        let era = z / 146_097;
        let day_of_era = z % 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = year_of_era + era * 400 + u64::from(month <= 2);
        DateTime {
            year: u32::try_from(year).unwrap_or(u32::MAX),
            month: month as u8,
            day: day as u8,
            hour: (in_day / 3600) as u8,
            minute: (in_day / 60 % 60) as u8,
            second: (in_day % 60) as u8,
        }
    }

    /// Returns the seconds since 1970-01-01 00:00:00 UTC, or `None` when a field is out
    /// of range (the 30th of February, hour 24, a year before 1970, ...).
    pub fn to_unix_seconds(&self) -> Option<u64> {
        let valid = self.year >= 1970
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        if !valid {
            return None;
        }
        // Howard Hinnant's days_from_civil.
        let year = u64::from(self.year) - u64::from(self.month <= 2);
        let era = year / 400;
        let year_of_era = year % 400;
        let month = u64::from(self.month);
        let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5
            + u64::from(self.day)
            - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
        Some(
            days * SECONDS_PER_DAY
                + u64::from(self.hour) * 3600
                + u64::from(self.minute) * 60
                + u64::from(self.second),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> DateTime {
        DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn unix_time_of_known_dates() {
        let cases = [
            (0, date(1970, 1, 1, 0, 0, 0)),
            (315_532_800, date(1980, 1, 1, 0, 0, 0)),
            (951_782_400, date(2000, 2, 29, 0, 0, 0)),
            (1_709_164_800, date(2024, 2, 29, 0, 0, 0)),
            (1_735_689_599, date(2024, 12, 31, 23, 59, 59)),
            (4_107_542_400, date(2100, 3, 1, 0, 0, 0)),
            (4_354_819_199, date(2107, 12, 31, 23, 59, 59)),
        ];
        for (seconds, expected) in cases {
            assert_eq!(DateTime::from_unix_seconds(seconds), expected, "{seconds}");
            assert_eq!(expected.to_unix_seconds(), Some(seconds), "{expected:?}");
        }
    }

    #[test]
    fn every_day_round_trips_for_three_centuries() {
        let mut previous = None;
        for day in 0..(365 * 300) {
            let seconds = day * SECONDS_PER_DAY + 45_296;
            let when = DateTime::from_unix_seconds(seconds);
            assert_eq!((when.hour, when.minute, when.second), (12, 34, 56));
            assert!(when.day >= 1 && when.day <= days_in_month(when.year, when.month));
            assert_eq!(when.to_unix_seconds(), Some(seconds));
            if let Some(previous) = previous {
                assert!(when > previous, "{when:?} after {previous:?}");
            }
            previous = Some(when);
        }
    }

    #[test]
    fn leap_years_and_invalid_fields() {
        assert!(is_leap_year(2000) && is_leap_year(2024) && is_leap_year(2400));
        assert!(!is_leap_year(1900) && !is_leap_year(2100) && !is_leap_year(2023));
        assert_eq!(date(2023, 2, 29, 0, 0, 0).to_unix_seconds(), None);
        assert_eq!(date(2100, 2, 29, 0, 0, 0).to_unix_seconds(), None);
        assert!(date(2000, 2, 29, 0, 0, 0).to_unix_seconds().is_some());
        assert_eq!(date(2024, 4, 31, 0, 0, 0).to_unix_seconds(), None);
        assert_eq!(date(2024, 13, 1, 0, 0, 0).to_unix_seconds(), None);
        assert_eq!(date(2024, 1, 0, 0, 0, 0).to_unix_seconds(), None);
        assert_eq!(date(2024, 1, 1, 24, 0, 0).to_unix_seconds(), None);
        assert_eq!(date(2024, 1, 1, 0, 60, 0).to_unix_seconds(), None);
        assert_eq!(date(1969, 12, 31, 23, 59, 59).to_unix_seconds(), None);
    }

    #[test]
    fn the_wall_clock_advances_with_the_tsc() {
        let base = WallClockBase {
            unix_seconds: 1_700_000_000,
            tsc: 5_000,
        };
        let hz = 2_000_000_000;
        assert_eq!(base.at(5_000, hz), Duration::from_secs(1_700_000_000));
        assert_eq!(
            base.at(5_000 + 3 * hz + hz / 2, hz),
            Duration::from_millis(1_700_000_003_500)
        );
        assert_eq!(base.at(0, hz), Duration::from_secs(1_700_000_000));
    }

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
