//! Sending a kernel message to another core, which never drops it except to a core that
//! failed: while the ring is full, a thread yields (its core's loop keeps serving the
//! mailbox) and the loop serves its own mailbox directly.

use super::dispatch::serve_mailbox;
use super::local::in_thread;
use super::switch::yield_now;
use crate::cpu;
use crate::fence::{self, CoreFailed};
use crate::mailbox::KernelMessage;

/// Sends `message` to core `to`. Returns `Err` when `to` failed: the message is not sent
/// and what it carries is dropped here.
pub(super) fn send_kernel(to: usize, message: KernelMessage) -> Result<(), CoreFailed> {
    let mut message = message.into_message(crate::current_core());
    loop {
        if fence::is_fenced(to) {
            return Err(CoreFailed(to));
        }
        match cpu::with_mailbox(|mailbox| mailbox.try_send_any(to, message)) {
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
