//! This crate's driver (`BlkQueue`) over the shared device: blocking reads at depth 1,
//! a queue of reads in flight deeper.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, Ordering};

use devices::virtio::blk::{BlkConfig, BlkQueue, RequestId, SECTOR_SIZE};
use devices::virtio::dma::DmaRegion;
use devices::virtio::Transport as ManadaTransport;

use super::device::{with_device, QueueLayout};
use super::host::HostMemory;
use super::{check_data, next_sector, timed, Settings, DISK_SECTORS};

/// The doorbell: a store into a register word, as a notify write would be.
pub(crate) struct Doorbell {
    register: AtomicU32,
    rings: u64,
}

impl ManadaTransport for Doorbell {
    fn notify(&mut self, queue: u16) {
        self.register.store(u32::from(queue), Ordering::Relaxed);
        self.rings += 1;
    }
}

pub(crate) struct ManadaRun {
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
    pub(crate) fn buffer_address(&self, buffer: usize) -> u64 {
        self.buffers.address() + (buffer * self.len) as u64
    }

    /// One blocking read: submit, notify, spin until it is back, check the result.
    pub(crate) fn read_blocking(&mut self) -> u64 {
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
    pub(crate) fn step(&mut self) -> u64 {
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

    pub(crate) fn reap(&mut self) -> u64 {
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

    pub(crate) fn drain(&mut self) {
        while self.blk.in_flight() > 0 {
            if self.reap() == 0 {
                spin_loop();
            }
        }
    }

    pub(crate) fn verify(&self) {
        let mut data = vec![0u8; self.len];
        for (buffer, sector) in self.last.iter().enumerate() {
            let sector = sector.expect("every buffer was used");
            self.buffers.read_bytes(buffer * self.len, &mut data);
            check_data("manada", sector, &data);
        }
    }
}

/// Measures this crate's driver: `depth` reads of `len` bytes in flight.
pub(crate) fn measure_manada(depth: usize, len: usize, settings: &Settings) -> f64 {
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
