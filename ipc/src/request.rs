//! Request and response: fresh correlation ids, replies matched by id.
//!
//! A core keeps one [`Requests`] table for all the requests it has in flight, to any
//! number of cores. Sending a request gives it a correlation id no other pending request
//! of this core uses and returns a [`Ticket`]. The core's message loop offers every
//! incoming message to [`Requests::deliver`], which keeps replies it is waiting for and
//! hands everything else back. Replies may come in any order.

use crate::message::Message;
use crate::ring::{Full, Sender};
use crate::wait::Wait;

/// A claim on the reply to one request. Not `Clone`: each reply is taken once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a reply can only be collected with its ticket"]
pub struct Ticket {
    id: u32,
}

impl Ticket {
    /// Returns the correlation id of the request.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The error of [`Requests::try_request`]; carries the request back.
#[derive(Debug)]
pub enum RequestError {
    /// `MAX` requests are already waiting for replies.
    TooManyInFlight(Message),
    /// The ring to the destination is full.
    Full(Message),
}

/// One entry of the table of requests in flight.
#[derive(Debug)]
enum Entry {
    Free,
    Waiting(u32),
    Answered(u32, Message),
}

/// The requests of one core that are waiting for replies, at most `MAX` at a time.
#[derive(Debug)]
pub struct Requests<const MAX: usize> {
    /// Next correlation id to try; 0 is never used (it marks one-way messages).
    next_id: u32,
    entries: [Entry; MAX],
}

impl<const MAX: usize> Requests<MAX> {
    /// Returns an empty table.
    pub const fn new() -> Self {
        Self {
            next_id: 1,
            entries: [const { Entry::Free }; MAX],
        }
    }

    /// Sends `request` with a fresh correlation id if the table and the ring have room.
    pub fn try_request<const N: usize>(
        &mut self,
        sender: &mut Sender<'_, Message, N>,
        mut request: Message,
    ) -> Result<Ticket, RequestError> {
        let Some(index) = self.free_entry() else {
            return Err(RequestError::TooManyInFlight(request));
        };
        let id = self.fresh_id();
        request.set_correlation(id);
        sender
            .try_send(request)
            .map_err(|Full(request)| RequestError::Full(request))?;
        self.entries[index] = Entry::Waiting(id);
        Ok(Ticket { id })
    }

    /// Sends `request` with a fresh correlation id, calling `wait` while the ring is
    /// full. Gives the request back only if `MAX` requests are already in flight.
    pub fn request<const N: usize>(
        &mut self,
        sender: &mut Sender<'_, Message, N>,
        mut request: Message,
        wait: impl Wait,
    ) -> Result<Ticket, Message> {
        let Some(index) = self.free_entry() else {
            return Err(request);
        };
        let id = self.fresh_id();
        request.set_correlation(id);
        sender.send(request, wait);
        self.entries[index] = Entry::Waiting(id);
        Ok(Ticket { id })
    }

    /// Keeps `message` if it is a reply this table waits for; otherwise gives it back
    /// (a request from another core, a one-way message, a reply nobody waits for).
    pub fn deliver(&mut self, message: Message) -> Result<(), Message> {
        let header = message.header();
        if !header.is_reply() || header.correlation() == 0 {
            return Err(message);
        }
        let waiting = self
            .entries
            .iter_mut()
            .find(|entry| matches!(entry, Entry::Waiting(id) if *id == header.correlation()));
        match waiting {
            Some(entry) => {
                *entry = Entry::Answered(header.correlation(), message);
                Ok(())
            }
            None => Err(message),
        }
    }

    /// Returns the reply for `ticket` if it has arrived, or the ticket to try later.
    pub fn take(&mut self, ticket: Ticket) -> Result<Message, Ticket> {
        let answered = self
            .entries
            .iter_mut()
            .find(|entry| matches!(entry, Entry::Answered(id, _) if *id == ticket.id));
        match answered {
            Some(entry) => match core::mem::replace(entry, Entry::Free) {
                Entry::Answered(_, reply) => Ok(reply),
                _ => unreachable!("matched an answered entry"),
            },
            None => Err(ticket),
        }
    }

    /// Returns whether the reply for `ticket` has arrived.
    pub fn is_answered(&self, ticket: &Ticket) -> bool {
        self.entries
            .iter()
            .any(|entry| matches!(entry, Entry::Answered(id, _) if *id == ticket.id))
    }

    /// Stops waiting for the reply to `ticket` and returns it if it already arrived.
    /// A reply that arrives later is handed back by `deliver` as unexpected.
    pub fn cancel(&mut self, ticket: Ticket) -> Option<Message> {
        let entry = self.entries.iter_mut().find(|entry| match entry {
            Entry::Waiting(id) | Entry::Answered(id, _) => *id == ticket.id,
            Entry::Free => false,
        })?;
        match core::mem::replace(entry, Entry::Free) {
            Entry::Answered(_, reply) => Some(reply),
            _ => None,
        }
    }

    /// Returns the number of requests whose reply has not been taken.
    pub fn in_flight(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| !matches!(entry, Entry::Free))
            .count()
    }

    fn free_entry(&self) -> Option<usize> {
        self.entries
            .iter()
            .position(|entry| matches!(entry, Entry::Free))
    }

    /// Returns an id that is not 0 and not used by any pending request. There are fewer
    /// than `MAX` pending ones, so at most `MAX` tries.
    fn fresh_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let taken = self.entries.iter().any(|entry| match entry {
                Entry::Waiting(other) | Entry::Answered(other, _) => *other == id,
                Entry::Free => false,
            });
            if !taken {
                return id;
            }
        }
    }
}

impl<const MAX: usize> Default for Requests<MAX> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::message::Kind;
    use crate::ring::Ring;

    const ECHO: Kind = Kind::new(1);

    fn request(value: u8) -> Message {
        Message::from_slice(ECHO, 0, &[value]).unwrap()
    }

    /// Answers every request on `rx` in reverse order of arrival.
    fn answer_in_reverse<const N: usize>(
        rx: &mut crate::ring::Receiver<'_, Message, N>,
        tx: &mut Sender<'_, Message, N>,
    ) {
        let mut requests = Vec::new();
        while let Some(request) = rx.try_recv() {
            requests.push(request);
        }
        for request in requests.into_iter().rev() {
            let value = request.inline()[0];
            let reply = Message::from_slice(ECHO, 1, &[value, value])
                .unwrap()
                .into_reply_to(&request.header());
            tx.try_send(reply).unwrap();
        }
    }

    #[test]
    fn replies_out_of_order_are_matched_by_id() {
        let to_server = Ring::<Message, 16>::new();
        let to_client = Ring::<Message, 16>::new();
        let (mut request_tx, mut request_rx) = to_server.split().unwrap();
        let (mut reply_tx, mut reply_rx) = to_client.split().unwrap();
        let mut requests = Requests::<8>::new();

        let tickets: Vec<Ticket> = (0..8)
            .map(|i| requests.try_request(&mut request_tx, request(i)).unwrap())
            .collect();
        let mut ids: Vec<u32> = tickets.iter().map(Ticket::id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 8, "ids are distinct");
        assert!(!ids.contains(&0));
        assert!(matches!(
            requests.try_request(&mut request_tx, request(99)),
            Err(RequestError::TooManyInFlight(_))
        ));

        answer_in_reverse(&mut request_rx, &mut reply_tx);
        // A request from elsewhere and a stray reply are handed back.
        assert!(requests.deliver(request(5)).is_err());
        let stray = request(6).into_reply_to(&crate::message::Header {
            kind: ECHO,
            source: 3,
            correlation: 12345,
            reply: false,
        });
        assert!(requests.deliver(stray).is_err());
        while let Some(reply) = reply_rx.try_recv() {
            requests.deliver(reply).unwrap();
        }
        for (i, ticket) in tickets.into_iter().enumerate() {
            assert!(requests.is_answered(&ticket));
            let reply = requests.take(ticket).unwrap();
            assert_eq!(&reply.inline()[..2], &[i as u8, i as u8]);
        }
        assert_eq!(requests.in_flight(), 0);
    }

    #[test]
    fn take_before_reply_gives_ticket_back_and_cancel_frees() {
        let ring = Ring::<Message, 4>::new();
        let (mut tx, mut rx) = ring.split().unwrap();
        let mut requests = Requests::<2>::new();
        let ticket = requests.try_request(&mut tx, request(1)).unwrap();
        let ticket = requests.take(ticket).unwrap_err();
        assert_eq!(requests.in_flight(), 1);
        let incoming = rx.try_recv().unwrap();
        assert_eq!(incoming.header().correlation(), ticket.id());
        assert!(requests.cancel(ticket).is_none());
        assert_eq!(requests.in_flight(), 0);
        let late = request(2).into_reply_to(&incoming.header());
        assert!(
            requests.deliver(late).is_err(),
            "cancelled: reply unexpected"
        );
    }

    #[test]
    fn full_ring_returns_request_and_keeps_table_free() {
        let ring = Ring::<Message, 1>::new();
        let (mut tx, _rx) = ring.split().unwrap();
        let mut requests = Requests::<4>::new();
        let _ticket = requests.try_request(&mut tx, request(1)).unwrap();
        match requests.try_request(&mut tx, request(2)) {
            Err(RequestError::Full(message)) => assert_eq!(message.inline()[0], 2),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(requests.in_flight(), 1);
    }

    #[test]
    fn ids_skip_zero_and_pending_ones_when_wrapping() {
        let ring = Ring::<Message, 8>::new();
        let (mut tx, mut rx) = ring.split().unwrap();
        let mut requests = Requests::<2>::new();
        requests.next_id = u32::MAX;
        let first = requests.try_request(&mut tx, request(0)).unwrap();
        assert_eq!(first.id(), u32::MAX);
        let second = requests.try_request(&mut tx, request(0)).unwrap();
        assert_eq!(second.id(), 1);
        drop(rx.try_recv());
        let answered = rx.try_recv().unwrap();
        requests.cancel(first);
        // Force the counter back onto the pending id 1: it must be skipped.
        requests.next_id = 1;
        let third = requests.try_request(&mut tx, request(0)).unwrap();
        assert_eq!(third.id(), 2);
        let reply = request(0).into_reply_to(&answered.header());
        requests.deliver(reply).unwrap();
        assert!(requests.take(second).is_ok());
    }
}
