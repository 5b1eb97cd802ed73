//! QEMU for Manada images: the run's choices and configuration, its command line,
//! running it with a live console and a timeout, and serving a guest beside a host client.

mod command_line;
mod config;
mod image;
mod options;
mod outcome;
mod process;
mod serve;

pub use command_line::QEMU;
pub use config::QemuConfig;
pub use options::{
    parse_app, parse_cores, parse_disk, parse_kernel_arg, Accel, AccelChoice, DiskSpec, Machine,
    MemSize,
};
pub use outcome::{Outcome, Status};
pub use process::{kill_after_line, run};
pub use serve::{serve_watching, serve_while};
