//! TCP streams: connecting, reading, writing and shutting down the sending half.

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use super::entry::{endpoint, Entry, SocketId};
use super::{try_zeroed, Table};
use crate::error::{Error, Result};

impl Table {
    fn stream(&self, id: SocketId) -> Result<SocketHandle> {
        match self.entry(id) {
            Some(Entry::Stream { handle, .. }) => Ok(*handle),
            Some(Entry::Listener(_)) => Err(Error::NotConnected),
            _ => Err(Error::InvalidInput),
        }
    }

    /// Returns the peer of the stream `id`.
    pub fn peer(&self, id: SocketId) -> Result<SocketAddrV4> {
        match self.entry(id) {
            Some(Entry::Stream { peer, .. }) => Ok(*peer),
            _ => Err(Error::NotConnected),
        }
    }

    /// Starts a connection to `to`.
    pub fn connect(
        &mut self,
        sockets: &mut SocketSet<'static>,
        context: &mut Context,
        to: SocketAddrV4,
    ) -> Result<SocketId> {
        if to.port() == 0 || to.ip().is_unspecified() {
            return Err(Error::InvalidInput);
        }
        let port = self.ephemeral_port(sockets)?;
        let handle = self.new_tcp(sockets)?;
        let started = sockets
            .get_mut::<tcp::Socket>(handle)
            .connect(context, endpoint(to), port);
        if let Err(error) = started {
            self.remove(sockets, handle);
            return Err(match error {
                tcp::ConnectError::Unaddressable => Error::NoAddress,
                tcp::ConnectError::InvalidState => Error::InvalidInput,
            });
        }
        match self.insert(Entry::Stream { handle, peer: to }) {
            Ok(id) => Ok(id),
            Err(error) => {
                self.remove(sockets, handle);
                Err(error)
            }
        }
    }

    /// Says whether the connection attempt of `id` ended: `Some(())` when connected.
    pub fn connected(
        &mut self,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
    ) -> Result<Option<()>> {
        let handle = self.stream(id)?;
        match sockets.get::<tcp::Socket>(handle).state() {
            tcp::State::SynSent | tcp::State::SynReceived => Ok(None),
            tcp::State::Closed => Err(Error::ConnectionRefused),
            _ => Ok(Some(())),
        }
    }

    /// Reads up to `max` bytes of the stream `id`: some bytes, none at the end of the
    /// stream, or `None` when nothing is there yet.
    pub fn read(
        &mut self,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
        max: usize,
    ) -> Result<Option<Vec<u8>>> {
        let handle = self.stream(id)?;
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.can_recv() {
            let wanted = max.min(socket.recv_queue());
            let mut data = try_zeroed(wanted).ok_or(Error::OutOfMemory)?;
            let count = socket
                .recv_slice(&mut data)
                .map_err(|_| Error::ConnectionReset)?;
            data.truncate(count);
            return Ok(Some(data));
        }
        if socket.may_recv() {
            Ok(None)
        } else {
            Ok(Some(Vec::new()))
        }
    }

    /// Queues as much of `data` as fits on the stream `id`; `None` when nothing fits yet.
    pub fn write(
        &mut self,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
        data: &[u8],
    ) -> Result<Option<usize>> {
        let handle = self.stream(id)?;
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if !socket.may_send() {
            return Err(match socket.state() {
                tcp::State::Closed => Error::ConnectionReset,
                _ => Error::Closed,
            });
        }
        if !socket.can_send() || data.is_empty() {
            return Ok(if data.is_empty() { Some(0) } else { None });
        }
        socket
            .send_slice(data)
            .map(Some)
            .map_err(|_| Error::ConnectionReset)
    }

    /// Closes the sending half of the stream `id` once its queued data went out.
    pub fn shutdown(&mut self, sockets: &mut SocketSet<'static>, id: SocketId) -> Result<()> {
        let handle = self.stream(id)?;
        sockets.get_mut::<tcp::Socket>(handle).close();
        Ok(())
    }
}
