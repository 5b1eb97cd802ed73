//! The server's kernel arguments: `port=N`, `workers=N`, `idle_ms=N`, `trace=1`,
//! `trace_port=N`.

use core::fmt;
use core::time::Duration;

/// What the kernel command line asks of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The TCP port served (`port=N`, default 80).
    pub port: u16,
    /// Worker threads, each answering one handed-off request at a time: misses of the
    /// net core's cache and big files (`workers=N`, default 16).
    pub workers: usize,
    /// How long a kept-alive connection may sit idle (`idle_ms=N`, default 5000).
    pub idle_timeout: Duration,
    /// Count where requests spend their time (`trace=1`; see `net::trace`).
    pub trace: bool,
    /// The port that serves the trace's counters (`trace_port=N`, default 81).
    pub trace_port: u16,
}

/// The default port.
pub const DEFAULT_PORT: u16 = 80;
/// The default number of workers: cached files never reach them, so they are needed
/// for misses and for big downloads at once.
pub const DEFAULT_WORKERS: usize = 16;
/// The default port of the trace's counters.
pub const DEFAULT_TRACE_PORT: u16 = 81;
/// The most workers accepted (each holds a 64 KiB stack and its buffers).
pub const MAX_WORKERS: usize = 1024;
/// The default idle timeout of a kept-alive connection, in milliseconds.
pub const DEFAULT_IDLE_MS: u64 = 5000;
/// The longest idle timeout accepted, in milliseconds (an hour).
pub const MAX_IDLE_MS: u64 = 3_600_000;

/// A kernel argument with a value out of its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionError {
    /// The argument's key.
    pub key: &'static str,
    /// What it must be.
    pub expected: &'static str,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel argument {}= must be {}", self.key, self.expected)
    }
}

/// Returns the number under `key` when it lies in `range`; `default` when absent.
fn number<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    key: &'static str,
    range: core::ops::RangeInclusive<u64>,
    default: u64,
    expected: &'static str,
) -> Result<u64, OptionError> {
    match get(key) {
        None => Ok(default),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|value| range.contains(value))
            .ok_or(OptionError { key, expected }),
    }
}

impl Options {
    /// Returns the options that `get` (a lookup in the kernel command line) gives;
    /// absent keys take their defaults, values out of range are errors.
    pub fn from_arguments<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Options, OptionError> {
        let port = number(
            &get,
            "port",
            1..=65535,
            u64::from(DEFAULT_PORT),
            "a port, 1 to 65535",
        )?;
        let workers = number(
            &get,
            "workers",
            1..=MAX_WORKERS as u64,
            DEFAULT_WORKERS as u64,
            "a number of workers, 1 to 1024",
        )?;
        let idle = number(
            &get,
            "idle_ms",
            1..=MAX_IDLE_MS,
            DEFAULT_IDLE_MS,
            "milliseconds, 1 to 3600000",
        )?;
        let trace = number(&get, "trace", 0..=1, 0, "0 or 1")? == 1;
        let trace_port = number(
            &get,
            "trace_port",
            1..=65535,
            u64::from(DEFAULT_TRACE_PORT),
            "a port, 1 to 65535",
        )?;
        Ok(Options {
            port: u16::try_from(port).unwrap_or(DEFAULT_PORT),
            workers: usize::try_from(workers).unwrap_or(DEFAULT_WORKERS),
            idle_timeout: Duration::from_millis(idle),
            trace,
            trace_port: u16::try_from(trace_port).unwrap_or(DEFAULT_TRACE_PORT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[(&'static str, &'static str)]) -> Result<Options, OptionError> {
        Options::from_arguments(|key| {
            words
                .iter()
                .find(|(word, _)| *word == key)
                .map(|(_, value)| *value)
        })
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(
            parse(&[]),
            Ok(Options {
                port: 80,
                workers: 16,
                idle_timeout: Duration::from_secs(5),
                trace: false,
                trace_port: 81,
            })
        );
        assert_eq!(
            parse(&[
                ("port", "8080"),
                ("workers", "3"),
                ("idle_ms", "250"),
                ("trace", "1"),
                ("trace_port", "9")
            ]),
            Ok(Options {
                port: 8080,
                workers: 3,
                idle_timeout: Duration::from_millis(250),
                trace: true,
                trace_port: 9,
            })
        );
    }

    #[test]
    fn out_of_range_values_are_errors() {
        for (key, value) in [
            ("port", "0"),
            ("port", "65536"),
            ("port", "http"),
            ("port", ""),
            ("workers", "0"),
            ("workers", "1025"),
            ("idle_ms", "0"),
            ("idle_ms", "-5"),
            ("idle_ms", "3600001"),
            ("trace", "2"),
            ("trace_port", "0"),
        ] {
            let error = parse(&[(key, value)]).unwrap_err();
            assert_eq!(error.key, key);
            assert!(
                alloc::format!("{error}").starts_with(&alloc::format!("kernel argument {key}="))
            );
        }
    }
}
