//! The applications linked into the Manada image; the kernel command line picks one.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod app;
mod blk_bench;
mod blk_errors;
mod blk_test;
mod echo;
mod exchange;
mod files;
mod free_storm;
mod fs_bench;
mod fs_writer;
mod hello;
mod httpd;
mod ipc_bench;
mod oom;
mod overflow;
mod panic;
mod percore_bench;
mod scale;
mod threads;

pub use app::{app_cores, find, names, on_every_core, App, AppError, APPS};
