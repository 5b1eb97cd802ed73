//! The net service: the device, the TCP/IP stack and the applications' sockets, owned by
//! the net core and used by every core through [`crate::socket`].
//!
//! A socket call travels to the net core as a job (`percore::run_on`) that works on the
//! [`Table`] in the core's loop, while the calling thread parks on its own core; only
//! the net core touches the stack, so there is no lock, and no thread is created for a
//! call. A call that cannot finish yet (no connection, no data, no room) is kept as a
//! waiter with what it waits for; after every poll of the stack the service tries again
//! the waiters whose socket is ready (or whose timeout passed), and the ones that
//! finished get their answer and their caller is unparked.
//!
//! The service thread polls the stack in a loop: while traffic flows it only yields
//! between polls; after [`QUIET_MS`] without any it sleeps between polls, at most until
//! smoltcp's next timer. A call polls the stack itself right after it worked, so what an
//! application writes goes out at once.
//!
//! Callers are unparked only after the service state is released: unparking sends a
//! message, and a send that waits for room lets the core run other jobs, which borrow
//! the state themselves.

use alloc::boxed::Box;
use alloc::sync::Arc;
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

impl<R> Step<R> {
    /// Returns `Done` with what a non-blocking table call found, or `Wait` for `want` on
    /// `id` when it found nothing yet.
    pub(crate) fn or_wait(found: Option<R>, id: SocketId, want: Want) -> Step<R> {
        match found {
            Some(result) => Step::Done(result),
            None => Step::Wait(id, want),
        }
    }
}

/// A call in progress: tries its step again, and answers its caller.
trait Pending: Send {
    /// Runs the call's step; stores the answer and returns `None` when the call is done,
    /// or returns what it waits for.
    fn attempt(&mut self, state: &mut State, now_ms: u64) -> Option<(SocketId, Want)>;
    /// Ends the call with `error` (timeout, no service).
    fn fail(&mut self, error: Error);
    /// When the call gives up, if ever.
    fn deadline_ms(&self) -> Option<u64>;
    /// Returns the core of the calling thread.
    fn caller_core(&self) -> usize;
    /// Unparks the caller (its answer is stored).
    fn finish(self: Box<Self>);
}

/// A call's step, its answer slot and its parked caller.
struct Call<R, F> {
    step: F,
    answer: Arc<spin::Mutex<Option<Result<R>>>>,
    parked: percore::Parked,
    deadline_ms: Option<u64>,
}

impl<R, F> Pending for Call<R, F>
where
    R: Send + 'static,
    F: FnMut(&mut State, u64) -> Result<Step<R>> + Send + 'static,
{
    fn attempt(&mut self, state: &mut State, now_ms: u64) -> Option<(SocketId, Want)> {
        match (self.step)(state, now_ms) {
            Ok(Step::Done(result)) => *self.answer.lock() = Some(Ok(result)),
            Ok(Step::Wait(id, want)) => return Some((id, want)),
            Err(error) => *self.answer.lock() = Some(Err(error)),
        }
        None
    }

    fn fail(&mut self, error: Error) {
        *self.answer.lock() = Some(Err(error));
    }

    fn deadline_ms(&self) -> Option<u64> {
        self.deadline_ms
    }

    fn caller_core(&self) -> usize {
        self.parked.core()
    }

    fn finish(self: Box<Self>) {
        self.parked.unpark();
    }
}

/// A call waiting for its socket.
struct Waiter {
    id: SocketId,
    want: Want,
    call: Box<dyn Pending>,
}

/// The service's state on the net core.
pub(crate) struct State {
    stack: Stack<Box<dyn Device>>,
    pub(crate) table: Table,
    waiters: Vec<Waiter>,
    /// The waiters of the poll before, emptied: its memory is reused (a poll runs
    /// continuously while traffic flows, and should not allocate).
    spare: Vec<Waiter>,
    /// Calls that finished, whose callers are unparked once the state is released.
    finished: Vec<Box<dyn Pending>>,
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

    /// Polls the stack, refills listeners, reaps closed sockets and tries again the calls
    /// that can make progress (those that finish wait in `finished`). Returns true when
    /// packets moved.
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
        let mut waiting = core::mem::replace(&mut self.waiters, core::mem::take(&mut self.spare));
        for mut waiter in waiting.drain(..) {
            let (sockets, _) = self.stack.parts();
            if percore::core_failed(waiter.call.caller_core()) {
                // Its caller's core failed: the call is dropped unanswered, so that what
                // it waits for (a connection to accept, data) goes to a caller alive.
                continue;
            }
            if waiter
                .call
                .deadline_ms()
                .is_some_and(|deadline| now_ms >= deadline)
            {
                waiter.call.fail(Error::TimedOut);
                self.finished.push(waiter.call);
            } else if self.table.is_ready(sockets, waiter.id, waiter.want) {
                self.attempt(waiter.call, now_ms);
            } else {
                self.waiters.push(waiter);
            }
        }
        self.spare = waiting;
        if changed {
            self.last_activity_ms = now_ms;
        }
        changed
    }
}

impl State {
    /// Runs `call`'s step: done, it joins `finished`; else it waits for its socket.
    fn attempt(&mut self, mut call: Box<dyn Pending>, now_ms: u64) {
        match call.attempt(self, now_ms) {
            None => self.finished.push(call),
            Some((id, want)) => self.waiters.push(Waiter { id, want, call }),
        }
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
        spare: Vec::new(),
        finished: Vec::new(),
        announced: false,
        last_activity_ms: now,
    });
    CORE.call_once(percore::current_core);
}

/// Polls the stack for good, on the core that ran [`start`].
pub fn run() -> ! {
    loop {
        let Some((busy, delay)) = serve(|state, now| {
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

/// Runs `work` on this core's service state, then polls (sending what it queued, trying
/// again the calls it may have readied), and unparks the callers of the calls that
/// finished once the state is released. `None` when this core runs no net service.
fn serve<T>(work: impl FnOnce(&mut State, u64) -> T) -> Option<T> {
    let now = now_ms();
    let (result, finished) = percore::cpu::with_service(|state: &mut State| {
        let result = work(state, now);
        state.poll(now);
        (result, core::mem::take(&mut state.finished))
    })?;
    for call in finished {
        call.finish();
    }
    Some(result)
}

/// Runs `step` on the net core until it is done, waiting between tries for its socket;
/// gives up with `TimedOut` after `timeout`. The calling thread parks meanwhile; if the
/// net core fails, the call ends with `NoService`.
pub(crate) fn call<R: Send + 'static>(
    timeout: Option<Duration>,
    step: impl FnMut(&mut State, u64) -> Result<Step<R>> + Send + 'static,
) -> Result<R> {
    let core = service_core().ok_or(Error::NoService)?;
    let answer = Arc::new(spin::Mutex::new(None));
    let slot = answer.clone();
    let deadline_ms = timeout.map(|timeout| {
        now_ms().saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
    });
    let parked = percore::park_on(core, move |parked| {
        let call = Box::new(Call {
            step,
            answer: slot,
            parked,
            deadline_ms,
        });
        submit(core, call);
    });
    if parked.is_err() {
        // The net core failed: its sockets and this call are gone with it.
        return Err(Error::NoService);
    }
    let answer = answer.lock().take();
    answer.unwrap_or(Err(Error::NoService))
}

/// Sends `call` to the net core, which tries it at once.
fn submit(core: usize, call: Box<dyn Pending>) {
    let job = move || {
        let mut call = Some(call);
        if serve(|state, now| state.attempt(call.take().expect("taken once"), now)).is_none() {
            // No service on that core: the call fails, and its caller goes on.
            if let Some(mut call) = call {
                call.fail(Error::NoService);
                call.finish();
            }
        }
    };
    // Refused only when the net core failed: the job and the call in it are dropped, and
    // the caller's `park_on` ends with the core's failure.
    let _ = percore::run_on(core, job);
}

/// Runs `work` on the net core without waiting for it (closing a socket).
pub(crate) fn post(work: impl FnOnce(&mut State, u64) + Send + 'static) {
    if let Some(core) = service_core() {
        let _ = percore::run_on(core, move || {
            serve(work);
        });
    }
}

/// Returns the bytes in use on the net core's heap and the sockets its table holds.
pub fn usage() -> Result<(usize, usize)> {
    call(None, |state, _| {
        let bytes = percore::global::heap_stats().bytes_in_use;
        Ok(Step::Done((bytes, state.table.sockets_in_use())))
    })
}
