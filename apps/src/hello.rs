//! `hello`: a thread pinned to every core greets with its core's index and the count.

use manada::{on_every_core, App, AppError};

pub(crate) const APP: App = App {
    name: "hello",
    summary: "a thread on every core prints `hello from core K/N`",
    main,
};

fn main() -> Result<(), AppError> {
    let cores = on_every_core(|| {
        let core = percore::current_core();
        percore::println!("hello from core {core}/{}", percore::core_count());
        core
    })?;
    // Each thread ran where it was placed.
    if cores
        .iter()
        .enumerate()
        .all(|(expected, &core)| core == expected)
    {
        Ok(())
    } else {
        Err(AppError(
            "a thread ran on another core than the one it was spawned on",
        ))
    }
}
