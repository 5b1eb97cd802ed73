//! virtio-net queues against a fake device that runs in another thread over the same
//! memory, as a real device would: it takes posted receive buffers and fills them with
//! seeded random frames in order, and reads transmitted frames and checks them byte for
//! byte against the same seeded sequence the driver sends. A faulty mode adds used
//! entries with bogus ids and receive entries with impossible lengths.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use devices::virtio::dma::{DmaRegion, PAGE_SIZE};
use devices::virtio::net::{
    driver_features, NetConfig, NetError, NetFault, NetQueues, Notify, BUFFER_SIZE, FEATURE_CSUM,
    FEATURE_GUEST_CSUM, FEATURE_MAC, FEATURE_STATUS, HEADER_SIZE, MAX_FRAME, RECEIVE_QUEUE,
    TRANSMIT_QUEUE,
};
use devices::virtio::queue::QueueError;
use devices::virtio::{Transport, FEATURE_VERSION_1};
use net::ChecksumOffload;

mod common;
use common::{HostMemory, Rng};

const QUEUE_SIZE: u16 = 64;

/// The sequence of frames one side sends: random lengths 60..=1514, random bytes, with
/// the frame number in the first bytes so a lost or repeated frame names itself.
struct Frames {
    rng: Rng,
    number: u32,
}

impl Frames {
    fn new(seed: u64) -> Frames {
        Frames {
            rng: Rng::new(seed),
            number: 0,
        }
    }

    fn next_frame(&mut self) -> Vec<u8> {
        let len = 60 + self.rng.below(MAX_FRAME as u64 - 60 + 1) as usize;
        let mut frame: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
        frame[..4].copy_from_slice(&self.number.to_le_bytes());
        self.number += 1;
        frame
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Some used entries have out-of-range ids; some receive entries have lengths
    /// shorter than the header or longer than the buffer (the frame is then resent).
    Faulty,
}

#[derive(Debug, Clone, Copy)]
struct Descriptor {
    address: u64,
    len: u32,
    writable: bool,
}

/// The device's side of one virtqueue.
struct Ring {
    descriptors: u64,
    available: u64,
    used: u64,
    seen_available: u16,
    used_index: u16,
    /// Used entries written, and (from the driver side of the test) consumed: the device
    /// never writes more than a queue's worth ahead, as no real device can.
    pushed: u32,
}

impl Ring {
    fn new(queue: &devices::virtio::queue::SplitQueue) -> Ring {
        Ring {
            descriptors: queue.descriptor_table_address(),
            available: queue.available_address(),
            used: queue.used_address(),
            seen_available: 0,
            used_index: 0,
            pushed: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    frames_delivered: u32,
    frames_checked: u32,
    bogus_ids_receive: u32,
    bogus_ids_transmit: u32,
    bad_lengths: u32,
    /// Times the device had a frame, the driver had consumed every used entry, and still
    /// no receive buffer was posted: the driver let the device run dry.
    ran_dry: u32,
    /// Receive buffers posted and visible to the device when it stopped.
    posted_at_end: usize,
}

struct FakeNet<'a> {
    memory: DmaRegion,
    size: u16,
    receive: Ring,
    transmit: Ring,
    received_consumed: &'a AtomicU32,
    transmit_consumed: &'a AtomicU32,
    held: VecDeque<(u16, Descriptor)>,
    to_check: VecDeque<(u16, Descriptor)>,
    outgoing: Frames,
    outgoing_total: u32,
    current: Option<Vec<u8>>,
    expected: Frames,
    mode: Mode,
    rng: Rng,
    counts: Counts,
}

impl FakeNet<'_> {
    fn offset(&self, address: u64, len: usize) -> usize {
        assert!(
            self.memory.contains(address, len),
            "driver gave the device a wild address {address:#x}+{len}"
        );
        (address - self.memory.address()) as usize
    }

    fn read_u16(&self, address: u64) -> u16 {
        self.memory.read_u16(self.offset(address, 2))
    }

    fn descriptor(&self, ring: &Ring, index: u16) -> Descriptor {
        assert!(index < self.size, "descriptor index {index} out of range");
        let at = self.offset(ring.descriptors + 16 * u64::from(index), 16);
        let flags = self.memory.read_u16(at + 12);
        assert_eq!(flags & 1, 0, "a packet is one descriptor");
        Descriptor {
            address: self.memory.read_u64(at),
            len: self.memory.read_u32(at + 8),
            writable: flags & 2 != 0,
        }
    }

    fn collect(&self, ring: &mut Ring, into: &mut VecDeque<(u16, Descriptor)>) {
        let index = self.read_u16(ring.available + 2);
        fence(Ordering::Acquire);
        while ring.seen_available != index {
            let slot = u64::from(ring.seen_available % self.size);
            let head = self.read_u16(ring.available + 4 + 2 * slot);
            into.push_back((head, self.descriptor(ring, head)));
            ring.seen_available = ring.seen_available.wrapping_add(1);
        }
    }

    fn room(&self, ring: &Ring, consumed: &AtomicU32, entries: u32) -> bool {
        ring.pushed - consumed.load(Ordering::Acquire) + entries <= u32::from(self.size)
    }

    fn push_used(&self, ring: &mut Ring, id: u32, len: u32) {
        let slot = u64::from(ring.used_index % self.size);
        let entry = self.offset(ring.used + 4 + 8 * slot, 8);
        self.memory.write_u32(entry, id);
        self.memory.write_u32(entry + 4, len);
        ring.used_index = ring.used_index.wrapping_add(1);
        ring.pushed += 1;
        // Packet and entry before the index, as a device's write barrier does.
        fence(Ordering::Release);
        let index = self.offset(ring.used + 2, 2);
        self.memory.write_u16(index, ring.used_index);
    }

    fn bogus_id(&mut self) -> u32 {
        u32::from(self.size) + self.rng.below(100_000) as u32
    }

    /// Delivers (or tries to) one frame; returns true if it wrote a used entry.
    fn deliver(&mut self, receive: &mut Ring) -> bool {
        if self.counts.frames_delivered == self.outgoing_total {
            return false;
        }
        let consumed = self.received_consumed.load(Ordering::Acquire);
        let mut held = std::mem::take(&mut self.held);
        self.collect(receive, &mut held);
        self.held = held;
        if self.held.is_empty() {
            if consumed == receive.pushed {
                self.counts.ran_dry += 1;
            }
            return false;
        }
        if !self.room(receive, self.received_consumed, 2) {
            return false;
        }
        let frame = self
            .current
            .get_or_insert_with(|| self.outgoing.next_frame())
            .clone();
        let (head, buffer) = self.held.pop_front().expect("a buffer");
        assert!(buffer.writable, "receive buffer not device-writable");
        assert_eq!(buffer.len as usize, BUFFER_SIZE);
        if self.mode == Mode::Faulty {
            match self.rng.below(16) {
                0 => {
                    // Always followed by a real entry in the same step, so the driver
                    // has consumed it once it has every frame.
                    let id = self.bogus_id();
                    self.push_used(receive, id, (HEADER_SIZE + frame.len()) as u32);
                    self.counts.bogus_ids_receive += 1;
                }
                1 => {
                    let len = [0, HEADER_SIZE as u32 - 1, BUFFER_SIZE as u32 + 1, u32::MAX]
                        [self.rng.below(4) as usize];
                    self.push_used(receive, u32::from(head), len);
                    self.counts.bad_lengths += 1;
                    return true; // the frame goes out again in the next buffer
                }
                _ => {}
            }
        }
        let mut header = [0u8; HEADER_SIZE];
        header[10] = 1; // num_buffers
        let start = self.offset(buffer.address, HEADER_SIZE + frame.len());
        self.memory.write_bytes(start, &header);
        self.memory.write_bytes(start + HEADER_SIZE, &frame);
        self.push_used(receive, u32::from(head), (HEADER_SIZE + frame.len()) as u32);
        self.current = None;
        self.counts.frames_delivered += 1;
        true
    }

    /// Checks (and completes) the oldest transmitted frame; returns true if it did.
    fn check(&mut self, transmit: &mut Ring) -> bool {
        let mut to_check = std::mem::take(&mut self.to_check);
        self.collect(transmit, &mut to_check);
        self.to_check = to_check;
        if self.to_check.is_empty() || !self.room(transmit, self.transmit_consumed, 2) {
            return false;
        }
        let (head, descriptor) = self.to_check.pop_front().expect("a frame");
        assert!(!descriptor.writable, "transmit buffer device-writable");
        let len = descriptor.len as usize;
        assert!(
            (HEADER_SIZE..=HEADER_SIZE + MAX_FRAME).contains(&len),
            "transmit length {len}"
        );
        let mut packet = vec![0u8; len];
        self.memory
            .read_bytes(self.offset(descriptor.address, len), &mut packet);
        assert_eq!(packet[..HEADER_SIZE], [0; HEADER_SIZE], "header not zeroed");
        let expected = self.expected.next_frame();
        assert!(
            packet[HEADER_SIZE..] == expected[..],
            "transmitted frame {} differs (got {} bytes, want {})",
            self.counts.frames_checked,
            len - HEADER_SIZE,
            expected.len()
        );
        if self.mode == Mode::Faulty && self.rng.below(16) == 0 {
            let id = self.bogus_id();
            self.push_used(transmit, id, 0);
            self.counts.bogus_ids_transmit += 1;
        }
        self.push_used(transmit, u32::from(head), 0);
        self.counts.frames_checked += 1;
        true
    }

    fn run(mut self, stop: &AtomicBool) -> Counts {
        let mut receive = std::mem::replace(&mut self.receive, Ring::new_empty());
        let mut transmit = std::mem::replace(&mut self.transmit, Ring::new_empty());
        loop {
            match self.rng.below(32) {
                0 => thread::sleep(Duration::from_micros(self.rng.below(50))),
                1..=4 => thread::yield_now(),
                _ => {}
            }
            let delivered = self.deliver(&mut receive);
            let checked = self.check(&mut transmit);
            if !delivered && !checked {
                if stop.load(Ordering::Acquire) {
                    let mut held = std::mem::take(&mut self.held);
                    self.collect(&mut receive, &mut held);
                    self.counts.posted_at_end = held.len();
                    return self.counts;
                }
                thread::yield_now();
            }
        }
    }
}

impl Ring {
    fn new_empty() -> Ring {
        Ring {
            descriptors: 0,
            available: 0,
            used: 0,
            seen_available: 0,
            used_index: 0,
            pushed: 0,
        }
    }
}

/// Stops the fake device when dropped, also while the test thread unwinds from a failed
/// assertion: a scoped thread is joined before the panic propagates, so without this a
/// failure would hang instead of failing.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[derive(Default)]
struct Doorbell([u32; 2]);

impl Transport for Doorbell {
    fn notify(&mut self, queue: u16) {
        assert!(queue == RECEIVE_QUEUE || queue == TRANSMIT_QUEUE);
        self.0[usize::from(queue)] += 1;
    }
}

#[derive(Debug, Default)]
struct Outcome {
    received: u32,
    transmitted: u32,
    queue_full: u32,
    receive_errors: u32,
    bad_length_errors: u32,
    notifications: [u32; 2],
    device: Counts,
}

/// Runs `receive_total` frames in and `transmit_total` frames out at once, the driver
/// polling both queues, against a device in `mode`.
fn run(mode: Mode, seed: u64, receive_total: u32, transmit_total: u32) -> Outcome {
    let memory = HostMemory::new(NetQueues::memory_size(QUEUE_SIZE));
    let config = NetConfig {
        mac: [2, 0, 0, 0, 0, 1],
        link_up: true,
        checksum: ChecksumOffload::default(),
    };
    let mut net = NetQueues::new(memory.region(), QUEUE_SIZE, config).expect("queues");
    assert_eq!(net.receive_buffers_posted(), usize::from(QUEUE_SIZE));
    let received_consumed = AtomicU32::new(0);
    let transmit_consumed = AtomicU32::new(0);
    let device = FakeNet {
        memory: memory.region(),
        size: QUEUE_SIZE,
        receive: Ring::new(net.receive_queue()),
        transmit: Ring::new(net.transmit_queue()),
        received_consumed: &received_consumed,
        transmit_consumed: &transmit_consumed,
        held: VecDeque::new(),
        to_check: VecDeque::new(),
        outgoing: Frames::new(seed),
        outgoing_total: receive_total,
        current: None,
        expected: Frames::new(seed ^ 0x7E57),
        mode,
        rng: Rng::new(seed ^ 0xDEAD_BEEF),
        counts: Counts::default(),
    };
    let stop = AtomicBool::new(false);
    let mut outcome = Outcome::default();
    let mut doorbell = Doorbell::default();
    let mut incoming = Frames::new(seed);
    let mut outgoing = Frames::new(seed ^ 0x7E57);
    let mut rng = Rng::new(seed ^ 0x5EED);
    let mut buffer = vec![0u8; BUFFER_SIZE];

    let counts = thread::scope(|scope| {
        let device = scope.spawn(|| device.run(&stop));
        let _stop = StopOnDrop(&stop);
        net.kick(&mut doorbell);
        let mut pending: Option<Vec<u8>> = None;
        let started = Instant::now();
        while outcome.received < receive_total
            || outcome.transmitted < transmit_total
            || net.transmits_in_flight() > 0
        {
            assert!(!device.is_finished(), "the fake device stopped early");
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no progress: {outcome:?}"
            );
            let mut progress = false;
            // Transmit a burst.
            for _ in 0..rng.below(8) {
                if outcome.transmitted == transmit_total {
                    break;
                }
                let frame = pending.take().unwrap_or_else(|| outgoing.next_frame());
                match net.transmit(&frame) {
                    Ok(()) => {
                        outcome.transmitted += 1;
                        progress = true;
                    }
                    Err(NetError::QueueFull) => {
                        outcome.queue_full += 1;
                        pending = Some(frame);
                        break;
                    }
                    Err(other) => panic!("transmit failed: {other}"),
                }
            }
            if rng.below(2) == 0 || pending.is_some() || outcome.transmitted == transmit_total {
                net.kick(&mut doorbell);
                let before = net.transmit_faults();
                let freed = net.reclaim_transmitted() as u32;
                let faults = (net.transmit_faults() - before) as u32;
                transmit_consumed.fetch_add(freed + faults, Ordering::Release);
                progress |= freed > 0;
            }
            // Receive a burst.
            for _ in 0..rng.below(8) {
                let Some(result) = net.receive_into(&mut buffer) else {
                    break;
                };
                received_consumed.fetch_add(1, Ordering::Release);
                assert_eq!(
                    net.receive_buffers_posted(),
                    usize::from(QUEUE_SIZE),
                    "a receive buffer was not re-posted"
                );
                progress = true;
                match result {
                    Ok(len) => {
                        let expected = incoming.next_frame();
                        assert!(
                            buffer[..len] == expected[..],
                            "received frame {} differs (got {len} bytes, want {})",
                            outcome.received,
                            expected.len()
                        );
                        outcome.received += 1;
                    }
                    Err(NetError::BadDevice(NetFault::Queue(QueueError::BadDescriptor(id)))) => {
                        assert!(mode == Mode::Faulty && id >= u32::from(QUEUE_SIZE));
                        outcome.receive_errors += 1;
                    }
                    Err(NetError::BadDevice(NetFault::UsedLength(len))) => {
                        assert!(mode == Mode::Faulty);
                        assert!(!(HEADER_SIZE..=BUFFER_SIZE).contains(&(len as usize)));
                        outcome.bad_length_errors += 1;
                    }
                    Err(other) => panic!("unexpected receive error {other}"),
                }
            }
            net.kick(&mut doorbell);
            if !progress {
                thread::yield_now();
            }
        }
        stop.store(true, Ordering::Release);
        device.join().expect("fake device panicked")
    });

    assert!(net.receive_into(&mut buffer).is_none(), "nothing left over");
    assert_eq!(net.reclaim_transmitted(), 0);
    assert_eq!(net.transmits_in_flight(), 0);
    assert_eq!(net.transmit_queue().free_descriptors(), QUEUE_SIZE);
    assert_eq!(net.receive_buffers_posted(), usize::from(QUEUE_SIZE));
    assert_eq!(counts.frames_delivered, receive_total);
    assert_eq!(counts.frames_checked, transmit_total);
    assert_eq!(
        counts.ran_dry, 0,
        "the driver let the receive queue run dry"
    );
    assert_eq!(
        counts.posted_at_end,
        usize::from(QUEUE_SIZE),
        "receive buffers missing at the end"
    );
    assert_eq!(u64::from(counts.bogus_ids_transmit), net.transmit_faults());
    outcome.notifications = doorbell.0;
    outcome.device = counts;
    outcome
}

#[test]
fn received_frames_arrive_in_order_and_buffers_stay_posted() {
    let outcome = run(Mode::Normal, 1, 10_000, 0);
    assert_eq!(outcome.received, 10_000);
    assert!(outcome.notifications[0] > 0, "{outcome:?}");
    assert_eq!(outcome.notifications[1], 0);
}

#[test]
fn transmitted_frames_reach_the_device_intact_under_back_pressure() {
    let outcome = run(Mode::Normal, 2, 0, 10_000);
    assert_eq!(outcome.transmitted, 10_000);
    assert!(outcome.queue_full > 0, "no back-pressure: {outcome:?}");
    assert!(outcome.notifications[1] > 0);
}

#[test]
fn both_directions_at_once() {
    for seed in 3..=4 {
        let outcome = run(Mode::Normal, seed, 3_000, 3_000);
        assert_eq!((outcome.received, outcome.transmitted), (3_000, 3_000));
    }
}

#[test]
fn bogus_used_entries_are_errors_and_the_queues_keep_working() {
    for seed in 5..=6 {
        let outcome = run(Mode::Faulty, seed, 3_000, 3_000);
        assert_eq!((outcome.received, outcome.transmitted), (3_000, 3_000));
        let device = &outcome.device;
        assert!(device.bogus_ids_receive > 50, "{outcome:?}");
        assert!(device.bad_lengths > 50, "{outcome:?}");
        assert!(device.bogus_ids_transmit > 50, "{outcome:?}");
        assert_eq!(outcome.receive_errors, device.bogus_ids_receive);
        assert_eq!(outcome.bad_length_errors, device.bad_lengths);
    }
}

#[test]
fn features_and_config_space_follow_the_spec() {
    let offered = u64::MAX;
    assert_eq!(
        driver_features(offered),
        FEATURE_VERSION_1 | FEATURE_MAC | FEATURE_STATUS | FEATURE_CSUM | FEATURE_GUEST_CSUM
    );
    // Offloads are taken when offered, never asked for.
    let plain = FEATURE_VERSION_1 | FEATURE_MAC | FEATURE_STATUS;
    assert_eq!(driver_features(plain), plain);
    assert_eq!(
        (
            FEATURE_CSUM,
            FEATURE_GUEST_CSUM,
            FEATURE_MAC,
            FEATURE_STATUS
        ),
        (1 << 0, 1 << 1, 1 << 5, 1 << 16)
    );
    for (features, transmit, receive) in [
        (FEATURE_VERSION_1, false, false),
        (FEATURE_VERSION_1 | FEATURE_CSUM, true, false),
        (FEATURE_VERSION_1 | FEATURE_GUEST_CSUM, false, true),
        (
            FEATURE_VERSION_1 | FEATURE_CSUM | FEATURE_GUEST_CSUM,
            true,
            true,
        ),
    ] {
        assert_eq!(
            NetConfig::from_config_space(features, &[])
                .expect("config")
                .checksum,
            ChecksumOffload { transmit, receive }
        );
    }

    let space = [0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0];
    let negotiated = FEATURE_VERSION_1 | FEATURE_MAC | FEATURE_STATUS;
    assert_eq!(
        NetConfig::from_config_space(negotiated, &space),
        Ok(NetConfig {
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            link_up: false,
            checksum: ChecksumOffload::default(),
        })
    );
    let mut up = space;
    up[6] = 1;
    assert!(
        NetConfig::from_config_space(negotiated, &up)
            .expect("config")
            .link_up
    );
    // Without STATUS the link counts as up and the status bytes need not exist.
    assert_eq!(
        NetConfig::from_config_space(FEATURE_VERSION_1 | FEATURE_MAC, &space[..6]),
        Ok(NetConfig {
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            link_up: true,
            checksum: ChecksumOffload::default(),
        })
    );
    assert_eq!(
        NetConfig::from_config_space(FEATURE_VERSION_1, &[]),
        Ok(NetConfig {
            mac: [0; 6],
            link_up: true,
            checksum: ChecksumOffload::default(),
        })
    );
    assert_eq!(
        NetConfig::from_config_space(negotiated, &space[..7]),
        Err(NetError::BadDevice(NetFault::ShortConfig(7)))
    );
    assert_eq!(
        NetConfig::from_config_space(FEATURE_MAC, &space[..5]),
        Err(NetError::BadDevice(NetFault::ShortConfig(5)))
    );
}

#[test]
fn queues_are_laid_out_in_the_region_and_refuse_bad_input() {
    let config = NetConfig {
        mac: [0; 6],
        link_up: true,
        checksum: ChecksumOffload::default(),
    };
    let size = 16;
    let memory = HostMemory::new(NetQueues::memory_size(size));
    let region = memory.region();
    let base = region.address();
    let len = region.len() as u64;
    assert!(len >= 2 * BUFFER_SIZE as u64 * u64::from(size));
    let mut net = NetQueues::new(region, size, config).expect("queues");
    for queue in [net.receive_queue(), net.transmit_queue()] {
        for address in [
            queue.descriptor_table_address(),
            queue.available_address(),
            queue.used_address(),
        ] {
            assert!((base..base + len).contains(&address));
        }
        assert_eq!(queue.capacity(), size);
    }
    assert_ne!(
        net.receive_queue().descriptor_table_address(),
        net.transmit_queue().descriptor_table_address()
    );
    assert_eq!(net.receive_queue().free_descriptors(), 0);
    assert_eq!(
        net.publish_and_needs_notify(),
        Notify {
            receive: true,
            transmit: false
        }
    );
    assert_eq!(net.publish_and_needs_notify(), Notify::default());

    assert_eq!(
        net.transmit(&[0u8; MAX_FRAME + 1]),
        Err(NetError::FrameTooLong(MAX_FRAME + 1))
    );
    for _ in 0..size {
        net.transmit(&[0xAB; MAX_FRAME]).expect("a free slot");
    }
    assert_eq!(net.transmit(&[1; 60]), Err(NetError::QueueFull));
    assert_eq!(net.transmits_in_flight(), usize::from(size));
    assert_eq!(
        net.publish_and_needs_notify(),
        Notify {
            receive: false,
            transmit: true
        }
    );
    assert!(net.receive_into(&mut [0u8; 16]).is_none());
    assert_eq!(net.reclaim_transmitted(), 0);

    let small = HostMemory::new(NetQueues::memory_size(size) - PAGE_SIZE);
    assert!(matches!(
        NetQueues::new(small.region(), size, config),
        Err(QueueError::RegionTooSmall { .. })
    ));
    assert_eq!(
        NetQueues::new(memory.region(), 48, config).err(),
        Some(QueueError::InvalidSize(48))
    );
}
