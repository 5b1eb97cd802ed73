//! A core's mailbox: receives fairly from the rings of all other cores, and halts safely.
//!
//! One poll is one round over every inbound ring, taking up to `batch` messages from
//! each. The ring that goes first moves on by one every round, so a busy sender can
//! neither starve the others nor always be served last, and batching keeps a ring's
//! slots hot in cache while it is being drained.

use crate::doorbell::Doorbell;
use crate::ring::Receiver;
use crate::wire::Wire;

/// One inbound ring and the core at its other end.
struct Inbound<'r, T: Wire, const N: usize> {
    source: u16,
    receiver: Receiver<'r, T, N>,
}

/// The receiving side of one core: up to `SOURCES` inbound rings of `N` slots each.
pub struct Endpoint<'r, T: Wire, const N: usize, const SOURCES: usize> {
    inbound: heapless::Vec<Inbound<'r, T, N>, SOURCES>,
    /// Index into `inbound` of the ring served first in the next round.
    first: usize,
    /// Most messages taken from one ring per round.
    batch: usize,
}

impl<'r, T: Wire, const N: usize, const SOURCES: usize> Endpoint<'r, T, N, SOURCES> {
    /// Returns an endpoint with no rings that takes up to `batch` messages (at least
    /// one) from each ring per round.
    pub const fn new(batch: usize) -> Self {
        Self {
            inbound: heapless::Vec::new(),
            first: 0,
            batch: if batch == 0 { 1 } else { batch },
        }
    }

    /// Adds the ring from core `source`, or gives the receiver back if the endpoint
    /// already has `SOURCES` rings.
    pub fn attach(
        &mut self,
        source: u16,
        receiver: Receiver<'r, T, N>,
    ) -> Result<(), Receiver<'r, T, N>> {
        self.inbound
            .push(Inbound { source, receiver })
            .map_err(|inbound| inbound.receiver)
    }

    /// Returns the cores this endpoint receives from, in attachment order.
    pub fn sources(&self) -> impl Iterator<Item = u16> + '_ {
        self.inbound.iter().map(|inbound| inbound.source)
    }

    /// Receives one round: up to `batch` messages from every ring, starting one ring
    /// further on than last time, and hands each to `handle` with its source core.
    /// Returns the number of messages handled.
    pub fn poll(&mut self, mut handle: impl FnMut(u16, T)) -> usize {
        let count = self.inbound.len();
        if count == 0 {
            return 0;
        }
        let first = self.first % count;
        self.first = (first + 1) % count;
        let mut handled = 0;
        for offset in 0..count {
            let inbound = &mut self.inbound[(first + offset) % count];
            for _ in 0..self.batch {
                match inbound.receiver.try_recv() {
                    Some(message) => {
                        handle(inbound.source, message);
                        handled += 1;
                    }
                    None => break,
                }
            }
        }
        handled
    }

    /// Receives every message waiting in the ring from core `source` (not one batch: all
    /// of them) and hands each to `handle`. Returns how many there were; 0 when no ring
    /// comes from `source`. For a source that stopped sending for good (its core failed),
    /// this takes the last of what it sent.
    pub fn drain(&mut self, source: u16, mut handle: impl FnMut(u16, T)) -> usize {
        let Some(inbound) = self
            .inbound
            .iter_mut()
            .find(|inbound| inbound.source == source)
        else {
            return 0;
        };
        let mut handled = 0;
        while let Some(message) = inbound.receiver.try_recv() {
            handle(source, message);
            handled += 1;
        }
        handled
    }

    /// Returns whether any ring has a message waiting.
    pub fn has_pending(&self) -> bool {
        self.inbound
            .iter()
            .any(|inbound| !inbound.receiver.is_empty())
    }

    /// Halts the core unless a message is waiting; returns whether it halted.
    ///
    /// Call it after a poll that found nothing. It announces idle on `doorbell` (this
    /// core's), checks every ring again, and only then calls `halt`, which returns when
    /// the core is woken (in the kernel: `sti; hlt`, with interrupts masked before this
    /// call). Senders wake the core through [`Doorbell::notify`].
    pub fn halt_if_idle(&mut self, doorbell: &Doorbell, halt: impl FnOnce()) -> bool {
        doorbell.announce_idle();
        if self.has_pending() {
            doorbell.withdraw_idle();
            return false;
        }
        halt();
        doorbell.withdraw_idle();
        true
    }
}

impl<T: Wire, const N: usize, const SOURCES: usize> core::fmt::Debug
    for Endpoint<'_, T, N, SOURCES>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("sources", &self.inbound.len())
            .field("first", &self.first)
            .field("batch", &self.batch)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ring::Ring;
    use crate::wire::Words;

    fn tagged(source: u64, sequence: u64) -> Words {
        [source, sequence, 0, 0, 0, 0, 0]
    }

    #[test]
    fn round_robin_with_batches_and_rotating_start() {
        let rings: [Ring<Words, 16>; 3] = [Ring::new(), Ring::new(), Ring::new()];
        let mut endpoint = Endpoint::<Words, 16, 3>::new(2);
        let mut senders = Vec::new();
        for (source, ring) in rings.iter().enumerate() {
            let (mut tx, rx) = ring.split().unwrap();
            for sequence in 0..10 {
                tx.try_send(tagged(source as u64, sequence)).unwrap();
            }
            endpoint.attach(source as u16 + 10, rx).unwrap();
            senders.push(tx);
        }
        assert_eq!(endpoint.sources().collect::<Vec<_>>(), vec![10, 11, 12]);

        let mut order = Vec::new();
        let handled = endpoint.poll(|source, words| order.push((source, words[1])));
        assert_eq!(handled, 6);
        assert_eq!(
            order,
            vec![(10, 0), (10, 1), (11, 0), (11, 1), (12, 0), (12, 1)]
        );

        order.clear();
        endpoint.poll(|source, words| order.push((source, words[1])));
        assert_eq!(
            order,
            vec![(11, 2), (11, 3), (12, 2), (12, 3), (10, 2), (10, 3)]
        );

        order.clear();
        endpoint.poll(|source, words| order.push((source, words[1])));
        assert_eq!(order[0], (12, 4));
    }

    #[test]
    fn busy_sender_does_not_starve_others() {
        let busy = Ring::<Words, 64>::new();
        let quiet = Ring::<Words, 64>::new();
        let (mut busy_tx, busy_rx) = busy.split().unwrap();
        let (mut quiet_tx, quiet_rx) = quiet.split().unwrap();
        let mut endpoint = Endpoint::<Words, 64, 2>::new(4);
        endpoint.attach(0, busy_rx).unwrap();
        endpoint.attach(1, quiet_rx).unwrap();
        quiet_tx.try_send(tagged(1, 0)).unwrap();
        while busy_tx.try_send(tagged(0, 0)).is_ok() {}
        // The busy ring is full and would stay full if its sender kept up; the quiet
        // message must still come after at most one batch of busy ones.
        let mut busy_before_quiet = 0;
        let mut quiet_seen = false;
        endpoint.poll(|source, _| {
            if source == 1 {
                quiet_seen = true;
            } else if !quiet_seen {
                busy_before_quiet += 1;
            }
        });
        assert!(quiet_seen);
        assert_eq!(busy_before_quiet, 4);
    }

    #[test]
    fn drain_empties_one_ring_past_the_batch_and_leaves_the_others() {
        let rings: [Ring<Words, 16>; 2] = [Ring::new(), Ring::new()];
        let mut endpoint = Endpoint::<Words, 16, 2>::new(2);
        let (mut first, first_rx) = rings[0].split().unwrap();
        let (mut second, second_rx) = rings[1].split().unwrap();
        endpoint.attach(5, first_rx).unwrap();
        endpoint.attach(6, second_rx).unwrap();
        for sequence in 0..12 {
            first.try_send(tagged(5, sequence)).unwrap();
            second.try_send(tagged(6, sequence)).unwrap();
        }
        let mut seen = Vec::new();
        assert_eq!(
            endpoint.drain(5, |source, words| seen.push((source, words[1]))),
            12
        );
        assert_eq!(seen, (0..12).map(|s| (5, s)).collect::<Vec<_>>());
        assert_eq!(endpoint.drain(5, |_, _| panic!("drained twice")), 0);
        assert_eq!(endpoint.drain(9, |_, _| panic!("no such source")), 0);
        let mut rest = 0;
        while endpoint.poll(|source, _| {
            assert_eq!(source, 6);
            rest += 1;
        }) > 0
        {}
        assert_eq!(rest, 12);
    }

    #[test]
    fn attach_refuses_more_than_capacity() {
        let rings: [Ring<Words, 2>; 2] = [Ring::new(), Ring::new()];
        let mut endpoint = Endpoint::<Words, 2, 1>::new(1);
        endpoint.attach(0, rings[0].split().unwrap().1).unwrap();
        assert!(endpoint.attach(1, rings[1].split().unwrap().1).is_err());
    }

    #[test]
    fn halts_only_when_every_ring_is_empty() {
        let ring = Ring::<Words, 4>::new();
        let (mut tx, rx) = ring.split().unwrap();
        let mut endpoint = Endpoint::<Words, 4, 1>::new(1);
        endpoint.attach(0, rx).unwrap();
        let doorbell = Doorbell::new();

        tx.try_send(tagged(0, 0)).unwrap();
        assert!(!endpoint.halt_if_idle(&doorbell, || panic!("halted on a message")));
        assert!(!doorbell.is_idle());
        assert_eq!(endpoint.poll(|_, _| {}), 1);

        let mut halted = false;
        assert!(endpoint.halt_if_idle(&doorbell, || {
            halted = true;
            // While halted, the doorbell says idle and a sender would interrupt.
            assert!(doorbell.is_idle());
        }));
        assert!(halted);
        assert!(!doorbell.is_idle());
    }
}
