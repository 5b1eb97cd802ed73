//! Host tests of the connection loop against a scripted client and an in-memory share.

use super::*;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::string::{String, ToString};

/// A client that sends `(delay, bytes)` steps; empty bytes (or the end of the script)
/// close its half. The clock advances by the delays and by the timeouts that expire.
struct Client {
    steps: VecDeque<(Duration, Vec<u8>)>,
    clock: Rc<Cell<Duration>>,
    received: Vec<u8>,
    writes: Vec<usize>,
    timeouts: Vec<Duration>,
    finished: bool,
    fail_writes: bool,
}

impl Client {
    fn new(steps: &[(u64, &[u8])]) -> Client {
        Client {
            steps: steps
                .iter()
                .map(|(millis, bytes)| (Duration::from_millis(*millis), bytes.to_vec()))
                .collect(),
            clock: Rc::new(Cell::new(Duration::ZERO)),
            received: Vec::new(),
            writes: Vec::new(),
            timeouts: Vec::new(),
            finished: false,
            fail_writes: false,
        }
    }

    fn advance(&self, by: Duration) {
        self.clock.set(self.clock.get() + by);
    }
}

impl Transport for Client {
    fn read(&mut self, buffer: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        assert!(!self.finished, "read after finish");
        assert!(!buffer.is_empty());
        self.timeouts.push(timeout);
        let Some((delay, bytes)) = self.steps.pop_front() else {
            return Ok(0);
        };
        if delay > timeout {
            self.advance(timeout);
            self.steps.push_front((delay - timeout, bytes));
            return Err(TransportError::TimedOut);
        }
        self.advance(delay);
        let count = buffer.len().min(bytes.len());
        buffer[..count].copy_from_slice(&bytes[..count]);
        if count < bytes.len() {
            self.steps
                .push_front((Duration::ZERO, bytes[count..].to_vec()));
        }
        Ok(count)
    }

    fn write_all(&mut self, data: &[u8]) -> Result<(), TransportError> {
        assert!(!self.finished, "write after finish");
        if self.fail_writes {
            return Err(TransportError::Failed);
        }
        self.received.extend_from_slice(data);
        self.writes.push(data.len());
        Ok(())
    }

    fn finish(&mut self) {
        self.finished = true;
    }
}

/// An in-memory share; lookups ignore case, like FAT.
#[derive(Default)]
struct Share {
    files: BTreeMap<String, Vec<u8>>,
    folders: Vec<String>,
    /// Every buffer length a reader was asked to fill.
    reads: Rc<RefCell<Vec<usize>>>,
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
    reads: Rc<RefCell<Vec<usize>>>,
}

impl FileReader for Reader {
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, SiteError> {
        self.reads.borrow_mut().push(buffer.len());
        if self.fail_after.is_some_and(|limit| self.position >= limit) {
            return Err(SiteError::Failed);
        }
        let count = buffer.len().min(self.data.len() - self.position);
        buffer[..count].copy_from_slice(&self.data[self.position..][..count]);
        self.position += count;
        Ok(count)
    }
}

impl Site for Share {
    type Reader = Reader;

    fn entry(&mut self, path: &str) -> Result<Entry, SiteError> {
        if self.fail_lookups {
            return Err(SiteError::Failed);
        }
        let key = path.to_lowercase();
        if let Some(data) = self.files.get(&key) {
            Ok(Entry::File {
                size: data.len() as u64,
            })
        } else if self
            .folders
            .iter()
            .any(|folder| folder.to_lowercase() == key)
        {
            Ok(Entry::Folder)
        } else {
            Err(SiteError::NotFound)
        }
    }

    fn open(&mut self, path: &str) -> Result<Reader, SiteError> {
        let mut data = self
            .files
            .get(&path.to_lowercase())
            .cloned()
            .ok_or(SiteError::NotFound)?;
        if let Some(length) = self.shrink_to {
            data.truncate(length);
        }
        Ok(Reader {
            data,
            position: 0,
            fail_after: self.fail_after,
            reads: self.reads.clone(),
        })
    }
}

/// A response as the client sees it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Splits what the server sent into responses; `head_only[i]` says that response `i`
/// answers a HEAD request (no body). A short last body is kept as it is.
fn replies(mut bytes: &[u8], head_only: &[bool]) -> Vec<Reply> {
    let mut replies = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("a whole head");
        let head = std::str::from_utf8(&bytes[..end]).expect("an ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("a header");
                (name.to_string(), value.to_string())
            })
            .collect();
        bytes = &bytes[end + 4..];
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = reply.header("Content-Length").unwrap().parse().unwrap();
        if !head_only.get(replies.len()).copied().unwrap_or(false) {
            let taken = length.min(bytes.len());
            reply.body = bytes[..taken].to_vec();
            bytes = &bytes[taken..];
        }
        replies.push(reply);
    }
    replies
}

fn serve_with(client: &mut Client, share: &mut Share, settings: &Settings) -> Summary {
    let clock = client.clock.clone();
    let summary = serve(client, share, settings, &move || clock.get());
    assert!(client.finished, "the connection was not finished");
    summary
}

fn run(steps: &[(u64, &[u8])], share: &mut Share) -> (Summary, Client) {
    let mut client = Client::new(steps);
    let summary = serve_with(&mut client, share, &Settings::default());
    (summary, client)
}

const GET_HELLO: &[u8] = b"GET /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n";

#[test]
fn keep_alive_serves_requests_until_the_client_closes() {
    let mut share = Share::sample();
    let (summary, client) = run(
        &[
            (0, GET_HELLO),
            (100, b"GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n"),
        ],
        &mut share,
    );
    assert_eq!(
        summary,
        Summary {
            requests: 2,
            ending: Ending::PeerClosed
        }
    );
    let replies = replies(&client.received, &[]);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].status, 200);
    assert_eq!(replies[0].body, b"hello\n");
    assert_eq!(
        replies[0].header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(replies[0].header("Connection"), Some("keep-alive"));
    assert_eq!(replies[1].body, b"<h1>home</h1>\n");
    assert_eq!(
        replies[1].header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    // One write per small response: head and body together.
    assert_eq!(client.writes.len(), 2);
    assert_eq!(client.timeouts[0], Duration::from_secs(5));
}

#[test]
fn pipelined_and_byte_by_byte_requests() {
    let mut share = Share::sample();
    let mut pipelined = GET_HELLO.to_vec();
    pipelined.extend_from_slice(b"HEAD /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n");
    pipelined.extend_from_slice(GET_HELLO);
    let (summary, client) = run(&[(0, &pipelined)], &mut share);
    assert_eq!(summary.requests, 3);
    let got = replies(&client.received, &[false, true, false]);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].header("Content-Length"), Some("6"));
    assert!(got[1].body.is_empty());
    assert_eq!(got[2].body, b"hello\n");

    let steps: Vec<(u64, &[u8])> = GET_HELLO.chunks(1).map(|byte| (10, byte)).collect();
    let (summary, client) = run(&steps, &mut share);
    assert_eq!(summary.requests, 1);
    assert_eq!(replies(&client.received, &[])[0].body, b"hello\n");
}

#[test]
fn head_sends_the_length_and_no_body() {
    let mut share = Share::sample();
    let (summary, client) = run(
        &[(0, b"HEAD /big.bin HTTP/1.1\r\nHost: h\r\n\r\n")],
        &mut share,
    );
    assert_eq!(summary.requests, 1);
    let got = replies(&client.received, &[true]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("Content-Length"), Some("307207"));
    assert_eq!(
        got[0].header("Content-Type"),
        Some("application/octet-stream")
    );
    // HEAD never opens the file.
    assert!(share.reads.borrow().is_empty());
}

#[test]
fn big_files_go_out_in_chunks() {
    let mut share = Share::sample();
    let (summary, client) = run(
        &[(0, b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n")],
        &mut share,
    );
    assert_eq!(summary.requests, 1);
    let got = replies(&client.received, &[]);
    assert_eq!(got[0].body, pattern(300 * 1024 + 7));
    let chunk = Settings::default().chunk_size;
    assert!(share.reads.borrow().iter().all(|&asked| asked <= chunk));
    assert_eq!(share.reads.borrow().len(), 5);
    assert_eq!(client.writes.len(), 5);
    assert!(client.writes.iter().all(|&length| length <= chunk + 256));
}

#[test]
fn empty_files_have_a_zero_length() {
    let mut share = Share::sample();
    let (_, client) = run(
        &[(0, b"GET /EMPTY.BIN HTTP/1.1\r\nHost: h\r\n\r\n")],
        &mut share,
    );
    let got = replies(&client.received, &[]);
    assert_eq!(got[0].status, 200);
    assert_eq!(got[0].header("Content-Length"), Some("0"));
}

#[test]
fn folders_redirect_or_serve_their_index() {
    let mut share = Share::sample();
    let (summary, client) = run(
        &[(
            0,
            b"GET /docs?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /docs/ HTTP/1.1\r\nHost: h\r\n\r\n\
              GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /bare/ HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /hello.txt/ HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /docs/A%20Long%20File%20Name.txt HTTP/1.1\r\nHost: h\r\n\r\n",
        )],
        &mut share,
    );
    assert_eq!(summary.requests, 6);
    let got = replies(&client.received, &[]);
    let statuses: Vec<u16> = got.iter().map(|reply| reply.status).collect();
    assert_eq!(statuses, [301, 200, 200, 404, 404, 200]);
    assert_eq!(got[0].header("Location"), Some("/docs/?x=1"));
    assert_eq!(got[1].body, b"<p>docs</p>\n");
    assert_eq!(
        got[1].header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(got[2].body, b"<h1>home</h1>\n");
    assert_eq!(got[5].body, b"long\n");
    assert!(got
        .iter()
        .all(|reply| reply.header("Connection") == Some("keep-alive")));
}

#[test]
fn not_found_and_wrong_methods_keep_the_connection() {
    let mut share = Share::sample();
    let (summary, client) = run(
        &[(
            0,
            b"GET /nope.txt HTTP/1.1\r\nHost: h\r\n\r\nDELETE /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n\
              HEAD /nope HTTP/1.1\r\nHost: h\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n",
        )],
        &mut share,
    );
    assert_eq!(summary.requests, 4);
    let got = replies(&client.received, &[false, false, true, false]);
    assert_eq!(got[0].status, 404);
    assert!(String::from_utf8_lossy(&got[0].body).contains("404 Not Found"));
    assert_eq!(got[1].status, 405);
    assert_eq!(got[1].header("Allow"), Some("GET, HEAD"));
    assert_eq!(got[2].status, 404);
    assert!(got[2].body.is_empty());
    assert_eq!(got[3].body, b"hello\n");
}

#[test]
fn traversal_is_refused_and_closes() {
    for target in [
        "/../Cargo.toml",
        "/%2e%2e/x",
        "/docs/..%2f..%2fx",
        "/a\\..\\b",
        "/a%00b",
        "/%2E%2E",
    ] {
        let mut share = Share::sample();
        let text = std::format!(
            "GET {target} HTTP/1.1\r\nHost: h\r\n\r\n{}",
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        let (summary, client) = run(&[(0, text.as_bytes())], &mut share);
        assert_eq!(
            summary,
            Summary {
                requests: 1,
                ending: Ending::Closed(Status::BadRequest)
            },
            "{target}"
        );
        let got = replies(&client.received, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, 400);
        assert_eq!(got[0].header("Connection"), Some("close"));
    }
}

#[test]
fn bad_requests_get_their_status_and_close() {
    let long_target = std::format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(2000));
    let many_headers = std::format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", "X: y\r\n".repeat(65));
    let cases: [(&[u8], u16); 6] = [
        (b"GARBAGE\r\n\r\n", 400),
        (long_target.as_bytes(), 414),
        (many_headers.as_bytes(), 431),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            413,
        ),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
    ];
    for (text, status) in cases {
        let mut share = Share::sample();
        let (summary, client) = run(&[(0, text)], &mut share);
        assert_eq!(summary.requests, 0);
        assert_eq!(
            summary.ending,
            Ending::Refused(match status {
                400 => Status::BadRequest,
                413 => Status::ContentTooLarge,
                414 => Status::UriTooLong,
                431 => Status::HeadersTooLarge,
                _ => Status::VersionNotSupported,
            })
        );
        let got = replies(&client.received, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, status);
        assert_eq!(got[0].header("Connection"), Some("close"));
    }
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let mut share = Share::sample();
    let (summary, client) = run(
        &[(
            0,
            b"GET /hello.txt HTTP/1.0\r\n\r\nGET /hello.txt HTTP/1.0\r\n\r\n",
        )],
        &mut share,
    );
    assert_eq!(
        summary,
        Summary {
            requests: 1,
            ending: Ending::Closed(Status::Ok)
        }
    );
    assert_eq!(
        replies(&client.received, &[])[0].header("Connection"),
        Some("close")
    );

    let (summary, client) = run(
        &[(
            0,
            b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        )],
        &mut share,
    );
    assert_eq!(
        summary,
        Summary {
            requests: 2,
            ending: Ending::Closed(Status::Ok)
        }
    );
    let got = replies(&client.received, &[]);
    assert_eq!(got[0].header("Connection"), Some("keep-alive"));
    assert_eq!(got[0].header("Keep-Alive"), Some("timeout=5"));
    assert_eq!(got[1].header("Connection"), Some("close"));
}

#[test]
fn idle_connections_are_closed_after_the_timeout() {
    let mut share = Share::sample();
    let (summary, client) = run(&[(60_000, GET_HELLO)], &mut share);
    assert_eq!(
        summary,
        Summary {
            requests: 0,
            ending: Ending::IdleTimeout
        }
    );
    assert!(client.received.is_empty());
    assert_eq!(client.clock.get(), Duration::from_secs(5));

    // Also between requests, with a configured timeout.
    let settings = Settings {
        idle_timeout: Duration::from_millis(700),
        ..Settings::default()
    };
    let mut client = Client::new(&[(0, GET_HELLO), (600, GET_HELLO), (800, GET_HELLO)]);
    let summary = serve_with(&mut client, &mut share, &settings);
    assert_eq!(
        summary,
        Summary {
            requests: 2,
            ending: Ending::IdleTimeout
        }
    );
    assert_eq!(
        replies(&client.received, &[])[0].header("Keep-Alive"),
        Some("timeout=1")
    );
}

#[test]
fn slow_heads_time_out_with_408() {
    let mut share = Share::sample();
    // One byte every 3 s: each read is within the idle timeout, the head is not.
    let steps: Vec<(u64, &[u8])> = GET_HELLO.chunks(1).map(|byte| (3000, byte)).collect();
    let (summary, client) = run(&steps, &mut share);
    assert_eq!(
        summary,
        Summary {
            requests: 0,
            ending: Ending::HeadTimeout
        }
    );
    assert_eq!(replies(&client.received, &[])[0].status, 408);
    // The head timeout counts from the first byte (which came at 3 s).
    assert_eq!(client.clock.get(), Duration::from_secs(13));
}

#[test]
fn file_failures() {
    // Failing before anything was sent: a proper 500.
    let mut share = Share::sample();
    share.fail_after = Some(0);
    let (summary, client) = run(&[(0, GET_HELLO)], &mut share);
    assert_eq!(summary.ending, Ending::Closed(Status::InternalServerError));
    assert_eq!(replies(&client.received, &[])[0].status, 500);

    // Failing after the first chunk went out: the connection is cut short.
    let mut share = Share::sample();
    share.fail_after = Some(64 * 1024);
    let (summary, client) = run(
        &[(0, b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n")],
        &mut share,
    );
    assert_eq!(summary.ending, Ending::FileFailed);
    let got = replies(&client.received, &[]);
    assert_eq!(got[0].status, 200);
    assert_eq!(got[0].body.len(), 64 * 1024);

    // Shorter than the lookup said, after the first chunk: cut short too.
    let mut share = Share::sample();
    share.shrink_to = Some(100_000);
    let (summary, client) = run(
        &[(0, b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n")],
        &mut share,
    );
    assert_eq!(summary.ending, Ending::FileFailed);
    assert_eq!(replies(&client.received, &[])[0].body.len(), 100_000);

    // Shorter from the start: a 500.
    let mut share = Share::sample();
    share.shrink_to = Some(0);
    let (summary, _) = run(&[(0, GET_HELLO)], &mut share);
    assert_eq!(summary.ending, Ending::Closed(Status::InternalServerError));

    // The share failing on lookup.
    let mut share = Share::sample();
    share.fail_lookups = true;
    let (summary, client) = run(&[(0, GET_HELLO)], &mut share);
    assert_eq!(summary.ending, Ending::Closed(Status::InternalServerError));
    assert_eq!(replies(&client.received, &[])[0].status, 500);
}

#[test]
fn a_failing_transport_ends_the_connection() {
    let mut share = Share::sample();
    let mut client = Client::new(&[(0, GET_HELLO), (0, GET_HELLO)]);
    client.fail_writes = true;
    let summary = serve_with(&mut client, &mut share, &Settings::default());
    assert_eq!(
        summary,
        Summary {
            requests: 1,
            ending: Ending::TransportFailed
        }
    );
}

/// The generator of the mutation loop.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

#[test]
fn mutated_request_streams_never_panic_and_always_get_http_answers() {
    let seed: &[u8] = b"GET /docs HTTP/1.1\r\nHost: h\r\n\r\nHEAD /big.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
        GET /docs/A%20long%20file%20name.txt HTTP/1.1\r\nHost: h\r\n\r\nGET /%2e%2e/hello.txt HTTP/1.1\r\nHost: h\r\n\r\n";
    let interesting = b"\r\n :/%.\\\0\t2eEfF";
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let settings = Settings {
        limits: Limits {
            max_target: 64,
            max_head: 256,
            max_headers: 4,
        },
        read_size: 16,
        chunk_size: 4096,
        ..Settings::default()
    };
    let mut answered = 0;
    for _ in 0..3000 {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + random.below(8) {
            let at = random.below(bytes.len() + 1);
            let byte = if random.below(2) == 0 {
                interesting[random.below(interesting.len())]
            } else {
                random.next() as u8
            };
            match random.below(3) {
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
            let take = 1 + random.below(rest.len().min(40));
            steps.push((random.below(4000) as u64, &rest[..take]));
            rest = &rest[take..];
        }
        let mut share = Share::sample();
        let mut client = Client::new(&steps);
        let summary = serve_with(&mut client, &mut share, &settings);
        if !client.received.is_empty() {
            answered += 1;
            assert!(client.received.starts_with(b"HTTP/1.1 "));
        }
        // Every request answered has its head (the sample files never hold one).
        let heads = client
            .received
            .windows(24)
            .filter(|window| window == b"\r\nServer: manada-httpd\r\n")
            .count();
        assert!(heads >= summary.requests as usize, "{summary:?}");
        assert!(summary.requests <= 4);
    }
    assert!(answered > 2000, "{answered}");
}

/// The connection loop over real TCP sockets of the host.
struct HostSocket(std::net::TcpStream);

impl Transport for HostSocket {
    fn read(&mut self, buffer: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        use std::io::{ErrorKind, Read};
        self.0
            .set_read_timeout(Some(timeout))
            .map_err(|_| TransportError::Failed)?;
        self.0.read(buffer).map_err(|error| match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => TransportError::TimedOut,
            _ => TransportError::Failed,
        })
    }

    fn write_all(&mut self, data: &[u8]) -> Result<(), TransportError> {
        std::io::Write::write_all(&mut self.0, data).map_err(|_| TransportError::Failed)
    }

    fn finish(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }
}

/// Returns the port of a host server that serves `Share::sample()` with the connection
/// loop, a thread per connection.
fn host_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                let mut socket = HostSocket(stream);
                serve(
                    &mut socket,
                    &mut Share::sample(),
                    &Settings::default(),
                    &move || start.elapsed(),
                );
            });
        }
    });
    port
}

#[test]
fn curl_reads_files_over_one_kept_alive_connection() {
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
    assert_eq!(
        std::fs::read(dir.join("big")).unwrap(),
        pattern(300 * 1024 + 7)
    );
    assert_eq!(std::fs::read(dir.join("long")).unwrap(), b"long\n");
    assert!(log.contains("< HTTP/1.1 301 Moved Permanently"), "{log}");
    assert!(log.contains("< Location: /docs/"), "{log}");
    assert!(
        log.contains("Re-using existing connection") || log.contains("Reusing existing"),
        "{log}"
    );
    // A HEAD through curl: the headers only, and curl does not wait for a body.
    let output = std::process::Command::new("curl")
        .args(["-sS", "-I", "--fail", "--max-time", "20"])
        .arg(std::format!("http://127.0.0.1:{port}/hello.txt"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&output.stdout);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 6\r\n"), "{head}");
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
        let got = replies(&bytes, &[]);
        assert_eq!(got.len(), 5);
        assert!(got[..4].iter().all(|reply| reply.body == b"hello\n"));
        assert_eq!(got[4].body, b"<h1>home</h1>\n");
        assert_eq!(got[4].header("Connection"), Some("close"));
    }
}
