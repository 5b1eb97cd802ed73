//! Open files: reading, writing (all or nothing), seeking and changing the length.

use alloc::vec;

use crate::device::BlockDevice;
use crate::dir::{self, Position, RawEntry};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::metadata::Attributes;
use crate::time::Timestamp;

/// Where to move a file's position to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekFrom {
    /// This many bytes from the start.
    Start(u64),
    /// This many bytes from the end.
    End(i64),
    /// This many bytes from the current position.
    Current(i64),
}

/// A remembered place in a file's cluster chain, so sequential access does not walk the
/// chain from its start every time.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    generation: u64,
    first: u32,
    index: u32,
    cluster: u32,
}

/// An open file. It names the file's directory entry and is used through the `Volume`
/// that opened it; it stays valid until the file is removed or renamed.
#[derive(Debug, Clone)]
pub struct File {
    position: Position,
    short: [u8; 11],
    offset: u64,
    writable: bool,
    append: bool,
    cursor: Option<Cursor>,
}

impl File {
    pub(crate) fn new(position: Position, short: [u8; 11], writable: bool, append: bool) -> Self {
        File {
            position,
            short,
            offset: 0,
            writable,
            append,
            cursor: None,
        }
    }

    /// Returns the current position in bytes.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// Returns whether the file was opened for writing.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Returns the file's directory entry, checking that it still is this file.
    pub(crate) fn entry<D: BlockDevice>(&self, disk: &mut Disk<D>) -> Result<RawEntry> {
        let raw = dir::read_entry(disk, self.position)?;
        if raw.short_name() != self.short || raw.0[0] == 0 || raw.0[0] == 0xE5 || raw.is_dir() {
            return Err(Error::StaleHandle);
        }
        Ok(raw)
    }

    fn writable_entry<D: BlockDevice>(&self, disk: &mut Disk<D>) -> Result<RawEntry> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let raw = self.entry(disk)?;
        if raw.attributes().contains(Attributes::READ_ONLY) {
            return Err(Error::ReadOnly);
        }
        Ok(raw)
    }

    /// Returns cluster number `index` of the chain from `first`, or `None` if the chain is
    /// shorter.
    fn cluster_at<D: BlockDevice>(
        &mut self,
        disk: &mut Disk<D>,
        first: u32,
        index: u32,
    ) -> Result<Option<u32>> {
        if index >= disk.fat.cluster_count() {
            // Also stops a walk that goes round a FAT loop by way of the cursor.
            return Err(Error::Corrupt("file larger than the volume"));
        }
        let (mut at, mut cluster) = match self.cursor {
            Some(c) if c.generation == disk.generation && c.first == first && c.index <= index => {
                (c.index, c.cluster)
            }
            _ => (0, first),
        };
        let mut walk = disk.walk(cluster);
        while at < index {
            match disk.step(&mut walk)? {
                Some(next) => {
                    cluster = next;
                    at += 1;
                }
                None => return Ok(None),
            }
        }
        self.cursor = Some(Cursor {
            generation: disk.generation,
            first,
            index: at,
            cluster,
        });
        Ok(Some(cluster))
    }

    /// Returns the length and last cluster of the chain from `first`.
    fn chain_end<D: BlockDevice>(&mut self, disk: &mut Disk<D>, first: u32) -> Result<(u32, u32)> {
        let (start, from) = match self.cursor {
            Some(c) if c.generation == disk.generation && c.first == first => (c.index, c.cluster),
            _ => (0, first),
        };
        let (length, last) = disk.chain_end(from)?;
        let index = start + length - 1;
        self.cursor = Some(Cursor {
            generation: disk.generation,
            first,
            index,
            cluster: last,
        });
        Ok((index + 1, last))
    }

    /// Reads from the current position; returns the number of bytes read, 0 at the end.
    pub(crate) fn read<D: BlockDevice>(
        &mut self,
        disk: &mut Disk<D>,
        buf: &mut [u8],
    ) -> Result<usize> {
        let raw = self.entry(disk)?;
        let size = u64::from(raw.size());
        if self.offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let count = (size - self.offset).min(buf.len() as u64) as usize;
        let first = raw.first_cluster();
        if first == 0 {
            return Err(Error::Corrupt("file with a size but no clusters"));
        }
        let cluster_bytes = u64::from(disk.cluster_bytes());
        let mut done = 0;
        while done < count {
            let at = self.offset + done as u64;
            let within = at % cluster_bytes;
            let index = (at / cluster_bytes) as u32;
            let cluster = self
                .cluster_at(disk, first, index)?
                .ok_or(Error::Corrupt("file larger than its cluster chain"))?;
            // Whole clusters that follow each other on disk are read in one request.
            let mut run = 1u32;
            if within == 0 {
                while (u64::from(run) + 1) * cluster_bytes <= (count - done) as u64
                    && self.cluster_at(disk, first, index + run)? == Some(cluster + run)
                {
                    run += 1;
                }
            }
            let take = if within == 0 && u64::from(run) * cluster_bytes <= (count - done) as u64 {
                (u64::from(run) * cluster_bytes) as usize
            } else {
                (count - done).min((cluster_bytes - within) as usize)
            };
            disk.read_in_cluster(cluster, within as u32, &mut buf[done..done + take])?;
            done += take;
        }
        self.offset += count as u64;
        Ok(count)
    }

    /// Writes all of `data` at the current position (the end when appending) or nothing.
    pub(crate) fn write<D: BlockDevice>(
        &mut self,
        disk: &mut Disk<D>,
        data: &[u8],
        now: Timestamp,
    ) -> Result<usize> {
        let mut raw = self.writable_entry(disk)?;
        if self.append {
            self.offset = u64::from(raw.size());
        }
        self.write_at(disk, &mut raw, self.offset, data, now)?;
        self.offset += data.len() as u64;
        Ok(data.len())
    }

    /// Writes `data` at `start`, filling any gap after the old end with zeros. Allocates
    /// every needed cluster before changing anything; writes data, then the FAT chain,
    /// then the directory entry.
    fn write_at<D: BlockDevice>(
        &mut self,
        disk: &mut Disk<D>,
        raw: &mut RawEntry,
        start: u64,
        data: &[u8],
        now: Timestamp,
    ) -> Result<()> {
        let size = u64::from(raw.size());
        if data.is_empty() && start <= size {
            return Ok(());
        }
        let end = start + data.len() as u64;
        if end > u64::from(u32::MAX) {
            return Err(Error::FileTooLarge);
        }
        let cluster_bytes = u64::from(disk.cluster_bytes());
        let first = raw.first_cluster();
        let (have, last) = if first == 0 {
            if size > 0 {
                return Err(Error::Corrupt("file with a size but no clusters"));
            }
            (0, None)
        } else {
            let (length, last) = self.chain_end(disk, first)?;
            (length, Some(last))
        };
        if size.div_ceil(cluster_bytes) > u64::from(have) {
            return Err(Error::Corrupt("file larger than its cluster chain"));
        }
        let needed = end.div_ceil(cluster_bytes) as u32;
        let fresh = disk.find_free(needed.saturating_sub(have))?;

        let from = start.min(size);
        let zeros = if start > size {
            vec![0u8; cluster_bytes as usize]
        } else {
            vec![]
        };
        let mut at = from;
        while at < end {
            let index = (at / cluster_bytes) as u32;
            let within = at % cluster_bytes;
            let take = (end - at).min(cluster_bytes - within);
            let (cluster, is_fresh) = if index < have {
                let cluster = self
                    .cluster_at(disk, first, index)?
                    .ok_or(Error::Corrupt("file larger than its cluster chain"))?;
                (cluster, false)
            } else {
                (fresh[(index - have) as usize], true)
            };
            if at < start {
                let count = (start.min(at + take) - at) as usize;
                disk.write_in_cluster(cluster, within as u32, &zeros[..count], is_fresh)?;
            }
            if at + take > start {
                let from_data = at.max(start);
                let slice = &data[(from_data - start) as usize..(at + take - start) as usize];
                disk.write_in_cluster(
                    cluster,
                    (from_data % cluster_bytes) as u32,
                    slice,
                    is_fresh,
                )?;
            }
            at += take;
        }

        if !fresh.is_empty() {
            disk.link_chain(&fresh, last)?;
            if first == 0 {
                raw.set_first_cluster(fresh[0]);
            }
            self.cursor = Some(Cursor {
                generation: disk.generation,
                first: raw.first_cluster(),
                index: needed - 1,
                cluster: fresh[fresh.len() - 1],
            });
        }
        raw.set_size(size.max(end) as u32);
        raw.set_modified(now);
        if let Err(error) = dir::write_entry(disk, self.position, &raw.0) {
            // Best effort: give the new clusters back rather than leave them lost.
            if !fresh.is_empty() {
                let _ = match last {
                    Some(last) => disk.cut_chain_after(last),
                    None => disk.free_chain(fresh[0]),
                };
            }
            return Err(error);
        }
        Ok(())
    }

    /// Sets the file's length: cuts it short (directory entry first, then the FAT), or
    /// extends it with zeros.
    pub(crate) fn set_len<D: BlockDevice>(
        &mut self,
        disk: &mut Disk<D>,
        length: u64,
        now: Timestamp,
    ) -> Result<()> {
        let mut raw = self.writable_entry(disk)?;
        let size = u64::from(raw.size());
        if length > u64::from(u32::MAX) {
            return Err(Error::FileTooLarge);
        }
        if length >= size {
            return self.write_at(disk, &mut raw, length, &[], now);
        }
        let cluster_bytes = u64::from(disk.cluster_bytes());
        let keep = length.div_ceil(cluster_bytes) as u32;
        let first = raw.first_cluster();
        let last_kept = if first != 0 && keep > 0 {
            Some(
                self.cluster_at(disk, first, keep - 1)?
                    .ok_or(Error::Corrupt("file larger than its cluster chain"))?,
            )
        } else {
            None
        };
        raw.set_size(length as u32);
        if keep == 0 {
            raw.set_first_cluster(0);
        }
        raw.set_modified(now);
        dir::write_entry(disk, self.position, &raw.0)?;
        disk.barrier()?;
        self.cursor = None;
        match (first, last_kept) {
            (0, _) => Ok(()),
            (_, Some(last)) => disk.cut_chain_after(last),
            (first, None) => disk.free_chain(first),
        }
    }

    /// Moves the position; returns the new one. Positions past the end are allowed (a
    /// write there fills the gap with zeros).
    pub(crate) fn seek<D: BlockDevice>(&mut self, disk: &mut Disk<D>, to: SeekFrom) -> Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.offset.checked_add_signed(delta),
            SeekFrom::End(delta) => u64::from(self.entry(disk)?.size()).checked_add_signed(delta),
        };
        self.offset = target.ok_or(Error::InvalidArgument("seek before the start of the file"))?;
        Ok(self.offset)
    }
}
