//! The applications linked into the Manada image; the kernel command line picks one.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod app;
mod exchange;
mod hello;
mod ipc_bench;
mod panic;

pub use app::{find, names, App, AppError, APPS};
