//! The virtio-net device logic (virtio 1.2, section 5.1) on top of two [`SplitQueue`]s:
//! receive queue 0 and transmit queue 1. No mergeable receive buffers, no control queue,
//! no multiqueue, no offloads.
//!
//! [`NetQueues`] owns one [`DmaRegion`] holding both virtqueues and a fixed 2048-byte
//! packet slot per descriptor of each queue. Every receive slot is posted when the queues
//! are made and re-posted as soon as its packet has been copied out (or found bad), so the
//! device never runs out of receive buffers while the driver keeps polling. A transmit
//! slot is taken per frame and freed when the device returns it.
//!
//! Every packet starts with the 12-byte `virtio_net_hdr` of the VERSION_1 layout (with
//! `num_buffers`). The driver writes it zeroed on transmit (no offloads: the frame is
//! complete and checksummed) and strips it on receive. `VIRTIO_NET_F_CSUM` is not
//! negotiated: the driver never sends partially checksummed packets, so it has no use for
//! it, and `VIRTIO_NET_F_GUEST_CSUM` is off too, so received packets are complete.
//!
//! Everything the device writes back (used id, used length) is checked before it is
//! believed; a bad entry is an error, and the queues keep working.
//! The transport stays outside: the caller programs the queue addresses and rings the
//! doorbell ([`NetQueues::kick`] with a [`Transport`], or
//! [`NetQueues::publish_and_needs_notify`]).

use core::fmt;

use super::dma::{align_up, DmaRegion, PAGE_SIZE};
use super::queue::{QueueError, Segment, SplitQueue, MAX_QUEUE_SIZE};
use super::{Transport, FEATURE_VERSION_1};

/// VIRTIO_NET_F_CSUM: the driver may hand over packets with partial checksums. Not
/// accepted by [`driver_features`]: this driver always sends complete frames.
pub const FEATURE_CSUM: u64 = 1 << 0;
/// VIRTIO_NET_F_MAC: the device has a MAC address in its configuration space.
pub const FEATURE_MAC: u64 = 1 << 5;
/// VIRTIO_NET_F_STATUS: the configuration space has a link status field.
pub const FEATURE_STATUS: u64 = 1 << 16;

/// Offset of `mac` (6 bytes) in the device configuration space.
pub const CONFIG_MAC: usize = 0;
/// Offset of `status` (u16) in the device configuration space.
pub const CONFIG_STATUS: usize = 6;
/// VIRTIO_NET_S_LINK_UP in the `status` field.
pub const STATUS_LINK_UP: u16 = 1;

/// Bytes of `virtio_net_hdr` with VERSION_1: flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset, num_buffers.
pub const HEADER_SIZE: usize = 12;
/// The longest Ethernet frame accepted for transmission, without the FCS.
pub const MAX_FRAME: usize = 1514;
/// Bytes of each packet slot: header plus frame, comfortably above the 1526 bytes
/// (1514 + header) the specification asks receive buffers to hold without mergeable
/// buffers, and a power of two so slots never straddle pages.
pub const BUFFER_SIZE: usize = 2048;

/// Index of the receive queue on the device.
pub const RECEIVE_QUEUE: u16 = 0;
/// Index of the transmit queue on the device.
pub const TRANSMIT_QUEUE: u16 = 1;

/// Returns the features this driver accepts out of the ones the device offers.
pub fn driver_features(device_features: u64) -> u64 {
    device_features & (FEATURE_VERSION_1 | FEATURE_MAC | FEATURE_STATUS)
}

/// The device as its configuration space describes it, after feature negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// The device's MAC address; all zeros when `VIRTIO_NET_F_MAC` was not negotiated,
    /// and then the caller must choose one.
    pub mac: [u8; 6],
    /// The link is up (`VIRTIO_NET_S_LINK_UP`); always true without `VIRTIO_NET_F_STATUS`.
    pub link_up: bool,
}

impl NetConfig {
    /// Returns the configuration read from the device's configuration space `config`
    /// (from offset 0), reading only fields whose feature was negotiated.
    pub fn from_config_space(negotiated: u64, config: &[u8]) -> Result<NetConfig, NetError> {
        let short = || NetError::BadDevice(NetFault::ShortConfig(config.len()));
        let mut mac = [0u8; 6];
        if negotiated & FEATURE_MAC != 0 {
            let bytes = config.get(CONFIG_MAC..CONFIG_MAC + 6).ok_or_else(short)?;
            mac.copy_from_slice(bytes);
        }
        let link_up = if negotiated & FEATURE_STATUS != 0 {
            let bytes = config
                .get(CONFIG_STATUS..CONFIG_STATUS + 2)
                .ok_or_else(short)?;
            u16::from_le_bytes([bytes[0], bytes[1]]) & STATUS_LINK_UP != 0
        } else {
            true
        };
        Ok(NetConfig { mac, link_up })
    }
}

/// What the device did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFault {
    /// The used ring held something that cannot be ours. `BadUsedIndex` means the device
    /// is broken and must be reset; other entries are skipped.
    Queue(QueueError),
    /// A receive used length shorter than the header or longer than the buffer. The
    /// buffer was re-posted and the packet dropped.
    UsedLength(u32),
    /// The configuration space was shorter than the negotiated features need.
    ShortConfig(usize),
}

/// Why a network operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// No transmit slot is free; reclaim transmitted frames and retry.
    QueueFull,
    /// A frame longer than [`MAX_FRAME`] bytes (the length given); refused.
    FrameTooLong(usize),
    /// The caller's buffer cannot hold the received frame (its length given); the frame
    /// was dropped and its buffer re-posted. A buffer of `BUFFER_SIZE - HEADER_SIZE`
    /// bytes always suffices.
    BufferTooSmall(usize),
    /// The device broke the protocol.
    BadDevice(NetFault),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::QueueFull => f.write_str("transmit queue full"),
            NetError::FrameTooLong(len) => write!(f, "{len}-byte frame longer than {MAX_FRAME}"),
            NetError::BufferTooSmall(len) => write!(f, "buffer too small for a {len}-byte frame"),
            NetError::BadDevice(fault) => write!(f, "network device misbehaved: {fault:?}"),
        }
    }
}

/// Which queues the device should be told about (after [`NetQueues::publish_and_needs_notify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    /// Notify queue [`RECEIVE_QUEUE`].
    pub receive: bool,
    /// Notify queue [`TRANSMIT_QUEUE`].
    pub transmit: bool,
}

/// The receive and transmit queues of one virtio-net device, with their packet buffers.
#[derive(Debug)]
pub struct NetQueues {
    receive: SplitQueue,
    transmit: SplitQueue,
    /// Receive slots (one per descriptor, indexed by head), then transmit slots.
    buffers: DmaRegion,
    size: u16,
    config: NetConfig,
    /// Receive buffers were re-posted and published, and the device asked to be told, but
    /// nobody has notified it yet.
    receive_notify: bool,
    transmit_faults: u64,
}

impl NetQueues {
    /// Returns the bytes one virtqueue's rings take, rounded up to whole pages.
    const fn rings_size(queue_size: u16) -> usize {
        align_up(SplitQueue::memory_size(queue_size), PAGE_SIZE)
    }

    /// Returns the bytes of DMA memory queues of `queue_size` need: the receive rings, the
    /// transmit rings, then `queue_size` receive and `queue_size` transmit slots of
    /// [`BUFFER_SIZE`] bytes.
    pub const fn memory_size(queue_size: u16) -> usize {
        2 * Self::rings_size(queue_size)
            + align_up(2 * BUFFER_SIZE * queue_size as usize, PAGE_SIZE)
    }

    /// Returns queues of `queue_size` descriptors each (a power of two up to 256) in
    /// `region` (at least [`Self::memory_size`] bytes, zeroed here), with every receive
    /// buffer posted and published. The caller programs the queue addresses and, once the
    /// device is live, calls [`Self::kick`].
    pub fn new(
        region: DmaRegion,
        queue_size: u16,
        config: NetConfig,
    ) -> Result<NetQueues, QueueError> {
        if queue_size == 0 || !queue_size.is_power_of_two() || queue_size > MAX_QUEUE_SIZE {
            return Err(QueueError::InvalidSize(queue_size));
        }
        let needed = Self::memory_size(queue_size);
        if region.len() < needed {
            return Err(QueueError::RegionTooSmall {
                needed,
                available: region.len(),
            });
        }
        let rings = Self::rings_size(queue_size);
        let (receive_rings, rest) = region.split_at(rings);
        let (transmit_rings, buffers) = rest.split_at(rings);
        let mut queues = NetQueues {
            receive: SplitQueue::new(receive_rings, queue_size)?,
            transmit: SplitQueue::new(transmit_rings, queue_size)?,
            buffers,
            size: queue_size,
            config,
            receive_notify: false,
            transmit_faults: 0,
        };
        for _ in 0..queue_size {
            queues.post_receive_buffer();
        }
        queues.receive_notify = queues.receive.publish();
        Ok(queues)
    }

    /// Returns the receive virtqueue, for its addresses and size (queue [`RECEIVE_QUEUE`]).
    pub fn receive_queue(&self) -> &SplitQueue {
        &self.receive
    }

    /// Returns the transmit virtqueue (queue [`TRANSMIT_QUEUE`]).
    pub fn transmit_queue(&self) -> &SplitQueue {
        &self.transmit
    }

    /// Returns the device's configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Returns the number of receive buffers the device holds or has filled and we have
    /// not yet taken: the queue size whenever no call is under way.
    pub fn receive_buffers_posted(&self) -> usize {
        usize::from(self.receive.in_flight())
    }

    /// Returns the number of frames handed to the device and not yet reclaimed.
    pub fn transmits_in_flight(&self) -> usize {
        usize::from(self.transmit.in_flight())
    }

    /// Returns the number of bad transmit used entries [`Self::reclaim_transmitted`] has
    /// skipped.
    pub fn transmit_faults(&self) -> u64 {
        self.transmit_faults
    }

    /// Asks the device for interrupts on received and transmitted packets, or not.
    pub fn set_interrupts(&mut self, enabled: bool) {
        self.receive.set_interrupts(enabled);
        self.transmit.set_interrupts(enabled);
    }

    /// Makes transmitted frames (and re-posted receive buffers) visible to the device.
    /// Returns which queues the caller must notify.
    pub fn publish_and_needs_notify(&mut self) -> Notify {
        let receive = self.receive.publish() | core::mem::take(&mut self.receive_notify);
        let transmit = self.transmit.publish();
        Notify { receive, transmit }
    }

    /// Publishes both queues and notifies the device through `transport` of each one that
    /// wants to be told.
    pub fn kick(&mut self, transport: &mut impl Transport) {
        let notify = self.publish_and_needs_notify();
        if notify.receive {
            transport.notify(RECEIVE_QUEUE);
        }
        if notify.transmit {
            transport.notify(TRANSMIT_QUEUE);
        }
    }

    /// Copies the next received frame (header stripped) into `out` and returns its
    /// length; `None` if nothing has arrived. The buffer goes straight back to the device
    /// (published; call [`Self::kick`] to notify). Errors: a bad used entry from the
    /// device, or an `out` too small for the frame (the frame is dropped). A
    /// `BadDevice(Queue(BadUsedIndex))` repeats until the device is reset.
    pub fn receive_into(&mut self, out: &mut [u8]) -> Option<Result<usize, NetError>> {
        let used = match self.receive.pop_used()? {
            Ok(used) => used,
            Err(error) => return Some(Err(NetError::BadDevice(NetFault::Queue(error)))),
        };
        let slot = Self::receive_slot(used.token.index());
        let len = used.len as usize;
        let result = if !(HEADER_SIZE..=BUFFER_SIZE).contains(&len) {
            Err(NetError::BadDevice(NetFault::UsedLength(used.len)))
        } else if len - HEADER_SIZE > out.len() {
            Err(NetError::BufferTooSmall(len - HEADER_SIZE))
        } else {
            let frame = len - HEADER_SIZE;
            self.buffers
                .read_bytes(slot + HEADER_SIZE, &mut out[..frame]);
            Ok(frame)
        };
        // The data is out (or worthless): give the buffer straight back.
        self.post_receive_buffer();
        self.receive_notify |= self.receive.publish();
        Some(result)
    }

    /// Queues `frame` (a complete Ethernet frame without FCS) for transmission behind a
    /// zeroed header. The device sees it after [`Self::kick`].
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME {
            return Err(NetError::FrameTooLong(frame.len()));
        }
        let head = self.transmit.next_head().ok_or(NetError::QueueFull)?;
        let slot = self.transmit_slot(head);
        self.buffers.zero(slot, HEADER_SIZE);
        self.buffers.write_bytes(slot + HEADER_SIZE, frame);
        let segment = Segment {
            address: self.buffers.address() + slot as u64,
            len: (HEADER_SIZE + frame.len()) as u32,
            device_writes: false,
        };
        let token = self.transmit.add(&[segment]).map_err(|error| match error {
            QueueError::Full => NetError::QueueFull,
            other => NetError::BadDevice(NetFault::Queue(other)),
        })?;
        debug_assert_eq!(token.index(), head);
        Ok(())
    }

    /// Takes the next transmit used entry: `None` if there is none, `Some(Ok(()))` when a
    /// frame's slot was freed, or the device's bad entry (skipped).
    pub fn pop_transmitted(&mut self) -> Option<Result<(), NetError>> {
        match self.transmit.pop_used()? {
            // The device writes nothing into a transmit chain, so the length is ignored
            // (devices disagree on what they report there).
            Ok(_) => Some(Ok(())),
            Err(error) => Some(Err(NetError::BadDevice(NetFault::Queue(error)))),
        }
    }

    /// Frees the slots of every frame the device has finished sending and returns how
    /// many. Bad entries are skipped and counted in [`Self::transmit_faults`]; a broken
    /// used index stops the reclaim (the device needs a reset).
    pub fn reclaim_transmitted(&mut self) -> usize {
        let mut freed = 0;
        while let Some(result) = self.pop_transmitted() {
            match result {
                Ok(()) => freed += 1,
                Err(NetError::BadDevice(NetFault::Queue(QueueError::BadUsedIndex(_)))) => {
                    self.transmit_faults += 1;
                    break;
                }
                Err(_) => self.transmit_faults += 1,
            }
        }
        freed
    }

    const fn receive_slot(head: u16) -> usize {
        BUFFER_SIZE * head as usize
    }

    fn transmit_slot(&self, head: u16) -> usize {
        BUFFER_SIZE * (usize::from(self.size) + usize::from(head))
    }

    /// Adds the receive slot of the next free descriptor, as one device-writable buffer.
    /// There is always a free descriptor here: one is freed before each call but those
    /// in `new`, which fill an empty queue.
    fn post_receive_buffer(&mut self) {
        let Some(head) = self.receive.next_head() else {
            return;
        };
        let segment = Segment {
            address: self.buffers.address() + Self::receive_slot(head) as u64,
            len: BUFFER_SIZE as u32,
            device_writes: true,
        };
        let added = self.receive.add(&[segment]);
        debug_assert!(added.is_ok_and(|token| token.index() == head));
    }
}
