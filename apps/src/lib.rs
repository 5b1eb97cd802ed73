//! The applications linked into the Manada image; the kernel command line picks one.
//!
//! The applications a user runs or reads as examples sit at the top; `fixtures` holds
//! the apps that exist for the integration tests, `benches` those that measure. The
//! crate's page is the guide to writing an application (apps/README.md), whose Rust
//! examples compile as this crate's doc tests.
#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod app;
mod benches;
mod echo;
mod files;
mod fixtures;
mod hello;
mod httpd;
mod pipeline;
mod primes;

use benches::{blk_bench, fs_bench, ipc_bench, percore_bench, scale};
use fixtures::{
    blk_errors, blk_test, faults, free_storm, fs_writer, oom, overflow, panic, threads,
};

pub use app::{find, names, APPS};
pub use manada::{app_cores, join, on_every_core, App, AppError};

/// The cores of the host machine (`percore::host`) the apps' tests run on.
#[cfg(test)]
const HOST_CORES: usize = 4;
