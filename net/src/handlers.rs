//! Running connection handlers: the handlers of a stack's handled listeners, which
//! open the listeners' new connections and run each connection's handler when it is
//! due. Pure logic over the [`Table`] and smoltcp's sockets, so it is tested on the host
//! over a simulated wire; the net service calls [`Handlers::run`] after every poll.

use alloc::boxed::Box;
use alloc::vec::Vec;

use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;

use crate::error::{Error, Result};
use crate::handler::{AnyConnection, ErasedHandler, Event, Io, Next};
use crate::table::{SocketId, Table, Wait};

/// Handled listeners at most (each one is a server on its own port).
const MAX_HANDLERS: usize = 8;

/// The handlers of the handled listeners, by listener.
pub(crate) struct Handlers {
    list: Vec<(SocketId, Box<dyn ErasedHandler>)>,
}

impl Handlers {
    /// Returns an empty list with its room reserved, or `OutOfMemory`.
    pub(crate) fn try_new() -> Result<Handlers> {
        let mut list = Vec::new();
        list.try_reserve_exact(MAX_HANDLERS)
            .map_err(|_| Error::OutOfMemory)?;
        Ok(Handlers { list })
    }

    fn find(&mut self, listener: SocketId) -> Option<&mut Box<dyn ErasedHandler>> {
        self.list
            .iter_mut()
            .find(|(id, _)| *id == listener)
            .map(|(_, handler)| handler)
    }

    /// Binds a listener on `port` whose connections `handler` runs; the handler is
    /// attached (on this core) first.
    pub(crate) fn bind(
        &mut self,
        table: &mut Table,
        sockets: &mut SocketSet<'static>,
        port: u16,
        mut handler: Box<dyn ErasedHandler>,
    ) -> Result<SocketId> {
        if self.list.len() == MAX_HANDLERS {
            return Err(Error::TooManySockets);
        }
        handler.attach()?;
        let id = table.listen_as(sockets, port, true)?;
        self.list.push((id, handler));
        Ok(id)
    }

    /// Forgets the handler of the listener `id`.
    pub(crate) fn remove(&mut self, id: SocketId) {
        self.list.retain(|(listener, _)| *listener != id);
    }

    /// Opens the handled listeners' new connections and runs the handlers of the
    /// connections that are due; returns true when any handler ran.
    pub(crate) fn run(
        &mut self,
        table: &mut Table,
        sockets: &mut SocketSet<'static>,
        now_ms: u64,
    ) -> bool {
        if self.list.is_empty() {
            return false;
        }
        let mut ran = false;
        while let Some((listener, handle, peer)) = table.next_unopened(sockets) {
            let Some(connection) = self
                .find(listener)
                .and_then(|handler| handler.open(peer, now_ms))
            else {
                // Refused by its handler (short of memory, say): reset.
                table.refuse(sockets, handle);
                continue;
            };
            match table.insert_inline(listener, handle, peer) {
                Ok(id) => {
                    self.dispatch(table, sockets, id, Some(connection), Event::Opened, now_ms);
                    ran = true;
                }
                Err(_) => table.refuse(sockets, handle),
            }
        }
        let mut cursor = 0;
        while let Some((id, event)) = table.next_due(sockets, now_ms, &mut cursor) {
            self.dispatch(table, sockets, id, None, event, now_ms);
            ran = true;
        }
        ran
    }

    /// Makes the handed-off stream `id` its handler's again and runs the handler with
    /// [`Event::Resumed`]; a stream that cannot go back is closed.
    pub(crate) fn resume(
        &mut self,
        table: &mut Table,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
        listener: SocketId,
        connection: AnyConnection,
        now_ms: u64,
    ) {
        if table.resume(id, listener).is_ok() {
            self.dispatch(table, sockets, id, Some(connection), Event::Resumed, now_ms);
        } else {
            table.close(sockets, id, now_ms);
        }
    }

    /// Runs the handler of the inline connection `id` for `event`, with `connection`
    /// as its state (or the state the table keeps), and does what it answers.
    fn dispatch(
        &mut self,
        table: &mut Table,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
        connection: Option<AnyConnection>,
        event: Event,
        now_ms: u64,
    ) {
        let Some((listener, handle, kept)) = table.take_inline(id) else {
            return;
        };
        let (Some(handler), Some(mut connection)) = (self.find(listener), connection.or(kept))
        else {
            table.close(sockets, id, now_ms);
            return;
        };
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        let next = handler.event(&mut connection, &mut Io::new(socket), event, now_ms);
        let seen = socket.recv_queue();
        // A reset connection, or one waiting for room it can never get, is over
        // whatever the handler would wait for.
        let dead = match next {
            Next::Read { .. } => socket.state() == tcp::State::Closed,
            Next::Write { .. } => !socket.may_send(),
            _ => false,
        };
        let next = if dead { Next::Abort } else { next };
        match next {
            Next::Read { deadline_ms } => {
                table.wait_inline(id, connection, Wait::Read, deadline_ms, seen);
            }
            Next::Write { deadline_ms } => {
                table.wait_inline(id, connection, Wait::Write, deadline_ms, seen);
            }
            Next::Close => table.close(sockets, id, now_ms),
            Next::Abort => {
                socket.abort();
                table.close(sockets, id, now_ms);
            }
            Next::HandOff => {
                if table.hand_off(id, connection).is_err() {
                    sockets.get_mut::<tcp::Socket>(handle).abort();
                    table.close(sockets, id, now_ms);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "handlers_tests.rs"]
mod tests;
