//! Sockets for application threads on any core: TCP listeners and streams, UDP.
//!
//! The shapes follow `std::net`. Each call is a round trip to the net core (see
//! [`crate::service`]); a call that has to wait (accept, read without data, write
//! without room, connect) blocks only the calling thread, and its core runs others.
//! Buffers are bounded on the net core: a reader that does not read closes the TCP
//! window, so the writer slows down instead of anything being dropped.

use alloc::vec::Vec;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::net::SocketAddrV4;
use core::time::Duration;

use crate::error::{Error, Result};
use crate::handler::{try_box, unbox, AnyConnection, Handler, Typed};
use crate::service::{call, post, Step};
use crate::table::{SocketId, Want};

/// Bytes moved per call at most.
const CHUNK: usize = 64 * 1024;

/// Returns a copy of `data` to travel with a call, or `OutOfMemory`.
fn owned(data: &[u8]) -> Result<Vec<u8>> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(data.len())
        .map_err(|_| Error::OutOfMemory)?;
    copy.extend_from_slice(data);
    Ok(copy)
}

/// A TCP socket listening for connections on one port.
///
/// Many threads, on any cores, may `accept` on the same listener at once.
#[derive(Debug)]
pub struct TcpListener {
    id: SocketId,
    port: u16,
}

impl TcpListener {
    /// Listens on `port` on every address of the interface.
    pub fn bind(port: u16) -> Result<TcpListener> {
        let id = call(None, move |state, _| {
            let (table, sockets, _) = state.parts();
            table.listen(sockets, port).map(Step::Done)
        })?;
        Ok(TcpListener { id, port })
    }

    /// Waits for a connection and returns it with the peer's address.
    pub fn accept(&self) -> Result<(TcpStream, SocketAddrV4)> {
        let listener = self.id;
        let (id, peer) = call(None, move |state, _| {
            let (table, sockets, _) = state.parts();
            Ok(Step::or_wait(
                table.accept(sockets, listener)?,
                listener,
                Want::Accept,
            ))
        })?;
        Ok((TcpStream::new(id, peer), peer))
    }

    /// Returns the port it listens on.
    pub fn local_port(&self) -> u16 {
        self.port
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        close(self.id);
    }
}

fn close(id: SocketId) {
    post(move |state, now| {
        let (table, sockets, _) = state.parts();
        table.close(sockets, id, now);
    });
}

/// A TCP connection.
#[derive(Debug)]
pub struct TcpStream {
    id: SocketId,
    peer: SocketAddrV4,
    read_timeout: Option<Duration>,
}

impl TcpStream {
    fn new(id: SocketId, peer: SocketAddrV4) -> Self {
        TcpStream {
            id,
            peer,
            read_timeout: None,
        }
    }

    /// Connects to `to` and waits until the connection is open.
    pub fn connect(to: SocketAddrV4) -> Result<TcpStream> {
        let mut started: Option<SocketId> = None;
        let id = call(None, move |state, _| {
            let (table, sockets, context) = state.parts();
            let id = match started {
                Some(id) => id,
                None => {
                    let id = table.connect(sockets, context, to)?;
                    started = Some(id);
                    id
                }
            };
            match table.connected(sockets, id) {
                Ok(Some(())) => Ok(Step::Done(id)),
                Ok(None) => Ok(Step::Wait(id, Want::Connect)),
                Err(error) => {
                    table.close(sockets, id, 0);
                    Err(error)
                }
            }
        })?;
        Ok(TcpStream::new(id, to))
    }

    /// Returns the peer's address.
    pub fn peer_addr(&self) -> SocketAddrV4 {
        self.peer
    }

    /// Returns the stream's id, giving the stream up without closing it (it goes back
    /// to a handler).
    fn into_id(self) -> SocketId {
        ManuallyDrop::new(self).id
    }

    /// Makes `read` give up with [`Error::TimedOut`] after `timeout` without data
    /// (`None`: wait for ever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Waits for data and reads up to `buffer.len()` bytes; 0 means the peer closed its
    /// sending half (or `buffer` is empty).
    pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize> {
        if buffer.is_empty() {
            return Ok(0);
        }
        let id = self.id;
        let max = buffer.len().min(CHUNK);
        let data = call(self.read_timeout, move |state, _| {
            let (table, sockets, _) = state.parts();
            Ok(Step::or_wait(table.read(sockets, id, max)?, id, Want::Read))
        })?;
        buffer[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    /// Waits for room and queues some of `data`; returns how many bytes were taken.
    pub fn write(&mut self, data: &[u8]) -> Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let id = self.id;
        let data = owned(&data[..data.len().min(CHUNK)])?;
        call(None, move |state, _| {
            let (table, sockets, _) = state.parts();
            Ok(Step::or_wait(
                table.write(sockets, id, &data)?,
                id,
                Want::Write,
            ))
        })
    }

    /// Queues all of `data`, waiting for room as often as needed.
    ///
    /// Each piece of up to 64 KiB is one call: the net core keeps it and queues more of
    /// it whenever room comes, so a big write costs one round trip per piece instead of
    /// one per send buffer's worth.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let id = self.id;
        for piece in data.chunks(CHUNK) {
            let piece = owned(piece)?;
            let mut written = 0;
            call(None, move |state, _| {
                let (table, sockets, _) = state.parts();
                while written < piece.len() {
                    match table.write(sockets, id, &piece[written..])? {
                        Some(0) | None => return Ok(Step::Wait(id, Want::Write)),
                        Some(count) => written += count,
                    }
                }
                Ok(Step::Done(()))
            })?;
        }
        Ok(())
    }

    /// Closes the sending half once the queued data went out; reading goes on.
    pub fn shutdown(&mut self) -> Result<()> {
        let id = self.id;
        call(None, move |state, _| {
            let (table, sockets, _) = state.parts();
            table.shutdown(sockets, id).map(Step::Done)
        })
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        close(self.id);
    }
}

/// A UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    id: SocketId,
    port: u16,
}

impl UdpSocket {
    /// Binds a socket to `port` (0: a free port of the net core's choice).
    pub fn bind(port: u16) -> Result<UdpSocket> {
        let (id, port) = call(None, move |state, _| {
            let (table, sockets, _) = state.parts();
            table.bind_udp(sockets, port).map(Step::Done)
        })?;
        Ok(UdpSocket { id, port })
    }

    /// Returns the port it is bound to.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Sends `data` as one datagram to `to`, waiting for room in the send buffer. At most
    /// [`crate::MAX_DATAGRAM`] bytes (one frame; there are no IP fragments):
    /// `Error::InvalidInput` for more.
    pub fn send_to(&self, data: &[u8], to: SocketAddrV4) -> Result<usize> {
        let id = self.id;
        let data = owned(data)?;
        call(None, move |state, _| {
            let (table, sockets, _) = state.parts();
            let sent = table.send_to(sockets, id, &data, to)?.map(|()| data.len());
            Ok(Step::or_wait(sent, id, Want::DatagramRoom))
        })
    }

    /// Waits for a datagram and copies it into `buffer` (cut to its length, as
    /// `std::net` does); returns its length and sender.
    pub fn recv_from(&self, buffer: &mut [u8]) -> Result<(usize, SocketAddrV4)> {
        let id = self.id;
        let (data, from) = call(None, move |state, _| {
            let (table, sockets, _) = state.parts();
            Ok(Step::or_wait(
                table.recv_from(sockets, id)?,
                id,
                Want::Datagram,
            ))
        })?;
        let count = data.len().min(buffer.len());
        buffer[..count].copy_from_slice(&data[..count]);
        Ok((count, from))
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        close(self.id);
    }
}

/// A TCP listener whose connections a [`Handler`] runs on the net core (see
/// `crate::handler`); threads get only the connections the handler hands off.
///
/// Dropping it closes the listener and resets the connections its handler runs.
pub struct HandlerListener<H: Handler> {
    id: SocketId,
    port: u16,
    _handler: PhantomData<fn() -> H>,
}

impl<H: Handler> core::fmt::Debug for HandlerListener<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HandlerListener")
            .field("id", &self.id)
            .field("port", &self.port)
            .finish()
    }
}

impl<H: Handler> HandlerListener<H> {
    /// Listens on `port`, with `handler` (moved to the net core, where
    /// [`Handler::attach`] runs first) running every connection.
    pub fn bind(port: u16, handler: H) -> Result<HandlerListener<H>> {
        let mut handler = Some(handler);
        let id = call(None, move |state, _| {
            let handler = handler.take().ok_or(Error::InvalidInput)?;
            let boxed = try_box(Typed(handler)).ok_or(Error::OutOfMemory)?;
            state.bind_handler(port, boxed).map(Step::Done)
        })?;
        Ok(HandlerListener {
            id,
            port,
            _handler: PhantomData,
        })
    }

    /// Waits for a connection the handler handed off; returns it with the handler's
    /// state and the peer's address.
    pub fn accept(&self) -> Result<(TcpStream, H::Connection, SocketAddrV4)> {
        let listener = self.id;
        let (id, peer, connection) = call(None, move |state, _| {
            Ok(Step::or_wait(
                state.table.accept_handed(listener)?,
                listener,
                Want::Accept,
            ))
        })?;
        let stream = TcpStream::new(id, peer);
        match unbox::<H::Connection>(connection) {
            Some(connection) => Ok((stream, connection, peer)),
            // Only this listener's handler hands off here, so this does not happen.
            None => Err(Error::InvalidInput),
        }
    }

    /// Gives `stream` (handed off by this listener's handler) back to the handler with
    /// its state `connection`, without waiting: the handler runs it again with
    /// [`crate::Event::Resumed`].
    pub fn resume(&self, stream: TcpStream, connection: H::Connection) -> Result<()> {
        let boxed: AnyConnection = try_box(connection).ok_or(Error::OutOfMemory)?;
        let (listener, id) = (self.id, stream.into_id());
        post(move |state, now| state.resume(id, listener, boxed, now));
        Ok(())
    }

    /// Returns the port it listens on.
    pub fn local_port(&self) -> u16 {
        self.port
    }
}

impl<H: Handler> Drop for HandlerListener<H> {
    fn drop(&mut self) {
        let id = self.id;
        post(move |state, now| {
            let (table, sockets, _) = state.parts();
            table.close(sockets, id, now);
            state.drop_handler(id);
        });
    }
}
