//! The blk service's wiring: every virtio-blk disk found at boot, with its DMA memory,
//! driven from the blk core.

use devices::disk;
use percore::{println, KernelCapability};

use super::reserve::ReserveCursor;

/// The disks found at boot with their DMA memory, and the blk core.
static SETUP: spin::Mutex<Option<(usize, heapless::Vec<disk::DiskSetup, { disk::MAX_DISKS }>)>> =
    spin::Mutex::new(None);

/// Gives every virtio-blk disk its DMA memory, for the service on `core`.
pub fn prepare(core: usize, reserve: &mut ReserveCursor) {
    let mut setups = heapless::Vec::new();
    for (transport, location) in crate::transports::take_blk_transports() {
        let Some(dma) = reserve.take(disk::dma_size()) else {
            reserve.report_full("blk", "virtio-blk", &location, disk::dma_size());
            break;
        };
        let _ = setups.push(disk::DiskSetup {
            transport,
            dma,
            location,
        });
    }
    *SETUP.lock() = Some((core, setups));
}

/// Starts the blk service on its core and returns once its disks are published.
pub fn start(kernel: &KernelCapability) {
    if let Some((core, setups)) = SETUP.lock().take() {
        let kernel = *kernel;
        let started = percore::spawn_on(core, move || {
            disk::start(&kernel, setups);
        })
        .join();
        if let Err(error) = started {
            println!("manada: blk: the service did not start on core {core}: {error}");
        }
    }
}
