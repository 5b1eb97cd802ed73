//! Timestamps in FAT's date and time encoding, and the clock the caller supplies.

/// A calendar date and time of day, as FAT stores it (local time, no zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Timestamp {
    /// The year, 1980 to 2107 on disk.
    pub year: u16,
    /// The month, 1 to 12 on a valid volume.
    pub month: u8,
    /// The day of the month, 1 to 31 on a valid volume.
    pub day: u8,
    /// The hour, 0 to 23.
    pub hour: u8,
    /// The minute, 0 to 59.
    pub minute: u8,
    /// The second, 0 to 59 (FAT keeps two-second steps in modification times).
    pub second: u8,
}

impl Timestamp {
    /// Returns the timestamp for a date and time.
    pub const fn new(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Self {
        Timestamp {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    /// Returns the timestamp of `seconds` after 1970-01-01 00:00:00 (FAT stores it as
    /// it is, with no zone; the kernel's wall clock is UTC).
    pub fn from_unix_seconds(seconds: u64) -> Self {
        let when = percore::time::DateTime::from_unix_seconds(seconds);
        Timestamp {
            year: u16::try_from(when.year).unwrap_or(u16::MAX),
            month: when.month,
            day: when.day,
            hour: when.hour,
            minute: when.minute,
            second: when.second,
        }
    }

    /// Returns the timestamp that FAT's packed `date` and `time` fields (and the creation
    /// time's 10 ms units) describe. Fields are taken as stored, even when out of range.
    pub fn from_fat(date: u16, time: u16, tenths: u8) -> Self {
        let extra_second = if tenths >= 100 { 1 } else { 0 };
        Timestamp {
            year: 1980 + (date >> 9),
            month: ((date >> 5) & 0x0F) as u8,
            day: (date & 0x1F) as u8,
            hour: (time >> 11) as u8,
            minute: ((time >> 5) & 0x3F) as u8,
            second: ((time & 0x1F) as u8) * 2 + extra_second,
        }
    }

    /// Returns the timestamp clamped to what FAT can store.
    fn clamped(self) -> Self {
        if self.year < 1980 {
            return Timestamp::new(1980, 1, 1, 0, 0, 0);
        }
        if self.year > 2107 {
            return Timestamp::new(2107, 12, 31, 23, 59, 59);
        }
        Timestamp {
            year: self.year,
            month: self.month.clamp(1, 12),
            day: self.day.clamp(1, 31),
            hour: self.hour.min(23),
            minute: self.minute.min(59),
            second: self.second.min(59),
        }
    }

    /// Returns the packed FAT date.
    pub fn fat_date(self) -> u16 {
        let t = self.clamped();
        ((t.year - 1980) << 9) | (u16::from(t.month) << 5) | u16::from(t.day)
    }

    /// Returns the packed FAT time (two-second resolution).
    pub fn fat_time(self) -> u16 {
        let t = self.clamped();
        (u16::from(t.hour) << 11) | (u16::from(t.minute) << 5) | u16::from(t.second / 2)
    }

    /// Returns the creation time's extra 10 ms units (0 or 100 here: the odd second).
    pub fn fat_tenths(self) -> u8 {
        (self.clamped().second % 2) * 100
    }
}

/// A source of the current time, supplied by the caller; the file system never reads
/// a hardware clock itself.
pub trait Clock {
    /// Returns the current local time.
    fn now(&self) -> Timestamp;
}

/// A clock that always reports the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

impl<F: Fn() -> Timestamp> Clock for F {
    fn now(&self) -> Timestamp {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_fat_encoding() {
        let t = Timestamp::new(2024, 2, 29, 13, 37, 43);
        let back = Timestamp::from_fat(t.fat_date(), t.fat_time(), t.fat_tenths());
        assert_eq!(back, t);
        let even = Timestamp::from_fat(t.fat_date(), t.fat_time(), 0);
        assert_eq!(even.second, 42);
    }

    #[test]
    fn unix_time_becomes_fat_date_and_time() {
        // 2024-02-29 23:59:59 UTC, a leap day.
        let leap = Timestamp::from_unix_seconds(1_709_251_199);
        assert_eq!(leap, Timestamp::new(2024, 2, 29, 23, 59, 59));
        assert_eq!(leap.fat_date(), (44 << 9) | (2 << 5) | 29);
        assert_eq!(leap.fat_time(), (23 << 11) | (59 << 5) | 29);
        assert_eq!(leap.fat_tenths(), 100, "the odd second");
        // 2100 is no leap year: the day after 28 February is 1 March.
        assert_eq!(
            Timestamp::from_unix_seconds(4_107_542_400 - 1),
            Timestamp::new(2100, 2, 28, 23, 59, 59)
        );
        // The FAT epoch: 1980-01-01 00:00:00 is date 0x21, time 0.
        let epoch = Timestamp::from_unix_seconds(315_532_800);
        assert_eq!((epoch.fat_date(), epoch.fat_time()), ((1 << 5) | 1, 0));
        // Before it, the earliest FAT time; after 2107, the latest.
        let early = Timestamp::from_unix_seconds(315_532_799);
        assert_eq!(early.year, 1979);
        assert_eq!((early.fat_date(), early.fat_time()), ((1 << 5) | 1, 0));
        let late = Timestamp::from_unix_seconds(4_354_819_200);
        assert_eq!(late.year, 2108);
        let back = Timestamp::from_fat(late.fat_date(), late.fat_time(), 0);
        assert_eq!(back, Timestamp::new(2107, 12, 31, 23, 59, 58));
    }

    #[test]
    fn clamps_years_outside_the_fat_range() {
        assert_eq!(Timestamp::new(1970, 1, 1, 0, 0, 0).fat_date(), (1 << 5) | 1);
        let late = Timestamp::from_fat(Timestamp::new(3000, 1, 1, 0, 0, 0).fat_date(), 0, 0);
        assert_eq!((late.year, late.month, late.day), (2107, 12, 31));
    }
}
