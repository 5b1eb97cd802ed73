//! Device drivers, each owned by exactly one core. For now: the serial console.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod serial;
