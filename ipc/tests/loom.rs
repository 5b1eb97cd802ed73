//! Loom models of the ring protocol, the idle/wake-up protocol and the fence of a failed
//! core (`--cfg loom`).
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p ipc --release
//! --test loom`. Loom explores the thread interleavings and the values weak memory lets
//! each load see; a lost message, a torn payload or a lost wake-up fails a model.
#![cfg(loom)]

use ipc::{Doorbell, Endpoint, Ring, WakeMemo, Words};
use loom::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

fn payload(sequence: u64) -> Words {
    [
        sequence,
        !sequence,
        sequence * 3,
        sequence ^ 0x55,
        7,
        8,
        sequence + 9,
    ]
}

/// A latched interrupt line: `raise` is the IPI, `halt` is `sti; hlt` that returns
/// at once if an interrupt is pending. (Loom's `park`/`unpark` would do, but a stale
/// unpark token confuses loom's own `join`.) A receiver that halts with nobody left to
/// raise the line blocks forever, which loom reports as a deadlock.
#[derive(Default)]
struct Interrupt {
    pending: Mutex<bool>,
    raised: Condvar,
}

impl Interrupt {
    fn raise(&self) {
        *self.pending.lock().unwrap() = true;
        self.raised.notify_one();
    }

    fn halt(&self) {
        let mut pending = self.pending.lock().unwrap();
        while !*pending {
            pending = self.raised.wait(pending).unwrap();
        }
        *pending = false;
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Three messages through a two-slot ring: the sender must wait for freed slots, the
/// second lap overwrites the first, and every payload must arrive whole and in order.
#[test]
fn ring_delivers_in_order_across_laps() {
    model(|| {
        let ring: &'static Ring<Words, 2> = Box::leak(Box::new(Ring::new()));
        let (mut tx, mut rx) = ring.split().unwrap();
        let sender = thread::spawn(move || {
            for sequence in 0..3 {
                tx.send(payload(sequence), thread::yield_now);
            }
        });
        for sequence in 0..3 {
            let words = loop {
                match rx.try_recv() {
                    Some(words) => break words,
                    None => thread::yield_now(),
                }
            };
            assert_eq!(words, payload(sequence));
        }
        assert!(rx.try_recv().is_none());
        sender.join().unwrap();
    });
}

/// A one-slot ring: try_send must refuse while the only slot is unconsumed, and the
/// refused message comes back intact.
#[test]
fn one_slot_ring_never_overwrites() {
    model(|| {
        let ring: &'static Ring<Words, 1> = Box::leak(Box::new(Ring::new()));
        let (mut tx, mut rx) = ring.split().unwrap();
        let sender = thread::spawn(move || {
            let mut pending = Some(payload(0));
            let mut sequence = 0;
            while sequence < 2 {
                match tx.try_send(pending.take().unwrap()) {
                    Ok(()) => {
                        sequence += 1;
                        pending = Some(payload(sequence));
                    }
                    Err(full) => {
                        assert_eq!(full.0, payload(sequence));
                        pending = Some(full.into_inner());
                        thread::yield_now();
                    }
                }
            }
        });
        for sequence in 0..2 {
            let words = loop {
                match rx.try_recv() {
                    Some(words) => break words,
                    None => thread::yield_now(),
                }
            };
            assert_eq!(words, payload(sequence));
        }
        sender.join().unwrap();
    });
}

/// Two senders, each on its own ring, wake one receiver that halts when it finds
/// nothing (loom found a false deadlock in an earlier design where senders cleared
/// the flag with a swap: its modification order of unsynchronized stores is partial). Halting and the IPI are an [`Interrupt`] line. If a wake-up
/// were lost, the receiver would halt forever and loom would report a deadlock.
#[test]
fn idle_receiver_is_always_woken() {
    model(|| {
        let rings: &'static [Ring<Words, 2>; 2] = Box::leak(Box::new([Ring::new(), Ring::new()]));
        let doorbell = Arc::new(Doorbell::new());
        let mut endpoint = Endpoint::<Words, 2, 2>::new(1);
        let mut senders = Vec::new();
        for (source, ring) in rings.iter().enumerate() {
            let (tx, rx) = ring.split().unwrap();
            endpoint.attach(source as u16, rx).unwrap();
            senders.push(tx);
        }
        let interrupt = Arc::new(Interrupt::default());
        let handles: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(source, mut tx)| {
                let doorbell = doorbell.clone();
                let interrupt = interrupt.clone();
                thread::spawn(move || {
                    let mut memo = WakeMemo::new();
                    tx.send(payload(source as u64), thread::yield_now);
                    doorbell.notify_once(&mut memo, || interrupt.raise());
                })
            })
            .collect();
        let mut received = [false; 2];
        while received != [true; 2] {
            let handled = endpoint.poll(|source, words| {
                assert_eq!(words, payload(u64::from(source)));
                assert!(!received[source as usize], "duplicate");
                received[source as usize] = true;
            });
            if handled == 0 {
                endpoint.halt_if_idle(&doorbell, || interrupt.halt());
            }
        }
        for handle in handles {
            handle.join().unwrap();
        }
    });
}

/// The same protocol without the SeqCst fences (plain Release/Acquire): loom must find
/// the interleaving where the receiver sleeps on a published message. Shows the model
/// above has teeth.
#[test]
#[should_panic(expected = "deadlock")]
fn wake_up_without_fences_is_lost() {
    model(|| {
        let message = Arc::new(AtomicU64::new(0));
        let idle = Arc::new(AtomicBool::new(false));
        let interrupt = Arc::new(Interrupt::default());
        let sender = {
            let (message, idle, interrupt) = (message.clone(), idle.clone(), interrupt.clone());
            thread::spawn(move || {
                message.store(1, Ordering::Release);
                if idle.load(Ordering::Acquire) {
                    interrupt.raise();
                }
            })
        };
        loop {
            if message.load(Ordering::Acquire) == 1 {
                break;
            }
            idle.store(true, Ordering::Release);
            if message.load(Ordering::Acquire) == 1 {
                idle.store(false, Ordering::Relaxed);
                break;
            }
            interrupt.halt();
            idle.store(false, Ordering::Relaxed);
        }
        sender.join().unwrap();
    });
}

/// The model above with the fences `Doorbell` uses passes (the control for the test
/// above: only the fences differ).
#[test]
fn wake_up_with_fences_is_not_lost() {
    model(|| {
        let message = Arc::new(AtomicU64::new(0));
        let idle = Arc::new(AtomicBool::new(false));
        let interrupt = Arc::new(Interrupt::default());
        let sender = {
            let (message, idle, interrupt) = (message.clone(), idle.clone(), interrupt.clone());
            thread::spawn(move || {
                message.store(1, Ordering::Release);
                fence(Ordering::SeqCst);
                if idle.load(Ordering::Relaxed) {
                    interrupt.raise();
                }
            })
        };
        loop {
            if message.load(Ordering::Acquire) == 1 {
                break;
            }
            idle.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if message.load(Ordering::Acquire) == 1 {
                idle.store(false, Ordering::Relaxed);
                break;
            }
            interrupt.halt();
            idle.store(false, Ordering::Relaxed);
        }
        sender.join().unwrap();
    });
}

/// Messages that own boxed values cross a one-slot ring: each value arrives once,
/// whole, at the address it was sent from, and can be taken once.
#[test]
fn owned_values_move_through_the_ring() {
    use ipc::{Kind, Message, Owned};
    model(|| {
        let ring: &'static Ring<Message, 1> = Box::leak(Box::new(Ring::new()));
        let (mut tx, mut rx) = ring.split().unwrap();
        let values: Vec<Box<[u8; 3]>> = (0..2u8).map(|i| Box::new([i; 3])).collect();
        let addresses: Vec<usize> = values.iter().map(|v| v.as_ptr() as usize).collect();
        let sender = thread::spawn(move || {
            for (i, value) in values.into_iter().enumerate() {
                let message =
                    Message::with_owned(Kind::new(1), 0, Owned::new(value), [i as u8; 32]);
                tx.send(message, thread::yield_now);
            }
        });
        for (i, address) in addresses.into_iter().enumerate() {
            let mut message = loop {
                match rx.try_recv() {
                    Some(message) => break message,
                    None => thread::yield_now(),
                }
            };
            assert_eq!(message.inline()[0], i as u8);
            let value = message.take_owned().unwrap().into_box::<[u8; 3]>().unwrap();
            assert!(message.take_owned().is_none());
            assert_eq!(value.as_ptr() as usize, address);
            assert_eq!(*value, [i as u8; 3]);
        }
        sender.join().unwrap();
    });
}

/// A core that fails sets its bit in a fence word (Release) after its last sends, and
/// halts. Another core that sees the bit (Acquire) and then drains the ring from it must
/// find every message sent before the fence, whole: the kernel relies on this to take a
/// failed core's last wake-ups before it fails the waits on that core.
#[test]
fn a_drain_after_the_fence_finds_every_message_sent_before_it() {
    model(|| {
        let ring: &'static Ring<Words, 2> = Box::leak(Box::new(Ring::new()));
        let fenced = Arc::new(AtomicU64::new(0));
        let (mut tx, mut rx) = ring.split().unwrap();
        let failing = {
            let fenced = fenced.clone();
            thread::spawn(move || {
                tx.try_send(payload(0)).unwrap();
                tx.try_send(payload(1)).unwrap();
                fenced.fetch_or(1 << 3, Ordering::Release);
                fence(Ordering::SeqCst);
            })
        };
        while fenced.load(Ordering::Acquire) & (1 << 3) == 0 {
            thread::yield_now();
        }
        assert_eq!(rx.try_recv(), Some(payload(0)));
        assert_eq!(rx.try_recv(), Some(payload(1)));
        assert_eq!(rx.try_recv(), None);
        failing.join().unwrap();
    });
}

/// A sender that waits for room on a ring to a core that failed (it never drains) stops
/// waiting once the core's fence bit is set, in every interleaving: it checks the bit on
/// every try, so a full ring to a failed core is an error, not a wait forever.
#[test]
fn a_sender_waiting_on_a_failed_core_stops() {
    model(|| {
        let ring: &'static Ring<Words, 1> = Box::leak(Box::new(Ring::new()));
        let fenced = Arc::new(AtomicBool::new(false));
        let (mut tx, _rx) = ring.split().unwrap();
        tx.try_send(payload(0)).unwrap();
        let failing = {
            let fenced = fenced.clone();
            thread::spawn(move || fenced.store(true, Ordering::Release))
        };
        let mut message = payload(1);
        let refused = loop {
            if fenced.load(Ordering::Acquire) {
                break true;
            }
            match tx.try_send(message) {
                Ok(()) => break false,
                Err(full) => {
                    message = full.into_inner();
                    thread::yield_now();
                }
            }
        };
        assert!(refused, "the full ring took a message nobody drains");
        failing.join().unwrap();
    });
}
