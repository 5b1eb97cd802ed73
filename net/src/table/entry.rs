//! The table's entries and the plain types they are made of: socket ids, listeners,
//! inline connections, slots. The table (`super`) and its connection handlers
//! (`super::inline`) both work on these; neither owns them.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::SocketAddrV4;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::handler::AnyConnection;

/// Names one socket of the table; never names another one later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(u64);

impl SocketId {
    pub(crate) fn new(index: usize, generation: u32) -> SocketId {
        SocketId(u64::from(generation) << 32 | index as u64)
    }

    pub(super) fn index(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    pub(super) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// What a parked caller waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A connection to accept.
    Accept,
    /// Data to read (or the end of the stream).
    Read,
    /// Room to write.
    Write,
    /// The end of a connection attempt.
    Connect,
    /// A datagram to receive.
    Datagram,
    /// Room to send a datagram.
    DatagramRoom,
}

pub(super) struct Listener {
    pub(super) port: u16,
    pub(super) listening: Vec<SocketHandle>,
    /// Connections that left `Listen`, with the time they did (roughly: the last
    /// `maintain`), oldest first.
    pub(super) pending: VecDeque<(SocketHandle, u64)>,
    /// The listener's connections are run by a handler on the net core; `accept`
    /// takes only those its handler handed off.
    pub(super) handled: bool,
    /// Handed-off connections waiting for `accept`, oldest first.
    pub(super) handed: VecDeque<SocketId>,
}

pub(super) enum Entry {
    Listener(Listener),
    Stream {
        handle: SocketHandle,
        peer: SocketAddrV4,
    },
    Udp {
        handle: SocketHandle,
    },
    Inline(Inline),
    HandedOff {
        handle: SocketHandle,
        peer: SocketAddrV4,
        connection: AnyConnection,
    },
}

pub(super) struct Slot {
    pub(super) generation: u32,
    pub(super) entry: Option<Entry>,
    /// The generation whose id is in the table's list of inline connections.
    pub(super) listed: Option<u32>,
}

/// What an inline connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// New data, or the peer closing.
    Read,
    /// Half the send buffer free, or the peer going away.
    Write,
}

/// A connection run by its listener's handler on the net core.
pub(super) struct Inline {
    pub(super) handle: SocketHandle,
    pub(super) peer: SocketAddrV4,
    pub(super) listener: SocketId,
    /// The handler's state; out while the handler runs.
    pub(super) connection: Option<AnyConnection>,
    pub(super) wait: Wait,
    pub(super) deadline_ms: Option<u64>,
    /// Bytes in the receive buffer when the handler last ran: `Read` is ready when
    /// more arrived, not merely because unread bytes are there.
    pub(super) seen: usize,
}

/// Returns the listener `id` names among `slots`, while it still names it.
pub(super) fn listener_in(slots: &mut [Slot], id: SocketId) -> Option<&mut Listener> {
    match slots.get_mut(id.index()) {
        Some(Slot {
            generation,
            entry: Some(Entry::Listener(listener)),
            ..
        }) if *generation == id.generation() => Some(listener),
        _ => None,
    }
}

pub(super) fn ipv4(endpoint: IpEndpoint) -> SocketAddrV4 {
    let IpAddress::Ipv4(address) = endpoint.addr;
    SocketAddrV4::new(address, endpoint.port)
}

pub(super) fn endpoint(address: SocketAddrV4) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(*address.ip()), address.port())
}

/// True for a connection that is open for the application: it may be accepted.
pub(super) fn established(state: tcp::State) -> bool {
    matches!(state, tcp::State::Established | tcp::State::CloseWait)
}
