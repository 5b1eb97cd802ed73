//! The virtio-blk request protocol (virtio 1.2, section 5.2) on top of a [`SplitQueue`].
//!
//! [`BlkQueue`] turns reads, writes, flushes and get-id requests into descriptor chains
//! (header, data split to fit `size_max`/`seg_max`, status byte), keeps many of them in
//! flight, and turns used entries back into results. Every request is checked against
//! the disk (capacity, read-only) before the device sees it, and everything the device
//! writes back (used id, status byte, used length) is checked before it is believed.
//! The transport stays outside: the caller programs the queue addresses and rings the
//! doorbell ([`BlkQueue::kick`] with a [`Transport`], or [`BlkQueue::publish`]).
//!
//! Buffers are physical addresses (identity mapped). The caller must keep a buffer alive
//! and leave it alone from submission until its completion comes back: the device writes
//! into it at any time in between.

use core::fmt;

use super::dma::{align_up, DmaRegion, PAGE_SIZE};
use super::queue::{QueueError, Segment, SplitQueue, MAX_QUEUE_SIZE};
use super::{Transport, FEATURE_VERSION_1};

/// Bytes per sector: capacity and request positions count in these, whatever the block size.
pub const SECTOR_SIZE: usize = 512;
/// Bytes of the device id a get-id request returns (zero-padded, not always terminated).
pub const ID_SIZE: usize = 20;

/// VIRTIO_BLK_F_SIZE_MAX: `size_max` bounds every segment.
pub const FEATURE_SIZE_MAX: u64 = 1 << 1;
/// VIRTIO_BLK_F_SEG_MAX: `seg_max` bounds the data segments of a request.
pub const FEATURE_SEGMENT_MAX: u64 = 1 << 2;
/// VIRTIO_BLK_F_RO: the disk is read-only.
pub const FEATURE_READ_ONLY: u64 = 1 << 5;
/// VIRTIO_BLK_F_BLK_SIZE: `blk_size` gives the optimal block size.
pub const FEATURE_BLOCK_SIZE: u64 = 1 << 6;
/// VIRTIO_BLK_F_FLUSH: the device has a write cache and accepts flush requests.
pub const FEATURE_FLUSH: u64 = 1 << 9;

/// Offset of `capacity` (u64, in sectors) in the device configuration space.
pub const CONFIG_CAPACITY: usize = 0;
/// Offset of `size_max` (u32, bytes).
pub const CONFIG_SIZE_MAX: usize = 8;
/// Offset of `seg_max` (u32).
pub const CONFIG_SEGMENT_MAX: usize = 12;
/// Offset of `blk_size` (u32, bytes).
pub const CONFIG_BLOCK_SIZE: usize = 20;
/// Bytes of configuration space [`BlkConfig::from_config_space`] reads at most.
pub const CONFIG_LEN: usize = 24;

/// VIRTIO_BLK_S_OK.
pub const STATUS_OK: u8 = 0;
/// VIRTIO_BLK_S_IOERR.
pub const STATUS_IO_ERROR: u8 = 1;
/// VIRTIO_BLK_S_UNSUPP.
pub const STATUS_UNSUPPORTED: u8 = 2;
/// What the status byte holds until the device writes it, so a device that completes a
/// request without writing a status is caught.
const STATUS_UNWRITTEN: u8 = 0xFF;

/// Bytes of the request header.
pub const HEADER_SIZE: usize = 16;
/// Bytes of per-request DMA memory: header, then the status byte, padded to 32 so slots
/// never straddle a cache line.
const SLOT_SIZE: usize = 32;
const STATUS_OFFSET: usize = HEADER_SIZE;

/// Returns the features this driver accepts out of the ones the device offers.
pub fn driver_features(device_features: u64) -> u64 {
    device_features
        & (FEATURE_VERSION_1
            | FEATURE_SIZE_MAX
            | FEATURE_SEGMENT_MAX
            | FEATURE_READ_ONLY
            | FEATURE_BLOCK_SIZE
            | FEATURE_FLUSH)
}

/// The `type` field of a request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum RequestType {
    /// VIRTIO_BLK_T_IN: read sectors into the buffer.
    In = 0,
    /// VIRTIO_BLK_T_OUT: write the buffer to sectors.
    Out = 1,
    /// VIRTIO_BLK_T_FLUSH: make earlier writes durable.
    Flush = 4,
    /// VIRTIO_BLK_T_GET_ID: read the device id string.
    GetId = 8,
}

/// The 16-byte header that starts every request (`struct virtio_blk_req`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// What to do.
    pub request_type: RequestType,
    /// First sector for reads and writes; zero otherwise, as the spec asks.
    pub sector: u64,
}

impl RequestHeader {
    /// Returns the header as the device reads it: type, reserved zero, sector; little-endian.
    pub fn to_bytes(self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        bytes[0..4].copy_from_slice(&(self.request_type as u32).to_le_bytes());
        bytes[8..16].copy_from_slice(&self.sector.to_le_bytes());
        bytes
    }
}

/// The disk as the device describes it, after feature negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkConfig {
    /// Size of the disk in 512-byte sectors.
    pub capacity: u64,
    /// Largest segment in bytes, if the device limits it.
    pub size_max: Option<u32>,
    /// Most data segments per request, if the device limits it.
    pub segment_max: Option<u32>,
    /// Optimal block size in bytes, if the device says.
    pub block_size: Option<u32>,
    /// Writes are refused.
    pub read_only: bool,
    /// The device accepts flush requests.
    pub flush: bool,
}

impl BlkConfig {
    /// Returns the configuration read from the device's configuration space `config`
    /// (from offset 0), keeping only fields whose feature was negotiated. A limit of zero
    /// means nothing and is ignored.
    pub fn from_config_space(negotiated: u64, config: &[u8]) -> Result<BlkConfig, BlkError> {
        let short = || BlkError::BadDevice(DeviceFault::ShortConfig(config.len()));
        let read_u32 = |offset: usize| -> Result<u32, BlkError> {
            let bytes = config.get(offset..offset + 4).ok_or_else(short)?;
            Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        };
        let optional = |feature: u64, offset: usize| -> Result<Option<u32>, BlkError> {
            if negotiated & feature == 0 {
                return Ok(None);
            }
            Ok(Some(read_u32(offset)?).filter(|&value| value != 0))
        };
        let low = read_u32(CONFIG_CAPACITY)?;
        let high = read_u32(CONFIG_CAPACITY + 4)?;
        Ok(BlkConfig {
            capacity: u64::from(low) | (u64::from(high) << 32),
            size_max: optional(FEATURE_SIZE_MAX, CONFIG_SIZE_MAX)?,
            segment_max: optional(FEATURE_SEGMENT_MAX, CONFIG_SEGMENT_MAX)?,
            block_size: optional(FEATURE_BLOCK_SIZE, CONFIG_BLOCK_SIZE)?,
            read_only: negotiated & FEATURE_READ_ONLY != 0,
            flush: negotiated & FEATURE_FLUSH != 0,
        })
    }
}

/// What the device did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFault {
    /// The used ring held something that cannot be ours.
    Queue(QueueError),
    /// The status byte held an undefined value (or was never written: 0xFF).
    Status(u8),
    /// A successful read reported fewer bytes written than the data and status.
    ShortLength {
        /// Data bytes plus the status byte.
        expected: u32,
        /// The used entry's length.
        reported: u32,
    },
    /// The configuration space was shorter than the negotiated features need.
    ShortConfig(usize),
}

/// Why a block request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkError {
    /// The device reported an I/O error (VIRTIO_BLK_S_IOERR).
    IoError,
    /// The device does not support the request (VIRTIO_BLK_S_UNSUPP), or the driver knows
    /// it would not (a flush without the flush feature).
    Unsupported,
    /// A write to a read-only disk; refused before the device saw it.
    ReadOnly,
    /// The sectors run past the end of the disk; refused before the device saw them.
    OutOfRange,
    /// A read or write length that is zero or not a multiple of [`SECTOR_SIZE`].
    InvalidLength,
    /// More segments than the device or the queue can take in one request; split it.
    TooLarge,
    /// Not enough free descriptors now; retry after completions.
    QueueFull,
    /// The device broke the protocol.
    BadDevice(DeviceFault),
    /// The blk service's core failed (or the request's thread there faulted): the
    /// request's outcome is unknown.
    ServiceFailed,
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkError::IoError => f.write_str("block device I/O error"),
            BlkError::Unsupported => f.write_str("request not supported by the block device"),
            BlkError::ReadOnly => f.write_str("block device is read-only"),
            BlkError::OutOfRange => f.write_str("sectors beyond the end of the disk"),
            BlkError::InvalidLength => f.write_str("length not a non-zero multiple of 512"),
            BlkError::TooLarge => f.write_str("request needs too many segments"),
            BlkError::QueueFull => f.write_str("block queue full"),
            BlkError::BadDevice(fault) => write!(f, "block device misbehaved: {fault:?}"),
            BlkError::ServiceFailed => f.write_str("the blk service failed"),
        }
    }
}

/// Names a submitted request; unique for the life of its [`BlkQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// Returns the id as a number (for logs and correlation tables).
    pub fn value(self) -> u64 {
        self.0
    }
}

/// A finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// The request, as its submission returned it.
    pub id: RequestId,
    /// Bytes transferred (the buffer length for reads and writes, [`ID_SIZE`] for
    /// get-id, zero for flush), or why it failed.
    pub result: Result<usize, BlkError>,
}

/// What is remembered about a request in flight, in memory the device cannot reach.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: RequestId,
    request_type: RequestType,
    bytes: u32,
}

/// One virtio-blk request queue: submissions in, completions out.
#[derive(Debug)]
pub struct BlkQueue {
    queue: SplitQueue,
    /// Header and status byte of each request, indexed by its head descriptor (a head is
    /// unique while in flight, so it doubles as the slot number).
    slots: DmaRegion,
    requests: [Option<Pending>; MAX_QUEUE_SIZE as usize],
    queue_index: u16,
    config: BlkConfig,
    next_id: u64,
}

impl BlkQueue {
    /// Returns the offset of the request slots in the region.
    const fn slots_offset(queue_size: u16) -> usize {
        align_up(SplitQueue::memory_size(queue_size), PAGE_SIZE)
    }

    /// Returns the bytes of DMA memory a queue of `queue_size` needs: the virtqueue, then
    /// the request slots on their own pages.
    pub const fn memory_size(queue_size: u16) -> usize {
        Self::slots_offset(queue_size) + align_up(SLOT_SIZE * queue_size as usize, PAGE_SIZE)
    }

    /// Returns a request queue for virtqueue `queue_index` of `queue_size` (a power of two,
    /// 4 to 256) in `region` (at least [`Self::memory_size`] bytes), for a disk `config`.
    pub fn new(
        region: DmaRegion,
        queue_size: u16,
        queue_index: u16,
        config: BlkConfig,
    ) -> Result<BlkQueue, QueueError> {
        if queue_size < 4 || !queue_size.is_power_of_two() || queue_size > MAX_QUEUE_SIZE {
            return Err(QueueError::InvalidSize(queue_size));
        }
        let needed = Self::memory_size(queue_size);
        if region.len() < needed {
            return Err(QueueError::RegionTooSmall {
                needed,
                available: region.len(),
            });
        }
        let (rings, slots) = region.split_at(Self::slots_offset(queue_size));
        let queue = SplitQueue::new(rings, queue_size)?;
        Ok(BlkQueue {
            queue,
            slots,
            requests: [None; MAX_QUEUE_SIZE as usize],
            queue_index,
            config,
            next_id: 0,
        })
    }

    /// Returns the virtqueue, for its addresses and size when the transport sets it up.
    pub fn queue(&self) -> &SplitQueue {
        &self.queue
    }

    /// Returns the virtqueue's index on the device.
    pub fn queue_index(&self) -> u16 {
        self.queue_index
    }

    /// Returns the disk's configuration.
    pub fn config(&self) -> &BlkConfig {
        &self.config
    }

    /// Returns the number of requests submitted and not yet completed.
    pub fn in_flight(&self) -> usize {
        usize::from(self.queue.in_flight())
    }

    /// Submits a read of `len` bytes from `sector` into the buffer at `address`.
    pub fn read(&mut self, sector: u64, address: u64, len: usize) -> Result<RequestId, BlkError> {
        self.check_range(sector, len)?;
        self.submit(RequestType::In, sector, address, len)
    }

    /// Submits a write of `len` bytes from the buffer at `address` to `sector`.
    pub fn write(&mut self, sector: u64, address: u64, len: usize) -> Result<RequestId, BlkError> {
        if self.config.read_only {
            return Err(BlkError::ReadOnly);
        }
        self.check_range(sector, len)?;
        self.submit(RequestType::Out, sector, address, len)
    }

    /// Submits a flush of the device's write cache. Without the flush feature the device
    /// writes through, and the request is refused as unsupported.
    pub fn flush(&mut self) -> Result<RequestId, BlkError> {
        if !self.config.flush {
            return Err(BlkError::Unsupported);
        }
        self.submit(RequestType::Flush, 0, 0, 0)
    }

    /// Submits a request for the device id, which the device writes into the
    /// [`ID_SIZE`]-byte buffer at `address`.
    pub fn get_id(&mut self, address: u64) -> Result<RequestId, BlkError> {
        self.submit(RequestType::GetId, 0, address, ID_SIZE)
    }

    /// Makes submitted requests visible to the device. Returns true if the caller must
    /// notify the device (queue [`Self::queue_index`]).
    pub fn publish(&mut self) -> bool {
        self.queue.publish()
    }

    /// Makes submitted requests visible and notifies the device through `transport` if it
    /// wants to be told.
    pub fn kick(&mut self, transport: &mut impl Transport) {
        if self.queue.publish() {
            transport.notify(self.queue_index);
        }
    }

    /// Asks the device for completion interrupts, or not (while polling).
    pub fn set_interrupts(&mut self, enabled: bool) {
        self.queue.set_interrupts(enabled);
    }

    /// Returns the next finished request, `None` if none has finished, or
    /// `Err(BlkError::BadDevice(..))` for a used entry that matches no request (the entry is
    /// skipped and the queue keeps working).
    pub fn complete(&mut self) -> Option<Result<Completed, BlkError>> {
        let used = match self.queue.pop_used()? {
            Ok(used) => used,
            Err(error) => return Some(Err(BlkError::BadDevice(DeviceFault::Queue(error)))),
        };
        let head = used.token.index();
        let Some(pending) = self.requests[usize::from(head)].take() else {
            // Unreachable: the queue only returns heads in flight, and every one was
            // recorded at submission. Reported rather than trusted.
            let fault = DeviceFault::Queue(QueueError::BadDescriptor(u32::from(head)));
            return Some(Err(BlkError::BadDevice(fault)));
        };
        let status = self.slots.read_u8(Self::slot_offset(head) + STATUS_OFFSET);
        let result = match status {
            STATUS_OK => {
                let device_writes_data =
                    matches!(pending.request_type, RequestType::In | RequestType::GetId);
                let expected = if device_writes_data {
                    pending.bytes + 1
                } else {
                    1
                };
                if used.len < expected {
                    Err(BlkError::BadDevice(DeviceFault::ShortLength {
                        expected,
                        reported: used.len,
                    }))
                } else {
                    Ok(pending.bytes as usize)
                }
            }
            STATUS_IO_ERROR => Err(BlkError::IoError),
            STATUS_UNSUPPORTED => Err(BlkError::Unsupported),
            other => Err(BlkError::BadDevice(DeviceFault::Status(other))),
        };
        Some(Ok(Completed {
            id: pending.id,
            result,
        }))
    }

    fn check_range(&self, sector: u64, len: usize) -> Result<(), BlkError> {
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlkError::InvalidLength);
        }
        let sectors = (len / SECTOR_SIZE) as u64;
        match sector.checked_add(sectors) {
            Some(end) if end <= self.config.capacity => Ok(()),
            _ => Err(BlkError::OutOfRange),
        }
    }

    const fn slot_offset(head: u16) -> usize {
        SLOT_SIZE * head as usize
    }

    /// Builds and adds the chain header, data segments, status; checked and recorded.
    fn submit(
        &mut self,
        request_type: RequestType,
        sector: u64,
        address: u64,
        len: usize,
    ) -> Result<RequestId, BlkError> {
        let bytes = u32::try_from(len).map_err(|_| BlkError::TooLarge)?;
        let chunk = self.config.size_max.unwrap_or(u32::MAX);
        let data_segments = bytes.div_ceil(chunk) as usize;
        if self
            .config
            .segment_max
            .is_some_and(|max| data_segments > max as usize)
            || data_segments + 2 > usize::from(self.queue.capacity())
        {
            return Err(BlkError::TooLarge);
        }
        if data_segments + 2 > usize::from(self.queue.free_descriptors()) {
            return Err(BlkError::QueueFull);
        }
        let head = self.queue.next_head().ok_or(BlkError::QueueFull)?;
        let slot = Self::slot_offset(head);
        let header = RequestHeader {
            request_type,
            sector,
        };
        self.slots.write_bytes(slot, &header.to_bytes());
        self.slots.write_u8(slot + STATUS_OFFSET, STATUS_UNWRITTEN);

        let header_address = self.slots.address() + slot as u64;
        let device_writes_data = matches!(request_type, RequestType::In | RequestType::GetId);
        let count = data_segments + 2;
        let token = self
            .queue
            .add_with(count, |index| {
                if index == 0 {
                    Segment {
                        address: header_address,
                        len: HEADER_SIZE as u32,
                        device_writes: false,
                    }
                } else if index == count - 1 {
                    Segment {
                        address: header_address + STATUS_OFFSET as u64,
                        len: 1,
                        device_writes: true,
                    }
                } else {
                    let offset = (index as u32 - 1) * chunk;
                    Segment {
                        address: address + u64::from(offset),
                        len: chunk.min(bytes - offset),
                        device_writes: device_writes_data,
                    }
                }
            })
            .map_err(|error| match error {
                QueueError::Full => BlkError::QueueFull,
                other => BlkError::BadDevice(DeviceFault::Queue(other)),
            })?;
        debug_assert_eq!(token.index(), head);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.requests[usize::from(head)] = Some(Pending {
            id,
            request_type,
            bytes,
        });
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::virtio::dma::host_regions;
    use crate::virtio::queue::tests::DeviceView;
    use std::vec::Vec;

    const DISK_SECTORS: u64 = 64;

    fn config() -> BlkConfig {
        BlkConfig {
            capacity: DISK_SECTORS,
            size_max: Some(1024),
            segment_max: Some(4),
            block_size: Some(512),
            read_only: false,
            flush: true,
        }
    }

    /// A queue and the device's view of it, the view placed by the addresses the queue
    /// gives the transport.
    fn setup(size: u16, config: BlkConfig) -> (BlkQueue, DeviceView, DmaRegion) {
        let (driver, device) = host_regions(BlkQueue::memory_size(size));
        let base = device.address();
        let blk = BlkQueue::new(driver, size, 3, config).expect("queue");
        assert_eq!(blk.queue().descriptor_table_address(), base);
        let (rings, slots) = device.split_at(BlkQueue::slots_offset(size));
        let view = DeviceView::new(rings, blk.queue());
        (blk, view, slots)
    }

    #[test]
    fn header_and_config_space_are_parsed_as_the_spec_lays_them_out() {
        let header = RequestHeader {
            request_type: RequestType::Out,
            sector: 0x0102_0304_0506_0708,
        };
        assert_eq!(
            header.to_bytes(),
            [1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        assert_eq!(RequestType::GetId as u32, 8);
        assert_eq!(RequestType::Flush as u32, 4);

        let mut space = [0u8; CONFIG_LEN];
        space[0..8].copy_from_slice(&0x1_0000_0002u64.to_le_bytes());
        space[8..12].copy_from_slice(&4096u32.to_le_bytes());
        space[12..16].copy_from_slice(&0u32.to_le_bytes());
        space[20..24].copy_from_slice(&4096u32.to_le_bytes());
        let all = driver_features(u64::MAX);
        assert_eq!(
            all,
            (1 << 32) | (1 << 1) | (1 << 2) | (1 << 5) | (1 << 6) | (1 << 9)
        );
        let parsed = BlkConfig::from_config_space(all, &space).expect("config");
        assert_eq!(
            parsed,
            BlkConfig {
                capacity: 0x1_0000_0002,
                size_max: Some(4096),
                segment_max: None, // zero is no limit
                block_size: Some(4096),
                read_only: true,
                flush: true,
            }
        );
        let bare = BlkConfig::from_config_space(FEATURE_VERSION_1, &space[..8]).expect("config");
        assert_eq!(
            (bare.size_max, bare.block_size, bare.read_only, bare.flush),
            (None, None, false, false)
        );
        assert_eq!(
            BlkConfig::from_config_space(all, &space[..12]),
            Err(BlkError::BadDevice(DeviceFault::ShortConfig(12)))
        );
    }

    #[test]
    fn refuses_bad_requests_before_the_device_sees_them() {
        let (mut blk, mut device, _) = setup(
            8,
            BlkConfig {
                read_only: true,
                flush: false,
                ..config()
            },
        );
        assert_eq!(blk.write(0, 0x10_0000, 512), Err(BlkError::ReadOnly));
        assert_eq!(blk.flush(), Err(BlkError::Unsupported));
        assert_eq!(
            blk.read(DISK_SECTORS, 0x10_0000, 512),
            Err(BlkError::OutOfRange)
        );
        assert_eq!(
            blk.read(DISK_SECTORS - 1, 0x10_0000, 1024),
            Err(BlkError::OutOfRange)
        );
        assert_eq!(
            blk.read(u64::MAX, 0x10_0000, 512),
            Err(BlkError::OutOfRange)
        );
        assert_eq!(blk.read(0, 0x10_0000, 0), Err(BlkError::InvalidLength));
        assert_eq!(blk.read(0, 0x10_0000, 100), Err(BlkError::InvalidLength));
        // seg_max 4 with size_max 1024: 4 KiB fits, 4.5 KiB does not.
        assert_eq!(blk.read(0, 0x10_0000, 4608), Err(BlkError::TooLarge));
        assert_eq!(blk.in_flight(), 0);
        assert!(!blk.publish());
        assert!(device.take_available().is_empty());

        let (mut blk, _, _) = setup(8, config());
        blk.read(0, 0x10_0000, 4096).expect("six descriptors");
        assert_eq!(blk.read(8, 0x20_0000, 1024), Err(BlkError::QueueFull));
        blk.flush().expect("two descriptors");
        assert_eq!(blk.flush(), Err(BlkError::QueueFull));
        assert_eq!(blk.in_flight(), 2);
    }

    #[test]
    fn requests_become_chains_split_by_size_max() {
        let (mut blk, mut device, slots) = setup(16, config());
        let read = blk.read(5, 0x40_0000, 2560).expect("read");
        let write = blk.write(9, 0x50_0000, 512).expect("write");
        struct Doorbell(Vec<u16>);
        impl Transport for Doorbell {
            fn notify(&mut self, queue: u16) {
                self.0.push(queue);
            }
        }
        let mut doorbell = Doorbell(Vec::new());
        blk.kick(&mut doorbell);
        assert_eq!(doorbell.0, [3]);
        let heads = device.take_available();
        assert_eq!(heads.len(), 2);

        let chain = device.chain(heads[0]);
        let lengths: Vec<u32> = chain.iter().map(|descriptor| descriptor.1).collect();
        assert_eq!(lengths, [16, 1024, 1024, 512, 1]);
        let writable: Vec<bool> = chain
            .iter()
            .map(|descriptor| descriptor.2 & 2 != 0)
            .collect();
        assert_eq!(writable, [false, true, true, true, true]);
        assert_eq!(chain[1].0, 0x40_0000);
        assert_eq!(chain[3].0, 0x40_0800);
        let header_offset = (chain[0].0 - slots.address()) as usize;
        let mut header = [0u8; HEADER_SIZE];
        slots.read_bytes(header_offset, &mut header);
        assert_eq!(
            header,
            RequestHeader {
                request_type: RequestType::In,
                sector: 5
            }
            .to_bytes()
        );
        assert_eq!(chain[4].0, chain[0].0 + 16);

        let chain = device.chain(heads[1]);
        let writable: Vec<bool> = chain
            .iter()
            .map(|descriptor| descriptor.2 & 2 != 0)
            .collect();
        assert_eq!(writable, [false, false, true]);

        // Completed out of order; the write fails, the read succeeds.
        let status =
            |chain: &[(u64, u32, u16, u16)]| (chain[chain.len() - 1].0 - slots.address()) as usize;
        slots.write_u8(status(&device.chain(heads[1])), STATUS_IO_ERROR);
        device.push_used(u32::from(heads[1]), 1);
        slots.write_u8(status(&device.chain(heads[0])), STATUS_OK);
        device.push_used(u32::from(heads[0]), 2561);
        assert_eq!(
            blk.complete(),
            Some(Ok(Completed {
                id: write,
                result: Err(BlkError::IoError)
            }))
        );
        assert_eq!(
            blk.complete(),
            Some(Ok(Completed {
                id: read,
                result: Ok(2560)
            }))
        );
        assert_eq!(blk.complete(), None);
        assert_eq!(blk.in_flight(), 0);
    }

    #[test]
    fn device_replies_are_checked() {
        let (mut blk, mut device, slots) = setup(16, config());
        let status = |device: &DeviceView, head: u16| {
            let chain = device.chain(head);
            (chain[chain.len() - 1].0 - slots.address()) as usize
        };
        let short = blk.read(0, 0x40_0000, 512).expect("read");
        let unwritten = blk.get_id(0x41_0000).expect("get id");
        let unsupported = blk.flush().expect("flush");
        let bogus_status = blk.write(1, 0x42_0000, 512).expect("write");
        blk.publish();
        let heads = device.take_available();

        slots.write_u8(status(&device, heads[0]), STATUS_OK);
        device.push_used(u32::from(heads[0]), 100);
        device.push_used(u32::from(heads[1]), 21); // status left as it was
        slots.write_u8(status(&device, heads[2]), STATUS_UNSUPPORTED);
        device.push_used(u32::from(heads[2]), 1);
        device.push_used(999, 1);
        slots.write_u8(status(&device, heads[3]), 9);
        device.push_used(u32::from(heads[3]), 1);

        let short_length = DeviceFault::ShortLength {
            expected: 513,
            reported: 100,
        };
        let results: Vec<_> = core::iter::from_fn(|| blk.complete()).collect();
        assert_eq!(
            results,
            [
                Ok(Completed {
                    id: short,
                    result: Err(BlkError::BadDevice(short_length))
                }),
                Ok(Completed {
                    id: unwritten,
                    result: Err(BlkError::BadDevice(DeviceFault::Status(STATUS_UNWRITTEN)))
                }),
                Ok(Completed {
                    id: unsupported,
                    result: Err(BlkError::Unsupported)
                }),
                Err(BlkError::BadDevice(DeviceFault::Queue(
                    QueueError::BadDescriptor(999)
                ))),
                Ok(Completed {
                    id: bogus_status,
                    result: Err(BlkError::BadDevice(DeviceFault::Status(9)))
                }),
            ]
        );
        assert_eq!((blk.in_flight(), blk.queue().free_descriptors()), (0, 16));
    }
}
