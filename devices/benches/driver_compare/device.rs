//! The emulated virtio-blk device: a thread that polls the available ring, serves reads
//! from a RAM disk and publishes used entries, for both drivers alike.

use std::hint::spin_loop;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::thread;

use devices::virtio::blk::SECTOR_SIZE;

use super::host::affinity;
use super::{disk_byte, Cpus, DISK_BYTES, MAX_CHAIN};

/// VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT.
const DESCRIPTOR_NEXT: u16 = 1;
const DESCRIPTOR_WRITE: u16 = 2;
const DESCRIPTOR_INDIRECT: u16 = 4;

/// Where a split virtqueue lives, as the transport told the device.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLayout {
    pub(crate) descriptors: u64,
    pub(crate) available: u64,
    pub(crate) used: u64,
    pub(crate) size: u16,
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
pub(crate) unsafe fn load<T: Copy>(address: u64) -> T {
    // SAFETY: the caller's contract; every address the drivers give out was exposed.
    unsafe { ptr::read_volatile(ptr::with_exposed_provenance::<T>(address as usize)) }
}

/// Writes `value` at `address`, memory the driver gave the device to write.
///
/// # Safety
/// As for [`load`]; the driver reads the memory only after the used index that follows.
pub(crate) unsafe fn store<T: Copy>(address: u64, value: T) {
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
    pub(crate) fn new(queue: QueueLayout) -> RamDiskDevice {
        RamDiskDevice {
            queue,
            disk: (0..DISK_BYTES).map(disk_byte).collect(),
            seen_available: 0,
            used_index: 0,
            served: 0,
        }
    }

    pub(crate) fn descriptor(table: u64, index: u16) -> Descriptor {
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
    pub(crate) fn chain(&self, head: u16, chain: &mut [Descriptor; MAX_CHAIN]) -> usize {
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
    pub(crate) fn serve(&mut self, head: u16) -> u32 {
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

    pub(crate) fn push_used(&mut self, id: u16, len: u32) {
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

    pub(crate) fn run(mut self, stop: &AtomicBool) -> RamDiskDevice {
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
pub(crate) fn with_device<R>(
    queue: QueueLayout,
    cpus: Cpus,
    driver: impl FnOnce() -> R,
) -> (R, u64) {
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
