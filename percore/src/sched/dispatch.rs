//! The one place where a core acts on the kernel messages other cores sent it: a thread
//! to start, a job to run, a wake-up, freed blocks coming home (their kinds and wire
//! form are `mailbox::kernel`'s).

use alloc::sync::Arc;

use ipc::Message;

use super::local::with;
use super::switch::spawn_local;
use crate::cpu;
use crate::global;
use crate::mailbox::KernelMessage;
use crate::threads::{Abandon, Job, JoinError, Start};

/// Acts on a kernel message from core `source` that arrived in this core's mailbox.
/// Called with the mailbox borrowed: it sends nothing (jobs wait for the loop).
pub(super) fn on_kernel_message(source: usize, message: Message) {
    match KernelMessage::from_message(message) {
        Ok(KernelMessage::Spawn(start)) => {
            let Start { job, packet } = *start;
            let job: Job = job;
            let packet = packet.map(|packet| packet as Arc<dyn Abandon>);
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
        }
        // Run by the loop after the mailbox is released: the job may send messages.
        Ok(KernelMessage::Run(job)) => with(|s| s.jobs.push_back(*job)),
        Ok(KernelMessage::Wake(token)) => with(|s| s.wake(token.thread())),
        Ok(KernelMessage::RemoteFree(blocks)) => global::receive_remote_frees(&blocks),
        Err(malformed) => crate::println!(
            "manada: core {}: {malformed} from core {source}, dropped",
            crate::current_core()
        ),
    }
}

/// Serves the mailbox from the core's loop: kernel messages now, the others are kept
/// for the application. Returns how many messages it took from the rings.
pub(super) fn serve_mailbox() -> usize {
    cpu::with_mailbox(|mailbox| mailbox.poll_for_kernel(on_kernel_message))
}

/// Takes every message core `source` sent that is still in its ring: after `source`
/// failed, what it sent before is all it will ever send.
pub(super) fn drain_from(source: usize) {
    cpu::with_mailbox(|mailbox| mailbox.drain_for_kernel(source, on_kernel_message));
}

/// Acts on the kernel messages an application's poll kept, outside the mailbox's borrow.
pub(super) fn serve_kept() {
    while let Some((source, message)) = cpu::with_mailbox(|mailbox| mailbox.take_kept()) {
        on_kernel_message(source, message);
    }
}
