//! A join packet: a thread's result, or why there is none, on its way to whoever joins
//! it, on any core; as data and atomic steps (the waiting is `sched::join`'s).
//!
//! The packet is the one piece of memory both sides touch. Its state word says
//! `RUNNING`, `DONE`, `FAILED` (with the [`JoinError`] in the bits above the tag), or
//! holds the joiner's waiter token. Every change is one atomic step, so exactly one side
//! learns that the joiner waits and wakes it:
//!
//! * finisher: write the result; `RUNNING`/waiter -> `DONE`; if it replaced a waiter,
//!   wake that thread. A packet that failed already stays failed.
//! * failure (the thread faulted, could not start, or its core failed):
//!   `RUNNING`/waiter -> `FAILED`; if it replaced a waiter, wake it. A packet that is
//!   done stays done: a result that was published is never taken back.
//! * joiner: `RUNNING -> waiter`; on success block until woken; on failure the state was
//!   `DONE` or `FAILED`. When the thread's core fails, the joiner's own core turns its
//!   waiter into `FAILED` (`fail_waiter`), unless the finisher got there first.

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::token::WaiterToken;

const RUNNING: usize = 0;
const DONE: usize = 1;
const FAILED: usize = 2;
/// The low bits that tell `FAILED` apart; waiter tokens have them zero (threads are
/// 16-byte aligned).
const TAG_BITS: u32 = 4;
const TAG_MASK: usize = (1 << TAG_BITS) - 1;

/// Why a thread gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// The thread panicked. It was ended without unwinding: what it owned is leaked.
    Panicked,
    /// The thread took a CPU exception (this vector) and was ended like a panic.
    Exception(u8),
    /// The core the thread ran on failed and was fenced.
    CoreFailed(usize),
    /// The core the thread was sent to had no memory to start it.
    OutOfMemory,
}

impl JoinError {
    fn encode(self) -> usize {
        let (kind, value) = match self {
            JoinError::Panicked => (1, 0),
            JoinError::Exception(vector) => (2, usize::from(vector)),
            JoinError::CoreFailed(core) => (3, core),
            JoinError::OutOfMemory => (4, 0),
        };
        (value << 8 | kind) << TAG_BITS | FAILED
    }

    fn decode(state: usize) -> JoinError {
        let word = state >> TAG_BITS;
        match word & 0xFF {
            1 => JoinError::Panicked,
            2 => JoinError::Exception((word >> 8) as u8),
            3 => JoinError::CoreFailed(word >> 8),
            _ => JoinError::OutOfMemory,
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked => f.write_str("the thread panicked"),
            JoinError::Exception(vector) => {
                write!(f, "the thread took CPU exception {vector}")
            }
            JoinError::CoreFailed(core) => write!(f, "core {core}, where the thread ran, failed"),
            JoinError::OutOfMemory => f.write_str("no memory to start the thread"),
        }
    }
}

/// What a packet's state word says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Running,
    Done,
    Failed(JoinError),
    Waiter(usize),
}

fn seen(state: usize) -> Seen {
    match state {
        RUNNING => Seen::Running,
        DONE => Seen::Done,
        _ if state & TAG_MASK == FAILED => Seen::Failed(JoinError::decode(state)),
        _ => Seen::Waiter(state),
    }
}

/// Moves `state` from `RUNNING` or a waiter to `to`; returns the waiter it replaced, or
/// `Err` with what it found when the packet was done or failed already.
fn settle(state: &AtomicUsize, to: usize) -> Result<Option<usize>, Seen> {
    let previous = state
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            match seen(current) {
                Seen::Running | Seen::Waiter(_) => Some(to),
                Seen::Done | Seen::Failed(_) => None,
            }
        })
        .map_err(seen)?;
    Ok(match seen(previous) {
        Seen::Waiter(token) => Some(token),
        _ => None,
    })
}

/// Marks the packet whose state word is `state` failed with `error`, unless it is done
/// or failed already. Returns the waiter to wake, if one waited.
pub(crate) fn fail(state: &AtomicUsize, error: JoinError) -> Option<WaiterToken> {
    settle(state, error.encode())
        .ok()
        .flatten()
        .map(WaiterToken::from_raw)
}

/// Turns the joiner's wait (`token`) into `error`; returns false when the packet was
/// settled first (done, or failed for another reason), in which case whoever settled it
/// wakes the joiner.
pub(crate) fn fail_waiter(state: &AtomicUsize, token: WaiterToken, error: JoinError) -> bool {
    state
        .compare_exchange(
            token.into_raw(),
            error.encode(),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
}

/// Something that can be told its thread will never finish.
pub(crate) trait Abandon {
    /// Marks the packet failed with `error` (unless it is settled already) and returns
    /// the waiter to wake.
    fn abandon(&self, error: JoinError) -> Option<WaiterToken>;
}

/// The meeting point of a thread's result and its joiner.
pub(crate) struct Packet<T> {
    state: AtomicUsize,
    result: UnsafeCell<Option<T>>,
}

// SAFETY: `result` is written only by the finisher before it publishes `DONE` with
// Release, and read only by the joiner after it saw `DONE` with Acquire; T moves
// between cores, so it must be Send.
unsafe impl<T: Send> Sync for Packet<T> {}

impl<T> Packet<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicUsize::new(RUNNING),
            result: UnsafeCell::new(None),
        }
    }

    /// Stores the result; returns the joiner to wake if it is already waiting.
    #[must_use = "a waiting joiner must be woken"]
    pub(crate) fn complete(&self, value: T) -> Option<WaiterToken> {
        // SAFETY: only the finishing thread calls `complete`, once, before `DONE` is
        // published; the joiner does not read `result` before seeing `DONE`.
        unsafe { *self.result.get() = Some(value) };
        match settle(&self.state, DONE) {
            Ok(Some(token)) => Some(WaiterToken::from_raw(token)),
            _ => None,
        }
    }

    /// Returns the state word, for a joiner that registers a wait on another core.
    pub(crate) fn state(&self) -> &AtomicUsize {
        &self.state
    }

    /// Registers the joiner's waiter `token` in a running packet; returns false when the
    /// packet was settled already (then nobody will wake the joiner: it takes the result).
    pub(crate) fn register(&self, token: WaiterToken) -> bool {
        self.state
            .compare_exchange(
                RUNNING,
                token.into_raw(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Returns true once the packet is done or failed.
    pub(crate) fn is_settled(&self) -> bool {
        matches!(
            seen(self.state.load(Ordering::Acquire)),
            Seen::Done | Seen::Failed(_)
        )
    }

    /// Takes the result of a settled packet.
    pub(crate) fn take(&self) -> Result<T, JoinError> {
        match seen(self.state.load(Ordering::Acquire)) {
            Seen::Done => {
                // SAFETY: the state is DONE, so the finisher's write happened before and
                // nobody writes again; only this handle's owner reads.
                let result = unsafe { (*self.result.get()).take() };
                Ok(result.expect("a finished thread left its result"))
            }
            Seen::Failed(error) => Err(error),
            other => panic!("a join woke before its thread finished ({other:?})"),
        }
    }
}

impl<T> Abandon for Packet<T> {
    fn abandon(&self, error: JoinError) -> Option<WaiterToken> {
        fail(&self.state, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as Counter;
    use std::vec::Vec;

    const TOKEN: usize = 3 << 48 | 0x1234_5670;

    #[test]
    fn every_error_survives_the_state_word() {
        for error in [
            JoinError::Panicked,
            JoinError::Exception(14),
            JoinError::Exception(255),
            JoinError::CoreFailed(0),
            JoinError::CoreFailed(63),
            JoinError::OutOfMemory,
        ] {
            let encoded = error.encode();
            assert_eq!(seen(encoded), Seen::Failed(error));
            assert_ne!(encoded, RUNNING);
            assert_ne!(encoded, DONE);
        }
        assert_eq!(seen(TOKEN), Seen::Waiter(TOKEN));
    }

    #[test]
    fn a_failure_wakes_the_waiter_and_a_late_finish_changes_nothing() {
        let state = AtomicUsize::new(TOKEN);
        let woken = fail(&state, JoinError::Panicked).map(WaiterToken::into_raw);
        assert_eq!(woken, Some(TOKEN));
        assert_eq!(settle(&state, DONE), Err(Seen::Failed(JoinError::Panicked)));
        assert_eq!(
            fail(&state, JoinError::OutOfMemory).map(|t| t.into_raw()),
            None
        );
        assert_eq!(
            seen(state.load(Ordering::Relaxed)),
            Seen::Failed(JoinError::Panicked)
        );
    }

    #[test]
    fn a_published_result_is_never_taken_back() {
        let state = AtomicUsize::new(RUNNING);
        assert_eq!(settle(&state, DONE), Ok(None));
        assert!(fail(&state, JoinError::CoreFailed(2)).is_none());
        assert!(!fail_waiter(
            &state,
            WaiterToken::from_raw(TOKEN),
            JoinError::CoreFailed(2)
        ));
        assert_eq!(seen(state.load(Ordering::Relaxed)), Seen::Done);
    }

    #[test]
    fn only_the_registered_waiter_can_be_failed_by_its_core() {
        let state = AtomicUsize::new(RUNNING);
        let token = WaiterToken::from_raw(TOKEN);
        assert!(
            !fail_waiter(&state, token, JoinError::CoreFailed(1)),
            "nobody waits"
        );
        state.store(TOKEN, Ordering::Relaxed);
        assert!(!fail_waiter(
            &state,
            WaiterToken::from_raw(TOKEN + 16),
            JoinError::CoreFailed(1)
        ));
        assert!(fail_waiter(&state, token, JoinError::CoreFailed(1)));
        assert_eq!(
            seen(state.load(Ordering::Relaxed)),
            Seen::Failed(JoinError::CoreFailed(1))
        );
    }

    /// The finisher and a failure race for a packet with a waiter in it, many times on
    /// two threads: exactly one of them settles it, and exactly one of them is told to
    /// wake the waiter.
    #[test]
    fn a_finish_and_a_failure_racing_settle_once_and_wake_once() {
        for _ in 0..2_000 {
            let state = std::sync::Arc::new(AtomicUsize::new(TOKEN));
            let wakes = std::sync::Arc::new(Counter::new(0));
            let racers: Vec<_> = [DONE, JoinError::CoreFailed(5).encode()]
                .into_iter()
                .map(|to| {
                    let (state, wakes) = (state.clone(), wakes.clone());
                    std::thread::spawn(move || {
                        if let Ok(Some(token)) = settle(&state, to) {
                            assert_eq!(token, TOKEN);
                            wakes.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for racer in racers {
                racer.join().unwrap();
            }
            assert_eq!(wakes.load(Ordering::Relaxed), 1);
            let end = seen(state.load(Ordering::Relaxed));
            assert!(end == Seen::Done || end == Seen::Failed(JoinError::CoreFailed(5)));
        }
    }

    /// The joiner registers while the finisher and a failure race: if it got in, exactly
    /// one of the two wakes it; if it came too late, nobody does and it finds the packet
    /// settled, so it never blocks for good and is never woken twice.
    #[test]
    fn a_joiner_racing_a_finish_and_a_failure_is_woken_exactly_when_it_waits() {
        for _ in 0..2_000 {
            let state = std::sync::Arc::new(AtomicUsize::new(RUNNING));
            let wakes = std::sync::Arc::new(Counter::new(0));
            let joiner = {
                let state = state.clone();
                std::thread::spawn(move || {
                    state
                        .compare_exchange(RUNNING, TOKEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                })
            };
            let settlers: Vec<_> = [DONE, JoinError::Panicked.encode()]
                .into_iter()
                .map(|to| {
                    let (state, wakes) = (state.clone(), wakes.clone());
                    std::thread::spawn(move || {
                        if let Ok(Some(_)) = settle(&state, to) {
                            wakes.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            let waited = joiner.join().unwrap();
            for settler in settlers {
                settler.join().unwrap();
            }
            assert_eq!(wakes.load(Ordering::Relaxed), usize::from(waited));
            let end = seen(state.load(Ordering::Relaxed));
            assert!(end == Seen::Done || end == Seen::Failed(JoinError::Panicked));
        }
    }
}
