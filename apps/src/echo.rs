//! `echo`: TCP and UDP echo (RFC 862) on port 7, served by the net core. Run with
//! `cargo xtask run --app echo --forward 7777:7` and talk to 127.0.0.1:7777 from the
//! host. The app runs until QEMU is stopped.

use core::time::Duration;

use crate::app::{App, AppError};

pub(crate) const APP: App = App {
    name: "echo",
    summary: "TCP and UDP echo on port 7 (the net core serves it); runs until stopped",
    main,
};

fn main() -> Result<(), AppError> {
    percore::println!("echo: serving TCP and UDP port 7 from the net core; stop QEMU to end");
    loop {
        percore::sleep(Duration::from_secs(3600));
    }
}
