//! The net service: the device, the TCP/IP stack and the applications' sockets, owned by
//! the net core and used by every core through the socket types ([`crate::TcpStream`],
//! [`crate::UdpSocket`], ...).
//!
//! A socket call travels to the net core as a job (`percore::run_on`) that works on the
//! [`Table`] in the core's loop, while the calling thread parks on its own core; only
//! the net core touches the stack, so there is no lock, and no thread is created for a
//! call. A call that cannot finish yet (no connection, no data, no room) is kept as a
//! waiter with what it waits for; after every poll of the stack the service tries again
//! the waiters whose socket is ready (or whose timeout passed), and the ones that
//! finished get their answer and their caller is unparked.
//!
//! Connections of a listener bound with a [`Handler`](crate::Handler) never leave the
//! net core while their handler can serve them: after taking in the received frames the
//! service opens the new ones and runs the handler of each connection whose data, room
//! or deadline came (see `crate::handler`), and only then sends, so an answer carries
//! the acknowledgement of its request.
//!
//! The service thread polls the stack in a loop: while traffic flows it only yields
//! between polls; after [`QUIET_MS`] without any it sleeps between polls, at most until
//! smoltcp's next timer. A call polls the stack itself right after it worked, so what an
//! application writes goes out at once.
//!
//! Callers are unparked only after the service state is released: unparking sends a
//! message, and a send that waits for room lets the core run other jobs, which borrow
//! the state themselves.
//!
//! Memory: the lists of calls in flight are reserved when the service starts, and a
//! call that finds them full fails with [`Error::OutOfMemory`] at once; nothing the
//! service does per packet or per call allocates through an infallible path.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use percore::placement::Service;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::handler::{AnyConnection, ErasedHandler};
use crate::handlers::Handlers;
use crate::stack::{Addressing, Stack};
use crate::table::{Limits, SocketId, Table, Want};
use crate::trace::{self, Counter};

/// Milliseconds without traffic after which the service sleeps between polls.
pub const QUIET_MS: u64 = 50;
/// The longest sleep between two polls once quiet, in milliseconds.
const MAX_SLEEP_MS: u64 = 1;
/// Milliseconds between two polls of a busy loop that count as a stall.
const STALL_MS: u64 = 10;
/// Milliseconds without traffic after which a service whose device can wake it halts:
/// as long as a polled service spins, so a burst (a page and its files, a client's
/// requests a few milliseconds apart) is served without an interrupt's wake-up
/// between requests, which costs more under emulation than polling does.
const QUIET_WAKING_MS: u64 = 50;
/// The longest the alarm thread sleeps at once, in milliseconds.
const ALARM_SLICE_MS: u64 = 50;
/// Calls in flight the service makes room for at least.
const MIN_CALLS: usize = 1024;

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
    /// The list `finished` is swapped with while its callers are unparked.
    finished_spare: Vec<Box<dyn Pending>>,
    /// Calls in flight at most (the lists above are reserved for that many).
    calls: usize,
    /// The handlers of handled listeners.
    handlers: Handlers,
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

    /// Returns true when another call fits the reserved lists (a waiter moves between
    /// them but never needs two places).
    fn has_room_for_a_call(&self) -> bool {
        self.waiters.len() + self.finished.len() < self.calls
    }

    /// Polls the stack, refills listeners, reaps closed sockets, runs the handlers of
    /// the connections that need them, and tries again the calls that can make
    /// progress (those that finish wait in `finished`). Returns true when packets
    /// moved or a handler ran.
    fn poll(&mut self, now_ms: u64) -> bool {
        // The table stamps new connections with its clock: it must be this poll's, not
        // the one of a poll long ago (a service that halted for seconds would see a
        // fresh SYN as half-open for seconds, and drop it).
        self.table.set_clock(now_ms);
        let table = &mut self.table;
        let mut changed = self
            .stack
            .poll_ingress(now_ms, |sockets| table.replenish(sockets));
        // Handlers answer before anything is sent, so the acknowledgement of a request
        // leaves in the same frame as its answer.
        let (sockets, _) = self.stack.parts();
        let started = trace::start();
        if self.handlers.run(&mut self.table, sockets, now_ms) {
            changed = true;
        }
        trace::finish(started, Counter::HandlerCycles, None);
        changed |= self.stack.poll_egress(now_ms);
        // Only after sending: a connection reset on this poll leaves with its RST before
        // the table lets its socket go.
        let (sockets, _) = self.stack.parts();
        self.table.maintain(sockets, now_ms);
        if let (false, Some((address, source))) = (self.announced, self.stack.address()) {
            percore::println!("manada: net: address {address} ({source})");
            self.announced = true;
        }
        let mut attempted = false;
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
                attempted = true;
            } else {
                self.waiters.push(waiter);
            }
        }
        self.spare = waiting;
        if attempted {
            // What the calls wrote goes out now, not at the next poll.
            self.stack.poll_egress(now_ms);
        }
        if changed {
            self.last_activity_ms = now_ms;
        }
        changed
    }

    /// Polls like [`Self::poll`] and counts the polls that found nothing to do.
    fn poll_counted(&mut self, now_ms: u64) -> bool {
        let started = trace::start();
        let changed = self.poll(now_ms);
        if !changed {
            trace::finish(started, Counter::IdlePollCycles, Some(Counter::IdlePolls));
        }
        changed
    }

    /// Runs `call`'s step: done, it joins `finished`; else it waits for its socket.
    /// The caller made sure the lists have room ([`Self::has_room_for_a_call`]).
    fn attempt(&mut self, mut call: Box<dyn Pending>, now_ms: u64) {
        match call.attempt(self, now_ms) {
            None => self.finished.push(call),
            Some((id, want)) => self.waiters.push(Waiter { id, want, call }),
        }
    }

    /// Makes the handed-off stream `id` its handler's again and runs the handler.
    pub(crate) fn resume(
        &mut self,
        id: SocketId,
        listener: SocketId,
        connection: AnyConnection,
        now_ms: u64,
    ) {
        let (sockets, _) = self.stack.parts();
        self.handlers
            .resume(&mut self.table, sockets, id, listener, connection, now_ms);
    }

    /// Binds a handled listener on `port` with `handler`, prepared on this core.
    pub(crate) fn bind_handler(
        &mut self,
        port: u16,
        handler: Box<dyn ErasedHandler>,
    ) -> Result<SocketId> {
        let (sockets, _) = self.stack.parts();
        self.handlers.bind(&mut self.table, sockets, port, handler)
    }

    /// Forgets the handler of the listener `id` (after the listener closed).
    pub(crate) fn drop_handler(&mut self, id: SocketId) {
        self.handlers.remove(id);
    }
}

/// Returns the core the net service runs on, once it started.
fn service_core() -> Option<usize> {
    percore::placement::service_core(Service::Net)
}

/// Milliseconds since boot, from the core's clock.
pub(crate) fn now_ms() -> u64 {
    percore::Instant::now().ticks() / percore::time::ticks_per_micro().max(1) / 1000
}

/// Returns a vector with room for `count` elements reserved, or `OutOfMemory`.
fn reserved<T>(count: usize) -> Result<Vec<T>> {
    let mut vector = Vec::new();
    vector
        .try_reserve_exact(count)
        .map_err(|_| Error::OutOfMemory)?;
    Ok(vector)
}

/// Sets up the service on the running core: a stack on `device`, addressed as
/// `addressing` says, with a socket table of `limits` (see [`Limits::for_memory`]).
/// Socket calls work from then on; [`run`] must follow (in a thread of this core) to
/// move packets. Fails with `OutOfMemory` when this core cannot hold the table that
/// `limits` asks for. Kernel only: the kernel starts the service on the net core.
pub fn start(
    kernel: &percore::KernelCapability,
    device: Box<dyn Device>,
    addressing: Addressing,
    limits: Limits,
) -> Result<()> {
    let now = now_ms();
    let calls = limits.sockets.max(MIN_CALLS);
    let state = State {
        stack: Stack::try_new(device, addressing, now, limits.sockets).ok_or(Error::OutOfMemory)?,
        table: Table::try_new(limits)?,
        waiters: reserved(calls)?,
        spare: reserved(calls)?,
        finished: reserved(calls)?,
        finished_spare: reserved(calls)?,
        calls,
        handlers: Handlers::try_new()?,
        announced: false,
        last_activity_ms: now,
    };
    percore::cpu::install_service(kernel, Service::Net, state);
    Ok(())
}

/// Polls the stack for good, on the core that ran [`start`].
///
/// While traffic flows the loop polls without a pause. Once quiet, a device that can
/// interrupt ([`Device::can_wake`]) is armed and the loop parks: the device's interrupt
/// ([`device_event`]) or the alarm thread (at smoltcp's next timer or a connection's
/// deadline) wakes it; socket calls from other cores run as jobs meanwhile. A device
/// that cannot interrupt is polled every millisecond instead. Kernel only.
pub fn run(_kernel: &percore::KernelCapability) -> ! {
    let wakes = with_state(|state| state.stack.device().can_wake()).unwrap_or(false);
    if wakes && percore::try_spawn_on(percore::current_core(), alarm).is_err() {
        panic!("net: no memory on the net core for its alarm thread");
    }
    let quiet_ms = if wakes { QUIET_WAKING_MS } else { QUIET_MS };
    let mut last_poll = percore::time::ticks();
    loop {
        // Poll, then decide from what the poll left: a poll that found work keeps the
        // loop going, and the deadlines are the ones after it.
        if serve(|_, _| ()).is_none() {
            panic!("net: the service loop runs on a core without the net service");
        }
        let (busy, delay) = with_state(|state| {
            let now = now_ms();
            if now.saturating_sub(state.last_activity_ms) < quiet_ms {
                return (true, None);
            }
            let timer = state.stack.poll_delay(now);
            let deadline = state
                .table
                .next_deadline()
                .map(|deadline| deadline.saturating_sub(now));
            let delay = match (timer, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (false, delay)
        })
        .unwrap_or((false, None));
        if busy {
            percore::yield_now();
            // A busy loop that comes back late was not given the CPU (by the host, under
            // emulation): the trace counts those stalls, the tail latency's usual cause.
            let now = percore::time::ticks();
            let gap = now.saturating_sub(last_poll);
            if gap > STALL_MS * 1000 * percore::time::ticks_per_micro() {
                trace::add(Counter::Stalls, 1);
                trace::add(Counter::StallCycles, gap);
            }
            last_poll = now;
            continue;
        }
        if wakes {
            // Armed, then one more look: a frame that came before arming raises nothing.
            let waiting = with_state(|state| state.stack.device().arm_wakeup()).unwrap_or(true);
            if !waiting {
                let wake_at = now_ms().saturating_add(delay.unwrap_or(u64::MAX / 2));
                WAKE_AT_MS.store(wake_at, Ordering::Release);
                trace::add(Counter::Halts, 1);
                percore::park(|parked| *PARKED.lock() = Some(parked));
                WAKE_AT_MS.store(u64::MAX, Ordering::Release);
            }
            let _ = with_state(|state| state.stack.device().disarm_wakeup());
        } else {
            let sleep = delay.unwrap_or(MAX_SLEEP_MS).min(MAX_SLEEP_MS);
            percore::sleep(Duration::from_millis(sleep));
        }
        last_poll = percore::time::ticks();
    }
}

/// The parked service thread, for whoever wakes it first: the device's interrupt or the
/// alarm. Only the net core touches it (its threads, and its interrupt handler, which
/// runs only while the core halts).
static PARKED: spin::Mutex<Option<percore::Parked>> = spin::Mutex::new(None);
/// When the parked service must poll again (smoltcp's timers, connection deadlines), in
/// milliseconds; `u64::MAX` while it runs.
static WAKE_AT_MS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Wakes the service thread if it is parked; the net core's device interrupt calls it.
pub fn device_event() {
    let parked = PARKED.try_lock().and_then(|mut slot| slot.take());
    if let Some(parked) = parked {
        trace::add(Counter::Wakeups, 1);
        parked.unpark();
    }
}

/// The alarm thread: wakes the parked service at its next deadline. It sleeps in slices
/// of at most [`ALARM_SLICE_MS`], so a deadline set while it slept is late by no more.
fn alarm() {
    loop {
        let now = now_ms();
        let wake_at = WAKE_AT_MS.load(Ordering::Acquire);
        if now >= wake_at {
            if let Some(parked) = PARKED.lock().take() {
                parked.unpark();
            }
        }
        let slice = wake_at.saturating_sub(now).clamp(1, ALARM_SLICE_MS);
        percore::sleep(Duration::from_millis(slice));
    }
}

/// Runs `work` on this core's service state without polling; `None` when this core
/// runs no net service.
fn with_state<T>(work: impl FnOnce(&mut State) -> T) -> Option<T> {
    percore::cpu::with_service(work)
}

/// Runs `work` on this core's service state, then polls (sending what it queued, trying
/// again the calls it may have readied), and unparks the callers of the calls that
/// finished once the state is released. `None` when this core runs no net service.
pub(crate) fn serve<T>(work: impl FnOnce(&mut State, u64) -> T) -> Option<T> {
    let started = trace::start();
    let now = now_ms();
    let (result, mut finished) = percore::cpu::with_service(|state: &mut State| {
        let result = work(state, now);
        state.poll_counted(now);
        let spare = core::mem::take(&mut state.finished_spare);
        (result, core::mem::replace(&mut state.finished, spare))
    })?;
    for call in finished.drain(..) {
        call.finish();
    }
    // The emptied list keeps its reserve for the next round.
    let _ = percore::cpu::with_service(|state: &mut State| {
        if state.finished_spare.capacity() < finished.capacity() {
            state.finished_spare = finished;
        }
    });
    trace::finish(started, Counter::NetServiceCycles, None);
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
    let started = trace::start();
    let parked = percore::park_on(core, move |parked| {
        let call = Box::new(Call {
            step,
            answer: slot,
            parked,
            deadline_ms,
        });
        submit(core, call);
    });
    trace::finish(started, Counter::NetCallCycles, Some(Counter::NetCalls));
    if parked.is_err() {
        // The net core failed: its sockets and this call are gone with it.
        return Err(Error::NoService);
    }
    let answer = answer.lock().take();
    answer.unwrap_or(Err(Error::NoService))
}

/// Sends `call` to the net core, which tries it at once (or fails it at once when its
/// lists of calls in flight are full).
fn submit(core: usize, call: Box<dyn Pending>) {
    let job = move || {
        let mut call = Some(call);
        let served = serve(|state, now| {
            if state.has_room_for_a_call() {
                if let Some(call) = call.take() {
                    state.attempt(call, now);
                }
            }
        });
        // Not taken: no service on that core, or no room for another call.
        if let Some(mut call) = call {
            call.fail(if served.is_some() {
                Error::OutOfMemory
            } else {
                Error::NoService
            });
            call.finish();
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

/// Returns the net core's socket limits (as [`start`] was given them).
pub fn limits() -> Result<Limits> {
    call(None, |state, _| Ok(Step::Done(*state.table.limits())))
}
