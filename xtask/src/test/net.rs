//! net tests: `echo` on QEMU's user networking at every core count (DHCP, 1 MiB byte for
//! byte, 100 connections at once, UDP), and with malformed frames injected through a hub.

use std::thread;
use std::time::{Duration, Instant};

use super::runner::{require_line, require_no_fatal, Case, CaseResult, Context, WithTail};
use crate::qemu::{self, Machine};
use crate::tools;

/// Returns the net tests.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for machine in [Machine::Q35, Machine::Pc, Machine::Microvm] {
        cases.push(Case::boot(
            format!("echo {} tcp+udp", machine.name()),
            move |context: &Context| run_echo(context, machine, 4, false),
        ));
        cases.push(Case::boot(
            format!("net {} malformed frames", machine.name()),
            move |context: &Context| run_echo(context, machine, 4, true),
        ));
    }
    // Every size a user can choose: the net service shares a core below four.
    for cores in [1, 2, 3] {
        cases.push(Case::boot(
            format!("echo q35 x{cores} tcp+udp"),
            move |context: &Context| run_echo(context, Machine::Q35, cores, false),
        ));
    }
    cases
}

/// Byte `i` of connection `c`'s stream in the echo test.
fn echo_byte(c: usize, i: usize) -> u8 {
    (i.wrapping_mul(31) ^ c.wrapping_mul(101)) as u8
}

/// Opens connection `c` to the echo server on `port` and waits until its first byte came
/// back, so the connection surely reached the guest.
fn open_echo(port: u16, c: usize) -> Result<std::net::TcpStream, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|error| format!("connection {c}: connect: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|error| error.to_string())?;
    let mut first = [echo_byte(c, 0)];
    stream
        .write_all(&first)
        .and_then(|()| stream.read_exact(&mut first))
        .map_err(|error| format!("connection {c}: first byte: {error}"))?;
    if first[0] != echo_byte(c, 0) {
        return Err(format!("connection {c}: byte 0 differs"));
    }
    Ok(stream)
}

/// Sends bytes 1..`length` of connection `c` on `stream` (byte 0 went in `open_echo`)
/// while reading them back, and checks every one.
fn echo_rest(mut stream: std::net::TcpStream, c: usize, length: usize) -> Result<(), String> {
    use std::io::{Read, Write};
    let data: Vec<u8> = (1..length).map(|i| echo_byte(c, i)).collect();
    let mut writer = stream.try_clone().map_err(|error| error.to_string())?;
    let sender = thread::spawn(move || writer.write_all(&data));
    let mut back = vec![0u8; length - 1];
    stream
        .read_exact(&mut back)
        .map_err(|error| format!("connection {c}: {error}"))?;
    sender
        .join()
        .map_err(|_| "writer panicked".to_string())?
        .map_err(|error| error.to_string())?;
    match back
        .iter()
        .enumerate()
        .find(|(i, &byte)| byte != echo_byte(c, *i + 1))
    {
        Some((i, _)) => Err(format!("connection {c}: byte {} differs", i + 1)),
        None => Ok(()),
    }
}

/// Sends `length` bytes on a new connection to `port` and checks that they come back.
fn echo_stream(port: u16, c: usize, length: usize) -> Result<(), String> {
    echo_rest(open_echo(port, c)?, c, length)
}

/// Connections the echo test holds open at once, all streaming together.
///
/// They are opened one after the other: QEMU's user networking listens on the host with
/// a backlog of one, so a burst of connects overflows the host's accept queue, and the
/// host kernel then retries the handshake with backoff for up to half a minute before
/// the guest ever sees a SYN (a packet capture shows those connections never reach the
/// guest). Once open, all of them stream at the same time.
const CONCURRENT_CONNECTIONS: usize = 100;

/// Echoes 1 MiB on one connection, retrying while the guest boots: until it has its
/// address, QEMU's user networking accepts and then resets connections.
fn echo_first(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(40);
    while let Err(error) = echo_stream(port, 0, 1 << 20) {
        if Instant::now() >= deadline {
            return Err(format!("the first echo never worked: {error}"));
        }
        thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

/// The host side of the echo test, run while the guest serves.
fn echo_client(port: u16) -> Result<(), String> {
    echo_tcp(port)?;
    echo_udp(port)
}

/// The TCP part of the echo test: 1 MiB on one connection, then many at once.
fn echo_tcp(port: u16) -> Result<(), String> {
    echo_first(port)?;
    let streams = (1..=CONCURRENT_CONNECTIONS)
        .map(|c| open_echo(port, c).map(|stream| (c, stream)))
        .collect::<Result<Vec<_>, String>>()?;
    let clients: Vec<_> = streams
        .into_iter()
        .map(|(c, stream)| thread::spawn(move || echo_rest(stream, c, 4096)))
        .collect();
    for client in clients {
        client
            .join()
            .map_err(|_| "a client panicked".to_string())??;
    }
    Ok(())
}

/// The UDP part of the echo test, through the forwarded port.
fn echo_udp(port: u16) -> Result<(), String> {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
    udp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|error| error.to_string())?;
    let mut buffer = [0u8; 64];
    for attempt in 0..5 {
        let message = format!("datagram {attempt}");
        udp.send_to(message.as_bytes(), ("127.0.0.1", port))
            .map_err(|error| error.to_string())?;
        if let Ok((count, _)) = udp.recv_from(&mut buffer) {
            if &buffer[..count] == message.as_bytes() {
                return Ok(());
            }
        }
    }
    Err("no UDP echo".into())
}

/// Sends an ARP request for the guest through the injection socket and waits for the
/// reply (frames from user networking also arrive there and are skipped).
fn arp_answered(socket: &std::net::UdpSocket, qemu: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = vec![0u8; 65536];
    while Instant::now() < deadline {
        socket
            .send_to(&crate::frames::arp_request(), ("127.0.0.1", qemu))
            .map_err(|error| format!("inject: {error}"))?;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Ok(count) = socket.recv(&mut buffer) {
                if crate::frames::is_arp_reply(&buffer[..count]) {
                    return Ok(());
                }
            }
        }
    }
    Err("the guest did not answer ARP through the injection socket".into())
}

/// The host side of the malformed-frames test: the echo works, ARP through the
/// injection socket is answered (so injected frames reach the stack), then the
/// catalogue of malformed frames goes in, and ARP, TCP and UDP echo still work.
fn inject_malformed(port: u16, qemu: u16, socket: &std::net::UdpSocket) -> Result<(), String> {
    echo_first(port)?;
    arp_answered(socket, qemu)?;
    let frames = crate::frames::malformed(0x6d61_6e61_6461);
    for (round, (name, frame)) in frames.iter().enumerate() {
        socket
            .send_to(frame, ("127.0.0.1", qemu))
            .map_err(|error| format!("inject {name}: {error}"))?;
        // Let the guest's receive ring drain now and then, so frames are not simply
        // dropped by QEMU for want of buffers.
        if round % 64 == 63 {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let after = |error: String| format!("after {} malformed frames: {error}", frames.len());
    arp_answered(socket, qemu).map_err(after)?;
    // UDP through the injection socket: QEMU's user networking also sees the injected
    // frames (it sits on the same hub), which confuses its own UDP forwarding.
    udp_echo_injected(socket, qemu).map_err(after)?;
    echo_tcp(port).map_err(after)
}

/// Sends a UDP datagram to the guest's echo port through the injection socket and waits
/// for it to come back.
fn udp_echo_injected(socket: &std::net::UdpSocket, qemu: u16) -> Result<(), String> {
    let mut buffer = vec![0u8; 65536];
    for attempt in 0..5 {
        let payload = format!("injected datagram {attempt}");
        socket
            .send_to(
                &crate::frames::udp_datagram(7, payload.as_bytes()),
                ("127.0.0.1", qemu),
            )
            .map_err(|error| format!("inject: {error}"))?;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Ok(count) = socket.recv(&mut buffer) {
                if crate::frames::udp_payload_to_fake_host(&buffer[..count])
                    == Some(payload.as_bytes())
                {
                    return Ok(());
                }
            }
        }
    }
    Err("no UDP echo through the injection socket".into())
}

/// `echo` on user networking, checked from the host through a forwarded port; with
/// `malformed`, also with frames injected through a hub.
fn run_echo(context: &Context, machine: Machine, cores: usize, malformed: bool) -> CaseResult {
    let port = tools::free_port()?;
    let mut config = context.config(machine, cores, "echo");
    config.net = Some(vec![(port, 7)]);
    let injector = if malformed {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|error| error.to_string())?;
        let own = socket
            .local_addr()
            .map_err(|error| error.to_string())?
            .port();
        let qemu = tools::free_port()?;
        config.inject = Some((qemu, own));
        Some((socket, qemu))
    } else {
        None
    };
    let (outcome, client) = qemu::serve_while(&config, context.timeout, |_| match &injector {
        Some((socket, qemu)) => inject_malformed(port, *qemu, socket),
        None => echo_client(port),
    });
    let outcome = outcome?;
    require_no_fatal(&outcome)?;
    client.tail_of(&outcome)?;
    require_line(&outcome, "manada: net: address 10.0.2.15/24")
}
