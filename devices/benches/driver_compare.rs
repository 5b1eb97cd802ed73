//! Host benchmark: this crate's virtio-blk driver (`devices::virtio::blk`) against the
//! `virtio-drivers` crate (0.13, `device::blk::VirtIOBlk`), so the choice between them rests
//! on a measurement.
//!
//! Both drivers talk to the same emulated device: a thread pinned to another CPU that polls
//! the available ring over shared memory, follows the descriptor chain (direct or indirect),
//! copies the sectors from a RAM disk into the driver's buffer, writes the status byte and
//! the used entry, and goes straight on to the next request. What is measured is read
//! requests per second as seen by the driver thread: submit, notify, wait for the used
//! entry, and take the result. The device's work per request is the same for both drivers
//! (same descriptor layout: header, one data buffer, status byte), so the difference between
//! two figures is driver-side cost.
//!
//! - `manada`: `BlkQueue::read` (range check, header and status byte written into its DMA
//!   slot, chain added), `BlkQueue::kick` (publish, SeqCst fence, notify through a
//!   `Transport` that stores into a doorbell word), then `BlkQueue::complete` until the
//!   request comes back (used entry checked, status byte and used length validated).
//!   Deeper queues do the same per request, completions matched to buffers by id.
//! - `virtio-drivers`: its own public MMIO transport (`MmioTransport`) over a register block
//!   in ordinary memory (its fake transport is `#[cfg(test)]` only, and its `Transport` trait
//!   cannot be implemented here without depending on `zerocopy`). Queue depth 1 is
//!   `VirtIOBlk::read_blocks` (add, notify by a volatile store to the QueueNotify register,
//!   spin on the used index, pop, status); deeper queues are `read_blocks_nb` +
//!   `peek_used` + `complete_read_blocks`. Its queue has a fixed 16 descriptors, so without
//!   `VIRTIO_F_INDIRECT_DESC` at most five three-descriptor reads fit; at depth 16 the device
//!   offers indirect descriptors, and the crate then allocates (and frees) an indirect table
//!   on the heap per request, as it would against QEMU, which offers that feature by default.
//!
//! Each figure is the median of several runs; every run sets up the driver and the device
//! afresh, warms up, then counts completed requests for a fixed time. Runs of the different
//! cases are interleaved so drift hits them alike. Data read back is checked against the RAM
//! disk after every run.
//!
//! `cargo bench -p devices --bench driver_compare`; `DRIVER_COMPARE_QUICK=1` for a short
//! smoke run; `DRIVER_COMPARE_JSON=path` also writes `[{"name", "value", "unit"}, ...]`.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::hint::spin_loop;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use devices::virtio::blk::{BlkConfig, BlkQueue, RequestId, SECTOR_SIZE};
use devices::virtio::dma::{DmaRegion, PAGE_SIZE};
use devices::virtio::Transport as ManadaTransport;
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// RAM disk size: small enough to stay in cache, so the device is as fast as it can be.
const DISK_BYTES: usize = 1 << 20;
const DISK_SECTORS: u64 = (DISK_BYTES / SECTOR_SIZE) as u64;
/// The most descriptors one request may use (the device checks).
const MAX_CHAIN: usize = 8;
/// virtio-drivers' virtio-blk queue size (fixed in the crate).
const VD_QUEUE_SIZE: u16 = 16;

/// The byte at `index` of the RAM disk.
fn disk_byte(index: usize) -> u8 {
    (index * 7 + index / SECTOR_SIZE) as u8
}

/// Returns the sector after a `sectors`-long read at `sector`, wrapping at the disk's end.
fn next_sector(sector: u64, sectors: u64) -> u64 {
    let next = sector + sectors;
    if next + sectors > DISK_SECTORS {
        0
    } else {
        next
    }
}

fn check_data(what: &str, sector: u64, data: &[u8]) {
    let start = sector as usize * SECTOR_SIZE;
    let wrong = data
        .iter()
        .enumerate()
        .position(|(index, byte)| *byte != disk_byte(start + index));
    assert!(
        wrong.is_none(),
        "{what}: read of sector {sector} returned wrong data at byte {wrong:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Memory and CPUs.

/// Page-aligned, zeroed host memory, freed on drop.
struct HostMemory {
    base: NonNull<u8>,
    layout: Layout,
}

impl HostMemory {
    fn new(len: usize) -> HostMemory {
        let layout = Layout::from_size_align(len, PAGE_SIZE).expect("layout");
        // SAFETY: `len` is never zero here.
        let base = unsafe { alloc_zeroed(layout) };
        HostMemory {
            base: NonNull::new(base).expect("host allocation failed"),
            layout,
        }
    }

    /// Returns the address a device is given (identity mapping: the pointer value).
    fn address(&self) -> u64 {
        self.base.as_ptr().expose_provenance() as u64
    }

    /// Returns a DMA view for this crate's driver.
    fn region(&self) -> DmaRegion {
        // SAFETY: the allocation is live and page-aligned until `drop`, which comes after the
        // device thread is joined and the driver is gone; every view accesses it atomically.
        unsafe { DmaRegion::from_raw(self.base.as_ptr(), self.layout.size()) }.expect("region")
    }

    /// Returns the memory as bytes, for virtio-drivers, which takes buffers as slices.
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the allocation is live, initialised (zeroed) and borrowed exclusively.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.layout.size()) }
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}

#[cfg(target_os = "linux")]
mod affinity {
    /// Words in a `cpu_set_t` (1024 CPUs).
    const WORDS: usize = 16;

    extern "C" {
        fn sched_getaffinity(pid: i32, size: usize, mask: *mut u64) -> i32;
        fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }

    /// Returns the CPUs this process may run on.
    pub fn allowed() -> Vec<usize> {
        let mut mask = [0u64; WORDS];
        // SAFETY: `mask` is a writable `cpu_set_t`-sized buffer; pid 0 is this thread.
        let result = unsafe { sched_getaffinity(0, size_of_val(&mask), mask.as_mut_ptr()) };
        if result != 0 {
            return Vec::new();
        }
        (0..WORDS * 64)
            .filter(|cpu| mask[cpu / 64] & (1 << (cpu % 64)) != 0)
            .collect()
    }

    /// Pins the calling thread to `cpu`; returns false if that failed.
    pub fn pin(cpu: usize) -> bool {
        let mut mask = [0u64; WORDS];
        mask[cpu / 64] |= 1 << (cpu % 64);
        // SAFETY: `mask` is a readable `cpu_set_t`-sized buffer; pid 0 is this thread.
        unsafe { sched_setaffinity(0, size_of_val(&mask), mask.as_ptr()) == 0 }
    }
}

#[cfg(not(target_os = "linux"))]
mod affinity {
    pub fn allowed() -> Vec<usize> {
        Vec::new()
    }

    pub fn pin(_cpu: usize) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------
// The device.

/// VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT.
const DESCRIPTOR_NEXT: u16 = 1;
const DESCRIPTOR_WRITE: u16 = 2;
const DESCRIPTOR_INDIRECT: u16 = 4;

/// Where a split virtqueue lives, as the transport told the device.
#[derive(Debug, Clone, Copy)]
struct QueueLayout {
    descriptors: u64,
    available: u64,
    used: u64,
    size: u16,
}

#[derive(Debug, Clone, Copy, Default)]
struct Descriptor {
    address: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// Reads a `T` the driver published at `address`.
///
/// # Safety
/// `address` must be the identity-mapped address of live memory the driver gave the device
/// (a ring or a buffer of a request in flight), published before the available index the
/// caller has loaded with `Acquire`; the driver does not write it until the used entry.
unsafe fn load<T: Copy>(address: u64) -> T {
    // SAFETY: the caller's contract; every address the drivers give out was exposed.
    unsafe { ptr::read_volatile(ptr::with_exposed_provenance::<T>(address as usize)) }
}

/// Writes `value` at `address`, memory the driver gave the device to write.
///
/// # Safety
/// As for [`load`]; the driver reads the memory only after the used index that follows.
unsafe fn store<T: Copy>(address: u64, value: T) {
    // SAFETY: the caller's contract; every address the drivers give out was exposed.
    unsafe {
        ptr::write_volatile(
            ptr::with_exposed_provenance_mut::<T>(address as usize),
            value,
        )
    }
}

/// Returns the ring index (available or used `idx`) at `address` as an atomic.
///
/// # Safety
/// `address` must be a live, 2-aligned ring index that both sides access atomically only,
/// and stay live for as long as the reference is used.
unsafe fn ring_index<'a>(address: u64) -> &'a AtomicU16 {
    // SAFETY: the caller's contract.
    unsafe { AtomicU16::from_ptr(ptr::with_exposed_provenance_mut(address as usize)) }
}

/// A virtio-blk device that serves reads from a RAM disk as fast as it can: it polls the
/// available ring, completes every request in order, and never sets VIRTQ_USED_F_NO_NOTIFY,
/// so both drivers ring the doorbell on every submission.
struct RamDiskDevice {
    queue: QueueLayout,
    disk: Vec<u8>,
    seen_available: u16,
    used_index: u16,
    served: u64,
}

impl RamDiskDevice {
    fn new(queue: QueueLayout) -> RamDiskDevice {
        RamDiskDevice {
            queue,
            disk: (0..DISK_BYTES).map(disk_byte).collect(),
            seen_available: 0,
            used_index: 0,
            served: 0,
        }
    }

    fn descriptor(table: u64, index: u16) -> Descriptor {
        let at = table + 16 * u64::from(index);
        // SAFETY: the table and its entries were published before the available index we
        // loaded (the caller's `Acquire`), and stay put until the used entry.
        unsafe {
            Descriptor {
                address: load(at),
                len: load(at + 8),
                flags: load(at + 12),
                next: load(at + 14),
            }
        }
    }

    /// Returns the chain starting at `head`, following an indirect table if there is one.
    fn chain(&self, head: u16, chain: &mut [Descriptor; MAX_CHAIN]) -> usize {
        assert!(head < self.queue.size, "head {head} out of range");
        let first = Self::descriptor(self.queue.descriptors, head);
        let (table, limit, mut current) = if first.flags & DESCRIPTOR_INDIRECT != 0 {
            let entries = first.len / 16;
            assert!(
                entries > 0 && entries as usize <= MAX_CHAIN,
                "indirect table"
            );
            (
                first.address,
                entries as u16,
                Self::descriptor(first.address, 0),
            )
        } else {
            (self.queue.descriptors, self.queue.size, first)
        };
        let mut count = 0;
        loop {
            assert!(count < MAX_CHAIN, "chain too long");
            chain[count] = current;
            count += 1;
            if current.flags & DESCRIPTOR_NEXT == 0 {
                return count;
            }
            assert!(current.next < limit, "next {} out of range", current.next);
            current = Self::descriptor(table, current.next);
        }
    }

    /// Performs the request at `head`; returns the bytes written into the chain.
    fn serve(&mut self, head: u16) -> u32 {
        let mut chain = [Descriptor::default(); MAX_CHAIN];
        let count = self.chain(head, &mut chain);
        assert!(count >= 2, "a request has a header and a status");
        let header = chain[0];
        let status = chain[count - 1];
        let data = &chain[1..count - 1];
        assert!(header.flags & DESCRIPTOR_WRITE == 0 && header.len == 16);
        assert!(status.flags & DESCRIPTOR_WRITE != 0 && status.len >= 1);
        // SAFETY: the header is a published, device-readable buffer of 16 bytes.
        let (request_type, sector) =
            unsafe { (load::<u32>(header.address), load::<u64>(header.address + 8)) };
        let total: usize = data.iter().map(|part| part.len as usize).sum();
        let start = sector as usize * SECTOR_SIZE;
        let (code, written) = if request_type != 0 {
            (2u8, 1) // VIRTIO_BLK_S_UNSUPP: only reads are benchmarked
        } else if start + total > self.disk.len() {
            (1u8, 1) // VIRTIO_BLK_S_IOERR
        } else {
            let mut at = start;
            for part in data {
                assert!(
                    part.flags & DESCRIPTOR_WRITE != 0,
                    "read into a readable buffer"
                );
                let len = part.len as usize;
                // SAFETY: a published, device-writable buffer of `len` bytes that the driver
                // leaves alone until the used entry; the source is our own disk image.
                unsafe {
                    ptr::copy_nonoverlapping(
                        self.disk.as_ptr().add(at),
                        ptr::with_exposed_provenance_mut::<u8>(part.address as usize),
                        len,
                    );
                }
                at += len;
            }
            (0u8, total as u32 + 1)
        };
        // SAFETY: the status buffer is published and device-writable.
        unsafe { store(status.address, code) };
        written
    }

    fn push_used(&mut self, id: u16, len: u32) {
        let slot = u64::from(self.used_index % self.queue.size);
        let entry = self.queue.used + 4 + 8 * slot;
        // SAFETY: the used ring is live while the driver is; the entry at `slot` is not one
        // the driver still reads (at most `size` requests are in flight).
        unsafe {
            store(entry, u32::from(id));
            store(entry + 4, len);
        }
        self.used_index = self.used_index.wrapping_add(1);
        // SAFETY: the used index, accessed atomically by both sides. `Release`: data, status
        // and entry before the index, as a device's write barrier does.
        unsafe { ring_index(self.queue.used + 2) }.store(self.used_index, Ordering::Release);
    }

    fn run(mut self, stop: &AtomicBool) -> RamDiskDevice {
        // SAFETY: the available index stays live until the driver is dropped, after this
        // thread is joined; the driver stores it atomically.
        let available = unsafe { ring_index(self.queue.available + 2) };
        loop {
            let index = available.load(Ordering::Acquire);
            if index == self.seen_available {
                if stop.load(Ordering::Acquire) {
                    return self;
                }
                spin_loop();
                continue;
            }
            while self.seen_available != index {
                let slot = u64::from(self.seen_available % self.queue.size);
                // SAFETY: the ring entry was published before the index loaded above.
                let head: u16 = unsafe { load(self.queue.available + 4 + 2 * slot) };
                let written = self.serve(head);
                self.push_used(head, written);
                self.seen_available = self.seen_available.wrapping_add(1);
                self.served += 1;
            }
        }
    }
}

/// Stops the device when dropped, also while a panicking driver thread unwinds, so a failure
/// fails instead of hanging in the scope's join.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `driver` on this thread while a device serves `queue` from another CPU; returns what
/// `driver` returned and the number of requests the device served.
fn with_device<R>(queue: QueueLayout, cpus: Cpus, driver: impl FnOnce() -> R) -> (R, u64) {
    let stop = AtomicBool::new(false);
    let device = RamDiskDevice::new(queue);
    thread::scope(|scope| {
        let device = scope.spawn(|| {
            if let Some(cpu) = cpus.device {
                affinity::pin(cpu);
            }
            device.run(&stop)
        });
        let result = {
            let _stop = StopOnDrop(&stop);
            driver()
        };
        let device = device.join().expect("device thread panicked");
        (result, device.served)
    })
}

// ---------------------------------------------------------------------------------------
// Timing.

/// Warms up, then calls `step` (which returns requests completed) for `budget`; returns
/// requests per second.
fn timed(warmup: Duration, budget: Duration, mut step: impl FnMut() -> u64) -> (f64, u64) {
    let start = Instant::now();
    while start.elapsed() < warmup {
        for _ in 0..64 {
            step();
        }
    }
    let start = Instant::now();
    let mut done = 0u64;
    loop {
        for _ in 0..64 {
            done += step();
        }
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return (done as f64 / elapsed.as_secs_f64(), done);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Cpus {
    driver: Option<usize>,
    device: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    runs: usize,
    warmup: Duration,
    budget: Duration,
    cpus: Cpus,
}

// ---------------------------------------------------------------------------------------
// This crate's driver.

/// The doorbell: a store into a register word, as a notify write would be.
struct Doorbell {
    register: AtomicU32,
    rings: u64,
}

impl ManadaTransport for Doorbell {
    fn notify(&mut self, queue: u16) {
        self.register.store(u32::from(queue), Ordering::Relaxed);
        self.rings += 1;
    }
}

struct ManadaRun {
    blk: BlkQueue,
    doorbell: Doorbell,
    buffers: DmaRegion,
    len: usize,
    /// Per buffer: the request in flight and its sector.
    in_flight: Vec<Option<(RequestId, u64)>>,
    /// Per buffer: the sector of the last read completed into it.
    last: Vec<Option<u64>>,
    free: Vec<usize>,
    sector: u64,
}

impl ManadaRun {
    fn buffer_address(&self, buffer: usize) -> u64 {
        self.buffers.address() + (buffer * self.len) as u64
    }

    /// One blocking read: submit, notify, spin until it is back, check the result.
    fn read_blocking(&mut self) -> u64 {
        let sector = self.sector;
        self.sector = next_sector(sector, (self.len / SECTOR_SIZE) as u64);
        let id = self
            .blk
            .read(sector, self.buffer_address(0), self.len)
            .expect("manada submit");
        self.blk.kick(&mut self.doorbell);
        let completed = loop {
            match self.blk.complete() {
                Some(completion) => break completion.expect("manada completion"),
                None => spin_loop(),
            }
        };
        assert!(
            completed.id == id && completed.result == Ok(self.len),
            "{completed:?}"
        );
        self.last[0] = Some(sector);
        1
    }

    /// Fills every free buffer with a read, each published and notified at once (as
    /// virtio-drivers' `read_blocks_nb` does; publishing a batch with one kick was slower
    /// against this polling device), then takes every completion.
    fn step(&mut self) -> u64 {
        while let Some(buffer) = self.free.pop() {
            let sector = self.sector;
            self.sector = next_sector(sector, (self.len / SECTOR_SIZE) as u64);
            let id = self
                .blk
                .read(sector, self.buffer_address(buffer), self.len)
                .expect("manada submit");
            self.in_flight[buffer] = Some((id, sector));
            self.blk.kick(&mut self.doorbell);
        }
        let done = self.reap();
        if done == 0 {
            spin_loop();
        }
        done
    }

    fn reap(&mut self) -> u64 {
        let mut done = 0;
        while let Some(completion) = self.blk.complete() {
            let completed = completion.expect("manada completion");
            assert_eq!(completed.result, Ok(self.len));
            let buffer = self
                .in_flight
                .iter()
                .position(|entry| entry.is_some_and(|(id, _)| id == completed.id))
                .expect("a request in flight");
            let (_, sector) = self.in_flight[buffer].take().expect("in flight");
            self.last[buffer] = Some(sector);
            self.free.push(buffer);
            done += 1;
        }
        done
    }

    fn drain(&mut self) {
        while self.blk.in_flight() > 0 {
            if self.reap() == 0 {
                spin_loop();
            }
        }
    }

    fn verify(&self) {
        let mut data = vec![0u8; self.len];
        for (buffer, sector) in self.last.iter().enumerate() {
            let sector = sector.expect("every buffer was used");
            self.buffers.read_bytes(buffer * self.len, &mut data);
            check_data("manada", sector, &data);
        }
    }
}

/// Measures this crate's driver: `depth` reads of `len` bytes in flight.
fn measure_manada(depth: usize, len: usize, settings: &Settings) -> f64 {
    // Three descriptors per read; the smallest power-of-two queue that holds `depth` of them
    // (16, like virtio-drivers, up to depth 5).
    let queue_size = (3 * depth).next_power_of_two().max(16) as u16;
    let queue_memory = HostMemory::new(BlkQueue::memory_size(queue_size));
    let buffer_memory = HostMemory::new(depth * len);
    let config = BlkConfig {
        capacity: DISK_SECTORS,
        size_max: None,
        segment_max: None,
        block_size: Some(SECTOR_SIZE as u32),
        read_only: false,
        flush: false,
    };
    let blk = BlkQueue::new(queue_memory.region(), queue_size, 0, config).expect("queue");
    let layout = QueueLayout {
        descriptors: blk.queue().descriptor_table_address(),
        available: blk.queue().available_address(),
        used: blk.queue().used_address(),
        size: queue_size,
    };
    assert_eq!(layout.descriptors, queue_memory.address());
    let mut run = ManadaRun {
        blk,
        doorbell: Doorbell {
            register: AtomicU32::new(0),
            rings: 0,
        },
        buffers: buffer_memory.region(),
        len,
        in_flight: vec![None; depth],
        last: vec![None; depth],
        free: (0..depth).rev().collect(),
        sector: 0,
    };
    let ((rate, counted), served) = with_device(layout, settings.cpus, || {
        let result = if depth == 1 {
            timed(settings.warmup, settings.budget, || run.read_blocking())
        } else {
            timed(settings.warmup, settings.budget, || run.step())
        };
        run.drain();
        result
    });
    assert!(served >= counted && run.doorbell.rings > 0);
    run.verify();
    rate
}

// ---------------------------------------------------------------------------------------
// virtio-drivers.

/// Identity-mapped host memory for virtio-drivers: `share` hands out the buffer's own
/// address (no bounce buffers), as in a kernel with an identity map and no IOMMU.
struct HostHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory that nothing else aliases until
// `dma_dealloc`; physical addresses are the pointer values (exposed), so `share` and
// `mmio_phys_to_virt` are identity translations.
unsafe impl Hal for HostHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("layout");
        // SAFETY: virtio-drivers never asks for zero pages.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("DMA allocation");
        (base.as_ptr().expose_provenance() as u64, base)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("layout");
        // SAFETY: the caller passes back what `dma_alloc` returned for this many pages.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(ptr::with_exposed_provenance_mut(paddr as usize)).expect("MMIO address")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr().expose_provenance() as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// A virtio-mmio (version 2) register block in ordinary memory, for virtio-drivers'
/// `MmioTransport`. Registers the driver writes simply hold what it wrote, which is all a
/// device that is set up before it starts polling needs. DeviceFeatures ignores
/// DeviceFeaturesSel, so the word appears in both halves: bit 0 there is VIRTIO_F_VERSION_1
/// in the high half (and the legacy, unsupported BARRIER bit in the low half).
struct MmioRegisters {
    memory: HostMemory,
}

impl MmioRegisters {
    const MAGIC: usize = 0x000;
    const VERSION: usize = 0x004;
    const DEVICE_ID: usize = 0x008;
    const VENDOR_ID: usize = 0x00c;
    const DEVICE_FEATURES: usize = 0x010;
    const QUEUE_NUM_MAX: usize = 0x034;
    const QUEUE_NUM: usize = 0x038;
    const QUEUE_READY: usize = 0x044;
    const QUEUE_DESC: usize = 0x080;
    const QUEUE_DRIVER: usize = 0x090;
    const QUEUE_DEVICE: usize = 0x0a0;
    const CONFIG: usize = 0x100;

    fn new(indirect: bool) -> MmioRegisters {
        let registers = MmioRegisters {
            memory: HostMemory::new(PAGE_SIZE),
        };
        let features = 1 | if indirect { 1 << 28 } else { 0 };
        registers.write(Self::MAGIC, 0x7472_6976);
        registers.write(Self::VERSION, 2);
        registers.write(Self::DEVICE_ID, 2); // block
        registers.write(Self::VENDOR_ID, 0x554d_4551);
        registers.write(Self::DEVICE_FEATURES, features);
        registers.write(Self::QUEUE_NUM_MAX, u32::from(VD_QUEUE_SIZE));
        registers.write(Self::CONFIG, DISK_SECTORS as u32);
        registers.write(Self::CONFIG + 4, (DISK_SECTORS >> 32) as u32);
        registers
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: inside the page, 4-aligned; only this thread touches the block.
        unsafe { store(self.memory.address() + offset as u64, value) }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: as in `write`.
        unsafe { load(self.memory.address() + offset as u64) }
    }

    fn read_address(&self, offset: usize) -> u64 {
        u64::from(self.read(offset)) | (u64::from(self.read(offset + 4)) << 32)
    }

    fn transport(&self) -> MmioTransport<'_> {
        // SAFETY: a page-aligned block of PAGE_SIZE bytes (header, then configuration space
        // at 0x100), valid for the borrow of `self`; nothing else accesses it meanwhile.
        unsafe { MmioTransport::new(self.memory.base.cast::<VirtIOHeader>(), PAGE_SIZE) }
            .expect("MMIO transport")
    }

    /// Returns the queue the driver set up, as a device would read it from its registers.
    fn queue(&self) -> QueueLayout {
        assert_eq!(self.read(Self::QUEUE_READY), 1, "queue not ready");
        QueueLayout {
            descriptors: self.read_address(Self::QUEUE_DESC),
            available: self.read_address(Self::QUEUE_DRIVER),
            used: self.read_address(Self::QUEUE_DEVICE),
            size: self.read(Self::QUEUE_NUM) as u16,
        }
    }
}

/// Measures virtio-drivers: `depth` reads of `len` bytes in flight, with indirect
/// descriptors offered or not.
fn measure_virtio_drivers(depth: usize, len: usize, indirect: bool, settings: &Settings) -> f64 {
    assert!(indirect || 3 * depth <= usize::from(VD_QUEUE_SIZE));
    let registers = MmioRegisters::new(indirect);
    let mut buffer_memory = HostMemory::new(depth * len);
    let mut blk = VirtIOBlk::<HostHal, _>::new(registers.transport()).expect("VirtIOBlk");
    assert_eq!(blk.capacity(), DISK_SECTORS);
    let layout = registers.queue();
    assert_eq!(layout.size, VD_QUEUE_SIZE);
    let sectors = (len / SECTOR_SIZE) as u64;
    let mut buffers: Vec<&mut [u8]> = buffer_memory.bytes().chunks_exact_mut(len).collect();
    let mut last: Vec<Option<u64>> = vec![None; depth];
    let mut sector = 0u64;

    let ((rate, counted), served) = with_device(layout, settings.cpus, || {
        if depth == 1 {
            let buffer = &mut *buffers[0];
            return timed(settings.warmup, settings.budget, || {
                blk.read_blocks(sector as usize, buffer)
                    .expect("virtio-drivers read");
                last[0] = Some(sector);
                sector = next_sector(sector, sectors);
                1
            });
        }
        let mut requests: Vec<BlkReq> = (0..depth).map(|_| BlkReq::default()).collect();
        let mut responses: Vec<BlkResp> = (0..depth).map(|_| BlkResp::default()).collect();
        let mut in_flight: Vec<Option<(usize, u64)>> = vec![None; usize::from(VD_QUEUE_SIZE)];
        let mut free: Vec<usize> = (0..depth).rev().collect();
        let mut outstanding = 0usize;
        let mut reap = |blk: &mut VirtIOBlk<HostHal, MmioTransport<'_>>,
                        free: &mut Vec<usize>,
                        in_flight: &mut [Option<(usize, u64)>],
                        requests: &mut [BlkReq],
                        responses: &mut [BlkResp],
                        buffers: &mut [&mut [u8]]| {
            let mut done = 0;
            while let Some(token) = blk.peek_used() {
                let (buffer, sector) = in_flight[usize::from(token)].take().expect("ours");
                // SAFETY: the same request, buffer and response that `read_blocks_nb`
                // returned this token for, untouched since.
                unsafe {
                    blk.complete_read_blocks(
                        token,
                        &requests[buffer],
                        buffers[buffer],
                        &mut responses[buffer],
                    )
                }
                .expect("virtio-drivers completion");
                assert_eq!(responses[buffer].status(), RespStatus::OK);
                last[buffer] = Some(sector);
                free.push(buffer);
                done += 1;
            }
            done
        };
        let result = timed(settings.warmup, settings.budget, || {
            while let Some(buffer) = free.pop() {
                // SAFETY: request, buffer and response belong to this slot alone and are
                // not touched again until `complete_read_blocks` for the returned token.
                let token = unsafe {
                    blk.read_blocks_nb(
                        sector as usize,
                        &mut requests[buffer],
                        buffers[buffer],
                        &mut responses[buffer],
                    )
                }
                .expect("virtio-drivers submit");
                in_flight[usize::from(token)] = Some((buffer, sector));
                sector = next_sector(sector, sectors);
                outstanding += 1;
            }
            let done = reap(
                &mut blk,
                &mut free,
                &mut in_flight,
                &mut requests,
                &mut responses,
                &mut buffers,
            );
            outstanding -= done as usize;
            if done == 0 {
                spin_loop();
            }
            done
        });
        while outstanding > 0 {
            outstanding -= reap(
                &mut blk,
                &mut free,
                &mut in_flight,
                &mut requests,
                &mut responses,
                &mut buffers,
            ) as usize;
        }
        result
    });
    assert!(served >= counted);
    for (buffer, sector) in last.iter().enumerate() {
        check_data(
            "virtio-drivers",
            sector.expect("every buffer was used"),
            buffers[buffer],
        );
    }
    drop(blk); // resets the queue before its registers go
    rate
}

// ---------------------------------------------------------------------------------------
// The table.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Driver {
    Manada,
    VirtioDrivers { indirect: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Case {
    driver: Driver,
    depth: usize,
    len: usize,
}

impl Case {
    fn measure(&self, settings: &Settings) -> f64 {
        match self.driver {
            Driver::Manada => measure_manada(self.depth, self.len, settings),
            Driver::VirtioDrivers { indirect } => {
                measure_virtio_drivers(self.depth, self.len, indirect, settings)
            }
        }
    }

    fn key(&self) -> String {
        let driver = match self.driver {
            Driver::Manada => "manada",
            Driver::VirtioDrivers { indirect: false } => "virtio_drivers",
            Driver::VirtioDrivers { indirect: true } => "virtio_drivers_indirect",
        };
        format!("qd{}_{}k_{}", self.depth, self.len / 1024, driver)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

struct Row {
    label: &'static str,
    depth: usize,
    ours: Case,
    theirs: Case,
}

fn main() {
    let quick = std::env::var_os("DRIVER_COMPARE_QUICK").is_some();
    let allowed = affinity::allowed();
    let cpus = match allowed.as_slice() {
        [first, second, ..] => Cpus {
            driver: Some(*first),
            device: Some(*second),
        },
        _ => Cpus {
            driver: None,
            device: None,
        },
    };
    if let Some(cpu) = cpus.driver {
        assert!(
            affinity::pin(cpu),
            "cannot pin the driver thread to CPU {cpu}"
        );
    }
    let settings = Settings {
        runs: if quick { 1 } else { 7 },
        warmup: Duration::from_millis(if quick { 5 } else { 30 }),
        budget: Duration::from_millis(if quick { 20 } else { 200 }),
        cpus,
    };

    let case = |driver, depth, len| Case { driver, depth, len };
    let manada = Driver::Manada;
    let direct = Driver::VirtioDrivers { indirect: false };
    let indirect = Driver::VirtioDrivers { indirect: true };
    let mut rows = Vec::new();
    for (label, depth, theirs) in [
        ("read_blocks, direct", 1, direct),
        ("read_blocks, indirect", 1, indirect),
        ("read_blocks_nb, direct", 4, direct),
        ("read_blocks_nb, indirect", 16, indirect),
    ] {
        for len in [4096, 65536] {
            rows.push(Row {
                label,
                depth,
                ours: case(manada, depth, len),
                theirs: case(theirs, depth, len),
            });
        }
    }
    let mut cases: Vec<Case> = Vec::new();
    for row in &rows {
        for one in [row.ours, row.theirs] {
            if !cases.contains(&one) {
                cases.push(one);
            }
        }
    }

    let started = Instant::now();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..settings.runs {
        for (one, samples) in cases.iter().zip(samples.iter_mut()) {
            samples.push(one.measure(&settings));
        }
    }
    let figure = |wanted: &Case| -> (f64, f64, f64) {
        let index = cases
            .iter()
            .position(|one| one == wanted)
            .expect("measured");
        let values = &samples[index];
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(0.0, f64::max);
        (median(values), low, high)
    };

    println!(
        "virtio-blk reads, own driver (manada) vs virtio-drivers 0.13: requests/s, median of {} \
         run(s) of {} ms; driver on CPU {}, RAM-disk device thread on CPU {}",
        settings.runs,
        settings.budget.as_millis(),
        cpus.driver.map_or("?".to_string(), |cpu| cpu.to_string()),
        cpus.device.map_or("?".to_string(), |cpu| cpu.to_string()),
    );
    println!(
        "{:<4} {:>6}  {:<26} {:>18} {:>18} {:>9} {:>10} {:>10} {:>9}",
        "qd",
        "size",
        "virtio-drivers API",
        "manada req/s",
        "v-d req/s",
        "ratio",
        "ns manada",
        "ns v-d",
        "Δ ns"
    );
    let mut records: Vec<(String, f64, &str)> = Vec::new();
    let spread = |(median, low, high): (f64, f64, f64)| {
        let percent = if median > 0.0 {
            (high - low) / median * 50.0
        } else {
            0.0
        };
        format!("{median:>10.0} ±{percent:>4.1}%")
    };
    for row in &rows {
        let ours = figure(&row.ours);
        let theirs = figure(&row.theirs);
        let ratio = ours.0 / theirs.0;
        let ns_ours = 1e9 / ours.0;
        let ns_theirs = 1e9 / theirs.0;
        println!(
            "{:<4} {:>4} K  {:<26} {:>18} {:>18} {:>8.2}x {:>10.0} {:>10.0} {:>9.0}",
            row.depth,
            row.ours.len / 1024,
            row.label,
            spread(ours),
            spread(theirs),
            ratio,
            ns_ours,
            ns_theirs,
            ns_theirs - ns_ours,
        );
        for (one, value) in [(row.ours, ours.0), (row.theirs, theirs.0)] {
            let name = format!("virtio_blk_{}", one.key());
            if !records.iter().any(|record| record.0 == name) {
                records.push((name, value, "req/s"));
            }
        }
        records.push((
            format!(
                "virtio_blk_{}_ratio",
                row.theirs
                    .key()
                    .replace("virtio_drivers", "manada_over_virtio_drivers")
            ),
            ratio,
            "x",
        ));
    }
    println!(
        "ratio = manada / virtio-drivers (above 1: manada faster). ns = 1e9 / (req/s): the \
         time per request, device included. Δ ns = v-d minus manada: at depth 1 the \
         driver-side difference (same device work; with indirect, plus the device's extra \
         table fetch); deeper, the device is the bottleneck and driver work overlaps it. \
         ± is half the min-max spread. Total {:.1} s.",
        started.elapsed().as_secs_f64()
    );

    if let Some(path) = std::env::var_os("DRIVER_COMPARE_JSON") {
        let body: Vec<String> = records
            .iter()
            .map(|(name, value, unit)| {
                format!("  {{\"name\": \"{name}\", \"value\": {value:.4}, \"unit\": \"{unit}\"}}")
            })
            .collect();
        let json = format!("[\n{}\n]\n", body.join(",\n"));
        std::fs::write(&path, json).expect("write DRIVER_COMPARE_JSON");
        println!("wrote {}", path.to_string_lossy());
    }
}
