//! Timing tests: the kernel's TSC rate against a long measurement of its own, and a 2 s
//! sleep in the guest against the host's clock, so a wrong rate cannot pass unseen.

use std::time::Duration;

use super::runner::{require_success, Case, CaseResult, Context, Failure, Start, WithTail};
use crate::qemu::{self, Machine};

/// The sleep `selftest=sleep` does in the guest.
const SLEEP: Duration = Duration::from_secs(2);
/// How far the host may see that sleep off, as a fraction (5 %).
const SLEEP_TOLERANCE: f64 = 0.05;
/// Boots per sleep measure; the median is judged.
const SLEEP_RUNS: usize = 3;
/// Slack on top of the two stated bounds, for their rounding to whole ppm.
const ROUNDING_PPM: u64 = 2;

/// Returns the timing tests.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // microvm measures against the PIT, q35 and pc against the HPET.
    for machine in [Machine::Microvm, Machine::Q35, Machine::Pc] {
        cases.push(Case::boot(
            format!("hello {} x2 selftest=tsc", machine.name()),
            move |context: &Context| check_rate(context, machine),
        ));
    }
    cases.push(
        Case::boot(
            "hello microvm x2 selftest=sleep (2 s in the guest is 2 s on the host)",
            |context: &Context| check_sleep(context, Machine::Microvm),
        )
        .starting(Start::First),
    );
    cases
}

/// What `selftest=tsc` printed: the rate found at boot and its bound, the rate over a
/// long window and its bound, and their difference (all in Hz and ppm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RateCheck {
    boot_hz: u64,
    boot_bound_ppm: u64,
    long_hz: u64,
    long_bound_ppm: u64,
    difference_ppm: u64,
}

/// Parses `manada: selftest: tsc: boot H Hz within B ppm over U us; U us against the
/// C: H Hz within B ppm; difference D ppm`.
fn parse_rate_check(line: &str) -> Option<RateCheck> {
    let rest = line
        .trim_end()
        .strip_prefix("manada: selftest: tsc: boot ")?;
    let (boot_hz, rest) = rest.split_once(" Hz within ")?;
    let (boot_bound, rest) = rest.split_once(" ppm over ")?;
    let (_, rest) = rest.split_once(": ")?;
    let (long_hz, rest) = rest.split_once(" Hz within ")?;
    let (long_bound, rest) = rest.split_once(" ppm; difference ")?;
    let difference = rest.strip_suffix(" ppm")?;
    Some(RateCheck {
        boot_hz: boot_hz.parse().ok()?,
        boot_bound_ppm: boot_bound.parse().ok()?,
        long_hz: long_hz.parse().ok()?,
        long_bound_ppm: long_bound.parse().ok()?,
        difference_ppm: difference.parse().ok()?,
    })
}

/// Returns `Ok` when the boot rate and the long measurement agree within the sum of
/// their stated bounds (both bounds hold if and only if the error analysis does).
fn judge_rate(check: &RateCheck) -> Result<(), String> {
    let allowed = check.boot_bound_ppm + check.long_bound_ppm + ROUNDING_PPM;
    if check.boot_hz == 0 || check.long_hz == 0 {
        Err(format!("a rate of 0 Hz: {check:?}"))
    } else if check.difference_ppm > allowed {
        Err(format!(
            "boot rate {} Hz and 200 ms measurement {} Hz differ by {} ppm, more than the \
             stated bounds allow ({allowed} ppm)",
            check.boot_hz, check.long_hz, check.difference_ppm
        ))
    } else {
        Ok(())
    }
}

/// Boots `machine` with `selftest=tsc` and judges what it printed.
fn check_rate(context: &Context, machine: Machine) -> CaseResult {
    let mut config = context.config(machine, 2, "hello");
    config.kernel_args = vec!["selftest=tsc".into()];
    let outcome = context.run(&config)?;
    require_success(&outcome)?;
    let check = outcome
        .console
        .iter()
        .find_map(|line| parse_rate_check(line))
        .ok_or_else(|| "no `manada: selftest: tsc: boot ...` line".to_string())
        .tail_of(&outcome)?;
    judge_rate(&check).tail_of(&outcome)
}

/// Returns the host time between the console lines that begin and end the guest's sleep.
fn sleep_seen(outcome: &qemu::Outcome) -> Result<Duration, String> {
    let arrival = |prefix: &str| {
        outcome
            .console
            .iter()
            .position(|line| line.starts_with(prefix))
            .and_then(|index| outcome.arrivals.get(index).copied())
            .ok_or_else(|| format!("no `{prefix}` line"))
    };
    let begins = arrival("manada: selftest: sleep ")?;
    let ends = arrival("manada: selftest: sleep ends")?;
    ends.checked_sub(begins)
        .ok_or_else(|| "the sleep ended before it began".to_string())
}

/// Returns `Ok` when the median of `seen` is within [`SLEEP_TOLERANCE`] of [`SLEEP`].
fn judge_sleeps(seen: &[Duration]) -> Result<(), String> {
    let mut sorted = seen.to_vec();
    sorted.sort();
    let Some(&median) = sorted.get(sorted.len() / 2) else {
        return Err("no sleep measured".into());
    };
    let off = (median.as_secs_f64() - SLEEP.as_secs_f64()).abs() / SLEEP.as_secs_f64();
    if off > SLEEP_TOLERANCE {
        Err(format!(
            "a {} s sleep in the guest took {:.3} s on the host (median of {:?}): {:.1} % off, \
             more than {:.0} %",
            SLEEP.as_secs(),
            median.as_secs_f64(),
            seen,
            off * 100.0,
            SLEEP_TOLERANCE * 100.0
        ))
    } else {
        Ok(())
    }
}

/// Boots `machine` [`SLEEP_RUNS`] times with `selftest=sleep` and judges the median.
fn check_sleep(context: &Context, machine: Machine) -> CaseResult {
    let mut config = context.config(machine, 2, "hello");
    config.kernel_args = vec!["selftest=sleep".into()];
    let mut seen = Vec::new();
    for _ in 0..SLEEP_RUNS {
        let outcome = context.run(&config)?;
        require_success(&outcome)?;
        seen.push(sleep_seen(&outcome).tail_of(&outcome)?);
    }
    judge_sleeps(&seen).map_err(Failure::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "manada: selftest: tsc: boot 2596066895 Hz within 87 ppm over 12078 us; \
                        200101 us against the pit: 2596136412 Hz within 6 ppm; difference 26 ppm";

    #[test]
    fn parses_and_judges_the_rate_check() {
        let check = parse_rate_check(LINE).unwrap();
        assert_eq!(
            check,
            RateCheck {
                boot_hz: 2_596_066_895,
                boot_bound_ppm: 87,
                long_hz: 2_596_136_412,
                long_bound_ppm: 6,
                difference_ppm: 26
            }
        );
        assert_eq!(judge_rate(&check), Ok(()));
        let off = RateCheck {
            difference_ppm: 96,
            ..check
        };
        assert!(judge_rate(&off).unwrap_err().contains("96 ppm"));
        assert!(judge_rate(&RateCheck {
            boot_hz: 0,
            ..check
        })
        .is_err());
        assert_eq!(parse_rate_check("manada: selftest: tsc: boot x Hz"), None);
        assert_eq!(parse_rate_check(&LINE.replace("difference", "diff")), None);
    }

    #[test]
    fn sleeps_are_judged_by_their_median() {
        let ms = Duration::from_millis;
        assert_eq!(judge_sleeps(&[ms(2010), ms(2400), ms(1990)]), Ok(()));
        assert!(judge_sleeps(&[ms(2200), ms(2150), ms(1990)]).is_err());
        assert!(judge_sleeps(&[ms(1880), ms(1890), ms(2000)]).is_err());
        assert!(judge_sleeps(&[]).is_err());
    }

    #[test]
    fn the_sleep_is_timed_between_its_lines() {
        let mut outcome = qemu::Outcome::new(
            qemu::Status::KernelSuccess,
            vec![
                "manada: boot 1.00 ms: acpi 1.00".into(),
                "manada: selftest: sleep 2000 ms begins".into(),
                "manada: selftest: sleep ends".into(),
            ],
            None,
        );
        outcome.arrivals = vec![
            Duration::from_millis(100),
            Duration::from_millis(150),
            Duration::from_millis(2160),
        ];
        assert_eq!(sleep_seen(&outcome), Ok(Duration::from_millis(2010)));
        outcome.console.pop();
        assert!(sleep_seen(&outcome).unwrap_err().contains("sleep ends"));
    }
}
