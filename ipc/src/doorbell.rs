//! Idle and wake-up: a receiver halts only after saying so, and a sender interrupts it
//! only when it has said so.
//!
//! # Protocol
//!
//! Each core has one [`Doorbell`]: an idle counter on a line of its own, written only
//! by its owner. An odd value means "idle"; each idle period has its own odd value.
//!
//! * Receiver, after a poll found nothing: make the counter odd, `fence(SeqCst)`, check
//!   every inbound ring again; if one has a message, make it even and go on, else halt.
//!   After waking, make it even.
//! * Sender, after publishing (once per batch is enough): `fence(SeqCst)`, read the
//!   counter; if it is odd, send the interrupt (an IPI). With a [`WakeMemo`] a sender
//!   sends at most one interrupt per idle period.
//!
//! This is a store-buffering (Dekker) pattern. The two SeqCst fences are totally
//! ordered: if the receiver's fence comes first, the sender's read after its own fence
//! sees the odd value and interrupts; if the sender's fence comes first, the receiver's
//! re-check after its fence sees the published message. Either way no wake-up is lost.
//! Without the fences both sides could read stale values and the receiver would sleep
//! on a message (the loom model shows it).
//!
//! Senders never write the counter: the line stays shared among them while the owner
//! is busy, and the owner's stores are the only ones, which keeps the argument above
//! (and its loom model) simple. The price is that several senders, or one sender
//! without a memo, may interrupt the same idle period more than once; a spare
//! interrupt only costs the receiver one more poll.
//!
//! On hardware the halt must not miss an interrupt that arrives between the re-check
//! and the `hlt`: the kernel masks interrupts before announcing idle and halts with
//! `sti; hlt`, so a pending IPI ends the `hlt` at once.

use crossbeam_utils::CachePadded;

use crate::sync::{fence, AtomicU64, Ordering};

/// A core's idle counter, read by every core that sends to it.
pub struct Doorbell {
    /// Odd while the owner is idle; written only by the owner.
    state: CachePadded<AtomicU64>,
}

/// What one sender remembers about one receiver's doorbell: the idle period it last
/// interrupted. Keep one per destination, next to the [`crate::Sender`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WakeMemo {
    interrupted: u64,
}

impl WakeMemo {
    /// Returns a memo that has interrupted nothing yet.
    pub const fn new() -> Self {
        Self { interrupted: 0 }
    }
}

impl Doorbell {
    /// Returns a doorbell of a core that is not idle.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            state: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Returns a doorbell of a core that is not idle.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            state: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Announces that the owning core is about to halt. Only the owner may call it, and
    /// it must then check all its inbound rings once more before it halts (see
    /// [`crate::Endpoint::halt_if_idle`]).
    pub fn announce_idle(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if state & 1 == 0 {
            self.state.store(state + 1, Ordering::Relaxed);
        }
        // Orders the announcement before the re-check's loads (pairs with `notify`).
        fence(Ordering::SeqCst);
    }

    /// Withdraws the announcement: the owner found work or woke up. Owner only.
    pub fn withdraw_idle(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if state & 1 == 1 {
            self.state.store(state + 1, Ordering::Relaxed);
        }
    }

    /// Calls `interrupt` if the owner has announced idle; returns whether it did. Call
    /// after publishing messages to the owner (once per batch), and always before
    /// waiting on a full ring to the owner.
    pub fn notify(&self, interrupt: impl FnOnce()) -> bool {
        let state = self.idle_state();
        if state & 1 == 1 {
            interrupt();
        }
        state & 1 == 1
    }

    /// Like [`Doorbell::notify`], but calls `interrupt` at most once per idle period
    /// for the sender that owns `memo`.
    pub fn notify_once(&self, memo: &mut WakeMemo, interrupt: impl FnOnce()) -> bool {
        let state = self.idle_state();
        if state & 1 == 1 && state != memo.interrupted {
            memo.interrupted = state;
            interrupt();
            true
        } else {
            false
        }
    }

    /// Returns the counter as seen after the sender's fence.
    fn idle_state(&self) -> u64 {
        // Orders the sender's publication before the load (pairs with `announce_idle`).
        fence(Ordering::SeqCst);
        self.state.load(Ordering::Relaxed)
    }

    /// Returns whether the owner has announced idle and not withdrawn yet.
    pub fn is_idle(&self) -> bool {
        self.state.load(Ordering::Relaxed) & 1 == 1
    }
}

impl Default for Doorbell {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Doorbell")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn interrupts_only_an_idle_core() {
        let doorbell = Doorbell::new();
        let mut interrupts = 0;
        assert!(!doorbell.notify(|| interrupts += 1));
        doorbell.announce_idle();
        assert!(doorbell.is_idle());
        assert!(doorbell.notify(|| interrupts += 1));
        // Senders do not clear the flag: until the owner wakes, each notify interrupts.
        assert!(doorbell.notify(|| interrupts += 1));
        assert_eq!(interrupts, 2);
        doorbell.withdraw_idle();
        assert!(!doorbell.is_idle());
        assert!(!doorbell.notify(|| interrupts += 1));
        assert_eq!(interrupts, 2);
    }

    #[test]
    fn memo_interrupts_once_per_idle_period() {
        let doorbell = Doorbell::new();
        let (mut first, mut second) = (WakeMemo::new(), WakeMemo::new());
        let mut interrupts = 0;
        assert!(!doorbell.notify_once(&mut first, || interrupts += 1));
        doorbell.announce_idle();
        doorbell.announce_idle(); // announcing twice is one period
        assert!(doorbell.notify_once(&mut first, || interrupts += 1));
        assert!(!doorbell.notify_once(&mut first, || interrupts += 1));
        assert!(doorbell.notify_once(&mut second, || interrupts += 1));
        doorbell.withdraw_idle();
        doorbell.withdraw_idle();
        assert!(!doorbell.notify_once(&mut first, || interrupts += 1));
        doorbell.announce_idle();
        assert!(doorbell.notify_once(&mut first, || interrupts += 1));
        assert_eq!(interrupts, 3);
    }
}
