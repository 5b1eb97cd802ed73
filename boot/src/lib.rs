//! Manada as a library: the kernel that boots an image, and the API its applications use.
//!
//! An image is a binary crate that depends on this one and names its applications with
//! [`main!`] (one application) or [`applications!`] (a table). The kernel (PVH entry,
//! long mode, ACPI, every core's own instance, the device services) is compiled for
//! `x86_64-unknown-none` only; on the host this crate is the API alone, so that
//! applications' logic and these docs build and test with plain `cargo`.
//!
//! What an application uses, by task (the guide, `apps/README.md` in the repository,
//! says how and why):
//! - threads on cores: [`spawn_on`], [`JoinHandle::join`], [`on_every_core`],
//!   [`app_cores`], [`current_core`], [`core_count`], [`yield_now`];
//! - time: [`sleep`], [`Instant`], [`Duration`];
//! - waiting for an event: [`park`] and [`Parked::unpark`], [`run_on`];
//! - values between threads on any cores: [`channel`], [`Sender`], [`Receiver`];
//! - sockets: [`net`]; files: [`fs`]; the command line: [`command_line`];
//! - printing: [`println!`]; failing: [`AppError`].
//!
//! On the host, `percore::host::run` runs code on a machine of cores made of host
//! threads, which is how the examples here run as tests:
//!
//! ```
//! # manada::percore::host::run(2, || {
//! let (sender, receiver) = manada::channel::<&str>(1, 4);
//! let echo = manada::spawn_on(1, move || receiver.recv());
//! sender.send("hello from core 0").unwrap();
//! assert_eq!(echo.join().unwrap(), Ok("hello from core 0"));
//! # });
//! ```

#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod app;
pub mod fs;
pub mod net;

#[cfg(target_os = "none")]
mod acpi;
#[cfg(target_os = "none")]
mod apic;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod exit;
#[cfg(target_os = "none")]
mod gdt;
#[cfg(target_os = "none")]
mod interrupts;
#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
mod mmio;
#[cfg(target_os = "none")]
mod msix;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod panic;
#[cfg(target_os = "none")]
mod pci;
#[cfg(target_os = "none")]
mod plan;
#[cfg(target_os = "none")]
mod pvh;
#[cfg(target_os = "none")]
mod report;
#[cfg(target_os = "none")]
mod selftest;
#[cfg(target_os = "none")]
mod serial;
#[cfg(target_os = "none")]
mod services;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod transports;
#[cfg(target_os = "none")]
mod tsc;
#[cfg(target_os = "none")]
mod vectors;

pub use app::{app_cores, command_line, find, join, on_every_core, App, AppError};
pub use core::time::Duration;
pub use percore::channel::{channel, Receiver, RecvError, SendError, Sender, TryRecvError};
pub use percore::cmdline::CommandLine;
pub use percore::{
    core_count, current_core, park, println, run_on, sleep, spawn, spawn_on, try_spawn_on,
    yield_now, Instant, JoinHandle, Parked, SpawnError,
};
/// The crates underneath, for what the API above does not cover (the raw mailbox,
/// `percore::with_mailbox`; the messages, `ipc::Message`).
pub use {ipc, percore};

/// Every core allocates from its own heap (see `percore::global`).
#[cfg(target_os = "none")]
#[global_allocator]
static ALLOCATOR: percore::global::CoreHeaps = percore::global::CoreHeaps;
