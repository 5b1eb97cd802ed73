//! The driver's side of a split virtqueue (virtio 1.2, section 2.7).
//!
//! The descriptor table, available ring and used ring live in one [`DmaRegion`]; what the
//! driver must be able to trust (the free list, which heads are in flight and how long
//! their chains are) lives in ordinary memory the device cannot reach. So a device that
//! writes a bogus used entry gets an error back, never a corrupted free list, and a chain
//! loop written into the descriptor table cannot hang the driver: descriptors are never
//! read back from shared memory.
//!
//! Ordering: descriptors and ring entries are written first, then a `Release` fence, then
//! the available index; the used index is read, then an `Acquire` fence, then the used
//! entry and whatever the device wrote into the buffers. A `SeqCst` fence separates
//! publishing from reading the device's "no notify" flag, so a notification is not lost.
//! `VIRTIO_F_EVENT_IDX` is not used.

use core::fmt;
use core::sync::atomic::{fence, Ordering};

use super::dma::{align_up, DmaRegion, PAGE_SIZE};

/// The largest queue this driver sets up: enough for deep I/O, small enough to keep the
/// bookkeeping in fixed arrays (no allocation).
pub const MAX_QUEUE_SIZE: u16 = 256;

const DESCRIPTOR_SIZE: usize = 16;
/// VIRTQ_DESC_F_NEXT: the chain continues in `next`.
const DESCRIPTOR_NEXT: u16 = 1;
/// VIRTQ_DESC_F_WRITE: the device writes this buffer (otherwise it reads it).
const DESCRIPTOR_WRITE: u16 = 2;
/// VIRTQ_AVAIL_F_NO_INTERRUPT: the driver polls and wants no interrupts.
const AVAILABLE_NO_INTERRUPT: u16 = 1;
/// VIRTQ_USED_F_NO_NOTIFY: the device polls and wants no notifications.
const USED_NO_NOTIFY: u16 = 1;

/// One buffer of a descriptor chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Physical address of the buffer.
    pub address: u64,
    /// Length in bytes.
    pub len: u32,
    /// True if the device writes the buffer, false if it reads it.
    pub device_writes: bool,
}

/// The head descriptor of a chain in flight: names a request until its used entry comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u16);

impl Token {
    /// Returns the head descriptor's index, below the queue size.
    pub fn index(self) -> u16 {
        self.0
    }
}

/// A chain the device has finished with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// The chain, as returned by [`SplitQueue::add`].
    pub token: Token,
    /// Bytes the device says it wrote into the chain's device-writable buffers.
    pub len: u32,
}

/// What went wrong with a queue, on our side or the device's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The size is not a power of two between the minimum and [`MAX_QUEUE_SIZE`].
    InvalidSize(u16),
    /// The region is smaller than [`SplitQueue::memory_size`].
    RegionTooSmall {
        /// Bytes the layout needs.
        needed: usize,
        /// Bytes the region has.
        available: usize,
    },
    /// A chain with no segments.
    EmptyChain,
    /// A device-readable segment after a device-writable one (the spec forbids it).
    ReadableAfterWritable,
    /// Not enough free descriptors for the chain; retry after completions.
    Full,
    /// The device returned a used id that is out of range or not the head of a chain in
    /// flight. The entry is skipped; the queue stays usable.
    BadDescriptor(u32),
    /// The device's used index ran more than a queue size ahead of ours: the device is
    /// broken and must be reset.
    BadUsedIndex(u16),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::InvalidSize(size) => write!(f, "invalid queue size {size}"),
            QueueError::RegionTooSmall { needed, available } => {
                write!(f, "queue needs {needed} bytes, region has {available}")
            }
            QueueError::EmptyChain => f.write_str("empty descriptor chain"),
            QueueError::ReadableAfterWritable => {
                f.write_str("device-readable segment after a device-writable one")
            }
            QueueError::Full => f.write_str("virtqueue full"),
            QueueError::BadDescriptor(id) => write!(f, "device returned bad used id {id}"),
            QueueError::BadUsedIndex(index) => write!(f, "device used index {index} out of range"),
        }
    }
}

/// A split virtqueue of a power-of-two size, driven from one core.
#[derive(Debug)]
pub struct SplitQueue {
    region: DmaRegion,
    size: u16,
    available_offset: usize,
    used_offset: usize,
    /// First free descriptor; meaningful only while `free_count > 0`.
    free_head: u16,
    free_count: u16,
    /// Our copy of every descriptor's `next`: free-list links for free descriptors, chain
    /// links for descriptors in flight. Never read back from the device's memory.
    next: [u16; MAX_QUEUE_SIZE as usize],
    /// For the head of a chain in flight, its length; zero for every other descriptor.
    chain_len: [u16; MAX_QUEUE_SIZE as usize],
    /// Chains added and not yet returned.
    chains: u16,
    /// Next available-ring position to fill (free-running).
    available_index: u16,
    /// Available index last shown to the device.
    published_index: u16,
    /// Next used-ring position to consume (free-running).
    last_used_index: u16,
}

impl SplitQueue {
    /// Returns the offset of the available ring from the start of the region.
    const fn available_offset(size: u16) -> usize {
        DESCRIPTOR_SIZE * size as usize
    }

    /// Returns the offset of the used ring: the next page after the available ring, which
    /// is the legacy layout (so a legacy transport could use it too) and keeps the
    /// device-written ring off the driver's cache lines.
    const fn used_offset(size: u16) -> usize {
        // flags, idx, ring[size], used_event
        align_up(
            Self::available_offset(size) + 6 + 2 * size as usize,
            PAGE_SIZE,
        )
    }

    /// Returns the bytes of DMA memory a queue of `size` needs.
    pub const fn memory_size(size: u16) -> usize {
        // flags, idx, ring[size] of (id, len), avail_event
        Self::used_offset(size) + 6 + 8 * size as usize
    }

    /// Returns a queue of `size` descriptors laid out in `region`, which it zeroes.
    pub fn new(region: DmaRegion, size: u16) -> Result<SplitQueue, QueueError> {
        if size == 0 || !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return Err(QueueError::InvalidSize(size));
        }
        let needed = Self::memory_size(size);
        if region.len() < needed {
            return Err(QueueError::RegionTooSmall {
                needed,
                available: region.len(),
            });
        }
        region.zero(0, needed);
        let mut next = [0u16; MAX_QUEUE_SIZE as usize];
        for (index, link) in next.iter_mut().enumerate() {
            *link = (index + 1) as u16;
        }
        Ok(SplitQueue {
            region,
            size,
            available_offset: Self::available_offset(size),
            used_offset: Self::used_offset(size),
            free_head: 0,
            free_count: size,
            next,
            chain_len: [0; MAX_QUEUE_SIZE as usize],
            chains: 0,
            available_index: 0,
            published_index: 0,
            last_used_index: 0,
        })
    }

    /// Returns the physical address of the descriptor table, for the transport.
    pub fn descriptor_table_address(&self) -> u64 {
        self.region.address()
    }

    /// Returns the physical address of the available ring (the driver area).
    pub fn available_address(&self) -> u64 {
        self.region.address() + self.available_offset as u64
    }

    /// Returns the physical address of the used ring (the device area).
    pub fn used_address(&self) -> u64 {
        self.region.address() + self.used_offset as u64
    }

    /// Returns the queue size: the number of descriptors.
    pub fn capacity(&self) -> u16 {
        self.size
    }

    /// Returns the number of free descriptors.
    pub fn free_descriptors(&self) -> u16 {
        self.free_count
    }

    /// Returns the number of chains added and not yet returned by [`Self::pop_used`].
    pub fn in_flight(&self) -> u16 {
        self.chains
    }

    /// Returns the head the next [`Self::add`] will use, if a descriptor is free, so a
    /// caller can place per-request data by head before adding.
    pub fn next_head(&self) -> Option<u16> {
        (self.free_count > 0).then_some(self.free_head)
    }

    /// Adds a chain of `segments` (device-readable ones first) to the available ring.
    /// The device sees it after [`Self::publish`].
    pub fn add(&mut self, segments: &[Segment]) -> Result<Token, QueueError> {
        self.add_with(segments.len(), |index| segments[index])
    }

    /// Adds a chain of `count` segments produced by `segment(index)`, so callers can build
    /// long chains without an array.
    pub(crate) fn add_with(
        &mut self,
        count: usize,
        segment: impl Fn(usize) -> Segment,
    ) -> Result<Token, QueueError> {
        if count == 0 {
            return Err(QueueError::EmptyChain);
        }
        if (1..count).any(|index| segment(index - 1).device_writes && !segment(index).device_writes)
        {
            return Err(QueueError::ReadableAfterWritable);
        }
        if count > usize::from(self.free_count) {
            return Err(QueueError::Full);
        }
        let head = self.free_head;
        let mut descriptor = head;
        for index in 0..count {
            let part = segment(index);
            let last = index + 1 == count;
            let mut flags = if part.device_writes {
                DESCRIPTOR_WRITE
            } else {
                0
            };
            let next = self.next[usize::from(descriptor)];
            if !last {
                flags |= DESCRIPTOR_NEXT;
            }
            let offset = DESCRIPTOR_SIZE * usize::from(descriptor);
            self.region.write_u64(offset, part.address);
            self.region.write_u32(offset + 8, part.len);
            self.region.write_u16(offset + 12, flags);
            self.region
                .write_u16(offset + 14, if last { 0 } else { next });
            if !last {
                descriptor = next;
            }
        }
        // The tail's link is where the free list continues.
        self.free_head = self.next[usize::from(descriptor)];
        self.free_count -= count as u16;
        self.chain_len[usize::from(head)] = count as u16;
        self.chains += 1;
        let slot = usize::from(self.available_index % self.size);
        self.region
            .write_u16(self.available_offset + 4 + 2 * slot, head);
        self.available_index = self.available_index.wrapping_add(1);
        Ok(Token(head))
    }

    /// Shows the device every chain added since the last call. Returns true if the device
    /// should be notified (something was published and it did not ask to be left alone).
    pub fn publish(&mut self) -> bool {
        if self.available_index == self.published_index {
            return false;
        }
        // Descriptors and ring entries before the index that makes them visible.
        fence(Ordering::Release);
        self.region
            .write_u16(self.available_offset + 2, self.available_index);
        self.published_index = self.available_index;
        self.needs_notify()
    }

    /// Returns true unless the device has set VIRTQ_USED_F_NO_NOTIFY.
    pub fn needs_notify(&self) -> bool {
        // Our index store before the flag load: otherwise the device could stop polling
        // after we read "no notify" but before it saw the new index.
        fence(Ordering::SeqCst);
        self.region.read_u16(self.used_offset) & USED_NO_NOTIFY == 0
    }

    /// Asks the device for interrupts on completion, or not (a polling driver). The device
    /// may ignore the request.
    pub fn set_interrupts(&mut self, enabled: bool) {
        let flags = if enabled { 0 } else { AVAILABLE_NO_INTERRUPT };
        self.region.write_u16(self.available_offset, flags);
    }

    /// Returns the next chain the device has finished with, `None` if there is none yet, or
    /// an error if the device wrote a used entry that cannot be ours.
    pub fn pop_used(&mut self) -> Option<Result<Used, QueueError>> {
        let used_index = self.region.read_u16(self.used_offset + 2);
        if used_index == self.last_used_index {
            return None;
        }
        // The index before the entry and the buffers it covers.
        fence(Ordering::Acquire);
        if used_index.wrapping_sub(self.last_used_index) > self.size {
            return Some(Err(QueueError::BadUsedIndex(used_index)));
        }
        let slot = usize::from(self.last_used_index % self.size);
        let entry = self.used_offset + 4 + 8 * slot;
        let id = self.region.read_u32(entry);
        let len = self.region.read_u32(entry + 4);
        self.last_used_index = self.last_used_index.wrapping_add(1);

        if id >= u32::from(self.size) {
            return Some(Err(QueueError::BadDescriptor(id)));
        }
        let head = id as u16;
        let count = self.chain_len[usize::from(head)];
        if count == 0 {
            return Some(Err(QueueError::BadDescriptor(id)));
        }
        self.chain_len[usize::from(head)] = 0;
        let mut tail = head;
        for _ in 1..count {
            tail = self.next[usize::from(tail)];
        }
        self.next[usize::from(tail)] = self.free_head;
        self.free_head = head;
        self.free_count += count;
        self.chains -= 1;
        Some(Ok(Used {
            token: Token(head),
            len,
        }))
    }

    /// Returns true if the free list holds exactly the descriptors not in flight, each
    /// once: the invariant that a device's bogus entries must never break.
    #[cfg(test)]
    pub(crate) fn free_list_is_sound(&self) -> bool {
        let mut seen = [false; MAX_QUEUE_SIZE as usize];
        let mut in_chains = 0usize;
        for head in 0..self.size {
            let count = self.chain_len[usize::from(head)];
            let mut descriptor = head;
            for step in 0..count {
                if step > 0 {
                    descriptor = self.next[usize::from(descriptor)];
                }
                if descriptor >= self.size || seen[usize::from(descriptor)] {
                    return false;
                }
                seen[usize::from(descriptor)] = true;
                in_chains += 1;
            }
        }
        let mut descriptor = self.free_head;
        for _ in 0..self.free_count {
            if descriptor >= self.size || seen[usize::from(descriptor)] {
                return false;
            }
            seen[usize::from(descriptor)] = true;
            descriptor = self.next[usize::from(descriptor)];
        }
        in_chains + usize::from(self.free_count) == usize::from(self.size)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;

    use super::*;
    use crate::virtio::dma::host_regions;
    use std::vec::Vec;

    /// The device's view of a queue, driven by hand inside the test thread.
    pub(crate) struct DeviceView {
        pub(crate) memory: DmaRegion,
        pub(crate) size: u16,
        pub(crate) available: usize,
        pub(crate) used: usize,
        pub(crate) seen_available: u16,
        pub(crate) used_index: u16,
    }

    impl DeviceView {
        pub(crate) fn new(memory: DmaRegion, queue: &SplitQueue) -> DeviceView {
            let base = memory.address();
            assert_eq!(queue.descriptor_table_address(), base);
            DeviceView {
                available: (queue.available_address() - base) as usize,
                used: (queue.used_address() - base) as usize,
                memory,
                size: queue.capacity(),
                seen_available: 0,
                used_index: 0,
            }
        }

        /// Returns the heads published since the last call.
        pub(crate) fn take_available(&mut self) -> Vec<u16> {
            let index = self.memory.read_u16(self.available + 2);
            fence(Ordering::Acquire);
            let mut heads = Vec::new();
            while self.seen_available != index {
                let slot = usize::from(self.seen_available % self.size);
                heads.push(self.memory.read_u16(self.available + 4 + 2 * slot));
                self.seen_available = self.seen_available.wrapping_add(1);
            }
            heads
        }

        /// Returns (address, len, flags, next) of a descriptor.
        pub(crate) fn descriptor(&self, index: u16) -> (u64, u32, u16, u16) {
            let offset = DESCRIPTOR_SIZE * usize::from(index);
            (
                self.memory.read_u64(offset),
                self.memory.read_u32(offset + 8),
                self.memory.read_u16(offset + 12),
                self.memory.read_u16(offset + 14),
            )
        }

        /// Returns the descriptors of the chain at `head`, following NEXT flags.
        pub(crate) fn chain(&self, head: u16) -> Vec<(u64, u32, u16, u16)> {
            let mut chain = Vec::new();
            let mut index = head;
            loop {
                let descriptor = self.descriptor(index);
                chain.push(descriptor);
                assert!(chain.len() <= usize::from(self.size), "descriptor loop");
                if descriptor.2 & DESCRIPTOR_NEXT == 0 {
                    return chain;
                }
                index = descriptor.3;
            }
        }

        /// Writes one used entry and publishes it.
        pub(crate) fn push_used(&mut self, id: u32, len: u32) {
            let slot = usize::from(self.used_index % self.size);
            self.memory.write_u32(self.used + 4 + 8 * slot, id);
            self.memory.write_u32(self.used + 8 + 8 * slot, len);
            self.used_index = self.used_index.wrapping_add(1);
            fence(Ordering::Release);
            self.memory.write_u16(self.used + 2, self.used_index);
        }
    }

    fn queue(size: u16) -> (SplitQueue, DeviceView) {
        let (driver, device) = host_regions(SplitQueue::memory_size(size));
        let queue = SplitQueue::new(driver, size).expect("queue");
        let view = DeviceView::new(device, &queue);
        (queue, view)
    }

    fn segment(address: u64, len: u32, device_writes: bool) -> Segment {
        Segment {
            address,
            len,
            device_writes,
        }
    }

    #[test]
    fn layout_follows_the_spec_alignment() {
        for shift in 0..=8 {
            let size = 1u16 << shift;
            let (queue, _) = queue(size);
            let base = queue.descriptor_table_address();
            assert_eq!(base % 16, 0);
            assert_eq!(queue.available_address() - base, 16 * u64::from(size));
            assert_eq!(queue.used_address() % PAGE_SIZE as u64, 0);
            assert!(queue.used_address() >= queue.available_address() + 6 + 2 * u64::from(size));
            assert_eq!(
                SplitQueue::memory_size(size) as u64,
                queue.used_address() - base + 6 + 8 * u64::from(size)
            );
        }
        assert_eq!(SplitQueue::memory_size(256), 2 * PAGE_SIZE + 6 + 8 * 256);
    }

    #[test]
    fn rejects_bad_sizes_and_small_regions() {
        for size in [0, 3, 12, 512] {
            let (region, _) = host_regions(PAGE_SIZE * 8);
            assert_eq!(
                SplitQueue::new(region, size).err(),
                Some(QueueError::InvalidSize(size))
            );
        }
        let (region, _) = host_regions(PAGE_SIZE);
        assert!(matches!(
            SplitQueue::new(region, 256),
            Err(QueueError::RegionTooSmall {
                available: PAGE_SIZE,
                ..
            })
        ));
    }

    #[test]
    fn add_writes_a_linked_chain_visible_only_after_publish() {
        let (mut queue, mut device) = queue(8);
        let token = queue
            .add(&[
                segment(0x1000, 16, false),
                segment(0x2000, 512, true),
                segment(0x3000, 1, true),
            ])
            .expect("add");
        assert_eq!(queue.in_flight(), 1);
        assert_eq!(queue.free_descriptors(), 5);
        assert!(device.take_available().is_empty(), "visible before publish");
        assert!(queue.publish());
        assert!(!queue.publish(), "nothing new to publish");
        assert_eq!(device.take_available(), [token.index()]);
        let chain = device.chain(token.index());
        assert_eq!(chain.len(), 3);
        assert_eq!(
            (chain[0].0, chain[0].1, chain[0].2),
            (0x1000, 16, DESCRIPTOR_NEXT)
        );
        assert_eq!(
            (chain[1].0, chain[1].1, chain[1].2),
            (0x2000, 512, DESCRIPTOR_NEXT | DESCRIPTOR_WRITE)
        );
        assert_eq!(
            (chain[2].0, chain[2].1, chain[2].2),
            (0x3000, 1, DESCRIPTOR_WRITE)
        );
        assert!(queue.pop_used().is_none());
        device.push_used(u32::from(token.index()), 513);
        assert_eq!(queue.pop_used(), Some(Ok(Used { token, len: 513 })));
        assert_eq!(queue.free_descriptors(), 8);
        assert!(queue.free_list_is_sound());
    }

    #[test]
    fn refuses_malformed_chains_and_reports_full() {
        let (mut queue, _) = queue(4);
        assert_eq!(queue.add(&[]), Err(QueueError::EmptyChain));
        assert_eq!(
            queue.add(&[segment(1, 1, true), segment(2, 1, false)]),
            Err(QueueError::ReadableAfterWritable)
        );
        assert_eq!(queue.add(&[segment(1, 1, false); 5]), Err(QueueError::Full));
        queue.add(&[segment(1, 1, false); 3]).expect("three fit");
        assert_eq!(queue.add(&[segment(1, 1, false); 2]), Err(QueueError::Full));
        queue
            .add(&[segment(1, 1, false)])
            .expect("the last one fits");
        assert_eq!(queue.next_head(), None);
        assert_eq!(queue.add(&[segment(1, 1, false)]), Err(QueueError::Full));
        assert!(queue.free_list_is_sound());
    }

    #[test]
    fn notification_respects_no_notify() {
        let (mut queue, device) = queue(4);
        queue.add(&[segment(1, 1, false)]).expect("add");
        device.memory.write_u16(device.used, USED_NO_NOTIFY);
        assert!(!queue.publish());
        assert!(!queue.needs_notify());
        device.memory.write_u16(device.used, 0);
        queue.add(&[segment(1, 1, false)]).expect("add");
        assert!(queue.publish());
        queue.set_interrupts(false);
        assert_eq!(
            device.memory.read_u16(device.available),
            AVAILABLE_NO_INTERRUPT
        );
        queue.set_interrupts(true);
        assert_eq!(device.memory.read_u16(device.available), 0);
    }

    #[test]
    fn bogus_used_ids_are_errors_and_leave_the_free_list_intact() {
        let (mut queue, mut device) = queue(8);
        let first = queue
            .add(&[segment(1, 1, false), segment(2, 1, true)])
            .expect("add");
        let second = queue
            .add(&[segment(3, 1, false), segment(4, 1, true)])
            .expect("add");
        queue.publish();
        let middle = device.chain(first.index())[0].3;

        device.push_used(8, 0); // out of range
        device.push_used(u32::MAX, 0); // far out of range
        device.push_used(u32::from(middle), 0); // in flight, but not a head
        device.push_used(7, 0); // free descriptor
        device.push_used(u32::from(second.index()), 1);
        device.push_used(u32::from(second.index()), 1); // the same head twice
        device.push_used(u32::from(first.index()), 1);

        assert_eq!(queue.pop_used(), Some(Err(QueueError::BadDescriptor(8))));
        assert!(queue.free_list_is_sound());
        assert_eq!(
            queue.pop_used(),
            Some(Err(QueueError::BadDescriptor(u32::MAX)))
        );
        assert_eq!(
            queue.pop_used(),
            Some(Err(QueueError::BadDescriptor(u32::from(middle))))
        );
        assert_eq!(queue.pop_used(), Some(Err(QueueError::BadDescriptor(7))));
        assert_eq!(queue.free_descriptors(), 4);
        assert_eq!(
            queue.pop_used(),
            Some(Ok(Used {
                token: second,
                len: 1
            }))
        );
        assert_eq!(
            queue.pop_used(),
            Some(Err(QueueError::BadDescriptor(u32::from(second.index()))))
        );
        assert_eq!(
            queue.pop_used(),
            Some(Ok(Used {
                token: first,
                len: 1
            }))
        );
        assert_eq!(queue.pop_used(), None);
        assert_eq!((queue.free_descriptors(), queue.in_flight()), (8, 0));
        assert!(queue.free_list_is_sound());

        // Still works afterwards.
        let third = queue.add(&[segment(5, 1, false); 8]).expect("whole queue");
        queue.publish();
        assert_eq!(device.take_available().last(), Some(&third.index()));
        device.push_used(u32::from(third.index()), 0);
        assert_eq!(
            queue.pop_used(),
            Some(Ok(Used {
                token: third,
                len: 0
            }))
        );
    }

    #[test]
    fn a_used_index_too_far_ahead_is_reported() {
        let (mut queue, device) = queue(4);
        queue.add(&[segment(1, 1, false)]).expect("add");
        queue.publish();
        device.memory.write_u16(device.used + 2, 5);
        assert_eq!(queue.pop_used(), Some(Err(QueueError::BadUsedIndex(5))));
        assert_eq!(queue.pop_used(), Some(Err(QueueError::BadUsedIndex(5))));
        assert_eq!(queue.in_flight(), 1);
    }

    /// Random chains, completed in random order, past the 16-bit index wrap: afterwards
    /// every descriptor is free again, exactly once.
    #[test]
    fn random_operations_never_lose_descriptors() {
        for (seed, size) in [(1u64, 4u16), (2, 16), (3, 64), (4, 256)] {
            let (mut queue, mut device) = queue(size);
            let mut rng = percore::random::XorShift64::new(seed);
            let mut held: Vec<(u16, usize)> = Vec::new(); // heads the device holds, and chain lengths
            let mut expected: Vec<(u16, usize)> = Vec::new(); // added, not yet seen by the device
            let operations = if size == 4 { 300_000 } else { 20_000 };
            let mut completed = 0u32;
            for _ in 0..operations {
                match rng.below(3) {
                    0 | 1 => {
                        let count = 1 + rng.below(u64::from(size.min(8))) as usize;
                        let readable = rng.below(count as u64 + 1) as usize;
                        let chain: Vec<Segment> = (0..count)
                            .map(|index| segment(index as u64, 1, index >= readable))
                            .collect();
                        match queue.add(&chain) {
                            Ok(token) => expected.push((token.index(), count)),
                            Err(QueueError::Full) => {
                                assert!(usize::from(queue.free_descriptors()) < count)
                            }
                            Err(other) => panic!("unexpected {other}"),
                        }
                        if rng.below(2) == 0 {
                            queue.publish();
                            for head in device.take_available() {
                                let position = expected
                                    .iter()
                                    .position(|entry| entry.0 == head)
                                    .expect("ours");
                                let (head, count) = expected.remove(position);
                                assert_eq!(device.chain(head).len(), count);
                                held.push((head, count));
                            }
                        }
                    }
                    _ => {
                        if !held.is_empty() {
                            let pick = rng.below(held.len() as u64) as usize;
                            let (head, _) = held.swap_remove(pick);
                            device.push_used(u32::from(head), 7);
                            let used = queue.pop_used().expect("entry").expect("valid");
                            assert_eq!(
                                used,
                                Used {
                                    token: Token(head),
                                    len: 7
                                }
                            );
                            completed += 1;
                        }
                    }
                }
            }
            queue.publish();
            for head in device.take_available() {
                let position = expected
                    .iter()
                    .position(|entry| entry.0 == head)
                    .expect("ours");
                held.push(expected.remove(position));
            }
            while let Some((head, _)) = held.pop() {
                device.push_used(u32::from(head), 0);
                assert!(queue.pop_used().expect("entry").is_ok());
            }
            assert_eq!((queue.free_descriptors(), queue.in_flight()), (size, 0));
            assert!(queue.free_list_is_sound());
            if size == 4 {
                assert!(completed > 65_536, "indices did not wrap: {completed}");
            }
        }
    }
}
