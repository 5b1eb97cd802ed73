//! A bounded write-back sector cache with LRU eviction, ordered flushes and read-ahead.
//!
//! Dirty sectors carry a kind; a flush writes data sectors first, then FAT sectors, then
//! directory sectors, so that whatever reaches the disk never has a directory entry
//! pointing at a chain, or a chain at data, that is not there yet.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::device::{BlockDevice, SECTOR_SIZE};
use crate::error::{IoError, Result};

/// What a cached sector holds; the order is the order in which dirty sectors are flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Data,
    Fat,
    Directory,
}

/// Counters of the cache's traffic, for tests and tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Sector lookups answered from the cache.
    pub hits: u64,
    /// Sector lookups that went to the device.
    pub misses: u64,
    /// Read requests sent to the device.
    pub device_reads: u64,
    /// Write requests sent to the device.
    pub device_writes: u64,
    /// Bytes the read requests asked for.
    pub bytes_read: u64,
    /// Bytes the write requests carried.
    pub bytes_written: u64,
}

#[derive(Debug)]
struct Slot {
    lba: u64,
    data: Box<[u8; SECTOR_SIZE]>,
    dirty: bool,
    kind: Kind,
    last_use: u64,
}

/// The sector cache; it owns the device.
#[derive(Debug)]
pub(crate) struct SectorCache<D> {
    device: D,
    slots: Vec<Slot>,
    index: BTreeMap<u64, usize>,
    capacity: usize,
    tick: u64,
    stats: CacheStats,
}

/// The smallest number of sectors the cache holds, whatever the caller asks for.
pub(crate) const MIN_CAPACITY: usize = 8;

impl<D: BlockDevice> SectorCache<D> {
    pub(crate) fn new(device: D, capacity: usize) -> Self {
        SectorCache {
            device,
            slots: Vec::new(),
            index: BTreeMap::new(),
            capacity: capacity.max(MIN_CAPACITY),
            tick: 0,
            stats: CacheStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        self.stats
    }

    pub(crate) fn device(&self) -> &D {
        &self.device
    }

    pub(crate) fn into_device(self) -> D {
        self.device
    }

    fn touch(&mut self, slot: usize) {
        self.tick += 1;
        self.slots[slot].last_use = self.tick;
    }

    /// Returns a slot for `lba` that is not yet in the index, evicting the least
    /// recently used sector (after an ordered flush if it is dirty).
    fn free_slot(&mut self) -> Result<usize> {
        if self.slots.len() < self.capacity {
            self.slots.push(Slot {
                lba: u64::MAX,
                data: Box::new([0; SECTOR_SIZE]),
                dirty: false,
                kind: Kind::Data,
                last_use: 0,
            });
            return Ok(self.slots.len() - 1);
        }
        let victim = (0..self.slots.len())
            .min_by_key(|&i| self.slots[i].last_use)
            .unwrap_or(0);
        if self.slots[victim].dirty {
            self.flush_dirty()?;
        }
        let old = self.slots[victim].lba;
        self.index.remove(&old);
        self.slots[victim].lba = u64::MAX;
        Ok(victim)
    }

    /// Returns the slot holding `lba`, reading it from the device when `load` is set.
    fn slot_for(&mut self, lba: u64, kind: Kind, load: bool) -> Result<usize> {
        if let Some(&slot) = self.index.get(&lba) {
            self.stats.hits += 1;
            self.touch(slot);
            return Ok(slot);
        }
        self.stats.misses += 1;
        let slot = self.free_slot()?;
        if load {
            self.stats.device_reads += 1;
            self.stats.bytes_read += SECTOR_SIZE as u64;
            self.device.read(lba, &mut self.slots[slot].data[..])?;
        } else {
            self.slots[slot].data.fill(0);
        }
        let entry = &mut self.slots[slot];
        entry.lba = lba;
        entry.dirty = false;
        entry.kind = kind;
        self.index.insert(lba, slot);
        self.touch(slot);
        Ok(slot)
    }

    /// Returns the contents of sector `lba`.
    pub(crate) fn read(&mut self, lba: u64, kind: Kind) -> Result<&[u8; SECTOR_SIZE]> {
        let slot = self.slot_for(lba, kind, true)?;
        Ok(&self.slots[slot].data)
    }

    /// Returns sector `lba` for modification; it is written back on the next flush.
    pub(crate) fn modify(&mut self, lba: u64, kind: Kind) -> Result<&mut [u8; SECTOR_SIZE]> {
        let slot = self.slot_for(lba, kind, true)?;
        let entry = &mut self.slots[slot];
        entry.dirty = true;
        entry.kind = kind;
        Ok(&mut entry.data)
    }

    /// Returns sector `lba` for modification without reading it: a sector not cached
    /// starts as zeros. For sectors whose old contents do not matter.
    pub(crate) fn overwrite(&mut self, lba: u64, kind: Kind) -> Result<&mut [u8; SECTOR_SIZE]> {
        let slot = self.slot_for(lba, kind, false)?;
        let entry = &mut self.slots[slot];
        entry.dirty = true;
        entry.kind = kind;
        Ok(&mut entry.data)
    }

    /// Reads the run of up to `count` sectors from `lba` that are not cached yet into the
    /// cache with one device request (read-ahead). Stops at the first cached sector.
    pub(crate) fn prefetch(&mut self, lba: u64, count: u64, kind: Kind) -> Result<()> {
        let limit = count.min((self.capacity / 2) as u64);
        let mut run = 0;
        while run < limit && !self.index.contains_key(&(lba + run)) {
            run += 1;
        }
        if run == 0 {
            return Ok(());
        }
        let mut buffer = vec![0u8; run as usize * SECTOR_SIZE];
        self.stats.device_reads += 1;
        self.stats.bytes_read += buffer.len() as u64;
        self.device.read(lba, &mut buffer)?;
        for (i, chunk) in buffer.chunks_exact(SECTOR_SIZE).enumerate() {
            let slot = self.free_slot()?;
            let entry = &mut self.slots[slot];
            entry.data.copy_from_slice(chunk);
            entry.lba = lba + i as u64;
            entry.dirty = false;
            entry.kind = kind;
            self.index.insert(lba + i as u64, slot);
            self.touch(slot);
        }
        Ok(())
    }

    /// Reads whole sectors into `buf`, taking cached sectors from the cache and reading
    /// the rest straight from the device without caching them.
    pub(crate) fn read_bulk(&mut self, lba: u64, buf: &mut [u8]) -> Result<()> {
        let sectors = buf.len() / SECTOR_SIZE;
        let mut i = 0;
        while i < sectors {
            if let Some(&slot) = self.index.get(&(lba + i as u64)) {
                self.stats.hits += 1;
                buf[i * SECTOR_SIZE..(i + 1) * SECTOR_SIZE]
                    .copy_from_slice(&self.slots[slot].data[..]);
                i += 1;
                continue;
            }
            let start = i;
            while i < sectors && !self.index.contains_key(&(lba + i as u64)) {
                i += 1;
            }
            self.stats.misses += (i - start) as u64;
            self.stats.device_reads += 1;
            self.stats.bytes_read += ((i - start) * SECTOR_SIZE) as u64;
            self.device.read(
                lba + start as u64,
                &mut buf[start * SECTOR_SIZE..i * SECTOR_SIZE],
            )?;
        }
        Ok(())
    }

    /// Writes whole sectors straight to the device, updating any cached copies.
    pub(crate) fn write_bulk(&mut self, lba: u64, data: &[u8]) -> Result<()> {
        self.stats.device_writes += 1;
        self.stats.bytes_written += data.len() as u64;
        self.device.write(lba, data)?;
        for (i, chunk) in data.chunks_exact(SECTOR_SIZE).enumerate() {
            if let Some(&slot) = self.index.get(&(lba + i as u64)) {
                let entry = &mut self.slots[slot];
                entry.data.copy_from_slice(chunk);
                entry.dirty = false;
            }
        }
        Ok(())
    }

    /// Writes every dirty sector to the device: data, then FAT, then directory sectors,
    /// merging runs of consecutive sectors into one request.
    fn flush_dirty(&mut self) -> Result<()> {
        let mut dirty: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].dirty)
            .collect();
        dirty.sort_by_key(|&i| (self.slots[i].kind, self.slots[i].lba));
        let mut buffer = Vec::new();
        let mut at = 0;
        while at < dirty.len() {
            let first = &self.slots[dirty[at]];
            let (start, kind) = (first.lba, first.kind);
            let mut end = at + 1;
            while end < dirty.len() {
                let next = &self.slots[dirty[end]];
                if next.kind != kind || next.lba != start + (end - at) as u64 {
                    break;
                }
                end += 1;
            }
            buffer.clear();
            for &slot in &dirty[at..end] {
                buffer.extend_from_slice(&self.slots[slot].data[..]);
            }
            self.stats.device_writes += 1;
            self.stats.bytes_written += buffer.len() as u64;
            self.device.write(start, &buffer)?;
            for &slot in &dirty[at..end] {
                self.slots[slot].dirty = false;
            }
            at = end;
        }
        Ok(())
    }

    /// Writes every dirty sector back and asks the device to make it durable.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.flush_dirty()?;
        self.device.flush().map_err(|e: IoError| e.into())
    }

    /// Returns whether any sector waits to be written back.
    pub(crate) fn has_dirty(&self) -> bool {
        self.slots.iter().any(|slot| slot.dirty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::RamDisk;

    fn disk() -> RamDisk {
        let mut disk = RamDisk::new(64);
        for lba in 0..64u64 {
            disk.write(lba, &[lba as u8; SECTOR_SIZE]).unwrap();
        }
        disk
    }

    #[test]
    fn keeps_writes_until_flush_and_evicts_least_recently_used() {
        let mut cache = SectorCache::new(disk(), MIN_CAPACITY);
        cache.modify(1, Kind::Directory).unwrap()[0] = 0xAA;
        assert_eq!(
            cache.device().as_bytes()[SECTOR_SIZE],
            1,
            "write-back, not write-through"
        );
        for lba in 10..10 + MIN_CAPACITY as u64 - 1 {
            cache.read(lba, Kind::Data).unwrap();
        }
        cache.read(1, Kind::Directory).unwrap();
        cache.read(30, Kind::Data).unwrap();
        assert!(
            !cache.index.contains_key(&10),
            "sector 10 was least recently used"
        );
        assert!(cache.index.contains_key(&1));
        cache.flush().unwrap();
        assert_eq!(cache.device().as_bytes()[SECTOR_SIZE], 0xAA);
        assert!(!cache.has_dirty());
    }

    #[test]
    fn evicting_a_dirty_sector_writes_it_back() {
        let mut cache = SectorCache::new(disk(), MIN_CAPACITY);
        cache.modify(2, Kind::Fat).unwrap()[5] = 0x55;
        for lba in 20..20 + MIN_CAPACITY as u64 {
            cache.read(lba, Kind::Data).unwrap();
        }
        assert_eq!(cache.device().as_bytes()[2 * SECTOR_SIZE + 5], 0x55);
    }

    #[test]
    fn prefetch_reads_a_run_in_one_request() {
        let mut cache = SectorCache::new(disk(), 16);
        cache.prefetch(4, 6, Kind::Data).unwrap();
        assert_eq!(cache.stats().device_reads, 1);
        for lba in 4..10 {
            assert_eq!(cache.read(lba, Kind::Data).unwrap()[0], lba as u8);
        }
        assert_eq!(cache.stats().device_reads, 1, "all six were cached");
    }

    #[test]
    fn bulk_reads_see_dirty_cached_sectors() {
        let mut cache = SectorCache::new(disk(), 16);
        cache.modify(5, Kind::Data).unwrap()[0] = 0xEE;
        let mut buf = vec![0u8; 4 * SECTOR_SIZE];
        cache.read_bulk(3, &mut buf).unwrap();
        assert_eq!(buf[0], 3);
        assert_eq!(buf[2 * SECTOR_SIZE], 0xEE);
        assert_eq!(buf[3 * SECTOR_SIZE], 6);
    }
}
