//! Switching: creating a thread, leaving the CPU (yield, sleep, block, exit), ending a
//! thread that faulted, switching from the loop to the next ready thread, and freeing
//! what an ended thread could not free itself.
//!
//! Every switch goes through the core's *home* context (the loop in `sched::run`, on
//! the core's own kernel stack): a thread that leaves saves itself and resumes the
//! loop, which picks the next ready thread. A thread that faults is ended from the
//! fault handler ([`end_failed_thread`]), which switches home for good; its record and
//! stack are leaked (what it owned may still be in use by a device, and a late wake-up
//! must still find its record).

use alloc::sync::Arc;
use core::alloc::Layout;
use core::ptr::NonNull;

use super::local::{in_thread, with};
use crate::arch::{self, Context};
use crate::cpu;
use crate::fault;
use crate::global;
use crate::injection::Place;
use crate::platform::hooks;
use crate::threads::{
    stack_layout, Abandon, Job, JoinError, RunState, SpawnError, Thread, ThreadRef, Wakeup,
};
use crate::time;

/// Creates a thread running `job` on this core and makes it ready; `packet` is failed if
/// the thread faults.
pub(super) fn spawn_local(job: Job, packet: Option<&Arc<dyn Abandon>>) -> Result<(), SpawnError> {
    let layout = stack_layout();
    let stack = global::try_alloc(layout).ok_or(SpawnError::OutOfMemory(layout.size()))?;
    let record = Layout::new::<Thread>();
    // Room for this thread's remote wait, so registering one never allocates.
    let (reserved, id) = with(|s| {
        let live = usize::try_from(s.stats.live).unwrap_or(usize::MAX);
        let reserved = s
            .remote_waits
            .try_reserve(live.saturating_add(1).saturating_sub(s.remote_waits.len()))
            .is_ok();
        s.next_id += 1;
        (reserved, s.next_id - 1)
    });
    let thread = if reserved {
        global::try_alloc(record).and_then(|address| NonNull::new(address as *mut Thread))
    } else {
        None
    };
    let Some(thread) = thread else {
        // SAFETY: allocated above with this layout and never used.
        unsafe { global::dealloc(stack, layout) };
        return Err(SpawnError::OutOfMemory(layout.size()));
    };
    // The guard page may need a page table of its own (RAM is mapped in 2 MiB pages):
    // without memory for one, there is no thread.
    if !(hooks().protect)(stack, true) {
        // SAFETY: both allocated above with these layouts and never used.
        unsafe {
            global::dealloc(stack, layout);
            global::dealloc(thread.as_ptr() as usize, record);
        }
        return Err(SpawnError::OutOfMemory(layout.size()));
    }
    // SAFETY: the stack was just allocated for this thread alone; `thread_entry` never
    // returns; the thread pointer stays valid until the loop reclaims the thread.
    let context = unsafe {
        Context::new(
            stack + layout.size(),
            thread_entry,
            thread.as_ptr() as usize,
        )
    };
    // SAFETY: `thread` is a fresh block of `Thread`'s layout; nothing refers to it yet.
    unsafe {
        thread.as_ptr().write(Thread {
            context,
            stack,
            job: Some(job),
            packet: packet.cloned(),
            id,
            wakeup: Wakeup::new(),
            critical: 0,
            lost_core: false,
        })
    };
    with(|s| {
        s.ready.push(thread);
        s.stats.spawned += 1;
        s.stats.live += 1;
    });
    Ok(())
}

/// Frees a thread record made by `spawn_local`.
///
/// # Safety
/// `thread` came from `spawn_local`, ended, and nothing refers to it any more.
unsafe fn free_record(thread: ThreadRef) {
    // SAFETY: the caller's contract; the record was written in place by `spawn_local`.
    unsafe {
        core::ptr::drop_in_place(thread.as_ptr());
        global::dealloc(thread.as_ptr() as usize, Layout::new::<Thread>());
    }
}

extern "C" fn thread_entry(thread: usize) -> ! {
    let thread = thread as *mut Thread;
    // SAFETY: the loop switched to this thread, so it is alive and only this code
    // touches its job now.
    let job = unsafe { (*thread).job.take() }.expect("a new thread has its job");
    job();
    leave(Leave::Exit);
    unreachable!("an ended thread is never switched to again");
}

/// How the running thread leaves the CPU.
pub(super) enum Leave {
    Yield,
    Sleep(u64),
    Block,
    Exit,
}

/// Saves the running thread and resumes the core's loop; returns when the thread runs
/// again (never, for `Exit`).
pub(super) fn leave(how: Leave) {
    let (save, load) = with(|s| {
        let me = s
            .current
            .take()
            .expect("only a thread can yield, sleep, block or exit");
        // SAFETY: `me` is alive (it is running this code) and only this core touches it.
        let thread = unsafe { &mut *me.as_ptr() };
        match how {
            Leave::Yield => {
                thread.wakeup.set(RunState::Ready);
                s.ready.push(me);
            }
            Leave::Sleep(deadline) => {
                thread.wakeup.set(RunState::Sleeping);
                s.sleeping.sleep(me, deadline);
            }
            Leave::Block => {
                if thread.wakeup.block() {
                    s.ready.push(me);
                }
            }
            Leave::Exit => {
                thread.wakeup.set(RunState::Exited);
                s.dead = Some(me);
                s.stats.finished += 1;
                s.stats.live -= 1;
            }
        }
        // The home context lives in the core's CoreLocal, which never moves.
        (&raw mut thread.context, &raw const s.home)
    });
    cpu::set_guard_page(0);
    // SAFETY: the home context was saved by the loop when it switched to this thread.
    unsafe { arch::switch(save, load) };
    fault::maybe_inject(Place::Thread);
}

/// Ends the running thread, which faulted, and resumes the core's loop for good: no
/// unwinding, so its stack and what it owned stay as they were (leaked). Its join
/// packet fails with `error`. Called from the fault handler, which checked that no
/// kernel state of this core was in use.
///
/// # Panics
/// Panics outside a thread.
pub fn end_failed_thread(error: JoinError) -> ! {
    let (save, load) = with(|s| {
        let me = s.current.take().expect("only a thread fails alone");
        // SAFETY: `me` ran until the fault; only this core touches it. Its record is
        // never freed: a late wake-up for it must still find it (and ignore it).
        let thread = unsafe { &mut *me.as_ptr() };
        thread.wakeup.fail();
        // It may have faulted after registering a wait (in `park_on`'s `register`).
        s.remote_waits.retain(|wait| wait.thread != me);
        if let Some(packet) = thread.packet.take() {
            // Failed by the loop: waking the joiner may mean a message, not from here.
            if s.abandoned.push_back((packet, error)).is_err() {
                crate::println!(
                    "manada: core {}: too many failed threads at once; a join of thread {} waits",
                    crate::current_core(),
                    thread.id
                );
            }
        }
        s.stats.failed += 1;
        s.stats.live -= 1;
        (&raw mut thread.context, &raw const s.home)
    });
    fault::count_failed_thread();
    fault::fault_handled();
    cpu::set_guard_page(0);
    // SAFETY: the home context was saved by the loop when it switched to this thread,
    // and nothing switches back to a failed thread.
    unsafe { arch::switch(save, load) };
    unreachable!("a failed thread is never switched to again")
}

/// Lets the other ready threads of this core run, then continues.
///
/// Threads are cooperative: one that computes without yielding, blocking or sleeping
/// keeps its core, and no other thread of that core (a device service among them) runs
/// meanwhile. A long loop yields now and then:
///
/// ```
/// # percore::host::run(1, || {
/// let mut sum = 0u64;
/// for i in 0..1_000_000u64 {
///     sum = sum.wrapping_add(i * i);
///     if i % 10_000 == 0 {
///         percore::yield_now();
///     }
/// }
/// # assert_eq!(sum, 333_332_833_333_500_000);
/// # });
/// ```
pub fn yield_now() {
    if in_thread() {
        leave(Leave::Yield);
    }
}

/// Sleeps until `deadline` (a TSC value); the core runs other threads or halts.
pub fn sleep_until(deadline: u64) {
    if in_thread() {
        leave(Leave::Sleep(deadline));
    } else {
        while time::ticks() < deadline {
            core::hint::spin_loop();
        }
    }
}

/// From the core's loop: makes the sleepers due at `now` ready, then switches to the
/// next ready thread until it leaves again. Returns false when no thread was ready.
pub(super) fn run_next(now: u64) -> bool {
    let next = with(|s| {
        while let Some(thread) = s.sleeping.wake_one(now) {
            // SAFETY: sleeping threads are alive; only this core touches them.
            unsafe { (*thread.as_ptr()).wakeup.set(RunState::Ready) };
            s.ready.push(thread);
        }
        let next = s.ready.pop()?;
        // SAFETY: ready threads are alive; only this core touches them.
        unsafe { (*next.as_ptr()).wakeup.set(RunState::Running) };
        s.current = Some(next);
        s.stats.switches += 1;
        // SAFETY: `next` is alive (ready threads are); the home context is in the
        // core's CoreLocal, which never moves.
        Some((
            &raw mut s.home,
            unsafe { &raw const (*next.as_ptr()).context },
            next,
        ))
    });
    let Some((save, load, next)) = next else {
        return false;
    };
    // SAFETY: reading the stack address of a live thread.
    cpu::set_guard_page(unsafe { (*next.as_ptr()).stack });
    // SAFETY: `load` is a ready thread's saved context; no borrow is held.
    unsafe { arch::switch(save, load) };
    true
}

/// From the core's loop: frees the stack and record of the thread that ended last.
pub(super) fn free_dead() {
    if let Some(thread) = with(|s| s.dead.take()) {
        // SAFETY: the thread ended and was switched away from for good.
        let stack = unsafe { (*thread.as_ptr()).stack };
        // Mapping a page back never needs memory: it was split when it was unmapped.
        let _ = (hooks().protect)(stack, false);
        // SAFETY: allocated in `spawn_local` with this layout, no longer in use; the
        // record likewise, and no wake-up can name it (its waits all ended).
        unsafe {
            global::dealloc(stack, stack_layout());
            free_record(thread);
        }
    }
}
