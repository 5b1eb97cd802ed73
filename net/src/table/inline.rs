//! The table's side of connection handlers: connections run on the net core by their
//! listener's handler, what each waits for, and the ones handed off to threads.

use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use super::entry::{established, ipv4, listener_in, Entry, Inline, SocketId, Wait};
use super::Table;
use crate::error::{Error, Result};
use crate::handler::{AnyConnection, Event};

/// Returns true when a socket in `state` will receive no more data.
fn peer_done(state: tcp::State) -> bool {
    !matches!(
        state,
        tcp::State::Established | tcp::State::FinWait1 | tcp::State::FinWait2
    )
}

impl Table {
    /// Takes the next connection a handled listener has, established and not yet
    /// given to its handler: the listener, the socket and the peer.
    pub(crate) fn next_unopened(
        &mut self,
        sockets: &SocketSet<'static>,
    ) -> Option<(SocketId, SocketHandle, SocketAddrV4)> {
        for &id in &self.listeners {
            let Some(listener) = listener_in(&mut self.slots, id) else {
                continue;
            };
            if !listener.handled {
                continue;
            }
            let position = listener
                .pending
                .iter()
                .position(|&(handle, _)| established(sockets.get::<tcp::Socket>(handle).state()));
            if let Some((handle, _)) = position.and_then(|at| listener.pending.remove(at)) {
                let peer = sockets
                    .get::<tcp::Socket>(handle)
                    .remote_endpoint()
                    .map_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), ipv4);
                return Some((id, handle, peer));
            }
        }
        None
    }

    /// Resets a connection nobody will run (its handler refused it, or no entry was
    /// left for it).
    pub(crate) fn refuse(&mut self, sockets: &mut SocketSet<'static>, handle: SocketHandle) {
        sockets.get_mut::<tcp::Socket>(handle).abort();
        self.closing.push((handle, self.now_ms));
    }

    /// Records `connection`, opened by `listener`'s handler, as an inline connection;
    /// its handler runs next with [`Event::Opened`] (the state is handed back for that).
    pub(crate) fn insert_inline(
        &mut self,
        listener: SocketId,
        handle: SocketHandle,
        peer: SocketAddrV4,
    ) -> Result<SocketId> {
        let id = self.insert(Entry::Inline(Inline {
            handle,
            peer,
            listener,
            connection: None,
            wait: Wait::Read,
            deadline_ms: None,
            seen: 0,
        }))?;
        self.list(id);
        Ok(id)
    }

    /// Puts `id` on the list the service scans for due connections (the list has room
    /// for every entry).
    fn list(&mut self, id: SocketId) {
        if self
            .slot(id)
            .is_none_or(|slot| slot.listed == Some(id.generation()))
        {
            return;
        }
        if self.inline.len() == self.inline.capacity() {
            // Ids of slots reused since the last scan may still be listed: drop them
            // rather than grow (the live ones never outnumber the entries).
            let mut at = 0;
            while at < self.inline.len() {
                if !self.unlist_if_stale(at) {
                    at += 1;
                }
            }
        }
        if let Some(slot) = self.slot_mut(id) {
            slot.listed = Some(id.generation());
            self.inline.push(id);
        }
    }

    /// Removes the listed id at `at` if it no longer names an inline connection;
    /// returns whether it did.
    fn unlist_if_stale(&mut self, at: usize) -> bool {
        let id = self.inline[at];
        let Some(slot) = self.slots.get_mut(id.index()) else {
            self.inline.swap_remove(at);
            return true;
        };
        let live =
            slot.generation == id.generation() && matches!(slot.entry, Some(Entry::Inline(_)));
        if live {
            return false;
        }
        if slot.listed == Some(id.generation()) {
            slot.listed = None;
        }
        self.inline.swap_remove(at);
        true
    }

    /// Returns the next inline connection from `*cursor` on that is due (what it waits
    /// for happened, or its deadline passed), with the event to give its handler, and
    /// moves the cursor past it. Ids that are no longer inline leave the list here.
    pub(crate) fn next_due(
        &mut self,
        sockets: &SocketSet<'static>,
        now_ms: u64,
        cursor: &mut usize,
    ) -> Option<(SocketId, Event)> {
        while *cursor < self.inline.len() {
            if self.unlist_if_stale(*cursor) {
                continue;
            }
            let id = self.inline[*cursor];
            *cursor += 1;
            let Some(Entry::Inline(inline)) = self.entry(id) else {
                continue;
            };
            if inline.connection.is_none() {
                continue;
            }
            if inline
                .deadline_ms
                .is_some_and(|deadline| now_ms >= deadline)
            {
                return Some((id, Event::TimedOut));
            }
            let socket = sockets.get::<tcp::Socket>(inline.handle);
            let ready = match inline.wait {
                Wait::Read => socket.recv_queue() > inline.seen || peer_done(socket.state()),
                Wait::Write => {
                    !socket.may_send()
                        || socket.send_capacity() - socket.send_queue()
                            >= socket.send_capacity() / 2
                }
            };
            if ready {
                return Some((id, Event::Ready));
            }
        }
        None
    }

    /// Returns the earliest deadline of the inline connections, if any.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.inline
            .iter()
            .filter_map(|&id| match self.entry(id) {
                Some(Entry::Inline(inline)) => inline.deadline_ms,
                _ => None,
            })
            .min()
    }

    /// Takes the handler state of the inline connection `id` out to run its handler:
    /// its listener, its socket and the state. `None` if `id` is not inline.
    pub(crate) fn take_inline(
        &mut self,
        id: SocketId,
    ) -> Option<(SocketId, SocketHandle, Option<AnyConnection>)> {
        match self.entry_mut(id) {
            Some(Entry::Inline(inline)) => {
                Some((inline.listener, inline.handle, inline.connection.take()))
            }
            _ => None,
        }
    }

    /// Gives the state back to the inline connection `id`, which now waits for `wait`
    /// until `deadline_ms`, having seen `seen` received bytes.
    pub(crate) fn wait_inline(
        &mut self,
        id: SocketId,
        connection: AnyConnection,
        wait: Wait,
        deadline_ms: Option<u64>,
        seen: usize,
    ) {
        if let Some(Entry::Inline(inline)) = self.entry_mut(id) {
            inline.connection = Some(connection);
            inline.wait = wait;
            inline.deadline_ms = deadline_ms;
            inline.seen = seen;
        }
    }

    /// Hands the inline connection `id` (its handler's state in `connection`) to the
    /// threads accepting on its listener. Fails (and the caller resets it) when the
    /// listener is gone or its queue has no room.
    pub(crate) fn hand_off(&mut self, id: SocketId, connection: AnyConnection) -> Result<()> {
        let Some(Entry::Inline(inline)) = self.entry(id) else {
            return Err(Error::InvalidInput);
        };
        let (listener, handle, peer) = (inline.listener, inline.handle, inline.peer);
        let queue = match self.listener_mut(listener) {
            Some(listener) => &mut listener.handed,
            None => return Err(Error::NotConnected),
        };
        if queue.len() == queue.capacity() && queue.try_reserve(1).is_err() {
            return Err(Error::OutOfMemory);
        }
        queue.push_back(id);
        if let Some(entry) = self.entry_mut(id) {
            *entry = Entry::HandedOff {
                handle,
                peer,
                connection,
            };
        }
        Ok(())
    }

    /// Takes the oldest connection handed off on the handled listener `id`: it becomes
    /// a stream of the caller, returned with its peer and the handler's state.
    pub(crate) fn accept_handed(
        &mut self,
        id: SocketId,
    ) -> Result<Option<(SocketId, SocketAddrV4, AnyConnection)>> {
        loop {
            let Some(listener) = self.listener_mut(id) else {
                return Err(Error::InvalidInput);
            };
            if !listener.handled {
                return Err(Error::InvalidInput);
            }
            let Some(stream) = listener.handed.pop_front() else {
                return Ok(None);
            };
            let Some(entry) = self.entry_mut(stream) else {
                // Closed meanwhile (its listener's close, say): try the next.
                continue;
            };
            let Entry::HandedOff { handle, peer, .. } = *entry else {
                continue;
            };
            let old = core::mem::replace(entry, Entry::Stream { handle, peer });
            if let Entry::HandedOff { connection, .. } = old {
                return Ok(Some((stream, peer, connection)));
            }
        }
    }

    /// Makes the stream `id` an inline connection of its listener's handler again, with
    /// the handler's state `connection`; its handler runs next with [`Event::Resumed`].
    /// Fails when `id` is not a stream that a handler handed off, or its listener is
    /// gone (the connection is then closed by the caller).
    pub(crate) fn resume(&mut self, id: SocketId, listener: SocketId) -> Result<()> {
        if self
            .listener(listener)
            .is_none_or(|listener| !listener.handled)
        {
            return Err(Error::NotConnected);
        }
        let Some(entry) = self.entry_mut(id) else {
            return Err(Error::InvalidInput);
        };
        let Entry::Stream { handle, peer } = *entry else {
            return Err(Error::InvalidInput);
        };
        *entry = Entry::Inline(Inline {
            handle,
            peer,
            listener,
            connection: None,
            wait: Wait::Read,
            deadline_ms: None,
            seen: 0,
        });
        self.list(id);
        Ok(())
    }

    /// Resets every inline connection of the listener `listener` (being closed).
    pub(super) fn close_inline_of(
        &mut self,
        sockets: &mut SocketSet<'static>,
        listener: SocketId,
        now_ms: u64,
    ) {
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            let of_listener = matches!(
                &slot.entry,
                Some(Entry::Inline(inline)) if inline.listener == listener
            );
            if of_listener {
                let id = SocketId::new(index, slot.generation);
                if let Some(Entry::Inline(inline)) = self.take(id) {
                    sockets.get_mut::<tcp::Socket>(inline.handle).abort();
                    self.closing.push((inline.handle, now_ms));
                }
            }
        }
    }
}
