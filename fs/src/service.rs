//! The fs service: one FAT16 volume, owned by the fs core, used by every core through
//! [`crate::api`].
//!
//! Each operation runs as a short thread on the fs core (`spawn_on`) with the volume;
//! only that core ever touches the volume, its cache and its block device, so there is no
//! lock. Data comes back by value (the thread's result moves to the caller with the join).
//!
//! Durability (see `writeback`): an operation that leaves changes in the cache arms a
//! write-back thread on the fs core, which writes them to the disk [`WRITE_BACK_DELAY`]
//! later; `api::sync` writes them at once, and the kernel calls [`sync_before_exit`]
//! when the application has ended.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::time::Duration;

use percore::placement::Service;

use crate::writeback::{self, WriteBack};
use crate::{BlockDevice, Clock, Error, Result, Timestamp, Volume, WRITE_BACK_DELAY};

/// The volume type the service keeps: any block device, the wall clock.
pub(crate) type SharedVolume = Volume<Box<dyn BlockDevice>, WallClock>;

/// Timestamps the service writes when the boot core found no real-time clock.
pub const SERVICE_TIME: Timestamp = Timestamp {
    year: 2026,
    month: 1,
    day: 1,
    hour: 0,
    minute: 0,
    second: 0,
};

/// The clock the service stamps changes with: the kernel's wall clock (UTC), or
/// [`SERVICE_TIME`] when there is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> Timestamp {
        stamp(percore::time::wall_clock())
    }
}

/// Returns the timestamp for a wall-clock reading (time since the Unix epoch).
fn stamp(since_epoch: Option<Duration>) -> Timestamp {
    since_epoch.map_or(SERVICE_TIME, |time| {
        Timestamp::from_unix_seconds(time.as_secs())
    })
}

struct State {
    /// The volume; `None` while an operation has it out (see `call`).
    volume: Option<SharedVolume>,
    /// Operations waiting for the volume, first come first.
    waiting: VecDeque<percore::Parked>,
    /// The volume was put back for the first waiter, which was unparked: newcomers queue
    /// behind it instead of taking the volume first (so nobody waits for ever).
    handed_over: bool,
    write_back: WriteBack,
}

/// Mounts `device` and serves it from the running core. Returns what was mounted.
/// Kernel only: the kernel starts the service on the fs core.
pub fn start(
    kernel: &percore::KernelCapability,
    device: Box<dyn BlockDevice>,
) -> Result<crate::VolumeInfo> {
    let volume = Volume::mount(device, WallClock)?;
    let info = volume.info();
    percore::cpu::install_service(
        kernel,
        Service::Fs,
        State {
            volume: Some(volume),
            waiting: VecDeque::new(),
            handed_over: false,
            write_back: WriteBack::default(),
        },
    );
    Ok(info)
}

/// Returns the core the service runs on, once it started.
fn service_core() -> Option<usize> {
    percore::placement::service_core(Service::Fs)
}

/// Runs `operation` on the fs core with the volume and returns its result. When the fs
/// core failed (or fails before it answers), the result is `NoService`.
pub(crate) fn call<R: Send + 'static>(
    operation: impl FnOnce(&mut SharedVolume) -> Result<R> + Send + 'static,
) -> Result<R> {
    let core = service_core().ok_or(Error::NoService)?;
    match percore::try_spawn_on(core, move || with_volume(operation)) {
        // The fs core failed before it answered: its volume is gone with it.
        Ok(operation) => operation.join().unwrap_or(Err(Error::NoService)),
        Err(percore::SpawnError::CoreFailed(_)) => Err(Error::NoService),
        Err(_) => Err(Error::NoMemory),
    }
}

/// Writes every cached change of the mounted volume to the disk and flushes the device,
/// waiting at most `timeout`; the kernel calls it (on core 0) when the application's
/// `main` has returned, Ok or not, before the run ends. Operations already in line run
/// first. Returns Ok when no volume is mounted, `TimedOut` when the volume did not come
/// back in time (an operation stuck on the disk), `NoService` when the fs core failed.
pub fn sync_before_exit(timeout: Duration) -> Result<()> {
    let Some(core) = service_core() else {
        return Ok(());
    };
    let handle = match percore::try_spawn_on(core, || with_volume(|volume| volume.flush())) {
        Ok(handle) => handle,
        Err(percore::SpawnError::CoreFailed(_)) => return Err(Error::NoService),
        Err(_) => return Err(Error::NoMemory),
    };
    let start = percore::Instant::now();
    let finished = writeback::wait_bounded(
        timeout,
        || handle.is_finished(),
        || start.elapsed(),
        || percore::sleep(Duration::from_millis(1)),
    );
    if finished {
        handle.join().unwrap_or(Err(Error::NoService))
    } else {
        Err(Error::TimedOut)
    }
}

/// Runs `operation` with the volume, one operation at a time.
///
/// An operation blocks its thread whenever it waits for the block device, and the fs
/// core then runs the other operations' threads. So the volume is taken out of the
/// service state for the operation (no borrow of the state is held across a switch).
/// An operation that finds it out parks in line; the one that has it hands it to the
/// first in line and unparks it, and newcomers queue behind (no core spins while
/// operations wait for the disk, and the line is served in order). An operation that
/// leaves changes in the cache arms the write-back.
fn with_volume<R>(operation: impl FnOnce(&mut SharedVolume) -> Result<R>) -> Result<R> {
    // True once this operation was unparked to take the volume handed over to it.
    let mut chosen = false;
    loop {
        let taken = percore::cpu::with_service(|state: &mut State| {
            if state.handed_over && !chosen {
                return None;
            }
            state.handed_over = false;
            state.volume.take()
        });
        match taken {
            None => return Err(Error::NoService),
            // Threads of one core do not interleave here: the volume cannot come back
            // between the look above and the parking below.
            Some(None) => {
                percore::park(|parked| {
                    let mut parked = Some(parked);
                    percore::cpu::with_service(|state: &mut State| {
                        state.waiting.extend(parked.take());
                    });
                    if let Some(parked) = parked {
                        parked.unpark();
                    }
                });
                chosen = true;
            }
            Some(Some(mut volume)) => {
                // The volume is out of the service state until it is put back: a fault
                // in between would lose it, so it fails the fs core instead of this
                // thread alone (callers then get `NoService`, not a wait for good).
                let _critical = percore::fault::critical();
                let result = operation(&mut volume);
                let unwritten = volume.has_unwritten_changes();
                let handed = percore::cpu::with_service(|state: &mut State| {
                    state.volume = Some(volume);
                    let next = state.waiting.pop_front();
                    state.handed_over = next.is_some();
                    (next, state.write_back.after_operation(unwritten))
                });
                if let Some((next, arm)) = handed {
                    if arm {
                        arm_write_back();
                    }
                    if let Some(next) = next {
                        next.unpark();
                    }
                }
                return result;
            }
        }
    }
}

/// Starts the thread that writes the cache back [`WRITE_BACK_DELAY`] from now. Without
/// memory for it, the write-back is left for the next operation to arm.
fn arm_write_back() {
    let started = percore::try_spawn_on(percore::current_core(), write_back);
    if started.is_err() {
        percore::cpu::with_service(|state: &mut State| state.write_back.started());
    }
}

/// The write-back thread: waits out the delay, then writes every cached change.
fn write_back() {
    percore::sleep(WRITE_BACK_DELAY);
    let result = with_volume(|volume| {
        percore::cpu::with_service(|state: &mut State| state.write_back.started());
        volume.flush()
    });
    let report =
        percore::cpu::with_service(|state: &mut State| state.write_back.finished(result.is_ok()));
    if report == Some(true) {
        match result {
            Ok(()) => percore::println!("manada: fs: write-back works again"),
            Err(error) => percore::println!(
                "manada: fs: write-back failed: {error}; retrying every {} ms",
                WRITE_BACK_DELAY.as_millis()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_stamps_files_or_falls_back() {
        assert_eq!(stamp(None), SERVICE_TIME);
        assert_eq!(
            stamp(Some(Duration::from_millis(1_709_251_199_900))),
            Timestamp::new(2024, 2, 29, 23, 59, 59)
        );
    }
}
