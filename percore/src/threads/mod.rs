//! One core's threads as data: the scheduler's state and thread records, the run and
//! sleep queues, a thread's wait state, and the join packet a thread's result travels
//! in. Logic on `&mut` values and atomic steps, with no access to the running core:
//! `sched` holds the operations that use them (spawn, yield, block, wake, the loop).

#[allow(unsafe_code)]
mod packet;
mod queue;
#[allow(unsafe_code)]
mod scheduler;
mod state;
mod token;

pub use packet::JoinError;
pub(crate) use packet::{fail_waiter, Abandon, Packet};
pub use queue::{RunQueue, SleepQueue};
pub(crate) use scheduler::{stack_layout, Job, RemoteWait, RunJob, Start, Thread, ThreadRef};
pub use scheduler::{Scheduler, SchedulerStats, SpawnError, ThreadView, GUARD_SIZE, STACK_SIZE};
pub(crate) use state::{RunState, Wakeup};
pub(crate) use token::WaiterToken;
