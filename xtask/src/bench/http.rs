//! The http suite: app `httpd` serving a FAT16 share on port 80, at 2 and 4 cores (or
//! `--cores`), loaded from the host: single requests timed with curl, then `wrk` with
//! and without keep-alive (requests per second and latency percentiles), and a
//! per-request breakdown of the keep-alive runs (`breakdown`): host CPU per vCPU, and
//! with `--trace` the guest's own counters.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::breakdown::{self, HostTcp, Trace};
use super::context::{progress, Context, Record};
use crate::qemu;
use crate::tools;

/// The core counts measured unless `--cores` says otherwise: the two the web issue's
/// figures compare (a service core and an application core; each service on its own).
pub(super) const CORES: &[usize] = &[2, 4];
/// The measure that counts handshakes the host dropped at the forwarded port: the report
/// explains it where it is not zero.
pub(super) const LISTEN_OVERFLOWS: &str = "listen_overflows";
/// The guest port that serves the trace's counters (`trace_port`).
const TRACE_PORT: u16 = 81;
/// Single requests timed with curl, each on a new connection.
const SINGLE_REQUESTS: usize = 20;
/// The file served, of nginx's default page's size.
const FILE_NAME: &str = "index.html";
const FILE_SIZE: usize = 615;

/// What `wrk --latency` reported.
#[derive(Clone, Debug, PartialEq)]
struct WrkResult {
    requests: u64,
    requests_per_s: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    /// The slowest request.
    max_ms: f64,
    /// Connect, read, write errors and timeouts.
    socket_errors: u64,
    /// Responses that were not 2xx or 3xx.
    bad_responses: u64,
    /// What the host's TCP counters counted during the run (`run_wrk`).
    host: Option<HostTcp>,
}

/// Returns a wrk duration (`713.39us`, `2.34ms`, `1.20s`, `1.00m`) in milliseconds.
fn milliseconds(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(number * scale)
}

/// Returns what `wrk --latency` printed, or what is missing.
fn parse_wrk(output: &str) -> Result<WrkResult, String> {
    let mut percentiles = [None; 3];
    let mut max = None;
    let mut requests = None;
    let mut requests_per_s = None;
    let mut socket_errors = 0;
    let mut bad_responses = 0;
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [percent, value] if percent.ends_with('%') => {
                let slot = match *percent {
                    "50%" => 0,
                    "90%" => 1,
                    "99%" => 2,
                    _ => continue,
                };
                percentiles[slot] = milliseconds(value);
            }
            ["Latency", _average, _deviation, slowest, _within] => max = milliseconds(slowest),
            [count, "requests", "in", ..] => requests = count.parse().ok(),
            ["Requests/sec:", rate] => requests_per_s = rate.parse().ok(),
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                socket_errors = rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                bad_responses = count.parse().unwrap_or(u64::MAX);
            }
            _ => {}
        }
    }
    let missing = |what: &str| format!("wrk's output has no {what}");
    let [p50, p90, p99] = percentiles;
    Ok(WrkResult {
        requests: requests.ok_or_else(|| missing("request count"))?,
        requests_per_s: requests_per_s.ok_or_else(|| missing("Requests/sec"))?,
        p50_ms: p50.ok_or_else(|| missing("50% latency (run with --latency)"))?,
        p90_ms: p90.ok_or_else(|| missing("90% latency"))?,
        p99_ms: p99.ok_or_else(|| missing("99% latency"))?,
        max_ms: max.ok_or_else(|| missing("latency line"))?,
        socket_errors,
        bad_responses,
        host: None,
    })
}

/// Returns an HTML page of exactly `size` bytes (at least 64).
fn page(size: usize) -> Vec<u8> {
    let head = "<!DOCTYPE html>\n<html><head><title>Manada</title></head><body>\n<p>";
    let tail = "</p>\n</body></html>\n";
    let filler = size.saturating_sub(head.len() + tail.len());
    let text: String = "Served by Manada from a FAT16 share. "
        .chars()
        .cycle()
        .take(filler)
        .collect();
    format!("{head}{text}{tail}").into_bytes()
}

/// Returns the status and body of an HTTP/1.x response.
fn parse_response(response: &[u8]) -> Result<(u16, &[u8]), String> {
    let end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("no end of the response head")?;
    let head = String::from_utf8_lossy(&response[..end]);
    let status = head
        .lines()
        .next()
        .filter(|line| line.starts_with("HTTP/1."))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, &response[end + 4..]))
}

/// Waits until the guest serves the page, byte for byte.
fn wait_ready(port: u16, expected: &[u8], ended: &AtomicBool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let attempt = (|| -> Result<(), String> {
            let mut stream =
                TcpStream::connect(("127.0.0.1", port)).map_err(|error| error.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|error| error.to_string())?;
            let request = format!(
                "GET /{FILE_NAME} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            stream
                .write_all(request.as_bytes())
                .map_err(|error| error.to_string())?;
            let mut response = Vec::new();
            stream
                .read_to_end(&mut response)
                .map_err(|error| error.to_string())?;
            match parse_response(&response)? {
                (200, body) if body == expected => Ok(()),
                (200, body) => Err(format!("the page came back with {} bytes", body.len())),
                (status, _) => Err(format!("status {status}")),
            }
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("httpd did not serve /{FILE_NAME}: {error}"))
            }
            Err(error) if ended.load(Ordering::Acquire) => {
                return Err(format!("the guest ended before it answered: {error}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Runs wrk against the page, with the host's TCP counters around it; `close` asks for a
/// new connection per request.
fn run_wrk(port: u16, seconds: u64, close: bool) -> Result<WrkResult, String> {
    let host_before = breakdown::host_tcp();
    let mut command = Command::new("wrk");
    command.args(["-t2", "-c16", &format!("-d{seconds}s"), "--latency"]);
    if close {
        command.args(["-H", "Connection: close"]);
    }
    command.arg(format!("http://127.0.0.1:{port}/{FILE_NAME}"));
    let output = command
        .output()
        .map_err(|error| format!("cannot run wrk: {error}"))?;
    let host_after = breakdown::host_tcp();
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut result = parse_wrk(&text)?;
    result.host = host_before
        .zip(host_after)
        .map(|(before, after)| before.until(&after));
    if result.requests == 0 || result.bad_responses > 0 {
        return Err(format!(
            "{} requests, {} not answered 2xx/3xx:\n{text}",
            result.requests, result.bad_responses
        ));
    }
    Ok(result)
}

/// Times `count` single requests with curl, each a new connection (curl's
/// `time_total`, in milliseconds), after one to warm the server's cache.
fn single_requests(port: u16, count: usize) -> Result<Vec<f64>, String> {
    let url = format!("http://127.0.0.1:{port}/{FILE_NAME}");
    let mut times = Vec::new();
    for index in 0..=count {
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{time_total}",
                &url,
            ])
            .output()
            .map_err(|error| format!("cannot run curl: {error}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let (status, seconds) = text.split_once(' ').unwrap_or(("", ""));
        if status != "200" {
            return Err(format!("curl {url}: status {status:?}"));
        }
        let seconds: f64 = seconds
            .trim()
            .parse()
            .map_err(|_| format!("curl printed {text:?}"))?;
        if index > 0 {
            times.push(seconds * 1000.0);
        }
    }
    Ok(times)
}

/// One keep-alive wrk run with what it cost: wrk's figures, host CPU per request by
/// QEMU thread, and the guest's trace per request (when it has one).
struct Measured {
    wrk: WrkResult,
    cpu: BTreeMap<String, f64>,
    trace: Option<BTreeMap<String, f64>>,
}

/// Runs wrk with keep-alive and reads what it cost around it.
fn measured_run(port: u16, trace_port: u16, seconds: u64) -> Result<Measured, String> {
    let pid = breakdown::qemu_pid(port);
    let trace_before: Option<Trace> = breakdown::read_trace(trace_port);
    let threads_before = pid.map(breakdown::thread_times);
    let wrk = run_wrk(port, seconds, false)?;
    let threads_after = pid.map(breakdown::thread_times);
    let trace_after = trace_before.as_ref().and(breakdown::read_trace(trace_port));
    let cpu = match (threads_before, threads_after) {
        (Some(before), Some(after)) => {
            breakdown::cpu_per_request(&before, &after, wrk.requests, breakdown::ticks_per_second())
        }
        _ => BTreeMap::new(),
    };
    let trace = match (trace_before, trace_after) {
        (Some(before), Some(after)) => breakdown::trace_per_request(&before, &after),
        _ => None,
    };
    Ok(Measured { wrk, cpu, trace })
}

/// Returns the records of `mode`'s wrk runs at `cores`.
fn wrk_records(mode: &str, cores: usize, results: &[WrkResult]) -> Vec<Record> {
    let pick = |value: fn(&WrkResult) -> f64| results.iter().map(value).collect::<Vec<f64>>();
    let mut records = vec![
        Record::new(
            format!("{mode}/requests_per_s"),
            cores,
            "req/s",
            pick(|r| r.requests_per_s),
        ),
        Record::new(format!("{mode}/p50"), cores, "ms", pick(|r| r.p50_ms)),
        Record::new(format!("{mode}/p90"), cores, "ms", pick(|r| r.p90_ms)),
        Record::new(format!("{mode}/p99"), cores, "ms", pick(|r| r.p99_ms)),
        Record::new(format!("{mode}/max"), cores, "ms", pick(|r| r.max_ms)),
        Record::new(
            format!("{mode}/socket_errors"),
            cores,
            "errors",
            pick(|r| r.socket_errors as f64),
        ),
    ];
    let host: Option<Vec<HostTcp>> = results.iter().map(|r| r.host).collect();
    if let Some(host) = host.filter(|host| !host.is_empty()) {
        let pick = |value: fn(&HostTcp) -> u64| host.iter().map(|h| value(h) as f64).collect();
        records.push(Record::new(
            format!("{mode}/{LISTEN_OVERFLOWS}"),
            cores,
            "drops",
            pick(|h| h.listen_overflows),
        ));
        records.push(Record::new(
            format!("{mode}/host_retransmits"),
            cores,
            "segments",
            pick(|h| h.retransmitted),
        ));
    }
    records
}

/// Returns the breakdown records of the keep-alive runs at `cores`: each measure's
/// runs, its median reported.
fn breakdown_records(cores: usize, runs: &[Measured]) -> Vec<Record> {
    let mut by_measure: BTreeMap<String, (String, Vec<f64>)> = BTreeMap::new();
    for run in runs {
        for (column, value) in &run.cpu {
            by_measure
                .entry(format!("{column}_cpu"))
                .or_insert_with(|| ("us".into(), Vec::new()))
                .1
                .push(*value);
        }
        for (measure, value) in run.trace.iter().flatten() {
            let unit = if measure.contains("kcycles") {
                "kcycles"
            } else if measure == "requests" {
                "requests"
            } else {
                "per req"
            };
            by_measure
                .entry(measure.clone())
                .or_insert_with(|| (unit.into(), Vec::new()))
                .1
                .push(*value);
        }
    }
    by_measure
        .into_iter()
        .map(|(measure, (unit, values))| {
            Record::new(format!("breakdown/{measure}"), cores, unit, values)
        })
        .collect()
}

/// What the host measures while the guest at `cores` serves.
fn measure(
    context: &Context,
    cores: usize,
    ports: (u16, u16),
    expected: &[u8],
    ended: &AtomicBool,
) -> Result<Vec<Record>, String> {
    let (port, trace_port) = ports;
    let seconds = if context.args.quick { 3 } else { 15 };
    eprintln!("xtask: waiting for httpd ...");
    wait_ready(port, expected, ended)?;
    let repeat = context.repeat;
    let steps = 2 * repeat + 1;
    progress(
        "http",
        1,
        steps,
        &format!("{cores} cores: {SINGLE_REQUESTS} single requests with curl"),
    );
    let single = single_requests(
        port,
        if context.args.quick {
            5
        } else {
            SINGLE_REQUESTS
        },
    )?;
    let mut records = vec![Record::new("single/curl", cores, "ms", single)];
    eprintln!("xtask: curl median {:.2} ms", records[0].value);
    let mut measured = Vec::new();
    for run in 1..=repeat {
        progress(
            "http",
            1 + run,
            steps,
            &format!("{cores} cores: wrk -t2 -c16 -d{seconds}s, keep-alive, repeat {run}/{repeat}"),
        );
        let result = measured_run(port, trace_port, seconds)?;
        eprintln!(
            "xtask: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
            result.wrk.requests_per_s, result.wrk.p50_ms, result.wrk.p99_ms
        );
        measured.push(result);
    }
    let results: Vec<WrkResult> = measured.iter().map(|run| run.wrk.clone()).collect();
    records.extend(wrk_records("keep-alive", cores, &results));
    records.extend(breakdown_records(cores, &measured));
    let mut results = Vec::new();
    for run in 1..=repeat {
        progress(
            "http",
            1 + repeat + run,
            steps,
            &format!("{cores} cores: wrk -t2 -c16 -d{seconds}s, close, repeat {run}/{repeat}"),
        );
        let result = run_wrk(port, seconds, true)?;
        eprintln!(
            "xtask: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms",
            result.requests_per_s, result.p50_ms, result.p99_ms
        );
        results.push(result);
    }
    records.extend(wrk_records("close", cores, &results));
    Ok(records)
}

/// The http suite: boots `httpd` on a share holding a 615-byte page at each core count,
/// forwards a host port to its port 80 (and one to its trace port), and measures.
pub(super) fn http_suite(context: &Context) -> Result<Vec<Record>, String> {
    tools::ensure_tools(&[("wrk", "wrk"), ("curl", "curl")])?;
    let args = context.args;
    let workspace = tools::workspace()?;
    let share = workspace.target_dir.join("bench").join("http-share");
    let _ = fs::remove_dir_all(&share);
    fs::create_dir_all(&share)
        .map_err(|error| format!("cannot create {}: {error}", share.display()))?;
    let content = page(FILE_SIZE);
    fs::write(share.join(FILE_NAME), &content).map_err(|error| error.to_string())?;
    let counts = if args.cores.is_empty() {
        CORES.to_vec()
    } else {
        args.cores.clone()
    };
    let mut records = Vec::new();
    for cores in counts {
        let (port, trace_port) = (tools::free_port()?, tools::free_port()?);
        let mut kernel_args = vec!["fs.disk=disk0".into()];
        if args.trace {
            kernel_args.extend(["trace=1".to_string(), format!("trace_port={TRACE_PORT}")]);
        }
        let mut config = context.guest("httpd", cores, kernel_args);
        config.disks = vec![qemu::DiskSpec {
            path: format!("fat:rw:{}", share.display()),
            read_only: false,
        }];
        config.net = Some(vec![(port, 80), (trace_port, TRACE_PORT)]);
        eprintln!("xtask: httpd guest at {cores} cores on 127.0.0.1:{port} (port 80)");
        let limit = Duration::from_secs(args.timeout + 3600);
        let (outcome, measured) = qemu::serve_while(&config, limit, |ended| {
            measure(context, cores, (port, trace_port), &content, ended)
        });
        let outcome = outcome?;
        let tail = || outcome.tail(20).join("\n    | ");
        if let Some(message) = &outcome.unknown_app {
            return Err(message.clone());
        }
        if let Some(fatal) = &outcome.fatal {
            return Err(format!("the kernel failed: {fatal}\n    | {}", tail()));
        }
        records.extend(measured.map_err(|reason| format!("http: {reason}\n    | {}", tail()))?);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP_ALIVE: &str = "\
Running 2s test @ http://127.0.0.1:18080/index.html
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.62ms    1.69ms  24.03ms   92.26%
    Req/Sec   797.78    103.06     1.05k    77.50%
  Latency Distribution
     50%    2.34ms
     75%    2.94ms
     90%    3.69ms
     99%    8.84ms
  3179 requests in 2.00s, 2.43MB read
Requests/sec:   1587.99
Transfer/sec:      1.21MB
";

    #[test]
    fn parses_wrk_latency_output() {
        assert_eq!(
            parse_wrk(KEEP_ALIVE),
            Ok(WrkResult {
                requests: 3179,
                requests_per_s: 1587.99,
                p50_ms: 2.34,
                p90_ms: 3.69,
                p99_ms: 8.84,
                max_ms: 24.03,
                socket_errors: 0,
                bad_responses: 0,
                host: None,
            })
        );
        let troubled = KEEP_ALIVE
            .replace("     50%    2.34ms", "     50%  713.39us")
            .replace("     99%    8.84ms", "     99%     1.20s")
            .replace(
                "Requests/sec:",
                "  Socket errors: connect 2, read 5, write 0, timeout 1\n  Non-2xx or 3xx responses: 3281\nRequests/sec:",
            );
        let result = parse_wrk(&troubled).unwrap();
        assert!((result.p50_ms - 0.71339).abs() < 1e-9);
        assert_eq!(result.p99_ms, 1200.0);
        assert_eq!(result.socket_errors, 8);
        assert_eq!(result.bad_responses, 3281);
        let no_latency = KEEP_ALIVE.replace("     90%    3.69ms\n", "");
        assert!(parse_wrk(&no_latency).unwrap_err().contains("90%"));
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused").is_err());
    }

    #[test]
    fn reads_wrk_durations() {
        assert_eq!(milliseconds("2.5ms"), Some(2.5));
        assert_eq!(milliseconds("250.00us"), Some(0.25));
        assert_eq!(milliseconds("2s"), Some(2000.0));
        assert_eq!(milliseconds("1.00m"), Some(60_000.0));
        assert_eq!(milliseconds("12"), None);
        assert_eq!(milliseconds("ms"), None);
        assert_eq!(milliseconds("3.0xs"), None);
    }

    #[test]
    fn the_page_has_the_size_asked_for() {
        let content = page(FILE_SIZE);
        assert_eq!(content.len(), 615);
        assert!(content.starts_with(b"<!DOCTYPE html>"));
        assert!(content.ends_with(b"</html>\n"));
    }

    #[test]
    fn parses_http_responses() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(response), Ok((200, &b"hello"[..])));
        assert_eq!(
            parse_response(b"HTTP/1.0 404 Not Found\r\n\r\n"),
            Ok((404, &b""[..]))
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
