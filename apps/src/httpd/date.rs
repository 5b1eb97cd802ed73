//! HTTP dates (RFC 9110, section 5.6.7): the fixed-length form the server sends in
//! `Date` and `Last-Modified`, the three forms a client may send in
//! `If-Modified-Since`, FAT timestamps as seconds since the Unix epoch, and the clock.
//!
//! FAT stores local time without a zone; the server takes it as UTC (what QEMU's
//! vvfat shows and what the kernel's clock keeps).

use percore::time::DateTime;

/// Bytes of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const HTTP_DATE_LENGTH: usize = 29;

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Returns the seconds since the Unix epoch now (UTC), or `None` when the kernel has no
/// wall clock (no real-time clock at boot, or on the host): then the server sends no
/// `Date` (RFC 9110, 6.6.1: a server without a clock must not).
pub fn unix_now() -> Option<u64> {
    percore::time::wall_clock().map(|since_epoch| since_epoch.as_secs())
}

/// Returns the seconds since the Unix epoch of a date and time, or `None` when a field
/// is out of range (a corrupt FAT entry, a bad header) or the moment is before 1970.
pub fn unix_seconds(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<u64> {
    let field = |value: u32| u8::try_from(value).ok();
    DateTime {
        year,
        month: field(month)?,
        day: field(day)?,
        hour: field(hour)?,
        minute: field(minute)?,
        second: field(second)?,
    }
    .to_unix_seconds()
}

/// Returns the seconds since the Unix epoch of a FAT timestamp, or `None` for one that
/// names no real moment.
pub fn from_fat(timestamp: fs::Timestamp) -> Option<u64> {
    unix_seconds(
        u32::from(timestamp.year),
        u32::from(timestamp.month),
        u32::from(timestamp.day),
        u32::from(timestamp.hour),
        u32::from(timestamp.minute),
        u32::from(timestamp.second),
    )
}

/// Returns `seconds` since the Unix epoch as an IMF-fixdate.
pub fn format(seconds: u64) -> [u8; HTTP_DATE_LENGTH] {
    let days = seconds / 86_400;
    let DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    } = DateTime::from_unix_seconds(seconds);
    let mut out = [0u8; HTTP_DATE_LENGTH];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    two_digits(&mut out[5..7], u32::from(day));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[usize::from(month) - 1]);
    out[11] = b' ';
    let year = year.min(9999);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    out[16] = b' ';
    two_digits(&mut out[17..19], u32::from(hour));
    out[19] = b':';
    two_digits(&mut out[20..22], u32::from(minute));
    out[22] = b':';
    two_digits(&mut out[23..25], u32::from(second));
    out[25..].copy_from_slice(b" GMT");
    out
}

fn two_digits(out: &mut [u8], value: u32) {
    out[0] = b'0' + (value / 10 % 10) as u8;
    out[1] = b'0' + (value % 10) as u8;
}

/// Returns the number the ASCII digits `digits` spell, or `None`.
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |value, &digit| value * 10 + u32::from(digit - b'0')),
    )
}

fn month(name: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|month| month.as_slice() == name)
        .map(|index| index as u32 + 1)
}

/// Returns the seconds of `HH:MM:SS`.
fn time_of_day(text: &[u8]) -> Option<(u32, u32, u32)> {
    let mut parts = text.split(|&byte| byte == b':');
    let (Some(hour), Some(minute), Some(second), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (hour.len() == 2 && minute.len() == 2 && second.len() == 2)
        .then_some(())
        .and_then(|()| Some((number(hour)?, number(minute)?, number(second)?)))
}

/// Returns the seconds since the Unix epoch an HTTP date names: an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) or asctime's (`Sun Nov  6 08:49:37 1994`), as
/// RFC 9110 asks a recipient to accept. `None` for anything else.
pub fn parse(text: &[u8]) -> Option<u64> {
    let words: heapless::Vec<&[u8], 8> = text
        .split(|&byte| byte == b' ')
        .filter(|word| !word.is_empty())
        .take(8)
        .collect();
    match words.as_slice() {
        // IMF-fixdate: day-name "," SP day SP month SP year SP time SP "GMT".
        [name, day, month_name, year, time, b"GMT"] if name.ends_with(b",") => {
            let (hour, minute, second) = time_of_day(time)?;
            (day.len() == 2 && year.len() == 4).then_some(())?;
            unix_seconds(
                number(year)?,
                month(month_name)?,
                number(day)?,
                hour,
                minute,
                second,
            )
        }
        // RFC 850: day-name "," SP dd-mon-yy SP time SP "GMT"; two-digit years within
        // 50 years of now are in this century (RFC 9110 says so); the 1900s otherwise.
        [name, date, time, b"GMT"] if name.ends_with(b",") => {
            let mut parts = date.split(|&byte| byte == b'-');
            let (Some(day), Some(month_name), Some(year), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            let (hour, minute, second) = time_of_day(time)?;
            (year.len() == 2).then_some(())?;
            let year = number(year)?;
            let year = if year < 70 { 2000 + year } else { 1900 + year };
            unix_seconds(year, month(month_name)?, number(day)?, hour, minute, second)
        }
        // asctime: day-name SP month SP ( 2DIGIT / SP DIGIT ) SP time SP year.
        [_name, month_name, day, time, year] => {
            let (hour, minute, second) = time_of_day(time)?;
            (year.len() == 4).then_some(())?;
            unix_seconds(
                number(year)?,
                month(month_name)?,
                number(day)?,
                hour,
                minute,
                second,
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_the_rfc_example() {
        let seconds = 784_111_777;
        assert_eq!(&format(seconds), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(seconds));
        assert_eq!(parse(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(seconds));
        assert_eq!(parse(b"Sun Nov  6 08:49:37 1994"), Some(seconds));
        assert_eq!(&format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn every_day_of_many_years_goes_both_ways() {
        let mut seconds = 0;
        while seconds < 4_102_444_800 {
            let text = format(seconds);
            assert_eq!(
                parse(&text),
                Some(seconds),
                "{}",
                String::from_utf8_lossy(&text)
            );
            seconds += 86_400 * 3 + 3_723;
        }
    }

    #[test]
    fn bad_dates_are_refused() {
        for text in [
            &b""[..],
            b"yesterday",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 6 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49 GMT",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1969 08:49:37 GMT",
            b"Sun, 06 Nov 99999999999 08:49:37 GMT",
        ] {
            assert_eq!(parse(text), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn fat_timestamps_become_unix_seconds() {
        let timestamp = fs::Timestamp::new(2026, 1, 1, 0, 0, 0);
        assert_eq!(from_fat(timestamp), Some(1_767_225_600));
        assert_eq!(from_fat(fs::Timestamp::new(2026, 13, 1, 0, 0, 0)), None);
        assert_eq!(from_fat(fs::Timestamp::new(1980, 0, 0, 0, 0, 0)), None);
    }
}
