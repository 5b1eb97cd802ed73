//! `echo`: TCP and UDP echo (RFC 862) on port 7, served by application threads through
//! the net core's sockets. Run with `cargo xtask run --app echo --forward 7777:7` and talk
//! to 127.0.0.1:7777 from the host. The app runs until QEMU is stopped.
//!
//! Every application core runs a thread accepting on the one listener; each connection
//! gets its own thread on the core that accepted it. TCP port 8 answers each connection
//! with one status line, `net-heap-bytes N sockets M`: the bytes in use on the net core's
//! heap and the sockets its table holds (`cargo xtask bench net` checks them before and
//! after 100,000 connections).

use alloc::format;
use alloc::sync::Arc;
use alloc::vec;

use net::{TcpListener, TcpStream, UdpSocket};
use percore::println;

use manada::{app_cores, App, AppError};

pub(crate) const APP: App = App {
    name: "echo",
    summary: "TCP and UDP echo on port 7 from every application core; runs until stopped",
    main,
};

/// The echo port.
const PORT: u16 = 7;
/// The status port.
const STATUS_PORT: u16 = 8;
/// Bytes read (and written back) at a time.
const CHUNK: usize = 16 * 1024;

fn main() -> Result<(), AppError> {
    let listener =
        Arc::new(TcpListener::bind(PORT).map_err(|_| AppError("cannot listen on TCP port 7"))?);
    let udp = UdpSocket::bind(PORT).map_err(|_| AppError("cannot bind UDP port 7"))?;
    let status =
        TcpListener::bind(STATUS_PORT).map_err(|_| AppError("cannot listen on TCP port 8"))?;
    let cores = app_cores();
    for &core in &cores {
        let listener = listener.clone();
        // The acceptors never end; nobody joins them.
        let _ = percore::spawn_on(core, move || accept_forever(&listener));
    }
    let _ = percore::spawn(move || serve_udp(&udp));
    let _ = percore::spawn(move || serve_status(&status));
    println!("echo: TCP and UDP port {PORT} on cores {cores:?}, status on TCP port {STATUS_PORT}; stop QEMU to end");
    loop {
        percore::sleep(core::time::Duration::from_secs(3600));
    }
}

fn accept_forever(listener: &TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = percore::spawn(move || echo_stream(stream));
            }
            Err(error) => {
                println!("echo: accept failed: {error}");
                percore::sleep(core::time::Duration::from_millis(100));
            }
        }
    }
}

/// Sends back what arrives until the peer closes, then closes.
fn echo_stream(mut stream: TcpStream) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(count) => {
                if stream.write_all(&buffer[..count]).is_err() {
                    return;
                }
            }
        }
    }
}

fn serve_udp(socket: &UdpSocket) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match socket.recv_from(&mut buffer) {
            Ok((count, from)) => {
                let _ = socket.send_to(&buffer[..count], from);
            }
            Err(error) => {
                println!("echo: UDP receive failed: {error}");
                percore::sleep(core::time::Duration::from_millis(100));
            }
        }
    }
}

fn serve_status(listener: &TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept() else {
            continue;
        };
        let line = match net::service::usage() {
            Ok((bytes, sockets)) => format!("net-heap-bytes {bytes} sockets {sockets}\n"),
            Err(error) => format!("error {error}\n"),
        };
        let _ = stream.write_all(line.as_bytes());
        let _ = stream.shutdown();
    }
}
