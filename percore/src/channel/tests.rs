//! Channels on a host machine of cores (`crate::host`): values cross cores in order,
//! the bound holds, and both kinds of disconnection are seen.

use std::vec::Vec;

use super::*;
use crate::host::{self, tests::CORES};
use crate::{current_core, sleep, spawn_on, JoinHandle};
use core::time::Duration;

#[test]
fn two_threads_on_two_cores_play_ping_pong() {
    let rounds = host::run(CORES, || {
        let (to_pong, pong_inbox) = channel::<u64>(1, 4);
        let (to_ping, ping_inbox) = channel::<u64>(0, 4);
        let pong = spawn_on(1, move || {
            let mut answered = 0;
            while let Ok(ball) = pong_inbox.recv() {
                assert_eq!(current_core(), 1);
                to_ping.send(ball + 1).unwrap();
                answered += 1;
            }
            answered
        });
        for round in 0..1_000u64 {
            to_pong.send(round * 2).unwrap();
            assert_eq!(ping_inbox.recv(), Ok(round * 2 + 1));
        }
        drop(to_pong);
        let answered = pong.join().unwrap();
        // Pong dropped its sender when it ended: nothing more comes.
        assert_eq!(ping_inbox.recv(), Err(RecvError));
        answered
    });
    assert_eq!(rounds, 1_000);
}

#[test]
fn many_senders_keep_their_order_and_the_bound_holds() {
    const PER_SENDER: u64 = 2_000;
    const CAPACITY: usize = 8;
    let (seen, most_queued) = host::run(CORES, || {
        let (sender, receiver) = channel::<(usize, u64)>(3, CAPACITY);
        let senders: Vec<JoinHandle<()>> = (0..3)
            .map(|core| {
                let sender = sender.clone();
                spawn_on(core, move || {
                    for sequence in 0..PER_SENDER {
                        sender.send((core, sequence)).unwrap();
                    }
                })
            })
            .collect();
        drop(sender);
        let receiving = spawn_on(3, move || {
            // Let the senders fill the channel and block before anything is taken.
            sleep(Duration::from_millis(20));
            let mut next = [0u64; 3];
            let mut most_queued = 0;
            loop {
                most_queued = most_queued.max(receiver.len());
                match receiver.recv() {
                    Ok((core, sequence)) => {
                        assert_eq!(sequence, next[core], "values of core {core} out of order");
                        next[core] += 1;
                    }
                    Err(RecvError) => break,
                }
            }
            (next, most_queued)
        });
        senders
            .into_iter()
            .for_each(|sender| sender.join().unwrap());
        receiving.join().unwrap()
    });
    assert_eq!(seen, [PER_SENDER; 3]);
    assert!(
        most_queued <= CAPACITY && most_queued > 0,
        "at most {CAPACITY} values wait, saw {most_queued}"
    );
}

#[test]
fn values_on_their_way_arrive_before_the_end_is_seen() {
    use core::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // Fewer than a ring's slots, so core 1's sends never wait for core 2.
    const VALUES: u32 = 40;
    let received = host::run(CORES, || {
        let (sender, receiver) = channel::<u32>(2, 100);
        let far = sender.clone();
        let last_sender_gone = Arc::new(AtomicBool::new(false));
        let gone = last_sender_gone.clone();
        let receiving = spawn_on(2, move || {
            // Hold core 2 without yielding, so its loop takes nothing from its rings
            // until every sender is gone: core 1's values are still on their way then.
            while !gone.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
            let mut count = 0;
            while receiver.recv().is_ok() {
                count += 1;
            }
            count
        });
        spawn_on(1, move || {
            (0..VALUES).for_each(|value| far.send(value).unwrap())
        })
        .join()
        .unwrap();
        drop(sender);
        last_sender_gone.store(true, Ordering::Release);
        receiving.join().unwrap()
    });
    assert_eq!(received, VALUES);
}

#[test]
fn a_gone_receiver_gives_the_value_back_and_wakes_blocked_senders() {
    let (first, blocked) = host::run(CORES, || {
        let (sender, receiver) = channel::<u32>(1, 1);
        let first = sender.send(1);
        let blocked_sender = sender.clone();
        // The channel is full: this sender blocks until the receiver is gone.
        let blocked = spawn_on(2, move || blocked_sender.send(2));
        spawn_on(1, move || {
            sleep(Duration::from_millis(10));
            drop(receiver);
        })
        .join()
        .unwrap();
        let blocked = blocked.join().unwrap();
        assert_eq!(sender.send(3), Err(SendError(3)));
        (first, blocked)
    });
    assert_eq!(first, Ok(()));
    assert_eq!(blocked, Err(SendError(2)));
}

#[test]
fn try_recv_says_empty_then_disconnected() {
    let results = host::run(CORES, || {
        let (sender, receiver) = channel::<u8>(0, 2);
        let empty = receiver.try_recv();
        sender.send(7).unwrap();
        let value = receiver.try_recv();
        drop(sender);
        (empty, value, receiver.try_recv())
    });
    assert_eq!(
        results,
        (
            Err(TryRecvError::Empty),
            Ok(7),
            Err(TryRecvError::Disconnected)
        )
    );
}

#[test]
fn a_receiver_used_on_another_core_is_refused() {
    let outcome = std::panic::catch_unwind(|| {
        host::run(CORES, || {
            let (_sender, receiver) = channel::<u8>(1, 2);
            let _ = receiver.try_recv();
        })
    });
    let message = outcome.unwrap_err();
    let text = message
        .downcast_ref::<std::string::String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        text.contains("channel to core 1 was used on core 0"),
        "{text}"
    );
}

#[test]
#[should_panic(expected = "at least one value")]
fn a_channel_without_room_is_refused() {
    host::run(CORES, || {
        let _ = channel::<u8>(0, 0);
    });
}
