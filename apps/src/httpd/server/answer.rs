//! Answers on the net core: a request from the cache or from a file kept in the
//! session (its head written fast or in full, then as much body as fits), the rest of a
//! body that did not fit, small status pages, and the cached start of a 200 head.

use alloc::vec::Vec;

use net::Next;

use super::{Outcome, Sending, Server, Session, Source, Wire};
use crate::httpd::cache::{self, Cached, CachedFile};
use crate::httpd::date;
use crate::httpd::request::{Method, Request};
use crate::httpd::response::{self, ContentRange, Head, Status, MAX_ERROR_BODY, MAX_HEAD};
use crate::httpd::validators::{self, Answer};

impl Server {
    /// Continues a response that did not fit; `Some` when the connection must wait
    /// (or ends), `None` when it may read the next request.
    pub(super) fn go_on_sending<W: Wire>(
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

    pub(super) fn stop_sending(&mut self, session: &mut Session, sending: Sending) {
        match sending.source {
            Source::Cache(entry) => self.cache.release(entry),
            Source::Session => session.own = None,
        }
    }

    /// Answers `request`: at once when it can, else by handing it to a worker.
    pub(super) fn respond<W: Wire>(
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

    /// Answers `request` from `source` (a cached or kept answer).
    pub(super) fn answer_from<W: Wire>(
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
        let fast_length = prefix.len() + 8 + date::HTTP_DATE_LENGTH + end.len();
        let (range, head_length) = match answer {
            Answer::Full if !prefix.is_empty() && fast_length <= self.head.len() => {
                // The hot path: the head was written when the file was read.
                let mut length = prefix.len();
                self.head[..length].copy_from_slice(prefix);
                if let Some(now) = date {
                    let line_end = length + 6 + date::HTTP_DATE_LENGTH + 2;
                    self.head[length..length + 6].copy_from_slice(b"Date: ");
                    self.head[length + 6..line_end - 2].copy_from_slice(&date::format(now));
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
    pub(super) fn send_page<W: Wire>(
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
