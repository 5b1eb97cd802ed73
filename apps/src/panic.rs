//! `panic`: the last core panics on purpose, to show that failures are reported.

use crate::app::{App, AppError};

pub(crate) const APP: App = App {
    name: "panic",
    summary: "the last core panics on purpose; the run must end in failure",
    run_on_core: run,
};

fn run() -> Result<(), AppError> {
    let core = percore::current_core();
    if core + 1 == percore::core_count() {
        panic!("deliberate panic from the panic app on core {core}");
    }
    Ok(())
}
