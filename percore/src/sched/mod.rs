//! Threads: cooperative, pinned to the core they were created on (Toro's model).
//!
//! `spawn` starts a thread on this core; `spawn_on` starts one on any core by sending
//! its job there as a message; `JoinHandle::join` blocks the caller (its core runs other
//! threads meanwhile) until the result is there, or until it is known that there will
//! be none (the thread faulted, or its core failed), from any core. A thread runs until
//! it yields, sleeps, blocks in `join`, or ends; nothing preempts it.
//!
//! These are the operations on the running core's threads; the state they work on is
//! `threads`'. The submodules form layers, each using only those before it: `local`
//! (the core's scheduler), `switch` (creating threads, leaving the CPU), `dispatch`
//! (acting on kernel messages), `send` (sending them), `wait` (blocking and waking),
//! `join`, `api` (what applications call) and `run_loop` (the core's loop).

mod api;
mod dispatch;
mod join;
mod local;
mod run_loop;
mod send;
#[allow(unsafe_code)]
mod switch;
#[allow(unsafe_code)]
mod wait;

pub use crate::fence::CoreFailed;
pub use crate::threads::{
    JoinError, RunQueue, SchedulerStats, SleepQueue, SpawnError, ThreadView, STACK_SIZE,
};
pub use api::{park, park_on, run_on, sleep, spawn, spawn_on, try_spawn_on, with_mailbox, Parked};
pub use join::JoinHandle;
pub use local::{in_thread, stats};
pub use run_loop::run;
pub use switch::{end_failed_thread, yield_now};
