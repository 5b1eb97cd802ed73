//! Scanning a directory: its live entries with their long names, and every slot in
//! order with whether it is free (for placing new entries).

use alloc::string::String;
use alloc::vec::Vec;

use super::{
    Location, Position, RawEntry, DELETED, DOT, DOT_DOT, ENTRIES_PER_SECTOR, ENTRY_SIZE,
    MAX_ENTRIES,
};
use crate::cache::Kind;
use crate::device::BlockDevice;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::lfn;
use crate::metadata::{Attributes, DirEntry};
use crate::shortname;

/// A live entry found by a scan, with the long name that precedes it.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// The long name, else the short name as displayed.
    pub(crate) name: String,
    pub(crate) short_display: String,
    pub(crate) raw: RawEntry,
    pub(crate) position: Position,
    /// The long-name entries, in on-disk order.
    pub(crate) long_positions: Vec<Position>,
}

impl Found {
    /// Returns whether `name` names this entry, by long or short name, ignoring case.
    pub(crate) fn matches(&self, name: &str) -> bool {
        equal_ignoring_case(&self.name, name) || equal_ignoring_case(&self.short_display, name)
    }

    /// Returns the directory this entry is, or an error if it is not one.
    pub(crate) fn as_directory(&self) -> Result<Location> {
        if !self.raw.is_dir() {
            return Err(Error::NotADirectory);
        }
        match self.raw.first_cluster() {
            0 => Err(Error::Corrupt("directory entry without clusters")),
            cluster => Ok(Location::Cluster(cluster)),
        }
    }

    pub(crate) fn to_dir_entry(&self) -> DirEntry {
        DirEntry {
            name: self.name.clone(),
            short_name: self.short_display.clone(),
            metadata: self.raw.metadata(),
        }
    }
}

/// Returns whether two names are equal when case is ignored.
pub(crate) fn equal_ignoring_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// Everything a scan learnt about a directory.
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) location: Location,
    /// Live entries other than `.`, `..` and the volume label.
    pub(crate) entries: Vec<Found>,
    /// Every entry slot in order, and whether it is free.
    pub(super) slots: Vec<(Position, bool)>,
    /// The index of the end-of-directory marker, if there is one.
    pub(super) end: Option<usize>,
    /// The last cluster of a cluster directory.
    pub(super) last_cluster: Option<u32>,
    /// The `..` entry, if the directory has one.
    pub(crate) dot_dot: Option<Position>,
}

impl Listing {
    /// Returns the entry `name` names.
    pub(crate) fn find(&self, name: &str) -> Option<&Found> {
        self.entries.iter().find(|found| found.matches(name))
    }

    /// Forgets the entry at `position` and counts its slots as free, as if it were
    /// deleted (for planning a rename in the same directory).
    pub(crate) fn release(&mut self, position: Position) {
        let Some(index) = self
            .entries
            .iter()
            .position(|found| found.position == position)
        else {
            return;
        };
        let found = self.entries.remove(index);
        for slot in &mut self.slots {
            if slot.0 == found.position || found.long_positions.contains(&slot.0) {
                slot.1 = true;
            }
        }
    }

    /// Returns whether a live entry, or any entry slot in use, has this short name.
    pub(crate) fn short_taken(&self, short: &[u8; 11]) -> bool {
        self.entries
            .iter()
            .any(|found| &found.raw.short_name() == short)
    }
}

/// Returns the sectors of a directory and, for a cluster directory, its last cluster.
fn sectors<D: BlockDevice>(
    disk: &mut Disk<D>,
    location: Location,
) -> Result<(Vec<u64>, Option<u32>)> {
    match location {
        Location::Root => {
            let start = disk.layout.root_start;
            Ok((
                (start..start + u64::from(disk.layout.root_sectors)).collect(),
                None,
            ))
        }
        Location::Cluster(first) => {
            let per_cluster = u64::from(disk.layout.sectors_per_cluster);
            let mut result = Vec::new();
            let mut walk = disk.walk(first);
            let mut cluster = first;
            loop {
                let lba = disk.cluster_lba(cluster)?;
                result.extend(lba..lba + per_cluster);
                if result.len() * ENTRIES_PER_SECTOR > MAX_ENTRIES {
                    return Err(Error::Corrupt("directory larger than FAT allows"));
                }
                match disk.step(&mut walk)? {
                    Some(next) => cluster = next,
                    None => return Ok((result, Some(cluster))),
                }
            }
        }
    }
}

/// Returns what `location` holds.
pub(crate) fn scan<D: BlockDevice>(disk: &mut Disk<D>, location: Location) -> Result<Listing> {
    let (lbas, last_cluster) = sectors(disk, location)?;
    let mut listing = Listing {
        location,
        entries: Vec::new(),
        slots: Vec::new(),
        end: None,
        last_cluster,
        dot_dot: None,
    };
    let mut assembler = lfn::Assembler::default();
    let mut long_positions = Vec::new();
    for (index, &lba) in lbas.iter().enumerate() {
        if listing.end.is_some() {
            listing
                .slots
                .extend((0..ENTRIES_PER_SECTOR).map(|slot| (Position { lba, slot }, true)));
            continue;
        }
        if index + 1 < lbas.len() && lbas[index + 1] == lba + 1 {
            let run = lbas[index..]
                .windows(2)
                .take(15)
                .take_while(|w| w[1] == w[0] + 1)
                .count() as u64
                + 1;
            disk.cache.prefetch(lba, run, Kind::Directory)?;
        }
        let sector = *disk.cache.read(lba, Kind::Directory)?;
        for slot in 0..ENTRIES_PER_SECTOR {
            let position = Position { lba, slot };
            let mut bytes = [0u8; ENTRY_SIZE];
            bytes.copy_from_slice(&sector[slot * ENTRY_SIZE..(slot + 1) * ENTRY_SIZE]);
            if listing.end.is_some() || bytes[0] == 0 {
                listing.end.get_or_insert(listing.slots.len());
                listing.slots.push((position, true));
                continue;
            }
            listing.slots.push((position, bytes[0] == DELETED));
            if bytes[0] == DELETED {
                assembler.reset();
                long_positions.clear();
                continue;
            }
            if bytes[11] & 0x3F == lfn::ATTRIBUTE {
                let starts = bytes[0] & 0x40 != 0;
                assembler.push(&bytes);
                if assembler.collected == 0 {
                    long_positions.clear();
                } else {
                    if starts {
                        long_positions.clear();
                    }
                    long_positions.push(position);
                }
                continue;
            }
            let raw = RawEntry(bytes);
            let short = raw.short_name();
            let long = assembler.finish(&short);
            let positions = core::mem::take(&mut long_positions);
            if raw.attributes().contains(Attributes::VOLUME_ID) {
                continue;
            }
            if short == DOT {
                continue;
            }
            if short == DOT_DOT {
                listing.dot_dot = Some(position);
                continue;
            }
            let short_display = shortname::display(&short, raw.nt_flags());
            let (name, long_positions_kept) = match long {
                Some(name) => (name, positions),
                None => (short_display.clone(), Vec::new()),
            };
            listing.entries.push(Found {
                name,
                short_display,
                raw,
                position,
                long_positions: long_positions_kept,
            });
        }
    }
    Ok(listing)
}
