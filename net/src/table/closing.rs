//! The end of sockets: closing them, and the upkeep after each poll that reaps the
//! connections that finished closing, the half-open ones and those past their linger.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use super::entry::{listener_in, Entry, Inline, SocketId};
use super::Table;

impl Table {
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
}
