//! Changing a directory: planning where a new entry set goes, growing the directory to
//! make room, writing the set (long-name entries, then the short one), removing a set,
//! and writing a new directory's `.` and `..`.

use alloc::vec::Vec;

use super::listing::{Found, Listing};
use super::{
    read_entry, write_entry, Location, Position, RawEntry, DELETED, DOT, DOT_DOT,
    ENTRIES_PER_SECTOR, ENTRY_SIZE, MAX_ENTRIES,
};
use crate::cache::Kind;
use crate::device::BlockDevice;
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::lfn;
use crate::metadata::Attributes;
use crate::shortname;
use crate::time::Timestamp;

/// Marks an entry and its long-name entries deleted. When the long-name entries lie in
/// another sector than the short entry, they are deleted (and written) first: a crash in
/// between leaves a valid short-named entry, never orphaned long-name parts.
pub(crate) fn remove<D: BlockDevice>(disk: &mut Disk<D>, found: &Found) -> Result<()> {
    for &position in &found.long_positions {
        let sector = disk.cache.modify(position.lba, Kind::Directory)?;
        sector[position.slot * ENTRY_SIZE] = DELETED;
    }
    if found
        .long_positions
        .iter()
        .any(|position| position.lba != found.position.lba)
    {
        disk.barrier()?;
    }
    let sector = disk.cache.modify(found.position.lba, Kind::Directory)?;
    sector[found.position.slot * ENTRY_SIZE] = DELETED;
    Ok(())
}

/// Returns a short name for a new entry called `name` in `listing` and the long-name
/// units to store with it (empty when the short name says it all).
pub(crate) fn names_for(listing: &Listing, name: &str) -> Result<([u8; 11], u8, Vec<u16>)> {
    let units = lfn::encode(name)?;
    if let Some((short, flags)) = shortname::exact(name) {
        if listing.short_taken(&short) {
            return Err(Error::AlreadyExists);
        }
        return Ok((short, flags, Vec::new()));
    }
    let short = shortname::generate(name, |candidate| listing.short_taken(candidate))?;
    Ok((short, 0, units))
}

/// Returns the number of directory entries a name needs: its long-name entries (`units`,
/// empty when the short name says it all) and the short entry.
fn entries_needed(units: &[u16]) -> usize {
    if units.is_empty() {
        1
    } else {
        lfn::entry_count(units) + 1
    }
}

/// Where a new entry set will go; made by [`plan_insert`] before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insertion {
    needed: usize,
    place: Place,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Slots `start..start + needed` of the listing.
    Slots(usize),
    /// The start of this many new clusters hung after the directory's last one.
    Grow(u32),
}

impl Insertion {
    /// Returns the free clusters the insertion needs to grow the directory.
    pub(crate) fn clusters_needed(&self) -> u32 {
        match self.place {
            Place::Slots(_) => 0,
            Place::Grow(clusters) => clusters,
        }
    }
}

/// Returns where an entry set for the long name `units` would go in `listing`, without
/// writing anything: `DirectoryFull` if the root is full or a directory would grow past
/// what FAT allows. A set that fits in one sector is put in one sector (so it reaches
/// the disk in one write), in the sector `prefer` if it has room; only a set longer than
/// a sector (names over 195 characters) may span sectors.
pub(crate) fn plan_insert<D: BlockDevice>(
    disk: &Disk<D>,
    listing: &Listing,
    units: &[u16],
    prefer: Option<u64>,
) -> Result<Insertion> {
    let needed = entries_needed(units);
    let slots = &listing.slots;
    let (mut preferred, mut one_sector, mut any) = (None, None, None);
    let mut run = 0;
    for i in 0..slots.len() {
        run = if slots[i].1 { run + 1 } else { 0 };
        if run < needed {
            continue;
        }
        let start = i + 1 - needed;
        any = any.or(Some(start));
        if slots[start].0.lba == slots[i].0.lba {
            one_sector = one_sector.or(Some(start));
            if prefer == Some(slots[i].0.lba) {
                preferred = Some(start);
                break;
            }
        }
    }
    let fits_a_sector = needed <= ENTRIES_PER_SECTOR;
    let chosen = preferred
        .or(one_sector)
        .or(if fits_a_sector { None } else { any });
    if let Some(start) = chosen {
        return Ok(Insertion {
            needed,
            place: Place::Slots(start),
        });
    }
    if listing.location == Location::Root || listing.last_cluster.is_none() {
        return Err(Error::DirectoryFull);
    }
    let per_cluster = disk.layout.sectors_per_cluster as usize * ENTRIES_PER_SECTOR;
    let clusters = needed.div_ceil(per_cluster);
    if slots.len() + clusters * per_cluster > MAX_ENTRIES {
        return Err(Error::DirectoryFull);
    }
    Ok(Insertion {
        needed,
        place: Place::Grow(clusters as u32),
    })
}

/// Makes the room `insertion` planned and returns the slots for the entry set. `fresh`
/// holds the free clusters it needs (found by the caller, so that an operation can find
/// all its clusters before it writes anything). New clusters are zeroed and linked
/// before the set is written; the end-of-directory markers before them become deleted
/// entries, so that scans go on into the new cluster.
pub(crate) fn make_room<D: BlockDevice>(
    disk: &mut Disk<D>,
    listing: &Listing,
    insertion: &Insertion,
    fresh: &[u32],
) -> Result<Vec<Position>> {
    let needed = insertion.needed;
    match insertion.place {
        Place::Slots(start) => {
            if let Some(end) = listing.end.filter(|&end| end < start + needed) {
                // The set reaches past the end marker. Free slots between the marker and
                // the set become deleted entries, so scans reach the set.
                for &(position, _) in listing.slots.get(end..start).unwrap_or_default() {
                    let sector = disk.cache.modify(position.lba, Kind::Directory)?;
                    sector[position.slot * ENTRY_SIZE] = DELETED;
                }
                // Slots after the end marker are free by definition but may hold garbage:
                // keep a marker right behind the new entries, on the disk before them.
                if let Some(&(after, _)) = listing.slots.get(start + needed) {
                    let sector = disk.cache.read(after.lba, Kind::Directory)?;
                    if sector[after.slot * ENTRY_SIZE] != 0 {
                        disk.cache.modify(after.lba, Kind::Directory)?[after.slot * ENTRY_SIZE] = 0;
                        disk.barrier()?;
                    }
                }
            }
            Ok(listing.slots[start..start + needed]
                .iter()
                .map(|&(position, _)| position)
                .collect())
        }
        Place::Grow(clusters) => {
            let last = listing
                .last_cluster
                .ok_or(Error::Corrupt("growing a directory without clusters"))?;
            if fresh.len() != clusters as usize {
                return Err(Error::InvalidArgument(
                    "clusters for the directory's growth",
                ));
            }
            for &cluster in fresh {
                disk.zero_cluster(cluster)?;
            }
            disk.link_chain(fresh, Some(last))?;
            if let Some(end) = listing.end {
                for &(position, _) in &listing.slots[end..] {
                    let sector = disk.cache.modify(position.lba, Kind::Directory)?;
                    sector[position.slot * ENTRY_SIZE] = DELETED;
                }
            }
            let mut positions = Vec::with_capacity(needed);
            'clusters: for &cluster in fresh {
                let lba = disk.cluster_lba(cluster)?;
                for sector in 0..u64::from(disk.layout.sectors_per_cluster) {
                    for slot in 0..ENTRIES_PER_SECTOR {
                        if positions.len() == needed {
                            break 'clusters;
                        }
                        positions.push(Position {
                            lba: lba + sector,
                            slot,
                        });
                    }
                }
            }
            Ok(positions)
        }
    }
}

/// Writes an entry set (the long-name entries for `units`, then `raw`) into `positions`
/// from [`make_room`]; returns where the short entry went. A set that spans sectors has
/// its short entry written first: a crash in between leaves a valid short-named entry,
/// never orphaned long-name parts.
pub(crate) fn write_set<D: BlockDevice>(
    disk: &mut Disk<D>,
    positions: &[Position],
    units: &[u16],
    raw: &RawEntry,
) -> Result<Position> {
    let (&short_position, long_positions) = positions
        .split_last()
        .ok_or(Error::InvalidArgument("an entry set needs a slot"))?;
    let long_entries = if units.is_empty() {
        Vec::new()
    } else {
        lfn::entries(units, &raw.short_name())
    };
    write_entry(disk, short_position, &raw.0)?;
    if long_positions
        .iter()
        .any(|position| position.lba != short_position.lba)
    {
        disk.barrier()?;
    }
    for (position, entry) in long_positions.iter().zip(long_entries.iter()) {
        write_entry(disk, *position, entry)?;
    }
    Ok(short_position)
}

/// Returns the sectors that `positions` lie in, for comparing two entry sets.
pub(crate) fn sectors_of(positions: &[Position]) -> Vec<u64> {
    let mut sectors: Vec<u64> = positions.iter().map(|position| position.lba).collect();
    sectors.sort_unstable();
    sectors.dedup();
    sectors
}

/// Returns the position of the `..` entry of the directory starting at `cluster`, if its
/// second slot holds one.
pub(crate) fn dot_dot_of<D: BlockDevice>(
    disk: &mut Disk<D>,
    cluster: u32,
) -> Result<Option<Position>> {
    let position = Position {
        lba: disk.cluster_lba(cluster)?,
        slot: 1,
    };
    let entry = read_entry(disk, position)?;
    Ok((entry.short_name() == DOT_DOT).then_some(position))
}

/// Writes `cluster` (free, not yet linked) as a new, empty directory whose parent is
/// `parent`: zeros with `.` and `..`.
pub(crate) fn write_new_directory<D: BlockDevice>(
    disk: &mut Disk<D>,
    cluster: u32,
    parent: Location,
    now: Timestamp,
) -> Result<()> {
    let mut contents = alloc::vec![0u8; disk.cluster_bytes() as usize];
    let dot = RawEntry::new(DOT, 0, Attributes::DIRECTORY, cluster, now);
    let dot_dot = RawEntry::new(DOT_DOT, 0, Attributes::DIRECTORY, parent.cluster(), now);
    contents[..ENTRY_SIZE].copy_from_slice(&dot.0);
    contents[ENTRY_SIZE..2 * ENTRY_SIZE].copy_from_slice(&dot_dot.0);
    let lba = disk.cluster_lba(cluster)?;
    disk.cache.write_bulk(lba, &contents)
}
