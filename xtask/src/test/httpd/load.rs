//! The host side of httpd's hostile-load tests: thousands of idle connections held
//! while a client is served, a slow-header attack, and a connection flood on a small
//! guest. Every connection is opened on its own (QEMU's user networking listens with a
//! backlog of one; a burst would wait in the host's SYN retries, not in the guest).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::httpcheck::{Client, SiteFile};

/// Returns the soft and hard limits on open files of this process.
fn open_file_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let mut numbers = line
        .split_whitespace()
        .filter_map(|word| word.parse::<u64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Makes sure this process (and the QEMU it starts after) may open `needed` files,
/// raising the soft limit to the hard one with `prlimit` when it is lower.
pub fn allow_open_files(needed: u64) -> Result<(), String> {
    let Some((soft, hard)) = open_file_limits() else {
        return Ok(());
    };
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(format!(
            "this test opens {needed} connections, but the limit on open files is {hard}; \
             raise it (ulimit -n {needed}) and run again"
        ));
    }
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={hard}:{hard}"))
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!(
            "cannot raise the limit on open files from {soft} to {needed}: run `ulimit -n {needed}` first"
        )),
    }
}

/// Returns a connection that got `file` back for its first request, retried while the
/// guest boots (QEMU accepts and then resets connections until the guest listens).
pub fn first_response(port: u16, file: &SiteFile) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = Client::connect(port, Duration::from_secs(20))
            .and_then(|mut client| client.request("GET", file.target))
            .and_then(|response| check(&response, file));
        match attempt {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("the first request never worked: {error}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn check(response: &crate::httpcheck::Response, file: &SiteFile) -> Result<(), String> {
    if response.status != 200 || response.body != file.bytes {
        return Err(format!(
            "GET {}: status {} with {} bytes, expected 200 with {}",
            file.target,
            response.status,
            response.body.len(),
            file.bytes.len()
        ));
    }
    Ok(())
}

/// Requests `file` on a new connection and returns how long the answer took; an error
/// when it is wrong or takes longer than `within`.
fn timed_request(port: u16, file: &SiteFile, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut client = Client::connect(port, within)?;
    let response = client.request("GET", file.target)?;
    check(&response, file)?;
    let took = started.elapsed();
    if took > within {
        return Err(format!(
            "GET {} took {took:?}, more than {within:?}",
            file.target
        ));
    }
    Ok(took)
}

/// Opens `count` connections one after the other, each answered once (so it surely
/// reached the guest), and returns them kept alive.
fn open_kept_alive(port: u16, count: usize, file: &SiteFile) -> Result<Vec<Client>, String> {
    let mut clients = Vec::with_capacity(count);
    for index in 0..count {
        let mut client = Client::connect(port, Duration::from_secs(30))
            .map_err(|error| format!("connection {index}: {error}"))?;
        let response = client
            .request("GET", file.target)
            .map_err(|error| format!("connection {index}: {error}"))?;
        check(&response, file).map_err(|error| format!("connection {index}: {error}"))?;
        clients.push(client);
    }
    Ok(clients)
}

/// What the idle-connections test measured.
#[derive(Debug, Clone, Copy)]
pub struct IdleFigures {
    /// Seconds the connections took to open.
    pub opening_seconds: f64,
    /// The slowest of the client's small requests while they were held.
    pub slowest: Duration,
    /// How long the big file took to come while they were held.
    pub big: Duration,
}

/// Holds `count` idle keep-alive connections while a client makes `probes` requests
/// for the small files (new connections and one kept-alive one), each answered in full
/// within 5 s, and fetches the big file once, within a minute (every frame of it
/// walks smoltcp's list of all sockets); then checks that the held connections still
/// work.
pub fn idle_connections(
    port: u16,
    site: &[SiteFile],
    count: usize,
    probes: usize,
) -> Result<IdleFigures, String> {
    let file = &site[1];
    first_response(port, file)?;
    let started = Instant::now();
    let mut held = open_kept_alive(port, count, file)?;
    let opening_seconds = started.elapsed().as_secs_f64();
    let within = Duration::from_secs(5);
    let mut slowest = Duration::ZERO;
    let mut kept = Client::connect(port, within)?;
    let small: Vec<&SiteFile> = site
        .iter()
        .filter(|file| file.bytes.len() < 1 << 20)
        .collect();
    for probe in 0..probes {
        let target = small[probe % small.len()];
        slowest = slowest.max(timed_request(port, target, within)?);
        let began = Instant::now();
        let response = kept.request("GET", file.target)?;
        check(&response, file)?;
        slowest = slowest.max(began.elapsed());
    }
    let big_file = site
        .iter()
        .max_by_key(|file| file.bytes.len())
        .ok_or("the site has no files")?;
    let big = timed_request(port, big_file, Duration::from_secs(60))?;
    // The held connections were kept, not dropped: a spread of them still answers.
    for index in (0..count).step_by((count / 20).max(1)) {
        let response = held[index]
            .request("GET", file.target)
            .map_err(|error| format!("held connection {index} after the probes: {error}"))?;
        check(&response, file)?;
    }
    Ok(IdleFigures {
        opening_seconds,
        slowest,
        big,
    })
}

/// One slow-header attacker: a connection that sends a head a byte at a time and never
/// finishes it.
struct Slow {
    stream: Option<TcpStream>,
}

/// The start of every attacker's endless head.
const SLOW_START: &[u8] = b"GET / HTTP/1.1\r\nHost: attacker\r\nX-Slow: ";

impl Slow {
    /// Opens an attacker: a first request answered whole (so the connection surely
    /// reached the guest; opening many at once would only wait in the host's SYN
    /// retries), then the start of a head that never ends.
    fn open(port: u16, file: &SiteFile) -> Option<TcpStream> {
        let mut client = Client::connect(port, Duration::from_secs(10)).ok()?;
        let response = client.request("GET", file.target).ok()?;
        check(&response, file).ok()?;
        let mut stream = client.into_stream();
        stream.set_nonblocking(true).ok()?;
        stream.write_all(SLOW_START).ok()?;
        Some(stream)
    }

    /// Sends one more byte, reconnecting when the server closed (or answered 408).
    fn drip(&mut self, port: u16, file: &SiteFile) {
        let alive = self.stream.as_mut().is_some_and(|stream| {
            let mut buffer = [0u8; 512];
            let closed = match stream.read(&mut buffer) {
                Ok(_) => true,
                Err(error) => error.kind() != ErrorKind::WouldBlock,
            };
            !closed && stream.write_all(b"a").is_ok()
        });
        if !alive {
            self.stream = Slow::open(port, file);
        }
    }
}

/// What the slow-header test measured.
#[derive(Debug, Clone, Copy)]
pub struct SlowFigures {
    /// Requests the client made during the attack.
    pub requests: usize,
    /// The slowest of them.
    pub slowest: Duration,
}

/// Runs `attackers` slow-header connections (a byte each every second, reconnecting
/// when closed) for `seconds`, while a client requests `file` on a new connection every
/// 200 ms; every request must be answered in full within 1 s.
pub fn slow_headers(
    port: u16,
    file: &SiteFile,
    attackers: usize,
    seconds: u64,
) -> Result<SlowFigures, String> {
    first_response(port, file)?;
    let mut slow: Vec<Slow> = Vec::with_capacity(attackers);
    for index in 0..attackers {
        let stream = Slow::open(port, file).ok_or(format!("attacker {index} could not connect"))?;
        slow.push(Slow {
            stream: Some(stream),
        });
    }
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let dripping = scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let round = Instant::now();
                for attacker in &mut slow {
                    attacker.drip(port, file);
                }
                if let Some(rest) = Duration::from_secs(1).checked_sub(round.elapsed()) {
                    thread::sleep(rest);
                }
            }
        });
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut figures = SlowFigures {
            requests: 0,
            slowest: Duration::ZERO,
        };
        let mut result = Ok(());
        while Instant::now() < end {
            match timed_request(port, file, Duration::from_secs(1)) {
                Ok(took) => {
                    figures.requests += 1;
                    figures.slowest = figures.slowest.max(took);
                }
                Err(error) => {
                    result = Err(format!(
                        "request {} during the attack: {error}",
                        figures.requests + 1
                    ));
                    break;
                }
            }
            thread::sleep(Duration::from_millis(200));
        }
        done.store(true, Ordering::Release);
        let _ = dripping.join();
        result.map(|()| figures)
    })
}

/// What the flood test measured.
#[derive(Debug, Clone, Copy)]
pub struct FloodFigures {
    /// Connections the server took (answered their request).
    pub served: usize,
    /// Connections it refused (reset or closed unanswered) once at its limit.
    pub refused: usize,
}

/// Floods the server: opens up to `attempts` connections one after the other, each
/// answered once and then held open; stops after 100 refusals in a row. At the limit,
/// connections it holds must still be served; then they all close and a new client must
/// be served again.
pub fn flood(port: u16, file: &SiteFile, attempts: usize) -> Result<FloodFigures, String> {
    first_response(port, file)?;
    let mut held = Vec::new();
    let mut figures = FloodFigures {
        served: 0,
        refused: 0,
    };
    let mut refused_in_a_row = 0;
    for _ in 0..attempts {
        let answered = Client::connect(port, Duration::from_secs(3)).and_then(|mut client| {
            let response = client.request("GET", file.target)?;
            check(&response, file)?;
            Ok(client)
        });
        match answered {
            Ok(client) => {
                figures.served += 1;
                refused_in_a_row = 0;
                held.push(client);
            }
            Err(_) => {
                figures.refused += 1;
                refused_in_a_row += 1;
                if refused_in_a_row >= 100 {
                    break;
                }
            }
        }
    }
    // Out of sockets, the server still serves the connections it has.
    let count = held.len();
    for index in (0..count).step_by((count / 10).max(1)) {
        let response = held[index]
            .request("GET", file.target)
            .map_err(|error| format!("held connection {index} at the limit: {error}"))?;
        check(&response, file)?;
    }
    drop(held);
    // The server reaps what the flood left and serves again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match timed_request(port, file, Duration::from_secs(5)) {
            Ok(_) => return Ok(figures),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("not served after the flood: {error}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(500)),
        }
    }
}
