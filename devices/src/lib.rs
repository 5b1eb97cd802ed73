//! Device drivers, each owned by exactly one core: the serial console and PCI.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod pci;
#[allow(unsafe_code)]
pub mod serial;
