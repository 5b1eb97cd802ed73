//! Blocking and waking: a thread's wait, its wake-up from any core, and how a wait on
//! another core ends when that core fails.
//!
//! A thread blocked on another core (a join of a thread there, `park_on`) is
//! registered in the scheduler's `remote_waits`. When that core is fenced, this core's
//! loop ([`notice_failures`]) first takes the last messages the failed core sent (a
//! wake-up among them ends a wait the normal way), then fails the waits still open on
//! it: a join through its packet's state word (one atomic step decides between the
//! finisher and the failure), a `park_on` through the thread's wait state.

use core::ptr::NonNull;
use core::sync::atomic::AtomicUsize;

use super::dispatch::drain_from;
use super::local::with;
use super::send::send_kernel;
use super::switch::{leave, Leave};
use crate::fence::{self, CoreFailed};
use crate::mailbox::KernelMessage;
use crate::platform::hooks;
use crate::threads::{
    fail_waiter, JoinError, RemoteWait, Scheduler, Thread, ThreadRef, WaiterToken,
};

/// Starts a wait of the running thread: one wake-up, even before it blocks, ends it.
/// Returns the thread's token, for the one who wakes it.
pub(super) fn begin_wait() -> WaiterToken {
    with(|s| {
        let me = s.current.expect("only a thread can wait");
        // SAFETY: the running thread is alive and only this core touches it.
        unsafe { (*me.as_ptr()).wakeup.begin_wait() };
        WaiterToken::new(crate::current_core(), me)
    })
}

/// Gives up the running thread's wait (what it waited for is done).
pub(super) fn cancel_wait() {
    with_current(|thread| thread.wakeup.cancel_wait());
}

/// Runs `f` on the running thread's record.
fn with_current<R>(f: impl FnOnce(&mut Thread) -> R) -> R {
    with(|s| {
        let me = s.current.expect("only a thread can wait");
        // SAFETY: the running thread is alive and only this core touches it.
        f(unsafe { &mut *me.as_ptr() })
    })
}

/// Blocks the running thread until someone calls [`wake`] with its token (or did since
/// its wait began).
pub(super) fn block_until_woken() {
    leave(Leave::Block);
}

/// Blocks the running thread, whose wait began, until it is woken or core `core` (which
/// it waits on) fails. `packet_state` is the join packet's state word for a join. Returns
/// `Err` when `core` failed before it answered a `park_on`; a join reads its packet.
pub(super) fn block_on_remote(
    core: usize,
    packet_state: Option<&AtomicUsize>,
) -> Result<(), CoreFailed> {
    let packet_state = packet_state.map(NonNull::from);
    let me = with(|s| {
        let me = s.current.expect("only a thread can wait");
        // Never allocates: `spawn_local` reserved room for every live thread.
        s.remote_waits.push(RemoteWait {
            thread: me,
            core,
            packet_state,
        });
        me
    });
    if fence::is_fenced(core) {
        // The loop may have dealt with that core before this wait was registered: take
        // what it sent (its answer may be there) and fail the wait here.
        drain_from(core);
        with(|s| fail_wait(s, me, core, packet_state));
    }
    leave(Leave::Block);
    with(|s| {
        s.remote_waits.retain(|wait| wait.thread != me);
        // SAFETY: the running thread is alive and only this core touches it.
        let thread = unsafe { &mut *me.as_ptr() };
        if core::mem::take(&mut thread.lost_core) {
            Err(CoreFailed(core))
        } else {
            Ok(())
        }
    })
}

/// Ends the wait of `thread` on `core`, which failed, unless it ended already.
fn fail_wait(
    s: &mut Scheduler,
    thread: ThreadRef,
    core: usize,
    packet_state: Option<NonNull<AtomicUsize>>,
) {
    let token = WaiterToken::new(crate::current_core(), thread);
    // SAFETY: a registered thread is alive (it removes its registration before it can
    // end) and only this core touches it.
    let record = unsafe { &mut *thread.as_ptr() };
    let failed = match packet_state {
        // SAFETY: the joiner is blocked in `join`, which holds the packet.
        Some(state) => fail_waiter(
            unsafe { state.as_ref() },
            token,
            JoinError::CoreFailed(core),
        ),
        None => record.wakeup.is_waiting(),
    };
    if failed {
        record.lost_core = packet_state.is_none();
        if record.wakeup.wake() {
            s.ready.push(thread);
        }
    }
}

/// Makes the thread of `token` ready, on whichever core it lives.
pub(super) fn wake(token: WaiterToken) {
    if token.core() == crate::current_core() {
        with(|s| s.wake(token.thread()));
    } else {
        // A thread on a failed core is gone with it: nothing to wake.
        let _ = send_kernel(token.core(), KernelMessage::Wake(token));
    }
}

/// Fails, once per failed core, every wait of this core's threads on it, after taking
/// the last messages it sent (a wake-up among them ends a wait the normal way).
pub(super) fn notice_failures() {
    let fenced = fence::FENCED.bits();
    if fenced == 0 {
        return;
    }
    let new = with(|s| {
        let new = fenced & !s.known_fenced;
        s.known_fenced = fenced;
        new
    });
    if new == 0 {
        return;
    }
    let me = crate::current_core();
    for core in (0..crate::MAX_CORES).filter(|&core| new & (1 << core) != 0 && core != me) {
        drain_from(core);
        // Each thread removes its own registration when it runs again.
        with(|s| {
            for index in 0..s.remote_waits.len() {
                let RemoteWait {
                    thread,
                    core: waited_on,
                    packet_state,
                } = s.remote_waits[index];
                if waited_on == core {
                    fail_wait(s, thread, core, packet_state);
                }
            }
        });
        (hooks().core_failed)(core);
    }
}
