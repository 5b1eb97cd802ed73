//! The sockets applications hold, kept by the net core over smoltcp's sockets.
//!
//! Applications name sockets by [`SocketId`], never by smoltcp handle: smoltcp reuses
//! the slots of removed sockets, and an id names one use of a slot (its generation), so
//! a stale id is an error instead of someone else's socket. Every call here is
//! non-blocking: `Ok(None)` means "not now"; the service parks the calling thread and
//! asks [`Table::is_ready`] after each poll whether to try again.
//!
//! smoltcp has no listen backlog: a listening socket takes one connection, and a SYN
//! that finds no socket in `Listen` is answered with a reset. So a listener keeps
//! `backlog` sockets listening and, after each poll, moves those that left `Listen`
//! into its queue of pending connections and listens with fresh ones.
//!
//! Memory is a budget: the entries, the free list and the closing list are reserved
//! up front for `limits.sockets` (see [`Limits::for_memory`]), each socket's buffers are
//! allocated fallibly, and a table that cannot get memory refuses the socket
//! ([`Error::TooManySockets`], [`Error::OutOfMemory`]) instead of ending the core. No
//! call here allocates through an infallible path once the table exists.

mod closing;
mod datagrams;
mod entry;
mod inline;
mod limits;
mod listeners;
mod streams;

use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};

use crate::error::{Error, Result};

pub use datagrams::MAX_DATAGRAM;
pub(crate) use entry::Wait;
use entry::{established, Entry, Listener, Slot};
pub use entry::{SocketId, Want};
pub use limits::Limits;

/// The applications' sockets, by id.
pub struct Table {
    slots: Vec<Slot>,
    /// Indices of empty slots.
    free: Vec<u32>,
    /// Listener ids (few), for the per-poll refill.
    listeners: Vec<SocketId>,
    /// Inline connections' ids (some may have left that state; cleaned while scanned).
    inline: Vec<SocketId>,
    /// Streams the application closed, with the time they were closed, kept until
    /// their connection finished closing.
    closing: Vec<(SocketHandle, u64)>,
    /// smoltcp sockets this table created and has not removed.
    in_use: usize,
    next_ephemeral: u16,
    /// The time of the last `maintain`.
    now_ms: u64,
    limits: Limits,
}

impl core::fmt::Debug for Table {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Table")
            .field("entries", &self.len())
            .field("closing", &self.closing.len())
            .field("in_use", &self.in_use)
            .finish_non_exhaustive()
    }
}

const EPHEMERAL_FIRST: u16 = 49152;
/// Entries beyond the socket limit: listeners hold no socket of their own when their
/// queue is full, so they may outnumber sockets by a little.
const SPARE_ENTRIES: usize = 16;

/// Returns `len` zeroed bytes, or `None` when this core has no memory for them.
fn try_zeroed(len: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).ok()?;
    bytes.resize(len, 0);
    Some(bytes)
}

/// Returns a new TCP socket with the buffers of `limits`, or `OutOfMemory`.
fn tcp_socket(limits: &Limits) -> Result<tcp::Socket<'static>> {
    let receive = try_zeroed(limits.receive_buffer).ok_or(Error::OutOfMemory)?;
    let send = try_zeroed(limits.send_buffer).ok_or(Error::OutOfMemory)?;
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(receive),
        tcp::SocketBuffer::new(send),
    );
    // Answer at once rather than wait for more data: request/response traffic and
    // throughput both gain, and the net core is not short of cycles for ACKs.
    socket.set_ack_delay(None);
    socket.set_nagle_enabled(false);
    Ok(socket)
}

impl Table {
    /// Returns an empty table with `limits`.
    ///
    /// # Panics
    /// When the host has no memory for the table's reserve (tests); the service uses
    /// [`Table::try_new`].
    pub fn new(limits: Limits) -> Self {
        match Self::try_new(limits) {
            Ok(table) => table,
            Err(error) => panic!("socket table for {} sockets: {error}", limits.sockets),
        }
    }

    /// Returns an empty table with `limits`, its bookkeeping reserved for
    /// `limits.sockets` sockets, or `OutOfMemory`.
    pub fn try_new(limits: Limits) -> Result<Self> {
        let entries = limits.sockets + SPARE_ENTRIES;
        let mut table = Table {
            slots: Vec::new(),
            free: Vec::new(),
            listeners: Vec::new(),
            inline: Vec::new(),
            closing: Vec::new(),
            in_use: 0,
            next_ephemeral: EPHEMERAL_FIRST,
            now_ms: 0,
            limits,
        };
        let reserved = table.slots.try_reserve_exact(entries).is_ok()
            && table.free.try_reserve_exact(entries).is_ok()
            && table.listeners.try_reserve_exact(SPARE_ENTRIES).is_ok()
            && table.inline.try_reserve_exact(entries).is_ok()
            && table.closing.try_reserve_exact(limits.sockets).is_ok();
        if reserved {
            Ok(table)
        } else {
            Err(Error::OutOfMemory)
        }
    }

    /// Sets the table's clock to `now_ms` before a poll: the connections that poll
    /// brings are stamped with it (`maintain` also sets it).
    pub fn set_clock(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Returns the table's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Returns how many smoltcp sockets the table holds (open, listening, closing).
    pub fn sockets_in_use(&self) -> usize {
        self.in_use
    }

    /// Returns how many sockets applications hold (listeners, streams, datagram
    /// sockets, and connections run by handlers).
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Returns true when applications hold no socket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `entry` in a free slot; `TooManySockets` when none is left.
    fn insert(&mut self, entry: Entry) -> Result<SocketId> {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.generation = slot.generation.wrapping_add(1);
            slot.entry = Some(entry);
            return Ok(SocketId::new(index as usize, slot.generation));
        }
        if self.slots.len() == self.slots.capacity() {
            return Err(Error::TooManySockets);
        }
        let index = self.slots.len();
        self.slots.push(Slot {
            generation: 0,
            entry: Some(entry),
            listed: None,
        });
        Ok(SocketId::new(index, 0))
    }

    /// Returns the slot `id` names, while it still names it.
    fn slot(&self, id: SocketId) -> Option<&Slot> {
        self.slots
            .get(id.index())
            .filter(|slot| slot.generation == id.generation() && slot.entry.is_some())
    }

    fn slot_mut(&mut self, id: SocketId) -> Option<&mut Slot> {
        self.slots
            .get_mut(id.index())
            .filter(|slot| slot.generation == id.generation() && slot.entry.is_some())
    }

    fn entry(&self, id: SocketId) -> Option<&Entry> {
        self.slot(id).and_then(|slot| slot.entry.as_ref())
    }

    fn entry_mut(&mut self, id: SocketId) -> Option<&mut Entry> {
        self.slot_mut(id).and_then(|slot| slot.entry.as_mut())
    }

    /// Takes the entry of `id` out and frees its slot (the free list has room for
    /// every slot, so this never allocates).
    fn take(&mut self, id: SocketId) -> Option<Entry> {
        let slot = self.slot_mut(id)?;
        let entry = slot.entry.take();
        self.free.push(id.index() as u32);
        entry
    }

    fn listener(&self, id: SocketId) -> Option<&Listener> {
        match self.entry(id) {
            Some(Entry::Listener(listener)) => Some(listener),
            _ => None,
        }
    }

    fn listener_mut(&mut self, id: SocketId) -> Option<&mut Listener> {
        match self.entry_mut(id) {
            Some(Entry::Listener(listener)) => Some(listener),
            _ => None,
        }
    }

    fn new_tcp(&mut self, sockets: &mut SocketSet<'static>) -> Result<SocketHandle> {
        if self.in_use >= self.limits.sockets {
            return Err(Error::TooManySockets);
        }
        let socket = tcp_socket(&self.limits)?;
        self.in_use += 1;
        Ok(sockets.add(socket))
    }

    fn remove(&mut self, sockets: &mut SocketSet<'static>, handle: SocketHandle) {
        sockets.remove(handle);
        self.in_use -= 1;
    }

    fn listening_on(&self, port: u16) -> bool {
        self.listeners.iter().any(|&id| {
            self.listener(id)
                .is_some_and(|listener| listener.port == port)
        })
    }

    fn udp_bound(&self, sockets: &SocketSet<'static>, port: u16) -> bool {
        self.slots.iter().any(|slot| match &slot.entry {
            Some(Entry::Udp { handle }) => {
                sockets.get::<udp::Socket>(*handle).endpoint().port == port
            }
            _ => false,
        })
    }

    /// True when a socket of any kind uses `port` locally.
    fn port_taken(&self, sockets: &SocketSet<'static>, port: u16) -> bool {
        self.listening_on(port)
            || self.udp_bound(sockets, port)
            || self.slots.iter().any(|slot| match &slot.entry {
                Some(Entry::Stream { handle, .. }) => sockets
                    .get::<tcp::Socket>(*handle)
                    .local_endpoint()
                    .is_some_and(|local| local.port == port),
                _ => false,
            })
    }

    fn ephemeral_port(&mut self, sockets: &SocketSet<'static>) -> Result<u16> {
        for _ in EPHEMERAL_FIRST..=u16::MAX {
            let port = self.next_ephemeral;
            self.next_ephemeral = port.checked_add(1).unwrap_or(EPHEMERAL_FIRST);
            if !self.port_taken(sockets, port) {
                return Ok(port);
            }
        }
        Err(Error::TooManySockets)
    }

    /// Returns true when a call waiting for `want` on `id` should try again: it would
    /// now make progress or fail.
    pub fn is_ready(&self, sockets: &SocketSet<'static>, id: SocketId, want: Want) -> bool {
        let Some(entry) = self.entry(id) else {
            return true;
        };
        match (entry, want) {
            (Entry::Listener(listener), Want::Accept) if listener.handled => {
                !listener.handed.is_empty()
            }
            (Entry::Listener(listener), Want::Accept) => listener
                .pending
                .iter()
                .any(|&(handle, _)| established(sockets.get::<tcp::Socket>(handle).state())),
            (Entry::Stream { handle, .. }, Want::Read) => {
                let socket = sockets.get::<tcp::Socket>(*handle);
                socket.can_recv() || !socket.may_recv()
            }
            (Entry::Stream { handle, .. }, Want::Write) => {
                let socket = sockets.get::<tcp::Socket>(*handle);
                socket.can_send() || !socket.may_send()
            }
            (Entry::Stream { handle, .. }, Want::Connect) => !matches!(
                sockets.get::<tcp::Socket>(*handle).state(),
                tcp::State::SynSent | tcp::State::SynReceived
            ),
            (Entry::Udp { handle }, Want::Datagram) => {
                sockets.get::<udp::Socket>(*handle).can_recv()
            }
            (Entry::Udp { handle }, Want::DatagramRoom) => {
                sockets.get::<udp::Socket>(*handle).can_send()
            }
            // A call on the wrong kind of socket fails at once.
            _ => true,
        }
    }
}
