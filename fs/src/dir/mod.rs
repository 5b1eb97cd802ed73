//! Directories: the 32-byte entry format, scanning a directory (with its long names),
//! and adding, rewriting and removing entries.
//!
//! The entry format and reading and writing single entries live here; `listing` scans a
//! directory, `change` adds and removes entry sets and makes new directories.

mod change;
mod listing;

use crate::cache::Kind;
use crate::device::{BlockDevice, SECTOR_SIZE};
use crate::disk::Disk;
use crate::error::Result;
use crate::metadata::{Attributes, Metadata};
use crate::shortname;
use crate::time::Timestamp;

pub(crate) use change::{
    dot_dot_of, make_room, names_for, plan_insert, remove, sectors_of, write_new_directory,
    write_set,
};
pub(crate) use listing::{scan, Found, Listing};

const ENTRY_SIZE: usize = 32;
const ENTRIES_PER_SECTOR: usize = SECTOR_SIZE / ENTRY_SIZE;
/// FAT allows at most 65536 entries in a directory; a longer one is corrupt.
const MAX_ENTRIES: usize = 65536;
/// The first byte of a deleted entry.
const DELETED: u8 = 0xE5;
pub(crate) const DOT: [u8; 11] = *b".          ";
pub(crate) const DOT_DOT: [u8; 11] = *b"..         ";

/// Where a directory's entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location {
    /// The fixed root directory region of FAT16.
    Root,
    /// A directory stored in the cluster chain starting here.
    Cluster(u32),
}

impl Location {
    /// Returns the cluster number that `..` entries use for this directory.
    pub(crate) fn cluster(self) -> u32 {
        match self {
            Location::Root => 0,
            Location::Cluster(cluster) => cluster,
        }
    }
}

/// Where one 32-byte entry lives on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) lba: u64,
    slot: usize,
}

/// A short directory entry as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawEntry(pub(crate) [u8; ENTRY_SIZE]);

impl RawEntry {
    /// Returns an entry for a new file or directory created at `now`.
    pub(crate) fn new(
        short: [u8; 11],
        nt_flags: u8,
        attributes: u8,
        cluster: u32,
        now: Timestamp,
    ) -> Self {
        let mut entry = RawEntry([0; ENTRY_SIZE]);
        entry.set_short_name(short, nt_flags);
        entry.0[11] = attributes;
        entry.0[13] = now.fat_tenths();
        entry.0[14..16].copy_from_slice(&now.fat_time().to_le_bytes());
        entry.0[16..18].copy_from_slice(&now.fat_date().to_le_bytes());
        entry.0[18..20].copy_from_slice(&now.fat_date().to_le_bytes());
        entry.0[22..24].copy_from_slice(&now.fat_time().to_le_bytes());
        entry.0[24..26].copy_from_slice(&now.fat_date().to_le_bytes());
        entry.set_first_cluster(cluster);
        entry
    }

    fn u16_at(&self, offset: usize) -> u16 {
        crate::bytes::u16_at(&self.0, offset)
    }

    pub(crate) fn short_name(&self) -> [u8; 11] {
        let mut name = [0; 11];
        name.copy_from_slice(&self.0[..11]);
        name
    }

    pub(crate) fn nt_flags(&self) -> u8 {
        self.0[12] & (shortname::LOWER_BASE | shortname::LOWER_EXTENSION)
    }

    pub(crate) fn set_short_name(&mut self, short: [u8; 11], nt_flags: u8) {
        self.0[..11].copy_from_slice(&short);
        if self.0[0] == DELETED {
            self.0[0] = 0x05;
        }
        self.0[12] =
            (self.0[12] & !(shortname::LOWER_BASE | shortname::LOWER_EXTENSION)) | nt_flags;
    }

    pub(crate) fn attributes(&self) -> Attributes {
        Attributes(self.0[11])
    }

    pub(crate) fn set_attributes(&mut self, attributes: u8) {
        self.0[11] = attributes;
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.attributes().contains(Attributes::DIRECTORY)
    }

    /// Returns the first cluster; FAT16 keeps the high word zero, so a nonzero one is
    /// reported as is and then fails the range check.
    pub(crate) fn first_cluster(&self) -> u32 {
        (u32::from(self.u16_at(20)) << 16) | u32::from(self.u16_at(26))
    }

    pub(crate) fn set_first_cluster(&mut self, cluster: u32) {
        self.0[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
        self.0[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    }

    pub(crate) fn size(&self) -> u32 {
        crate::bytes::u32_at(&self.0, 28)
    }

    pub(crate) fn set_size(&mut self, size: u32) {
        self.0[28..32].copy_from_slice(&size.to_le_bytes());
    }

    /// Records a write at `now`: modification time, access date and the archive bit.
    pub(crate) fn set_modified(&mut self, now: Timestamp) {
        self.0[22..24].copy_from_slice(&now.fat_time().to_le_bytes());
        self.0[24..26].copy_from_slice(&now.fat_date().to_le_bytes());
        self.0[18..20].copy_from_slice(&now.fat_date().to_le_bytes());
        self.0[11] |= Attributes::ARCHIVE;
    }

    pub(crate) fn metadata(&self) -> Metadata {
        Metadata {
            size: if self.is_dir() { 0 } else { self.size() },
            attributes: self.attributes(),
            created: Timestamp::from_fat(self.u16_at(16), self.u16_at(14), self.0[13]),
            modified: Timestamp::from_fat(self.u16_at(24), self.u16_at(22), 0),
            accessed: Timestamp::from_fat(self.u16_at(18), 0, 0),
        }
    }
}

/// Returns the entry stored at `position`.
pub(crate) fn read_entry<D: BlockDevice>(
    disk: &mut Disk<D>,
    position: Position,
) -> Result<RawEntry> {
    let sector = disk.cache.read(position.lba, Kind::Directory)?;
    let mut bytes = [0u8; ENTRY_SIZE];
    bytes.copy_from_slice(&sector[position.slot * ENTRY_SIZE..(position.slot + 1) * ENTRY_SIZE]);
    Ok(RawEntry(bytes))
}

/// Stores `bytes` at `position` (in the cache, written back in directory order).
pub(crate) fn write_entry<D: BlockDevice>(
    disk: &mut Disk<D>,
    position: Position,
    bytes: &[u8; ENTRY_SIZE],
) -> Result<()> {
    let sector = disk.cache.modify(position.lba, Kind::Directory)?;
    sector[position.slot * ENTRY_SIZE..(position.slot + 1) * ENTRY_SIZE].copy_from_slice(bytes);
    Ok(())
}
