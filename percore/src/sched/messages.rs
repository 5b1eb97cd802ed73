//! Kernel messages between cores' schedulers: start a thread here (`SPAWN`), run a job
//! in the loop (`RUN`), wake a thread (`WAKE`); and sending them, which never drops a
//! message except to a core that failed.

use alloc::boxed::Box;
use alloc::sync::Arc;

use ipc::{Kind, Message};

use super::join::{Abandon, JoinError};
use super::scheduler::{
    in_thread, serve_mailbox, spawn_local, with, yield_now, Job, RunJob, SpawnError,
};
use super::wait::{wake_local, WaiterToken};
use super::CoreFailed;
use crate::cpu;
use crate::fence;
use crate::mailbox;

/// Kernel message: start a thread for the boxed [`Start`] in word 0 here.
pub(crate) const SPAWN: Kind = Kind::new(mailbox::KERNEL_KINDS + 1);
/// Kernel message: make the blocked thread of the token in word 0 ready.
pub(crate) const WAKE: Kind = Kind::new(mailbox::KERNEL_KINDS + 2);
/// Run this job in the core's loop, outside any thread (`run_on`).
pub(crate) const RUN: Kind = Kind::new(mailbox::KERNEL_KINDS + 4);

/// A thread to start: its job and, when someone may join it, the packet to fail if it
/// cannot start or faults.
pub(crate) struct Start {
    pub(crate) job: Job,
    pub(crate) packet: Option<Arc<dyn Abandon>>,
}

/// Returns 48 inline bytes holding `values` (the rest zero).
pub(crate) fn words<const N: usize>(values: [u64; N]) -> [u8; 48] {
    let mut all = [0u64; 6];
    all[..N].copy_from_slice(&values);
    ipc::message::bytes_from_words(&all)
}

/// Sends a kernel message to `to`, never dropping it: while the ring is full, a thread
/// yields (its core's loop keeps serving the mailbox) and the loop serves it directly.
/// Returns `Err` when `to` failed: the message is not sent (what it points to stays the
/// caller's).
pub(crate) fn send_kernel(to: usize, message: Message) -> Result<(), CoreFailed> {
    let mut message = message;
    loop {
        if fence::is_fenced(to) {
            return Err(CoreFailed(to));
        }
        match cpu::with_mailbox(|mailbox| mailbox.try_send_kernel(to, message)) {
            Ok(()) => break,
            Err(back) => {
                message = back.into_inner();
                cpu::with_mailbox(|mailbox| mailbox.notify(to));
                if in_thread() {
                    yield_now();
                } else {
                    serve_mailbox();
                    core::hint::spin_loop();
                }
            }
        }
    }
    cpu::with_mailbox(|mailbox| mailbox.notify(to));
    Ok(())
}

/// Sends `start` to core `to`, which starts the thread.
pub(crate) fn send_start(to: usize, start: Start) -> Result<(), SpawnError> {
    // A thin pointer to the boxed start travels; ownership moves with the message.
    let raw = Box::into_raw(Box::new(start));
    let message = Message::new(SPAWN, crate::current_core() as u16, words([raw as u64]));
    send_kernel(to, message).map_err(|CoreFailed(core)| {
        // SAFETY: the message was not sent, so the box is still ours alone.
        drop(unsafe { Box::from_raw(raw) });
        SpawnError::CoreFailed(core)
    })
}

/// Sends `job` to core `to`, whose loop runs it.
pub(crate) fn send_job(to: usize, job: RunJob) -> Result<(), SpawnError> {
    // A thin pointer to the boxed job travels; ownership moves with the message.
    let raw = Box::into_raw(Box::new(job));
    let message = Message::new(RUN, crate::current_core() as u16, words([raw as u64]));
    send_kernel(to, message).map_err(|CoreFailed(core)| {
        // SAFETY: the message was not sent, so the box is still ours alone.
        drop(unsafe { Box::from_raw(raw) });
        SpawnError::CoreFailed(core)
    })
}

/// Handles a kernel message that arrived in this core's mailbox.
pub(crate) fn on_kernel_message(_source: usize, message: Message) {
    let kind = message.header().kind();
    if kind == SPAWN {
        let raw = message.inline_word(0) as usize as *mut Start;
        // SAFETY: the spawning core boxed the start and sent its pointer once
        // (`send_start`); ownership moved with the message.
        let start = unsafe { Box::from_raw(raw) };
        let Start { job, packet } = *start;
        if spawn_local(job, packet.as_ref()).is_err() {
            // Out of memory refuses the thread; its joiner learns it from the loop.
            if let Some(packet) = packet {
                let refused = with(|s| {
                    s.abandoned
                        .push_back((packet, JoinError::OutOfMemory))
                        .is_err()
                });
                if refused {
                    crate::println!(
                        "manada: core {}: out of memory for threads; a join waits",
                        crate::current_core()
                    );
                }
            }
        }
    } else if kind == RUN {
        let raw = message.inline_word(0) as usize as *mut RunJob;
        // SAFETY: `run_on` boxed the job and sent its pointer once; ownership moved with
        // the message.
        let job = unsafe { Box::from_raw(raw) };
        // Run by the loop after the mailbox is released: the job may send messages.
        with(|s| s.jobs.push_back(*job));
    } else if kind == WAKE {
        let token = WaiterToken::from_raw(message.inline_word(0) as usize);
        with(|s| wake_local(s, token.thread()));
    } else if kind == crate::global::REMOTE_FREE {
        crate::global::receive_remote_frees(&message);
    }
}
