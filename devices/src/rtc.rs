//! The CMOS real-time clock (MC146818, on every PC machine QEMU models): the date and
//! time, read once by the boot core to start the kernel's wall clock.
//!
//! Protocol: wait until status A says no update is in progress, read the time
//! registers, and read them again until two reads agree (an update may still slip in
//! between). Status B says whether the values are BCD or binary and whether hours
//! count 12 or 24; the year register holds two digits, taken as 20xx. Every wait and
//! retry is bounded, so a machine without the clock (reads of 0xFF) gives `None`.
//! The register protocol and the decoding are logic behind [`Registers`], tested on the
//! host; only `port` touches the I/O ports.

use percore::time::DateTime;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0A;
const STATUS_B: u8 = 0x0B;

/// Status A: the clock is updating its registers.
const UPDATE_IN_PROGRESS: u8 = 0x80;
/// Status B: values are binary rather than BCD.
const BINARY: u8 = 0x04;
/// Status B: hours count 0 to 23 rather than 1 to 12.
const HOURS_24: u8 = 0x02;
/// The hour register's afternoon bit in 12-hour mode.
const PM: u8 = 0x80;

/// Reads of status A before giving up on an update ending; an update takes under 2 ms,
/// a port read about a microsecond.
const UPDATE_WAIT_READS: u32 = 100_000;
/// Pairs of reads before giving up on two that agree.
const ATTEMPTS: u32 = 5;

/// The clock's registers, by index (ports 0x70 and 0x71 on the machine).
pub trait Registers {
    /// Returns the register at `index`.
    fn read(&mut self, index: u8) -> u8;
}

/// The time registers as read, not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTime {
    pub second: u8,
    pub minute: u8,
    pub hour: u8,
    pub day: u8,
    pub month: u8,
    pub year: u8,
    /// Status B, which says how the others are encoded.
    pub status_b: u8,
}

/// Returns the value of a register in the clock's encoding: BCD unless `binary`.
fn value(raw: u8, binary: bool) -> Option<u8> {
    if binary {
        return Some(raw);
    }
    let (tens, ones) = (raw >> 4, raw & 0x0F);
    (tens <= 9 && ones <= 9).then_some(tens * 10 + ones)
}

/// Returns the date and time the registers hold, or `None` if they do not hold a valid
/// one (bad BCD digits, an hour of 13 on a 12-hour clock, the 30th of February, ...).
pub fn decode(raw: RawTime) -> Option<DateTime> {
    let binary = raw.status_b & BINARY != 0;
    let hour = if raw.status_b & HOURS_24 != 0 {
        value(raw.hour, binary)?
    } else {
        let twelve = value(raw.hour & !PM, binary)?;
        if !(1..=12).contains(&twelve) {
            return None;
        }
        twelve % 12 + if raw.hour & PM != 0 { 12 } else { 0 }
    };
    let time = DateTime {
        year: 2000 + u32::from(value(raw.year, binary)?),
        month: value(raw.month, binary)?,
        day: value(raw.day, binary)?,
        hour,
        minute: value(raw.minute, binary)?,
        second: value(raw.second, binary)?,
    };
    time.to_unix_seconds().map(|_| time)
}

/// Returns once no update is in progress, or `None` if one never ends.
fn wait_for_no_update(registers: &mut impl Registers) -> Option<()> {
    (0..UPDATE_WAIT_READS)
        .any(|_| registers.read(STATUS_A) & UPDATE_IN_PROGRESS == 0)
        .then_some(())
}

fn read_raw(registers: &mut impl Registers) -> RawTime {
    RawTime {
        second: registers.read(SECONDS),
        minute: registers.read(MINUTES),
        hour: registers.read(HOURS),
        day: registers.read(DAY),
        month: registers.read(MONTH),
        year: registers.read(YEAR),
        status_b: registers.read(STATUS_B),
    }
}

/// Returns the date and time of the clock behind `registers`: two reads outside an
/// update that agree, decoded; `None` if there is no clock or no valid time.
pub fn read(registers: &mut impl Registers) -> Option<DateTime> {
    let mut previous = None;
    for _ in 0..ATTEMPTS {
        wait_for_no_update(registers)?;
        let raw = read_raw(registers);
        if previous == Some(raw) {
            return decode(raw);
        }
        previous = Some(raw);
    }
    None
}

/// Reads the machine's clock and publishes it as the start of the kernel's wall clock
/// (`percore::time::wall_clock`); returns what it read, or `None` (and publishes
/// nothing) when the machine has no clock or it holds no valid time. The boot core
/// calls it once at start-up (kernel only).
#[cfg(target_os = "none")]
pub fn publish_wall_clock(kernel: &percore::KernelCapability) -> Option<DateTime> {
    let now = read(&mut port::Cmos)?;
    let tsc = percore::time::ticks();
    percore::time::publish_wall_clock(
        kernel,
        percore::time::WallClockBase {
            unix_seconds: now.to_unix_seconds()?,
            tsc,
        },
    );
    Some(now)
}

/// The clock's I/O ports.
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod port {
    /// Selects a register through port 0x70 and reads it from port 0x71.
    pub(super) struct Cmos;

    impl super::Registers for Cmos {
        fn read(&mut self, index: u8) -> u8 {
            // SAFETY: 0x70 and 0x71 are the CMOS index and data ports of every PC
            // machine QEMU models; selecting a register and reading it changes only the
            // index latch, and only the boot core uses them, at start-up, before the
            // other cores run.
            unsafe {
                x86::io::outb(0x70, index);
                x86::io::inb(0x71)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock: its registers, and how many status A reads still say "updating".
    struct FakeClock {
        registers: [u8; 128],
        updating_reads: u32,
        /// After this many reads of the seconds register, it moves on by one.
        tick_after: Option<u32>,
        second_reads: u32,
    }

    impl FakeClock {
        fn new(time: [(u8, u8); 7]) -> Self {
            let mut registers = [0u8; 128];
            for (index, value) in time {
                registers[index as usize] = value;
            }
            FakeClock {
                registers,
                updating_reads: 0,
                tick_after: None,
                second_reads: 0,
            }
        }
    }

    impl Registers for FakeClock {
        fn read(&mut self, index: u8) -> u8 {
            if index == STATUS_A && self.updating_reads > 0 {
                self.updating_reads -= 1;
                return UPDATE_IN_PROGRESS;
            }
            if index == SECONDS {
                self.second_reads += 1;
                if Some(self.second_reads) == self.tick_after {
                    self.registers[SECONDS as usize] += 1;
                }
            }
            self.registers[index as usize]
        }
    }

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

    /// 2024-02-29 23:59:58 in BCD, 24 hours (QEMU's default encoding).
    fn bcd_clock() -> FakeClock {
        FakeClock::new([
            (SECONDS, 0x58),
            (MINUTES, 0x59),
            (HOURS, 0x23),
            (DAY, 0x29),
            (MONTH, 0x02),
            (YEAR, 0x24),
            (STATUS_B, HOURS_24),
        ])
    }

    #[test]
    fn reads_a_bcd_clock_after_its_update() {
        let mut clock = bcd_clock();
        clock.updating_reads = 500;
        assert_eq!(read(&mut clock), Some(date(2024, 2, 29, 23, 59, 58)));
    }

    #[test]
    fn reads_again_when_an_update_slips_in_between() {
        let mut clock = bcd_clock();
        clock.tick_after = Some(2);
        assert_eq!(read(&mut clock), Some(date(2024, 2, 29, 23, 59, 59)));
        assert!(clock.second_reads >= 3);
    }

    #[test]
    fn no_clock_or_an_endless_update_gives_none() {
        let mut absent = FakeClock::new([(0, 0xFF); 7]);
        absent.registers = [0xFF; 128];
        assert_eq!(read(&mut absent), None);
        let mut stuck = bcd_clock();
        stuck.updating_reads = u32::MAX;
        assert_eq!(read(&mut stuck), None);
        assert!(stuck.updating_reads > u32::MAX - 2 * UPDATE_WAIT_READS);
    }

    #[test]
    fn decodes_binary_and_twelve_hour_clocks() {
        let raw = |hour: u8, status_b: u8| RawTime {
            second: 7,
            minute: 30,
            hour,
            day: 31,
            month: 12,
            year: 25,
            status_b,
        };
        let at = |hour| Some(date(2025, 12, 31, hour, 30, 7));
        assert_eq!(decode(raw(15, BINARY | HOURS_24)), at(15));
        assert_eq!(decode(raw(3 | PM, BINARY)), at(15));
        assert_eq!(decode(raw(12, BINARY)), at(0), "12 AM is midnight");
        assert_eq!(decode(raw(12 | PM, BINARY)), at(12), "12 PM is noon");
        let bcd = RawTime {
            second: 0x07,
            minute: 0x30,
            hour: 0x11 | PM,
            day: 0x31,
            month: 0x12,
            year: 0x25,
            status_b: 0,
        };
        assert_eq!(decode(bcd), at(23), "BCD, 11 PM");
        assert_eq!(decode(raw(13, BINARY)), None, "no 13 on a 12-hour clock");
        assert_eq!(decode(raw(0, BINARY)), None, "no 0 either");
    }

    #[test]
    fn refuses_bad_digits_and_impossible_dates() {
        let good = RawTime {
            second: 0x00,
            minute: 0x00,
            hour: 0x12,
            day: 0x28,
            month: 0x02,
            year: 0x23,
            status_b: HOURS_24,
        };
        assert_eq!(decode(good), Some(date(2023, 2, 28, 12, 0, 0)));
        assert_eq!(
            decode(RawTime {
                minute: 0x5A,
                ..good
            }),
            None,
            "bad BCD"
        );
        assert_eq!(
            decode(RawTime { day: 0x29, ..good }),
            None,
            "2023 is no leap year"
        );
        assert_eq!(
            decode(RawTime {
                month: 0x13,
                ..good
            }),
            None
        );
        assert_eq!(decode(RawTime { hour: 0x24, ..good }), None);
        assert_eq!(
            decode(RawTime {
                day: 0x29,
                year: 0x24,
                ..good
            }),
            Some(date(2024, 2, 29, 12, 0, 0))
        );
    }
}
