//! Requests the net core cannot answer: handed with their connection to a worker
//! thread, and the worker's reply sent when the connection comes back.

use alloc::vec::Vec;

use net::Next;

use super::{Handoff, Outcome, Reply, Server, Session, Source, Wire};
use crate::httpd::request::{self, Method, Parse, Request};
use crate::httpd::response::Status;

impl Server {
    /// Copies the request for a worker and hands the connection off (a 503 when there
    /// is no memory for the copy).
    pub(super) fn hand_off<W: Wire>(
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
    pub(super) fn resumed<W: Wire>(
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
}
