//! `panic`: a thread on the last core panics on purpose, to show that failures are
//! reported with their core and end the run.

use crate::app::{App, AppError};

pub(crate) const APP: App = App {
    name: "panic",
    summary: "a thread on the last core panics on purpose; the run must end in failure",
    main,
};

fn main() -> Result<(), AppError> {
    let last = percore::core_count() - 1;
    percore::spawn_on(last, move || {
        panic!(
            "deliberate panic from the panic app on core {}",
            percore::current_core()
        )
    })
    .join();
    Err(AppError("the panicking thread returned"))
}
