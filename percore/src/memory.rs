//! Physical memory ranges and the boot-time split of usable RAM into per-core regions.
//!
//! Policy: after the kernel image and boot-time allocations are taken out, a reserve
//! for device services is set aside ([`service_reserve_size`], [`take_reserve`]: 1/16
//! of usable RAM, 2 to 64 MiB, none below 8 MiB, below 4 GiB so 32-bit DMA reaches it),
//! and the rest is
//! divided into equal shares, one per core, in address order. A share may be made of
//! several extents when it spans a hole in the memory map. Every extent is 4 KiB aligned.
//! A core owns its share outright: its heap, and the page-table frames for its guard
//! pages, come from it. What a core needs to come online (its kernel and IST stacks, its
//! local page, its inbound rings) lies in the start-up area instead ([`take_front`],
//! [`BlockLayout`]): one block per core, together at the front of usable memory, next to
//! the kernel image. Under a hypervisor the first write to a page of guest RAM costs the
//! host a fault (with transparent huge pages, zeroing 2 MiB: 0.2 ms measured on the
//! build machine), so blocks packed where the kernel image lies already cost few of them,
//! where one per core's share cost one per core.

use core::fmt;

/// Page size used for all carving.
pub const PAGE_SIZE: u64 = 4096;
/// The most extents one core's share may have; further memory of that share is left unused.
pub const MAX_EXTENTS: usize = 8;

/// A half-open range of physical addresses `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    /// Returns the range `[start, end)`; an inverted range becomes empty.
    pub const fn new(start: u64, end: u64) -> Self {
        if end < start {
            Self { start, end: start }
        } else {
            Self { start, end }
        }
    }

    /// Returns the number of bytes in the range.
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Returns true when the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Returns true when the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Returns the range shrunk inwards to `align` boundaries (`align` a power of two).
    pub fn align_inwards(&self, align: u64) -> PhysRange {
        let start = self
            .start
            .checked_add(align - 1)
            .map_or(u64::MAX, |s| s & !(align - 1));
        let end = self.end & !(align - 1);
        PhysRange::new(start, end.max(start))
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

/// Removes `hole` from every range in `ranges`, splitting a range where needed.
/// Returns false (and leaves `ranges` unchanged) when a split does not fit in `N`.
pub fn subtract<const N: usize>(ranges: &mut heapless::Vec<PhysRange, N>, hole: PhysRange) -> bool {
    let mut out: heapless::Vec<PhysRange, N> = heapless::Vec::new();
    for r in ranges.iter() {
        if !r.overlaps(&hole) {
            if out.push(*r).is_err() {
                return false;
            }
            continue;
        }
        for piece in [
            PhysRange::new(r.start, hole.start),
            PhysRange::new(hole.end, r.end),
        ] {
            if !piece.is_empty() && out.push(piece).is_err() {
                return false;
            }
        }
    }
    *ranges = out;
    true
}

const MIB: u64 = 1 << 20;
/// The reserve's unit: it is taken 2 MiB aligned.
const RESERVE_ALIGN: u64 = 2 * MIB;

/// The smallest reserve: one 2 MiB unit holds every device service there is. virtio-net
/// takes 1,048 KiB (its rings and 2 KiB packet buffers, `devices::netdev::dma_size`),
/// a virtio-blk disk 20 KiB (`devices::disk::dma_size`), at most 8 disks: 1.2 MiB.
pub const SERVICE_RESERVE_MIN: u64 = RESERVE_ALIGN;
/// The least usable RAM that gets a reserve, so the smallest takes at most a quarter.
pub const SERVICE_RESERVE_FROM: u64 = 4 * SERVICE_RESERVE_MIN;
/// The largest reserve.
pub const SERVICE_RESERVE_MAX: u64 = 64 * MIB;

/// Returns the size of the reserve for device services out of `usable` bytes: 1/16,
/// at least [`SERVICE_RESERVE_MIN`] (when there is [`SERVICE_RESERVE_FROM`] or more)
/// and at most [`SERVICE_RESERVE_MAX`], whole 2 MiB.
pub fn service_reserve_size(usable: u64) -> u64 {
    if usable < SERVICE_RESERVE_FROM {
        return 0;
    }
    (usable / 16).clamp(SERVICE_RESERVE_MIN, SERVICE_RESERVE_MAX) & !(RESERVE_ALIGN - 1)
}

/// Returns the least usable RAM for which [`service_reserve_size`] is at least
/// `needed` bytes, or `None` when no amount of RAM gives that much. A run that finds
/// its reserve too small says how much memory (`--mem`) it needs with this.
pub fn usable_for_reserve(needed: u64) -> Option<u64> {
    if needed > SERVICE_RESERVE_MAX {
        return None;
    }
    let reserve = needed
        .max(SERVICE_RESERVE_MIN)
        .checked_next_multiple_of(RESERVE_ALIGN)?;
    Some(if reserve == SERVICE_RESERVE_MIN {
        SERVICE_RESERVE_FROM
    } else {
        reserve * 16
    })
}

/// Takes `size` bytes (rounded up to whole 2 MiB), 2 MiB aligned, from the top of the
/// highest usable range below `limit` that can hold them, and returns them.
pub fn take_reserve<const N: usize>(
    usable: &mut heapless::Vec<PhysRange, N>,
    size: u64,
    limit: u64,
) -> Option<PhysRange> {
    const ALIGN: u64 = RESERVE_ALIGN;
    let size = size
        .checked_next_multiple_of(ALIGN)
        .filter(|&size| size > 0)?;
    let reserve = usable
        .iter()
        .rev()
        .filter_map(|range| {
            let end = range.end.min(limit) & !(ALIGN - 1);
            let start = end.checked_sub(size)?;
            (start >= range.start && start % ALIGN == 0).then(|| PhysRange::new(start, end))
        })
        .next()?;
    subtract(usable, reserve).then_some(reserve)
}

/// Takes `size` bytes (rounded up to whole pages) from the front of the lowest usable
/// range that can hold them, and returns them.
pub fn take_front<const N: usize>(
    usable: &mut heapless::Vec<PhysRange, N>,
    size: u64,
) -> Option<PhysRange> {
    let size = size.checked_next_multiple_of(PAGE_SIZE)?;
    let range = usable.iter_mut().find_map(|range| {
        let start = range.start.checked_next_multiple_of(PAGE_SIZE)?;
        let end = start.checked_add(size)?;
        (end <= range.end).then_some((range, PhysRange::new(start, end)))
    });
    let (range, taken) = range?;
    range.start = taken.end;
    Some(taken)
}

/// The layout of one block of the start-up area: `P` pieces, each rounded up to whole
/// pages, one after the other from the block's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout<const P: usize> {
    /// Where each piece ends, from the block's start.
    ends: [u64; P],
}

impl<const P: usize> BlockLayout<P> {
    /// Returns the layout of pieces of `sizes` bytes, in that order.
    pub fn new(sizes: [u64; P]) -> BlockLayout<P> {
        let mut end = 0;
        BlockLayout {
            ends: sizes.map(|size| {
                end += size.next_multiple_of(PAGE_SIZE);
                end
            }),
        }
    }

    /// Returns the size of a block, whole pages.
    pub fn size(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Returns piece `piece` of the block that starts at `block`.
    pub fn piece(&self, block: u64, piece: usize) -> PhysRange {
        let start = piece.checked_sub(1).map_or(0, |before| self.ends[before]);
        PhysRange::new(block + start, block + self.ends[piece])
    }
}

/// One core's share of RAM: a few extents, and a cursor that carves from their start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreMemory {
    extents: heapless::Vec<PhysRange, MAX_EXTENTS>,
}

impl CoreMemory {
    /// Returns the extents of this share, in address order, what is carved included.
    pub fn extents(&self) -> &[PhysRange] {
        &self.extents
    }

    /// Returns the number of bytes still available in this share.
    pub fn bytes(&self) -> u64 {
        self.extents.iter().map(PhysRange::len).sum()
    }

    /// Takes `size` bytes (rounded up to whole pages) from the first extent that can hold
    /// them, and returns their range. Returns `None` when no extent is large enough.
    pub fn carve(&mut self, size: u64) -> Option<PhysRange> {
        let size = size.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
        let extent = self.extents.iter_mut().find(|e| e.len() >= size)?;
        let taken = PhysRange::new(extent.start, extent.start + size);
        extent.start += size;
        Some(taken)
    }
}

/// Splits `usable` (sorted, non-overlapping) into `cores` equal shares in address order.
///
/// Each share is page aligned; a share whose extents would exceed [`MAX_EXTENTS`] keeps
/// the first ones only. Returns `None` when `cores` is zero or above `N`.
pub fn partition<const N: usize>(
    usable: &[PhysRange],
    cores: usize,
) -> Option<heapless::Vec<CoreMemory, N>> {
    if cores == 0 || cores > N {
        return None;
    }
    let pages = |r: &PhysRange| r.align_inwards(PAGE_SIZE).len() / PAGE_SIZE;
    let total_pages: u64 = usable.iter().map(pages).sum();
    let share_pages = total_pages / cores as u64;

    let mut shares: heapless::Vec<CoreMemory, N> = heapless::Vec::new();
    let mut current = CoreMemory::default();
    let mut wanted = share_pages;
    for range in usable {
        let mut range = range.align_inwards(PAGE_SIZE);
        while !range.is_empty() && shares.len() < cores {
            let take = (range.len() / PAGE_SIZE).min(wanted);
            let piece = PhysRange::new(range.start, range.start + take * PAGE_SIZE);
            range.start = piece.end;
            wanted -= take;
            if !piece.is_empty() {
                // A share that ran out of extent slots keeps what it has.
                let _ = current.extents.push(piece);
            }
            if wanted == 0 {
                let _ = shares.push(core::mem::take(&mut current));
                wanted = share_pages;
            }
        }
    }
    while shares.len() < cores {
        let _ = shares.push(core::mem::take(&mut current));
    }
    Some(shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn ranges(list: &[(u64, u64)]) -> Vec<PhysRange> {
        list.iter().map(|&(s, e)| PhysRange::new(s, e)).collect()
    }

    #[test]
    fn the_front_of_the_lowest_range_with_room() {
        let mut usable: heapless::Vec<PhysRange, 8> = ranges(&[
            (0x1000, 0x3000),
            (0x10_0800, 0x20_0000),
            (0x30_0000, 0x40_0000),
        ])
        .into_iter()
        .collect();
        // Too large for the first range; page aligned within the second.
        assert_eq!(
            take_front(&mut usable, 0x2001),
            Some(PhysRange::new(0x10_1000, 0x10_4000))
        );
        assert_eq!(usable[1], PhysRange::new(0x10_4000, 0x20_0000));
        assert_eq!(
            take_front(&mut usable, 0x2000),
            Some(PhysRange::new(0x1000, 0x3000))
        );
        assert!(usable[0].is_empty());
        assert_eq!(take_front(&mut usable, 0x20_0000), None);
        assert_eq!(usable.len(), 3, "a failed take changes nothing");
    }

    #[test]
    fn block_pieces_are_whole_pages_in_order() {
        let layout = BlockLayout::new([64 * 1024, 16 * 1024, 100, 4096 * 3 + 1]);
        assert_eq!(layout.size(), (16 + 4 + 1 + 4) * PAGE_SIZE);
        let block = 0x20_0000 + 3 * layout.size();
        let pieces: Vec<PhysRange> = (0..4).map(|piece| layout.piece(block, piece)).collect();
        assert_eq!(pieces[0], PhysRange::new(block, block + 64 * 1024));
        for pair in pieces.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert_eq!(pieces[2].len(), PAGE_SIZE);
        assert_eq!(pieces[3].end, block + layout.size());
        assert!(pieces
            .iter()
            .all(|p| p.start % PAGE_SIZE == 0 && p.end % PAGE_SIZE == 0));
    }

    #[test]
    fn equal_shares_of_one_range() {
        let usable = ranges(&[(MIB, 257 * MIB)]);
        let shares = partition::<64>(&usable, 4).unwrap();
        assert_eq!(shares.len(), 4);
        for (i, s) in shares.iter().enumerate() {
            assert_eq!(s.bytes(), 64 * MIB, "share {i}");
            assert_eq!(s.extents().len(), 1);
        }
        assert_eq!(shares[0].extents()[0].start, MIB);
        assert_eq!(shares[3].extents()[0].end, 257 * MIB);
    }

    #[test]
    fn shares_never_overlap_and_stay_inside_usable_ram() {
        let usable = ranges(&[
            (0x1000, 0x9f000),
            (MIB + 123, 3000 * MIB + 7),
            (4096 * MIB, 5000 * MIB),
        ]);
        for cores in 1..=64 {
            let shares = partition::<64>(&usable, cores).unwrap();
            let mut all: Vec<PhysRange> =
                shares.iter().flat_map(|s| s.extents().to_vec()).collect();
            all.sort_by_key(|r| r.start);
            for pair in all.windows(2) {
                assert!(
                    pair[0].end <= pair[1].start,
                    "{cores} cores: {:?} overlaps {:?}",
                    pair[0],
                    pair[1]
                );
            }
            for r in &all {
                assert_eq!(r.start % PAGE_SIZE, 0);
                assert_eq!(r.end % PAGE_SIZE, 0);
                assert!(
                    usable.iter().any(|u| u.start <= r.start && r.end <= u.end),
                    "{r:?} outside RAM"
                );
            }
            let sizes: Vec<u64> = shares.iter().map(CoreMemory::bytes).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert_eq!(min, max, "{cores} cores: unequal shares {sizes:?}");
        }
    }

    #[test]
    fn share_spanning_a_hole_has_two_extents() {
        let usable = ranges(&[(0, 10 * MIB), (20 * MIB, 30 * MIB)]);
        let shares = partition::<64>(&usable, 2).unwrap();
        assert_eq!(shares[0].extents(), &ranges(&[(0, 10 * MIB)])[..]);
        assert_eq!(shares[1].extents(), &ranges(&[(20 * MIB, 30 * MIB)])[..]);
        let shares = partition::<64>(&usable, 4).unwrap();
        assert_eq!(shares[1].extents(), &ranges(&[(5 * MIB, 10 * MIB)])[..]);
        assert_eq!(shares[2].extents(), &ranges(&[(20 * MIB, 25 * MIB)])[..]);
    }

    #[test]
    fn zero_or_too_many_cores_is_refused() {
        let usable = ranges(&[(0, MIB)]);
        assert!(partition::<4>(&usable, 0).is_none());
        assert!(partition::<4>(&usable, 5).is_none());
    }

    #[test]
    fn carve_takes_whole_pages_from_the_front() {
        let mut shares = partition::<4>(&ranges(&[(0, 16 * PAGE_SIZE)]), 1).unwrap();
        let m = &mut shares[0];
        assert_eq!(m.carve(1), Some(PhysRange::new(0, PAGE_SIZE)));
        assert_eq!(
            m.carve(2 * PAGE_SIZE),
            Some(PhysRange::new(PAGE_SIZE, 3 * PAGE_SIZE))
        );
        assert_eq!(m.bytes(), 13 * PAGE_SIZE);
        assert_eq!(m.carve(14 * PAGE_SIZE), None);
        assert_eq!(m.carve(u64::MAX), None);
    }

    #[test]
    fn subtract_splits_and_trims() {
        let mut v: heapless::Vec<PhysRange, 8> = heapless::Vec::new();
        v.push(PhysRange::new(0, 100)).unwrap();
        v.push(PhysRange::new(200, 300)).unwrap();
        assert!(subtract(&mut v, PhysRange::new(50, 60)));
        assert!(subtract(&mut v, PhysRange::new(250, 400)));
        assert_eq!(
            &v[..],
            &[
                PhysRange::new(0, 50),
                PhysRange::new(60, 100),
                PhysRange::new(200, 250)
            ]
        );
        let mut full: heapless::Vec<PhysRange, 1> = heapless::Vec::new();
        full.push(PhysRange::new(0, 100)).unwrap();
        assert!(!subtract(&mut full, PhysRange::new(10, 20)));
        assert_eq!(&full[..], &[PhysRange::new(0, 100)]);
    }

    #[test]
    fn the_service_reserve_comes_off_the_top_below_the_limit() {
        let gib = 1 << 30;
        assert_eq!(service_reserve_size(7 * MIB), 0);
        assert_eq!(service_reserve_size(8 * MIB), 2 * MIB);
        assert_eq!(service_reserve_size(32 * MIB), 2 * MIB);
        assert_eq!(service_reserve_size(63 * MIB), 2 * MIB);
        assert_eq!(service_reserve_size(64 * MIB), 4 * MIB);
        assert_eq!(service_reserve_size(512 * MIB), 32 * MIB);
        assert_eq!(service_reserve_size(16 * gib), 64 * MIB);
        assert_eq!(service_reserve_size(100 * MIB), 6 * MIB);
        let mut usable: heapless::Vec<PhysRange, 8> = heapless::Vec::new();
        usable.push(PhysRange::new(MIB, 3 * gib)).unwrap();
        usable.push(PhysRange::new(4 * gib, 6 * gib)).unwrap();
        let reserve = take_reserve(&mut usable, 32 * MIB, 4 * gib).unwrap();
        assert_eq!(reserve, PhysRange::new(3 * gib - 32 * MIB, 3 * gib));
        assert_eq!(usable[0], PhysRange::new(MIB, 3 * gib - 32 * MIB));
        assert_eq!(usable[1], PhysRange::new(4 * gib, 6 * gib));
        assert_eq!(take_reserve(&mut usable, 8 * gib, 4 * gib), None);
    }

    #[test]
    fn small_machines_get_a_reserve_that_fits_every_device() {
        // virtio-net and eight virtio-blk disks, as devices::*::dma_size say.
        let every_device = 1_073_152 + 8 * 20_480;
        assert!(SERVICE_RESERVE_MIN >= every_device);
        assert!(service_reserve_size(SERVICE_RESERVE_FROM) >= every_device);
        let mut usable: heapless::Vec<PhysRange, 8> = heapless::Vec::new();
        usable.push(PhysRange::new(3 * MIB, 16 * MIB)).unwrap();
        let reserve = take_reserve(&mut usable, service_reserve_size(13 * MIB), 1 << 32);
        assert_eq!(reserve, Some(PhysRange::new(14 * MIB, 16 * MIB)));
        // A size that is not whole 2 MiB is rounded up rather than refused.
        let mut usable: heapless::Vec<PhysRange, 8> = heapless::Vec::new();
        usable.push(PhysRange::new(3 * MIB, 16 * MIB)).unwrap();
        let reserve = take_reserve(&mut usable, MIB + 5, 1 << 32);
        assert_eq!(reserve, Some(PhysRange::new(14 * MIB, 16 * MIB)));
    }

    #[test]
    fn the_memory_a_reserve_needs_is_the_least_that_gives_it() {
        for needed in [
            1,
            20_480,
            1_073_152,
            2 * MIB,
            2 * MIB + 1,
            5 * MIB,
            64 * MIB,
        ] {
            let usable = usable_for_reserve(needed).unwrap();
            assert!(service_reserve_size(usable) >= needed, "{needed}: {usable}");
            assert!(
                service_reserve_size(usable - PAGE_SIZE) < needed,
                "{needed}: {usable} is not the least"
            );
        }
        assert_eq!(usable_for_reserve(1_073_152), Some(8 * MIB));
        assert_eq!(usable_for_reserve(64 * MIB + 1), None);
    }

    #[test]
    fn align_inwards_never_grows() {
        assert_eq!(
            PhysRange::new(1, 8191).align_inwards(4096),
            PhysRange::new(4096, 4096)
        );
        assert!(PhysRange::new(1, 4095).align_inwards(4096).is_empty());
        assert!(PhysRange::new(u64::MAX - 10, u64::MAX)
            .align_inwards(4096)
            .is_empty());
    }
}
