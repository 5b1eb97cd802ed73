//! The core's loop: it runs threads, serves the mailbox, runs the jobs other cores sent,
//! sends freed blocks home, wakes sleepers, frees what ended threads left, notices
//! failed cores and halts when there is nothing to do.

use super::dispatch::serve_mailbox;
use super::local::with;
use super::switch::{free_dead, run_next};
use super::wait::{notice_failures, wake};
use crate::cpu;
use crate::fault;
use crate::global;
use crate::injection::Place;
use crate::platform::hooks;
use crate::time;

/// Runs the core: threads, mailbox, sleepers, remote frees; halts when idle.
pub fn run() -> ! {
    loop {
        notice_failures();
        fault::maybe_inject(Place::Loop);
        reclaim();
        serve_mailbox();
        run_jobs();
        global::send_remote_frees();
        if run_next(time::ticks()) {
            continue;
        }
        idle();
    }
}

/// Runs the jobs other cores sent (`run_on`), in the order they came, outside any
/// borrow of the mailbox or the scheduler.
fn run_jobs() {
    while let Some(job) = with(|s| s.jobs.pop_front()) {
        job();
    }
}

/// Frees the stack of the thread that ended last, and fails the join packets of threads
/// that failed or could not start.
fn reclaim() {
    free_dead();
    while let Some((packet, error)) = with(|s| s.abandoned.pop_front()) {
        if let Some(token) = packet.abandon(error) {
            wake(token);
        }
    }
}

/// Nothing is ready: hand partial remote-free batches home, then halt until a message,
/// the next sleeper's deadline, a retry of blocked remote frees or an injected fault.
fn idle() {
    global::flush_outbox();
    // Sending may have served the mailbox and queued jobs: run them before halting.
    if global::send_remote_frees() || with(|s| !s.jobs.is_empty() || !s.abandoned.is_empty()) {
        return;
    }
    let deadline = with(|s| s.sleeping.next_deadline());
    let retry =
        global::remote_frees_pending().then(|| time::ticks() + time::ticks_per_micro() * 100);
    let wake_at = [deadline, retry, fault::injection_deadline(Place::Loop)]
        .into_iter()
        .flatten()
        .min();
    (hooks().arm_timer)(wake_at);
    cpu::with_mailbox(|mailbox| mailbox.wait());
}
