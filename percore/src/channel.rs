//! Typed channels between threads on any cores: many senders, one receiver that lives on
//! a core chosen when the channel is made, and a bound on the values not yet received.
//!
//! The values travel by message: [`Sender::send`] hands the value to the receiving core
//! as a job (`run_on`: the value moves, nothing is copied or shared), which queues it
//! there and wakes the receiver if it waits. The queue is touched on that core only, so
//! nothing but the counters below is shared between cores. A full channel blocks the
//! sender (its core runs other threads) until the receiver takes a value; a receiver
//! waiting for a value blocks the same way. Neither spins.
//!
//! ```
//! # percore::host::run(2, || {
//! // A channel whose receiving end lives on core 1, with room for 16 values.
//! let (sender, receiver) = percore::channel::<u64>(1, 16);
//! let worker = percore::spawn_on(1, move || {
//!     let mut sum = 0;
//!     // `recv` fails once every sender is gone and every value was received.
//!     while let Ok(value) = receiver.recv() {
//!         sum += value;
//!     }
//!     sum
//! });
//! for value in 1..=100 {
//!     sender.send(value).expect("the receiver is alive");
//! }
//! drop(sender);
//! assert_eq!(worker.join(), Ok(5050));
//! # });
//! ```

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::sched::{park, run_on, Parked};

/// Returns the two ends of a channel whose [`Receiver`] is used on core `core`, and
/// which holds at most `capacity` values sent and not yet received.
///
/// # Panics
/// Panics if `capacity` is 0 or `core` is not a core of this run.
pub fn channel<T: Send + 'static>(core: usize, capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "a channel holds at least one value");
    let cores = crate::core_count();
    assert!(
        core < cores,
        "channel to core {core}: this run has cores 0 to {}",
        cores - 1
    );
    let shared = Arc::new(Shared {
        home: core,
        capacity,
        in_flight: AtomicUsize::new(0),
        senders: AtomicUsize::new(1),
        receiver_alive: AtomicBool::new(true),
        home_state: spin::Mutex::new(Home {
            queue: VecDeque::new(),
            receiver: None,
            blocked_senders: VecDeque::new(),
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver {
            shared,
            not_sync: PhantomData,
        },
    )
}

/// What both ends share.
struct Shared<T> {
    /// The receiver's core: values are queued there.
    home: usize,
    capacity: usize,
    /// Values sent and not yet received, queued or still on their way.
    in_flight: AtomicUsize,
    /// Live senders.
    senders: AtomicUsize,
    receiver_alive: AtomicBool,
    /// Used on the home core only (by the receiver and the jobs senders send there);
    /// the lock is never contended and never held across a switch.
    home_state: spin::Mutex<Home<T>>,
}

struct Home<T> {
    queue: VecDeque<T>,
    /// The receiver, while it waits for a value.
    receiver: Option<Parked>,
    /// Senders that found the channel full, in the order they came.
    blocked_senders: VecDeque<Parked>,
}

impl<T> Shared<T> {
    /// Returns true when nothing more can arrive: every sender is gone and every value
    /// sent was received.
    fn drained(&self) -> bool {
        self.senders.load(Ordering::Acquire) == 0 && self.in_flight.load(Ordering::Acquire) == 0
    }

    /// On the home core: queues a value that arrived and wakes the receiver.
    fn deliver(&self, value: T) {
        let waiting = {
            let mut home = self.home_state.lock();
            if !self.receiver_alive.load(Ordering::Acquire) {
                // Dropped here, with the lock released first.
                drop(home);
                drop(value);
                return;
            }
            home.queue.push_back(value);
            home.receiver.take()
        };
        if let Some(receiver) = waiting {
            receiver.unpark();
        }
    }

    /// On the home core: wakes the receiver if it waits (the last sender is gone).
    fn wake_receiver(&self) {
        let waiting = self.home_state.lock().receiver.take();
        if let Some(receiver) = waiting {
            receiver.unpark();
        }
    }

    /// On the home core: keeps a sender that found the channel full until a value is
    /// received, or wakes it now if there is room again or the receiver is gone.
    fn block_sender(&self, sender: Parked) {
        let mut home = self.home_state.lock();
        let room = self.in_flight.load(Ordering::Acquire) < self.capacity;
        if room || !self.receiver_alive.load(Ordering::Acquire) {
            drop(home);
            sender.unpark();
        } else {
            home.blocked_senders.push_back(sender);
        }
    }
}

/// The sending end of a channel; clone it for more senders, on any cores.
pub struct Sender<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> Sender<T> {
    /// Sends `value` to the receiver, blocking the calling thread while the channel is
    /// full. Returns the value back in the error if the receiver is gone.
    ///
    /// # Panics
    /// Panics when called outside a thread and the channel is full.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        let shared = &self.shared;
        loop {
            if !shared.receiver_alive.load(Ordering::Acquire) {
                return Err(SendError(value));
            }
            if shared.in_flight.fetch_add(1, Ordering::AcqRel) < shared.capacity {
                break;
            }
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            let waiting = shared.clone();
            park(move |parked| {
                run_on(waiting.home, move || waiting.block_sender(parked))
                    .expect("the home core was checked when the channel was made");
            });
        }
        let arriving = shared.clone();
        run_on(shared.home, move || arriving.deliver(value))
            .expect("the home core was checked when the channel was made");
        Ok(())
    }

    /// Returns the core the receiver lives on.
    pub fn core(&self) -> usize {
        self.shared.home
    }
}

impl<T: Send + 'static> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send + 'static> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: a waiting receiver learns there is nothing more to come
            // (after the values still on their way, which wake it themselves).
            let shared = self.shared.clone();
            let _ = run_on(shared.home, move || shared.wake_receiver());
        }
    }
}

impl<T: Send + 'static> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("core", &self.shared.home)
            .finish_non_exhaustive()
    }
}

/// The receiving end of a channel, used on the core the channel was made for.
///
/// It may move to that core before its first use, but it is not `Sync`: one thread
/// receives at a time, so a waiting receiver is never overwritten by another.
pub struct Receiver<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    not_sync: PhantomData<Cell<()>>,
}

impl<T: Send + 'static> Receiver<T> {
    /// Returns the next value, blocking the calling thread until one arrives. Fails
    /// once every sender is gone and every value was received.
    ///
    /// # Panics
    /// Panics when called on another core than the channel's, or outside a thread when
    /// no value is waiting.
    pub fn recv(&self) -> Result<T, RecvError> {
        loop {
            match self.try_recv() {
                Ok(value) => return Ok(value),
                Err(TryRecvError::Disconnected) => return Err(RecvError),
                Err(TryRecvError::Empty) => {}
            }
            let shared = &self.shared;
            park(|parked| {
                let mut home = shared.home_state.lock();
                if home.queue.is_empty() && !shared.drained() {
                    home.receiver = Some(parked);
                } else {
                    drop(home);
                    parked.unpark();
                }
            });
        }
    }

    /// Returns the next value if one is waiting, without blocking.
    ///
    /// # Panics
    /// Panics when called on another core than the channel's.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let shared = &self.shared;
        let here = crate::current_core();
        assert_eq!(
            here, shared.home,
            "the receiver of a channel to core {} was used on core {here}",
            shared.home
        );
        let (value, sender) = {
            let mut home = shared.home_state.lock();
            match home.queue.pop_front() {
                Some(value) => (value, home.blocked_senders.pop_front()),
                None if shared.drained() => return Err(TryRecvError::Disconnected),
                None => return Err(TryRecvError::Empty),
            }
        };
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(sender) = sender {
            sender.unpark();
        }
        Ok(value)
    }

    /// Returns how many values are queued here, received by this core and not yet
    /// taken (values still on their way from other cores are not counted).
    pub fn len(&self) -> usize {
        self.shared.home_state.lock().queue.len()
    }

    /// Returns true when no value is queued here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the core the receiver is used on.
    pub fn core(&self) -> usize {
        self.shared.home
    }
}

impl<T: Send + 'static> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_alive.store(false, Ordering::Release);
        let (queued, blocked) = {
            let mut home = self.shared.home_state.lock();
            (
                core::mem::take(&mut home.queue),
                core::mem::take(&mut home.blocked_senders),
            )
        };
        drop(queued);
        // Blocked senders wake up to find the receiver gone.
        for sender in blocked {
            sender.unpark();
        }
    }
}

impl<T: Send + 'static> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("core", &self.shared.home)
            .finish_non_exhaustive()
    }
}

/// The receiver is gone; the value that could not be sent comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiver of the channel is gone")
    }
}

/// Every sender is gone and every value was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every sender of the channel is gone")
    }
}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// No value is waiting now; more may come.
    Empty,
    /// Every sender is gone and every value was received.
    Disconnected,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "no value is waiting",
            TryRecvError::Disconnected => "every sender of the channel is gone",
        })
    }
}

#[cfg(test)]
mod tests;
