//! `oom`: running out of memory. A fallible request (`try_reserve`) gets an error the
//! caller can handle; an infallible one ends the run with a panic naming the core and
//! the size.

use alloc::vec::Vec;

use crate::app::{App, AppError};

pub(crate) const APP: App = App {
    name: "oom",
    summary: "a fallible allocation fails cleanly, then an infallible one panics",
    main,
};

/// More than any core's share (1 TiB).
const TOO_MUCH: usize = 1 << 40;

fn main() -> Result<(), AppError> {
    let last = percore::core_count() - 1;
    let joined = percore::spawn_on(last, || {
        let mut fallible: Vec<u8> = Vec::new();
        if fallible.try_reserve_exact(TOO_MUCH).is_ok() {
            return Err(AppError("a 1 TiB reservation succeeded"));
        }
        percore::println!(
            "oom: try_reserve of {TOO_MUCH} bytes on core {} refused cleanly",
            percore::current_core()
        );
        let infallible: Vec<u8> = Vec::with_capacity(TOO_MUCH);
        core::hint::black_box(&infallible);
        Err(AppError("a 1 TiB allocation succeeded"))
    })
    .join();
    match joined {
        // The infallible allocation panicked, as it must: the thread ended alone.
        Err(percore::JoinError::Panicked) => Err(AppError(
            "an infallible allocation failed, on purpose, and ended its thread",
        )),
        Err(_) => Err(AppError(
            "the allocating thread's join gave the wrong error",
        )),
        Ok(result) => result,
    }
}
