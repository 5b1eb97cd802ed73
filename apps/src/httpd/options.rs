//! The server's kernel arguments: `port=N`, `workers=N`, `idle_ms=N`.

use core::fmt;
use core::time::Duration;

/// What the kernel command line asks of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The TCP port served (`port=N`, default 80).
    pub port: u16,
    /// Worker threads, each serving one connection at a time (`workers=N`, default 64).
    pub workers: usize,
    /// How long a kept-alive connection may sit idle (`idle_ms=N`, default 5000).
    pub idle_timeout: Duration,
}

/// The default port.
pub const DEFAULT_PORT: u16 = 80;
/// The default number of workers: enough for 50 keep-alive clients at once.
pub const DEFAULT_WORKERS: usize = 64;
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
        Ok(Options {
            port: u16::try_from(port).unwrap_or(DEFAULT_PORT),
            workers: usize::try_from(workers).unwrap_or(DEFAULT_WORKERS),
            idle_timeout: Duration::from_millis(idle),
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
                workers: 64,
                idle_timeout: Duration::from_secs(5)
            })
        );
        assert_eq!(
            parse(&[("port", "8080"), ("workers", "3"), ("idle_ms", "250")]),
            Ok(Options {
                port: 8080,
                workers: 3,
                idle_timeout: Duration::from_millis(250)
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
        ] {
            let error = parse(&[(key, value)]).unwrap_err();
            assert_eq!(error.key, key);
            assert!(
                alloc::format!("{error}").starts_with(&alloc::format!("kernel argument {key}="))
            );
        }
    }
}
