//! The virtio-net device logic (virtio 1.2, section 5.1) on top of two [`SplitQueue`]s:
//! receive queue 0 and transmit queue 1. No mergeable receive buffers, no control queue,
//! no multiqueue, no segmentation offload; checksum offload where the device offers it.
//!
//! [`NetQueues`] owns one [`DmaRegion`] holding both virtqueues and a fixed 2048-byte
//! packet slot per descriptor of each queue. Every receive slot is posted when the queues
//! are made and re-posted as soon as its packet has been copied out (or found bad), so the
//! device never runs out of receive buffers while the driver keeps polling. A transmit
//! slot is taken per frame and freed when the device returns it.
//!
//! Every packet starts with the 12-byte `virtio_net_hdr` of the VERSION_1 layout (with
//! `num_buffers`), stripped on receive. Without checksum features (what QEMU's user
//! networking offers) it is written zeroed on transmit, frames go and come complete, and
//! the header the device writes back is ignored.
//!
//! Checksum offload (5.1.6.2, 5.1.6.4), negotiated only when offered, never required, and
//! recorded in [`NetConfig::checksum`]:
//! - `VIRTIO_NET_F_CSUM` (transmit): the stack leaves TCP and UDP checksums out. For a whole
//!   TCP or UDP segment over IPv4 that ends the frame, the driver stores the pseudo-header
//!   sum in the checksum field and sets `VIRTIO_NET_HDR_F_NEEDS_CSUM` with `csum_start` (the
//!   segment) and `csum_offset` (16 for TCP, 6 for UDP); the device completes it. A whole
//!   segment with bytes after it gets its checksum from the driver instead; anything else
//!   (ARP, ICMP, IPv4 fragments, malformed headers) goes as given, with flags 0.
//! - `VIRTIO_NET_F_GUEST_CSUM` (receive): the stack checks no TCP or UDP checksum, so the
//!   driver makes sure no bad one gets through. A partial checksum
//!   (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) is completed from `csum_start` to the end of the frame,
//!   its offsets checked first (a frame whose field lies outside is dropped and counted);
//!   `VIRTIO_NET_HDR_F_DATA_VALID` is the device's word for a whole segment; every other
//!   TCP or UDP frame is checked by the driver, and a bad one dropped and counted, as are
//!   TCP or UDP fragments (a fragment cannot be checked alone, and the stack does not
//!   reassemble) and malformed IPv4 (which the stack would drop too).
//!
//! QEMU's user networking (slirp) has no vnet header, so QEMU withdraws both features
//! there and the kernel's QEMU tests never take these paths; a tap or vhost-net backend
//! offers them. The host tests cover them against a fake device.
//!
//! Everything the device writes back (used id, used length) is checked before it is
//! believed; a bad entry is an error, and the queues keep working.
//! The transport stays outside: the caller programs the queue addresses and rings the
//! doorbell ([`NetQueues::kick`] with a [`Transport`], or
//! [`NetQueues::publish_and_needs_notify`]).

use core::fmt;

use net::ChecksumOffload;

use super::checksum::{self, BadPlacement, Contents};
use super::dma::{align_up, DmaRegion, PAGE_SIZE};
use super::queue::{QueueError, Segment, SplitQueue, MAX_QUEUE_SIZE};
use super::{Transport, FEATURE_VERSION_1};

/// VIRTIO_NET_F_CSUM: the device completes partial checksums of transmitted packets.
pub const FEATURE_CSUM: u64 = 1 << 0;
/// VIRTIO_NET_F_GUEST_CSUM: received packets may carry partial checksums, or checksums
/// the device has validated.
pub const FEATURE_GUEST_CSUM: u64 = 1 << 1;
/// VIRTIO_NET_F_MAC: the device has a MAC address in its configuration space.
pub const FEATURE_MAC: u64 = 1 << 5;
/// VIRTIO_NET_F_STATUS: the configuration space has a link status field.
pub const FEATURE_STATUS: u64 = 1 << 16;

/// VIRTIO_NET_HDR_F_NEEDS_CSUM in the header's `flags`: the checksum is partial, to be
/// completed from `csum_start`, stored `csum_offset` bytes further.
pub const FLAG_NEEDS_CHECKSUM: u8 = 1;
/// VIRTIO_NET_HDR_F_DATA_VALID in the header's `flags` (receive only): the device has
/// validated the packet's checksum.
pub const FLAG_DATA_VALID: u8 = 2;

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
    device_features
        & (FEATURE_VERSION_1 | FEATURE_MAC | FEATURE_STATUS | FEATURE_CSUM | FEATURE_GUEST_CSUM)
}

/// The device as its configuration space describes it, after feature negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// The device's MAC address; all zeros when `VIRTIO_NET_F_MAC` was not negotiated,
    /// and then the caller must choose one.
    pub mac: [u8; 6],
    /// The link is up (`VIRTIO_NET_S_LINK_UP`); always true without `VIRTIO_NET_F_STATUS`.
    pub link_up: bool,
    /// The checksum offloads negotiated: `transmit` is `VIRTIO_NET_F_CSUM`, `receive` is
    /// `VIRTIO_NET_F_GUEST_CSUM`. What [`NetQueues`] does with them is what the stack may
    /// leave to the device: it can be handed to the stack as it is.
    pub checksum: ChecksumOffload,
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
        let checksum = ChecksumOffload {
            transmit: negotiated & FEATURE_CSUM != 0,
            receive: negotiated & FEATURE_GUEST_CSUM != 0,
        };
        Ok(NetConfig {
            mac,
            link_up,
            checksum,
        })
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
    /// A received packet's partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) was to start
    /// or be stored outside the frame. The frame was dropped.
    ChecksumPlacement(BadPlacement),
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
    /// A received TCP or UDP frame the driver had to check (with
    /// `VIRTIO_NET_F_GUEST_CSUM`) had a wrong checksum, was a fragment or was malformed;
    /// it was dropped.
    BadChecksum,
    /// The device broke the protocol.
    BadDevice(NetFault),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::QueueFull => f.write_str("transmit queue full"),
            NetError::FrameTooLong(len) => write!(f, "{len}-byte frame longer than {MAX_FRAME}"),
            NetError::BufferTooSmall(len) => write!(f, "buffer too small for a {len}-byte frame"),
            NetError::BadChecksum => f.write_str("received frame failed its checksum check"),
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
    checksum_drops: ChecksumDrops,
}

/// Received frames dropped by the checksum offload (all zero without
/// `VIRTIO_NET_F_GUEST_CSUM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChecksumDrops {
    /// Frames that failed the driver's check ([`NetError::BadChecksum`]).
    pub bad_checksum: u64,
    /// Frames whose partial checksum lay outside them
    /// ([`NetFault::ChecksumPlacement`]).
    pub bad_placement: u64,
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
            checksum_drops: ChecksumDrops::default(),
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

    /// Returns the received frames dropped by the checksum offload so far.
    pub fn checksum_drops(&self) -> ChecksumDrops {
        self.checksum_drops
    }

    /// Asks the device for interrupts on received and transmitted packets, or not.
    pub fn set_interrupts(&mut self, enabled: bool) {
        self.receive.set_interrupts(enabled);
        self.transmit.set_interrupts(enabled);
    }

    /// Asks the device for an interrupt when it delivers a received frame, or not (the
    /// transmit queue never interrupts: a finished send wakes nobody).
    pub fn set_receive_interrupts(&mut self, enabled: bool) {
        self.receive.set_interrupts(enabled);
    }

    /// Returns true when a received frame waits to be taken.
    pub fn received_pending(&self) -> bool {
        self.receive.has_used()
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
        let notifies = u64::from(notify.receive) + u64::from(notify.transmit);
        if notifies > 0 {
            ::net::trace::add(::net::trace::Counter::DeviceNotifies, notifies);
        }
    }

    /// Copies the next received frame (header stripped) into `out` and returns its
    /// length; `None` if nothing has arrived. The buffer goes straight back to the device
    /// (published; call [`Self::kick`] to notify). Errors: a bad used entry from the
    /// device, or an `out` too small for the frame (the frame is dropped). A
    /// `BadDevice(Queue(BadUsedIndex))` repeats until the device is reset. With
    /// `VIRTIO_NET_F_GUEST_CSUM`, also a frame dropped by the checksum handling the module
    /// describes ([`NetError::BadChecksum`], `BadDevice(ChecksumPlacement(_))`).
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
            if self.config.checksum.receive {
                let mut header = [0u8; HEADER_SIZE];
                self.buffers.read_bytes(slot, &mut header);
                self.check_received(&header, &mut out[..frame])
                    .map(|()| frame)
            } else {
                Ok(frame)
            }
        };
        // The data is out (or worthless): give the buffer straight back.
        self.post_receive_buffer();
        self.receive_notify |= self.receive.publish();
        Some(result)
    }

    /// Queues `frame` (an Ethernet frame without FCS) for transmission. Without
    /// `VIRTIO_NET_F_CSUM` the frame must be complete and goes behind a zeroed header;
    /// with it, the TCP or UDP checksum of a whole IPv4 segment is filled in whatever
    /// `frame` holds there (see the module). The device sees it after [`Self::kick`].
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME {
            return Err(NetError::FrameTooLong(frame.len()));
        }
        let head = self.transmit.next_head().ok_or(NetError::QueueFull)?;
        let slot = self.transmit_slot(head);
        let (header, checksum) = if self.config.checksum.transmit {
            transmit_offload(frame)
        } else {
            ([0; HEADER_SIZE], None)
        };
        self.buffers.write_bytes(slot, &header);
        self.buffers.write_bytes(slot + HEADER_SIZE, frame);
        if let Some((field, value)) = checksum {
            self.buffers
                .write_bytes(slot + HEADER_SIZE + field, &value.to_be_bytes());
        }
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

    /// Completes or checks the checksum of a received `frame` as its `header` and the
    /// module's rules say, counting what is dropped. Only with `VIRTIO_NET_F_GUEST_CSUM`.
    fn check_received(
        &mut self,
        header: &[u8; HEADER_SIZE],
        frame: &mut [u8],
    ) -> Result<(), NetError> {
        let flags = header[0];
        if flags & FLAG_NEEDS_CHECKSUM != 0 {
            let start = u16::from_le_bytes([header[6], header[7]]);
            let offset = u16::from_le_bytes([header[8], header[9]]);
            if let Err(placement) = checksum::complete_partial(frame, start, offset) {
                self.checksum_drops.bad_placement += 1;
                return Err(NetError::BadDevice(NetFault::ChecksumPlacement(placement)));
            }
        }
        let trusted = flags & (FLAG_NEEDS_CHECKSUM | FLAG_DATA_VALID) != 0;
        let good = match checksum::classify(frame) {
            Contents::Other => true,
            Contents::Segment(_) if trusted => true,
            Contents::Segment(segment) => checksum::verify(frame, &segment),
            Contents::Fragment | Contents::Malformed => false,
        };
        if good {
            Ok(())
        } else {
            self.checksum_drops.bad_checksum += 1;
            Err(NetError::BadChecksum)
        }
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

/// Returns the header to send `frame` with when the device takes partial checksums, and
/// the checksum field value to store over the frame's bytes (offset in the frame, value),
/// as the module describes.
fn transmit_offload(frame: &[u8]) -> ([u8; HEADER_SIZE], Option<(usize, u16)>) {
    let mut header = [0u8; HEADER_SIZE];
    let Contents::Segment(segment) = checksum::classify(frame) else {
        return (header, None);
    };
    let field = segment.checksum_field();
    // The device sums to the end of the packet: only a segment that ends the frame can be
    // left to it. `start` fits a u16, as every offset within a 1514-byte frame does.
    if let (true, Ok(start)) = (segment.end == frame.len(), u16::try_from(segment.start)) {
        let offset = segment.protocol.checksum_offset() as u16;
        header[0] = FLAG_NEEDS_CHECKSUM;
        header[6..8].copy_from_slice(&start.to_le_bytes());
        header[8..10].copy_from_slice(&offset.to_le_bytes());
        return (header, Some((field, segment.pseudo_header)));
    }
    (
        header,
        checksum::compute(frame, &segment).map(|value| (field, value)),
    )
}
