//! The `Date` header check: the guest's clock (the real-time clock QEMU gives it, read
//! at boot and advanced by the TSC) against the host's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Response;

/// How far the guest's `Date` may be from the host's clock. QEMU's RTC starts at the
/// host's time; under TCG a loaded host may slow the guest's TSC, so allow a margin.
const TOLERANCE: Duration = Duration::from_secs(120);

/// Returns `Ok` when `response` has a `Date` in IMF-fixdate form within `TOLERANCE` of
/// the host's clock now.
pub fn check_date(response: &Response) -> Result<(), String> {
    let text = response
        .header("Date")
        .ok_or("the response has no Date header (the guest should have a wall clock)")?;
    let guest =
        parse_imf_fixdate(text).ok_or_else(|| format!("Date {text:?} is not an IMF-fixdate"))?;
    let host = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|error| error.to_string())?
        .as_secs();
    if guest.abs_diff(host) > TOLERANCE.as_secs() {
        return Err(format!(
            "Date {text:?} is {} s from the host's clock",
            guest.abs_diff(host)
        ));
    }
    Ok(())
}

/// Returns the Unix seconds of `Sun, 06 Nov 1994 08:49:37 GMT`, or `None`.
fn parse_imf_fixdate(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut words = text.split(' ');
    let _weekday = words
        .next()
        .filter(|word| word.len() == 4 && word.ends_with(','))?;
    let day: u32 = words.next()?.parse().ok()?;
    let month_name = words.next()?;
    let month = MONTHS.iter().position(|name| *name == month_name)? as u32 + 1;
    let year: i64 = words.next()?.parse().ok()?;
    let mut clock = words
        .next()?
        .split(':')
        .map(|part| part.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if words.next() != Some("GMT") || words.next().is_some() || !(1..=31).contains(&day) {
        return None;
    }
    percore::time::DateTime {
        year: u32::try_from(year).ok()?,
        month: u8::try_from(month).ok()?,
        day: u8::try_from(day).ok()?,
        hour: u8::try_from(hour).ok()?,
        minute: u8::try_from(minute).ok()?,
        second: u8::try_from(second).ok()?,
    }
    .to_unix_seconds()
}

#[cfg(test)]
mod tests {
    use super::parse_imf_fixdate;

    #[test]
    fn parses_the_fixed_form_and_refuses_others() {
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Sat, 29 Feb 2020 23:59:59 GMT"),
            Some(1_583_020_799)
        );
        assert_eq!(parse_imf_fixdate("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_imf_fixdate("Sun, 06 Nov 1994 08:49 GMT"), None);
        assert_eq!(parse_imf_fixdate(""), None);
    }
}
