//! `overflow`: a thread on the last core recurses without end; its stack's guard page
//! turns the overflow into a reported fault instead of silent corruption.

use crate::app::{App, AppError};

pub(crate) const APP: App = App {
    name: "overflow",
    summary: "a thread overflows its stack on purpose; the guard page must catch it",
    main,
};

// Endless on purpose: the point is to run into the guard page.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 32];
    core::hint::black_box(&frame);
    recurse(depth + 1).wrapping_add(frame[7])
}

fn main() -> Result<(), AppError> {
    let last = percore::core_count() - 1;
    match percore::spawn_on(last, || recurse(0)).join() {
        Err(percore::JoinError::Exception(14)) => {
            Err(AppError("a thread overflowed its stack, on purpose"))
        }
        Err(_) => Err(AppError(
            "the overflowing thread's join gave the wrong error",
        )),
        Ok(_) => Err(AppError("the overflowing thread returned")),
    }
}
