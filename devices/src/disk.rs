//! The blk service's disks: every virtio-blk disk is driven by one service core, and
//! threads on any core use the disks through [`Disk`]. (The virtio-blk protocol and its
//! queue, which this drives, are `virtio::blk`.)
//!
//! A request runs as a short thread on the service core (`spawn_on`): it submits to the
//! disk's queue, then polls the used ring, yielding between polls, until its own
//! completion is in. Threads of several clients are in flight together, so the queue
//! depth is as deep as the clients make it. The caller blocks in `join` (its core runs
//! other threads) and the device reads or writes the caller's buffer directly: memory
//! is identity mapped, so a buffer's address is its DMA address and nothing is copied.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use percore::placement::Service;

use crate::transport::VirtioTransport;
use crate::virtio::blk::{self, BlkConfig, BlkQueue, RequestId, CONFIG_LEN, ID_SIZE, SECTOR_SIZE};
use crate::virtio::dma::DmaRegion;
use crate::virtio::queue::SplitQueue;
use crate::virtio::transport::STATUS_FAILED;
use crate::virtio::{DeviceTransport, TransportError};

pub use crate::virtio::blk::BlkError;

/// The most disks the service drives.
pub const MAX_DISKS: usize = 8;
/// Requests a disk's queue holds at most (each takes three descriptors or more).
pub const QUEUE_SIZE: u16 = 256;

/// Returns the bytes of DMA memory one disk needs.
pub const fn dma_size() -> usize {
    BlkQueue::memory_size(QUEUE_SIZE)
}

/// A disk for the service to drive: its transport and its DMA memory.
#[derive(Debug)]
pub struct DiskSetup {
    pub transport: VirtioTransport,
    pub dma: DmaRegion,
    /// Where the device is, for the boot log.
    pub location: heapless::String<16>,
}

/// A disk as the service found it.
#[derive(Debug, Clone)]
pub struct DiskInfo {
    /// `disk0`, `disk1`, ... in the order the disks were attached.
    pub name: heapless::String<8>,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    pub read_only: bool,
    /// The device has a write cache that `flush` empties.
    pub flush: bool,
}

/// Why the service could not start a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    Transport(TransportError),
    Device(BlkError),
    /// The device's queue 0 is missing or smaller than 4 entries.
    NoQueue,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Transport(error) => write!(f, "virtio transport: {error}"),
            SetupError::Device(error) => write!(f, "{error}"),
            SetupError::NoQueue => f.write_str("no usable request queue"),
        }
    }
}

/// The disks the service has: published once when it started (where it runs is
/// `percore::placement::service_core(Service::Blk)`).
static DISKS: spin::Once<heapless::Vec<DiskInfo, MAX_DISKS>> = spin::Once::new();

/// One disk's driver state, on the service core.
struct Driver {
    transport: VirtioTransport,
    queue: BlkQueue,
    /// Completions collected for requests whose threads have not looked yet.
    done: BTreeMap<RequestId, Result<usize, BlkError>>,
    /// Used entries that matched no request (a misbehaving device).
    faults: u64,
}

/// The service state kept in the service core's `CoreLocal`.
struct State {
    drivers: Vec<Driver>,
}

/// Brings a virtio-blk device up on `transport` with its queue in `dma`: negotiates,
/// reads the configuration, sets up queue 0 (polled) and tells the device the driver is
/// ready. Returns the queue, whose configuration the checks of every request use. A
/// device that cannot be used is left marked FAILED.
pub fn start_device<T: DeviceTransport>(
    transport: &mut T,
    dma: DmaRegion,
) -> Result<BlkQueue, SetupError> {
    let started = bring_up(transport, dma);
    if started.is_err() {
        transport.add_status(STATUS_FAILED);
    }
    started
}

fn bring_up<T: DeviceTransport>(transport: &mut T, dma: DmaRegion) -> Result<BlkQueue, SetupError> {
    let negotiated = transport
        .negotiate(blk::driver_features)
        .map_err(SetupError::Transport)?;
    let mut config_bytes = [0u8; CONFIG_LEN];
    transport
        .read_device_config(&mut config_bytes)
        .map_err(SetupError::Transport)?;
    let config =
        BlkConfig::from_config_space(negotiated, &config_bytes).map_err(SetupError::Device)?;
    let size = transport.max_queue_size(0).min(QUEUE_SIZE);
    if size < 4 {
        return Err(SetupError::NoQueue);
    }
    // The largest power of two the device accepts.
    let size = 1 << (15 - size.leading_zeros());
    let mut queue = BlkQueue::new(dma, size, 0, config).map_err(|_| SetupError::NoQueue)?;
    let rings: &SplitQueue = queue.queue();
    let (descriptors, driver, device) = (
        rings.descriptor_table_address(),
        rings.available_address(),
        rings.used_address(),
    );
    transport
        .enable_queue(0, size, descriptors, driver, device)
        .map_err(SetupError::Transport)?;
    queue.set_interrupts(false);
    transport.driver_ok();
    Ok(queue)
}

fn start_disk(setup: DiskSetup) -> Result<(Driver, BlkConfig), SetupError> {
    let mut transport = setup.transport;
    let queue = start_device(&mut transport, setup.dma)?;
    let config = *queue.config();
    Ok((
        Driver {
            transport,
            queue,
            done: BTreeMap::new(),
            faults: 0,
        },
        config,
    ))
}

/// Starts the service on the running core with `setups` and returns the disks it drives
/// (a disk that fails to start is reported and left out). Kernel only: the kernel starts
/// the service on the blk core.
///
/// # Panics
/// Panics if a service already runs on this core.
pub fn start(
    kernel: &percore::KernelCapability,
    setups: impl IntoIterator<Item = DiskSetup>,
) -> &'static [DiskInfo] {
    let mut drivers = Vec::new();
    let mut disks = heapless::Vec::new();
    for setup in setups {
        let location = setup.location.clone();
        match start_disk(setup) {
            Ok((driver, config)) => {
                let mut name = heapless::String::new();
                let _ = fmt::write(&mut name, format_args!("disk{}", drivers.len()));
                let info = DiskInfo {
                    name,
                    sectors: config.capacity,
                    read_only: config.read_only,
                    flush: config.flush,
                };
                percore::println!(
                    "manada: blk: {} is virtio-blk {location}: {} sectors ({} MiB), {}{}",
                    info.name,
                    info.sectors,
                    (info.sectors * SECTOR_SIZE as u64) >> 20,
                    if info.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    },
                    if info.flush { ", write cache" } else { "" }
                );
                if disks.push(info).is_ok() {
                    drivers.push(driver);
                }
            }
            Err(error) => percore::println!("manada: blk: virtio-blk {location} not used: {error}"),
        }
    }
    percore::cpu::install_service(kernel, Service::Blk, State { drivers });
    DISKS.call_once(|| disks)
}

/// Returns the disks of the service (none if it has not started).
pub fn disks() -> &'static [DiskInfo] {
    DISKS.get().map_or(&[], |disks| disks.as_slice())
}

/// A disk of the blk service, usable from any core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk {
    index: usize,
    core: usize,
}

impl Disk {
    /// Returns the disk called `name` (`disk0`, ...).
    pub fn open(name: &str) -> Option<Disk> {
        let core = percore::placement::service_core(Service::Blk)?;
        let index = disks().iter().position(|disk| disk.name == name)?;
        Some(Disk { index, core })
    }

    /// Returns what the service knows about the disk.
    pub fn info(&self) -> &'static DiskInfo {
        &disks()[self.index]
    }

    /// Returns the size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.info().sectors
    }

    /// Reads `buffer.len()` bytes (a multiple of 512) from `sector` on.
    pub fn read(&self, sector: u64, buffer: &mut [u8]) -> Result<(), BlkError> {
        let (address, len) = (buffer.as_mut_ptr() as u64, buffer.len());
        self.run(move |queue| queue.read(sector, address, len))
            .map(|_| ())
    }

    /// Writes `buffer` (a multiple of 512 bytes) from `sector` on.
    pub fn write(&self, sector: u64, buffer: &[u8]) -> Result<(), BlkError> {
        let (address, len) = (buffer.as_ptr() as u64, buffer.len());
        self.run(move |queue| queue.write(sector, address, len))
            .map(|_| ())
    }

    /// Makes every completed write durable (a no-op error `Unsupported` on a disk
    /// without a write cache).
    pub fn flush(&self) -> Result<(), BlkError> {
        self.run(|queue| queue.flush()).map(|_| ())
    }

    /// Returns the device's id string (up to 20 bytes, zero padded).
    pub fn id(&self) -> Result<[u8; ID_SIZE], BlkError> {
        let mut id = [0u8; ID_SIZE];
        let address = id.as_mut_ptr() as u64;
        self.run(move |queue| queue.get_id(address))?;
        Ok(id)
    }

    /// Runs `submit` on the service core and waits for the request's completion. The
    /// caller's buffer stays borrowed (and alive) until `join` returns. When the service
    /// core failed (or fails before it answers), the result is `ServiceFailed`.
    fn run(
        &self,
        submit: impl Fn(&mut BlkQueue) -> Result<RequestId, BlkError> + Send + 'static,
    ) -> Result<usize, BlkError> {
        let index = self.index;
        match percore::try_spawn_on(self.core, move || serve(index, submit)) {
            Ok(request) => request.join().unwrap_or(Err(BlkError::ServiceFailed)),
            Err(percore::SpawnError::CoreFailed(_)) => Err(BlkError::ServiceFailed),
            Err(error) => panic!("blk: cannot run a request on core {}: {error}", self.core),
        }
    }
}

/// Submits one request on the service core and waits for its completion.
fn serve(
    index: usize,
    submit: impl Fn(&mut BlkQueue) -> Result<RequestId, BlkError>,
) -> Result<usize, BlkError> {
    let id = loop {
        let submitted = percore::cpu::with_service(|state: &mut State| {
            let driver = &mut state.drivers[index];
            let submitted = submit(&mut driver.queue);
            if submitted.is_ok() {
                driver.queue.kick(&mut driver.transport);
            }
            submitted
        })
        .expect("blk requests run on the blk service core");
        match submitted {
            Ok(id) => break id,
            Err(BlkError::QueueFull) => percore::yield_now(),
            Err(error) => return Err(error),
        }
    };
    loop {
        let result = percore::cpu::with_service(|state: &mut State| {
            let driver = &mut state.drivers[index];
            collect(driver);
            driver.done.remove(&id)
        })
        .flatten();
        if let Some(result) = result {
            return result;
        }
        percore::yield_now();
    }
}

/// Moves every finished request from the used ring into `done`.
fn collect(driver: &mut Driver) {
    while let Some(completion) = driver.queue.complete() {
        match completion {
            Ok(completed) => {
                driver.done.insert(completed.id, completed.result);
            }
            Err(_) => driver.faults += 1,
        }
    }
}

/// The file system reads and writes a disk of the blk service through this.
impl fs::BlockDevice for Disk {
    fn sector_count(&self) -> u64 {
        self.capacity()
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), fs::IoError> {
        Disk::read(self, lba, buf).map_err(io_error)
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), fs::IoError> {
        Disk::write(self, lba, buf).map_err(io_error)
    }

    fn flush(&mut self) -> Result<(), fs::IoError> {
        match Disk::flush(self) {
            // No write cache: every completed write is already durable.
            Ok(()) | Err(BlkError::Unsupported) => Ok(()),
            Err(error) => Err(io_error(error)),
        }
    }
}

fn io_error(error: BlkError) -> fs::IoError {
    match error {
        BlkError::ReadOnly => fs::IoError::WriteProtected,
        BlkError::OutOfRange | BlkError::InvalidLength => fs::IoError::OutOfRange,
        _ => fs::IoError::Device,
    }
}
