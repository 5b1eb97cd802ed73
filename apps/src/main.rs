//! The Manada image: the kernel with this crate's applications (`cargo xtask build`).
//!
//! An image of your own is a crate with a file like this one; see `apps/README.md`.
//! On the host this binary only says how to build it, so that workspace-wide `cargo`
//! commands work.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

manada::applications!(apps::APPS);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("manada is a kernel for x86_64-unknown-none: build it with `cargo xtask build`, boot it with `cargo xtask run`");
    std::process::exit(2);
}
