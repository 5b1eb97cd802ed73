//! When the fs service writes cached changes back: the durability rule, as logic.
//!
//! The rule: an operation that returned Ok is on the disk once `api::sync` returns,
//! once the application has ended (the kernel calls `service::sync_before_exit`), and
//! otherwise at most [`WRITE_BACK_DELAY`] after it returned, plus the time of the
//! operations queued before the write-back.

use core::time::Duration;

/// How long a change may wait in the cache before the service writes it back.
///
/// Why 200 ms: it bounds what a killed machine loses to a fifth of a second of
/// acknowledged work, yet gathers a burst of small operations (each takes well under a
/// millisecond from the cache) into one write-back. Every write-back ends with a device
/// flush, an `fdatasync` on the host for a QEMU image (milliseconds), so flushing after
/// every operation would cap small writes at a few hundred per second.
pub const WRITE_BACK_DELAY: Duration = Duration::from_millis(200);

/// Whether a write-back is armed, and whether the last one failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteBack {
    armed: bool,
    failing: bool,
}

impl WriteBack {
    /// Returns whether to arm a write-back now (to run [`WRITE_BACK_DELAY`] from now),
    /// after an operation that left the cache with `unwritten` changes or not. At most
    /// one is armed at a time: one armed earlier runs sooner and takes these changes too.
    pub(crate) fn after_operation(&mut self, unwritten: bool) -> bool {
        if unwritten && !self.armed {
            self.armed = true;
            return true;
        }
        false
    }

    /// Notes that the armed write-back has the volume and is about to write; changes
    /// made after it arm the next one.
    pub(crate) fn started(&mut self) {
        self.armed = false;
    }

    /// Notes how a write-back ended; returns whether to report it (the first failure in
    /// a row, and the recovery after failures), so a dead disk does not flood the console.
    pub(crate) fn finished(&mut self, succeeded: bool) -> bool {
        let report = succeeded == self.failing;
        self.failing = !succeeded;
        report
    }
}

/// Waits until `done` says so, calling `pause` between looks, for at most `timeout` as
/// `elapsed` measures it. Returns whether `done` said so in time.
pub(crate) fn wait_bounded(
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    mut elapsed: impl FnMut() -> Duration,
    mut pause: impl FnMut(),
) -> bool {
    loop {
        if done() {
            return true;
        }
        if elapsed() >= timeout {
            return false;
        }
        pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_back_is_armed_for_a_burst_of_changes() {
        let mut write_back = WriteBack::default();
        assert!(!write_back.after_operation(false), "nothing to write");
        assert!(write_back.after_operation(true), "the first change arms it");
        assert!(
            !write_back.after_operation(true),
            "later changes ride along"
        );
        write_back.started();
        assert!(
            write_back.after_operation(true),
            "a change after the write-back started arms the next one"
        );
    }

    #[test]
    fn a_failed_write_back_leaves_changes_that_arm_a_retry() {
        let mut write_back = WriteBack::default();
        assert!(write_back.after_operation(true));
        write_back.started();
        assert!(write_back.finished(false), "the first failure is reported");
        // The failed flush left its sectors dirty: the end of the write-back's own
        // operation sees them and arms a retry.
        assert!(write_back.after_operation(true));
        write_back.started();
        assert!(!write_back.finished(false), "a repeated failure is not");
        assert!(write_back.after_operation(true));
        write_back.started();
        assert!(write_back.finished(true), "the recovery is reported");
        assert!(!write_back.after_operation(false));
    }

    #[test]
    fn a_bounded_wait_ends_at_the_timeout_or_when_done() {
        let now = core::cell::Cell::new(Duration::ZERO);
        let mut looks = 0;
        let finished = wait_bounded(
            Duration::from_millis(10),
            || {
                looks += 1;
                false
            },
            || now.get(),
            || now.set(now.get() + Duration::from_millis(1)),
        );
        assert!(!finished);
        assert_eq!(looks, 11, "looked at 0..=10 ms, then gave up");
        let mut looks = 0;
        assert!(wait_bounded(
            Duration::from_secs(1),
            || {
                looks += 1;
                looks == 3
            },
            || Duration::ZERO,
            || {}
        ));
    }
}
