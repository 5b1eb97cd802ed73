//! What a socket call can fail with.

use core::fmt;

/// Why a socket call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// There is no net service (no network device, or `--net none`), or its core
    /// failed.
    NoService,
    /// Another socket is bound to this port.
    AddressInUse,
    /// The peer refused the connection (or nobody answered it).
    ConnectionRefused,
    /// The connection was reset or aborted.
    ConnectionReset,
    /// The read timeout passed without data.
    TimedOut,
    /// The net core has as many sockets as it allows; close some first.
    TooManySockets,
    /// A bad argument: port 0 where one is needed, an unspecified address, an empty
    /// datagram larger than the socket's buffer.
    InvalidInput,
    /// The interface has no address yet (DHCP still running), or no route to the peer.
    NoAddress,
    /// The socket is not connected (it was never, or it is a listener).
    NotConnected,
    /// Our sending half is closed (after `shutdown`), so nothing more can be written.
    Closed,
    /// The net core has no memory for this now (its budget is spent); the sockets it
    /// has keep working.
    OutOfMemory,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::NoService => "no net service (none started, or its core failed)",
            Error::AddressInUse => "address in use",
            Error::ConnectionRefused => "connection refused",
            Error::ConnectionReset => "connection reset",
            Error::TimedOut => "timed out",
            Error::TooManySockets => "too many sockets",
            Error::InvalidInput => "invalid input",
            Error::NoAddress => "no address or no route",
            Error::NotConnected => "not connected",
            Error::Closed => "the sending half is closed",
            Error::OutOfMemory => "the net core is out of memory",
        })
    }
}

/// The result of a socket call.
pub type Result<T> = core::result::Result<T, Error>;
