//! Connection handlers over a simulated wire: a line server run by its handler on the
//! server's stack, clients on another stack using the table's plain calls.

use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::Ipv4Cidr;

use super::*;
use crate::device::{Wire, WireEnd};
use crate::handler::{try_box, Handler, Typed};
use crate::stack::{Addressing, Stack};
use crate::table::{Limits, Want};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const PORT: u16 = 7;
/// The line server closes a connection idle this long.
const IDLE_MS: u64 = 400;

/// A handler that answers every line with `echo: LINE`, closes on `bye`, hands the
/// connection off on `thread`, and says `timeout` before closing an idle connection.
struct Lines {
    refuse: bool,
}

/// A line connection's state.
#[derive(Debug, Default)]
struct LineState {
    lines: u32,
    resumed: u32,
}

impl Handler for Lines {
    type Connection = LineState;

    fn open(&mut self, _peer: SocketAddrV4, _now_ms: u64) -> Option<LineState> {
        (!self.refuse).then(LineState::default)
    }

    fn event(&mut self, state: &mut LineState, io: &mut Io<'_>, event: Event, now_ms: u64) -> Next {
        if event == Event::TimedOut {
            io.send(b"timeout\n");
            return Next::Close;
        }
        if event == Event::Resumed {
            state.resumed += 1;
            io.send(b"resumed\n");
        }
        loop {
            let mut buffer = [0u8; 256];
            let count = io.peek(&mut buffer);
            let Some(end) = buffer[..count].iter().position(|&byte| byte == b'\n') else {
                if io.peer_closed() {
                    return Next::Close;
                }
                return Next::Read {
                    deadline_ms: Some(now_ms + IDLE_MS),
                };
            };
            let line = &buffer[..end];
            io.consume(end + 1);
            state.lines += 1;
            match line {
                b"bye" => return Next::Close,
                b"thread" => return Next::HandOff,
                _ => {
                    io.send(b"echo: ");
                    io.send(line);
                    io.send(b"\n");
                }
            }
        }
    }
}

/// The server: a stack, its table and the line handler's listener.
struct Server {
    stack: Stack<WireEnd>,
    table: Table,
    handlers: Handlers,
    listener: SocketId,
}

/// A client machine: a stack and its table.
struct Client {
    stack: Stack<WireEnd>,
    table: Table,
}

fn network(limits: Limits, refuse: bool) -> (Server, Client) {
    let (server_end, client_end) = Wire::pair([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 512);
    let address = |ip| Addressing::Static(Ipv4Cidr::new(ip, 24), None);
    let mut server = Server {
        stack: Stack::new(server_end, address(SERVER), 0),
        table: Table::new(limits),
        handlers: Handlers::try_new().unwrap(),
        listener: SocketId::new(0, 0),
    };
    let (sockets, _) = server.stack.parts();
    let handler = try_box(Typed(Lines { refuse })).unwrap();
    server.listener = server
        .handlers
        .bind(&mut server.table, sockets, PORT, handler)
        .unwrap();
    let client = Client {
        stack: Stack::new(client_end, address(CLIENT), 0),
        table: Table::new(Limits::default()),
    };
    (server, client)
}

impl Server {
    /// Polls in the net service's order: frames in, the handlers, frames out, then the
    /// table's upkeep.
    fn poll(&mut self, now: u64) {
        self.table.set_clock(now);
        let table = &mut self.table;
        self.stack
            .poll_ingress(now, |sockets| table.replenish(sockets));
        let (sockets, _) = self.stack.parts();
        self.handlers.run(&mut self.table, sockets, now);
        self.stack.poll_egress(now);
        self.table.maintain(self.stack.sockets(), now);
    }
}

impl Client {
    fn poll(&mut self, now: u64) {
        self.stack.poll(now);
        self.table.maintain(self.stack.sockets(), now);
    }

    fn connect(&mut self) -> SocketId {
        let (sockets, context) = self.stack.parts();
        self.table
            .connect(sockets, context, SocketAddrV4::new(SERVER, PORT))
            .unwrap()
    }

    fn send(&mut self, id: SocketId, data: &[u8]) {
        let (sockets, _) = self.stack.parts();
        assert_eq!(self.table.write(sockets, id, data), Ok(Some(data.len())));
    }

    /// Returns what arrived on `id` (empty: nothing), and whether the stream ended.
    fn take(&mut self, id: SocketId) -> (Vec<u8>, bool) {
        let (sockets, _) = self.stack.parts();
        match self.table.read(sockets, id, 64 * 1024) {
            Ok(Some(data)) if data.is_empty() => (data, true),
            Ok(Some(data)) => (data, false),
            Ok(None) => (Vec::new(), false),
            Err(_) => (Vec::new(), true),
        }
    }
}

/// Polls both sides from `from` for `steps` milliseconds; returns the time after.
fn run(server: &mut Server, client: &mut Client, from: u64, steps: u64) -> u64 {
    for now in from..from + steps {
        client.poll(now);
        server.poll(now);
    }
    from + steps
}

#[test]
fn a_handler_answers_many_connections_on_the_net_core_and_lets_them_go() {
    let (mut server, mut client) = network(Limits::default(), false);
    let baseline = server.table.sockets_in_use();
    let ids: Vec<SocketId> = (0..100).map(|_| client.connect()).collect();
    let mut now = run(&mut server, &mut client, 0, 50);
    for (index, &id) in ids.iter().enumerate() {
        client.send(id, format!("hello {index}\nsecond\n").as_bytes());
    }
    now = run(&mut server, &mut client, now, 50);
    for (index, &id) in ids.iter().enumerate() {
        let (data, ended) = client.take(id);
        assert_eq!(
            data,
            format!("echo: hello {index}\necho: second\n").as_bytes(),
            "connection {index}"
        );
        assert!(!ended);
        client.send(id, b"bye\n");
    }
    now = run(&mut server, &mut client, now, 100);
    for &id in &ids {
        assert!(client.take(id).1, "the server closed after bye");
        let (sockets, _) = client.stack.parts();
        client.table.close(sockets, id, now);
    }
    run(&mut server, &mut client, now, 2_000);
    assert_eq!(server.table.sockets_in_use(), baseline);
    assert_eq!(server.table.len(), 1, "only the listener is left");
}

#[test]
fn an_idle_connection_gets_its_deadline() {
    let (mut server, mut client) = network(Limits::default(), false);
    let id = client.connect();
    let mut now = run(&mut server, &mut client, 0, 20);
    client.send(id, b"one\n");
    now = run(&mut server, &mut client, now, 20);
    assert_eq!(client.take(id).0, b"echo: one\n");
    // Nothing for less than the idle time: still open.
    now = run(&mut server, &mut client, now, IDLE_MS - 100);
    assert_eq!(client.take(id), (Vec::new(), false));
    run(&mut server, &mut client, now, 200);
    let (data, _) = client.take(id);
    assert_eq!(data, b"timeout\n");
    assert!(client.take(id).1, "closed after the timeout");
}

#[test]
fn a_handed_off_connection_is_a_stream_until_it_is_resumed() {
    let (mut server, mut client) = network(Limits::default(), false);
    let id = client.connect();
    let mut now = run(&mut server, &mut client, 0, 20);
    assert_eq!(
        server
            .table
            .accept_handed(server.listener)
            .unwrap()
            .map(|_| ()),
        None
    );
    client.send(id, b"thread\nafter\n");
    now = run(&mut server, &mut client, now, 20);
    let (sockets, _) = server.stack.parts();
    assert!(server
        .table
        .is_ready(sockets, server.listener, Want::Accept));
    let (stream, peer, state) = server
        .table
        .accept_handed(server.listener)
        .unwrap()
        .expect("handed off");
    assert_eq!(*peer.ip(), CLIENT);
    let mut state = crate::handler::unbox::<LineState>(state).unwrap();
    assert_eq!(state.lines, 1);
    // The thread owns it: the handler does not run, so `after` stays unread.
    now = run(&mut server, &mut client, now, 20);
    assert_eq!(client.take(id).0, b"");
    let (sockets, _) = server.stack.parts();
    assert_eq!(
        server.table.write(sockets, stream, b"from the thread\n"),
        Ok(Some(16))
    );
    state.lines += 10;
    let boxed: AnyConnection = try_box(state).unwrap();
    let (sockets, _) = server.stack.parts();
    server.handlers.resume(
        &mut server.table,
        sockets,
        stream,
        server.listener,
        boxed,
        now,
    );
    run(&mut server, &mut client, now, 20);
    assert_eq!(
        client.take(id).0,
        b"from the thread\nresumed\necho: after\n".as_slice()
    );
    // A stale or foreign id cannot be resumed.
    assert!(server.table.resume(stream, server.listener).is_err());
}

#[test]
fn a_refused_connection_is_reset_and_the_limit_holds() {
    let (mut server, mut client) = network(Limits::default(), true);
    let id = client.connect();
    run(&mut server, &mut client, 0, 50);
    let (sockets, _) = client.stack.parts();
    assert!(client.table.write(sockets, id, b"x\n").is_err() || client.take(id).1);

    let limits = Limits {
        sockets: 12,
        ..Limits::default()
    };
    let (mut server, mut client) = network(limits, false);
    let ids: Vec<SocketId> = (0..20).map(|_| client.connect()).collect();
    let mut now = run(&mut server, &mut client, 0, 100);
    assert!(server.table.sockets_in_use() <= 12);
    let mut answered = 0;
    for &id in &ids {
        let (sockets, _) = client.stack.parts();
        if client.table.connected(sockets, id) == Ok(Some(())) {
            client.send(id, b"still here\n");
        }
    }
    now = run(&mut server, &mut client, now, 50);
    for &id in &ids {
        if client.take(id).0 == b"echo: still here\n" {
            answered += 1;
        }
    }
    run(&mut server, &mut client, now, 10);
    assert!(answered >= 4, "{answered} connections served");
    assert!(answered < 20, "the limit let every connection in");
}

#[test]
fn closing_the_listener_resets_its_connections() {
    let (mut server, mut client) = network(Limits::default(), false);
    let id = client.connect();
    let mut now = run(&mut server, &mut client, 0, 20);
    client.send(id, b"one\n");
    now = run(&mut server, &mut client, now, 20);
    assert_eq!(client.take(id).0, b"echo: one\n");
    let (sockets, _) = server.stack.parts();
    server.table.close(sockets, server.listener, now);
    server.handlers.remove(server.listener);
    run(&mut server, &mut client, now, 50);
    assert!(client.take(id).1, "reset");
    assert_eq!(server.table.len(), 0);
}

#[test]
fn connections_freed_by_their_peers_make_room_for_new_ones() {
    let limits = Limits {
        sockets: 12,
        ..Limits::default()
    };
    let (mut server, mut client) = network(limits, false);
    let ids: Vec<SocketId> = (0..20).map(|_| client.connect()).collect();
    let mut now = run(&mut server, &mut client, 0, 100);
    for &id in &ids {
        let (sockets, _) = client.stack.parts();
        if client.table.connected(sockets, id) == Ok(Some(())) {
            client.send(id, b"hello\n");
        }
    }
    now = run(&mut server, &mut client, now, 100);
    for &id in &ids {
        let (sockets, _) = client.stack.parts();
        client.table.close(sockets, id, now);
    }
    now = run(&mut server, &mut client, now, 3_000);
    assert!(
        server.table.sockets_in_use() <= Limits::default().backlog,
        "{}",
        server.table.sockets_in_use()
    );
    let id = client.connect();
    now = run(&mut server, &mut client, now, 50);
    client.send(id, b"again\n");
    run(&mut server, &mut client, now, 50);
    assert_eq!(client.take(id).0, b"echo: again\n");
}

/// A handler that waits for room for ever, whatever happens.
struct Stubborn;

impl Handler for Stubborn {
    type Connection = ();

    fn open(&mut self, _peer: SocketAddrV4, _now_ms: u64) -> Option<()> {
        Some(())
    }

    fn event(&mut self, _: &mut (), io: &mut Io<'_>, _: Event, _: u64) -> Next {
        let mut buffer = [0u8; 64];
        let count = io.peek(&mut buffer);
        io.consume(count);
        io.send(b"hi");
        Next::Write { deadline_ms: None }
    }
}

#[test]
fn a_reset_connection_is_freed_whatever_its_handler_waits_for() {
    let (mut server, mut client) = network(Limits::default(), false);
    let (sockets, _) = server.stack.parts();
    let stubborn = try_box(Typed(Stubborn)).unwrap();
    server
        .handlers
        .bind(&mut server.table, sockets, 8, stubborn)
        .unwrap();
    let baseline = server.table.sockets_in_use();
    let (sockets, context) = client.stack.parts();
    let id = client
        .table
        .connect(sockets, context, SocketAddrV4::new(SERVER, 8))
        .unwrap();
    let mut now = run(&mut server, &mut client, 0, 50);
    client.send(id, b"x");
    now = run(&mut server, &mut client, now, 50);
    assert_eq!(server.table.sockets_in_use(), baseline + 1);
    // The client closes with the server's bytes unread: a reset.
    let (sockets, _) = client.stack.parts();
    client.table.close(sockets, id, now);
    run(&mut server, &mut client, now, 2_000);
    assert_eq!(server.table.sockets_in_use(), baseline);
}

#[test]
fn a_server_that_slept_for_seconds_still_takes_the_next_connection() {
    let (mut server, mut client) = network(Limits::default(), false);
    run(&mut server, &mut client, 0, 50);
    // The server is not polled for 20 s (a service that halted), then a client comes.
    let id = client.connect();
    client.poll(20_000);
    let mut now = 20_001;
    for _ in 0..50 {
        server.poll(now);
        client.poll(now);
        now += 1;
    }
    client.send(id, b"awake\n");
    run(&mut server, &mut client, now, 20);
    assert_eq!(client.take(id).0, b"echo: awake\n");
}
