//! The virtio-mmio transport against a fake register file that plays the device: it
//! checks every access the driver makes (32-bit aligned control registers, no writes to
//! read-only ones), resets, negotiates, takes queue addresses, and on QueueNotify serves
//! the queues from the memory the driver gave it, as a blk disk or a net card. The blk
//! and net drivers run unchanged on it. Misbehaving devices (a reset that never ends,
//! a configuration that never settles, refused features, missing or busy queues, legacy
//! or absent devices) must give errors, never a hang.

use std::cell::RefCell;
use std::rc::Rc;

use devices::disk::{self, SetupError};
use devices::mmio::MmioWindow;
use devices::netdev::{NetSetup, NetSetupError, VirtioNet};
use devices::transport::VirtioTransport;
use devices::virtio::blk::{BlkError, FEATURE_FLUSH, SECTOR_SIZE};
use devices::virtio::dma::DmaRegion;
use devices::virtio::net::{FEATURE_MAC, FEATURE_STATUS, HEADER_SIZE};
use devices::virtio::transport::{
    CONFIG_RETRIES, RESET_POLLS, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FAILED, STATUS_FEATURES_OK,
};
use devices::virtio::{DeviceTransport, Transport, TransportError, FEATURE_VERSION_1};
use devices::virtio_mmio::{register, RegisterWindow, VirtioMmio, DEVICE_BLOCK, DEVICE_NET, MAGIC};

mod common;
use common::{HostMemory, Rng};

/// A feature bit no driver here knows: it must never be accepted.
const UNKNOWN_FEATURE: u64 = 1 << 40;
const DISK_SECTORS: usize = 128;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    None,
    /// The status never reads back 0 after a reset.
    ResetNeverEnds,
    /// The configuration generation changes on every read.
    GenerationAlwaysChanges,
    /// The configuration changes once, during the driver's first read of it.
    ConfigChangesOnce,
    /// FEATURES_OK never sticks.
    RefusesFeatures,
    /// Queue 0 stays live through a reset.
    QueueBusy,
}

#[derive(Debug, Default, Clone, Copy)]
struct FakeQueue {
    maximum: u32,
    size: u32,
    ready: u32,
    descriptors: u64,
    driver: u64,
    device: u64,
    /// Available entries served so far.
    seen: u16,
    /// Our used index.
    used: u16,
}

/// What the device does with its queues.
#[derive(Debug)]
enum Model {
    /// A disk of `DISK_SECTORS` sectors.
    Disk(Vec<u8>),
    /// A network card: frames the driver sent.
    Card(Vec<Vec<u8>>),
}

#[derive(Debug)]
struct FakeDevice {
    magic: u32,
    version: u32,
    device_id: u32,
    size: usize,
    features: u64,
    feature_select: u32,
    driver_features: u64,
    driver_select: u32,
    queue_select: u32,
    queues: [FakeQueue; 2],
    status: u32,
    /// Every value the driver wrote to Status, in order.
    status_writes: Vec<u32>,
    status_reads: u64,
    config: Vec<u8>,
    generation: u32,
    generation_reads: u32,
    interrupt: u32,
    notifications: Vec<u32>,
    misbehaviour: Misbehaviour,
    model: Model,
    memory: Vec<DmaRegion>,
}

impl FakeDevice {
    fn new(device_id: u32, features: u64, config: Vec<u8>, model: Model) -> FakeDevice {
        FakeDevice {
            magic: MAGIC,
            version: 2,
            device_id,
            size: 0x200,
            features,
            feature_select: 0,
            driver_features: 0,
            driver_select: 0,
            queue_select: 0,
            queues: [FakeQueue {
                maximum: 64,
                ..FakeQueue::default()
            }; 2],
            status: 0,
            status_writes: Vec::new(),
            status_reads: 0,
            config,
            generation: 0,
            generation_reads: 0,
            interrupt: 0,
            notifications: Vec::new(),
            misbehaviour: Misbehaviour::None,
            model,
            memory: Vec::new(),
        }
    }

    fn disk() -> FakeDevice {
        let capacity = (DISK_SECTORS as u64).to_le_bytes();
        let mut config = vec![0u8; 24];
        config[..8].copy_from_slice(&capacity);
        FakeDevice::new(
            DEVICE_BLOCK,
            FEATURE_VERSION_1 | FEATURE_FLUSH | UNKNOWN_FEATURE,
            config,
            Model::Disk(vec![0; DISK_SECTORS * SECTOR_SIZE]),
        )
    }

    fn card() -> FakeDevice {
        let mut config = MAC.to_vec();
        config.extend(1u16.to_le_bytes());
        FakeDevice::new(
            DEVICE_NET,
            FEATURE_VERSION_1 | FEATURE_MAC | FEATURE_STATUS | UNKNOWN_FEATURE,
            config,
            Model::Card(Vec::new()),
        )
    }

    fn selected(&mut self) -> Option<&mut FakeQueue> {
        self.queues.get_mut(self.queue_select as usize)
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        for queue in &mut self.queues {
            *queue = FakeQueue {
                maximum: queue.maximum,
                ..FakeQueue::default()
            };
        }
        // A broken device whose queue 0 stays live through the reset.
        self.queues[0].ready = u32::from(self.misbehaviour == Misbehaviour::QueueBusy);
    }

    fn write_status(&mut self, value: u32) {
        self.status_writes.push(value);
        if value == 0 {
            if self.misbehaviour != Misbehaviour::ResetNeverEnds {
                self.reset();
            }
            return;
        }
        let mut value = value;
        let features_ok = u32::from(STATUS_FEATURES_OK);
        if value & features_ok != 0 && self.status & features_ok == 0 {
            let acceptable = self.driver_features & !self.features == 0
                && self.driver_features & FEATURE_VERSION_1 != 0;
            if !acceptable || self.misbehaviour == Misbehaviour::RefusesFeatures {
                value &= !features_ok;
            }
        }
        self.status = value;
    }

    /// Returns the region holding `address..address + len`; a wild address fails the test.
    fn locate(&self, address: u64, len: usize) -> (&DmaRegion, usize) {
        let region = self
            .memory
            .iter()
            .find(|region| region.contains(address, len))
            .unwrap_or_else(|| panic!("driver gave the device a wild address {address:#x}+{len}"));
        (region, (address - region.address()) as usize)
    }

    fn read(&self, address: u64, buffer: &mut [u8]) {
        let (region, offset) = self.locate(address, buffer.len());
        region.read_bytes(offset, buffer);
    }

    fn write(&self, address: u64, bytes: &[u8]) {
        let (region, offset) = self.locate(address, bytes.len());
        region.write_bytes(offset, bytes);
    }

    fn read_u16(&self, address: u64) -> u16 {
        let mut bytes = [0u8; 2];
        self.read(address, &mut bytes);
        u16::from_le_bytes(bytes)
    }

    /// Returns the chain at `head`: (address, length, device-writable) per descriptor.
    fn chain(&self, queue: &FakeQueue, head: u16) -> Vec<(u64, u32, bool)> {
        let mut chain = Vec::new();
        let mut index = head;
        loop {
            assert!(
                u32::from(index) < queue.size,
                "descriptor {index} out of range"
            );
            let mut raw = [0u8; 16];
            self.read(queue.descriptors + 16 * u64::from(index), &mut raw);
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            chain.push((
                u64::from_le_bytes(raw[0..8].try_into().unwrap()),
                u32::from_le_bytes(raw[8..12].try_into().unwrap()),
                flags & 2 != 0,
            ));
            if flags & 1 == 0 {
                return chain;
            }
            index = u16::from_le_bytes([raw[14], raw[15]]);
            assert!(chain.len() <= queue.size as usize, "descriptor loop");
        }
    }

    /// Takes the next available head of queue `index`, if any.
    fn next_available(&mut self, index: usize) -> Option<u16> {
        let queue = self.queues[index];
        assert_eq!(queue.ready, 1, "notified queue {index} that is not ready");
        let available = self.read_u16(queue.driver + 2);
        if available == queue.seen {
            return None;
        }
        let slot = u64::from(queue.seen) % u64::from(queue.size);
        let head = self.read_u16(queue.driver + 4 + 2 * slot);
        self.queues[index].seen = queue.seen.wrapping_add(1);
        Some(head)
    }

    fn push_used(&mut self, index: usize, head: u16, len: u32) {
        let queue = self.queues[index];
        let slot = u64::from(queue.used) % u64::from(queue.size);
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        entry[4..].copy_from_slice(&len.to_le_bytes());
        self.write(queue.device + 4 + 8 * slot, &entry);
        let used = queue.used.wrapping_add(1);
        self.write(queue.device + 2, &used.to_le_bytes());
        self.queues[index].used = used;
        self.interrupt |= 1;
    }

    fn notified(&mut self, queue: u32) {
        self.notifications.push(queue);
        match (&self.model, queue) {
            (Model::Disk(_), 0) => self.serve_disk(),
            (Model::Card(_), 1) => self.serve_transmit(),
            // Receive buffers: taken when a frame arrives.
            (Model::Card(_), 0) => {}
            _ => panic!("notify of queue {queue}, which this device does not have"),
        }
    }

    fn serve_disk(&mut self) {
        while let Some(head) = self.next_available(0) {
            let chain = self.chain(&self.queues[0], head);
            let (header, data, status) =
                (chain[0], &chain[1..chain.len() - 1], chain[chain.len() - 1]);
            let mut raw = [0u8; 16];
            self.read(header.0, &mut raw);
            let kind = u32::from_le_bytes(raw[0..4].try_into().unwrap());
            let mut offset =
                u64::from_le_bytes(raw[8..16].try_into().unwrap()) as usize * SECTOR_SIZE;
            let mut written = 0;
            for &(address, len, _) in data {
                let len = len as usize;
                let mut bytes = vec![0u8; len];
                if kind == 1 {
                    self.read(address, &mut bytes);
                }
                let Model::Disk(disk) = &mut self.model else {
                    unreachable!()
                };
                match kind {
                    0 => bytes.copy_from_slice(&disk[offset..offset + len]),
                    1 => disk[offset..offset + len].copy_from_slice(&bytes),
                    _ => panic!("unexpected request type {kind}"),
                }
                if kind == 0 {
                    self.write(address, &bytes);
                    written += len;
                }
                offset += len;
            }
            assert!(status.2 && status.1 == 1, "status descriptor");
            self.write(status.0, &[0]);
            self.push_used(0, head, written as u32 + 1);
        }
    }

    fn serve_transmit(&mut self) {
        while let Some(head) = self.next_available(1) {
            let mut packet = Vec::new();
            for (address, len, writable) in self.chain(&self.queues[1], head) {
                assert!(!writable, "transmit buffers are device-readable");
                let mut bytes = vec![0u8; len as usize];
                self.read(address, &mut bytes);
                packet.extend(bytes);
            }
            let Model::Card(sent) = &mut self.model else {
                unreachable!()
            };
            sent.push(packet[HEADER_SIZE..].to_vec());
            self.push_used(1, head, 0);
        }
    }

    /// Puts `frame` into the next receive buffer; false if the driver posted none.
    fn deliver(&mut self, frame: &[u8]) -> bool {
        let Some(head) = self.next_available(0) else {
            return false;
        };
        let chain = self.chain(&self.queues[0], head);
        let (address, len, writable) = chain[0];
        assert!(writable && len as usize >= HEADER_SIZE + frame.len());
        let mut packet = vec![0u8; HEADER_SIZE];
        packet[10] = 1; // num_buffers
        packet.extend(frame);
        self.write(address, &packet);
        self.push_used(0, head, packet.len() as u32);
        true
    }
}

/// The register file the transport sees: a handle on the device the test also holds.
#[derive(Debug, Clone)]
struct FakeWindow(Rc<RefCell<FakeDevice>>);

impl FakeWindow {
    fn device(&self) -> std::cell::RefMut<'_, FakeDevice> {
        self.0.borrow_mut()
    }
}

fn check_control(offset: usize) {
    assert!(
        offset < register::CONFIG && offset.is_multiple_of(4),
        "control register access at {offset:#x} not 32-bit aligned"
    );
}

impl RegisterWindow for FakeWindow {
    fn size(&self) -> usize {
        self.0.borrow().size
    }

    fn read32(&self, offset: usize) -> u32 {
        check_control(offset);
        let mut device = self.0.borrow_mut();
        match offset {
            register::MAGIC_VALUE => device.magic,
            register::VERSION => device.version,
            register::DEVICE_ID => device.device_id,
            register::VENDOR_ID => 0x554D_4551,
            register::DEVICE_FEATURES => match device.feature_select {
                0 => device.features as u32,
                1 => (device.features >> 32) as u32,
                _ => 0,
            },
            register::QUEUE_SIZE_MAX => device.selected().map_or(0, |queue| queue.maximum),
            register::QUEUE_READY => device.selected().map_or(0, |queue| queue.ready),
            register::INTERRUPT_STATUS => device.interrupt,
            register::STATUS => {
                device.status_reads += 1;
                if device.misbehaviour == Misbehaviour::ResetNeverEnds {
                    device.status | 0x40
                } else {
                    device.status
                }
            }
            register::CONFIG_GENERATION => {
                device.generation_reads += 1;
                match device.misbehaviour {
                    Misbehaviour::GenerationAlwaysChanges => device.generation += 1,
                    // The driver read the bytes after its first look at the generation:
                    // they changed meanwhile, and so did the generation.
                    Misbehaviour::ConfigChangesOnce if device.generation_reads == 2 => {
                        device.generation += 1;
                        device.config[..8].copy_from_slice(&64u64.to_le_bytes());
                    }
                    _ => {}
                }
                device.generation
            }
            _ => panic!("driver read write-only or reserved register {offset:#x}"),
        }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        check_control(offset);
        let mut device = self.0.borrow_mut();
        let set_half = |target: &mut u64, half: u32| {
            let shift = 32 * half;
            *target = (*target & !(0xFFFF_FFFFu64 << shift)) | u64::from(value) << shift;
        };
        match offset {
            register::DEVICE_FEATURES_SELECT => device.feature_select = value,
            register::DRIVER_FEATURES_SELECT => device.driver_select = value,
            register::DRIVER_FEATURES => {
                let half = device.driver_select;
                assert!(half < 2, "driver features word {half}");
                set_half(&mut device.driver_features, half);
            }
            register::QUEUE_SELECT => device.queue_select = value,
            register::QUEUE_SIZE => device.selected().expect("queue selected").size = value,
            register::QUEUE_READY => device.selected().expect("queue selected").ready = value,
            register::QUEUE_DESCRIPTOR_LOW
            | register::QUEUE_DESCRIPTOR_HIGH
            | register::QUEUE_DRIVER_LOW
            | register::QUEUE_DRIVER_HIGH
            | register::QUEUE_DEVICE_LOW
            | register::QUEUE_DEVICE_HIGH => {
                let queue = device.selected().expect("queue selected");
                assert_eq!(
                    queue.ready, 0,
                    "queue address written while the queue is live"
                );
                let half = ((offset & 4) / 4) as u32;
                let target = match offset & !4 {
                    register::QUEUE_DESCRIPTOR_LOW => &mut queue.descriptors,
                    register::QUEUE_DRIVER_LOW => &mut queue.driver,
                    _ => &mut queue.device,
                };
                set_half(target, half);
            }
            register::QUEUE_NOTIFY => device.notified(value),
            register::INTERRUPT_ACK => device.interrupt &= !value,
            register::STATUS => device.write_status(value),
            _ => panic!("driver wrote read-only or reserved register {offset:#x}"),
        }
    }

    fn read8(&self, offset: usize) -> u8 {
        assert!(
            offset >= register::CONFIG,
            "byte read of control register {offset:#x}"
        );
        let device = self.0.borrow();
        device
            .config
            .get(offset - register::CONFIG)
            .copied()
            .unwrap_or(0)
    }
}

/// A transport on `device`, plus the handle the test keeps.
fn attach(device: FakeDevice) -> (VirtioMmio<FakeWindow>, FakeWindow) {
    let window = FakeWindow(Rc::new(RefCell::new(device)));
    let transport = VirtioMmio::new(window.clone()).expect("a valid virtio-mmio device");
    (transport, window)
}

const DRIVER_READY: u32 =
    (STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK) as u32;

#[test]
fn the_blk_driver_reads_and_writes_a_disk_over_mmio() {
    let memory = HostMemory::new(disk::dma_size() + 4 * SECTOR_SIZE);
    let (rings, buffers) = memory.region().split_at(disk::dma_size());
    let (mut transport, window) = attach(FakeDevice::disk());
    window.device().memory = vec![memory.region()];
    assert_eq!(transport.device_id(), DEVICE_BLOCK);

    let mut queue = disk::start_device(&mut transport, rings).expect("disk starts");
    {
        let device = window.device();
        // Reset first, then ACKNOWLEDGE | DRIVER, FEATURES_OK, DRIVER_OK, in that order.
        assert_eq!(device.status_writes, [0, 3, 11, 15]);
        assert_eq!(device.status, DRIVER_READY);
        assert_eq!(device.driver_features, FEATURE_VERSION_1 | FEATURE_FLUSH);
        let queue0 = device.queues[0];
        assert_eq!((queue0.ready, queue0.size), (1, 64));
        // All 64 bits of each address went through the Low/High register pairs.
        assert_eq!(queue0.descriptors, queue.queue().descriptor_table_address());
        assert_eq!(queue0.driver, queue.queue().available_address());
        assert_eq!(queue0.device, queue.queue().used_address());
        assert_eq!(device.queues[1].ready, 0);
    }
    assert_eq!(queue.config().capacity, DISK_SECTORS as u64);

    let pattern: Vec<u8> = (0..2 * SECTOR_SIZE).map(|i| (i * 7 % 251) as u8).collect();
    buffers.write_bytes(0, &pattern);
    let written = queue
        .write(5, buffers.address(), pattern.len())
        .expect("write queued");
    queue.kick(&mut transport);
    let completed = queue
        .complete()
        .expect("served on notify")
        .expect("valid entry");
    assert_eq!(
        (completed.id, completed.result),
        (written, Ok(pattern.len()))
    );
    {
        let device = window.device();
        let Model::Disk(disk) = &device.model else {
            unreachable!()
        };
        assert_eq!(&disk[5 * SECTOR_SIZE..7 * SECTOR_SIZE], &pattern[..]);
    }

    let read_at = buffers.address() + 2 * SECTOR_SIZE as u64;
    let read = queue.read(5, read_at, pattern.len()).expect("read queued");
    queue.kick(&mut transport);
    let completed = queue.complete().expect("served").expect("valid entry");
    assert_eq!(completed.id, read);
    assert_eq!(completed.result, Ok(pattern.len()));
    let mut back = vec![0u8; pattern.len()];
    buffers.read_bytes(2 * SECTOR_SIZE, &mut back);
    assert_eq!(back, pattern);
    assert_eq!(
        queue.read(DISK_SECTORS as u64, read_at, SECTOR_SIZE),
        Err(BlkError::OutOfRange)
    );
    assert_eq!(window.device().notifications, [0, 0]);

    // The device raised its used-buffer interrupt; reading the status acknowledges it.
    assert_eq!(transport.interrupt_status(), 1);
    assert_eq!(window.device().interrupt, 0);
    assert_eq!(transport.interrupt_status(), 0);
}

#[test]
fn the_net_driver_sends_and_receives_over_mmio() {
    use net::Device;

    let memory = HostMemory::new(devices::netdev::dma_size());
    let (transport, window) = attach(FakeDevice::card());
    window.device().memory = vec![memory.region()];
    assert_eq!(transport.device_id(), DEVICE_NET);
    let mut card = VirtioNet::start(NetSetup {
        transport,
        dma: memory.region(),
        location: heapless::String::try_from("0xfeb02e00").unwrap(),
    })
    .expect("card starts");
    assert_eq!(card.mac(), MAC);
    assert!(card.config().link_up);
    {
        let device = window.device();
        assert_eq!(device.status, DRIVER_READY);
        assert_eq!(
            device.driver_features,
            FEATURE_VERSION_1 | FEATURE_MAC | FEATURE_STATUS
        );
        assert!(device
            .queues
            .iter()
            .all(|queue| queue.ready == 1 && queue.size == 64));
        // The receive buffers were posted and announced.
        assert_eq!(device.notifications, [0]);
    }

    // Ten times the queue size each way: buffers and slots must come back every time.
    let mut rng = Rng::new(7);
    let mut out = [0u8; 1514];
    for round in 0..640 {
        let frame: Vec<u8> = (0..60 + rng.below(1400))
            .map(|_| rng.next_u64() as u8)
            .collect();
        assert!(card.can_transmit());
        assert!(card.transmit(&frame));
        {
            let device = window.device();
            let Model::Card(sent) = &device.model else {
                unreachable!()
            };
            assert_eq!(sent.last(), Some(&frame), "frame {round} sent as given");
        }

        assert!(
            window.device().deliver(&frame),
            "a receive buffer is posted"
        );
        assert_eq!(card.receive(&mut out), Some(frame.len()));
        assert_eq!(&out[..frame.len()], &frame[..]);
        assert_eq!(card.receive(&mut out), None);
    }
}

#[test]
fn legacy_absent_and_foreign_devices_are_refused() {
    type Change = fn(&mut FakeDevice);
    let cases: [(Change, TransportError); 5] = [
        (|device| device.version = 1, TransportError::LegacyInterface),
        (
            |device| device.version = 3,
            TransportError::UnknownVersion(3),
        ),
        (
            |device| device.magic = 0xFFFF_FFFF,
            TransportError::NotVirtio(0xFFFF_FFFF),
        ),
        (|device| device.device_id = 0, TransportError::NoDevice),
        (
            |device| device.size = 0x80,
            TransportError::WindowTooSmall(0x80),
        ),
    ];
    for (change, expected) in cases {
        let mut device = FakeDevice::disk();
        change(&mut device);
        let window = FakeWindow(Rc::new(RefCell::new(device)));
        assert_eq!(VirtioMmio::new(window.clone()).err(), Some(expected));
        // Nothing was written to a device we refused.
        assert!(window.device().status_writes.is_empty());
    }
    let message = TransportError::LegacyInterface.to_string();
    assert!(message.contains("force-legacy=false"), "{message}");
}

#[test]
fn a_reset_that_never_completes_is_an_error_not_a_hang() {
    let memory = HostMemory::new(disk::dma_size());
    let mut device = FakeDevice::disk();
    device.misbehaviour = Misbehaviour::ResetNeverEnds;
    let (mut transport, window) = attach(device);
    assert_eq!(
        disk::start_device(&mut transport, memory.region()).err(),
        Some(SetupError::Transport(TransportError::ResetTimeout))
    );
    let device = window.device();
    // Bounded: the reset's reads, then one more to mark the device FAILED.
    assert_eq!(device.status_reads, u64::from(RESET_POLLS) + 1);
    assert_eq!(
        device
            .status_writes
            .last()
            .map(|s| s & u32::from(STATUS_FAILED)),
        Some(128)
    );
    assert!(device.queues.iter().all(|queue| queue.ready == 0));
}

#[test]
fn a_configuration_that_never_settles_is_an_error() {
    let memory = HostMemory::new(devices::netdev::dma_size());
    let mut device = FakeDevice::card();
    device.misbehaviour = Misbehaviour::GenerationAlwaysChanges;
    let (transport, window) = attach(device);
    let started = VirtioNet::start(NetSetup {
        transport,
        dma: memory.region(),
        location: heapless::String::new(),
    });
    assert_eq!(
        started.err(),
        Some(NetSetupError::Transport(TransportError::ConfigUnstable))
    );
    let device = window.device();
    assert_eq!(device.generation_reads, 2 * CONFIG_RETRIES);
    assert_ne!(device.status & u32::from(STATUS_FAILED), 0);
    assert_eq!(device.status & u32::from(STATUS_DRIVER_OK), 0);
}

#[test]
fn a_configuration_changed_during_the_read_is_read_again() {
    let memory = HostMemory::new(disk::dma_size());
    let mut device = FakeDevice::disk();
    device.misbehaviour = Misbehaviour::ConfigChangesOnce;
    let (mut transport, window) = attach(device);
    window.device().memory = vec![memory.region()];
    let queue = disk::start_device(&mut transport, memory.region()).expect("disk starts");
    // The capacity changed from 128 to 64 sectors while the driver read it.
    assert_eq!(queue.config().capacity, 64);
    assert_eq!(window.device().generation_reads, 4);
}

#[test]
fn refused_and_missing_features_are_errors() {
    let memory = HostMemory::new(disk::dma_size());
    let mut device = FakeDevice::disk();
    device.misbehaviour = Misbehaviour::RefusesFeatures;
    let (mut transport, window) = attach(device);
    assert_eq!(
        disk::start_device(&mut transport, memory.region()).err(),
        Some(SetupError::Transport(TransportError::FeaturesRefused))
    );
    assert_ne!(window.device().status & u32::from(STATUS_FAILED), 0);

    let mut device = FakeDevice::disk();
    device.features &= !FEATURE_VERSION_1;
    let (mut transport, window) = attach(device);
    assert_eq!(
        disk::start_device(&mut transport, memory.region()).err(),
        Some(SetupError::Transport(TransportError::LegacyOnly))
    );
    assert_eq!(window.device().status_writes.last(), Some(&(3 | 128)));
}

#[test]
fn missing_small_and_busy_queues_are_errors() {
    let memory = HostMemory::new(disk::dma_size());
    for (maximum, misbehaviour, expected) in [
        (0, Misbehaviour::None, SetupError::NoQueue),
        (3, Misbehaviour::None, SetupError::NoQueue),
        (
            64,
            Misbehaviour::QueueBusy,
            SetupError::Transport(TransportError::NoSuchQueue(0)),
        ),
    ] {
        let mut device = FakeDevice::disk();
        device.queues[0].maximum = maximum;
        device.misbehaviour = misbehaviour;
        let (mut transport, window) = attach(device);
        window.device().memory = vec![memory.region()];
        assert_eq!(
            disk::start_device(&mut transport, memory.region()).err(),
            Some(expected)
        );
        assert_ne!(window.device().status & u32::from(STATUS_FAILED), 0);
    }
    // A size above the maximum, or zero, is refused before anything is written.
    let (mut transport, window) = attach(FakeDevice::disk());
    for size in [0, 128] {
        assert_eq!(
            transport.enable_queue(0, size, 0x1000, 0x2000, 0x3000),
            Err(TransportError::BadQueueSize(size))
        );
    }
    assert_eq!(window.device().queues[0].descriptors, 0);
    assert_eq!(transport.max_queue_size(1), 64);
    assert_eq!(transport.max_queue_size(2), 0);
}

/// Plain memory standing in for a register window: no device behind it, but the real
/// volatile accessors and the enum's dispatch.
#[test]
fn the_transport_enum_drives_a_real_mmio_window() {
    let mut registers = vec![0u32; 0x200 / 4];
    registers[register::MAGIC_VALUE / 4] = MAGIC;
    registers[register::VERSION / 4] = 2;
    registers[register::DEVICE_ID / 4] = DEVICE_NET;
    registers[register::CONFIG / 4] = u32::from_le_bytes([0x52, 0x54, 0, 0x12]);
    registers[register::QUEUE_SIZE_MAX / 4] = 256;
    let base = registers.as_mut_ptr() as usize;
    // SAFETY: `registers` outlives the window (dropped at the end of the test) and is
    // reached only through it meanwhile.
    let window = unsafe { MmioWindow::new(base, 0x200) };
    let mmio = VirtioMmio::new(window).expect("valid registers");
    let mut transport = VirtioTransport::from(mmio);
    transport.reset().expect("plain memory reads back the 0");
    transport.notify(1);
    assert_eq!(transport.max_queue_size(0), 256);
    assert_eq!(transport.config_len(), 0x100);
    let mut config = [0u8; 4];
    transport.read_device_config(&mut config).unwrap();
    assert_eq!(config, [0x52, 0x54, 0, 0x12]);
    transport
        .enable_queue(0, 128, 0x1234_5678_9ABC, 0x2000, 0x3000)
        .unwrap();
    // The transport is done with the registers (it is not used after this point).
    let read = |offset: usize| registers[offset / 4];
    assert_eq!(read(register::QUEUE_NOTIFY), 1);
    assert_eq!(read(register::QUEUE_SIZE), 128);
    assert_eq!(read(register::QUEUE_DESCRIPTOR_LOW), 0x5678_9ABC);
    assert_eq!(read(register::QUEUE_DESCRIPTOR_HIGH), 0x1234);
    assert_eq!(read(register::QUEUE_READY), 1);
}
