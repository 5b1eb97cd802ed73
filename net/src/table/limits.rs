//! The sizes and limits of the socket table, and how they follow from the memory the
//! net core has.

/// The sizes and limits of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// smoltcp sockets at most (listening, pending, open and closing together).
    pub sockets: usize,
    /// Sockets each listener keeps listening, so a burst of SYNs finds them.
    pub backlog: usize,
    /// Connections a listener holds that nobody accepted yet; beyond it, new SYNs are
    /// refused until the application accepts.
    pub pending: usize,
    /// Bytes of each TCP socket's receive buffer (the most a peer may send ahead).
    pub receive_buffer: usize,
    /// Bytes of each TCP socket's send buffer.
    pub send_buffer: usize,
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
            receive_buffer: RECEIVE_BUFFER,
            send_buffer: SEND_BUFFER,
            udp_buffer: 64 * 1024,
            linger_ms: 10_000,
            handshake_ms: 5_000,
        }
    }
}

/// Bytes of a TCP receive buffer: a whole HTTP request head of the usual limit (8 KiB)
/// fits, and a waiting connection stays cheap.
pub const RECEIVE_BUFFER: usize = 8 * 1024;
/// Bytes of a TCP send buffer: a small page and its head go out in one piece, and
/// bulk sends keep a few segments in flight.
pub const SEND_BUFFER: usize = 16 * 1024;
/// Bytes a TCP socket costs besides its buffers: smoltcp's socket (with its slot in
/// the socket set), the table's entry and a connection handler's small state, rounded
/// up.
pub const SOCKET_OVERHEAD: usize = 2 * 1024;
/// The fewest sockets the table is given, however short memory is: a listener and a
/// few connections.
pub const MIN_SOCKETS: usize = 16;
/// The most sockets: beyond this, smoltcp's linear walks over all sockets per packet
/// cost more than another connection is worth.
pub const MAX_SOCKETS: usize = 16 * 1024;

impl Limits {
    /// Returns the bytes one TCP socket of these limits costs, buffers included.
    pub fn bytes_per_socket(&self) -> usize {
        self.receive_buffer + self.send_buffer + SOCKET_OVERHEAD
    }

    /// Returns the limits for a net core with `free_bytes` of heap left when the
    /// service starts: half of it may go to sockets (the rest stays for the stack, the
    /// calls in flight, connection handlers' caches and any other service on the
    /// core), so the socket limit is that half over the cost of one socket, within
    /// `MIN_SOCKETS` and `MAX_SOCKETS`. Past the limit new connections are refused;
    /// the memory behind it is there.
    pub fn for_memory(free_bytes: usize) -> Limits {
        let defaults = Limits::default();
        let budget = free_bytes / 2;
        let sockets = (budget / defaults.bytes_per_socket()).clamp(MIN_SOCKETS, MAX_SOCKETS);
        Limits {
            sockets,
            // Half the sockets may wait for an application's accept.
            pending: (sockets / 2).clamp(defaults.backlog, 4096),
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_limit_follows_memory() {
        // 119 MiB free (a net core of a 4-core guest with 512 MiB).
        let limits = Limits::for_memory(119 << 20);
        assert!(limits.sockets >= 2000, "{limits:?}");
        assert!(limits.sockets * limits.bytes_per_socket() <= (119 << 20) / 2);
        // A small guest still gets a few sockets, and never more than it can back
        // with half its memory once past the minimum.
        let small = Limits::for_memory(8 << 20);
        assert!(small.sockets >= MIN_SOCKETS);
        assert!(small.sockets * small.bytes_per_socket() <= (8 << 20) / 2);
        assert_eq!(Limits::for_memory(0).sockets, MIN_SOCKETS);
        assert_eq!(Limits::for_memory(usize::MAX / 4).sockets, MAX_SOCKETS);
        assert!(limits.pending <= limits.sockets);
    }
}
