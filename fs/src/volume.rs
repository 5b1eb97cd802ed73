//! The mounted volume: mounting, paths, and the file and directory operations.

use alloc::vec::Vec;

use crate::bpb::Layout;
use crate::cache::{CacheStats, SectorCache};
use crate::check;
use crate::device::{BlockDevice, SECTOR_SIZE};
use crate::dir::{self, Found, Listing, Location, RawEntry};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::file::{File, SeekFrom};
use crate::mbr;
use crate::metadata::{Attributes, DirEntry, Metadata};
use crate::time::{Clock, Timestamp};

/// How to mount a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOptions {
    /// Refuse every change with `Error::ReadOnly`.
    pub read_only: bool,
    /// The number of 512-byte sectors the cache holds (at least 8).
    pub cache_sectors: usize,
    /// Walk every file and directory chain at mount and refuse the volume with
    /// `Error::Corrupt` if two chains share a cluster (cross-linked), a chain is broken,
    /// or an entry's first cluster is out of range; then, unless read-only, repair what
    /// a crash may leave (chains longer than their files, lost clusters). Costs one visit
    /// per used cluster and directory entry, and one pass over the FAT. On by default.
    pub check: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_only: false,
            cache_sectors: 128,
            check: true,
        }
    }
}

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Allow writes through the handle.
    pub write: bool,
    /// Write at the end of the file whatever the position (implies `write`).
    pub append: bool,
    /// Create the file if it does not exist (needs `write` or `append`).
    pub create: bool,
    /// Fail with `AlreadyExists` if the file exists (implies `create`).
    pub create_new: bool,
    /// Cut the file to length 0 on opening (needs `write`).
    pub truncate: bool,
}

impl OpenOptions {
    /// Returns options for reading only.
    pub fn read() -> Self {
        OpenOptions::default()
    }

    /// Returns options for reading and writing an existing file.
    pub fn write() -> Self {
        OpenOptions {
            write: true,
            ..OpenOptions::default()
        }
    }
}

/// Facts about a mounted volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The device sector of the volume's boot sector (63 on a vvfat disk, 0 unpartitioned).
    pub start_sector: u64,
    /// The number of sectors in the volume.
    pub total_sectors: u32,
    /// Bytes per cluster.
    pub cluster_size: u32,
    /// The number of data clusters.
    pub cluster_count: u32,
    /// The number of FAT copies kept in step.
    pub fat_copies: u32,
    /// The entries the fixed root directory can hold.
    pub root_entries: u32,
    /// The volume serial number.
    pub serial: u32,
    /// FAT sectors of the second copy that differed from the first at mount, after a
    /// crash in the middle of a change; copied from the first unless mounted read-only.
    pub repaired_fat_sectors: u32,
    /// Files whose cluster chains were longer than their sizes at mount (an append cut
    /// off by a crash) and were cut to their sizes.
    pub trimmed_files: u32,
    /// Lost clusters (allocated, reached by no chain) freed at mount.
    pub reclaimed_clusters: u32,
}

/// What a path names.
enum Target {
    Root,
    Entry { listing: Listing, index: usize },
}

/// A mounted FAT16 volume on a block device, with the clock that stamps changes.
#[derive(Debug)]
pub struct Volume<D, C> {
    disk: Disk<D>,
    clock: C,
    read_only: bool,
    /// FAT sectors that differed between the copies at mount (and were repaired).
    repaired_fat_sectors: u32,
    /// What the mount check repaired.
    repairs: check::Repairs,
}

/// Returns the components of a `/`-separated path, ignoring empty ones.
fn components(path: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    if parts.iter().any(|&part| part == "." || part == "..") {
        return Err(Error::InvalidName);
    }
    Ok(parts)
}

impl<D: BlockDevice, C: Clock> Volume<D, C> {
    /// Returns the volume on `device` (partitioned or not) with default options.
    pub fn mount(device: D, clock: C) -> Result<Self> {
        Self::mount_with(device, clock, MountOptions::default())
    }

    /// Returns the volume on `device`, mounted as `options` say. Fails on anything that is
    /// not a consistent FAT16 volume.
    pub fn mount_with(mut device: D, clock: C, options: MountOptions) -> Result<Self> {
        let sectors = device.sector_count();
        if sectors == 0 {
            return Err(Error::Corrupt("the disk is empty (0 sectors)"));
        }
        let mut sector = [0u8; SECTOR_SIZE];
        device.read(0, &mut sector)?;
        let partition = mbr::locate(&sector, sectors)?;
        if partition.start != 0 {
            device.read(partition.start, &mut sector)?;
        }
        let layout = Layout::parse(&sector, partition.start, partition.sectors)?;
        let cache = SectorCache::new(device, options.cache_sectors);
        let mut disk = Disk::new(cache, layout);
        let repaired_fat_sectors = disk.fat.reconcile(&mut disk.cache, !options.read_only)?;
        let repairs = if options.check {
            check::check_and_repair(&mut disk, !options.read_only)?
        } else {
            check::Repairs::default()
        };
        Ok(Volume {
            disk,
            clock,
            read_only: options.read_only,
            repaired_fat_sectors,
            repairs,
        })
    }

    /// Writes everything back and returns the device.
    pub fn unmount(mut self) -> Result<D> {
        self.flush()?;
        Ok(self.disk.cache.into_device())
    }

    /// Writes every cached change to the device (data, then FAT, then directories) and
    /// flushes the device.
    pub fn flush(&mut self) -> Result<()> {
        self.disk.cache.flush()
    }

    /// Returns whether changes wait in the cache that are not on the device yet.
    pub fn has_unwritten_changes(&self) -> bool {
        self.disk.cache.has_dirty()
    }

    /// Returns the device, for inspection; changes still in the cache are not on it.
    pub fn device(&self) -> &D {
        self.disk.cache.device()
    }

    /// Returns facts about the volume.
    pub fn info(&self) -> VolumeInfo {
        let layout = &self.disk.layout;
        VolumeInfo {
            start_sector: layout.volume_start,
            total_sectors: layout.total_sectors,
            cluster_size: layout.cluster_bytes(),
            cluster_count: layout.cluster_count,
            fat_copies: layout.fat_count,
            root_entries: layout.root_entries,
            serial: layout.serial,
            repaired_fat_sectors: self.repaired_fat_sectors,
            trimmed_files: self.repairs.trimmed_files,
            reclaimed_clusters: self.repairs.reclaimed_clusters,
        }
    }

    /// Returns the cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.disk.cache.stats()
    }

    /// Returns the number of free bytes.
    pub fn free_space(&mut self) -> Result<u64> {
        Ok(u64::from(self.disk.count_free()?) * u64::from(self.disk.cluster_bytes()))
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Returns the directory that `parts` names.
    fn directory(&mut self, parts: &[&str]) -> Result<Location> {
        let mut location = Location::Root;
        for part in parts {
            let listing = dir::scan(&mut self.disk, location)?;
            location = listing.find(part).ok_or(Error::NotFound)?.as_directory()?;
        }
        Ok(location)
    }

    fn target(&mut self, path: &str) -> Result<Target> {
        let parts = components(path)?;
        let Some((last, parents)) = parts.split_last() else {
            return Ok(Target::Root);
        };
        let parent = self.directory(parents)?;
        let listing = dir::scan(&mut self.disk, parent)?;
        let index = listing
            .entries
            .iter()
            .position(|found| found.matches(last))
            .ok_or(Error::NotFound)?;
        Ok(Target::Entry { listing, index })
    }

    /// Returns the listing of the parent of `path` and the last component's name; fails
    /// with `InvalidArgument` for the root.
    fn parent_of<'p>(&mut self, path: &'p str) -> Result<(Listing, &'p str)> {
        let parts = components(path)?;
        let (last, parents) = parts
            .split_last()
            .ok_or(Error::InvalidArgument("the root directory"))?;
        let parent = self.directory(parents)?;
        Ok((dir::scan(&mut self.disk, parent)?, last))
    }

    /// Returns the metadata of the file or directory at `path`.
    pub fn metadata(&mut self, path: &str) -> Result<Metadata> {
        match self.target(path)? {
            Target::Root => Ok(Metadata {
                size: 0,
                attributes: Attributes(Attributes::DIRECTORY),
                created: Timestamp::default(),
                modified: Timestamp::default(),
                accessed: Timestamp::default(),
            }),
            Target::Entry { listing, index } => Ok(listing.entries[index].raw.metadata()),
        }
    }

    /// Sets the read-only, hidden, system and archive bits of the entry at `path` to those
    /// in `attributes`; the directory and volume-label bits cannot change.
    pub fn set_attributes(&mut self, path: &str, attributes: Attributes) -> Result<()> {
        self.check_writable()?;
        const SETTABLE: u8 =
            Attributes::READ_ONLY | Attributes::HIDDEN | Attributes::SYSTEM | Attributes::ARCHIVE;
        let Target::Entry { listing, index } = self.target(path)? else {
            return Err(Error::InvalidArgument(
                "the root directory has no attributes",
            ));
        };
        let found = &listing.entries[index];
        let mut raw = found.raw;
        raw.set_attributes((raw.attributes().0 & !SETTABLE) | (attributes.0 & SETTABLE));
        dir::write_entry(&mut self.disk, found.position, &raw.0)
    }

    /// Returns whether `path` names a file or directory.
    pub fn exists(&mut self, path: &str) -> Result<bool> {
        match self.target(path) {
            Ok(_) => Ok(true),
            Err(Error::NotFound) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Returns the entries of the directory at `path`, without `.` and `..`, in on-disk
    /// order.
    pub fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        let parts = components(path)?;
        let location = self.directory(&parts)?;
        let listing = dir::scan(&mut self.disk, location)?;
        Ok(listing.entries.iter().map(Found::to_dir_entry).collect())
    }

    /// Creates an empty directory at `path`; its parent must exist. Everything it needs
    /// (a valid, unused name, room in the parent, free clusters) is checked before it
    /// writes anything.
    pub fn create_dir(&mut self, path: &str) -> Result<()> {
        self.check_writable()?;
        let (listing, name) = self.parent_of(path)?;
        if listing.find(name).is_some() {
            return Err(Error::AlreadyExists);
        }
        let (short, flags, units) = dir::names_for(&listing, name)?;
        let insertion = dir::plan_insert(&self.disk, &listing, &units, None)?;
        let clusters = self.disk.find_free(1 + insertion.clusters_needed())?;
        let (cluster, growth) = (clusters[0], &clusters[1..]);
        let now = self.clock.now();
        dir::write_new_directory(&mut self.disk, cluster, listing.location, now)?;
        self.disk.link_chain(&[cluster], None)?;
        let raw = RawEntry::new(short, flags, Attributes::DIRECTORY, cluster, now);
        let placed = dir::make_room(&mut self.disk, &listing, &insertion, growth)
            .and_then(|positions| dir::write_set(&mut self.disk, &positions, &units, &raw));
        if let Err(error) = placed {
            let _ = self.disk.free_chain(cluster);
            return Err(error);
        }
        Ok(())
    }

    /// Removes the empty directory at `path`.
    pub fn remove_dir(&mut self, path: &str) -> Result<()> {
        self.check_writable()?;
        let Target::Entry { listing, index } = self.target(path)? else {
            return Err(Error::InvalidArgument("cannot remove the root directory"));
        };
        let found = &listing.entries[index];
        let location = found.as_directory()?;
        if !dir::scan(&mut self.disk, location)?.entries.is_empty() {
            return Err(Error::DirectoryNotEmpty);
        }
        dir::remove(&mut self.disk, found)?;
        self.disk.barrier()?;
        self.disk.free_chain(location.cluster())
    }

    /// Removes the file at `path`. Open handles to it become stale.
    pub fn remove_file(&mut self, path: &str) -> Result<()> {
        self.check_writable()?;
        let Target::Entry { listing, index } = self.target(path)? else {
            return Err(Error::IsADirectory);
        };
        let found = &listing.entries[index];
        if found.raw.is_dir() {
            return Err(Error::IsADirectory);
        }
        dir::remove(&mut self.disk, found)?;
        self.disk.barrier()?;
        match found.raw.first_cluster() {
            0 => Ok(()),
            first => self.disk.free_chain(first),
        }
    }

    /// Moves the file or directory at `from` to `to`, which must not exist (it may differ
    /// from `from` only in case). Directories cannot move below themselves.
    ///
    /// Crash order: the old entry is deleted on the disk before the new one is written
    /// (unless both lie in one sector, which one write changes), so a crash can lose the
    /// file's chain (lost clusters) but never leave two entries sharing it.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.check_writable()?;
        let Target::Entry {
            listing: source,
            index,
        } = self.target(from)?
        else {
            return Err(Error::InvalidArgument("cannot rename the root directory"));
        };
        let moving = source.entries[index].clone();
        let to_parts = components(to)?;
        let (_, to_parents) = to_parts
            .split_last()
            .ok_or(Error::InvalidArgument("cannot rename to the root"))?;
        if moving.raw.is_dir() {
            // Refuse to move a directory into itself or its own subtree.
            let moving_cluster = moving.raw.first_cluster();
            let mut location = Location::Root;
            for part in to_parents {
                let listing = dir::scan(&mut self.disk, location)?;
                location = listing.find(part).ok_or(Error::NotFound)?.as_directory()?;
                if location.cluster() == moving_cluster {
                    return Err(Error::InvalidArgument(
                        "cannot move a directory below itself",
                    ));
                }
            }
        }
        let (mut target, name) = self.parent_of(to)?;
        let same_directory = target.location == source.location;
        if let Some(existing) = target.find(name) {
            if !(same_directory && existing.position == moving.position) {
                return Err(Error::AlreadyExists);
            }
        }
        if same_directory {
            // The old entry's names and slots are free again for the new one.
            target.release(moving.position);
        }
        let (short, flags, units) = dir::names_for(&target, name)?;
        let insertion = dir::plan_insert(&self.disk, &target, &units, Some(moving.position.lba))?;
        let fresh = self.disk.find_free(insertion.clusters_needed())?;
        let mut raw = moving.raw;
        raw.set_short_name(short, flags);
        let positions = dir::make_room(&mut self.disk, &target, &insertion, &fresh)?;
        dir::remove(&mut self.disk, &moving)?;
        let mut old_sectors = moving.long_positions.clone();
        old_sectors.push(moving.position);
        if dir::sectors_of(&positions) != dir::sectors_of(&old_sectors)
            || dir::sectors_of(&positions).len() != 1
        {
            self.disk.barrier()?;
        }
        dir::write_set(&mut self.disk, &positions, &units, &raw)?;
        if moving.raw.is_dir() && !same_directory {
            if let Some(position) = dir::dot_dot_of(&mut self.disk, moving.raw.first_cluster())? {
                let mut dot_dot = dir::read_entry(&mut self.disk, position)?;
                dot_dot.set_first_cluster(target.location.cluster());
                dir::write_entry(&mut self.disk, position, &dot_dot.0)?;
            }
        }
        Ok(())
    }

    /// Opens the file at `path` as `options` say.
    pub fn open(&mut self, path: &str, options: OpenOptions) -> Result<File> {
        let writable = options.write || options.append;
        if writable || options.create || options.create_new || options.truncate {
            self.check_writable()?;
        }
        if (options.create || options.create_new || options.truncate) && !writable {
            return Err(Error::InvalidArgument(
                "create and truncate need write access",
            ));
        }
        let (listing, name) = self.parent_of(path)?;
        let found = match listing.find(name) {
            Some(_) if options.create_new => return Err(Error::AlreadyExists),
            Some(found) => found.clone(),
            None if options.create || options.create_new => {
                return self.create_in(&listing, name, options.append)
            }
            None => return Err(Error::NotFound),
        };
        if found.raw.is_dir() {
            return Err(Error::IsADirectory);
        }
        if writable && found.raw.attributes().contains(Attributes::READ_ONLY) {
            return Err(Error::ReadOnly);
        }
        let mut file = File::new(
            found.position,
            found.raw.short_name(),
            writable,
            options.append,
        );
        if options.truncate {
            let now = self.clock.now();
            file.set_len(&mut self.disk, 0, now)?;
        }
        Ok(file)
    }

    fn create_in(&mut self, listing: &Listing, name: &str, append: bool) -> Result<File> {
        let (short, flags, units) = dir::names_for(listing, name)?;
        let insertion = dir::plan_insert(&self.disk, listing, &units, None)?;
        let fresh = self.disk.find_free(insertion.clusters_needed())?;
        let raw = RawEntry::new(short, flags, Attributes::ARCHIVE, 0, self.clock.now());
        let positions = dir::make_room(&mut self.disk, listing, &insertion, &fresh)?;
        let position = dir::write_set(&mut self.disk, &positions, &units, &raw)?;
        Ok(File::new(position, short, true, append))
    }

    /// Creates the file at `path`, or cuts an existing one to length 0, and opens it for
    /// writing.
    pub fn create(&mut self, path: &str) -> Result<File> {
        self.open(
            path,
            OpenOptions {
                write: true,
                create: true,
                truncate: true,
                ..OpenOptions::default()
            },
        )
    }

    /// Reads from the file's position into `buf`; returns the bytes read, 0 at the end.
    pub fn read(&mut self, file: &mut File, buf: &mut [u8]) -> Result<usize> {
        file.read(&mut self.disk, buf)
    }

    /// Writes all of `data` at the file's position (at the end for append handles), or on
    /// failure (`NoSpace` included) nothing.
    pub fn write(&mut self, file: &mut File, data: &[u8]) -> Result<usize> {
        self.check_writable()?;
        let now = self.clock.now();
        file.write(&mut self.disk, data, now)
    }

    /// Moves the file's position; returns the new position.
    pub fn seek(&mut self, file: &mut File, to: SeekFrom) -> Result<u64> {
        file.seek(&mut self.disk, to)
    }

    /// Sets the file's length, cutting it short or extending it with zeros.
    pub fn set_len(&mut self, file: &mut File, length: u64) -> Result<()> {
        self.check_writable()?;
        let now = self.clock.now();
        file.set_len(&mut self.disk, length, now)
    }

    /// Returns the metadata of an open file.
    pub fn file_metadata(&mut self, file: &File) -> Result<Metadata> {
        Ok(file.entry(&mut self.disk)?.metadata())
    }

    /// Returns the whole contents of the file at `path`.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>> {
        let mut file = self.open(path, OpenOptions::read())?;
        let size = file.entry(&mut self.disk)?.size() as usize;
        let mut contents = alloc::vec![0u8; size];
        let mut done = 0;
        while done < size {
            match file.read(&mut self.disk, &mut contents[done..])? {
                0 => break,
                count => done += count,
            }
        }
        contents.truncate(done);
        Ok(contents)
    }

    /// Creates or replaces the file at `path` with `contents`. Everything it needs (a
    /// valid name, a file and not a directory, room in the directory, free clusters for
    /// the contents, counting those of the file it replaces) is checked before it writes
    /// anything, so a failure other than an I/O error changes nothing.
    pub fn write_file(&mut self, path: &str, contents: &[u8]) -> Result<()> {
        self.check_writable()?;
        if u32::try_from(contents.len()).is_err() {
            return Err(Error::FileTooLarge);
        }
        let (listing, name) = self.parent_of(path)?;
        let cluster_bytes = u64::from(self.disk.cluster_bytes());
        let needed = (contents.len() as u64).div_ceil(cluster_bytes) as u32;
        let (have, growth) = match listing.find(name) {
            Some(found) if found.raw.is_dir() => return Err(Error::IsADirectory),
            Some(found) if found.raw.attributes().contains(Attributes::READ_ONLY) => {
                return Err(Error::ReadOnly)
            }
            Some(found) => match found.raw.first_cluster() {
                0 => (0, 0),
                first => (self.disk.chain_end(first)?.0, 0),
            },
            None => {
                let (_, _, units) = dir::names_for(&listing, name)?;
                let insertion = dir::plan_insert(&self.disk, &listing, &units, None)?;
                (0, insertion.clusters_needed())
            }
        };
        if needed + growth > have {
            self.disk.find_free(needed + growth - have)?;
        }
        let mut file = self.create(path)?;
        self.write(&mut file, contents)?;
        Ok(())
    }
}
