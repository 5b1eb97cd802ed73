//! Running QEMU as a child process: its console streamed line by line (echoed, watched
//! for markers, mirrored to a client), a timeout, a stop flag or a planned kill.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::command_line::QEMU;
use super::config::QemuConfig;
use super::outcome::{Online, Outcome, Status};
use crate::markers::{parse_line, Marker};

/// A running QEMU that is killed when dropped, so no test leaves one behind.
#[derive(Debug)]
struct QemuGuard {
    child: Child,
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        // Fails harmlessly when QEMU already exited; wait() reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A line from one of QEMU's output streams.
enum Event {
    Console(String, Instant),
    ConsoleClosed,
    Stderr(String),
}

/// Sends each line of `stream` through `sender`, then `closed` (if any).
fn forward_lines(
    stream: impl Read + Send + 'static,
    sender: mpsc::Sender<Event>,
    make: fn(String, Instant) -> Event,
    closed: Option<fn() -> Event>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer);
                    let line = line.trim_end_matches(['\r', '\n']).to_string();
                    if sender.send(make(line, Instant::now())).is_err() {
                        return;
                    }
                }
            }
        }
        if let Some(closed) = closed {
            let _ = sender.send(closed());
        }
    });
}

/// Boots `config` under QEMU until it exits or `timeout` passes (then QEMU is killed).
///
/// With `echo`, the console goes to stdout and QEMU's stderr to stderr as it arrives.
pub fn run(config: &QemuConfig, timeout: Option<Duration>, echo: bool) -> Result<Outcome, String> {
    run_until(config, timeout, echo, None)
}

/// Like [`run`], but also ends QEMU (status `TimedOut`) as soon as `stop` is set: for
/// guests that serve until stopped, while a host program talks to them.
pub fn run_until(
    config: &QemuConfig,
    timeout: Option<Duration>,
    echo: bool,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Outcome, String> {
    run_with(config, timeout, echo, stop, None, None)
}

/// Runs QEMU like [`run`] and kills it (SIGKILL, status `Killed`) `delay` after the first
/// console line that starts with `prefix`: a power cut at a chosen moment, for crash tests.
pub fn kill_after_line(
    config: &QemuConfig,
    limit: Duration,
    prefix: &str,
    delay: Duration,
) -> Result<Outcome, String> {
    run_with(
        config,
        Some(limit),
        false,
        None,
        Some((prefix, delay)),
        None,
    )
}

/// The loop behind [`run_until`], [`kill_after_line`] and [`serve_watching`](super::serve_watching) (which
/// gets each console line in `mirror` as it arrives).
///
/// A panic or exception line does not end the run: the kernel contains faults (a
/// thread or a core fails, the others go on) and ends the run itself when its main is
/// done; the first such line is kept in the outcome, so the verdict is still failure.
pub(super) fn run_with(
    config: &QemuConfig,
    timeout: Option<Duration>,
    echo: bool,
    stop: Option<&std::sync::atomic::AtomicBool>,
    kill: Option<(&str, Duration)>,
    mirror: Option<&Mutex<Vec<String>>>,
) -> Result<Outcome, String> {
    let timeout = if config.gdb { None } else { timeout };
    let mut kill_at: Option<Instant> = None;
    let start = Instant::now();
    let child = Command::new(QEMU)
        .args(config.args())
        // Not the terminal: QEMU would put it in raw mode and a killed QEMU leaves it so.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start {QEMU}: {error}"))?;
    let mut guard = QemuGuard { child };
    let (sender, receiver) = mpsc::channel();
    let stdout = guard
        .child
        .stdout
        .take()
        .ok_or("QEMU stdout not captured")?;
    let stderr = guard
        .child
        .stderr
        .take()
        .ok_or("QEMU stderr not captured")?;
    forward_lines(
        stdout,
        sender.clone(),
        Event::Console,
        Some(|| Event::ConsoleClosed),
    );
    forward_lines(stderr, sender, |line, _| Event::Stderr(line), None);

    let mut outcome = Outcome::new(Status::TimedOut, Vec::new(), timeout);
    let deadline = timeout.map(|timeout| start + timeout);
    let mut console_open = true;
    let status = loop {
        if !console_open {
            if let Some(status) = guard.child.try_wait().map_err(|error| error.to_string())? {
                break Some(status);
            }
        }
        let now = Instant::now();
        let limit = deadline;
        let stopped = stop.is_some_and(|stop| stop.load(std::sync::atomic::Ordering::Acquire));
        if stopped || limit.is_some_and(|limit| now >= limit) {
            break None;
        }
        if kill_at.is_some_and(|at| now >= at) {
            outcome.killed = true;
            break None;
        }
        let wait = limit.map_or(Duration::from_millis(100), |limit| limit - now);
        match receiver.recv_timeout(wait.min(Duration::from_millis(100))) {
            Ok(Event::Console(line, arrived)) => {
                if echo {
                    println!("{line}");
                }
                match parse_line(&line) {
                    Some(Marker::Online { cores, kernel_ms }) if outcome.online.is_none() => {
                        outcome.online = Some(Online {
                            cores,
                            kernel_ms,
                            after_start: arrived - start,
                        });
                    }
                    Some(marker) if marker.is_fatal() && outcome.fatal.is_none() => {
                        outcome.fatal = Some(line.clone());
                    }
                    Some(Marker::UnknownApp { app, available })
                        if outcome.unknown_app.is_none() =>
                    {
                        outcome.unknown_app = Some(format!(
                            "the kernel has no app '{app}' (available: {available})"
                        ));
                    }
                    _ => {}
                }
                if let Some((prefix, delay)) = kill {
                    if kill_at.is_none() && line.starts_with(prefix) {
                        kill_at = Some(arrived + delay);
                    }
                }
                if let Some(mirror) = mirror {
                    mirror
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push(line.clone());
                }
                outcome.console.push(line);
                outcome.arrivals.push(arrived - start);
            }
            Ok(Event::Stderr(line)) => {
                if echo {
                    eprintln!("{line}");
                }
                outcome.stderr.push(line);
            }
            Ok(Event::ConsoleClosed) => console_open = false,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => console_open = false,
        }
    };
    if echo {
        let _ = std::io::stdout().flush();
    }
    outcome.status = match status {
        Some(status) => Status::from_exit(status),
        None if outcome.killed => Status::Killed,
        None => Status::TimedOut,
    };
    drop(guard);
    // QEMU's stderr may still hold its last words (e.g. why it refused to start).
    while let Ok(event) = receiver.recv_timeout(Duration::from_millis(50)) {
        if let Event::Stderr(line) = event {
            if echo {
                eprintln!("{line}");
            }
            outcome.stderr.push(line);
        }
    }
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}
