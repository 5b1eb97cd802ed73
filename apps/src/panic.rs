//! `panic`: a thread on the last core panics on purpose, to show that a failure is
//! reported with its core and thread, that the thread ends alone (its join says so), and
//! that the run ends in failure.

use crate::app::{App, AppError};

pub(crate) const APP: App = App {
    name: "panic",
    summary: "a thread on the last core panics on purpose; the run must end in failure",
    main,
};

fn main() -> Result<(), AppError> {
    let last = percore::core_count() - 1;
    let joined = percore::spawn_on(last, move || {
        panic!(
            "deliberate panic from the panic app on core {}",
            percore::current_core()
        )
    })
    .join();
    match joined {
        Err(percore::JoinError::Panicked) => {
            percore::println!(
                "panic: the join of the panicking thread on core {last} says it panicked"
            );
            Err(AppError("a thread panicked, on purpose"))
        }
        Err(_) => Err(AppError("the panicking thread's join gave the wrong error")),
        Ok(()) => Err(AppError("the panicking thread returned")),
    }
}
