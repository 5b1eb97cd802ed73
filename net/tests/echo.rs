//! The echo service over a simulated wire: TCP and UDP echo, many connections at once,
//! DHCP falling back to the static address, and malformed frames that change nothing.

use net::{Addressing, Device, EchoServer, Stack, Wire, WireEnd, FALLBACK_ADDRESS};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

fn network() -> (Stack<WireEnd>, EchoServer, Stack<WireEnd>) {
    let (server_end, client_end) = Wire::pair([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 256);
    let mut server = Stack::new(
        server_end,
        Addressing::Static(Ipv4Cidr::new(SERVER, 24), None),
        0,
    );
    let echo = EchoServer::new(server.sockets(), 40);
    let client = Stack::new(
        client_end,
        Addressing::Static(Ipv4Cidr::new(CLIENT, 24), None),
        0,
    );
    (server, echo, client)
}

fn tcp_client(client: &mut Stack<WireEnd>) -> SocketHandle {
    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    );
    client.sockets().add(socket)
}

/// Connects the client socket `handle` to the server's echo port from `port` (the socket
/// set is taken out while the context is borrowed: both live in the stack).
fn connect(client: &mut Stack<WireEnd>, handle: SocketHandle, port: u16) {
    let mut sockets = std::mem::replace(client.sockets(), smoltcp::iface::SocketSet::new(vec![]));
    sockets
        .get_mut::<tcp::Socket>(handle)
        .connect(client.context(), (SERVER, 7), port)
        .unwrap();
    *client.sockets() = sockets;
}

/// Byte `i` of client `c`'s stream.
fn byte(c: usize, i: usize) -> u8 {
    (i.wrapping_mul(31) ^ c.wrapping_mul(7)) as u8
}

/// Streams `length` bytes from each of `clients` connections through the echo server and
/// checks every byte that comes back. Returns the simulated milliseconds it took.
fn echo_streams(clients: usize, length: usize) -> u64 {
    let (mut server, mut echo, mut client) = network();
    let handles: Vec<SocketHandle> = (0..clients)
        .map(|c| {
            let handle = tcp_client(&mut client);
            connect(&mut client, handle, 50000 + c as u16);
            handle
        })
        .collect();
    let (mut sent, mut received) = (vec![0usize; clients], vec![0usize; clients]);
    let mut buffer = vec![0u8; 65536];
    for now in 0..2_000_000u64 {
        server.poll(now);
        echo.serve(server.sockets());
        client.poll(now);
        for (c, &handle) in handles.iter().enumerate() {
            let socket = client.sockets().get_mut::<tcp::Socket>(handle);
            if socket.can_send() && sent[c] < length {
                let chunk: Vec<u8> = (sent[c]..length.min(sent[c] + 8192))
                    .map(|i| byte(c, i))
                    .collect();
                sent[c] += socket.send_slice(&chunk).unwrap();
            }
            while socket.can_recv() {
                let count = socket.recv_slice(&mut buffer).unwrap();
                for (k, &b) in buffer[..count].iter().enumerate() {
                    assert_eq!(
                        b,
                        byte(c, received[c] + k),
                        "client {c} byte {}",
                        received[c] + k
                    );
                }
                received[c] += count;
            }
        }
        if received.iter().all(|&r| r == length) {
            return now;
        }
    }
    panic!("echo did not complete: received {received:?} of {length}");
}

#[test]
fn one_mebibyte_comes_back_byte_for_byte() {
    let millis = echo_streams(1, 1 << 20);
    // Simulated time: 1 ms per poll round; a 64 KiB window cannot move 1 MiB in a few.
    assert!(millis > 16, "took only {millis} rounds");
    eprintln!("1 MiB echoed in {millis} simulated ms");
}

#[test]
fn thirty_two_connections_each_get_their_own_data() {
    echo_streams(32, 20_000);
}

#[test]
fn udp_datagrams_are_echoed() {
    let (mut server, mut echo, mut client) = network();
    let socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
    );
    let handle = client.sockets().add(socket);
    client
        .sockets()
        .get_mut::<udp::Socket>(handle)
        .bind(40000)
        .unwrap();
    let mut answers = Vec::new();
    for now in 0..10_000u64 {
        if now < 5 {
            let message = format!("datagram {now}");
            client
                .sockets()
                .get_mut::<udp::Socket>(handle)
                .send_slice(message.as_bytes(), (SERVER, 7))
                .unwrap();
        }
        client.poll(now);
        server.poll(now);
        echo.serve(server.sockets());
        let socket = client.sockets().get_mut::<udp::Socket>(handle);
        let mut buffer = [0u8; 64];
        while let Ok((count, _)) = socket.recv_slice(&mut buffer) {
            answers.push(String::from_utf8(buffer[..count].to_vec()).unwrap());
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
fn without_a_dhcp_server_the_fallback_address_is_used() {
    let (end, _other) = Wire::pair([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 8], 256);
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
    let mut other = _other;
    assert!(
        other.receive(&mut frame).is_some(),
        "no DHCP discover was sent"
    );
}

#[test]
fn malformed_frames_do_not_stop_the_server() {
    let (mut server, mut echo, _client) = network();
    let mut state = 0x1234_5678u64;
    for length in (0..1514).step_by(7) {
        let frame: Vec<u8> = (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        server.device().inject(&frame);
    }
    // Truncated IPv4 and TCP headers behind a valid Ethernet header to the server's MAC.
    let mut ethernet = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    for cut in [1, 10, 19, 20, 30, 39] {
        let mut frame = ethernet.clone();
        frame.extend(std::iter::repeat_n(0x45u8, cut));
        server.device().inject(&frame);
    }
    ethernet.truncate(0);
    for now in 0..100 {
        server.poll(now);
        echo.serve(server.sockets());
    }
    // The server still echoes.
    drop(server);
    echo_streams(1, 10_000);
}
