//! TCP/IP on top of a network device, for the net service that owns it.
//!
//! `smoltcp` does the protocols; this crate owns the `Device` trait that a driver
//! implements (virtio-net in `devices`, a simulated wire in the tests), adapts it to
//! smoltcp, and configures the interface: DHCPv4 with a static fallback for QEMU's user
//! networking (10.0.2.15/24, gateway 10.0.2.2). Time is passed in; nothing reads a clock.
//!
//! On top of that sit the applications' sockets: the [`Table`] of sockets (pure logic,
//! tested on the host over a simulated wire), the net service that owns the stack on the
//! net core (`service`), and the `std::net`-shaped [`TcpListener`], [`TcpStream`] and
//! [`UdpSocket`] that threads on any core use by message to that core (`socket`), and
//! [`HandlerListener`], whose connections a [`Handler`] runs on the net core itself.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod adapter;
mod device;
mod error;
mod handler;
mod handlers;
pub mod service;
mod socket;
mod stack;
mod table;
pub mod trace;

pub use core::net::{Ipv4Addr, SocketAddrV4};
pub use device::{ChecksumOffload, Device, Wire, WireEnd};
pub use error::{Error, Result};
pub use handler::{try_box, Event, Handler, Io, Next};
pub use socket::{HandlerListener, TcpListener, TcpStream, UdpSocket};
pub use stack::{Addressing, Stack, FALLBACK_ADDRESS, FALLBACK_GATEWAY};
pub use table::{Limits, SocketId, Table, Want, MAX_DATAGRAM};
