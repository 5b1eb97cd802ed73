//! Cluster-level access to a mounted volume: the cache, the layout and the FAT together,
//! with allocation that either links a whole new chain or changes nothing.

use alloc::vec::Vec;

use crate::bpb::Layout;
use crate::cache::{Kind, SectorCache};
use crate::device::{BlockDevice, SECTOR_SIZE};
use crate::error::{Error, Result};
use crate::fat::{Entry, Fat, Walk};

/// A mounted volume below the level of names and paths.
#[derive(Debug)]
pub(crate) struct Disk<D> {
    pub(crate) cache: SectorCache<D>,
    pub(crate) layout: Layout,
    pub(crate) fat: Fat,
    /// Where the next free-cluster search starts.
    next_free: u32,
    /// Counts frees, so that cached chain positions of open files can tell they are stale.
    pub(crate) generation: u64,
}

impl<D: BlockDevice> Disk<D> {
    pub(crate) fn new(cache: SectorCache<D>, layout: Layout) -> Self {
        Disk {
            cache,
            fat: Fat::new(&layout),
            layout,
            next_free: 2,
            generation: 0,
        }
    }

    /// Returns the first sector of `cluster`.
    pub(crate) fn cluster_lba(&self, cluster: u32) -> Result<u64> {
        if !self.fat.is_valid(cluster) {
            return Err(Error::Corrupt("cluster number out of range"));
        }
        Ok(self.layout.data_start
            + u64::from(cluster - 2) * u64::from(self.layout.sectors_per_cluster))
    }

    pub(crate) fn cluster_bytes(&self) -> u32 {
        self.layout.cluster_bytes()
    }

    /// Returns the cluster after `cluster`, or `None` at the end of its chain.
    pub(crate) fn next_cluster(&mut self, cluster: u32) -> Result<Option<u32>> {
        self.fat.next(&mut self.cache, cluster)
    }

    /// Returns a bounded walk along the chain from `first`.
    pub(crate) fn walk(&self, first: u32) -> Walk {
        Walk::new(&self.fat, first)
    }

    /// Returns the next cluster of a bounded walk.
    pub(crate) fn step(&mut self, walk: &mut Walk) -> Result<Option<u32>> {
        walk.step(&self.fat, &mut self.cache)
    }

    /// Returns the length and the last cluster of the chain from `first`.
    pub(crate) fn chain_end(&mut self, first: u32) -> Result<(u32, u32)> {
        self.fat.chain_end(&mut self.cache, first)
    }

    /// Returns `count` free clusters without claiming them; `NoSpace` if there are fewer.
    pub(crate) fn find_free(&mut self, count: u32) -> Result<Vec<u32>> {
        self.fat.find_free(&mut self.cache, count, self.next_free)
    }

    /// Returns the number of free clusters.
    pub(crate) fn count_free(&mut self) -> Result<u32> {
        self.fat.count_free(&mut self.cache)
    }

    /// Links `clusters` (free, found by `find_free`, their data already written) into a
    /// chain ending the volume's way, and hangs it after `previous` if given. The caller
    /// must write the data before and the directory entry after.
    ///
    /// Crash order: the new chain's own entries are written first (while nothing refers
    /// to them, so a crash leaves lost clusters), then, alone, the one entry of
    /// `previous` that hangs it on (a single sector write, so the file's chain is never
    /// seen half linked). On failure the FAT is put back as it was, as far as the device
    /// allows.
    pub(crate) fn link_chain(&mut self, clusters: &[u32], previous: Option<u32>) -> Result<()> {
        let Some(&last) = clusters.last() else {
            return Ok(());
        };
        self.barrier()?;
        let result = self.try_link(clusters, previous);
        if let Err(error) = result {
            for &cluster in clusters {
                let _ = self.fat.set(&mut self.cache, cluster, Entry::Free);
            }
            if let Some(previous) = previous {
                let _ = self.fat.set(&mut self.cache, previous, Entry::End);
            }
            return Err(error);
        }
        self.next_free = if last >= self.layout.max_cluster() {
            2
        } else {
            last + 1
        };
        Ok(())
    }

    fn try_link(&mut self, clusters: &[u32], previous: Option<u32>) -> Result<()> {
        for pair in clusters.windows(2) {
            self.fat
                .set(&mut self.cache, pair[0], Entry::Next(pair[1]))?;
        }
        if let Some(&last) = clusters.last() {
            self.fat.set(&mut self.cache, last, Entry::End)?;
        }
        self.barrier()?;
        if let (Some(previous), Some(&first)) = (previous, clusters.first()) {
            self.fat
                .set(&mut self.cache, previous, Entry::Next(first))?;
            self.barrier()?;
        }
        Ok(())
    }

    /// Frees the chain from `first`. The caller has already written (and put behind a
    /// barrier) the directory change that stopped referring to it.
    pub(crate) fn free_chain(&mut self, first: u32) -> Result<()> {
        self.generation += 1;
        let mut walk = self.walk(first);
        let mut current = first;
        loop {
            let next = self.step(&mut walk)?;
            self.fat.set(&mut self.cache, current, Entry::Free)?;
            match next {
                Some(next) => current = next,
                None => return Ok(()),
            }
        }
    }

    /// Frees every allocated cluster that `keep` does not claim (lost clusters, which no
    /// chain reaches); returns how many.
    pub(crate) fn free_unclaimed(&mut self, keep: impl Fn(u32) -> bool) -> Result<u32> {
        self.generation += 1;
        self.fat.free_unless(&mut self.cache, keep)
    }

    /// Ends the chain at `last` and frees what followed it. The end mark is written
    /// first, alone, so a crash leaves the file's chain whole and the rest lost, never a
    /// chain that runs into freed clusters.
    pub(crate) fn cut_chain_after(&mut self, last: u32) -> Result<()> {
        self.generation += 1;
        let next = self.next_cluster(last)?;
        self.fat.set(&mut self.cache, last, Entry::End)?;
        match next {
            Some(next) => {
                self.barrier()?;
                self.free_chain(next)
            }
            None => Ok(()),
        }
    }

    /// Fills `cluster` with zeros on the device.
    pub(crate) fn zero_cluster(&mut self, cluster: u32) -> Result<()> {
        let lba = self.cluster_lba(cluster)?;
        let zeros = alloc::vec![0u8; self.layout.sectors_per_cluster as usize * SECTOR_SIZE];
        self.cache.write_bulk(lba, &zeros)
    }

    /// Writes `data` into `cluster` at byte `offset` (which stays inside the cluster).
    /// `fresh` says the cluster was just allocated, so partial sectors need not be read.
    pub(crate) fn write_in_cluster(
        &mut self,
        cluster: u32,
        offset: u32,
        data: &[u8],
        fresh: bool,
    ) -> Result<()> {
        let base = self.cluster_lba(cluster)?;
        let mut position = offset as usize;
        let mut done = 0;
        while done < data.len() {
            let lba = base + (position / SECTOR_SIZE) as u64;
            let within = position % SECTOR_SIZE;
            let left = data.len() - done;
            if within == 0 && left >= SECTOR_SIZE {
                let whole = left / SECTOR_SIZE * SECTOR_SIZE;
                self.cache.write_bulk(lba, &data[done..done + whole])?;
                done += whole;
                position += whole;
                continue;
            }
            let take = left.min(SECTOR_SIZE - within);
            let sector = if fresh {
                self.cache.overwrite(lba, Kind::Data)?
            } else {
                self.cache.modify(lba, Kind::Data)?
            };
            sector[within..within + take].copy_from_slice(&data[done..done + take]);
            done += take;
            position += take;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes from `cluster` at byte `offset`, reading ahead to the end
    /// of the cluster when a partial sector has to come from the device.
    pub(crate) fn read_in_cluster(
        &mut self,
        cluster: u32,
        offset: u32,
        buf: &mut [u8],
    ) -> Result<()> {
        let base = self.cluster_lba(cluster)?;
        let sectors_per_cluster = u64::from(self.layout.sectors_per_cluster);
        let mut position = offset as usize;
        let mut done = 0;
        while done < buf.len() {
            let index = (position / SECTOR_SIZE) as u64;
            let lba = base + index;
            let within = position % SECTOR_SIZE;
            let left = buf.len() - done;
            if within == 0 && left >= SECTOR_SIZE {
                let whole = left / SECTOR_SIZE * SECTOR_SIZE;
                self.cache.read_bulk(lba, &mut buf[done..done + whole])?;
                done += whole;
                position += whole;
                continue;
            }
            self.cache
                .prefetch(lba, sectors_per_cluster - index, Kind::Data)?;
            let take = left.min(SECTOR_SIZE - within);
            let sector = self.cache.read(lba, Kind::Data)?;
            buf[done..done + take].copy_from_slice(&sector[within..within + take]);
            done += take;
            position += take;
        }
        Ok(())
    }

    /// Writes every pending change to the device, in data, FAT, directory order.
    pub(crate) fn barrier(&mut self) -> Result<()> {
        if self.cache.has_dirty() {
            self.cache.flush()?;
        }
        Ok(())
    }
}
