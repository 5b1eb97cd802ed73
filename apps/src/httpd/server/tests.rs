//! The net-core server over a scripted connection: requests in, responses out, what it
//! waits for, and the worker's part played by the test.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;

use percore::random::XorShift64;

use super::*;
use crate::httpd::cache::{self, Cached};
use crate::httpd::validators::{EntityTag, Validators};

/// A connection: what the client sent and the server has not taken, and what the
/// server sent, with a send buffer of limited room.
struct FakeWire {
    received: VecDeque<u8>,
    receive_capacity: usize,
    sent: Vec<u8>,
    room: usize,
    closed: bool,
    reset: bool,
}

impl FakeWire {
    fn new() -> FakeWire {
        FakeWire {
            received: VecDeque::new(),
            receive_capacity: 8192,
            sent: Vec::new(),
            room: 16 * 1024,
            closed: false,
            reset: false,
        }
    }

    fn client_sends(&mut self, bytes: &[u8]) {
        self.received.extend(bytes);
    }

    /// Takes what the server sent, as the client reading it (frees the room).
    fn take_sent(&mut self) -> Vec<u8> {
        self.room += self.sent.len();
        core::mem::take(&mut self.sent)
    }
}

impl Wire for FakeWire {
    fn receive_capacity(&self) -> usize {
        self.receive_capacity
    }
    fn peek(&mut self, buffer: &mut [u8]) -> usize {
        let count = buffer.len().min(self.received.len());
        for (slot, byte) in buffer.iter_mut().zip(self.received.iter()) {
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
        if self.reset {
            0
        } else {
            self.room
        }
    }
    fn send(&mut self, data: &[u8]) -> usize {
        let count = data.len().min(self.room);
        self.sent.extend_from_slice(&data[..count]);
        self.room -= count;
        count
    }
}

std::thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(1) };
}

fn generation() -> u64 {
    GENERATION.with(Cell::get)
}

fn clock() -> Option<u64> {
    Some(784_111_777)
}

fn server() -> Server {
    let mut server = Server::new(Settings::default(), clock, generation);
    assert!(server.attach(1 << 20, 256 * 1024));
    server
}

/// The worker's part: what a lookup of `target` finds, as a cache entry.
fn found(target: &str, body: &[u8]) -> Reply {
    let validators = Validators {
        etag: EntityTag::of_content(body),
        last_modified: Some(784_000_000),
    };
    let content_type = "text/plain; charset=utf-8";
    Reply::Found(CachedFile {
        key: cache::key(target).unwrap().into(),
        generation: generation(),
        cached: Cached::File {
            body: body.to_vec(),
            head: cached_head(content_type, body.len() as u64, &validators).unwrap(),
            content_type,
            validators,
        },
    })
}

/// A response as the client parses it.
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

/// Splits `bytes` into responses (HEAD and 304 answers have no body; `head_only`
/// says which, in order).
fn responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut index = 0;
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("a whole head")
            + 4;
        let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
        let status: u16 = head[9..12].parse().unwrap();
        let mut response = Response {
            status,
            head,
            body: Vec::new(),
        };
        let length: usize = response
            .header("Content-Length")
            .map_or(0, |value| value.parse().unwrap());
        let body_length = if head_only.get(index).copied().unwrap_or(false) || status == 304 {
            0
        } else {
            length
        };
        response.body = bytes[end..end + body_length].to_vec();
        bytes = &bytes[end + body_length..];
        out.push(response);
        index += 1;
    }
    out
}

fn one(wire: &mut FakeWire) -> Response {
    let mut all = responses(&wire.take_sent(), &[false]);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

const GET: &[u8] = b"GET /page.txt HTTP/1.1\r\nHost: h\r\n\r\n";
const BODY: &[u8] = b"the page's bytes, not many of them\n";

/// Serves `/page.txt` once through the worker path, so it is cached.
fn warmed() -> (Server, Session, FakeWire) {
    let mut server = server();
    let mut session = server.open(0);
    let mut wire = FakeWire::new();
    wire.client_sends(GET);
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Opened, 0),
        Next::HandOff
    );
    assert_eq!(session.head().unwrap(), GET);
    assert!(wire.received.is_empty(), "the request was taken");
    session.set_reply(found("/page.txt", BODY));
    let next = server.event(&mut session, &mut wire, Event::Resumed, 1);
    assert_eq!(
        next,
        Next::Read {
            deadline_ms: Some(5_001)
        }
    );
    let response = one(&mut wire);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, BODY);
    (server, session, wire)
}

#[test]
fn a_miss_goes_to_a_worker_and_the_next_request_is_answered_from_the_cache() {
    let (mut server, mut session, mut wire) = warmed();
    wire.client_sends(GET);
    let next = server.event(&mut session, &mut wire, Event::Ready, 10);
    assert_eq!(
        next,
        Next::Read {
            deadline_ms: Some(5_010)
        }
    );
    let response = one(&mut wire);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, BODY);
    assert_eq!(response.header("Content-Length"), Some("35"));
    assert_eq!(response.header("Connection"), Some("keep-alive"));
    assert_eq!(response.header("Keep-Alive"), Some("timeout=5"));
    assert_eq!(response.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(
        response.header("Date"),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    assert_eq!(
        response.header("Last-Modified"),
        Some("Sat, 05 Nov 1994 01:46:40 GMT")
    );
    let etag = EntityTag::of_content(BODY);
    assert_eq!(
        response.header("ETag").map(str::as_bytes),
        Some(etag.as_bytes())
    );
    // The same head as the worker path gave, but for the date.
    assert!(response.head.ends_with("\r\n\r\n"));
}

#[test]
fn head_conditional_and_range_requests_from_the_cache() {
    let (mut server, mut session, mut wire) = warmed();
    let etag = String::from_utf8(EntityTag::of_content(BODY).as_bytes().to_vec()).unwrap();
    let requests = [
        String::from("HEAD /page.txt HTTP/1.1\r\nHost: h\r\n\r\n"),
        alloc::format!("GET /page.txt HTTP/1.1\r\nHost: h\r\nIf-None-Match: {etag}\r\n\r\n"),
        String::from(
            "GET /page.txt HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Sat, 05 Nov 1994 01:46:40 GMT\r\n\r\n",
        ),
        String::from("GET /page.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=4-7\r\n\r\n"),
        String::from("GET /page.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=-3\r\n\r\n"),
        String::from("GET /page.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=500-\r\n\r\n"),
        String::from(
            "GET /page.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=0-0\r\nIf-Range: \"old\"\r\n\r\n",
        ),
    ];
    for request in &requests {
        wire.client_sends(request.as_bytes());
    }
    let next = server.event(&mut session, &mut wire, Event::Ready, 10);
    assert!(matches!(next, Next::Read { .. }), "{next:?}");
    let all = responses(&wire.take_sent(), &[true]);
    let statuses: Vec<u16> = all.iter().map(|response| response.status).collect();
    assert_eq!(statuses, [200, 304, 304, 206, 206, 416, 200]);
    assert!(all[0].body.is_empty());
    assert_eq!(all[0].header("Content-Length"), Some("35"));
    assert_eq!(all[1].header("ETag"), Some(etag.as_str()));
    assert_eq!(all[1].header("Content-Length"), None);
    assert_eq!(all[3].body, &BODY[4..8]);
    assert_eq!(all[3].header("Content-Range"), Some("bytes 4-7/35"));
    assert_eq!(all[4].body, &BODY[32..]);
    assert_eq!(all[5].header("Content-Range"), Some("bytes */35"));
    assert_eq!(all[5].header("Content-Length"), Some("0"));
    assert_eq!(all[6].body, BODY);
}

#[test]
fn a_change_of_the_volume_sends_the_next_request_to_a_worker_again() {
    let (mut server, mut session, mut wire) = warmed();
    GENERATION.with(|generation| generation.set(2));
    wire.client_sends(GET);
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 10),
        Next::HandOff
    );
    GENERATION.with(|generation| generation.set(1));
}

#[test]
fn errors_and_methods_are_answered_on_the_net_core() {
    let mut server = server();
    let mut session = server.open(0);
    let mut wire = FakeWire::new();
    wire.client_sends(b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n");
    let next = server.event(&mut session, &mut wire, Event::Opened, 0);
    assert!(matches!(next, Next::Read { .. }));
    let response = one(&mut wire);
    assert_eq!(response.status, 405);
    assert_eq!(response.header("Allow"), Some("GET, HEAD"));

    wire.client_sends(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 1),
        Next::Close
    );
    let response = one(&mut wire);
    assert_eq!(response.status, 413);
    assert_eq!(response.header("Connection"), Some("close"));
    // The body it refused is not left unread: a close with unread bytes is a reset,
    // which would destroy the 413 before the client read it.
    assert!(wire.received.is_empty());

    // A malformed head gets its 400, and nothing it sent is left unread either.
    let mut wire = FakeWire::new();
    let mut session = server.open(0);
    wire.client_sends(b"\x00\xff garbage\r\n\r\nmore bytes");
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Opened, 0),
        Next::Close
    );
    assert_eq!(one(&mut wire).status, 400);
    assert!(wire.received.is_empty());

    // A head that cannot fit the receive buffer.
    let mut wire = FakeWire::new();
    wire.receive_capacity = 64;
    wire.client_sends(&[b'G'; 20]);
    wire.client_sends(b"ET /");
    wire.client_sends(&[b'a'; 40]);
    let mut session = server.open(0);
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Opened, 0),
        Next::Close
    );
    assert_eq!(one(&mut wire).status, 431);
}

#[test]
fn slow_heads_and_idle_connections_get_their_timeouts() {
    let mut server = server();
    let mut session = server.open(100);
    let mut wire = FakeWire::new();
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Opened, 100),
        Next::Read {
            deadline_ms: Some(5_100)
        }
    );
    wire.client_sends(b"GET /a HT");
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 200),
        Next::Read {
            deadline_ms: Some(10_200)
        }
    );
    wire.client_sends(b"TP/1.1\r\n");
    // The head deadline counts from the first byte, not from the last.
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 3_000),
        Next::Read {
            deadline_ms: Some(10_200)
        }
    );
    assert_eq!(
        server.event(&mut session, &mut wire, Event::TimedOut, 10_200),
        Next::Close
    );
    assert_eq!(one(&mut wire).status, 408);

    // Idle: closed without a word.
    let mut session = server.open(0);
    let mut wire = FakeWire::new();
    server.event(&mut session, &mut wire, Event::Opened, 0);
    assert_eq!(
        server.event(&mut session, &mut wire, Event::TimedOut, 5_000),
        Next::Close
    );
    assert!(wire.sent.is_empty());

    // The peer closing ends the connection.
    let mut session = server.open(0);
    let mut wire = FakeWire::new();
    wire.closed = true;
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Opened, 0),
        Next::Close
    );
}

#[test]
fn a_reset_connection_ends_instead_of_waiting_for_room() {
    let (mut server, mut session, mut wire) = warmed();
    // The client went away without reading: the connection was reset.
    wire.closed = true;
    wire.reset = true;
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 10),
        Next::Close
    );
    // Also with a request still in the buffer.
    let (mut server, mut session, mut wire) = warmed();
    wire.client_sends(GET);
    wire.reset = true;
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 10),
        Next::Close
    );
    assert!(wire.sent.is_empty());
}

#[test]
fn a_body_bigger_than_the_send_room_goes_out_as_room_comes() {
    let mut server = server();
    let mut session = server.open(0);
    let mut wire = FakeWire::new();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    wire.client_sends(b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Opened, 0),
        Next::HandOff
    );
    session.set_reply(found("/big.bin", &big));
    let mut next = server.event(&mut session, &mut wire, Event::Resumed, 1);
    let mut received = Vec::new();
    let mut rounds = 0;
    while let Next::Write { deadline_ms } = next {
        assert_eq!(deadline_ms, Some(rounds + 1 + 60_000));
        received.extend(wire.take_sent());
        rounds += 1;
        next = server.event(&mut session, &mut wire, Event::Ready, rounds + 1);
    }
    received.extend(wire.take_sent());
    assert!(rounds >= 5, "{rounds} rounds");
    assert!(matches!(next, Next::Read { .. }));
    let response = responses(&received, &[false]).remove(0);
    assert_eq!(response.status, 200);
    assert!(response.body == big, "the body arrived whole and in order");
    // A client that never takes the rest is cut at the deadline.
    wire.client_sends(b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(matches!(
        server.event(&mut session, &mut wire, Event::Ready, 100),
        Next::Write { .. }
    ));
    assert_eq!(
        server.event(&mut session, &mut wire, Event::TimedOut, 60_200),
        Next::Abort
    );
}

#[test]
fn pipelined_and_closing_requests() {
    let (mut server, mut session, mut wire) = warmed();
    wire.client_sends(GET);
    wire.client_sends(GET);
    wire.client_sends(b"GET /page.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    wire.client_sends(GET);
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 10),
        Next::Close
    );
    let all = responses(&wire.take_sent(), &[]);
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].header("Connection"), Some("close"));
    assert!(all.iter().all(|response| response.body == BODY));

    let (mut server, mut session, mut wire) = warmed();
    wire.client_sends(b"GET /page.txt HTTP/1.0\r\n\r\n");
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 10),
        Next::Close
    );
    assert_eq!(one(&mut wire).body, BODY);
}

#[test]
fn worker_pages_and_answers_come_back() {
    let mut server = server();
    let mut session = server.open(0);
    let mut wire = FakeWire::new();
    wire.client_sends(b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Opened, 0),
        Next::HandOff
    );
    session.set_reply(Reply::Page(Status::NotFound, None));
    assert!(matches!(
        server.event(&mut session, &mut wire, Event::Resumed, 1),
        Next::Read { .. }
    ));
    assert_eq!(one(&mut wire).status, 404);

    wire.client_sends(b"GET /docs HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 2),
        Next::HandOff
    );
    session.set_reply(Reply::Page(Status::MovedPermanently, Some("/docs/".into())));
    server.event(&mut session, &mut wire, Event::Resumed, 3);
    let response = one(&mut wire);
    assert_eq!(response.status, 301);
    assert_eq!(response.header("Location"), Some("/docs/"));

    wire.client_sends(b"GET /huge.iso HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Ready, 4),
        Next::HandOff
    );
    session.set_reply(Reply::Answered { keep_alive: false });
    assert_eq!(
        server.event(&mut session, &mut wire, Event::Resumed, 5),
        Next::Close
    );
}

#[test]
fn a_file_the_cache_cannot_keep_is_still_answered() {
    let mut server = Server::new(Settings::default(), clock, generation);
    assert!(server.attach(100, 100));
    let mut session = server.open(0);
    let mut wire = FakeWire::new();
    for round in 0..2 {
        wire.client_sends(GET);
        assert_eq!(
            server.event(&mut session, &mut wire, Event::Ready, round),
            Next::HandOff,
            "never cached"
        );
        session.set_reply(found("/page.txt", BODY));
        server.event(&mut session, &mut wire, Event::Resumed, round);
        assert_eq!(one(&mut wire).body, BODY);
    }
}

#[test]
fn random_traffic_never_panics_and_every_answer_is_http() {
    let (mut server, _, _) = warmed();
    let pieces: &[&[u8]] = &[
        GET,
        b"HEAD /page.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=",
        b"5-1\r\n\r\n",
        b"GET /page.txt HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\n\r\n",
        b"\r\n",
        b"GET /p",
        b"\x00\xff",
        b"POST / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/3.0\r\n\r\n",
    ];
    let mut random = XorShift64::new(77);
    for round in 0..2_000u64 {
        let mut session = server.open(0);
        let mut wire = FakeWire::new();
        wire.room = 1 + (random.next_u64() % 20_000) as usize;
        for _ in 0..random.next_u64() % 6 {
            wire.client_sends(pieces[(random.next_u64() % pieces.len() as u64) as usize]);
        }
        let mut next = server.event(&mut session, &mut wire, Event::Opened, round);
        for step in 0..4 {
            next = match next {
                Next::HandOff => {
                    session.set_reply(Reply::Page(Status::NotFound, None));
                    server.event(&mut session, &mut wire, Event::Resumed, round + step)
                }
                Next::Write { .. } => {
                    wire.take_sent();
                    server.event(&mut session, &mut wire, Event::Ready, round + step)
                }
                other => other,
            };
        }
        let sent = wire.take_sent();
        assert!(sent.is_empty() || sent.starts_with(b"HTTP/1.1 "), "{round}");
    }
}
