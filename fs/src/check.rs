//! The consistency check run at mount: every file and directory chain reachable from the
//! root is walked once, its clusters marked in a bitmap, so that two chains sharing a
//! cluster (cross-linked, or one running into another, or into itself) are reported as
//! corrupt before anything writes to the volume.
//!
//! Cost: each cluster is marked at most once (a second visit is the error), and each
//! directory is scanned once (its clusters are marked before it is scanned, so a
//! directory that names an ancestor is a cross-link), so the check is bounded by the
//! used clusters plus the directory entries; no recursion, so no stack depth to bound.

use alloc::vec;
use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::dir::{self, Location};
use crate::disk::Disk;
use crate::error::{Error, Result};

/// The message every cross-link is reported with.
pub(crate) const CROSS_LINKED: &str = "cross-linked cluster chains";

/// One bit per cluster number, set when a chain has claimed the cluster.
struct Claimed(Vec<u64>);

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
}

/// Marks the chain from `first`, stopping at the first cluster already claimed.
fn claim_chain<D: BlockDevice>(
    disk: &mut Disk<D>,
    claimed: &mut Claimed,
    first: u32,
) -> Result<()> {
    if !disk.fat.is_valid(first) {
        return Err(Error::Corrupt(
            "directory entry's first cluster out of range",
        ));
    }
    claimed.claim(first)?;
    let mut walk = disk.walk(first);
    while let Some(next) = disk.step(&mut walk)? {
        claimed.claim(next)?;
    }
    Ok(())
}

/// Walks the tree from the root and fails with `Corrupt` if any two chains share a
/// cluster, a chain is broken, or an entry's first cluster is out of range.
pub(crate) fn cross_links<D: BlockDevice>(disk: &mut Disk<D>) -> Result<()> {
    let mut claimed = Claimed::new(disk.layout.max_cluster());
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
                claim_chain(disk, &mut claimed, first)?;
            }
        }
    }
    Ok(())
}
