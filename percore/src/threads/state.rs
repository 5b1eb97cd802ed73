//! A thread's run state and the rules for waking it, as plain logic: a wake-up counts
//! once per wait, a stale one (for a thread that is not waiting, or that failed) is
//! ignored, and one that arrives before the thread blocked makes its block return at once.
//!
//! The rules matter because a thread can now be woken from two sides: by whoever it
//! waits for, and by its own core when the core it waits on failed. Whichever comes
//! first ends the wait; the other finds no wait and does nothing, so a thread is never
//! put in the ready queue twice.

/// Where a thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    /// In the ready queue.
    Ready,
    /// On the CPU.
    Running,
    /// In the sleep queue.
    Sleeping,
    /// Off every queue until a wake-up.
    Blocked,
    /// Ended; its stack is freed by the core's loop.
    Exited,
    /// Ended by a fault; never runs again, and its record is kept (leaked) so that a
    /// late wake-up still finds it.
    Failed,
}

/// A thread's run state and its current wait.
#[derive(Debug)]
pub(crate) struct Wakeup {
    state: RunState,
    /// A wait began ([`Wakeup::begin_wait`]) and no wake-up ended it yet.
    waiting: bool,
    /// The wake-up came while the thread was not blocked yet.
    woken: bool,
}

impl Wakeup {
    /// Returns the state of a new thread: ready, not waiting.
    pub(crate) const fn new() -> Self {
        Self {
            state: RunState::Ready,
            waiting: false,
            woken: false,
        }
    }

    /// Returns where the thread is.
    #[cfg(test)]
    pub(crate) fn state(&self) -> RunState {
        self.state
    }

    /// Records a move between queues (or onto the CPU) that is not a wait.
    pub(crate) fn set(&mut self, state: RunState) {
        self.state = state;
    }

    /// Returns true while a wait is in progress.
    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Starts a wait: from now on one wake-up ends it, even one that comes before the
    /// thread blocks.
    pub(crate) fn begin_wait(&mut self) {
        self.waiting = true;
        self.woken = false;
    }

    /// Gives up a wait that turned out not to be needed (what it waited for was done).
    pub(crate) fn cancel_wait(&mut self) {
        self.waiting = false;
        self.woken = false;
    }

    /// A wake-up arrived. Returns true when the thread must be put in the ready queue.
    pub(crate) fn wake(&mut self) -> bool {
        if !self.waiting || self.state == RunState::Failed {
            return false;
        }
        self.waiting = false;
        if self.state == RunState::Blocked {
            self.state = RunState::Ready;
            true
        } else {
            self.woken = true;
            false
        }
    }

    /// The running thread blocks. Returns true when its wake-up came already, so it goes
    /// to the ready queue instead of blocking.
    pub(crate) fn block(&mut self) -> bool {
        if core::mem::take(&mut self.woken) {
            self.state = RunState::Ready;
            true
        } else {
            self.state = RunState::Blocked;
            false
        }
    }

    /// The thread failed: no wake-up reaches it any more.
    pub(crate) fn fail(&mut self) {
        self.state = RunState::Failed;
        self.waiting = false;
        self.woken = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Wakeup {
        let mut thread = Wakeup::new();
        thread.set(RunState::Running);
        thread
    }

    #[test]
    fn a_wake_up_after_the_block_readies_the_thread_once() {
        let mut thread = running();
        thread.begin_wait();
        assert!(!thread.block());
        assert_eq!(thread.state(), RunState::Blocked);
        assert!(thread.wake(), "the first wake-up readies it");
        assert_eq!(thread.state(), RunState::Ready);
        assert!(
            !thread.wake(),
            "a second one (the core it waited on failed) is stale"
        );
        assert!(!thread.is_waiting());
    }

    #[test]
    fn a_wake_up_before_the_block_makes_the_block_return() {
        let mut thread = running();
        thread.begin_wait();
        assert!(!thread.wake(), "not blocked yet: nothing to queue");
        assert!(
            thread.block(),
            "the block finds the wake-up and stays ready"
        );
        assert_eq!(thread.state(), RunState::Ready);
        // The next wait starts clean.
        thread.set(RunState::Running);
        thread.begin_wait();
        assert!(!thread.block());
    }

    #[test]
    fn a_wake_up_while_the_thread_yields_in_its_wait_is_kept() {
        // A thread may yield between starting its wait and blocking (a full ring).
        let mut thread = running();
        thread.begin_wait();
        thread.set(RunState::Ready);
        assert!(!thread.wake(), "it is queued already");
        thread.set(RunState::Running);
        assert!(thread.block(), "the block returns at once");
    }

    #[test]
    fn stale_wake_ups_are_ignored() {
        let mut thread = running();
        assert!(!thread.wake(), "no wait in progress");
        assert!(!thread.block(), "and it did not count for a later block");
        let mut sleeper = running();
        sleeper.set(RunState::Sleeping);
        assert!(!sleeper.wake());
        assert_eq!(sleeper.state(), RunState::Sleeping);
    }

    #[test]
    fn a_failed_thread_is_never_woken() {
        let mut thread = running();
        thread.begin_wait();
        thread.fail();
        assert!(!thread.wake());
        assert_eq!(thread.state(), RunState::Failed);
    }

    #[test]
    fn a_cancelled_wait_takes_no_wake_up() {
        let mut thread = running();
        thread.begin_wait();
        thread.cancel_wait();
        assert!(!thread.wake());
        assert!(!thread.block());
    }
}
