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

mod entry;
mod inline;
mod limits;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::IpListenEndpoint;

use crate::error::{Error, Result};

pub(crate) use entry::Wait;
use entry::{endpoint, established, ipv4, listener_in, Entry, Inline, Listener, Slot};
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

    /// After a poll: refills the listeners, and removes the connections that finished
    /// closing (or took longer than the linger time, which are aborted).
    pub fn maintain(&mut self, sockets: &mut SocketSet<'static>, now_ms: u64) {
        self.now_ms = now_ms;
        let Table {
            slots,
            listeners,
            closing,
            in_use,
            limits,
            ..
        } = self;
        for &id in listeners.iter() {
            let Some(listener) = listener_in(slots, id) else {
                continue;
            };
            let mut at = 0;
            while let Some(&(handle, since)) = listener.pending.get(at) {
                let socket = sockets.get_mut::<tcp::Socket>(handle);
                let state = socket.state();
                if state == tcp::State::SynReceived
                    && now_ms.saturating_sub(since) > limits.handshake_ms
                {
                    // Half-open for too long: junk SYNs must not fill the queue for good.
                    socket.abort();
                    listener.pending.remove(at);
                    // The reset goes out from the closing list (room for every socket).
                    closing.push((handle, now_ms));
                } else if state == tcp::State::Closed {
                    // Reset before anyone accepted it.
                    listener.pending.remove(at);
                    sockets.remove(handle);
                    *in_use -= 1;
                } else {
                    at += 1;
                }
            }
        }
        self.replenish(sockets);
        let linger = self.limits.linger_ms;
        let mut at = 0;
        while let Some(&(handle, since)) = self.closing.get(at) {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            if matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait) {
                self.closing.swap_remove(at);
                self.remove(sockets, handle);
                continue;
            }
            if now_ms.saturating_sub(since) > linger {
                // Keep it one more poll so the reset goes out.
                socket.abort();
            }
            at += 1;
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

    fn stream(&self, id: SocketId) -> Result<SocketHandle> {
        match self.entry(id) {
            Some(Entry::Stream { handle, .. }) => Ok(*handle),
            Some(Entry::Listener(_)) => Err(Error::NotConnected),
            _ => Err(Error::InvalidInput),
        }
    }

    fn udp(&self, id: SocketId) -> Result<SocketHandle> {
        match self.entry(id) {
            Some(Entry::Udp { handle }) => Ok(*handle),
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

    /// Queues the datagram `data` to `to`; `None` when the send buffer has no room yet.
    pub fn send_to(
        &mut self,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
        data: &[u8],
        to: SocketAddrV4,
    ) -> Result<Option<()>> {
        let handle = self.udp(id)?;
        if to.port() == 0 || to.ip().is_unspecified() || data.len() > self.limits.udp_buffer {
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

    /// Closes the TCP connection of `handle`: it finishes sending and closes (aborted if
    /// the application left data unread), kept in the closing list until it is done.
    fn close_connection(&mut self, sockets: &mut SocketSet<'static>, handle: SocketHandle) {
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.recv_queue() > 0 {
            socket.abort();
        } else {
            socket.close();
        }
        self.closing.push((handle, self.now_ms));
    }

    /// Gives up the socket `id`: a stream finishes sending and closes (aborted if the
    /// application left data unread); a listener refuses its pending connections (and
    /// resets those its handler ran).
    pub fn close(&mut self, sockets: &mut SocketSet<'static>, id: SocketId, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        match self.take(id) {
            Some(Entry::Listener(listener)) => {
                self.listeners.retain(|&other| other != id);
                for handle in listener.listening {
                    self.remove(sockets, handle);
                }
                for (handle, _) in listener.pending {
                    sockets.get_mut::<tcp::Socket>(handle).abort();
                    self.closing.push((handle, now_ms));
                }
                for handed in listener.handed {
                    self.close(sockets, handed, now_ms);
                }
                self.close_inline_of(sockets, id, now_ms);
            }
            Some(
                Entry::Stream { handle, .. }
                | Entry::HandedOff { handle, .. }
                | Entry::Inline(Inline { handle, .. }),
            ) => self.close_connection(sockets, handle),
            Some(Entry::Udp { handle }) => self.remove(sockets, handle),
            None => {}
        }
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
