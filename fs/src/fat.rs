//! The file allocation table: reading and writing entries (all copies in step), walking
//! chains with a bound, and finding free clusters.

use alloc::vec;
use alloc::vec::Vec;

use crate::bpb::Layout;
use crate::cache::{Kind, SectorCache};
use crate::device::{BlockDevice, SECTOR_SIZE};
use crate::error::{Error, Result};

/// The value a FAT16 entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    Free,
    Next(u32),
    Bad,
    End,
}

const BAD: u16 = 0xFFF7;
const END: u16 = 0xFFFF;
const ENTRIES_PER_SECTOR: u32 = (SECTOR_SIZE / 2) as u32;

/// The FAT of one volume.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fat {
    start: u64,
    sectors: u32,
    copies: u32,
    max_cluster: u32,
}

impl Fat {
    pub(crate) fn new(layout: &Layout) -> Self {
        Fat {
            start: layout.fat_start,
            sectors: layout.fat_sectors,
            copies: layout.fat_count,
            max_cluster: layout.max_cluster(),
        }
    }

    /// Returns whether `cluster` names a data cluster of this volume.
    pub(crate) fn is_valid(&self, cluster: u32) -> bool {
        (2..=self.max_cluster).contains(&cluster)
    }

    /// Returns the number of data clusters, which bounds every chain.
    pub(crate) fn cluster_count(&self) -> u32 {
        self.max_cluster - 1
    }

    fn check(&self, cluster: u32) -> Result<()> {
        if self.is_valid(cluster) {
            Ok(())
        } else {
            Err(Error::Corrupt("cluster number out of range"))
        }
    }

    fn position(&self, cluster: u32) -> (u64, usize) {
        (
            u64::from(cluster / ENTRIES_PER_SECTOR),
            (cluster % ENTRIES_PER_SECTOR) as usize * 2,
        )
    }

    fn decode(&self, raw: u16) -> Result<Entry> {
        match raw {
            0 => Ok(Entry::Free),
            BAD => Ok(Entry::Bad),
            0xFFF8..=0xFFFF => Ok(Entry::End),
            n if self.is_valid(u32::from(n)) => Ok(Entry::Next(u32::from(n))),
            _ => Err(Error::Corrupt("FAT entry points outside the volume")),
        }
    }

    /// Returns the entry of `cluster`, read from the first FAT.
    pub(crate) fn get<D: BlockDevice>(
        &self,
        cache: &mut SectorCache<D>,
        cluster: u32,
    ) -> Result<Entry> {
        self.check(cluster)?;
        let (sector, offset) = self.position(cluster);
        let data = cache.read(self.start + sector, Kind::Fat)?;
        self.decode(crate::bytes::u16_at(data, offset))
    }

    /// Sets the entry of `cluster` in every FAT copy.
    pub(crate) fn set<D: BlockDevice>(
        &self,
        cache: &mut SectorCache<D>,
        cluster: u32,
        entry: Entry,
    ) -> Result<()> {
        self.check(cluster)?;
        let raw = match entry {
            Entry::Free => 0,
            Entry::Next(next) => {
                self.check(next)?;
                next as u16
            }
            Entry::Bad => BAD,
            Entry::End => END,
        };
        let (sector, offset) = self.position(cluster);
        for copy in 0..self.copies {
            let lba = self.start + u64::from(copy) * u64::from(self.sectors) + sector;
            let data = cache.modify(lba, Kind::Fat)?;
            data[offset..offset + 2].copy_from_slice(&raw.to_le_bytes());
        }
        Ok(())
    }

    /// Returns the cluster after `cluster` in its chain, or `None` at the chain's end.
    pub(crate) fn next<D: BlockDevice>(
        &self,
        cache: &mut SectorCache<D>,
        cluster: u32,
    ) -> Result<Option<u32>> {
        match self.get(cache, cluster)? {
            Entry::Next(next) => Ok(Some(next)),
            Entry::End => Ok(None),
            Entry::Free => Err(Error::Corrupt("cluster chain runs into a free cluster")),
            Entry::Bad => Err(Error::Corrupt("cluster chain runs into a bad cluster")),
        }
    }

    /// Returns the number of clusters in the chain from `first` and its last cluster.
    pub(crate) fn chain_end<D: BlockDevice>(
        &self,
        cache: &mut SectorCache<D>,
        first: u32,
    ) -> Result<(u32, u32)> {
        self.check(first)?;
        let mut walk = Walk::new(self, first);
        let mut last = first;
        let mut length = 1;
        while let Some(next) = walk.step(self, cache)? {
            last = next;
            length += 1;
        }
        Ok((length, last))
    }

    /// Scans the FAT from `hint` (wrapping around) for `count` free clusters without
    /// changing anything. Returns `NoSpace` if there are fewer.
    pub(crate) fn find_free<D: BlockDevice>(
        &self,
        cache: &mut SectorCache<D>,
        count: u32,
        hint: u32,
    ) -> Result<Vec<u32>> {
        let mut found = Vec::new();
        if count == 0 {
            return Ok(found);
        }
        let hint = if self.is_valid(hint) { hint } else { 2 };
        self.scan_free(cache, hint, self.max_cluster, |cluster| {
            found.push(cluster);
            found.len() as u32 == count
        })?;
        if (found.len() as u32) < count && hint > 2 {
            self.scan_free(cache, 2, hint - 1, |cluster| {
                found.push(cluster);
                found.len() as u32 == count
            })?;
        }
        if (found.len() as u32) < count {
            return Err(Error::NoSpace);
        }
        Ok(found)
    }

    /// Brings every other FAT copy in step with the first one, sector by sector, and
    /// returns how many sectors differed. With `write` false it only counts them.
    ///
    /// Why the first copy: every flush writes the FAT sectors in address order, so the
    /// first copy is written before the second, and a crash leaves the first copy at
    /// least as new. Each flush's FAT changes are safe in any state, whole or partly
    /// written (see `Disk::link_chain`), so the first copy is always consistent with the
    /// directories on the disk; the second may only still hold clusters an interrupted
    /// operation freed or not yet hold those it linked. It is also the copy other
    /// systems read (Linux, and `fsck.fat -a`).
    pub(crate) fn reconcile<D: BlockDevice>(
        &self,
        cache: &mut SectorCache<D>,
        write: bool,
    ) -> Result<u32> {
        const RUN: u32 = 16;
        let mut first = vec![0u8; RUN as usize * SECTOR_SIZE];
        let mut other = vec![0u8; RUN as usize * SECTOR_SIZE];
        let mut differing = 0;
        for copy in 1..self.copies {
            let base = self.start + u64::from(copy) * u64::from(self.sectors);
            let mut sector = 0;
            while sector < self.sectors {
                let run = RUN.min(self.sectors - sector);
                let bytes = run as usize * SECTOR_SIZE;
                cache.read_bulk(self.start + u64::from(sector), &mut first[..bytes])?;
                cache.read_bulk(base + u64::from(sector), &mut other[..bytes])?;
                for (i, (ours, theirs)) in first[..bytes]
                    .chunks_exact(SECTOR_SIZE)
                    .zip(other[..bytes].chunks_exact(SECTOR_SIZE))
                    .enumerate()
                {
                    if ours != theirs {
                        differing += 1;
                        if write {
                            cache.write_bulk(base + u64::from(sector) + i as u64, ours)?;
                        }
                    }
                }
                sector += run;
            }
        }
        if differing > 0 && write {
            cache.flush()?;
        }
        Ok(differing)
    }

    /// Frees every allocated cluster (not free, not bad) for which `keep` says no;
    /// returns how many it freed.
    pub(crate) fn free_unless<D: BlockDevice>(
        &self,
        cache: &mut SectorCache<D>,
        keep: impl Fn(u32) -> bool,
    ) -> Result<u32> {
        let mut lost = Vec::new();
        const RUN: u32 = 16;
        let mut buffer = vec![0u8; RUN as usize * SECTOR_SIZE];
        let last_sector = self.max_cluster / ENTRIES_PER_SECTOR;
        let mut sector = 0;
        while sector <= last_sector {
            let run = RUN.min(last_sector - sector + 1);
            let bytes = &mut buffer[..run as usize * SECTOR_SIZE];
            cache.read_bulk(self.start + u64::from(sector), bytes)?;
            for (i, pair) in bytes.chunks_exact(2).enumerate() {
                let cluster = sector * ENTRIES_PER_SECTOR + i as u32;
                let raw = u16::from_le_bytes([pair[0], pair[1]]);
                if self.is_valid(cluster) && raw != 0 && raw != BAD && !keep(cluster) {
                    lost.push(cluster);
                }
            }
            sector += run;
        }
        for &cluster in &lost {
            self.set(cache, cluster, Entry::Free)?;
        }
        Ok(lost.len() as u32)
    }

    /// Returns the number of free clusters.
    pub(crate) fn count_free<D: BlockDevice>(&self, cache: &mut SectorCache<D>) -> Result<u32> {
        let mut free = 0;
        self.scan_free(cache, 2, self.max_cluster, |_| {
            free += 1;
            false
        })?;
        Ok(free)
    }

    /// Calls `found` for each free cluster from `first` to `last` in order until it
    /// returns true; reads the FAT in runs of sectors without filling the cache.
    fn scan_free<D: BlockDevice>(
        &self,
        cache: &mut SectorCache<D>,
        first: u32,
        last: u32,
        mut found: impl FnMut(u32) -> bool,
    ) -> Result<()> {
        const RUN: u32 = 16;
        let mut buffer = vec![0u8; RUN as usize * SECTOR_SIZE];
        let mut sector = first / ENTRIES_PER_SECTOR;
        let last_sector = last / ENTRIES_PER_SECTOR;
        while sector <= last_sector {
            let run = RUN.min(last_sector - sector + 1);
            let bytes = &mut buffer[..run as usize * SECTOR_SIZE];
            cache.read_bulk(self.start + u64::from(sector), bytes)?;
            for (i, pair) in bytes.chunks_exact(2).enumerate() {
                let cluster = sector * ENTRIES_PER_SECTOR + i as u32;
                if cluster < first || cluster > last {
                    continue;
                }
                if pair == [0, 0] && found(cluster) {
                    return Ok(());
                }
            }
            sector += run;
        }
        Ok(())
    }
}

/// A walk along a cluster chain that fails instead of looping: it takes at most as many
/// steps as the volume has clusters.
#[derive(Debug)]
pub(crate) struct Walk {
    current: u32,
    steps: u32,
    limit: u32,
}

impl Walk {
    pub(crate) fn new(fat: &Fat, first: u32) -> Self {
        Walk {
            current: first,
            steps: 0,
            limit: fat.cluster_count(),
        }
    }

    /// Returns the next cluster of the chain, or `None` at its end.
    pub(crate) fn step<D: BlockDevice>(
        &mut self,
        fat: &Fat,
        cache: &mut SectorCache<D>,
    ) -> Result<Option<u32>> {
        self.steps += 1;
        if self.steps > self.limit {
            return Err(Error::Corrupt("cluster chain loops"));
        }
        let next = fat.next(cache, self.current)?;
        if let Some(next) = next {
            self.current = next;
        }
        Ok(next)
    }
}
