//! `hello`: every core greets, printing its own index and the core count.

use crate::app::{App, AppError};

pub(crate) const APP: App = App {
    name: "hello",
    summary: "every core prints `hello from core K/N` and the run ends",
    run_on_core: greet,
};

fn greet() -> Result<(), AppError> {
    percore::println!(
        "hello from core {}/{}",
        percore::current_core(),
        percore::core_count()
    );
    Ok(())
}
