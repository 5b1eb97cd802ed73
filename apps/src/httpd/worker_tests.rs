//! The whole server on the host: the net core's part ([`Server`]) and the workers'
//! ([`answer`]) against an in-memory share, over a scripted connection and over real
//! host sockets (with curl as the oracle).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use net::{Event, Next};
use percore::random::XorShift64;

use super::*;
use crate::httpd::request::Limits;
use crate::httpd::server::{Server, Wire};

/// An in-memory share; lookups ignore case, like FAT.
#[derive(Default, Clone)]
struct Share {
    files: BTreeMap<String, Vec<u8>>,
    folders: Vec<String>,
    fail_lookups: bool,
    /// Readers fail once they have given this many bytes.
    fail_after: Option<usize>,
    /// Readers end after this many bytes, whatever the lookup said.
    shrink_to: Option<usize>,
}

impl Share {
    fn sample() -> Share {
        let mut share = Share::default();
        share.add("/index.html", b"<h1>home</h1>\n");
        share.add("/hello.txt", b"hello\n");
        share.add("/docs/index.html", b"<p>docs</p>\n");
        share.add("/docs/A long file name.txt", b"long\n");
        share.add("/empty.bin", b"");
        share.add("/big.bin", &pattern(300 * 1024 + 7));
        share.folders = ["/", "/docs", "/bare"].map(String::from).to_vec();
        share
    }

    fn add(&mut self, path: &str, data: &[u8]) {
        self.files.insert(path.to_lowercase(), data.to_vec());
    }
}

fn pattern(length: usize) -> Vec<u8> {
    (0..length).map(|i| (i * 7 + i / 251) as u8).collect()
}

struct Reader {
    data: Vec<u8>,
    position: usize,
    fail_after: Option<usize>,
}

impl FileReader for Reader {
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, SiteError> {
        if self.fail_after.is_some_and(|limit| self.position >= limit) {
            return Err(SiteError::Failed);
        }
        let count = buffer
            .len()
            .min(self.data.len().saturating_sub(self.position));
        buffer[..count].copy_from_slice(&self.data[self.position..][..count]);
        self.position += count;
        Ok(count)
    }

    fn seek(&mut self, position: u64) -> Result<(), SiteError> {
        self.position = position as usize;
        Ok(())
    }
}

impl Site for Share {
    type Reader = Reader;

    fn lookup(&mut self, path: &str) -> Result<Found<Reader>, SiteError> {
        if self.fail_lookups {
            return Err(SiteError::Failed);
        }
        let key = path.to_lowercase();
        if let Some(data) = self.files.get(&key) {
            let size = data.len() as u64;
            let mut data = data.clone();
            if let Some(length) = self.shrink_to {
                data.truncate(length);
            }
            Ok(Found::File {
                size,
                modified: Some(1_700_000_000),
                reader: Reader {
                    data,
                    position: 0,
                    fail_after: self.fail_after,
                },
            })
        } else if self
            .folders
            .iter()
            .any(|folder| folder.to_lowercase() == key)
        {
            Ok(Found::Folder)
        } else {
            Err(SiteError::NotFound)
        }
    }
}

/// A scripted connection: the client's bytes, what the server sent (room enough for
/// everything), whether the client closed.
#[derive(Default)]
struct Connection {
    received: VecDeque<u8>,
    sent: Vec<u8>,
    closed: bool,
    reset: bool,
    fail_writes: bool,
}

impl Wire for Connection {
    fn receive_capacity(&self) -> usize {
        8192
    }
    fn peek(&mut self, buffer: &mut [u8]) -> usize {
        let count = buffer.len().min(self.received.len());
        for (slot, byte) in buffer.iter_mut().zip(&self.received) {
            *slot = *byte;
        }
        count
    }
    fn consume(&mut self, count: usize) {
        self.received.drain(..count.min(self.received.len()));
    }
    fn peer_closed(&self) -> bool {
        self.closed
    }
    fn can_send(&self) -> bool {
        !self.reset
    }
    fn room(&self) -> usize {
        1 << 30
    }
    fn send(&mut self, data: &[u8]) -> usize {
        self.sent.extend_from_slice(data);
        data.len()
    }
}

impl Transport for Connection {
    fn write_all(&mut self, data: &[u8]) -> Result<(), TransportError> {
        if self.fail_writes {
            return Err(TransportError);
        }
        self.sent.extend_from_slice(data);
        Ok(())
    }
}

fn clock() -> Option<u64> {
    Some(1_700_000_100)
}

fn generation() -> u64 {
    7
}

/// How a scripted connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Closed,
    Aborted,
    /// The script ran out while the server waited.
    Waiting,
}

/// Runs the server with `share` on a connection that receives `steps` (a delay in ms,
/// then bytes; empty bytes close the client's half), playing the worker for every
/// handoff. Returns how it ended and what the client received.
fn run_with(steps: &[(u64, &[u8])], share: &mut Share, settings: Settings) -> (Ending, Vec<u8>) {
    let mut server = Server::new(settings, clock, generation);
    assert!(server.attach(1 << 20, CACHEABLE as usize + 4096));
    let mut session = server.open(0);
    let mut connection = Connection::default();
    let mut now = 0;
    let mut steps = steps.iter();
    let mut next = server.event(&mut session, &mut connection, Event::Opened, now);
    loop {
        next = match next {
            Next::Close => return (Ending::Closed, connection.sent),
            Next::Abort => return (Ending::Aborted, connection.sent),
            Next::HandOff => {
                let head = session.head().unwrap();
                let reply = answer(
                    head,
                    &settings,
                    share,
                    &mut connection,
                    generation(),
                    clock(),
                );
                session.set_reply(reply);
                server.event(&mut session, &mut connection, Event::Resumed, now)
            }
            Next::Write { .. } => unreachable!("the connection always has room"),
            Next::Read { deadline_ms } => match steps.next() {
                Some(&(delay, bytes)) => {
                    if deadline_ms.is_some_and(|deadline| now + delay >= deadline) {
                        now = deadline_ms.unwrap_or(now);
                        server.event(&mut session, &mut connection, Event::TimedOut, now)
                    } else {
                        now += delay;
                        if bytes.is_empty() {
                            connection.closed = true;
                        }
                        connection.received.extend(bytes);
                        server.event(&mut session, &mut connection, Event::Ready, now)
                    }
                }
                None if deadline_ms.is_some() => {
                    now = deadline_ms.unwrap_or(now);
                    server.event(&mut session, &mut connection, Event::TimedOut, now)
                }
                None => return (Ending::Waiting, connection.sent),
            },
        };
    }
}

fn run(steps: &[(u64, &[u8])], share: &mut Share) -> (Ending, Vec<u8>) {
    run_with(steps, share, Settings::default())
}

/// A response as the client sees it.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            key.eq_ignore_ascii_case(name).then_some(value)
        })
    }
}

/// Splits what the server sent into responses; `head_only[i]` says that response `i`
/// answers a HEAD request. A short last body is kept as it is.
fn responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Response> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end + 4]).into_owned();
        let status = head[9..12].parse().unwrap();
        let mut response = Response {
            status,
            head,
            body: Vec::new(),
        };
        let length: usize = response
            .header("Content-Length")
            .map_or(0, |value| value.parse().unwrap());
        let skip = head_only.get(out.len()).copied().unwrap_or(false) || status == 304;
        let length = if skip {
            0
        } else {
            length.min(bytes.len() - end - 4)
        };
        response.body = bytes[end + 4..end + 4 + length].to_vec();
        bytes = &bytes[end + 4 + length..];
        out.push(response);
    }
    out
}

const GET_HELLO: &[u8] = b"GET /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n";

#[test]
fn keep_alive_serves_requests_until_the_client_closes() {
    let mut share = Share::sample();
    let (ending, sent) = run(
        &[
            (0, GET_HELLO),
            (10, b"GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n"),
            (10, GET_HELLO),
            (10, b""),
        ],
        &mut share,
    );
    assert_eq!(ending, Ending::Closed);
    let all = responses(&sent, &[]);
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].body, b"hello\n");
    assert_eq!(all[1].body, b"<h1>home</h1>\n");
    assert_eq!(
        all[1].header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(all[2].body, b"hello\n");
    // The second GET of hello.txt came from the cache, with the same validators.
    assert_eq!(all[0].header("ETag"), all[2].header("ETag"));
    assert_eq!(
        all[0].header("Last-Modified"),
        Some("Tue, 14 Nov 2023 22:13:20 GMT")
    );
    assert_eq!(all[2].header("Date"), Some("Tue, 14 Nov 2023 22:15:00 GMT"));
}

#[test]
fn pipelined_and_byte_by_byte_requests() {
    let mut share = Share::sample();
    let mut steps: Vec<(u64, &[u8])> = Vec::new();
    let both = [GET_HELLO, GET_HELLO].concat();
    steps.push((0, &both));
    for byte in 0..GET_HELLO.len() {
        steps.push((1, &GET_HELLO[byte..byte + 1]));
    }
    steps.push((1, b""));
    let (ending, sent) = run(&steps, &mut share);
    assert_eq!(ending, Ending::Closed);
    let all = responses(&sent, &[]);
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|response| response.body == b"hello\n"));
}

#[test]
fn big_files_are_streamed_by_the_worker_with_ranges() {
    let mut share = Share::sample();
    let big = pattern(300 * 1024 + 7);
    let (_, sent) = run(
        &[
            (0, b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n"),
            (
                0,
                b"GET /big.bin HTTP/1.1\r\nHost: h\r\nRange: bytes=100000-100099\r\n\r\n",
            ),
            (
                0,
                b"GET /big.bin HTTP/1.1\r\nHost: h\r\nRange: bytes=-7\r\n\r\n",
            ),
            (0, b"HEAD /big.bin HTTP/1.1\r\nHost: h\r\n\r\n"),
            (
                0,
                b"GET /big.bin HTTP/1.1\r\nHost: h\r\nRange: bytes=400000-\r\n\r\n",
            ),
            (0, GET_HELLO),
            (0, b""),
        ],
        &mut share,
    );
    let all = responses(&sent, &[false, false, false, true]);
    let statuses: Vec<u16> = all.iter().map(|response| response.status).collect();
    assert_eq!(statuses, [200, 206, 206, 200, 416, 200]);
    assert!(all[0].body == big);
    assert_eq!(all[0].header("Accept-Ranges"), Some("bytes"));
    assert!(all[1].body == big[100_000..100_100]);
    assert_eq!(
        all[1].header("Content-Range"),
        Some("bytes 100000-100099/307207")
    );
    assert!(all[2].body == big[big.len() - 7..]);
    assert_eq!(all[3].header("Content-Length"), Some("307207"));
    assert!(all[3].body.is_empty());
    assert_eq!(all[4].header("Content-Range"), Some("bytes */307207"));
    assert_eq!(all[5].body, b"hello\n");
    // A big file's tag comes from its date and size, and a match gives 304.
    let etag = String::from(all[0].header("ETag").unwrap());
    let request =
        alloc::format!("GET /big.bin HTTP/1.1\r\nHost: h\r\nIf-None-Match: {etag}\r\n\r\n");
    let (_, sent) = run(&[(0, request.as_bytes())], &mut share);
    let response = responses(&sent, &[]).remove(0);
    assert_eq!(response.status, 304);
    assert!(response.body.is_empty());
}

#[test]
fn empty_files_have_a_zero_length() {
    let mut share = Share::sample();
    let (_, sent) = run(
        &[(0, b"GET /empty.bin HTTP/1.1\r\nHost: h\r\n\r\n")],
        &mut share,
    );
    let response = responses(&sent, &[]).remove(0);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Length"), Some("0"));
}

#[test]
fn folders_redirect_or_serve_their_index() {
    let mut share = Share::sample();
    let (_, sent) = run(
        &[
            (0, b"GET /docs HTTP/1.1\r\nHost: h\r\n\r\n"),
            (0, b"GET /docs HTTP/1.1\r\nHost: h\r\n\r\n"),
            (0, b"GET /docs/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            (0, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            (0, b"GET /bare/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            (0, b"GET /hello.txt/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            (
                0,
                b"GET /docs/A%20long%20file%20name.txt HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
        ],
        &mut share,
    );
    let all = responses(&sent, &[]);
    let statuses: Vec<u16> = all.iter().map(|response| response.status).collect();
    assert_eq!(statuses, [301, 301, 200, 200, 404, 404, 200]);
    assert_eq!(all[0].header("Location"), Some("/docs/"));
    assert_eq!(all[1].header("Location"), Some("/docs/"), "from the cache");
    assert_eq!(all[2].body, b"<p>docs</p>\n");
    assert_eq!(all[3].body, b"<h1>home</h1>\n");
    assert_eq!(all[6].body, b"long\n");
    assert_eq!(
        all[6].header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn not_found_and_wrong_methods_keep_the_connection() {
    let mut share = Share::sample();
    let (ending, sent) = run(
        &[
            (0, b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n"),
            (0, b"POST /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n"),
            (0, GET_HELLO),
        ],
        &mut share,
    );
    assert_eq!(ending, Ending::Closed, "idle timeout after the last");
    let statuses: Vec<u16> = responses(&sent, &[]).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 405, 200]);
}

#[test]
fn traversal_is_refused_and_closes() {
    for target in [
        "/../secret",
        "/%2e%2e/secret",
        "/docs/..%2f..%2fsecret",
        "/docs\\..\\secret",
        "/a%00b",
    ] {
        let mut share = Share::sample();
        share.add("/secret", b"[package]");
        let request = alloc::format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let (ending, sent) = run(&[(0, request.as_bytes())], &mut share);
        let response = responses(&sent, &[]).remove(0);
        assert!(
            matches!(response.status, 400 | 404),
            "{target}: {}",
            response.status
        );
        assert!(
            !sent.windows(9).any(|window| window == b"[package]"),
            "{target}"
        );
        if response.status == 400 {
            assert_eq!(ending, Ending::Closed, "{target}");
        }
    }
}

#[test]
fn bad_requests_get_their_status_and_close() {
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
            413,
        ),
        (b"BAD REQUEST LINE HERE\r\n\r\n", 400),
    ];
    for (request, status) in cases {
        let mut share = Share::sample();
        let (ending, sent) = run(&[(0, request)], &mut share);
        assert_eq!(ending, Ending::Closed);
        let response = responses(&sent, &[]).remove(0);
        assert_eq!(response.status, *status);
        assert_eq!(response.header("Connection"), Some("close"));
    }
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let mut share = Share::sample();
    let (ending, sent) = run(
        &[(0, b"GET /hello.txt HTTP/1.0\r\n\r\n"), (0, GET_HELLO)],
        &mut share,
    );
    assert_eq!(ending, Ending::Closed);
    assert_eq!(responses(&sent, &[]).len(), 1);
    let (_, sent) = run(
        &[
            (
                0,
                b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            ),
            (0, GET_HELLO),
        ],
        &mut share,
    );
    let all = responses(&sent, &[]);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].header("Connection"), Some("keep-alive"));
}

#[test]
fn idle_and_slow_connections_are_closed_on_time() {
    let mut share = Share::sample();
    let settings = Settings {
        idle_timeout: Duration::from_millis(300),
        head_timeout: Duration::from_millis(500),
        ..Settings::default()
    };
    let (ending, sent) = run_with(&[(0, GET_HELLO), (301, GET_HELLO)], &mut share, settings);
    assert_eq!(ending, Ending::Closed);
    assert_eq!(
        responses(&sent, &[]).len(),
        1,
        "closed before the late request"
    );
    let (ending, sent) = run_with(
        &[
            (0, b"GET /hel"),
            (200, b"lo.txt HT"),
            (400, b"TP/1.1\r\n\r\n"),
        ],
        &mut share,
        settings,
    );
    assert_eq!(ending, Ending::Closed);
    assert_eq!(responses(&sent, &[])[0].status, 408);
}

#[test]
fn file_failures() {
    // Failing before anything was sent: a proper 500.
    let mut share = Share::sample();
    share.fail_after = Some(0);
    let (ending, sent) = run(&[(0, GET_HELLO)], &mut share);
    assert_eq!(ending, Ending::Closed);
    assert_eq!(responses(&sent, &[])[0].status, 500);

    // A big file failing after its first chunk went out: the connection is cut.
    let mut share = Share::sample();
    share.fail_after = Some(CHUNK);
    let (ending, sent) = run(
        &[(0, b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n")],
        &mut share,
    );
    assert_eq!(ending, Ending::Closed);
    let response = responses(&sent, &[]).remove(0);
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), CHUNK);

    // Shorter than its lookup said, after the first chunk: cut short too.
    let mut share = Share::sample();
    share.shrink_to = Some(100_000);
    let (_, sent) = run(
        &[(0, b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n")],
        &mut share,
    );
    assert_eq!(responses(&sent, &[])[0].body.len(), 100_000);

    // A small file that shrank is served as read; one that is empty now is a 500.
    let mut share = Share::sample();
    share.shrink_to = Some(0);
    let (_, sent) = run(&[(0, GET_HELLO)], &mut share);
    assert_eq!(responses(&sent, &[])[0].status, 500);

    // The share failing on lookup.
    let mut share = Share::sample();
    share.fail_lookups = true;
    let (ending, sent) = run(&[(0, GET_HELLO)], &mut share);
    assert_eq!(ending, Ending::Closed);
    assert_eq!(responses(&sent, &[])[0].status, 500);
}

#[test]
fn a_failing_connection_ends_a_big_download() {
    let mut share = Share::sample();
    let settings = Settings::default();
    let mut connection = Connection {
        fail_writes: true,
        ..Connection::default()
    };
    let reply = answer(
        b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n",
        &settings,
        &mut share,
        &mut connection,
        1,
        None,
    );
    assert!(matches!(reply, Reply::Answered { keep_alive: false }));
}

/// Returns a number below `bound` (at least 1) from the mutation loop's generator.
fn below(random: &mut XorShift64, bound: usize) -> usize {
    random.below(bound.max(1) as u64) as usize
}

#[test]
fn mutated_request_streams_never_panic_and_always_get_http_answers() {
    let seed: &[u8] = b"GET /docs HTTP/1.1\r\nHost: h\r\n\r\nHEAD /big.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
        GET /docs/A%20long%20file%20name.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=1-2\r\n\r\nGET /%2e%2e/hello.txt HTTP/1.1\r\nHost: h\r\n\r\n";
    let interesting = b"\r\n :/%.\\\0\t2eEfF-=";
    let mut random = XorShift64::new(0x2545_f491_4f6c_dd1d);
    let settings = Settings {
        limits: Limits {
            max_target: 64,
            max_head: 256,
            max_headers: 4,
        },
        ..Settings::default()
    };
    let mut answered = 0;
    for _ in 0..3000 {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + below(&mut random, 8) {
            let at = below(&mut random, bytes.len() + 1);
            let byte = if below(&mut random, 2) == 0 {
                interesting[below(&mut random, interesting.len())]
            } else {
                random.next_u64() as u8
            };
            match below(&mut random, 3) {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        // Deliver in random pieces with random delays, some past the timeouts.
        let mut steps = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let take = 1 + below(&mut random, rest.len().min(40));
            steps.push((below(&mut random, 4000) as u64, &rest[..take]));
            rest = &rest[take..];
        }
        let mut share = Share::sample();
        let (_, sent) = run_with(&steps, &mut share, settings);
        if !sent.is_empty() {
            answered += 1;
            assert!(sent.starts_with(b"HTTP/1.1 "));
        }
    }
    assert!(answered > 2000, "{answered}");
}

/// The server over a real TCP socket of the host: the socket's bytes are the receive
/// buffer, writes go straight out.
struct HostConnection {
    stream: std::net::TcpStream,
    received: VecDeque<u8>,
    closed: bool,
    reset: bool,
}

impl Wire for HostConnection {
    fn receive_capacity(&self) -> usize {
        8192
    }
    fn peek(&mut self, buffer: &mut [u8]) -> usize {
        let count = buffer.len().min(self.received.len());
        for (slot, byte) in buffer.iter_mut().zip(&self.received) {
            *slot = *byte;
        }
        count
    }
    fn consume(&mut self, count: usize) {
        self.received.drain(..count.min(self.received.len()));
    }
    fn peer_closed(&self) -> bool {
        self.closed
    }
    fn can_send(&self) -> bool {
        !self.reset
    }
    fn room(&self) -> usize {
        1 << 30
    }
    fn send(&mut self, data: &[u8]) -> usize {
        match std::io::Write::write_all(&mut self.stream, data) {
            Ok(()) => data.len(),
            Err(_) => 0,
        }
    }
}

impl Transport for HostConnection {
    fn write_all(&mut self, data: &[u8]) -> Result<(), TransportError> {
        std::io::Write::write_all(&mut self.stream, data).map_err(|_| TransportError)
    }
}

/// Serves one host connection until it ends, the worker played in line.
fn serve_host(stream: std::net::TcpStream) {
    use std::io::Read;
    let start = std::time::Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let settings = Settings::default();
    let mut share = Share::sample();
    let mut server = Server::new(settings, clock, generation);
    assert!(server.attach(1 << 20, CACHEABLE as usize + 4096));
    let mut session = server.open(now());
    let mut connection = HostConnection {
        stream,
        received: VecDeque::new(),
        closed: false,
        reset: false,
    };
    let mut next = server.event(&mut session, &mut connection, Event::Opened, now());
    loop {
        next = match next {
            Next::Close => {
                let _ = connection.stream.shutdown(std::net::Shutdown::Write);
                return;
            }
            Next::Abort | Next::Write { .. } => return,
            Next::HandOff => {
                let head = session.head().unwrap();
                let reply = answer(head, &settings, &mut share, &mut connection, 7, clock());
                session.set_reply(reply);
                server.event(&mut session, &mut connection, Event::Resumed, now())
            }
            Next::Read { deadline_ms } => {
                let left = deadline_ms.map_or(1000, |deadline| deadline.saturating_sub(now()));
                if left == 0 {
                    server.event(&mut session, &mut connection, Event::TimedOut, now())
                } else {
                    let _ = connection
                        .stream
                        .set_read_timeout(Some(Duration::from_millis(left)));
                    let mut buffer = [0u8; 4096];
                    match connection.stream.read(&mut buffer) {
                        Ok(0) => connection.closed = true,
                        Ok(count) => connection.received.extend(&buffer[..count]),
                        Err(_) => {}
                    }
                    server.event(&mut session, &mut connection, Event::Ready, now())
                }
            }
        };
    }
}

/// Returns the port of a host server that serves `Share::sample()`, a thread per
/// connection.
fn host_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_host(stream));
        }
    });
    port
}

#[test]
fn curl_reads_files_ranges_and_conditionals_over_one_kept_alive_connection() {
    // curl is the external oracle: it must accept our responses, reuse the connection,
    // and save the bytes unchanged.
    let port = host_server();
    let dir = std::env::temp_dir().join(std::format!("manada-httpd-curl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let output = std::process::Command::new("curl")
        .args(["-sS", "-v", "--fail", "--http1.1", "--max-time", "20"])
        .arg(std::format!("http://127.0.0.1:{port}/big.bin"))
        .arg("-o")
        .arg(dir.join("big"))
        .arg(std::format!(
            "http://127.0.0.1:{port}/docs/A%20long%20file%20name.txt"
        ))
        .arg("-o")
        .arg(dir.join("long"))
        .arg(std::format!("http://127.0.0.1:{port}/docs"))
        .arg("-o")
        .arg(dir.join("redirect"))
        .output()
        .expect("curl must be installed for this test");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(std::fs::read(dir.join("big")).unwrap() == pattern(300 * 1024 + 7));
    assert_eq!(std::fs::read(dir.join("long")).unwrap(), b"long\n");
    assert!(log.contains("< HTTP/1.1 301 Moved Permanently"), "{log}");
    assert!(log.contains("< Location: /docs/"), "{log}");
    assert!(
        log.contains("Re-using existing connection") || log.contains("Reusing existing"),
        "{log}"
    );
    // A range through curl, of the big file and of a cached one.
    for (target, range, expected) in [
        (
            "/big.bin",
            "1000-1999",
            pattern(300 * 1024 + 7)[1000..2000].to_vec(),
        ),
        ("/hello.txt", "1-3", b"ell".to_vec()),
    ] {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "20", "-r", range])
            .arg(std::format!("http://127.0.0.1:{port}{target}"))
            .output()
            .unwrap();
        assert!(output.stdout == expected, "{target} {range}");
    }
    // A HEAD through curl: the headers only, and curl does not wait for a body.
    let output = std::process::Command::new("curl")
        .args(["-sS", "-I", "--fail", "--max-time", "20"])
        .arg(std::format!("http://127.0.0.1:{port}/hello.txt"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&output.stdout);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 6\r\n"), "{head}");
    // curl's own conditional request: -z with the file's date gives 304, nothing saved.
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(["-z", "Tue, 14 Nov 2023 22:13:20 GMT"])
        .arg(std::format!("http://127.0.0.1:{port}/hello.txt"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "304");
    // Traversal, the way a client that does not clean paths sends it.
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .arg(std::format!(
            "http://127.0.0.1:{port}/docs/../../etc/passwd"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "400");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn many_host_clients_at_once() {
    use std::io::{Read, Write};
    let port = host_server();
    let clients: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let mut all = Vec::new();
                for _ in 0..4 {
                    stream.write_all(GET_HELLO).unwrap();
                }
                stream
                    .write_all(b"GET /index.html HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                    .unwrap();
                stream.read_to_end(&mut all).unwrap();
                all
            })
        })
        .collect();
    for client in clients {
        let bytes = client.join().unwrap();
        let got = responses(&bytes, &[]);
        assert_eq!(got.len(), 5);
        assert!(got[..4].iter().all(|response| response.body == b"hello\n"));
        assert_eq!(got[4].body, b"<h1>home</h1>\n");
        assert_eq!(got[4].header("Connection"), Some("close"));
    }
}
