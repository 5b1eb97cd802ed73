//! Parsing of the marker lines the kernel prints on its serial console.

/// A line of the kernel console that xtask recognises.
#[derive(Clone, Debug, PartialEq)]
pub enum Marker {
    /// `manada: N cores online in X.Y ms`: all cores are up, X.Y ms after kernel entry.
    Online { cores: usize, kernel_ms: f64 },
    /// `hello from core K/N`: the hello app ran on core K of N.
    Hello { core: usize, cores: usize },
    /// `PANIC on core K: <message>`, or `PANIC on core K, thread T: <message>` when a
    /// thread panicked.
    Panic {
        core: usize,
        thread: Option<u64>,
        message: String,
    },
    /// `EXCEPTION on core K: <detail>`, or `EXCEPTION on core K, thread T: <detail>`.
    Exception {
        core: usize,
        thread: Option<u64>,
        detail: String,
    },
    /// `manada: core K goes on without thread T (...)`: a faulting thread ended alone.
    ThreadEnded { core: usize, thread: u64 },
    /// `manada: core K failed: <reason>; ...`: the core was fenced and halted.
    CoreFailed { core: usize, reason: String },
    /// `manada: N threads and M cores failed during the run`.
    Failures { threads: usize, cores: usize },
    /// `manada: app NAME finished: success` or `... failed`.
    AppFinished { app: String, success: bool },
    /// `manada: unknown app 'X' (available: a, b)`.
    UnknownApp { app: String, available: String },
    /// `manada: boot T ms: phase t, phase t, ...`: the kernel's start-up timeline, from
    /// its first instruction to the application's `main`, in milliseconds.
    Timeline {
        total_ms: f64,
        phases: Vec<(String, f64)>,
    },
}

impl Marker {
    /// Returns whether the marker reports a kernel panic or a CPU exception.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Marker::Panic { .. } | Marker::Exception { .. })
    }
}

/// Returns the marker on a console line, if the line is one.
pub fn parse_line(line: &str) -> Option<Marker> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix("manada: ") {
        return parse_manada(rest);
    }
    if let Some(rest) = line.strip_prefix("hello from core ") {
        let (core, cores) = rest.split_once('/')?;
        return Some(Marker::Hello {
            core: number(core)?,
            cores: number(cores)?,
        });
    }
    if let Some(rest) = line.strip_prefix("PANIC on core ") {
        let (core, thread, message) = core_thread_and_text(rest)?;
        return Some(Marker::Panic {
            core,
            thread,
            message,
        });
    }
    if let Some(rest) = line.strip_prefix("EXCEPTION on core ") {
        let (core, thread, detail) = core_thread_and_text(rest)?;
        return Some(Marker::Exception {
            core,
            thread,
            detail,
        });
    }
    None
}

/// Parses the part of a `manada: ...` line after the prefix.
fn parse_manada(rest: &str) -> Option<Marker> {
    if let Some((cores, time)) = rest
        .split_once(" cores online in ")
        .or_else(|| rest.split_once(" core online in "))
    {
        let kernel_ms = time.strip_suffix(" ms")?.parse::<f64>().ok()?;
        if !kernel_ms.is_finite() || kernel_ms < 0.0 {
            return None;
        }
        return Some(Marker::Online {
            cores: number(cores)?,
            kernel_ms,
        });
    }
    if let Some(timeline) = rest.strip_prefix("boot ") {
        return parse_timeline(timeline);
    }
    if let Some(app) = rest.strip_prefix("app ") {
        let (app, result) = app.split_once(" finished: ")?;
        let success = match result {
            "success" => true,
            "failed" => false,
            _ => return None,
        };
        return Some(Marker::AppFinished {
            app: app.to_string(),
            success,
        });
    }
    if let Some(rest) = rest.strip_prefix("core ") {
        let (core, rest) = rest.split_once(' ')?;
        let core = number(core)?;
        if let Some(rest) = rest.strip_prefix("goes on without thread ") {
            let thread = rest.split_once(' ').map_or(rest, |(thread, _)| thread);
            return Some(Marker::ThreadEnded {
                core,
                thread: number(thread)? as u64,
            });
        }
        let reason = rest.strip_prefix("failed: ")?;
        let reason = reason.split_once(';').map_or(reason, |(reason, _)| reason);
        return Some(Marker::CoreFailed {
            core,
            reason: reason.to_string(),
        });
    }
    if let Some(rest) = rest.strip_suffix(" failed during the run") {
        let (threads, cores) = rest.split_once(" and ")?;
        let count = |text: &str, one: &str, many: &str| {
            let (count, noun) = text.split_once(' ')?;
            let count = number(count)?;
            (noun == if count == 1 { one } else { many }).then_some(count)
        };
        return Some(Marker::Failures {
            threads: count(threads, "thread", "threads")?,
            cores: count(cores, "core", "cores")?,
        });
    }
    if let Some(rest) = rest.strip_prefix("unknown app '") {
        let (app, rest) = rest.split_once('\'')?;
        let available = rest
            .trim()
            .strip_prefix("(available: ")?
            .strip_suffix(')')?;
        return Some(Marker::UnknownApp {
            app: app.to_string(),
            available: available.to_string(),
        });
    }
    None
}

/// Parses `T ms: name t, name t` (after `manada: boot `).
fn parse_timeline(text: &str) -> Option<Marker> {
    let (total, phases) = text.split_once(" ms:")?;
    let millis = |text: &str| {
        text.parse::<f64>()
            .ok()
            .filter(|value| value.is_finite() && *value >= 0.0)
    };
    let total_ms = millis(total)?;
    let mut parsed = Vec::new();
    for phase in phases
        .split(',')
        .map(str::trim)
        .filter(|phase| !phase.is_empty())
    {
        let (name, value) = phase.split_once(' ')?;
        if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_lowercase()) {
            return None;
        }
        parsed.push((name.to_string(), millis(value)?));
    }
    Some(Marker::Timeline {
        total_ms,
        phases: parsed,
    })
}

/// Parses `K: text` or `K, thread T: text` into the core, the thread and the text.
fn core_thread_and_text(rest: &str) -> Option<(usize, Option<u64>, String)> {
    let (place, text) = rest.split_once(':')?;
    let (core, thread) = match place.split_once(", thread ") {
        Some((core, thread)) => (core, Some(number(thread)? as u64)),
        None => (place, None),
    };
    Some((number(core)?, thread, text.trim_start().to_string()))
}

/// Parses a plain decimal number (digits only, no sign or spaces).
fn number(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Returns `Ok` when the console shows the `N cores online` line for `cores` and exactly one
/// `hello from core K/N` for every K in `0..cores`, otherwise the first problem found.
pub fn check_hello(lines: &[String], cores: usize) -> Result<(), String> {
    let mut hellos = vec![0usize; cores];
    let mut online = false;
    for line in lines {
        match parse_line(line) {
            Some(Marker::Hello { core, cores: total }) => {
                if total != cores || core >= cores {
                    return Err(format!(
                        "unexpected `{}` with {cores} cores",
                        line.trim_end()
                    ));
                }
                hellos[core] += 1;
            }
            Some(Marker::Online { cores: total, .. }) => {
                if total != cores {
                    return Err(format!(
                        "kernel says {total} cores online, expected {cores}"
                    ));
                }
                online = true;
            }
            _ => {}
        }
    }
    if !online {
        return Err(format!("no `manada: {cores} cores online` line"));
    }
    let missing: Vec<String> = (0..cores)
        .filter(|&core| hellos[core] == 0)
        .map(|core| core.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!("no hello from core {}", missing.join(", ")));
    }
    if let Some(core) = (0..cores).find(|&core| hellos[core] > 1) {
        return Err(format!("core {core} said hello {} times", hellos[core]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_online_line() {
        assert_eq!(
            parse_line("manada: 4 cores online in 12.3 ms"),
            Some(Marker::Online {
                cores: 4,
                kernel_ms: 12.3
            })
        );
        assert_eq!(
            parse_line("manada: 1 core online in 0.5 ms\r"),
            Some(Marker::Online {
                cores: 1,
                kernel_ms: 0.5
            })
        );
        assert_eq!(
            parse_line("manada: 8 cores online in 7 ms"),
            Some(Marker::Online {
                cores: 8,
                kernel_ms: 7.0
            })
        );
        assert_eq!(parse_line("manada: 4 cores online in 12.3"), None);
        assert_eq!(parse_line("manada: x cores online in 1 ms"), None);
        assert_eq!(parse_line("manada: 4 cores online in NaN ms"), None);
        assert_eq!(parse_line("xmanada: 4 cores online in 1 ms"), None);
    }

    #[test]
    fn parses_hello_line() {
        assert_eq!(
            parse_line("hello from core 3/8"),
            Some(Marker::Hello { core: 3, cores: 8 })
        );
        assert_eq!(
            parse_line("hello from core 0/1\r\n"),
            Some(Marker::Hello { core: 0, cores: 1 })
        );
        assert_eq!(parse_line("hello from core 3/"), None);
        assert_eq!(parse_line("hello from core -1/4"), None);
        assert_eq!(parse_line("hello from core 1/4 extra"), None);
        assert_eq!(parse_line(" hello from core 1/4"), None);
    }

    #[test]
    fn parses_fatal_lines() {
        let panic = parse_line("PANIC on core 3: attempt to divide by zero").unwrap();
        assert_eq!(
            panic,
            Marker::Panic {
                core: 3,
                thread: None,
                message: "attempt to divide by zero".into()
            }
        );
        assert!(panic.is_fatal());
        assert_eq!(
            parse_line("PANIC on core 3, thread 12: boom at a.rs:1"),
            Some(Marker::Panic {
                core: 3,
                thread: Some(12),
                message: "boom at a.rs:1".into()
            })
        );
        let exception = parse_line("EXCEPTION on core 0: #PF at 0xdead").unwrap();
        assert_eq!(
            exception,
            Marker::Exception {
                core: 0,
                thread: None,
                detail: "#PF at 0xdead".into()
            }
        );
        assert!(exception.is_fatal());
        assert_eq!(
            parse_line("EXCEPTION on core 2, thread 5: #UD invalid opcode (vector 6), RIP 0x1"),
            Some(Marker::Exception {
                core: 2,
                thread: Some(5),
                detail: "#UD invalid opcode (vector 6), RIP 0x1".into()
            })
        );
        assert_eq!(parse_line("PANIC on core : x"), None);
        assert_eq!(parse_line("PANIC on core 1, thread x: y"), None);
    }

    #[test]
    fn parses_containment_lines() {
        assert_eq!(
            parse_line("manada: core 2 goes on without thread 7 (the thread panicked); its stack and what it held are leaked"),
            Some(Marker::ThreadEnded { core: 2, thread: 7 })
        );
        let failed = parse_line(
            "manada: core 4 failed: the fault struck its kernel loop; it is fenced and halts, the other cores go on",
        )
        .unwrap();
        assert_eq!(
            failed,
            Marker::CoreFailed {
                core: 4,
                reason: "the fault struck its kernel loop".into()
            }
        );
        assert!(!failed.is_fatal(), "the report before it is the fatal line");
        assert_eq!(
            parse_line("manada: 1 thread and 0 cores failed during the run"),
            Some(Marker::Failures {
                threads: 1,
                cores: 0
            })
        );
        assert_eq!(
            parse_line("manada: 2 threads and 1 core failed during the run"),
            Some(Marker::Failures {
                threads: 2,
                cores: 1
            })
        );
        assert_eq!(
            parse_line("manada: 1 threads and 1 core failed during the run"),
            None
        );
        assert_eq!(parse_line("manada: core x failed: y"), None);
    }

    #[test]
    fn parses_the_timeline() {
        assert_eq!(
            parse_line("manada: boot 1.93 ms: acpi 0.20, tsc 0.50, aps 1.23\r"),
            Some(Marker::Timeline {
                total_ms: 1.93,
                phases: vec![
                    ("acpi".into(), 0.2),
                    ("tsc".into(), 0.5),
                    ("aps".into(), 1.23)
                ]
            })
        );
        assert_eq!(
            parse_line("manada: boot 0.00 ms:"),
            Some(Marker::Timeline {
                total_ms: 0.0,
                phases: Vec::new()
            })
        );
        assert_eq!(parse_line("manada: boot 1.9 ms: acpi x"), None);
        assert_eq!(parse_line("manada: boot 1.9 ms: acpi -1"), None);
        assert_eq!(parse_line("manada: boot 1.9 ms: Acpi 0.1"), None);
        assert_eq!(parse_line("manada: boot 1.9: acpi 0.1"), None);
        assert_eq!(parse_line("manada: boot NaN ms: acpi 0.1"), None);
    }

    #[test]
    fn parses_app_lines() {
        assert_eq!(
            parse_line("manada: app hello finished: success"),
            Some(Marker::AppFinished {
                app: "hello".into(),
                success: true
            })
        );
        assert_eq!(
            parse_line("manada: app panic finished: failed"),
            Some(Marker::AppFinished {
                app: "panic".into(),
                success: false
            })
        );
        assert_eq!(
            parse_line("manada: unknown app 'nope' (available: hello, panic)"),
            Some(Marker::UnknownApp {
                app: "nope".into(),
                available: "hello, panic".into()
            })
        );
        assert_eq!(parse_line("manada: app hello finished: maybe"), None);
        assert!(!parse_line("manada: app hello finished: failed")
            .unwrap()
            .is_fatal());
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn hello_check_accepts_every_core_once_in_any_order() {
        let console = lines(
            "boot noise\nmanada: 3 cores online in 1.0 ms\nhello from core 2/3\n\
             hello from core 0/3\nhello from core 1/3\n",
        );
        assert_eq!(check_hello(&console, 3), Ok(()));
    }

    #[test]
    fn hello_check_reports_problems() {
        let missing =
            lines("manada: 3 cores online in 1.0 ms\nhello from core 0/3\nhello from core 2/3");
        assert_eq!(check_hello(&missing, 3), Err("no hello from core 1".into()));
        let twice = lines("manada: 2 cores online in 1 ms\nhello from core 0/2\nhello from core 1/2\nhello from core 1/2");
        assert_eq!(
            check_hello(&twice, 2),
            Err("core 1 said hello 2 times".into())
        );
        let no_online = lines("hello from core 0/1");
        assert!(check_hello(&no_online, 1)
            .unwrap_err()
            .contains("cores online"));
        let wrong_total = lines("manada: 4 cores online in 1 ms\nhello from core 0/4");
        assert!(check_hello(&wrong_total, 2)
            .unwrap_err()
            .contains("expected 2"));
        let wrong_hello = lines("manada: 2 cores online in 1 ms\nhello from core 0/4");
        assert!(check_hello(&wrong_hello, 2)
            .unwrap_err()
            .contains("unexpected"));
    }
}
