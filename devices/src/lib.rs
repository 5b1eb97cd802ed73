//! Device drivers, each owned by exactly one core: the serial console, PCI, the
//! virtio-pci and virtio-mmio transports and virtqueues, the blk and net devices, and the
//! real-time clock the boot core reads once.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod disk;
#[allow(unsafe_code)]
pub mod mmio;
pub mod netdev;
pub mod pci;
pub mod rtc;
#[allow(unsafe_code)]
pub mod serial;
pub mod transport;
pub mod virtio;
pub mod virtio_mmio;
pub mod virtio_pci;
