//! The consistency check run at mount: every file and directory chain reachable from the
//! root is walked once, its clusters marked in a bitmap, so that two chains sharing a
//! cluster (cross-linked, or one running into another, or into itself) are reported as
//! corrupt before anything writes to the volume.
//!
//! Cost: each cluster is marked at most once (a second visit is the error), and each
//! directory is scanned once (its clusters are marked before it is scanned, so a
//! directory that names an ancestor is a cross-link), so the check is bounded by the
//! used clusters plus the directory entries; no recursion, so no stack depth to bound.
//!
//! What a crash may leave (see `Disk::link_chain`) is then repaired on a writable
//! volume: a file chain longer than the file's size (an append cut off before its new
//! size was written) is cut to the size, and clusters the FAT holds that no chain
//! reaches (lost clusters) are freed, as `fsck.fat -a` would.

use alloc::vec;
use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::dir::{self, Location};
use crate::disk::Disk;
use crate::error::{Error, Result};

/// The message every cross-link is reported with.
pub(crate) const CROSS_LINKED: &str = "cross-linked cluster chains";

/// One bit per cluster number, set when a chain has claimed the cluster.
pub(crate) struct Claimed(Vec<u64>);

impl Claimed {
    fn new(max_cluster: u32) -> Self {
        Claimed(vec![0u64; max_cluster as usize / 64 + 1])
    }

    /// Marks `cluster` (already range-checked); fails if a chain claimed it before.
    fn claim(&mut self, cluster: u32) -> Result<()> {
        let (word, bit) = (cluster as usize / 64, 1u64 << (cluster % 64));
        if self.0[word] & bit != 0 {
            return Err(Error::Corrupt(CROSS_LINKED));
        }
        self.0[word] |= bit;
        Ok(())
    }

    fn contains(&self, cluster: u32) -> bool {
        self.0[cluster as usize / 64] & (1u64 << (cluster % 64)) != 0
    }
}

/// A file whose chain is longer than its size needs.
struct Overlong {
    found: dir::Found,
    /// The clusters its size needs.
    keep: u32,
}

/// What the mount check repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Repairs {
    /// Files whose chains were cut to their size.
    pub(crate) trimmed_files: u32,
    /// Lost clusters freed.
    pub(crate) reclaimed_clusters: u32,
}

/// Marks the chain from `first`, stopping at the first cluster already claimed; returns
/// its length.
fn claim_chain<D: BlockDevice>(
    disk: &mut Disk<D>,
    claimed: &mut Claimed,
    first: u32,
) -> Result<u32> {
    if !disk.fat.is_valid(first) {
        return Err(Error::Corrupt(
            "directory entry's first cluster out of range",
        ));
    }
    claimed.claim(first)?;
    let mut length = 1;
    let mut walk = disk.walk(first);
    while let Some(next) = disk.step(&mut walk)? {
        claimed.claim(next)?;
        length += 1;
    }
    Ok(length)
}

/// Checks the tree (see [`walk_tree`]) and, when `repair` is set, cuts file chains
/// to their sizes and frees lost clusters. Repairs are safe in any order against a
/// crash: an entry is cut before the clusters behind it are freed, and lost clusters
/// belong to nothing.
pub(crate) fn check_and_repair<D: BlockDevice>(
    disk: &mut Disk<D>,
    repair: bool,
) -> Result<Repairs> {
    let (claimed, overlong) = walk_tree(disk)?;
    let mut repairs = Repairs::default();
    if !repair {
        return Ok(repairs);
    }
    for Overlong { found, keep } in overlong {
        let first = found.raw.first_cluster();
        if keep == 0 {
            let mut raw = found.raw;
            raw.set_first_cluster(0);
            dir::write_entry(disk, found.position, &raw.0)?;
            disk.barrier()?;
            disk.free_chain(first)?;
        } else {
            let mut last = first;
            for _ in 1..keep {
                last = disk
                    .next_cluster(last)?
                    .ok_or(Error::Corrupt("cluster chain shorter than when checked"))?;
            }
            disk.cut_chain_after(last)?;
        }
        repairs.trimmed_files += 1;
    }
    repairs.reclaimed_clusters = disk.free_unclaimed(|cluster| claimed.contains(cluster))?;
    disk.barrier()?;
    Ok(repairs)
}

/// Walks the tree from the root and fails with `Corrupt` if any two chains share a
/// cluster, a chain is broken, or an entry's first cluster is out of range; returns the
/// clusters the chains claim and the files whose chains are longer than their sizes.
fn walk_tree<D: BlockDevice>(disk: &mut Disk<D>) -> Result<(Claimed, Vec<Overlong>)> {
    let mut claimed = Claimed::new(disk.layout.max_cluster());
    let mut overlong = Vec::new();
    let cluster_bytes = u64::from(disk.cluster_bytes());
    let mut pending = vec![Location::Root];
    while let Some(location) = pending.pop() {
        let listing = dir::scan(disk, location)?;
        for found in &listing.entries {
            let first = found.raw.first_cluster();
            if found.raw.is_dir() {
                let Location::Cluster(first) = found.as_directory()? else {
                    continue;
                };
                // Claimed before it is scanned, so a loop in the tree is a cross-link.
                claim_chain(disk, &mut claimed, first)?;
                pending.push(Location::Cluster(first));
            } else if first != 0 {
                let length = claim_chain(disk, &mut claimed, first)?;
                let keep = u64::from(found.raw.size()).div_ceil(cluster_bytes) as u32;
                if length > keep {
                    overlong.push(Overlong {
                        found: found.clone(),
                        keep,
                    });
                }
            }
        }
    }
    Ok((claimed, overlong))
}
