//! Multi-threaded stress tests: real threads, sequence numbers, full rings and halts.
//!
//! Every payload is derived from its sequence number, so loss, duplication, reordering
//! or a torn slot (half old, half new words) shows up as a mismatch.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use std::hint::spin_loop;

use ipc::{
    Doorbell, Endpoint, Kind, Message, Owned, Receiver, Ring, Sender, WakeMemo, Words,
    INLINE_BYTES_WITH_OWNED,
};

fn payload(sequence: u64) -> Words {
    let mut words = [0; 7];
    for (i, word) in words.iter_mut().enumerate() {
        *word = sequence
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(i as u32 * 9)
            ^ i as u64;
    }
    words[0] = sequence;
    words
}

fn receive<const N: usize>(rx: &mut Receiver<'_, Words, N>) -> Words {
    loop {
        if let Some(words) = rx.try_recv() {
            return words;
        }
        std::hint::spin_loop();
    }
}

#[test]
fn one_pair_no_loss_duplication_reordering_or_tearing() {
    const COUNT: u64 = 1_000_000;
    // Small ring: the sender hits "full" constantly and every slot is reused often.
    let ring = Ring::<Words, 8>::new();
    let (mut tx, mut rx) = ring.split().unwrap();
    thread::scope(|scope| {
        scope.spawn(move || {
            for sequence in 0..COUNT {
                tx.send(payload(sequence), spin_loop);
            }
        });
        for sequence in 0..COUNT {
            assert_eq!(receive(&mut rx), payload(sequence));
        }
        assert_eq!(rx.received(), COUNT);
    });
    assert!(ring.split().is_none());
}

#[test]
fn full_ring_back_pressure_keeps_every_message() {
    const COUNT: u64 = 20_000;
    let ring = Ring::<Words, 4>::new();
    let (mut tx, mut rx) = ring.split().unwrap();
    let refusals = AtomicU64::new(0);
    thread::scope(|scope| {
        scope.spawn(|| {
            for sequence in 0..COUNT {
                let mut message = payload(sequence);
                loop {
                    match tx.try_send(message) {
                        Ok(()) => break,
                        Err(full) => {
                            refusals.fetch_add(1, Ordering::Relaxed);
                            // The exact message comes back, untouched.
                            assert_eq!(full.0, payload(sequence));
                            message = full.into_inner();
                            thread::yield_now();
                        }
                    }
                }
            }
        });
        // A slow receiver: the ring is full most of the time.
        for sequence in 0..COUNT {
            if sequence % 1000 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(receive(&mut rx), payload(sequence));
        }
    });
    assert!(
        refusals.load(Ordering::Relaxed) > 0,
        "the ring was never full"
    );
    assert!(rx.try_recv().is_none());
}

/// Three senders, each with its own ring, to one endpoint that halts when idle. The
/// halt is a `park` with a long timeout: a halt that runs into the timeout while a
/// message waits is a lost wake-up.
#[test]
fn several_senders_to_one_halting_endpoint() {
    const SENDERS: usize = 3;
    const COUNT: u64 = 200_000;
    const HALT_TIMEOUT: Duration = Duration::from_secs(5);
    let rings: [Ring<Message, 16>; SENDERS] = [Ring::new(), Ring::new(), Ring::new()];
    let doorbell = Doorbell::new();
    let mut endpoint = Endpoint::<Message, 16, SENDERS>::new(4);
    let mut senders = Vec::new();
    for (source, ring) in rings.iter().enumerate() {
        let (tx, rx) = ring.split().unwrap();
        endpoint.attach(source as u16, rx).unwrap();
        senders.push(tx);
    }
    let receiver = thread::current();
    let interrupts = AtomicU64::new(0);
    thread::scope(|scope| {
        for (source, mut tx) in senders.into_iter().enumerate() {
            let (doorbell, receiver, interrupts) = (&doorbell, receiver.clone(), &interrupts);
            scope.spawn(move || {
                let wake = || {
                    interrupts.fetch_add(1, Ordering::Relaxed);
                    receiver.unpark();
                };
                let mut memo = WakeMemo::new();
                for sequence in 0..COUNT {
                    let mut inline = [0; 48];
                    inline[..8].copy_from_slice(&sequence.to_le_bytes());
                    inline[40..].copy_from_slice(&(!sequence).to_le_bytes());
                    let message = Message::new(Kind::new(source as u16), source as u16, inline);
                    // Ring the doorbell before waiting: a halted receiver frees nothing.
                    tx.send(message, || {
                        doorbell.notify_once(&mut memo, wake);
                        std::hint::spin_loop();
                    });
                    // Batch the wake-ups: one check per 8 messages and at the end.
                    if sequence % 8 == 7 || sequence == COUNT - 1 {
                        doorbell.notify_once(&mut memo, wake);
                    }
                    // Now and then pause, so the receiver really goes idle.
                    if sequence % 20_000 == 0 {
                        thread::sleep(Duration::from_millis(2));
                    }
                }
            });
        }

        let mut next = [0u64; SENDERS];
        let mut halts = 0;
        let mut lost_wake_ups = 0;
        while next.iter().any(|&n| n < COUNT) {
            let handled = endpoint.poll(|source, message| {
                let header = message.header();
                assert_eq!(header.source(), source);
                assert_eq!(header.kind().value(), source);
                let sequence = message.inline_word(0);
                assert_eq!(
                    sequence, next[source as usize],
                    "lost, duplicated or reordered"
                );
                assert_eq!(message.inline_word(5), !sequence, "torn payload");
                next[source as usize] += 1;
            });
            if handled == 0 {
                let halted = endpoint.halt_if_idle(&doorbell, || {
                    let start = Instant::now();
                    thread::park_timeout(HALT_TIMEOUT);
                    if start.elapsed() >= HALT_TIMEOUT {
                        lost_wake_ups += 1;
                    }
                });
                halts += u64::from(halted);
            }
        }
        assert_eq!(lost_wake_ups, 0);
        assert!(halts > 0, "the receiver never went idle");
        assert!(interrupts.load(Ordering::Relaxed) > 0);
        assert!(!endpoint.has_pending());
    });
}

/// Boxed values change owner across threads inside messages, half of them coming back
/// to be freed where they were made: each arrives once, whole, at the address it left.
#[test]
fn owned_values_change_owner_across_threads() {
    const COUNT: usize = 10_000;
    const DATA: Kind = Kind::new(2);
    let ring = Ring::<Message, 32>::new();
    let back = Ring::<Message, 32>::new();
    let (mut tx, mut rx) = ring.split().unwrap();
    let (mut back_tx, mut back_rx) = back.split().unwrap();
    thread::scope(|scope| {
        scope.spawn(move || {
            for i in 0..COUNT {
                let bytes = Box::new(vec![(i % 251) as u8; 100 + i % 900]);
                let mut inline = [0; INLINE_BYTES_WITH_OWNED];
                inline[..8].copy_from_slice(&(i as u64).to_le_bytes());
                inline[8..16].copy_from_slice(&(bytes.as_ptr() as u64).to_le_bytes());
                tx.send(
                    Message::with_owned(DATA, 0, Owned::new(bytes), inline),
                    spin_loop,
                );
                // Half of the values come back to their allocating thread to be freed.
                while let Some(mut returned) = back_rx.try_recv() {
                    let owned = returned.take_owned().unwrap();
                    drop(owned.into_box::<Vec<u8>>().unwrap());
                }
            }
        });
        for i in 0..COUNT {
            let mut message = loop {
                if let Some(message) = rx.try_recv() {
                    break message;
                }
                spin_loop();
            };
            assert_eq!(message.inline_word(0), i as u64);
            let mut bytes = message.take_owned().unwrap().into_box::<Vec<u8>>().unwrap();
            assert!(message.take_owned().is_none());
            assert_eq!(bytes.as_ptr() as u64, message.inline_word(1), "not copied");
            assert_eq!(bytes.len(), 100 + i % 900);
            assert!(bytes.iter().all(|&b| b == (i % 251) as u8));
            bytes[0] = 0;
            if i % 2 == 0 {
                let reply = Message::with_owned(DATA, 1, Owned::new(bytes), [0; 32]);
                // Never wait on the way back: the other thread may be done sending.
                if let Err(full) = back_tx.try_send(reply) {
                    drop(full.into_inner());
                }
            }
        }
    });
}

/// `Sender` and `Receiver` can move to other threads; the ring stays where it is.
#[test]
fn handles_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Sender<'static, Message, 4>>();
    assert_send::<Receiver<'static, Message, 4>>();
    assert_send::<Message>();
}
