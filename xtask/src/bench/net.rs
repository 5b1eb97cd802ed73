//! The net suite: app `echo` measured from the host through QEMU's user networking.
//! TCP echo throughput on one connection, sequential connections per second, and the
//! net core's heap (its status port) before and after many connections.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::context::{progress, Context, Record};
use crate::qemu;
use crate::tools;

/// The cores the echo guest boots with: the app on core 0, the net service on core 1.
pub(super) const CORES: usize = 2;
/// The guest's echo port and its status port (one line, `net-heap-bytes N`).
const ECHO_PORT: u16 = 7;
const STATUS_PORT: u16 = 8;
/// How long the guest may take to boot and answer its first echo.
const READY_WITHIN: Duration = Duration::from_secs(90);
/// How long one read may wait before the measure fails.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How much the suite does: full, or `--quick`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Amounts {
    /// Bytes echoed on one connection per throughput run.
    stream_bytes: usize,
    /// Seconds of sequential connections per connection-rate run.
    connect_seconds: u64,
    /// Sequential connections between the two heap readings.
    memory_connections: u64,
}

impl Amounts {
    fn new(quick: bool) -> Amounts {
        if quick {
            Amounts {
                stream_bytes: 1 << 20,
                connect_seconds: 1,
                memory_connections: 1_000,
            }
        } else {
            Amounts {
                stream_bytes: 16 << 20,
                connect_seconds: 5,
                memory_connections: 100_000,
            }
        }
    }
}

/// Connections between two progress lines in the memory check.
const PROGRESS_EVERY: u64 = 10_000;

/// Byte `index` of the throughput stream.
fn stream_byte(index: usize) -> u8 {
    (index.wrapping_mul(31) ^ (index >> 11)) as u8
}

/// What the guest's status port says about the net core.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Status {
    /// Bytes in use on the net core's heap.
    heap_bytes: u64,
    /// Sockets in the net core's table, when the guest says.
    sockets: Option<u64>,
}

/// Returns the figures in the status port's answer, `net-heap-bytes N sockets M\n`.
fn parse_status(text: &str) -> Result<Status, String> {
    let bad = || format!("no `net-heap-bytes N sockets M` line in {text:?}");
    let line = text
        .lines()
        .find(|line| line.trim_start().starts_with("net-heap-bytes "))
        .ok_or_else(bad)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["net-heap-bytes", bytes] => Ok(Status {
            heap_bytes: bytes.parse().map_err(|_| bad())?,
            sockets: None,
        }),
        ["net-heap-bytes", bytes, "sockets", sockets] => Ok(Status {
            heap_bytes: bytes.parse().map_err(|_| bad())?,
            sockets: Some(sockets.parse().map_err(|_| bad())?),
        }),
        _ => Err(bad()),
    }
}

/// Connects to 127.0.0.1:`port`, waiting out a short lack of local ports.
fn connect(port: u16) -> Result<TcpStream, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(READ_TIMEOUT))
                    .map_err(|error| error.to_string())?;
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            // Ports in TIME_WAIT after many connections: they free up soon.
            Err(error) if error.kind() == ErrorKind::AddrNotAvailable => {
                if Instant::now() >= deadline {
                    return Err(format!("connect: {error}"));
                }
                thread::sleep(Duration::from_millis(50));
            }
            Err(error) => return Err(format!("connect: {error}")),
        }
    }
}

/// Opens a connection, writes 16 bytes, reads them back and closes.
fn echo_once(port: u16, round: u64) -> Result<(), String> {
    let mut stream = connect(port)?;
    let message = round.to_le_bytes().repeat(2);
    stream
        .write_all(&message)
        .map_err(|error| format!("write: {error}"))?;
    let mut back = [0u8; 16];
    stream
        .read_exact(&mut back)
        .map_err(|error| format!("read: {error}"))?;
    if back[..] != message[..] {
        return Err(format!("connection {round}: the echo differs"));
    }
    Ok(())
}

/// Waits until the guest echoes: QEMU's user networking accepts, then resets,
/// connections until the guest is up.
fn wait_ready(port: u16, ended: &AtomicBool) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        match echo_once(port, 0) {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!(
                    "the guest did not echo within {} s: {error}",
                    READY_WITHIN.as_secs()
                ))
            }
            Err(error) if ended.load(Ordering::Acquire) => {
                return Err(format!("the guest ended before it answered: {error}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// Echoes `bytes` on one connection, writing on one thread and reading on this one;
/// returns MB/s (10^6 bytes per second) from the first write to the last byte back.
fn stream_throughput(port: u16, bytes: usize) -> Result<f64, String> {
    let stream = connect(port)?;
    let mut writer = stream.try_clone().map_err(|error| error.to_string())?;
    let data: Vec<u8> = (0..bytes).map(stream_byte).collect();
    let start = Instant::now();
    let sender = thread::spawn(move || -> Result<(), String> {
        for chunk in data.chunks(64 * 1024) {
            writer
                .write_all(chunk)
                .map_err(|error| format!("write: {error}"))?;
        }
        Ok(())
    });
    let mut reader = stream;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received = 0;
    while received < bytes {
        let count = match reader.read(&mut buffer) {
            Ok(0) => return Err(format!("the echo ended after {received} of {bytes} bytes")),
            Ok(count) => count,
            Err(error) => return Err(format!("read after {received} bytes: {error}")),
        };
        if let Some(offset) = (0..count).find(|&i| buffer[i] != stream_byte(received + i)) {
            return Err(format!("echoed byte {} differs", received + offset));
        }
        received += count;
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    sender
        .join()
        .map_err(|_| "the writer panicked".to_string())??;
    Ok(bytes as f64 / elapsed / 1e6)
}

/// Makes sequential 16-byte echo connections for `seconds`; returns connections/s.
fn connection_rate(port: u16, seconds: u64) -> Result<f64, String> {
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        echo_once(port, count).map_err(|error| format!("after {count} connections: {error}"))?;
        count += 1;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// Returns the net core's heap and socket figures, from the status port.
fn read_status(port: u16) -> Result<Status, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = connect(port).and_then(|mut stream| {
            let mut text = String::new();
            stream
                .read_to_string(&mut text)
                .map_err(|error| format!("read: {error}"))?;
            parse_status(&text)
        });
        match attempt {
            Ok(status) => return Ok(status),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!(
                    "the status port (guest port {STATUS_PORT}) gave no heap figure: {error}"
                ))
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// What the host measures while the guest serves.
fn measure(
    context: &Context,
    echo: u16,
    status: u16,
    ended: &AtomicBool,
) -> Result<Vec<Record>, String> {
    let amounts = Amounts::new(context.args.quick);
    let repeat = context.repeat;
    let steps = 2 * repeat + 1;
    eprintln!("xtask: waiting for the guest's echo ...");
    wait_ready(echo, ended)?;
    let mut throughputs = Vec::new();
    for run in 1..=repeat {
        progress(
            "net",
            run,
            steps,
            &format!(
                "echo {} MiB on one connection, repeat {run}/{repeat}",
                amounts.stream_bytes >> 20
            ),
        );
        let throughput = stream_throughput(echo, amounts.stream_bytes)?;
        eprintln!("xtask: {throughput:.2} MB/s");
        throughputs.push(throughput);
    }
    let mut rates = Vec::new();
    for run in 1..=repeat {
        progress(
            "net",
            repeat + run,
            steps,
            &format!(
                "sequential connections for {} s, repeat {run}/{repeat}",
                amounts.connect_seconds
            ),
        );
        let rate = connection_rate(echo, amounts.connect_seconds)?;
        eprintln!("xtask: {rate:.0} connections/s");
        rates.push(rate);
    }
    let total = amounts.memory_connections;
    progress(
        "net",
        steps,
        steps,
        &format!("heap before and after {total} sequential connections"),
    );
    let before = read_status(status)?;
    let start = Instant::now();
    for connection in 1..=total {
        echo_once(echo, connection)
            .map_err(|error| format!("memory check, connection {connection}: {error}"))?;
        if connection % PROGRESS_EVERY == 0 || connection == total {
            eprintln!(
                "xtask: {connection}/{total} connections ({:.0}/s)",
                connection as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    let sustained = total as f64 / start.elapsed().as_secs_f64();
    // Let the guest finish closing the last connections before reading again.
    thread::sleep(Duration::from_secs(1));
    let after = read_status(status)?;
    let (before_bytes, after_bytes) = (before.heap_bytes as f64, after.heap_bytes as f64);
    eprintln!(
        "xtask: net heap {before_bytes} bytes before, {after_bytes} after {total} connections ({:+}); sockets {:?} then {:?}",
        after_bytes - before_bytes,
        before.sockets,
        after.sockets
    );
    let cores = CORES;
    let mut records = vec![
        Record::new("tcp_echo_throughput", cores, "MB/s", throughputs),
        Record::new("tcp_connections_per_s", cores, "conn/s", rates),
        Record::new(
            "tcp_connections_per_s_sustained",
            cores,
            "conn/s",
            vec![sustained],
        ),
        Record::new("net_heap_bytes_before", cores, "bytes", vec![before_bytes]),
        Record::new("net_heap_bytes_after", cores, "bytes", vec![after_bytes]),
        Record::new(
            "net_heap_bytes_growth",
            cores,
            "bytes",
            vec![after_bytes - before_bytes],
        ),
    ];
    if let (Some(before), Some(after)) = (before.sockets, after.sockets) {
        records.push(Record::new(
            "net_sockets_before",
            cores,
            "sockets",
            vec![before as f64],
        ));
        records.push(Record::new(
            "net_sockets_after",
            cores,
            "sockets",
            vec![after as f64],
        ));
    }
    Ok(records)
}

/// The net suite: boots `echo` with two forwarded ports and measures from the host.
pub(super) fn net_suite(context: &Context) -> Result<Vec<Record>, String> {
    let args = context.args;
    let echo = tools::free_port()?;
    let status = tools::free_port()?;
    let mut config = context.guest("echo", CORES, Vec::new());
    config.net = Some(vec![(echo, ECHO_PORT), (status, STATUS_PORT)]);
    eprintln!("xtask: echo guest on 127.0.0.1:{echo} (port 7) and :{status} (port 8)");
    // The guest serves until stopped; the client bounds every wait of its own, so the
    // guest's limit only catches a client that never ends.
    let limit = Duration::from_secs(args.timeout + 4 * 3600);
    let (outcome, measured) = qemu::serve_while(&config, limit, |ended| {
        measure(context, echo, status, ended)
    });
    let outcome = outcome?;
    let tail = || outcome.tail(20).join("\n    | ");
    if let Some(fatal) = &outcome.fatal {
        return Err(format!("the kernel failed: {fatal}\n    | {}", tail()));
    }
    measured.map_err(|reason| format!("net: {reason}\n    | {}", tail()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_the_status_line() {
        let status = |heap_bytes, sockets| {
            Ok(Status {
                heap_bytes,
                sockets,
            })
        };
        assert_eq!(
            parse_status("net-heap-bytes 123456 sockets 3\n"),
            status(123_456, Some(3))
        );
        assert_eq!(parse_status("net-heap-bytes 7"), status(7, None));
        assert_eq!(parse_status("hello\nnet-heap-bytes 9\r\n"), status(9, None));
        assert!(parse_status("net-heap-bytes 9 sockets\n").is_err());
        assert!(parse_status("net-heap-bytes 9 sockets x\n").is_err());
        assert!(parse_status("net-heap-bytes 9 files 2\n").is_err());
        assert!(parse_status("").is_err());
        assert!(parse_status("net-heap-bytes\n").is_err());
        assert!(parse_status("net-heap-bytes -5\n").is_err());
        assert!(parse_status("net-heap-bytes 12x\n").is_err());
    }

    #[test]
    fn quick_runs_do_less() {
        let (quick, full) = (Amounts::new(true), Amounts::new(false));
        assert_eq!(quick.stream_bytes, 1 << 20);
        assert_eq!(full.stream_bytes, 16 << 20);
        assert_eq!(full.memory_connections, 100_000);
        assert_eq!(quick.memory_connections, 1_000);
        assert!(quick.connect_seconds < full.connect_seconds);
    }

    /// A local echo server standing in for the guest: the client's measures work
    /// against it and detect a server that corrupts the stream.
    fn local_echo(corrupt_at: Option<usize>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    let mut seen = 0;
                    while let Ok(count) = stream.read(&mut buffer) {
                        if count == 0 {
                            break;
                        }
                        if let Some(at) = corrupt_at.filter(|at| (seen..seen + count).contains(at))
                        {
                            buffer[at - seen] ^= 0xFF;
                        }
                        seen += count;
                        if stream.write_all(&buffer[..count]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    #[test]
    fn client_measures_against_a_local_echo_server() {
        let port = local_echo(None);
        wait_ready(port, &AtomicBool::new(false)).unwrap();
        assert!(stream_throughput(port, 300_000).unwrap() > 0.0);
        assert!(connection_rate(port, 1).unwrap() > 1.0);
        let broken = local_echo(Some(200_000));
        let error = stream_throughput(broken, 300_000).unwrap_err();
        assert!(error.contains("byte 200000 differs"), "{error}");
        assert!(echo_once(local_echo(Some(3)), 1).is_err());
    }

    #[test]
    fn reads_the_heap_from_a_status_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for stream in listener.incoming().take(1) {
                let _ = stream
                    .unwrap()
                    .write_all(b"net-heap-bytes 4096 sockets 2\n");
            }
        });
        assert_eq!(
            read_status(port),
            Ok(Status {
                heap_bytes: 4096,
                sockets: Some(2)
            })
        );
    }
}
