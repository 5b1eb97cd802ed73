//! The sockets applications hold, kept by the net core over smoltcp's sockets.
//!
//! Applications name sockets by [`SocketId`], never by smoltcp handle: smoltcp reuses
//! the slots of removed sockets, and an id is never reused, so a stale id is an error
//! instead of someone else's socket. Every call here is non-blocking: `Ok(None)` means
//! "not now"; the service parks the calling thread and asks [`Table::is_ready`] after each
//! poll whether to try again.
//!
//! smoltcp has no listen backlog: a listening socket takes one connection, and a SYN
//! that finds no socket in `Listen` is answered with a reset. So a listener keeps
//! `backlog` sockets listening and, after each poll, moves those that left `Listen`
//! into its queue of pending connections and listens with fresh ones.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use crate::error::{Error, Result};

/// Names one socket of the table; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(u64);

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

/// The sizes and limits of the table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// smoltcp sockets at most (listening, pending, open and closing together).
    pub sockets: usize,
    /// Sockets each listener keeps listening, so a burst of SYNs finds them.
    pub backlog: usize,
    /// Connections a listener holds that nobody accepted yet; beyond it, new SYNs are
    /// refused until the application accepts.
    pub pending: usize,
    /// Bytes of each TCP socket's receive buffer, and of its send buffer.
    pub tcp_buffer: usize,
    /// Bytes of each UDP socket's receive buffer, and of its send buffer.
    pub udp_buffer: usize,
    /// Milliseconds a connection the application closed may take to finish closing
    /// before it is aborted.
    pub linger_ms: u64,
    /// Milliseconds a half-open connection (SYN received, handshake not finished) is
    /// kept; then it is aborted, so junk SYNs cannot fill the queue for good.
    pub handshake_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sockets: 1024,
            backlog: 8,
            pending: 256,
            tcp_buffer: 32 * 1024,
            udp_buffer: 64 * 1024,
            linger_ms: 10_000,
            handshake_ms: 5_000,
        }
    }
}

struct Listener {
    port: u16,
    listening: Vec<SocketHandle>,
    /// Connections that left `Listen`, with the time they did (roughly: the last
    /// `maintain`), oldest first.
    pending: VecDeque<(SocketHandle, u64)>,
}

enum Entry {
    Stream {
        handle: SocketHandle,
        peer: SocketAddrV4,
    },
    Udp {
        handle: SocketHandle,
    },
}

/// The applications' sockets, by id.
pub struct Table {
    listeners: BTreeMap<SocketId, Listener>,
    entries: BTreeMap<SocketId, Entry>,
    next_id: u64,
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
            .field("entries", &self.entries.len())
            .field("closing", &self.closing.len())
            .field("in_use", &self.in_use)
            .finish_non_exhaustive()
    }
}

const EPHEMERAL_FIRST: u16 = 49152;

fn ipv4(endpoint: IpEndpoint) -> SocketAddrV4 {
    let IpAddress::Ipv4(address) = endpoint.addr;
    SocketAddrV4::new(address, endpoint.port)
}

fn endpoint(address: SocketAddrV4) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(*address.ip()), address.port())
}

/// Returns a new TCP socket with the buffers of `limits`.
fn tcp_socket(limits: &Limits) -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; limits.tcp_buffer]),
        tcp::SocketBuffer::new(vec![0; limits.tcp_buffer]),
    );
    // Answer at once rather than wait for more data: request/response traffic and
    // throughput both gain, and the net core is not short of cycles for ACKs.
    socket.set_ack_delay(None);
    socket.set_nagle_enabled(false);
    socket
}

/// True for a connection that is open for the application: it may be accepted.
fn established(state: tcp::State) -> bool {
    matches!(state, tcp::State::Established | tcp::State::CloseWait)
}

impl Table {
    /// Returns an empty table with `limits`.
    pub fn new(limits: Limits) -> Self {
        Table {
            listeners: BTreeMap::new(),
            entries: BTreeMap::new(),
            next_id: 1,
            closing: Vec::new(),
            in_use: 0,
            next_ephemeral: EPHEMERAL_FIRST,
            now_ms: 0,
            limits,
        }
    }

    /// Returns how many smoltcp sockets the table holds (open, listening, closing).
    pub fn sockets_in_use(&self) -> usize {
        self.in_use
    }

    /// Returns how many sockets applications hold.
    pub fn len(&self) -> usize {
        self.entries.len() + self.listeners.len()
    }

    /// Returns true when applications hold no socket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn next_id(&mut self) -> SocketId {
        let id = SocketId(self.next_id);
        self.next_id += 1;
        id
    }

    fn insert(&mut self, entry: Entry) -> SocketId {
        let id = self.next_id();
        self.entries.insert(id, entry);
        id
    }

    fn new_tcp(&mut self, sockets: &mut SocketSet<'static>) -> Result<SocketHandle> {
        if self.in_use >= self.limits.sockets {
            return Err(Error::TooManySockets);
        }
        self.in_use += 1;
        Ok(sockets.add(tcp_socket(&self.limits)))
    }

    fn remove(&mut self, sockets: &mut SocketSet<'static>, handle: SocketHandle) {
        sockets.remove(handle);
        self.in_use -= 1;
    }

    fn listening_on(&self, port: u16) -> bool {
        self.listeners
            .values()
            .any(|listener| listener.port == port)
    }

    fn udp_bound(&self, sockets: &SocketSet<'static>, port: u16) -> bool {
        self.entries.values().any(|entry| match entry {
            Entry::Udp { handle } => sockets.get::<udp::Socket>(*handle).endpoint().port == port,
            _ => false,
        })
    }

    /// True when a socket of any kind uses `port` locally.
    fn port_taken(&self, sockets: &SocketSet<'static>, port: u16) -> bool {
        self.listening_on(port)
            || self.udp_bound(sockets, port)
            || self.entries.values().any(|entry| match entry {
                Entry::Stream { handle, .. } => sockets
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
        if port == 0 {
            return Err(Error::InvalidInput);
        }
        if self.listening_on(port) {
            return Err(Error::AddressInUse);
        }
        let id = self.next_id();
        self.listeners.insert(
            id,
            Listener {
                port,
                listening: Vec::new(),
                pending: VecDeque::new(),
            },
        );
        self.replenish(sockets);
        if self.listeners[&id].listening.is_empty() {
            self.listeners.remove(&id);
            return Err(Error::TooManySockets);
        }
        Ok(id)
    }

    /// Keeps every listener's `backlog` sockets listening, and moves those that took a
    /// connection to the listener's queue. The service calls it after every received
    /// packet that changed a socket, so each SYN of a burst finds a listening socket.
    pub fn replenish(&mut self, sockets: &mut SocketSet<'static>) {
        let limits = self.limits;
        for listener in self.listeners.values_mut() {
            let mut index = 0;
            while index < listener.listening.len() {
                let handle = listener.listening[index];
                if sockets.get::<tcp::Socket>(handle).state() == tcp::State::Listen {
                    index += 1;
                } else {
                    let handle = listener.listening.swap_remove(index);
                    listener.pending.push_back((handle, self.now_ms));
                }
            }
            if listener.pending.len() >= limits.pending {
                continue;
            }
            while listener.listening.len() < limits.backlog && self.in_use < limits.sockets {
                let mut socket = tcp_socket(&limits);
                if socket
                    .listen(IpListenEndpoint {
                        addr: None,
                        port: listener.port,
                    })
                    .is_err()
                {
                    break;
                }
                self.in_use += 1;
                listener.listening.push(sockets.add(socket));
            }
        }
    }

    /// After a poll: refills the listeners, and removes the connections that finished
    /// closing (or took longer than the linger time, which are aborted).
    pub fn maintain(&mut self, sockets: &mut SocketSet<'static>, now_ms: u64) {
        // Pending connections that were reset before anyone accepted them.
        self.now_ms = now_ms;
        let handshake = self.limits.handshake_ms;
        let mut dead = Vec::new();
        for listener in self.listeners.values_mut() {
            listener.pending.retain(|&(handle, since)| {
                let socket = sockets.get_mut::<tcp::Socket>(handle);
                let state = socket.state();
                let stale =
                    state == tcp::State::SynReceived && now_ms.saturating_sub(since) > handshake;
                if stale {
                    socket.abort();
                    // Aborted sockets go through the closing list, so the reset is sent.
                    self.closing.push((handle, now_ms));
                    return false;
                }
                if state == tcp::State::Closed {
                    dead.push(handle);
                }
                state != tcp::State::Closed
            });
        }
        for handle in dead {
            self.remove(sockets, handle);
        }
        self.replenish(sockets);
        let linger = self.limits.linger_ms;
        let mut finished = Vec::new();
        self.closing.retain(|&(handle, since)| {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            let state = socket.state();
            if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
                finished.push(handle);
                false
            } else if now_ms.saturating_sub(since) > linger {
                socket.abort();
                // Keep it one more poll so the reset goes out.
                true
            } else {
                true
            }
        });
        for handle in finished {
            self.remove(sockets, handle);
        }
    }

    /// Takes a connection the listener `id` holds, with its peer's address.
    pub fn accept(
        &mut self,
        sockets: &mut SocketSet<'static>,
        id: SocketId,
    ) -> Result<Option<(SocketId, SocketAddrV4)>> {
        let Some(Listener { pending, .. }) = self.listeners.get_mut(&id) else {
            return Err(Error::InvalidInput);
        };
        let Some(position) = pending
            .iter()
            .position(|&(handle, _)| established(sockets.get::<tcp::Socket>(handle).state()))
        else {
            return Ok(None);
        };
        let (handle, _) = pending.remove(position).expect("position is in range");
        let socket = sockets.get::<tcp::Socket>(handle);
        let peer = socket
            .remote_endpoint()
            .map_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), ipv4);
        let stream = self.insert(Entry::Stream { handle, peer });
        Ok(Some((stream, peer)))
    }

    fn stream(&self, id: SocketId) -> Result<SocketHandle> {
        match self.entries.get(&id) {
            Some(Entry::Stream { handle, .. }) => Ok(*handle),
            Some(_) => Err(Error::InvalidInput),
            None if self.listeners.contains_key(&id) => Err(Error::NotConnected),
            None => Err(Error::InvalidInput),
        }
    }

    fn udp(&self, id: SocketId) -> Result<SocketHandle> {
        match self.entries.get(&id) {
            Some(Entry::Udp { handle }) => Ok(*handle),
            _ => Err(Error::InvalidInput),
        }
    }

    /// Returns the peer of the stream `id`.
    pub fn peer(&self, id: SocketId) -> Result<SocketAddrV4> {
        match self.entries.get(&id) {
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
        Ok(self.insert(Entry::Stream { handle, peer: to }))
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
            let mut data = vec![0; wanted];
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
        let buffer = |limits: &Limits| {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; 64],
                vec![0; limits.udp_buffer],
            )
        };
        let mut socket = udp::Socket::new(buffer(&self.limits), buffer(&self.limits));
        socket.bind(port).map_err(|_| Error::InvalidInput)?;
        self.in_use += 1;
        let handle = sockets.add(socket);
        Ok((self.insert(Entry::Udp { handle }), port))
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
            Ok((data, meta)) => Ok(Some((data.to_vec(), ipv4(meta.endpoint)))),
            Err(udp::RecvError::Exhausted) => Ok(None),
            Err(udp::RecvError::Truncated) => Err(Error::InvalidInput),
        }
    }

    /// Gives up the socket `id`: a stream finishes sending and closes (aborted if the
    /// application left data unread); a listener refuses its pending connections.
    pub fn close(&mut self, sockets: &mut SocketSet<'static>, id: SocketId, now_ms: u64) {
        if let Some(listener) = self.listeners.remove(&id) {
            for handle in listener.listening {
                self.remove(sockets, handle);
            }
            for (handle, _) in listener.pending {
                sockets.get_mut::<tcp::Socket>(handle).abort();
                self.closing.push((handle, now_ms));
            }
            return;
        }
        match self.entries.remove(&id) {
            Some(Entry::Stream { handle, .. }) => {
                let socket = sockets.get_mut::<tcp::Socket>(handle);
                if socket.recv_queue() > 0 {
                    socket.abort();
                } else {
                    socket.close();
                }
                self.closing.push((handle, now_ms));
            }
            Some(Entry::Udp { handle }) => self.remove(sockets, handle),
            None => {}
        }
    }

    /// Returns true when a call waiting for `want` on `id` should try again: it would
    /// now make progress or fail.
    pub fn is_ready(&self, sockets: &SocketSet<'static>, id: SocketId, want: Want) -> bool {
        if let Some(listener) = self.listeners.get(&id) {
            return want != Want::Accept
                || listener
                    .pending
                    .iter()
                    .any(|&(handle, _)| established(sockets.get::<tcp::Socket>(handle).state()));
        }
        let Some(entry) = self.entries.get(&id) else {
            return true;
        };
        match (entry, want) {
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
