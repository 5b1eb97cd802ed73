//! Directories: the 32-byte entry format, scanning a directory (with its long names),
//! and adding, rewriting and removing entries.

use alloc::string::String;
use alloc::vec::Vec;

use crate::cache::Kind;
use crate::device::{BlockDevice, SECTOR_SIZE};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::lfn;
use crate::metadata::{Attributes, DirEntry, Metadata};
use crate::shortname;
use crate::time::Timestamp;

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
    slots: Vec<(Position, bool)>,
    /// The index of the end-of-directory marker, if there is one.
    end: Option<usize>,
    /// The last cluster of a cluster directory.
    last_cluster: Option<u32>,
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
