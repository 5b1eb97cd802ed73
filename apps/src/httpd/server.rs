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

use alloc::vec::Vec;
use core::time::Duration;

use net::{Event, Next};

use super::cache::{self, Cache, Cached, CachedFile, EntryRef};
use super::request::{self, Limits, Method, Parse, Request};
use super::response::{self, ContentRange, Head, Status, MAX_ERROR_BODY, MAX_HEAD};
use super::validators::{self, Answer};

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

    /// Continues a response that did not fit; `Some` when the connection must wait
    /// (or ends), `None` when it may read the next request.
    fn go_on_sending<W: Wire>(
        &mut self,
        session: &mut Session,
        wire: &mut W,
        now_ms: u64,
    ) -> Option<Next> {
        let mut sending = session.sending.take()?;
        let body = match sending.source {
            Source::Cache(entry) => match self.cache.get(entry) {
                Some(CachedFile {
                    cached: Cached::File { body, .. },
                    ..
                }) => Some(body.as_slice()),
                _ => None,
            },
            Source::Session => match &session.own {
                Some(CachedFile {
                    cached: Cached::File { body, .. },
                    ..
                }) => Some(body.as_slice()),
                _ => None,
            },
        };
        let Some(body) = body else {
            // Cannot happen: the entry is held while sending. Cut rather than lie.
            return Some(Next::Abort);
        };
        sending.offset += wire.send(&body[sending.offset..sending.end]);
        if sending.offset < sending.end {
            session.sending = Some(sending);
            return Some(Next::Write {
                deadline_ms: Some(now_ms.saturating_add(Self::ms(self.settings.send_timeout))),
            });
        }
        self.stop_sending(session, sending);
        session.idle_since_ms = now_ms;
        (!sending.keep_alive).then_some(Next::Close)
    }

    fn stop_sending(&mut self, session: &mut Session, sending: Sending) {
        match sending.source {
            Source::Cache(entry) => self.cache.release(entry),
            Source::Session => session.own = None,
        }
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

    /// Answers `request`: at once when it can, else by handing it to a worker.
    fn respond<W: Wire>(
        &mut self,
        session: &mut Session,
        wire: &mut W,
        request: &Request<'_>,
    ) -> Outcome {
        let keep_alive = request.keep_alive;
        let head_only = match request.method {
            Method::Get => false,
            Method::Head => true,
            Method::Other => {
                return self.send_page(
                    session,
                    wire,
                    Status::MethodNotAllowed,
                    None,
                    keep_alive,
                    false,
                )
            }
        };
        let found =
            cache::key(request.target).and_then(|key| self.cache.lookup(key, (self.generation)()));
        let Some(entry) = found else {
            return self.hand_off(session, wire, request);
        };
        net::trace::add(net::trace::Counter::CacheHits, 1);
        self.answer_from(session, wire, request, Source::Cache(entry), head_only)
    }

    /// Copies the request for a worker and hands the connection off (a 503 when there
    /// is no memory for the copy).
    fn hand_off<W: Wire>(
        &mut self,
        session: &mut Session,
        wire: &mut W,
        request: &Request<'_>,
    ) -> Outcome {
        let mut head = Vec::new();
        if head.try_reserve_exact(request.length).is_err() {
            return self.send_page(
                session,
                wire,
                Status::ServiceUnavailable,
                None,
                false,
                false,
            );
        }
        head.resize(request.length, 0);
        let copied = wire.peek(&mut head);
        head.truncate(copied);
        session.handoff = Some(Handoff { head, reply: None });
        net::trace::add(net::trace::Counter::Handoffs, 1);
        Outcome::HandOff
    }

    /// The connection came back from a worker: sends its reply (or the answer it
    /// found) and goes on, or says how the connection ends.
    fn resumed<W: Wire>(
        &mut self,
        session: &mut Session,
        wire: &mut W,
        now_ms: u64,
    ) -> Option<Next> {
        let Some(Handoff { head, reply }) = session.handoff.take() else {
            return Some(Next::Close);
        };
        let Some(reply) = reply else {
            return Some(Next::Close);
        };
        let keep_alive = match reply {
            Reply::Answered { keep_alive } => keep_alive,
            Reply::Page(status, location) => {
                let keep_alive = match request::parse(&head, &self.settings.limits) {
                    Parse::Complete(request) => request.keep_alive,
                    _ => false,
                };
                match self.send_page(
                    session,
                    wire,
                    status,
                    location.as_deref(),
                    keep_alive,
                    false,
                ) {
                    Outcome::Done { keep_alive } => keep_alive,
                    _ => false,
                }
            }
            Reply::Found(file) => {
                let Parse::Complete(request) = request::parse(&head, &self.settings.limits) else {
                    return Some(Next::Close);
                };
                let head_only = request.method == Method::Head;
                let source = match self.cache.insert(file) {
                    Ok(entry) => Source::Cache(entry),
                    Err(file) => {
                        session.own = Some(file);
                        Source::Session
                    }
                };
                match self.answer_from(session, wire, &request, source, head_only) {
                    Outcome::Done { keep_alive } => keep_alive,
                    Outcome::Sending => {
                        net::trace::add(net::trace::Counter::Requests, 1);
                        return Some(Next::Write {
                            deadline_ms: Some(
                                now_ms.saturating_add(Self::ms(self.settings.send_timeout)),
                            ),
                        });
                    }
                    Outcome::HandOff => false,
                }
            }
        };
        net::trace::add(net::trace::Counter::Requests, 1);
        session.idle_since_ms = now_ms;
        if session.own.is_some() && session.sending.is_none() {
            session.own = None;
        }
        (!keep_alive).then_some(Next::Close)
    }

    /// Answers `request` from `source` (a cached or kept answer).
    fn answer_from<W: Wire>(
        &mut self,
        session: &mut Session,
        wire: &mut W,
        request: &Request<'_>,
        source: Source,
        head_only: bool,
    ) -> Outcome {
        let keep_alive = request.keep_alive;
        let file = match source {
            Source::Cache(entry) => self.cache.get(entry),
            Source::Session => session.own.as_ref(),
        };
        let Some(file) = file else {
            return self.send_page(
                session,
                wire,
                Status::InternalServerError,
                None,
                false,
                head_only,
            );
        };
        let (body, prefix, content_type, validators) = match &file.cached {
            Cached::Redirect { location } => {
                // A short-lived borrow of the entry: copy the location out first.
                let mut text = [0u8; MAX_HEAD];
                let length = location.len().min(text.len());
                text[..length].copy_from_slice(&location.as_bytes()[..length]);
                let location = core::str::from_utf8(&text[..length]).unwrap_or("/");
                return self.send_page(
                    session,
                    wire,
                    Status::MovedPermanently,
                    Some(location),
                    keep_alive,
                    head_only,
                );
            }
            Cached::File {
                body,
                head,
                content_type,
                validators,
            } => (body, head, *content_type, *validators),
        };
        let size = body.len();
        let answer = validators::answer(
            request.method,
            &request.conditions,
            &validators,
            size as u64,
        );
        let date = (self.clock)();
        let end = if keep_alive {
            self.keep_alive_end
        } else {
            self.close_end
        };
        let fast_length = prefix.len() + 8 + super::date::HTTP_DATE_LENGTH + end.len();
        let (range, head_length) = match answer {
            Answer::Full if !prefix.is_empty() && fast_length <= self.head.len() => {
                // The hot path: the head was written when the file was read.
                let mut length = prefix.len();
                self.head[..length].copy_from_slice(prefix);
                if let Some(now) = date {
                    let line_end = length + 6 + super::date::HTTP_DATE_LENGTH + 2;
                    self.head[length..length + 6].copy_from_slice(b"Date: ");
                    self.head[length + 6..line_end - 2].copy_from_slice(&super::date::format(now));
                    self.head[line_end - 2..line_end].copy_from_slice(b"\r\n");
                    length = line_end;
                }
                self.head[length..length + end.len()].copy_from_slice(end);
                (0..size, length + end.len())
            }
            answer => {
                let (status, range, content_range) = match answer {
                    Answer::Full => (Status::Ok, 0..size, None),
                    Answer::NotModified => (Status::NotModified, 0..0, None),
                    Answer::Partial { start, end } => {
                        let (start, end) = (start as usize, end as usize);
                        (
                            Status::PartialContent,
                            start..end + 1,
                            Some(ContentRange::Part {
                                start: start as u64,
                                end: end as u64,
                                size: size as u64,
                            }),
                        )
                    }
                    Answer::Unsatisfiable => (
                        Status::RangeNotSatisfiable,
                        0..0,
                        Some(ContentRange::Unsatisfied { size: size as u64 }),
                    ),
                };
                let head = Head {
                    keep_alive: keep_alive.then_some(self.settings.idle_timeout),
                    etag: Some(&validators.etag),
                    last_modified: validators.last_modified,
                    date,
                    content_range,
                    accept_ranges: true,
                    ..Head::new(status, content_type, range.len() as u64)
                };
                let Some(length) = head.write_into(&mut self.head) else {
                    return self.send_page(
                        session,
                        wire,
                        Status::InternalServerError,
                        None,
                        false,
                        head_only,
                    );
                };
                (range, length)
            }
        };
        let range = if head_only { 0..0 } else { range };
        // There is room for a whole head (`START_ROOM`).
        wire.send(&self.head[..head_length]);
        let sent = wire.send(&body[range.clone()]);
        if range.start + sent < range.end {
            if let Source::Cache(entry) = source {
                self.cache.acquire(entry);
            }
            session.sending = Some(Sending {
                source,
                offset: range.start + sent,
                end: range.end,
                keep_alive,
            });
            return Outcome::Sending;
        }
        if source == Source::Session {
            session.own = None;
        }
        Outcome::Done { keep_alive }
    }

    /// Sends `status` with its small page (only the head for HEAD requests, none for
    /// 304) and `location` for a redirect.
    fn send_page<W: Wire>(
        &mut self,
        _session: &mut Session,
        wire: &mut W,
        status: Status,
        location: Option<&str>,
        keep_alive: bool,
        head_only: bool,
    ) -> Outcome {
        let keep_alive = keep_alive && !status.closes_connection();
        let mut body = [0u8; MAX_ERROR_BODY];
        let length = response::error_body(status, &mut body);
        let head = Head {
            keep_alive: keep_alive.then_some(self.settings.idle_timeout),
            location,
            date: (self.clock)(),
            ..Head::new(status, response::ERROR_TYPE, length as u64)
        };
        let Some(head_length) = head.write_into(&mut self.head) else {
            return Outcome::Done { keep_alive: false };
        };
        wire.send(&self.head[..head_length]);
        if !head_only {
            wire.send(&body[..length]);
        }
        Outcome::Done { keep_alive }
    }
}

/// Returns the start of a file's 200 head (status line through `Last-Modified`), for
/// the cache, or `None` without memory.
pub fn cached_head(
    content_type: &str,
    size: u64,
    validators: &validators::Validators,
) -> Option<Vec<u8>> {
    let head = Head {
        etag: Some(&validators.etag),
        last_modified: validators.last_modified,
        accept_ranges: true,
        ..Head::new(Status::Ok, content_type, size)
    };
    let mut out = Vec::new();
    if !head.write_to(&mut out) {
        return None;
    }
    // Cut the connection lines and the empty line: the server adds its own.
    let end = out
        .windows(19)
        .position(|window| window == b"Connection: close\r\n")?;
    out.truncate(end);
    let mut fitted = Vec::new();
    fitted.try_reserve_exact(out.len()).ok()?;
    fitted.extend_from_slice(&out);
    Some(fitted)
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
