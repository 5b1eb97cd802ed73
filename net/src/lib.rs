//! TCP/IP on top of a network device, for the net service that owns it.
//!
//! `smoltcp` does the protocols; this crate owns the `Device` trait that a driver
//! implements (virtio-net in `devices`, a simulated wire in the tests), adapts it to
//! smoltcp, and configures the interface: DHCPv4 with a static fallback for QEMU's user
//! networking (10.0.2.15/24, gateway 10.0.2.2). Time is passed in; nothing reads a clock.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod adapter;
mod device;
mod echo;
mod stack;

pub use device::{Device, Wire, WireEnd};
pub use echo::EchoServer;
pub use stack::{Addressing, Stack, FALLBACK_ADDRESS, FALLBACK_GATEWAY};
