//! Which core owns an address: the map a remote free consults to find a block's home.
//!
//! Built at boot from every core's extents and read-only afterwards, so all cores may
//! read it at once without a lock. Entries are sorted by start address; a look-up is one
//! binary search (at most 9 steps for 64 cores of 8 extents).

use core::fmt;
use core::ops::Range;

use crate::memory::{CoreMemory, MAX_EXTENTS};
use crate::MAX_CORES;

/// The most ranges an [`OwnerMap`] holds: every extent of every core.
pub const OWNER_MAP_CAPACITY: usize = MAX_CORES * MAX_EXTENTS;

/// The failure to add a range to an [`OwnerMap`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerMapError {
    /// The map holds [`OWNER_MAP_CAPACITY`] ranges already.
    Full,
    /// The range overlaps one that another (or the same) core owns.
    Overlap {
        core: usize,
        range: Range<usize>,
        other_core: usize,
        other_range: Range<usize>,
    },
}

impl fmt::Display for OwnerMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnerMapError::Full => write!(f, "owner map full ({OWNER_MAP_CAPACITY} ranges)"),
            OwnerMapError::Overlap {
                core,
                range,
                other_core,
                other_range,
            } => write!(
                f,
                "range {range:#x?} of core {core} overlaps {other_range:#x?} of core {other_core}"
            ),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    range: Range<usize>,
    core: usize,
}

/// The owner core of every heap address, as sorted, disjoint ranges.
#[derive(Clone, Debug)]
pub struct OwnerMap {
    entries: heapless::Vec<Entry, OWNER_MAP_CAPACITY>,
}

impl OwnerMap {
    /// Returns an empty map.
    pub const fn new() -> OwnerMap {
        OwnerMap {
            entries: heapless::Vec::new(),
        }
    }

    /// Returns the map of the shares of RAM, core `i` owning `shares[i]`.
    pub fn from_shares(shares: &[CoreMemory]) -> Result<OwnerMap, OwnerMapError> {
        let mut map = OwnerMap::new();
        for (core, share) in shares.iter().enumerate() {
            for extent in share.extents() {
                let start = usize::try_from(extent.start).unwrap_or(usize::MAX);
                let end = usize::try_from(extent.end).unwrap_or(usize::MAX);
                map.insert(core, start..end)?;
            }
        }
        Ok(map)
    }

    /// Records that `core` owns `range`. An empty range is ignored. O(ranges).
    pub fn insert(&mut self, core: usize, range: Range<usize>) -> Result<(), OwnerMapError> {
        if range.is_empty() {
            return Ok(());
        }
        let at = self
            .entries
            .partition_point(|e| e.range.start < range.start);
        let neighbours = self.entries[at.saturating_sub(1)..].iter().take(2);
        for other in neighbours {
            if other.range.start < range.end && range.start < other.range.end {
                return Err(OwnerMapError::Overlap {
                    core,
                    range,
                    other_core: other.core,
                    other_range: other.range.clone(),
                });
            }
        }
        self.entries
            .insert(at, Entry { range, core })
            .map_err(|_| OwnerMapError::Full)
    }

    /// Returns the core that owns `addr`, or `None` when no core does. O(log ranges).
    pub fn owner_of(&self, addr: usize) -> Option<usize> {
        let after = self.entries.partition_point(|e| e.range.start <= addr);
        let entry = self.entries.get(after.checked_sub(1)?)?;
        (addr < entry.range.end).then_some(entry.core)
    }

    /// Returns the number of ranges in the map.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns true when the map holds no range.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Default for OwnerMap {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{partition, PhysRange};

    #[test]
    fn look_up_finds_the_owner_at_every_boundary() {
        let mut map = OwnerMap::new();
        map.insert(2, 300..400).unwrap();
        map.insert(0, 100..200).unwrap();
        map.insert(1, 200..300).unwrap();
        map.insert(0, 1000..1001).unwrap();
        map.insert(5, 7..7).unwrap();
        assert_eq!(map.len(), 4);
        let owner = |a| map.owner_of(a);
        assert_eq!(owner(0), None);
        assert_eq!(owner(99), None);
        assert_eq!(owner(100), Some(0));
        assert_eq!(owner(199), Some(0));
        assert_eq!(owner(200), Some(1));
        assert_eq!(owner(299), Some(1));
        assert_eq!(owner(300), Some(2));
        assert_eq!(owner(399), Some(2));
        assert_eq!(owner(400), None);
        assert_eq!(owner(1000), Some(0));
        assert_eq!(owner(1001), None);
        assert_eq!(owner(usize::MAX), None);
    }

    #[test]
    fn overlaps_are_refused() {
        let mut map = OwnerMap::new();
        map.insert(0, 100..200).unwrap();
        map.insert(1, 300..400).unwrap();
        for bad in [150..160, 50..101, 199..301, 399..500, 0..1000, 100..200] {
            let error = map.insert(3, bad.clone()).unwrap_err();
            assert!(
                matches!(error, OwnerMapError::Overlap { core: 3, .. }),
                "{bad:?}: {error}"
            );
        }
        map.insert(3, 200..300).unwrap();
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn a_full_map_says_so() {
        let mut map = OwnerMap::new();
        for i in 0..OWNER_MAP_CAPACITY {
            map.insert(i % MAX_CORES, i * 10..i * 10 + 5).unwrap();
        }
        assert_eq!(map.insert(0, 1 << 40..1 << 41), Err(OwnerMapError::Full));
        for i in (0..OWNER_MAP_CAPACITY).step_by(37) {
            assert_eq!(map.owner_of(i * 10 + 4), Some(i % MAX_CORES));
            assert_eq!(map.owner_of(i * 10 + 5), None);
        }
    }

    #[test]
    fn shares_map_to_their_core() {
        let mib = 1u64 << 20;
        let usable = [
            PhysRange::new(mib, 10 * mib),
            PhysRange::new(20 * mib, 30 * mib),
        ];
        let shares = partition::<8>(&usable, 4).unwrap();
        let map = OwnerMap::from_shares(&shares).unwrap();
        for (core, share) in shares.iter().enumerate() {
            for extent in share.extents() {
                assert_eq!(map.owner_of(extent.start as usize), Some(core));
                assert_eq!(map.owner_of(extent.end as usize - 1), Some(core));
            }
        }
        assert_eq!(map.owner_of(15 * mib as usize), None);
    }
}
