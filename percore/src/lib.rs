//! One core's kernel instance: what a core knows about itself and about the machine.
//!
//! Every core runs its own copy of the kernel. This crate holds the pieces of that
//! instance that are pure logic (memory partitioning, command-line parsing, the
//! line-atomic console) and the read-only boot information that all instances share.
//! The hardware glue lives in `boot`; everything here builds and is tested on the host.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;
// The host stand-in for the GS register (`cpu`) is a thread-local.
#[cfg(not(target_os = "none"))]
extern crate std;

pub mod acpi;
#[allow(unsafe_code)]
pub mod arch;
pub mod bootinfo;
pub mod calibration;
#[allow(unsafe_code)]
pub mod capability;
pub mod channel;
pub mod cmdline;
#[allow(unsafe_code)]
pub mod console;
#[allow(unsafe_code)]
pub mod cpu;
pub mod fault;
pub mod fence;
#[allow(unsafe_code)]
pub mod global;
pub mod heap;
#[cfg(not(target_os = "none"))]
#[allow(unsafe_code)]
pub mod host;
pub mod injection;
pub mod mailbox;
pub mod memory;
pub mod placement;
pub mod platform;
pub mod random;
pub mod sched;
pub mod threads;
pub mod time;
pub mod timeline;

pub use bootinfo::{boot_info, core_count, BootInfo, CoreDesc};
pub use capability::KernelCapability;
pub use channel::{channel, Receiver, RecvError, SendError, Sender, TryRecvError};
pub use cpu::{current_core, CoreLocal};
pub use fence::{is_fenced as core_failed, CoreFailed};
pub use mailbox::{Mailbox, MailboxLocation};
pub use memory::{CoreMemory, PhysRange};
pub use sched::{
    park, park_on, run_on, sleep, spawn, spawn_on, try_spawn_on, with_mailbox, yield_now,
    JoinError, JoinHandle, Parked, SpawnError,
};
pub use time::Instant;

/// The most cores one image supports. `cargo xtask run --cores` refuses more.
pub const MAX_CORES: usize = 64;
