//! The echo service (RFC 862) on TCP and UDP port 7: what arrives goes back.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};

/// The echo port.
pub const PORT: u16 = 7;
/// Bytes of each TCP socket's receive and send buffers.
const TCP_BUFFER: usize = 64 * 1024;

/// TCP and UDP echo on port 7, for up to `connections` TCP connections at once.
#[derive(Debug)]
pub struct EchoServer {
    tcp: Vec<SocketHandle>,
    udp: SocketHandle,
    scratch: Vec<u8>,
}

impl EchoServer {
    /// Adds the listening sockets to `sockets`.
    pub fn new(sockets: &mut SocketSet<'static>, connections: usize) -> Self {
        let tcp = (0..connections)
            .map(|_| {
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
                    tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
                );
                // Throughput: acknowledge at once instead of waiting for more data.
                socket.set_ack_delay(None);
                sockets.add(socket)
            })
            .collect();
        let udp = sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]),
        ));
        Self {
            tcp,
            udp,
            scratch: vec![0; TCP_BUFFER],
        }
    }

    /// Echoes what the sockets received; returns the bytes echoed.
    pub fn serve(&mut self, sockets: &mut SocketSet<'static>) -> usize {
        let mut echoed = 0;
        for &handle in &self.tcp {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            if !socket.is_open() {
                let _ = socket.listen(PORT);
                continue;
            }
            // Only take what can be sent back: a slow reader slows the writer down.
            while socket.can_recv() && socket.can_send() {
                let room = socket.send_capacity() - socket.send_queue();
                let wanted = room.min(self.scratch.len());
                let Ok(count) = socket.recv_slice(&mut self.scratch[..wanted]) else {
                    break;
                };
                if count == 0 {
                    break;
                }
                let sent = socket.send_slice(&self.scratch[..count]).unwrap_or(0);
                echoed += sent;
            }
            // The peer finished sending and everything went back: finish our half too.
            if socket.state() == tcp::State::CloseWait && socket.send_queue() == 0 {
                socket.close();
            }
        }
        let socket = sockets.get_mut::<udp::Socket>(self.udp);
        if !socket.is_open() {
            let _ = socket.bind(PORT);
        }
        while let Ok((count, meta)) = socket.recv_slice(&mut self.scratch) {
            if socket
                .send_slice(&self.scratch[..count], meta.endpoint)
                .is_ok()
            {
                echoed += count;
            }
        }
        echoed
    }
}
