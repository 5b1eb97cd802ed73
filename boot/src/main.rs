//! The Manada kernel image: boots on the PVH entry, starts every core, runs the app.
//!
//! Built for `x86_64-unknown-none` by `cargo xtask build`. On the host this binary only
//! explains how to build it, so that `cargo build --workspace` and clippy still work.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod acpi;
#[cfg(target_os = "none")]
mod apic;
#[cfg(target_os = "none")]
mod console;
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
mod services;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod tsc;

/// Every core allocates from its own heap (see `percore::global`).
#[cfg(target_os = "none")]
#[global_allocator]
static ALLOCATOR: percore::global::CoreHeaps = percore::global::CoreHeaps;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("manada is a kernel for x86_64-unknown-none: build it with `cargo xtask build`, boot it with `cargo xtask run`");
    std::process::exit(2);
}
