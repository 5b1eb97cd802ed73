//! Device drivers, each owned by exactly one core: the serial console, PCI, and the
//! virtio virtqueue and block protocol.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod pci;
#[allow(unsafe_code)]
pub mod serial;
pub mod virtio;
