//! A single-producer single-consumer ring of cache-line slots for one ordered pair of cores.
//!
//! # Protocol (Barrelfish UMP style)
//!
//! Every slot is one 64-byte line: a sequence word and 56 bytes of payload. Positions
//! count messages from 0 and never wrap in practice (a `u64` at 10^9 messages a second
//! lasts 584 years). The message at position `p` lives in slot `p % N`, and its slot's
//! sequence word holds `p + 1` once it is published.
//!
//! * The sender writes the payload words, then stores `p + 1` into the sequence word
//!   with `Release`.
//! * The receiver polls the sequence word of the slot it expects next with `Acquire`;
//!   when it reads `p + 1`, the payload is complete. A stale value from the previous lap
//!   (`p + 1 - N`) or the initial 0 means "nothing yet". The receiver never writes slots.
//! * The receiver gives slots back by storing its position into a `consumed` counter on
//!   a line of its own, with `Release`, but only once every `N / 4` messages (and
//!   whenever it finds the ring empty, so a waiting sender always learns of freed slots).
//! * The sender keeps a private copy of `consumed` and only reads the shared counter
//!   (with `Acquire`) when its copy says the ring is full.
//!
//! So the sender writes only slot lines, the receiver writes only its `consumed` line
//! (once per quarter ring, never a slot), and each message costs one line transfer plus
//! a quarter-ring share of one `consumed` transfer. Both sides' own positions live in their handles,
//! on their own cores.

use core::marker::PhantomData;

use crossbeam_utils::CachePadded;

use crate::sync::{AccessCheck, AtomicBool, AtomicU64, Ordering};
use crate::wire::{Wire, Words, SLOT_WORDS};

/// One cache line: the sequence word the receiver polls and the payload it guards.
#[repr(C, align(64))]
struct Slot {
    /// `position + 1` of the message in this slot, written only by the sender.
    sequence: AtomicU64,
    /// The payload. Relaxed atomics compile to plain moves on x86_64; the sequence word
    /// orders them.
    words: [AtomicU64; SLOT_WORDS],
    /// Zero-sized except under loom, where it detects racing payload accesses.
    access: AccessCheck,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<Slot>() == 64);

impl Slot {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            sequence: AtomicU64::new(0),
            words: [const { AtomicU64::new(0) }; SLOT_WORDS],
            access: AccessCheck::new(),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Self {
            sequence: AtomicU64::new(0),
            words: core::array::from_fn(|_| AtomicU64::new(0)),
            access: AccessCheck::new(),
        }
    }
}

/// The memory of a mailbox ring from one core to another, with `N` slots of one
/// cache line each.
///
/// `N` must be a power of two (checked at compile time). The ring can live in a
/// `static` (`Ring::new` is `const`) or in memory the caller provides. It is used
/// through the one [`Sender`] and one [`Receiver`] that [`Ring::split`] hands out
/// together, or that [`Ring::take_sender`] and [`Ring::take_receiver`] hand out
/// separately (each on the core that will use it).
///
/// Dropping a ring that still holds messages leaks whatever values they own.
pub struct Ring<T: Wire, const N: usize> {
    slots: [Slot; N],
    /// Receiver's position, published in batches. Written only by the receiver.
    consumed: CachePadded<AtomicU64>,
    /// Set once the sender was handed out.
    sender_taken: AtomicBool,
    /// Set once the receiver was handed out.
    receiver_taken: AtomicBool,
    _carries: PhantomData<fn(T) -> T>,
}

impl<T: Wire, const N: usize> Ring<T, N> {
    const CAPACITY_IS_POWER_OF_TWO: () =
        assert!(N.is_power_of_two(), "ring capacity must be a power of two");

    /// Number of messages the receiver consumes before it publishes its position.
    /// A quarter ring keeps the sender supplied without a line transfer per message.
    const ACKNOWLEDGE_BATCH: u64 = if N >= 4 { (N / 4) as u64 } else { 1 };

    /// Returns an empty ring.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        let () = Self::CAPACITY_IS_POWER_OF_TWO;
        Self {
            slots: [const { Slot::new() }; N],
            consumed: CachePadded::new(AtomicU64::new(0)),
            sender_taken: AtomicBool::new(false),
            receiver_taken: AtomicBool::new(false),
            _carries: PhantomData,
        }
    }

    /// Returns an empty ring.
    #[cfg(loom)]
    pub fn new() -> Self {
        let () = Self::CAPACITY_IS_POWER_OF_TWO;
        Self {
            slots: core::array::from_fn(|_| Slot::new()),
            consumed: CachePadded::new(AtomicU64::new(0)),
            sender_taken: AtomicBool::new(false),
            receiver_taken: AtomicBool::new(false),
            _carries: PhantomData,
        }
    }

    /// Returns the number of slots.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Returns the ring's only sender and only receiver, or `None` if either was
    /// handed out before.
    ///
    /// Give the sender to the sending core and the receiver to the receiving core.
    pub fn split(&self) -> Option<(Sender<'_, T, N>, Receiver<'_, T, N>)> {
        if self.receiver_taken.load(Ordering::Acquire) {
            return None;
        }
        let sender = self.take_sender()?;
        let receiver = self.take_receiver()?;
        Some((sender, receiver))
    }

    /// Returns the ring's only sender, or `None` if it was handed out before.
    pub fn take_sender(&self) -> Option<Sender<'_, T, N>> {
        if self.sender_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Sender {
            ring: self,
            head: 0,
            consumed_copy: 0,
        })
    }

    /// Returns the ring's only receiver, or `None` if it was handed out before.
    pub fn take_receiver(&self) -> Option<Receiver<'_, T, N>> {
        if self.receiver_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Receiver {
            ring: self,
            tail: 0,
            published: 0,
        })
    }

    fn slot(&self, position: u64) -> &Slot {
        // N is a power of two, so the mask is the remainder.
        &self.slots[(position as usize) & (N - 1)]
    }
}

impl<T: Wire, const N: usize> Default for Ring<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Wire, const N: usize> core::fmt::Debug for Ring<T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &N)
            .field("consumed", &self.consumed.load(Ordering::Relaxed))
            .field("sender_taken", &self.sender_taken.load(Ordering::Relaxed))
            .field(
                "receiver_taken",
                &self.receiver_taken.load(Ordering::Relaxed),
            )
            .finish()
    }
}

/// The error of [`Sender::try_send`]: the ring is full. Carries the message back.
#[derive(Debug, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// Returns the message that could not be sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// The sending end of a [`Ring`]; there is exactly one per ring.
pub struct Sender<'r, T: Wire, const N: usize> {
    ring: &'r Ring<T, N>,
    /// Position of the next message to send.
    head: u64,
    /// Last value read from `ring.consumed`; never ahead of the real one.
    consumed_copy: u64,
}

impl<T: Wire, const N: usize> Sender<'_, T, N> {
    /// Sends `message` if a slot is free, or returns it in [`Full`].
    pub fn try_send(&mut self, message: T) -> Result<(), Full<T>> {
        if !self.has_room() {
            return Err(Full(message));
        }
        self.publish(message.encode());
        Ok(())
    }

    /// Sends `message`, calling `wait` each time the ring is full until a slot frees up.
    ///
    /// A full ring never drops or overwrites: how to wait is the caller's choice (a spin
    /// hint on a core that polls anyway, a yield for a cooperative thread). A sender that
    /// batches wake-ups rings the receiver's doorbell in `wait` (see
    /// [`crate::Doorbell::notify`]): a halted receiver never frees a slot.
    pub fn send(&mut self, message: T, mut wait: impl FnMut()) {
        while !self.has_room() {
            wait();
        }
        self.publish(message.encode());
    }

    /// Returns whether a slot is free, reading the receiver's counter only when the
    /// cached copy says the ring is full.
    fn has_room(&mut self) -> bool {
        if self.head - self.consumed_copy < N as u64 {
            return true;
        }
        // Acquire: the receiver's reads of the slot we are about to reuse happen before
        // our writes to it.
        self.consumed_copy = self.ring.consumed.load(Ordering::Acquire);
        self.head - self.consumed_copy < N as u64
    }

    /// Writes `words` into the slot at `head` and publishes it. The caller checked room.
    fn publish(&mut self, words: Words) {
        let slot = self.ring.slot(self.head);
        slot.access.write();
        for (cell, word) in slot.words.iter().zip(words) {
            cell.store(word, Ordering::Relaxed);
        }
        // Release: the payload is visible to whoever reads this sequence with Acquire.
        slot.sequence.store(self.head + 1, Ordering::Release);
        self.head += 1;
    }

    /// Returns the number of messages sent so far.
    pub fn sent(&self) -> u64 {
        self.head
    }

    /// Returns whether the ring looks full (reads the receiver's counter).
    pub fn is_full(&mut self) -> bool {
        !self.has_room()
    }
}

impl<T: Wire, const N: usize> core::fmt::Debug for Sender<'_, T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender")
            .field("head", &self.head)
            .field("consumed_copy", &self.consumed_copy)
            .finish()
    }
}

/// The receiving end of a [`Ring`]; there is exactly one per ring.
pub struct Receiver<'r, T: Wire, const N: usize> {
    ring: &'r Ring<T, N>,
    /// Position of the next message to receive.
    tail: u64,
    /// Last value stored into `ring.consumed`.
    published: u64,
}

impl<T: Wire, const N: usize> Receiver<'_, T, N> {
    /// Returns the next message, or `None` if none is published yet.
    pub fn try_recv(&mut self) -> Option<T> {
        let slot = self.ring.slot(self.tail);
        // Acquire: pairs with the sender's Release store, so the payload is complete.
        if slot.sequence.load(Ordering::Acquire) != self.tail + 1 {
            // Nothing new: hand back what we consumed so a waiting sender can go on.
            self.acknowledge();
            return None;
        }
        slot.access.read();
        let mut words = [0; SLOT_WORDS];
        for (word, cell) in words.iter_mut().zip(&slot.words) {
            *word = cell.load(Ordering::Relaxed);
        }
        self.tail += 1;
        if self.tail - self.published >= Ring::<T, N>::ACKNOWLEDGE_BATCH {
            self.acknowledge();
        }
        Some(T::decode(words))
    }

    /// Returns whether no message is waiting. Does not consume anything.
    pub fn is_empty(&self) -> bool {
        self.ring.slot(self.tail).sequence.load(Ordering::Acquire) != self.tail + 1
    }

    /// Returns the number of messages received so far.
    pub fn received(&self) -> u64 {
        self.tail
    }

    /// Publishes the receive position so the sender may reuse the consumed slots.
    fn acknowledge(&mut self) {
        if self.published != self.tail {
            // Release: our payload reads happen before the sender's next writes.
            self.ring.consumed.store(self.tail, Ordering::Release);
            self.published = self.tail;
        }
    }
}

impl<T: Wire, const N: usize> core::fmt::Debug for Receiver<'_, T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Receiver")
            .field("tail", &self.tail)
            .field("published", &self.published)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn words(value: u64) -> Words {
        [
            value,
            value + 1,
            value + 2,
            value + 3,
            value + 4,
            value + 5,
            value + 6,
        ]
    }

    #[test]
    fn slot_is_one_cache_line() {
        assert_eq!(core::mem::size_of::<Slot>(), 64);
        assert_eq!(core::mem::align_of::<Slot>(), 64);
    }

    #[test]
    fn each_end_is_handed_out_once() {
        let ring: Ring<Words, 4> = Ring::new();
        let mut rx = ring.take_receiver().unwrap();
        assert!(ring.take_receiver().is_none());
        assert!(ring.split().is_none());
        let mut tx = ring.take_sender().unwrap();
        assert!(ring.take_sender().is_none());
        tx.try_send([7; SLOT_WORDS]).unwrap();
        assert_eq!(rx.try_recv(), Some([7; SLOT_WORDS]));
    }

    #[test]
    fn split_only_once() {
        let ring = Ring::<Words, 4>::new();
        assert!(ring.split().is_some());
        assert!(ring.split().is_none());
    }

    #[test]
    fn works_from_a_static() {
        static RING: Ring<Words, 8> = Ring::new();
        let (mut tx, mut rx) = RING.split().unwrap();
        tx.try_send(words(9)).unwrap();
        assert_eq!(rx.try_recv(), Some(words(9)));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn full_ring_returns_message_and_never_overwrites() {
        let ring = Ring::<Words, 8>::new();
        let (mut tx, mut rx) = ring.split().unwrap();
        for i in 0..8 {
            tx.try_send(words(i * 10)).unwrap();
        }
        assert!(tx.is_full());
        assert_eq!(tx.try_send(words(999)), Err(Full(words(999))));
        // One receive is not yet acknowledged (batch of 2), so still full.
        assert_eq!(rx.try_recv(), Some(words(0)));
        assert_eq!(tx.try_send(words(998)), Err(Full(words(998))));
        assert_eq!(rx.try_recv(), Some(words(10)));
        tx.try_send(words(80)).unwrap();
        tx.try_send(words(90)).unwrap();
        assert!(tx.try_send(words(100)).is_err());
        for i in 2..10 {
            assert_eq!(rx.try_recv(), Some(words(i * 10)));
        }
        assert_eq!(rx.try_recv(), None);
        assert!(rx.is_empty());
        assert_eq!(tx.sent(), 10);
        assert_eq!(rx.received(), 10);
    }

    #[test]
    fn acknowledges_in_batches_and_when_empty() {
        let ring = Ring::<Words, 16>::new();
        let (mut tx, mut rx) = ring.split().unwrap();
        for i in 0..16 {
            tx.try_send(words(i)).unwrap();
        }
        for _ in 0..3 {
            rx.try_recv().unwrap();
        }
        // Three consumed, batch of four not complete: the sender cannot see them yet.
        assert!(tx.try_send(words(0)).is_err());
        rx.try_recv().unwrap();
        // The fourth completes the batch.
        for i in 0..4 {
            tx.try_send(words(100 + i)).unwrap();
        }
        assert!(tx.try_send(words(0)).is_err());
        for _ in 0..14 {
            rx.try_recv().unwrap();
        }
        // 14 consumed since: 12 acknowledged in batches, 2 still private.
        for i in 0..12 {
            tx.try_send(words(200 + i)).unwrap();
        }
        assert!(tx.try_send(words(0)).is_err());
        for i in 0..2 {
            assert_eq!(rx.try_recv(), Some(words(102 + i)));
        }
        // Draining completes the batches; the empty poll has nothing left to publish.
        for i in 0..12 {
            assert_eq!(rx.try_recv(), Some(words(200 + i)));
        }
        assert_eq!(rx.try_recv(), None);
        for i in 0..16 {
            tx.try_send(words(300 + i)).unwrap();
        }
        assert!(tx.try_send(words(0)).is_err());
    }

    #[test]
    fn empty_receive_publishes_partial_batch() {
        let ring = Ring::<Words, 16>::new();
        let (mut tx, mut rx) = ring.split().unwrap();
        for i in 0..16 {
            tx.try_send(words(i)).unwrap();
        }
        for i in 0..16 {
            assert_eq!(rx.try_recv(), Some(words(i)));
        }
        tx.try_send(words(16)).unwrap();
        assert_eq!(rx.try_recv(), Some(words(16)));
        for i in 17..32 {
            tx.try_send(words(i)).unwrap();
        }
        // One consumed but unpublished: full from the sender's side.
        assert!(tx.try_send(words(0)).is_err());
        let ring2 = Ring::<Words, 16>::new();
        let (mut tx2, mut rx2) = ring2.split().unwrap();
        for i in 0..16 {
            tx2.try_send(words(i)).unwrap();
        }
        for _ in 0..16 {
            rx2.try_recv().unwrap();
        }
        tx2.try_send(words(16)).unwrap();
        assert_eq!(rx2.try_recv(), Some(words(16)));
        // The empty poll publishes position 17.
        assert_eq!(rx2.try_recv(), None);
        for i in 17..33 {
            tx2.try_send(words(i)).unwrap();
        }
        assert!(tx2.try_send(words(0)).is_err());
    }

    #[test]
    fn one_slot_ring() {
        let ring = Ring::<Words, 1>::new();
        let (mut tx, mut rx) = ring.split().unwrap();
        for i in 0..5 {
            tx.try_send(words(i)).unwrap();
            assert!(tx.try_send(words(i)).is_err());
            assert_eq!(rx.try_recv(), Some(words(i)));
            assert_eq!(rx.try_recv(), None);
        }
    }

    #[test]
    fn send_waits_until_receiver_frees_a_slot() {
        let ring = Ring::<Words, 2>::new();
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.send(words(1), core::hint::spin_loop);
        tx.send(words(2), core::hint::spin_loop);
        let mut waits = 0;
        let mut pending = Some(&mut rx);
        let mut drained = Vec::new();
        tx.send(words(3), || {
            waits += 1;
            if let Some(rx) = pending.take() {
                drained.push(rx.try_recv().unwrap());
            }
        });
        assert_eq!(waits, 1);
        assert_eq!(drained, vec![words(1)]);
        assert_eq!(rx.try_recv(), Some(words(2)));
        assert_eq!(rx.try_recv(), Some(words(3)));
    }
}
