//! Connection handlers that run on the net core itself: an application's per-connection
//! state machine, called when its connection has news, with no thread and no message.
//!
//! A listener bound with a [`Handler`] does not queue its connections for `accept`:
//! the net core opens each one with [`Handler::open`] and calls [`Handler::event`] when
//! data arrives, room to send appears, the peer closes or the connection's deadline
//! passes. The handler reads and writes through [`Io`] (the socket's own buffers, so a
//! waiting connection costs its socket and its small state, never a thread) and answers
//! what it waits for next ([`Next`]). When it cannot go on by itself (it needs a file
//! from another core, say) it hands the connection off ([`Next::HandOff`]): a thread
//! that waits in `HandlerListener::accept` gets it as a normal `TcpStream` with the
//! handler's state, and gives it back with `HandlerListener::resume`.
//!
//! Handlers run inside the net core's loop: they must not block, and they should be
//! short (every other connection waits meanwhile).

use alloc::boxed::Box;
use core::any::Any;
use core::net::SocketAddrV4;

use smoltcp::socket::tcp;

/// Why a handler is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The connection was just opened (data may already be there).
    Opened,
    /// What it waited for happened: new data, room to send, or the peer closed.
    Ready,
    /// The deadline it asked for passed first.
    TimedOut,
    /// A thread gave the connection back (`HandlerListener::resume`).
    Resumed,
}

/// What a handler waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// More data (or the peer closing); `TimedOut` at `deadline_ms` if nothing came.
    Read {
        /// When to give up waiting, in the service's milliseconds.
        deadline_ms: Option<u64>,
    },
    /// Room to send (half the send buffer free), or the peer going away; `TimedOut` at
    /// `deadline_ms`.
    Write {
        /// When to give up waiting.
        deadline_ms: Option<u64>,
    },
    /// Close once everything sent has gone out (reset if received data is left unread).
    Close,
    /// Reset the connection now.
    Abort,
    /// Give the connection to a thread waiting in `HandlerListener::accept`.
    HandOff,
}

/// An application's connection logic, run on the net core.
pub trait Handler: Send + 'static {
    /// The state kept per connection (small: thousands may wait).
    type Connection: Send + 'static;

    /// Prepares the handler on the net core when its listener is bound (buffers sized
    /// from that core's memory, say); an error refuses the listener.
    fn attach(&mut self) -> crate::Result<()> {
        Ok(())
    }

    /// Returns the state of a new connection from `peer`, or `None` to refuse it (it is
    /// reset), for example when memory is short.
    fn open(&mut self, peer: SocketAddrV4, now_ms: u64) -> Option<Self::Connection>;

    /// Handles `event` on `connection`, reading and writing through `io`; returns what
    /// the connection waits for next.
    fn event(
        &mut self,
        connection: &mut Self::Connection,
        io: &mut Io<'_>,
        event: Event,
        now_ms: u64,
    ) -> Next;
}

/// A connection's socket, as a handler sees it: its receive and send buffers.
pub struct Io<'a> {
    socket: &'a mut tcp::Socket<'static>,
}

impl core::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Io")
            .field("state", &self.socket.state())
            .field("received", &self.socket.recv_queue())
            .finish_non_exhaustive()
    }
}

impl<'a> Io<'a> {
    pub(crate) fn new(socket: &'a mut tcp::Socket<'static>) -> Self {
        Io { socket }
    }

    /// Returns how many received bytes wait in the receive buffer.
    pub fn received(&self) -> usize {
        self.socket.recv_queue()
    }

    /// Returns the size of the receive buffer: a request that does not fit in it can
    /// never be read whole.
    pub fn receive_capacity(&self) -> usize {
        self.socket.recv_capacity()
    }

    /// Copies received bytes into `buffer` without taking them; returns how many.
    pub fn peek(&mut self, buffer: &mut [u8]) -> usize {
        self.socket.peek_slice(buffer).unwrap_or(0)
    }

    /// Takes (drops) the first `count` received bytes.
    pub fn consume(&mut self, count: usize) {
        let mut left = count;
        while left > 0 {
            let taken = self
                .socket
                .recv(|bytes| {
                    let take = bytes.len().min(left);
                    (take, take)
                })
                .unwrap_or(0);
            if taken == 0 {
                break;
            }
            left -= taken;
        }
    }

    /// Returns true when the peer sent its last byte (FIN or reset): no more data comes
    /// after what is in the receive buffer.
    pub fn peer_closed(&self) -> bool {
        !matches!(
            self.socket.state(),
            tcp::State::Established | tcp::State::FinWait1 | tcp::State::FinWait2
        )
    }

    /// Returns true while the connection can still send (it was not reset, and its
    /// sending half is open).
    pub fn can_send(&self) -> bool {
        self.socket.may_send()
    }

    /// Returns how many bytes may be queued for sending now (0 once sending is over).
    pub fn room(&self) -> usize {
        if self.socket.may_send() {
            self.socket.send_capacity() - self.socket.send_queue()
        } else {
            0
        }
    }

    /// Returns the size of the send buffer.
    pub fn send_capacity(&self) -> usize {
        self.socket.send_capacity()
    }

    /// Queues as much of `data` as fits; returns how many bytes were taken (0 when the
    /// connection can no longer send).
    pub fn send(&mut self, data: &[u8]) -> usize {
        self.socket.send_slice(data).unwrap_or(0)
    }
}

/// Returns `value` in a box, or `None` when this core has no memory for it.
///
/// `Box::new` would end the core when memory runs out; a one-element `Vec` turned
/// into a boxed one-element array allocates through the fallible path instead.
pub fn try_box<T>(value: T) -> Option<Box<[T; 1]>> {
    let mut cell = alloc::vec::Vec::new();
    cell.try_reserve_exact(1).ok()?;
    cell.push(value);
    cell.into_boxed_slice().try_into().ok()
}

/// A connection's state as the net core keeps it: any handler's, boxed.
pub(crate) type AnyConnection = Box<dyn Any + Send>;

/// A handler with its connection type erased, as the service keeps it.
pub(crate) trait ErasedHandler: Send {
    fn attach(&mut self) -> crate::Result<()>;
    fn open(&mut self, peer: SocketAddrV4, now_ms: u64) -> Option<AnyConnection>;
    fn event(
        &mut self,
        connection: &mut AnyConnection,
        io: &mut Io<'_>,
        event: Event,
        now_ms: u64,
    ) -> Next;
}

/// A handler of a known type, behind [`ErasedHandler`].
pub(crate) struct Typed<H>(pub(crate) H);

impl<H: Handler> ErasedHandler for Typed<H> {
    fn attach(&mut self) -> crate::Result<()> {
        self.0.attach()
    }

    fn open(&mut self, peer: SocketAddrV4, now_ms: u64) -> Option<AnyConnection> {
        let connection = self.0.open(peer, now_ms)?;
        let boxed: AnyConnection = try_box(connection)?;
        Some(boxed)
    }

    fn event(
        &mut self,
        connection: &mut AnyConnection,
        io: &mut Io<'_>,
        event: Event,
        now_ms: u64,
    ) -> Next {
        match connection.downcast_mut::<[H::Connection; 1]>() {
            Some([connection]) => self.0.event(connection, io, event, now_ms),
            // A state of another type (a thread resumed the wrong listener's
            // connection): nothing sensible can be done with the connection.
            None => Next::Abort,
        }
    }
}

/// A fallibly boxed handler ([`try_box`] gives a one-element array) is still one.
impl<E: ErasedHandler> ErasedHandler for [E; 1] {
    fn attach(&mut self) -> crate::Result<()> {
        self[0].attach()
    }

    fn open(&mut self, peer: SocketAddrV4, now_ms: u64) -> Option<AnyConnection> {
        self[0].open(peer, now_ms)
    }

    fn event(
        &mut self,
        connection: &mut AnyConnection,
        io: &mut Io<'_>,
        event: Event,
        now_ms: u64,
    ) -> Next {
        self[0].event(connection, io, event, now_ms)
    }
}

/// Returns the connection state inside `boxed` if it is an `H`'s.
pub(crate) fn unbox<C: 'static>(boxed: AnyConnection) -> Option<C> {
    let boxed: Box<[C; 1]> = boxed.downcast().ok()?;
    let [connection] = *boxed;
    Some(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_fallibly_and_unboxes_by_type() {
        let boxed = try_box(41u32).unwrap();
        assert_eq!(boxed[0], 41);
        let any: AnyConnection = boxed;
        assert_eq!(unbox::<u64>(any), None);
        let any: AnyConnection = try_box(7u32).unwrap();
        assert_eq!(unbox::<u32>(any), Some(7));
    }
}
