//! The `virtio-drivers` crate's driver (`VirtIOBlk` over `MmioTransport`) over the shared
//! device, with an identity-mapped `Hal` and a register block in ordinary memory.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::hint::spin_loop;
use std::ptr::{self, NonNull};

use devices::virtio::blk::SECTOR_SIZE;
use devices::virtio::dma::PAGE_SIZE;
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use super::device::{load, store, with_device, QueueLayout};
use super::host::HostMemory;
use super::{check_data, next_sector, timed, Settings, DISK_SECTORS, VD_QUEUE_SIZE};

/// Identity-mapped host memory for virtio-drivers: `share` hands out the buffer's own
/// address (no bounce buffers), as in a kernel with an identity map and no IOMMU.
pub(crate) struct HostHal;

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
pub(crate) struct MmioRegisters {
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

    pub(crate) fn new(indirect: bool) -> MmioRegisters {
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

    pub(crate) fn write(&self, offset: usize, value: u32) {
        // SAFETY: inside the page, 4-aligned; only this thread touches the block.
        unsafe { store(self.memory.address() + offset as u64, value) }
    }

    pub(crate) fn read(&self, offset: usize) -> u32 {
        // SAFETY: as in `write`.
        unsafe { load(self.memory.address() + offset as u64) }
    }

    pub(crate) fn read_address(&self, offset: usize) -> u64 {
        u64::from(self.read(offset)) | (u64::from(self.read(offset + 4)) << 32)
    }

    pub(crate) fn transport(&self) -> MmioTransport<'_> {
        // SAFETY: a page-aligned block of PAGE_SIZE bytes (header, then configuration space
        // at 0x100), valid for the borrow of `self`; nothing else accesses it meanwhile.
        unsafe { MmioTransport::new(self.memory.base.cast::<VirtIOHeader>(), PAGE_SIZE) }
            .expect("MMIO transport")
    }

    /// Returns the queue the driver set up, as a device would read it from its registers.
    pub(crate) fn queue(&self) -> QueueLayout {
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
pub(crate) fn measure_virtio_drivers(
    depth: usize,
    len: usize,
    indirect: bool,
    settings: &Settings,
) -> f64 {
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
