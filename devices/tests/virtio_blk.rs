//! virtio-blk requests against a fake device that runs in another thread over the same
//! memory, as a real device would: it reads the available ring, follows descriptors,
//! serves them from a `Vec` disk image in random order after random delays, and writes
//! status bytes and used entries. Modes add bogus used ids or device errors.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use devices::virtio::blk::{
    BlkConfig, BlkError, BlkQueue, Completed, DeviceFault, RequestId, ID_SIZE, SECTOR_SIZE,
    STATUS_IO_ERROR, STATUS_OK, STATUS_UNSUPPORTED,
};
use devices::virtio::dma::DmaRegion;
use devices::virtio::queue::QueueError;
use devices::virtio::Transport;

mod common;
use common::{HostMemory, Rng};

const QUEUE_SIZE: u16 = 64;
const DISK_SECTORS: u64 = 2048;
const MAX_SECTORS_PER_REQUEST: u64 = 32;
const BUFFER_BYTES: usize = MAX_SECTORS_PER_REQUEST as usize * SECTOR_SIZE;
const DEPTH: usize = 24;
const DEVICE_ID: &[u8] = b"manada-fake-disk";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Before some real used entries, write one whose id is not a head in flight.
    BogusIds,
    /// Reads and writes at sectors = 2 (mod 5) fail with IOERR; flush and get-id are UNSUPP.
    Errors,
}

#[derive(Debug, Clone, Copy)]
struct Descriptor {
    index: u16,
    address: u64,
    len: u32,
    writable: bool,
}

struct FakeDevice {
    memory: Vec<DmaRegion>,
    size: u16,
    descriptors: u64,
    available: u64,
    used: u64,
    disk: Vec<u8>,
    mode: Mode,
    rng: Rng,
    seen_available: u16,
    used_index: u16,
    pending: Vec<(u16, Vec<Descriptor>)>,
    bogus_sent: u32,
    writes_seen: u32,
}

impl FakeDevice {
    /// A device in `mode` over `disk`, serving `blk`'s queue with DMA in `memory`.
    fn new(blk: &BlkQueue, memory: Vec<DmaRegion>, disk: Vec<u8>, mode: Mode, seed: u64) -> Self {
        FakeDevice {
            memory,
            size: QUEUE_SIZE,
            descriptors: blk.queue().descriptor_table_address(),
            available: blk.queue().available_address(),
            used: blk.queue().used_address(),
            disk,
            mode,
            rng: Rng::new(seed),
            seen_available: 0,
            used_index: 0,
            pending: Vec::new(),
            bogus_sent: 0,
            writes_seen: 0,
        }
    }

    /// Returns the region and offset of `address..address + len`; a wild address from the
    /// driver fails the test.
    fn locate(&self, address: u64, len: usize) -> (&DmaRegion, usize) {
        let region = self
            .memory
            .iter()
            .find(|region| region.contains(address, len))
            .unwrap_or_else(|| panic!("driver gave the device a wild address {address:#x}+{len}"));
        (region, (address - region.address()) as usize)
    }

    fn read_u16(&self, address: u64) -> u16 {
        let (region, offset) = self.locate(address, 2);
        region.read_u16(offset)
    }

    fn write_u16(&self, address: u64, value: u16) {
        let (region, offset) = self.locate(address, 2);
        region.write_u16(offset, value);
    }

    fn write_u32(&self, address: u64, value: u32) {
        let (region, offset) = self.locate(address, 4);
        region.write_u32(offset, value);
    }

    fn read_bytes(&self, address: u64, buffer: &mut [u8]) {
        let (region, offset) = self.locate(address, buffer.len());
        region.read_bytes(offset, buffer);
    }

    fn write_bytes(&self, address: u64, bytes: &[u8]) {
        let (region, offset) = self.locate(address, bytes.len());
        region.write_bytes(offset, bytes);
    }

    fn descriptor(&self, index: u16) -> (Descriptor, Option<u16>) {
        assert!(index < self.size, "descriptor index {index} out of range");
        let at = self.descriptors + 16 * u64::from(index);
        let mut raw = [0u8; 16];
        self.read_bytes(at, &mut raw);
        let flags = u16::from_le_bytes([raw[12], raw[13]]);
        let descriptor = Descriptor {
            index,
            address: u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes")),
            len: u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")),
            writable: flags & 2 != 0,
        };
        let next = (flags & 1 != 0).then(|| u16::from_le_bytes([raw[14], raw[15]]));
        (descriptor, next)
    }

    fn collect_available(&mut self) {
        let index = self.read_u16(self.available + 2);
        fence(Ordering::Acquire);
        while self.seen_available != index {
            let slot = u64::from(self.seen_available % self.size);
            let head = self.read_u16(self.available + 4 + 2 * slot);
            let mut chain = Vec::new();
            let mut next = Some(head);
            while let Some(index) = next {
                let (descriptor, following) = self.descriptor(index);
                chain.push(descriptor);
                assert!(chain.len() <= usize::from(self.size), "descriptor loop");
                next = following;
            }
            self.pending.push((head, chain));
            self.seen_available = self.seen_available.wrapping_add(1);
        }
    }

    /// Performs one request; returns the bytes written into device-writable buffers.
    fn serve(&mut self, chain: &[Descriptor]) -> u32 {
        assert!(
            chain.len() >= 2,
            "a request has at least a header and a status"
        );
        let header = chain[0];
        let status = chain[chain.len() - 1];
        let data = &chain[1..chain.len() - 1];
        assert!(
            !header.writable && header.len == 16,
            "bad header descriptor {header:?}"
        );
        assert!(
            status.writable && status.len == 1,
            "bad status descriptor {status:?}"
        );
        let mut raw = [0u8; 16];
        self.read_bytes(header.address, &mut raw);
        let request_type = u32::from_le_bytes(raw[0..4].try_into().expect("4 bytes"));
        assert_eq!(&raw[4..8], &[0; 4], "reserved field must be zero");
        let sector = u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes"));
        let total: usize = data.iter().map(|descriptor| descriptor.len as usize).sum();
        let fails = self.mode == Mode::Errors && sector % 5 == 2;

        let (code, written) = match request_type {
            0 | 1 if fails => (STATUS_IO_ERROR, 1),
            0 | 1 => {
                let reading = request_type == 0;
                assert!(data.iter().all(|descriptor| descriptor.writable == reading));
                let start = sector as usize * SECTOR_SIZE;
                if start + total > self.disk.len() {
                    (STATUS_IO_ERROR, 1)
                } else {
                    let mut at = start;
                    for descriptor in data {
                        let len = descriptor.len as usize;
                        if reading {
                            let bytes = self.disk[at..at + len].to_vec();
                            self.write_bytes(descriptor.address, &bytes);
                        } else {
                            let mut bytes = vec![0u8; len];
                            self.read_bytes(descriptor.address, &mut bytes);
                            self.disk[at..at + len].copy_from_slice(&bytes);
                        }
                        at += len;
                    }
                    if !reading {
                        self.writes_seen += 1;
                    }
                    (STATUS_OK, if reading { total as u32 + 1 } else { 1 })
                }
            }
            4 | 8 if self.mode == Mode::Errors => (STATUS_UNSUPPORTED, 1),
            4 => {
                assert!(data.is_empty() && sector == 0);
                (STATUS_OK, 1)
            }
            8 => {
                assert!(data.len() == 1 && data[0].writable && data[0].len as usize == ID_SIZE);
                let mut id = [0u8; ID_SIZE];
                id[..DEVICE_ID.len()].copy_from_slice(DEVICE_ID);
                self.write_bytes(data[0].address, &id);
                (STATUS_OK, ID_SIZE as u32 + 1)
            }
            _ => (STATUS_UNSUPPORTED, 1),
        };
        self.write_bytes(status.address, &[code]);
        written
    }

    fn push_used(&mut self, id: u32, len: u32) {
        let slot = u64::from(self.used_index % self.size);
        self.write_u32(self.used + 4 + 8 * slot, id);
        self.write_u32(self.used + 8 + 8 * slot, len);
        self.used_index = self.used_index.wrapping_add(1);
        // Data, status and entry before the index, as a device's write barrier does.
        fence(Ordering::Release);
        self.write_u16(self.used + 2, self.used_index);
    }

    /// Returns an id that is no head in flight: out of range, or the second descriptor of
    /// a chain the device holds (in flight, but not a head).
    fn bogus_id(&mut self) -> u32 {
        let inner = self.pending.iter().find(|(_, chain)| chain.len() >= 2);
        match inner {
            Some((_, chain)) if self.rng.below(2) == 0 => u32::from(chain[1].index),
            _ => u32::from(self.size) + self.rng.below(100_000) as u32,
        }
    }

    fn run(mut self, stop: &AtomicBool) -> FakeDevice {
        loop {
            self.collect_available();
            if self.pending.is_empty() {
                if stop.load(Ordering::Acquire) {
                    return self;
                }
                thread::yield_now();
                continue;
            }
            match self.rng.below(16) {
                0 => thread::sleep(Duration::from_micros(self.rng.below(40))),
                1..=3 => thread::yield_now(),
                _ => {}
            }
            // Often let requests pile up, so there is something to reorder.
            if self.pending.len() < 6 && self.rng.below(3) != 0 {
                thread::yield_now();
                continue;
            }
            let pick = self.rng.below(self.pending.len() as u64) as usize;
            let (head, chain) = self.pending.swap_remove(pick);
            if self.mode == Mode::BogusIds && self.rng.below(4) == 0 {
                // Always followed by a real entry, so bogus entries cannot overrun the
                // used ring: at most one per real request in flight.
                let id = self.bogus_id();
                self.push_used(id, 1);
                self.bogus_sent += 1;
            }
            let written = self.serve(&chain);
            self.push_used(u32::from(head), written);
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

struct CountingDoorbell(u32);

impl Transport for CountingDoorbell {
    fn notify(&mut self, queue: u16) {
        assert_eq!(queue, 0);
        self.0 += 1;
    }
}

#[derive(Debug)]
enum Operation {
    Read {
        sector: u64,
        buffer: usize,
        len: usize,
    },
    Write {
        sector: u64,
        buffer: usize,
        data: Vec<u8>,
    },
    Flush,
    GetId {
        buffer: usize,
    },
}

#[derive(Debug, Default)]
struct Outcome {
    completed: u32,
    out_of_order: u32,
    max_in_flight: usize,
    bad_ids: u32,
    bogus_sent: u32,
    io_errors: u32,
    unsupported: u32,
    notifications: u32,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn sectors_of(operation: &Operation) -> Option<(u64, u64)> {
    match operation {
        Operation::Read { sector, len, .. } => Some((*sector, sector + (len / SECTOR_SIZE) as u64)),
        Operation::Write { sector, data, .. } => {
            Some((*sector, sector + (data.len() / SECTOR_SIZE) as u64))
        }
        _ => None,
    }
}

fn disk_config() -> BlkConfig {
    BlkConfig {
        capacity: DISK_SECTORS,
        size_max: Some(4096), // a 16 KiB request takes four data segments
        segment_max: Some(8),
        block_size: Some(512),
        read_only: false,
        flush: true,
    }
}

/// Runs `operations` random requests, up to `DEPTH` in flight over non-overlapping
/// sectors, against a device in `mode`; checks every completion against a model disk and,
/// at the end, the device's disk against the model.
fn run_workload(mode: Mode, seed: u64, operations: u32, config: BlkConfig) -> Outcome {
    let queue_memory = HostMemory::new(BlkQueue::memory_size(QUEUE_SIZE));
    let buffers = HostMemory::new(DEPTH * BUFFER_BYTES);
    let mut rng = Rng::new(seed);
    let mut model: Vec<u8> = (0..DISK_SECTORS as usize * SECTOR_SIZE)
        .map(|i| (i * 7 + i / 512) as u8)
        .collect();

    let mut blk = BlkQueue::new(queue_memory.region(), QUEUE_SIZE, 0, config).expect("queue");
    let data = buffers.region();
    let device = FakeDevice::new(
        &blk,
        vec![queue_memory.region(), buffers.region()],
        model.clone(),
        mode,
        seed ^ 0xDEAD_BEEF,
    );
    let stop = AtomicBool::new(false);
    let mut outcome = Outcome::default();
    let mut doorbell = CountingDoorbell(0);

    let device = thread::scope(|scope| {
        let device = scope.spawn(|| device.run(&stop));
        let _stop = StopOnDrop(&stop);
        let mut in_flight: HashMap<RequestId, Operation> = HashMap::new();
        let mut free_buffers: Vec<usize> = (0..DEPTH).collect();
        let mut submitted = 0;
        let mut latest_completed: Option<RequestId> = None;
        let started = std::time::Instant::now();

        while submitted < operations || !in_flight.is_empty() {
            let want_submit =
                submitted < operations && !free_buffers.is_empty() && rng.below(3) != 0;
            if want_submit {
                let buffer = free_buffers[free_buffers.len() - 1];
                let buffer_address = data.address() + (buffer * BUFFER_BYTES) as u64;
                let sectors = 1 + rng.below(MAX_SECTORS_PER_REQUEST);
                let sector = rng.below(DISK_SECTORS - sectors + 1);
                let len = sectors as usize * SECTOR_SIZE;
                let busy = in_flight
                    .values()
                    .filter_map(sectors_of)
                    .any(|range| overlaps(range, (sector, sector + sectors)));
                let choice = rng.below(20);
                let (operation, result) = match choice {
                    0 => (Operation::Flush, blk.flush()),
                    1 => (Operation::GetId { buffer }, blk.get_id(buffer_address)),
                    _ if busy => continue,
                    2..=10 => {
                        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                        data.write_bytes(buffer * BUFFER_BYTES, &bytes);
                        let result = blk.write(sector, buffer_address, len);
                        (
                            Operation::Write {
                                sector,
                                buffer,
                                data: bytes,
                            },
                            result,
                        )
                    }
                    _ => (
                        Operation::Read {
                            sector,
                            buffer,
                            len,
                        },
                        blk.read(sector, buffer_address, len),
                    ),
                };
                match result {
                    Ok(id) => {
                        if !matches!(operation, Operation::Flush) {
                            free_buffers.pop();
                        }
                        in_flight.insert(id, operation);
                        submitted += 1;
                        outcome.max_in_flight = outcome.max_in_flight.max(blk.in_flight());
                        assert_eq!(blk.in_flight(), in_flight.len());
                        if rng.below(3) == 0 {
                            blk.kick(&mut doorbell);
                        }
                        continue;
                    }
                    Err(BlkError::QueueFull) => blk.kick(&mut doorbell),
                    Err(other) => panic!("submission failed: {other}"),
                }
            }
            blk.kick(&mut doorbell);
            let Some(completion) = blk.complete() else {
                assert!(!device.is_finished(), "the fake device stopped early");
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "no progress: {outcome:?}"
                );
                thread::yield_now();
                continue;
            };
            let Completed { id, result } = match completion {
                Ok(completed) => completed,
                Err(BlkError::BadDevice(DeviceFault::Queue(QueueError::BadDescriptor(id)))) => {
                    assert!(id >= u32::from(QUEUE_SIZE) || mode == Mode::BogusIds);
                    outcome.bad_ids += 1;
                    continue;
                }
                Err(other) => panic!("unexpected completion error {other}"),
            };
            outcome.completed += 1;
            if latest_completed.is_some_and(|latest| id < latest) {
                outcome.out_of_order += 1;
            }
            latest_completed = latest_completed.max(Some(id));
            let operation = in_flight
                .remove(&id)
                .expect("completion for a request in flight");
            let fails = mode == Mode::Errors
                && sectors_of(&operation).is_some_and(|range| range.0 % 5 == 2);
            match (operation, result) {
                (
                    Operation::Read {
                        sector,
                        buffer,
                        len,
                    },
                    result,
                ) => {
                    free_buffers.push(buffer);
                    if fails {
                        assert_eq!(result, Err(BlkError::IoError));
                        outcome.io_errors += 1;
                        continue;
                    }
                    assert_eq!(result, Ok(len));
                    let mut got = vec![0u8; len];
                    data.read_bytes(buffer * BUFFER_BYTES, &mut got);
                    let start = sector as usize * SECTOR_SIZE;
                    assert!(
                        got == model[start..start + len],
                        "read of sector {sector} returned wrong data"
                    );
                }
                (
                    Operation::Write {
                        sector,
                        buffer,
                        data: bytes,
                    },
                    result,
                ) => {
                    free_buffers.push(buffer);
                    if fails {
                        assert_eq!(result, Err(BlkError::IoError));
                        outcome.io_errors += 1;
                        continue;
                    }
                    assert_eq!(result, Ok(bytes.len()));
                    let start = sector as usize * SECTOR_SIZE;
                    model[start..start + bytes.len()].copy_from_slice(&bytes);
                }
                (Operation::Flush, result) if mode == Mode::Errors => {
                    assert_eq!(result, Err(BlkError::Unsupported));
                    outcome.unsupported += 1;
                }
                (Operation::Flush, result) => assert_eq!(result, Ok(0)),
                (Operation::GetId { buffer }, result) => {
                    free_buffers.push(buffer);
                    if mode == Mode::Errors {
                        assert_eq!(result, Err(BlkError::Unsupported));
                        outcome.unsupported += 1;
                        continue;
                    }
                    assert_eq!(result, Ok(ID_SIZE));
                    let mut id = [0u8; ID_SIZE];
                    data.read_bytes(buffer * BUFFER_BYTES, &mut id);
                    assert_eq!(&id[..DEVICE_ID.len()], DEVICE_ID);
                }
            }
        }
        stop.store(true, Ordering::Release);
        device.join().expect("fake device panicked")
    });

    assert!(blk.complete().is_none(), "nothing left over");
    assert_eq!(blk.in_flight(), 0);
    assert_eq!(
        blk.queue().free_descriptors(),
        QUEUE_SIZE,
        "descriptors lost"
    );
    assert!(device.disk == model, "device disk differs from the model");
    outcome.bogus_sent = device.bogus_sent;
    outcome.notifications = doorbell.0;
    outcome
}

#[test]
fn many_requests_in_flight_complete_with_correct_data() {
    for seed in 1..=3 {
        let outcome = run_workload(Mode::Normal, seed, 3000, disk_config());
        assert_eq!(outcome.completed, 3000);
        assert!(outcome.max_in_flight > 4, "{outcome:?}");
        assert!(
            outcome.out_of_order > 100,
            "device never reordered: {outcome:?}"
        );
        assert!(outcome.notifications > 0);
        assert_eq!(outcome.bad_ids, 0);
    }
}

#[test]
fn requests_without_device_limits_use_one_data_segment() {
    let config = BlkConfig {
        size_max: None,
        segment_max: None,
        ..disk_config()
    };
    let outcome = run_workload(Mode::Normal, 9, 1000, config);
    assert_eq!(outcome.completed, 1000);
}

#[test]
fn bogus_used_ids_are_errors_and_the_queue_keeps_working() {
    for seed in 4..=6 {
        let outcome = run_workload(Mode::BogusIds, seed, 3000, disk_config());
        assert_eq!(outcome.completed, 3000);
        assert!(outcome.bogus_sent > 100, "{outcome:?}");
        assert_eq!(outcome.bad_ids, outcome.bogus_sent);
    }
}

#[test]
fn device_errors_reach_the_right_requests() {
    let outcome = run_workload(Mode::Errors, 7, 3000, disk_config());
    assert_eq!(outcome.completed, 3000);
    assert!(outcome.io_errors > 100, "{outcome:?}");
    assert!(outcome.unsupported > 50, "{outcome:?}");
}

#[test]
fn read_only_and_out_of_range_requests_never_reach_the_device() {
    let queue_memory = HostMemory::new(BlkQueue::memory_size(QUEUE_SIZE));
    let buffers = HostMemory::new(BUFFER_BYTES);
    let config = BlkConfig {
        read_only: true,
        ..disk_config()
    };
    let mut blk = BlkQueue::new(queue_memory.region(), QUEUE_SIZE, 0, config).expect("queue");
    let data = buffers.region();
    let disk: Vec<u8> = (0..DISK_SECTORS as usize * SECTOR_SIZE)
        .map(|i| (i / SECTOR_SIZE) as u8)
        .collect();
    let device = FakeDevice::new(
        &blk,
        vec![queue_memory.region(), buffers.region()],
        disk,
        Mode::Normal,
        8,
    );
    let stop = AtomicBool::new(false);
    let device = thread::scope(|scope| {
        let device = scope.spawn(|| device.run(&stop));
        let _stop = StopOnDrop(&stop);
        assert_eq!(blk.write(0, data.address(), 512), Err(BlkError::ReadOnly));
        assert_eq!(
            blk.read(DISK_SECTORS, data.address(), 512),
            Err(BlkError::OutOfRange)
        );
        assert_eq!(
            blk.read(DISK_SECTORS - 1, data.address(), 1024),
            Err(BlkError::OutOfRange)
        );
        assert_eq!(blk.in_flight(), 0);
        let read = blk
            .read(DISK_SECTORS - 2, data.address(), 1024)
            .expect("last two sectors");
        let flush = blk.flush().expect("flush is fine on a read-only disk");
        let mut doorbell = CountingDoorbell(0);
        blk.kick(&mut doorbell);
        let mut done = Vec::new();
        while done.len() < 2 {
            match blk.complete() {
                Some(completion) => done.push(completion.expect("a request of ours")),
                None => {
                    assert!(!device.is_finished(), "the fake device stopped early");
                    thread::yield_now();
                }
            }
        }
        done.sort_by_key(|completed| completed.id);
        assert_eq!(
            done,
            [
                Completed {
                    id: read,
                    result: Ok(1024)
                },
                Completed {
                    id: flush,
                    result: Ok(0)
                }
            ]
        );
        stop.store(true, Ordering::Release);
        device.join().expect("fake device panicked")
    });
    assert_eq!(device.writes_seen, 0);
    let mut got = vec![0u8; 1024];
    data.read_bytes(0, &mut got);
    assert!(got[..512]
        .iter()
        .all(|&byte| byte == (DISK_SECTORS - 2) as u8));
    assert!(got[512..]
        .iter()
        .all(|&byte| byte == (DISK_SECTORS - 1) as u8));
}
