//! The socket table over a simulated wire: two stacks, each with its own table, one
//! serving and one connecting, polled in lock step with simulated milliseconds.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use net::FALLBACK_ADDRESS;
use net::{
    Addressing, Device, Error, Limits, SocketId, Stack, Table, Want, Wire, WireEnd, MAX_DATAGRAM,
};
use percore::random::XorShift64;
use smoltcp::wire::Ipv4Cidr;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// One machine: a stack and its sockets.
struct Node {
    stack: Stack<WireEnd>,
    table: Table,
}

impl Node {
    fn new(end: WireEnd, address: Ipv4Addr, limits: Limits) -> Node {
        Node {
            stack: Stack::new(end, Addressing::Static(Ipv4Cidr::new(address, 24), None), 0),
            table: Table::new(limits),
        }
    }

    fn poll(&mut self, now: u64) {
        let table = &mut self.table;
        self.stack
            .poll_with(now, |sockets| table.replenish(sockets));
        self.table.maintain(self.stack.sockets(), now);
    }

    fn listen(&mut self, port: u16) -> Result<SocketId, Error> {
        let (sockets, _) = self.stack.parts();
        self.table.listen(sockets, port)
    }

    fn accept(&mut self, listener: SocketId) -> Option<SocketId> {
        let (sockets, _) = self.stack.parts();
        self.table
            .accept(sockets, listener)
            .unwrap()
            .map(|(id, _)| id)
    }

    fn connect(&mut self, to: SocketAddrV4) -> Result<SocketId, Error> {
        let (sockets, context) = self.stack.parts();
        self.table.connect(sockets, context, to)
    }

    fn read(&mut self, id: SocketId, max: usize) -> Result<Option<Vec<u8>>, Error> {
        let (sockets, _) = self.stack.parts();
        self.table.read(sockets, id, max)
    }

    fn write(&mut self, id: SocketId, data: &[u8]) -> Result<Option<usize>, Error> {
        let (sockets, _) = self.stack.parts();
        self.table.write(sockets, id, data)
    }

    fn close(&mut self, id: SocketId, now: u64) {
        let (sockets, _) = self.stack.parts();
        self.table.close(sockets, id, now);
    }

    fn ready(&mut self, id: SocketId, want: Want) -> bool {
        let (sockets, _) = self.stack.parts();
        self.table.is_ready(sockets, id, want)
    }
}

fn network(limits: Limits) -> (Node, Node) {
    let (server_end, client_end) = Wire::pair(SERVER_MAC, [2, 0, 0, 0, 0, 2], 512);
    (
        Node::new(server_end, SERVER, limits),
        Node::new(client_end, CLIENT, Limits::default()),
    )
}

/// An echo server on the table: accepts on `listener`, echoes every stream, closes a
/// stream once its peer finished and everything went back.
struct Echo {
    listener: SocketId,
    /// Each stream and the bytes read but not yet written back.
    streams: BTreeMap<SocketId, Vec<u8>>,
}

impl Echo {
    fn new(server: &mut Node) -> Echo {
        Echo {
            listener: server.listen(7).unwrap(),
            streams: BTreeMap::new(),
        }
    }

    fn serve(&mut self, server: &mut Node, now: u64) {
        while let Some(id) = server.accept(self.listener) {
            self.streams.insert(id, Vec::new());
        }
        let mut finished = Vec::new();
        for (&id, backlog) in &mut self.streams {
            if !backlog.is_empty() {
                if let Some(count) = server.write(id, backlog).unwrap() {
                    backlog.drain(..count);
                }
            }
            if backlog.is_empty() {
                match server.read(id, 16 * 1024).unwrap() {
                    Some(data) if data.is_empty() => finished.push(id),
                    Some(data) => *backlog = data,
                    None => {}
                }
            }
        }
        for id in finished {
            self.streams.remove(&id);
            server.close(id, now);
        }
    }
}

/// Byte `i` of client `c`'s stream.
fn byte(c: usize, i: usize) -> u8 {
    (i.wrapping_mul(31) ^ c.wrapping_mul(7)) as u8
}

/// Streams `length` bytes on each of `clients` connections, all opened at once, through
/// the echo server and checks every byte that comes back; closes them all and waits
/// until both tables hold no connection. Returns the simulated milliseconds it took.
fn echo_streams(
    server: &mut Node,
    echo: &mut Echo,
    client: &mut Node,
    clients: usize,
    length: usize,
) -> u64 {
    let ids: Vec<SocketId> = (0..clients)
        .map(|_| client.connect(SocketAddrV4::new(SERVER, 7)).unwrap())
        .collect();
    let (mut sent, mut received) = (vec![0usize; clients], vec![0usize; clients]);
    let mut closed = vec![false; clients];
    for now in 0..2_000_000u64 {
        client.poll(now);
        server.poll(now);
        echo.serve(server, now);
        for (c, &id) in ids.iter().enumerate() {
            if closed[c] {
                continue;
            }
            let connecting = !client.ready(id, Want::Connect);
            if connecting {
                continue;
            }
            if sent[c] < length {
                let chunk: Vec<u8> = (sent[c]..length.min(sent[c] + 8192))
                    .map(|i| byte(c, i))
                    .collect();
                sent[c] += client.write(id, &chunk).unwrap().unwrap_or(0);
            }
            while let Some(data) = client.read(id, 65536).unwrap() {
                assert!(!data.is_empty(), "client {c}: the server closed early");
                for (k, &b) in data.iter().enumerate() {
                    assert_eq!(
                        b,
                        byte(c, received[c] + k),
                        "client {c} byte {}",
                        received[c] + k
                    );
                }
                received[c] += data.len();
            }
            if received[c] == length {
                client.close(id, now);
                closed[c] = true;
            }
        }
        if closed.iter().all(|&done| done) && echo.streams.is_empty() {
            // Let the last FINs and ACKs through, then both sides must be empty.
            for later in now..now + 100 {
                client.poll(later);
                server.poll(later);
                echo.serve(server, later);
            }
            assert_eq!(client.table.sockets_in_use(), 0, "client sockets left");
            assert_eq!(
                server.table.sockets_in_use(),
                Limits::default().backlog,
                "server sockets beyond the listening ones"
            );
            return now;
        }
    }
    panic!("echo did not complete: received {received:?} of {length}");
}

#[test]
fn one_mebibyte_comes_back_byte_for_byte() {
    let (mut server, mut client) = network(Limits::default());
    let mut echo = Echo::new(&mut server);
    let millis = echo_streams(&mut server, &mut echo, &mut client, 1, 1 << 20);
    // 1 ms per poll round; a 32 KiB window cannot move 1 MiB in a few rounds.
    assert!(millis > 16, "took only {millis} rounds");
}

#[test]
fn a_burst_of_one_hundred_connections_is_all_accepted_and_echoed() {
    // All 100 SYNs reach the server in one poll, far more than the backlog of 8.
    let (mut server, mut client) = network(Limits::default());
    let mut echo = Echo::new(&mut server);
    echo_streams(&mut server, &mut echo, &mut client, 100, 20_000);
}

#[test]
fn two_hundred_fifty_six_connections_at_once_each_get_their_own_data() {
    let (mut server, mut client) = network(Limits::default());
    let mut echo = Echo::new(&mut server);
    echo_streams(&mut server, &mut echo, &mut client, 256, 4_000);
}

#[test]
fn a_thousand_sequential_connections_leave_nothing_behind() {
    let (mut server, mut client) = network(Limits::default());
    let mut echo = Echo::new(&mut server);
    let baseline = server.table.sockets_in_use();
    for _ in 0..10 {
        echo_streams(&mut server, &mut echo, &mut client, 100, 64);
        assert_eq!(server.table.sockets_in_use(), baseline);
        assert_eq!(server.table.len(), 1, "only the listener is left");
    }
}

#[test]
fn a_reader_that_does_not_read_holds_the_writer_back_and_loses_nothing() {
    let (mut server, mut client) = network(Limits::default());
    let listener = server.listen(9).unwrap();
    let id = client.connect(SocketAddrV4::new(SERVER, 9)).unwrap();
    let mut accepted = None;
    let mut written = 0usize;
    let mut blocked_at = None;
    for now in 0..5_000u64 {
        client.poll(now);
        server.poll(now);
        accepted = accepted.or_else(|| server.accept(listener));
        if client.ready(id, Want::Connect) {
            let chunk: Vec<u8> = (written..written + 4096).map(|i| byte(0, i)).collect();
            match client.write(id, &chunk).unwrap() {
                Some(count) => written += count,
                None if blocked_at.is_none() => blocked_at = Some(written),
                None => {}
            }
        }
    }
    let blocked_at = blocked_at.expect("the writer was never held back");
    // The receiver's buffer and the sender's buffer together, no more.
    assert!(
        blocked_at <= Limits::default().receive_buffer + Limits::default().send_buffer,
        "{blocked_at} bytes taken"
    );
    let accepted = accepted.expect("the connection was accepted");
    assert!(
        !client.ready(id, Want::Write),
        "room appeared without reading"
    );
    // Now read everything: every byte arrives, in order.
    let mut read = 0usize;
    for now in 5_000..20_000u64 {
        client.poll(now);
        server.poll(now);
        while let Some(data) = server.read(accepted, 65536).unwrap() {
            for (k, &b) in data.iter().enumerate() {
                assert_eq!(b, byte(0, read + k));
            }
            read += data.len();
        }
        if read == written {
            return;
        }
    }
    panic!("read {read} of {written}");
}

#[test]
fn udp_datagrams_go_both_ways() {
    let (mut server, mut client) = network(Limits::default());
    let (sockets, _) = server.stack.parts();
    let (served, port) = server.table.bind_udp(sockets, 7).unwrap();
    assert_eq!(port, 7);
    let (sockets, _) = server.stack.parts();
    assert_eq!(server.table.bind_udp(sockets, 7), Err(Error::AddressInUse));
    let (sockets, _) = client.stack.parts();
    let (asking, client_port) = client.table.bind_udp(sockets, 0).unwrap();
    assert!(client_port >= 49152);
    let mut answers = Vec::new();
    for now in 0..10_000u64 {
        if now < 5 {
            let (sockets, _) = client.stack.parts();
            let message = format!("datagram {now}");
            let to = SocketAddrV4::new(SERVER, 7);
            assert_eq!(
                client
                    .table
                    .send_to(sockets, asking, message.as_bytes(), to),
                Ok(Some(()))
            );
        }
        client.poll(now);
        server.poll(now);
        let (sockets, _) = server.stack.parts();
        while let Some((data, from)) = server.table.recv_from(sockets, served).unwrap() {
            assert_eq!(from, SocketAddrV4::new(CLIENT, client_port));
            server.table.send_to(sockets, served, &data, from).unwrap();
        }
        let (sockets, _) = client.stack.parts();
        while let Some((data, _)) = client.table.recv_from(sockets, asking).unwrap() {
            answers.push(String::from_utf8(data).unwrap());
        }
        if answers.len() == 5 {
            break;
        }
    }
    assert_eq!(
        answers,
        (0..5).map(|n| format!("datagram {n}")).collect::<Vec<_>>()
    );
}

#[test]
fn a_datagram_that_needs_fragments_is_refused() {
    let (mut client, _) = network(Limits::default());
    let (sockets, _) = client.stack.parts();
    let (id, _) = client.table.bind_udp(sockets, 0).unwrap();
    let to = SocketAddrV4::new(SERVER, 7);
    let (sockets, _) = client.stack.parts();
    assert_eq!(
        client.table.send_to(sockets, id, &[7; MAX_DATAGRAM], to),
        Ok(Some(()))
    );
    let (sockets, _) = client.stack.parts();
    assert_eq!(
        client
            .table
            .send_to(sockets, id, &[7; MAX_DATAGRAM + 1], to),
        Err(Error::InvalidInput)
    );
}

#[test]
fn a_connection_nobody_listens_for_is_refused() {
    let (mut server, mut client) = network(Limits::default());
    let id = client.connect(SocketAddrV4::new(SERVER, 1234)).unwrap();
    for now in 0..100 {
        client.poll(now);
        server.poll(now);
    }
    assert!(client.ready(id, Want::Connect));
    let (sockets, _) = client.stack.parts();
    assert_eq!(
        client.table.connected(sockets, id),
        Err(Error::ConnectionRefused)
    );
}

#[test]
fn bad_calls_get_errors_not_panics() {
    let (mut server, mut client) = network(Limits::default());
    let listener = server.listen(80).unwrap();
    assert_eq!(server.listen(80), Err(Error::AddressInUse));
    assert_eq!(server.listen(0), Err(Error::InvalidInput));
    assert_eq!(server.read(listener, 10), Err(Error::NotConnected));
    assert_eq!(server.write(listener, b"x"), Err(Error::NotConnected));
    assert_eq!(
        client.connect(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80)),
        Err(Error::InvalidInput)
    );
    assert_eq!(
        client.connect(SocketAddrV4::new(SERVER, 0)),
        Err(Error::InvalidInput)
    );
    // A closed id is stale, and stays stale: ids are never reused.
    server.close(listener, 0);
    assert_eq!(server.read(listener, 10), Err(Error::InvalidInput));
    let again = server.listen(80).unwrap();
    assert_ne!(again, listener);
    assert!(
        server.ready(listener, Want::Read),
        "a stale id wakes its waiter"
    );
}

#[test]
fn the_socket_limit_is_enforced() {
    let limits = Limits {
        sockets: 12,
        ..Limits::default()
    };
    let (mut server, mut client) = network(limits);
    let _listener = server.listen(7).unwrap();
    // 8 listening; 4 more connections fit, then SYNs are refused.
    let ids: Vec<SocketId> = (0..16)
        .map(|_| client.connect(SocketAddrV4::new(SERVER, 7)).unwrap())
        .collect();
    for now in 0..200 {
        client.poll(now);
        server.poll(now);
    }
    assert!(server.table.sockets_in_use() <= 12);
    let (sockets, _) = client.stack.parts();
    let refused = ids
        .iter()
        .filter(|&&id| client.table.connected(sockets, id) == Err(Error::ConnectionRefused))
        .count();
    assert!(refused >= 2, "only {refused} refused");
    assert_eq!(server.listen(8), Err(Error::TooManySockets));
}

#[test]
fn a_peer_that_never_finishes_closing_is_aborted_after_the_linger_time() {
    let (mut server, mut client) = network(Limits::default());
    let listener = server.listen(7).unwrap();
    let _id = client.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    let mut accepted = None;
    for now in 0..100 {
        client.poll(now);
        server.poll(now);
        accepted = accepted.or_else(|| server.accept(listener));
    }
    let accepted = accepted.unwrap();
    let in_use = server.table.sockets_in_use();
    // The server closes; the client never polls again (a vanished peer).
    server.close(accepted, 100);
    for now in (100..30_000).step_by(50) {
        server.poll(now);
    }
    assert_eq!(server.table.sockets_in_use(), in_use - 1);
}

#[test]
fn without_a_dhcp_server_the_fallback_address_is_used() {
    let (end, mut other) = Wire::pair([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 8], 256);
    let mut stack = Stack::new(
        end,
        Addressing::Dhcp {
            fallback_after_ms: 3000,
        },
        0,
    );
    for now in (0..2999).step_by(100) {
        stack.poll(now);
        assert_eq!(stack.address(), None, "no address before the fallback time");
    }
    stack.poll(3000);
    assert_eq!(stack.address(), Some((FALLBACK_ADDRESS, "fallback")));
    // It did ask: DHCP discovers went out on the wire.
    let mut frame = [0u8; 1514];
    assert!(
        other.receive(&mut frame).is_some(),
        "no DHCP discover was sent"
    );
}

#[test]
fn malformed_frames_do_not_stop_the_server() {
    let (mut server, mut client) = network(Limits::default());
    let mut random = XorShift64::new(0x1234_5678);
    for length in (0..1514).step_by(7) {
        let frame: Vec<u8> = (0..length).map(|_| random.next_u64() as u8).collect();
        server.stack.device().inject(&frame);
    }
    // Truncated IPv4 and TCP headers behind a valid Ethernet header to the server's MAC.
    let mut ethernet = SERVER_MAC.to_vec();
    ethernet.extend([2, 0, 0, 0, 0, 2, 0x08, 0x00]);
    for cut in [1, 10, 19, 20, 30, 39] {
        let mut frame = ethernet.clone();
        frame.extend(std::iter::repeat_n(0x45u8, cut));
        server.stack.device().inject(&frame);
    }
    for now in 0..100 {
        server.poll(now);
    }
    // The server still echoes.
    let mut echo = Echo::new(&mut server);
    echo_streams(&mut server, &mut echo, &mut client, 4, 10_000);
}

#[test]
fn half_open_connections_are_dropped_after_the_handshake_time() {
    let (mut server, mut client) = network(Limits::default());
    let listener = server.listen(7).unwrap();
    let baseline = server.table.sockets_in_use();
    // Twenty SYNs whose sender then vanishes (the client never polls again).
    for _ in 0..20 {
        client.connect(SocketAddrV4::new(SERVER, 7)).unwrap();
    }
    // ARP, then the SYNs; the client is not polled after that.
    for now in 0..2 {
        client.poll(now);
        server.poll(now);
    }
    for now in 2..100 {
        server.poll(now);
    }
    assert_eq!(
        server.table.sockets_in_use(),
        baseline + 20,
        "the SYNs were taken"
    );
    for now in (100..7_000).step_by(10) {
        server.poll(now);
    }
    assert_eq!(
        server.table.sockets_in_use(),
        baseline,
        "half-open connections left"
    );
    assert_eq!(server.accept(listener), None);
}
