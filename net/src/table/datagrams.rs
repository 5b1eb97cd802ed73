//! Datagram (UDP) sockets: binding a port, and sending and receiving datagrams.

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;

use super::entry::{endpoint, ipv4, Entry, SocketId};
use super::{try_zeroed, Limits, Table};
use crate::error::{Error, Result};

/// The largest UDP payload that fits one Ethernet frame: a 1,500-byte IP packet less
/// its IPv4 and UDP headers. Larger datagrams would need IP fragments, which this stack
/// neither sends nor reassembles (the driver drops fragments it receives).
pub const MAX_DATAGRAM: usize = 1500 - 20 - 8;

impl Table {
    fn udp(&self, id: SocketId) -> Result<SocketHandle> {
        match self.entry(id) {
            Some(Entry::Udp { handle }) => Ok(*handle),
            _ => Err(Error::InvalidInput),
        }
    }

    /// Binds a UDP socket to `port` (0: any free port); returns it and its port.
    pub fn bind_udp(
        &mut self,
        sockets: &mut SocketSet<'static>,
        port: u16,
    ) -> Result<(SocketId, u16)> {
        let port = match port {
            0 => self.ephemeral_port(sockets)?,
            port if self.udp_bound(sockets, port) => return Err(Error::AddressInUse),
            port => port,
        };
        if self.in_use >= self.limits.sockets {
            return Err(Error::TooManySockets);
        }
        let buffer = |limits: &Limits| -> Result<udp::PacketBuffer<'static>> {
            let mut metadata = Vec::new();
            metadata
                .try_reserve_exact(64)
                .map_err(|_| Error::OutOfMemory)?;
            metadata.resize(64, udp::PacketMetadata::EMPTY);
            let payload = try_zeroed(limits.udp_buffer).ok_or(Error::OutOfMemory)?;
            Ok(udp::PacketBuffer::new(metadata, payload))
        };
        let mut socket = udp::Socket::new(buffer(&self.limits)?, buffer(&self.limits)?);
        socket.bind(port).map_err(|_| Error::InvalidInput)?;
        self.in_use += 1;
        let handle = sockets.add(socket);
        match self.insert(Entry::Udp { handle }) {
            Ok(id) => Ok((id, port)),
            Err(error) => {
                self.remove(sockets, handle);
                Err(error)
            }
        }
    }

    /// Queues the datagram `data` to `to`; `None` when the send buffer has no room yet. A
    /// datagram larger than [`MAX_DATAGRAM`] is refused: it would need IP fragments, which
    /// this stack neither sends nor reassembles.
    pub fn send_to(
        &mut self,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
        data: &[u8],
        to: SocketAddrV4,
    ) -> Result<Option<()>> {
        let handle = self.udp(id)?;
        if to.port() == 0
            || to.ip().is_unspecified()
            || data.len() > MAX_DATAGRAM.min(self.limits.udp_buffer)
        {
            return Err(Error::InvalidInput);
        }
        match sockets
            .get_mut::<udp::Socket>(handle)
            .send_slice(data, endpoint(to))
        {
            Ok(()) => Ok(Some(())),
            Err(udp::SendError::BufferFull) => Ok(None),
            Err(udp::SendError::Unaddressable) => Err(Error::NoAddress),
        }
    }

    /// Takes the next datagram of `id`, with its sender; `None` when none waits.
    pub fn recv_from(
        &mut self,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
    ) -> Result<Option<(Vec<u8>, SocketAddrV4)>> {
        let handle = self.udp(id)?;
        match sockets.get_mut::<udp::Socket>(handle).recv() {
            Ok((data, meta)) => {
                let mut copy = Vec::new();
                copy.try_reserve_exact(data.len())
                    .map_err(|_| Error::OutOfMemory)?;
                copy.extend_from_slice(data);
                Ok(Some((copy, ipv4(meta.endpoint))))
            }
            Err(udp::RecvError::Exhausted) => Ok(None),
            Err(udp::RecvError::Truncated) => Err(Error::InvalidInput),
        }
    }
}
