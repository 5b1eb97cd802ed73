//! The scheduling policy, as plain data structures: a FIFO of ready threads and a queue
//! of sleepers ordered by deadline. Time is passed in, so the policy is tested on the
//! host with an injected clock.

use alloc::collections::{BinaryHeap, VecDeque};
use core::cmp::{Ordering, Reverse};

/// Threads ready to run, served first come, first served (cooperative round robin).
#[derive(Debug)]
pub struct RunQueue<T> {
    ready: VecDeque<T>,
}

impl<T> RunQueue<T> {
    /// Returns an empty queue.
    pub const fn new() -> Self {
        Self {
            ready: VecDeque::new(),
        }
    }

    /// Adds `thread` at the back.
    pub fn push(&mut self, thread: T) {
        self.ready.push_back(thread);
    }

    /// Takes the thread at the front.
    pub fn pop(&mut self) -> Option<T> {
        self.ready.pop_front()
    }

    /// Returns the number of ready threads.
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    /// Returns true when no thread is ready.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }
}

impl<T> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// One sleeper: wakes at `deadline`; `order` keeps equal deadlines first-in first-out.
#[derive(Debug)]
struct Sleeper<T> {
    deadline: u64,
    order: u64,
    thread: T,
}

impl<T> PartialEq for Sleeper<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.order) == (other.deadline, other.order)
    }
}
impl<T> Eq for Sleeper<T> {}
impl<T> PartialOrd for Sleeper<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Sleeper<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.order).cmp(&(other.deadline, other.order))
    }
}

/// Sleeping threads by deadline (any monotonic clock; the kernel uses TSC ticks).
#[derive(Debug)]
pub struct SleepQueue<T> {
    sleepers: BinaryHeap<Reverse<Sleeper<T>>>,
    next_order: u64,
}

impl<T> SleepQueue<T> {
    /// Returns an empty queue.
    pub const fn new() -> Self {
        Self {
            sleepers: BinaryHeap::new(),
            next_order: 0,
        }
    }

    /// Puts `thread` to sleep until `deadline`.
    pub fn sleep(&mut self, thread: T, deadline: u64) {
        let order = self.next_order;
        self.next_order += 1;
        self.sleepers.push(Reverse(Sleeper {
            deadline,
            order,
            thread,
        }));
    }

    /// Takes one thread whose deadline is at or before `now`, earliest first.
    pub fn wake_one(&mut self, now: u64) -> Option<T> {
        if self.sleepers.peek()?.0.deadline <= now {
            self.sleepers.pop().map(|Reverse(sleeper)| sleeper.thread)
        } else {
            None
        }
    }

    /// Returns the earliest deadline, if anyone sleeps.
    pub fn next_deadline(&self) -> Option<u64> {
        self.sleepers
            .peek()
            .map(|Reverse(sleeper)| sleeper.deadline)
    }

    /// Returns the number of sleepers.
    pub fn len(&self) -> usize {
        self.sleepers.len()
    }

    /// Returns true when nobody sleeps.
    pub fn is_empty(&self) -> bool {
        self.sleepers.is_empty()
    }
}

impl<T> Default for SleepQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn ready_threads_run_in_arrival_order() {
        let mut queue = RunQueue::new();
        for thread in [3, 1, 2] {
            queue.push(thread);
        }
        assert_eq!(queue.len(), 3);
        let order: Vec<i32> = core::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order, [3, 1, 2]);
        assert!(queue.is_empty());
    }

    #[test]
    fn sleepers_wake_at_their_deadline_in_order() {
        let mut queue = SleepQueue::new();
        queue.sleep("late", 300);
        queue.sleep("early", 100);
        queue.sleep("tie-first", 200);
        queue.sleep("tie-second", 200);
        assert_eq!(queue.next_deadline(), Some(100));
        assert_eq!(
            queue.wake_one(99),
            None,
            "nobody wakes before their deadline"
        );
        assert_eq!(queue.wake_one(100), Some("early"));
        assert_eq!(queue.wake_one(150), None);
        let mut clock = 250;
        let woken: Vec<&str> = core::iter::from_fn(|| queue.wake_one(clock)).collect();
        assert_eq!(woken, ["tie-first", "tie-second"]);
        clock = 1_000;
        assert_eq!(queue.wake_one(clock), Some("late"));
        assert_eq!(queue.next_deadline(), None);
    }

    #[test]
    fn a_yielding_thread_goes_behind_the_others() {
        // Round robin as the scheduler uses it: the running thread yields to the back.
        let mut queue = RunQueue::new();
        queue.push("b");
        queue.push("c");
        let mut running = "a";
        let mut trace = Vec::new();
        for _ in 0..6 {
            trace.push(running);
            queue.push(running);
            running = queue.pop().unwrap();
        }
        assert_eq!(trace, ["a", "b", "c", "a", "b", "c"]);
    }
}
