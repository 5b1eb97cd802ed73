//! The server's part on the net core: every connection's life between requests, and
//! the answers that need no other core. It reads request heads straight from the
//! connection's receive buffer, answers errors, redirects and cached files at once
//! (200, 206, 304, 416, HEAD), and hands a connection to a worker thread only when the
//! file system must be asked (a miss), then takes the worker's answer back.
//!
//! Generic over [`Wire`] (what the net core's `Io` offers), so the host tests drive
//! it with a scripted connection. It never blocks and never allocates through an
//! infallible path: its buffers are reserved when it attaches, a handed-off request's
//! copy is allocated fallibly (a 503 when memory is short).

mod answer;
mod handoff;

use alloc::vec::Vec;
use core::time::Duration;

use net::{Event, Next};

use super::cache::{Cache, CachedFile, EntryRef};
use super::request::{self, Limits, Parse};
use super::response::{Status, MAX_ERROR_BODY, MAX_HEAD};

pub use answer::cached_head;

/// A connection as the server sees it: its receive and send buffers.
pub trait Wire {
    /// Returns the size of the receive buffer.
    fn receive_capacity(&self) -> usize;
    /// Copies received bytes into `buffer` without taking them; returns how many.
    fn peek(&mut self, buffer: &mut [u8]) -> usize;
    /// Drops the first `count` received bytes.
    fn consume(&mut self, count: usize);
    /// Returns true when the peer will send nothing more.
    fn peer_closed(&self) -> bool;
    /// Returns true while the connection can still send (not reset, sending half open).
    fn can_send(&self) -> bool;
    /// Returns how many bytes may be queued for sending now.
    fn room(&self) -> usize;
    /// Queues as much of `data` as fits; returns how many bytes were taken.
    fn send(&mut self, data: &[u8]) -> usize;
}

impl Wire for net::Io<'_> {
    fn receive_capacity(&self) -> usize {
        net::Io::receive_capacity(self)
    }
    fn peek(&mut self, buffer: &mut [u8]) -> usize {
        net::Io::peek(self, buffer)
    }
    fn consume(&mut self, count: usize) {
        net::Io::consume(self, count);
    }
    fn peer_closed(&self) -> bool {
        net::Io::peer_closed(self)
    }
    fn can_send(&self) -> bool {
        net::Io::can_send(self)
    }
    fn room(&self) -> usize {
        net::Io::room(self)
    }
    fn send(&mut self, data: &[u8]) -> usize {
        net::Io::send(self, data)
    }
}

/// How connections are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Request head limits.
    pub limits: Limits,
    /// How long an open connection may wait for the first byte of its next request.
    pub idle_timeout: Duration,
    /// How long a request head may take from its first byte to its end.
    pub head_timeout: Duration,
    /// How long a response may wait for the client to take more of it.
    pub send_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(5),
            head_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// What a worker found for a handed-off request.
#[derive(Debug)]
pub enum Reply {
    /// The target's answer, to keep in the cache and send.
    Found(CachedFile),
    /// A page to send (404, 400, 500, ...), and the redirect's Location if any.
    Page(Status, Option<alloc::string::String>),
    /// The worker sent the whole response itself (a big file); whether the connection
    /// stays open.
    Answered {
        /// The connection stays open for the next request.
        keep_alive: bool,
    },
}

/// A request handed to a worker, and the worker's reply.
#[derive(Debug)]
pub struct Handoff {
    /// The request head, as received.
    pub head: Vec<u8>,
    /// What the worker found; `None` until it did.
    pub reply: Option<Reply>,
}

/// Where the bytes of a response being sent come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A cache entry (held while sending).
    Cache(EntryRef),
    /// The file kept in the session (one the cache had no room for).
    Session,
}

/// A response whose body did not fit the send buffer at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sending {
    source: Source,
    /// The next byte of the body to send, and the end (exclusive).
    offset: usize,
    end: usize,
    keep_alive: bool,
}

/// One connection's state on the net core.
#[derive(Debug)]
pub struct Session {
    /// When the last response ended (or the connection opened).
    idle_since_ms: u64,
    /// When the first byte of the head being received came.
    head_started_ms: Option<u64>,
    sending: Option<Sending>,
    /// The request a worker has.
    handoff: Option<Handoff>,
    /// A file answered from the session because the cache could not keep it.
    own: Option<CachedFile>,
}

impl Session {
    /// Returns the request head handed off with the connection, for the worker.
    pub fn head(&self) -> Option<&[u8]> {
        self.handoff.as_ref().map(|handoff| handoff.head.as_slice())
    }

    /// Records the worker's reply; the server sends it when the connection is back.
    pub fn set_reply(&mut self, reply: Reply) {
        if let Some(handoff) = self.handoff.as_mut() {
            handoff.reply = Some(reply);
        }
    }
}

/// What answering a request did.
enum Outcome {
    /// Answered whole; the connection stays open or not.
    Done { keep_alive: bool },
    /// The body is still going out.
    Sending,
    /// A worker must answer it.
    HandOff,
}

/// The server on the net core: settings, the cache, buffers for heads.
pub struct Server {
    settings: Settings,
    cache: Cache,
    /// Received head bytes, peeked from the connection.
    scratch: Vec<u8>,
    /// A response head being written.
    head: Vec<u8>,
    /// The connection lines that end every kept-alive head, and every closing one.
    keep_alive_end: &'static [u8],
    close_end: &'static [u8],
    /// Seconds since the Unix epoch, when there is a clock.
    clock: fn() -> Option<u64>,
    /// The fs volume's generation now.
    generation: fn() -> u64,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("settings", &self.settings)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Bytes of send room the server wants before it starts a response: a head and an
/// error page always go whole.
const START_ROOM: usize = MAX_HEAD + MAX_ERROR_BODY;

/// Returns the connection lines that end a head kept alive for `idle`: the server's
/// idle timeouts are whole seconds from 1 to 3600, so a few fixed texts do.
fn keep_alive_end(idle: Duration) -> &'static [u8] {
    match idle.as_secs() {
        0 | 1 => b"Connection: keep-alive\r\nKeep-Alive: timeout=1\r\n\r\n",
        2 => b"Connection: keep-alive\r\nKeep-Alive: timeout=2\r\n\r\n",
        3..=5 => b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
        6..=30 => b"Connection: keep-alive\r\nKeep-Alive: timeout=30\r\n\r\n",
        _ => b"Connection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n",
    }
}

impl Server {
    /// Returns a server with `settings` that reads the time from `clock` and the fs
    /// volume's generation from `generation`. It holds no memory until
    /// [`Server::attach`].
    pub fn new(settings: Settings, clock: fn() -> Option<u64>, generation: fn() -> u64) -> Server {
        Server {
            settings,
            cache: Cache::new(),
            scratch: Vec::new(),
            head: Vec::new(),
            keep_alive_end: keep_alive_end(settings.idle_timeout),
            close_end: b"Connection: close\r\n\r\n",
            clock,
            generation,
        }
    }

    /// Reserves the server's buffers and a cache of `cache_bytes` (entries up to
    /// `max_entry` bytes each); `false` when the buffers do not fit (the cache is
    /// optional and may stay empty).
    pub fn attach(&mut self, cache_bytes: usize, max_entry: usize) -> bool {
        let head = self.settings.limits.max_head;
        if self.scratch.try_reserve_exact(head).is_err()
            || self.head.try_reserve_exact(MAX_HEAD).is_err()
        {
            return false;
        }
        self.scratch.resize(head, 0);
        self.head.resize(MAX_HEAD, 0);
        let entries = (cache_bytes / 4096).clamp(16, 4096);
        self.cache.reserve(entries, cache_bytes, max_entry);
        true
    }

    /// Returns the state of a connection opened at `now_ms`.
    pub fn open(&self, now_ms: u64) -> Session {
        Session {
            idle_since_ms: now_ms,
            head_started_ms: None,
            sending: None,
            handoff: None,
            own: None,
        }
    }

    fn ms(duration: Duration) -> u64 {
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
    }

    /// Handles `event` on `session` over `wire` at `now_ms`; returns what the
    /// connection waits for next.
    pub fn event<W: Wire>(
        &mut self,
        session: &mut Session,
        wire: &mut W,
        event: Event,
        now_ms: u64,
    ) -> Next {
        let next = self.handle(session, wire, event, now_ms);
        if next == Next::Close {
            // The response must reach the client: a close with received bytes unread is a
            // reset, which can destroy it (a 400 for a malformed head, a 413, the answer
            // before pipelined requests after `Connection: close`). What the client sent
            // beyond the answered request is dropped, so the close is a FIN after it.
            wire.consume(usize::MAX);
        }
        next
    }

    fn handle<W: Wire>(
        &mut self,
        session: &mut Session,
        wire: &mut W,
        event: Event,
        now_ms: u64,
    ) -> Next {
        match event {
            Event::TimedOut => return self.timed_out(session, wire),
            Event::Resumed => {
                if let Some(next) = self.resumed(session, wire, now_ms) {
                    return next;
                }
            }
            Event::Opened | Event::Ready => {}
        }
        if let Some(next) = self.go_on_sending(session, wire, now_ms) {
            return next;
        }
        self.serve_requests(session, wire, now_ms)
    }

    /// The deadline passed: a response the client does not take, a head that does not
    /// come, or an idle connection.
    fn timed_out<W: Wire>(&mut self, session: &mut Session, wire: &mut W) -> Next {
        if let Some(sending) = session.sending.take() {
            self.stop_sending(session, sending);
            return Next::Abort;
        }
        if session.head_started_ms.is_some() {
            self.send_page(session, wire, Status::RequestTimeout, None, false, false);
        }
        Next::Close
    }

    /// Reads and answers the requests that are in, until one must wait.
    fn serve_requests<W: Wire>(
        &mut self,
        session: &mut Session,
        wire: &mut W,
        now_ms: u64,
    ) -> Next {
        loop {
            if !wire.can_send() {
                // Reset, or our half closed: nothing can be answered any more.
                return Next::Close;
            }
            if wire.room() < START_ROOM {
                return Next::Write {
                    deadline_ms: Some(now_ms.saturating_add(Self::ms(self.settings.send_timeout))),
                };
            }
            let count = wire.peek(&mut self.scratch);
            let mut scratch = core::mem::take(&mut self.scratch);
            let outcome = match request::parse(&scratch[..count], &self.settings.limits) {
                Parse::Complete(request) => {
                    session.head_started_ms = None;
                    let length = request.length;
                    let outcome = self.respond(session, wire, &request);
                    wire.consume(length);
                    Ok(outcome)
                }
                Parse::Error(error) => Err(Some(Status::from(error))),
                Parse::Incomplete if count >= wire.receive_capacity() => {
                    // A head bigger than the receive buffer can never be read whole.
                    Err(Some(Status::HeadersTooLarge))
                }
                Parse::Incomplete => Err(None),
            };
            scratch.resize(self.settings.limits.max_head, 0);
            self.scratch = scratch;
            match outcome {
                Ok(Outcome::Done { keep_alive: true }) => {
                    session.idle_since_ms = now_ms;
                    net::trace::add(net::trace::Counter::Requests, 1);
                }
                Ok(Outcome::Done { keep_alive: false }) => {
                    net::trace::add(net::trace::Counter::Requests, 1);
                    return Next::Close;
                }
                Ok(Outcome::Sending) => {
                    net::trace::add(net::trace::Counter::Requests, 1);
                    return Next::Write {
                        deadline_ms: Some(
                            now_ms.saturating_add(Self::ms(self.settings.send_timeout)),
                        ),
                    };
                }
                Ok(Outcome::HandOff) => return Next::HandOff,
                Err(Some(status)) => {
                    self.send_page(session, wire, status, None, false, false);
                    return Next::Close;
                }
                Err(None) if count == 0 => {
                    if wire.peer_closed() {
                        return Next::Close;
                    }
                    let idle = Self::ms(self.settings.idle_timeout);
                    return Next::Read {
                        deadline_ms: Some(session.idle_since_ms.saturating_add(idle)),
                    };
                }
                Err(None) => {
                    if wire.peer_closed() {
                        return Next::Close;
                    }
                    let started = *session.head_started_ms.get_or_insert(now_ms);
                    let limit = Self::ms(self.settings.head_timeout);
                    return Next::Read {
                        deadline_ms: Some(started.saturating_add(limit)),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
