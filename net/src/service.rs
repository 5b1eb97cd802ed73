//! The net service: the device, the TCP/IP stack and the applications' sockets, owned by
//! the net core and used by every core through [`crate::socket`].
//!
//! A socket call runs as a short thread on the net core (`spawn_on`) that works on the
//! [`Table`]; only that core touches the stack, so there is no lock. A call that cannot
//! finish yet (no connection, no data, no room) parks its thread with what it waits
//! for; after every poll of the stack the service unparks the threads whose socket is
//! ready (or whose timeout passed), and they try again. The calling thread on its own
//! core blocks in `join` meanwhile, so its core runs other threads.
//!
//! The service thread polls the stack in a loop: while traffic flows it only yields
//! between polls; after [`QUIET_MS`] without any it sleeps between polls, at most until
//! smoltcp's next timer. A socket call polls the stack itself right after it worked, so
//! what an application writes goes out at once.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::stack::{Addressing, Stack};
use crate::table::{Limits, SocketId, Table, Want};

/// Milliseconds without traffic after which the service sleeps between polls.
pub const QUIET_MS: u64 = 50;
/// The longest sleep between two polls once quiet, in milliseconds.
const MAX_SLEEP_MS: u64 = 1;

/// What a step of a socket call did.
pub(crate) enum Step<R> {
    /// The call is done.
    Done(R),
    /// The call waits until the socket is ready for this.
    Wait(SocketId, Want),
}

struct Waiter {
    id: SocketId,
    want: Want,
    deadline_ms: Option<u64>,
    parked: percore::Parked,
}

/// The service's state on the net core.
pub(crate) struct State {
    stack: Stack<Box<dyn Device>>,
    pub(crate) table: Table,
    waiters: Vec<Waiter>,
    announced: bool,
    last_activity_ms: u64,
}

impl State {
    /// Returns the sockets and the interface's context, for the table.
    pub(crate) fn parts(
        &mut self,
    ) -> (
        &mut Table,
        &mut smoltcp::iface::SocketSet<'static>,
        &mut smoltcp::iface::Context,
    ) {
        let (sockets, context) = self.stack.parts();
        (&mut self.table, sockets, context)
    }

    /// Polls the stack, refills listeners, reaps closed sockets and unparks the callers
    /// that can make progress. Returns true when packets moved.
    fn poll(&mut self, now_ms: u64) -> bool {
        let table = &mut self.table;
        let changed = self
            .stack
            .poll_with(now_ms, |sockets| table.replenish(sockets));
        if let (false, Some((address, source))) = (self.announced, self.stack.address()) {
            percore::println!("manada: net: address {address} ({source})");
            self.announced = true;
        }
        let (sockets, _) = self.stack.parts();
        self.table.maintain(sockets, now_ms);
        let mut index = 0;
        while index < self.waiters.len() {
            let waiter = &self.waiters[index];
            let timed_out = waiter
                .deadline_ms
                .is_some_and(|deadline| now_ms >= deadline);
            if timed_out || self.table.is_ready(sockets, waiter.id, waiter.want) {
                self.waiters.swap_remove(index).parked.unpark();
            } else {
                index += 1;
            }
        }
        if changed {
            self.last_activity_ms = now_ms;
        }
        changed
    }
}

static CORE: spin::Once<usize> = spin::Once::new();

/// Returns the core the net service runs on, once it started.
pub fn service_core() -> Option<usize> {
    CORE.get().copied()
}

/// Milliseconds since boot, from the core's clock.
fn now_ms() -> u64 {
    percore::Instant::now().ticks() / percore::time::ticks_per_micro().max(1) / 1000
}

/// Sets up the service on the running core: a stack on `device`, addressed as
/// `addressing` says, with a socket table of `limits`. Socket calls work from then on;
/// [`run`] must follow (in a thread of this core) to move packets.
pub fn start(device: Box<dyn Device>, addressing: Addressing, limits: Limits) {
    let now = now_ms();
    percore::cpu::install_service(State {
        stack: Stack::new(device, addressing, now),
        table: Table::new(limits),
        waiters: Vec::new(),
        announced: false,
        last_activity_ms: now,
    });
    CORE.call_once(percore::current_core);
}

/// Polls the stack for good, on the core that ran [`start`].
pub fn run() -> ! {
    loop {
        let now = now_ms();
        let Some((busy, delay)) = percore::cpu::with_service(|state: &mut State| {
            state.poll(now);
            let quiet = now.saturating_sub(state.last_activity_ms) >= QUIET_MS;
            (!quiet, state.stack.poll_delay(now))
        }) else {
            panic!("net: the service loop runs on a core without the net service");
        };
        if busy {
            percore::yield_now();
        } else {
            let sleep = delay.unwrap_or(MAX_SLEEP_MS).min(MAX_SLEEP_MS);
            percore::sleep(Duration::from_millis(sleep));
        }
    }
}

/// Runs `step` on the net core until it is done, parking between tries; gives up with
/// `TimedOut` after `timeout`.
pub(crate) fn call<R: Send + 'static>(
    timeout: Option<Duration>,
    mut step: impl FnMut(&mut State, u64) -> Result<Step<R>> + Send + 'static,
) -> Result<R> {
    let core = service_core().ok_or(Error::NoService)?;
    percore::spawn_on(core, move || {
        let deadline_ms = timeout.map(|timeout| {
            now_ms().saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
        });
        loop {
            let now = now_ms();
            let outcome = percore::cpu::with_service(|state: &mut State| {
                let outcome = step(state, now);
                // Send what the step queued, and let others see what it freed.
                state.poll(now);
                outcome
            })
            .unwrap_or(Err(Error::NoService))?;
            let (id, want) = match outcome {
                Step::Done(result) => return Ok(result),
                Step::Wait(id, want) => (id, want),
            };
            if deadline_ms.is_some_and(|deadline| now >= deadline) {
                return Err(Error::TimedOut);
            }
            percore::park(|parked| {
                let mut waiter = Some(Waiter {
                    id,
                    want,
                    deadline_ms,
                    parked,
                });
                percore::cpu::with_service(|state: &mut State| state.waiters.extend(waiter.take()));
                // No service to wait on: try again at once (and fail there).
                if let Some(waiter) = waiter {
                    waiter.parked.unpark();
                }
            });
        }
    })
    .join()
}

/// Runs `work` on the net core without waiting for it (closing a socket).
pub(crate) fn post(work: impl FnOnce(&mut State, u64) + Send + 'static) {
    if let Some(core) = service_core() {
        let _ = percore::try_spawn_on(core, move || {
            let now = now_ms();
            percore::cpu::with_service(|state: &mut State| {
                work(state, now);
                state.poll(now);
            });
        });
    }
}

/// Returns the bytes in use on the net core's heap and the sockets its table holds.
pub fn usage() -> Result<(usize, usize)> {
    let core = service_core().ok_or(Error::NoService)?;
    let usage = percore::spawn_on(core, || {
        let sockets = percore::cpu::with_service(|state: &mut State| state.table.sockets_in_use())
            .unwrap_or(0);
        (percore::global::heap_stats().bytes_in_use, sockets)
    })
    .join();
    Ok(usage)
}
