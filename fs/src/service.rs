//! The fs service: one FAT16 volume, owned by the fs core, used by every core through
//! [`crate::api`].
//!
//! Each operation runs as a short thread on the fs core (`spawn_on`) with the volume;
//! only that core ever touches the volume, its cache and its block device, so there is no
//! lock. Data comes back by value (the thread's result moves to the caller with the join).

use alloc::boxed::Box;
use alloc::collections::VecDeque;

use crate::{BlockDevice, Error, FixedClock, Result, Timestamp, Volume};

/// The volume type the service keeps: any block device, a fixed clock.
pub(crate) type SharedVolume = Volume<Box<dyn BlockDevice>, FixedClock>;

/// Timestamps the service writes (there is no real-time clock yet).
pub const SERVICE_TIME: Timestamp = Timestamp {
    year: 2026,
    month: 1,
    day: 1,
    hour: 0,
    minute: 0,
    second: 0,
};

struct State {
    /// The volume; `None` while an operation has it out (see `call`).
    volume: Option<SharedVolume>,
    /// Operations waiting for the volume, first come first.
    waiting: VecDeque<percore::Parked>,
    /// The volume was put back for the first waiter, which was unparked: newcomers queue
    /// behind it instead of taking the volume first (so nobody waits for ever).
    handed_over: bool,
}

static CORE: spin::Once<usize> = spin::Once::new();

/// Mounts `device` and serves it from the running core. Returns what was mounted.
pub fn start(device: Box<dyn BlockDevice>) -> Result<crate::VolumeInfo> {
    let volume = Volume::mount(device, FixedClock(SERVICE_TIME))?;
    let info = volume.info();
    percore::cpu::install_service(State {
        volume: Some(volume),
        waiting: VecDeque::new(),
        handed_over: false,
    });
    CORE.call_once(percore::current_core);
    Ok(info)
}

/// Returns the core the service runs on.
pub fn service_core() -> Option<usize> {
    CORE.get().copied()
}

/// Runs `operation` on the fs core with the volume and returns its result. When the fs
/// core failed (or fails before it answers), the result is `NoService`.
pub(crate) fn call<R: Send + 'static>(
    operation: impl FnOnce(&mut SharedVolume) -> Result<R> + Send + 'static,
) -> Result<R> {
    let core = service_core().ok_or(Error::NoService)?;
    match percore::try_spawn_on(core, move || with_volume(operation)) {
        Ok(operation) => operation.join().unwrap_or(Err(Error::NoService)),
        Err(percore::SpawnError::CoreFailed(_)) => Err(Error::NoService),
        Err(error) => panic!("fs: cannot run an operation on core {core}: {error}"),
    }
}

/// Runs `operation` with the volume, one operation at a time.
///
/// An operation blocks its thread whenever it waits for the block device, and the fs
/// core then runs the other operations' threads. So the volume is taken out of the
/// service state for the operation (no borrow of the state is held across a switch).
/// An operation that finds it out parks in line; the one that has it hands it to the
/// first in line and unparks it, and newcomers queue behind (no core spins while
/// operations wait for the disk, and the line is served in order).
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
                let next = percore::cpu::with_service(|state: &mut State| {
                    state.volume = Some(volume);
                    let next = state.waiting.pop_front();
                    state.handed_over = next.is_some();
                    next
                });
                if let Some(next) = next.flatten() {
                    next.unpark();
                }
                return result;
            }
        }
    }
}
