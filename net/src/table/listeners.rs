//! Listeners: listening on a port with a backlog of smoltcp sockets, moving the sockets
//! that took a connection to the listener's queue, and accepting from it.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;
use smoltcp::wire::IpListenEndpoint;

use super::entry::{established, ipv4, listener_in, Entry, Listener, SocketId};
use super::{tcp_socket, Table};
use crate::error::{Error, Result};

impl Table {
    /// Listens for TCP connections on `port`.
    pub fn listen(&mut self, sockets: &mut SocketSet<'static>, port: u16) -> Result<SocketId> {
        self.listen_as(sockets, port, false)
    }

    /// Listens on `port`; a `handled` listener's connections go to its handler.
    pub(crate) fn listen_as(
        &mut self,
        sockets: &mut SocketSet<'static>,
        port: u16,
        handled: bool,
    ) -> Result<SocketId> {
        if port == 0 {
            return Err(Error::InvalidInput);
        }
        if self.listening_on(port) {
            return Err(Error::AddressInUse);
        }
        if self.listeners.len() == self.listeners.capacity() {
            return Err(Error::TooManySockets);
        }
        let mut listening = Vec::new();
        let mut pending = VecDeque::new();
        let mut handed = VecDeque::new();
        let reserved = listening.try_reserve_exact(self.limits.backlog).is_ok()
            && pending.try_reserve_exact(self.limits.pending).is_ok()
            && (!handled || handed.try_reserve_exact(self.limits.pending).is_ok());
        if !reserved {
            return Err(Error::OutOfMemory);
        }
        let id = self.insert(Entry::Listener(Listener {
            port,
            listening,
            pending,
            handled,
            handed,
        }))?;
        self.listeners.push(id);
        self.replenish(sockets);
        if self
            .listener(id)
            .is_none_or(|listener| listener.listening.is_empty())
        {
            self.listeners.retain(|&other| other != id);
            self.take(id);
            return Err(Error::TooManySockets);
        }
        Ok(id)
    }

    /// Keeps every listener's `backlog` sockets listening, and moves those that took a
    /// connection to the listener's queue. The service calls it after every received
    /// packet that changed a socket, so each SYN of a burst finds a listening socket.
    /// When memory or the socket limit runs out, listeners listen with fewer sockets
    /// (new connections are refused) and the ones open are kept.
    pub fn replenish(&mut self, sockets: &mut SocketSet<'static>) {
        let Table {
            slots,
            listeners,
            closing,
            in_use,
            limits,
            now_ms,
            ..
        } = self;
        for &id in listeners.iter() {
            let Some(listener) = listener_in(slots, id) else {
                continue;
            };
            let mut at = 0;
            while at < listener.listening.len() {
                let handle = listener.listening[at];
                if sockets.get::<tcp::Socket>(handle).state() == tcp::State::Listen {
                    at += 1;
                    continue;
                }
                let handle = listener.listening.swap_remove(at);
                // `pending` has room for `limits.pending`, and listening stops below; a
                // few more that the sockets still listening take are kept if memory
                // allows, else reset (the closing list has room for every socket).
                if listener.pending.len() < listener.pending.capacity()
                    || listener.pending.try_reserve(1).is_ok()
                {
                    listener.pending.push_back((handle, *now_ms));
                } else {
                    sockets.get_mut::<tcp::Socket>(handle).abort();
                    closing.push((handle, *now_ms));
                }
            }
            if listener.pending.len() >= limits.pending {
                continue;
            }
            while listener.listening.len() < limits.backlog && *in_use < limits.sockets {
                let Ok(mut socket) = tcp_socket(limits) else {
                    break;
                };
                let endpoint = IpListenEndpoint {
                    addr: None,
                    port: listener.port,
                };
                if socket.listen(endpoint).is_err() {
                    break;
                }
                *in_use += 1;
                listener.listening.push(sockets.add(socket));
            }
        }
    }

    /// Takes a connection the listener `id` holds, with its peer's address.
    pub fn accept(
        &mut self,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
    ) -> Result<Option<(SocketId, SocketAddrV4)>> {
        let Some(listener) = self.listener_mut(id) else {
            return Err(Error::InvalidInput);
        };
        if listener.handled {
            return Err(Error::InvalidInput);
        }
        let Some(position) = listener
            .pending
            .iter()
            .position(|&(handle, _)| established(sockets.get::<tcp::Socket>(handle).state()))
        else {
            return Ok(None);
        };
        let Some((handle, _)) = listener.pending.remove(position) else {
            return Ok(None);
        };
        let socket = sockets.get::<tcp::Socket>(handle);
        let peer = socket
            .remote_endpoint()
            .map_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), ipv4);
        match self.insert(Entry::Stream { handle, peer }) {
            Ok(stream) => Ok(Some((stream, peer))),
            Err(error) => {
                sockets.get_mut::<tcp::Socket>(handle).abort();
                self.closing.push((handle, self.now_ms));
                Err(error)
            }
        }
    }
}
