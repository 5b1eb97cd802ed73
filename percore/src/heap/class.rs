//! Size classes for small objects: which class serves a layout, and how big its slabs are.
//!
//! The classes are 2^k and 3·2^k bytes from 16 to 2048, so that consecutive classes
//! differ by at most half and a block's waste stays under a third of it. A block of size
//! `s` at a multiple of `s` from a page boundary is aligned to the largest power of two
//! dividing `s` (its natural alignment), which is the alignment the class can promise.
//! Power-of-two classes use one-page slabs and the 3·2^k classes three-page slabs: both
//! divide their slab exactly, so no slab has a tail of unusable bytes.

use core::alloc::Layout;

use super::pages::PAGE;

/// One size class: block size, the alignment its blocks have, and its slab geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Class {
    /// Bytes per block.
    pub size: usize,
    /// The natural alignment of every block (largest power of two dividing `size`).
    pub align: usize,
    /// Pages per slab.
    pub pages: usize,
}

impl Class {
    const fn new(size: usize) -> Class {
        let align = 1 << size.trailing_zeros();
        let pages = if size.is_power_of_two() { 1 } else { 3 };
        Class { size, align, pages }
    }

    /// Returns the number of blocks in one slab.
    #[cfg(test)]
    pub const fn blocks(&self) -> usize {
        self.pages * PAGE / self.size
    }

    /// Returns the number of bytes one slab spans.
    pub const fn slab_bytes(&self) -> usize {
        self.pages * PAGE
    }
}

/// The size classes, smallest first.
pub(super) const CLASSES: [Class; 14] = [
    Class::new(16),
    Class::new(32),
    Class::new(48),
    Class::new(64),
    Class::new(96),
    Class::new(128),
    Class::new(192),
    Class::new(256),
    Class::new(384),
    Class::new(512),
    Class::new(768),
    Class::new(1024),
    Class::new(1536),
    Class::new(2048),
];

/// The number of size classes.
pub(super) const CLASS_COUNT: usize = CLASSES.len();

/// The largest request served from a slab; anything bigger gets whole pages.
pub const LARGEST_SMALL_SIZE: usize = CLASSES[CLASS_COUNT - 1].size;

/// Granule of the look-up table: every class size is a multiple of it.
const GRANULE: usize = 16;

/// `BY_GRANULES[g]` is the smallest class whose size is at least `g * GRANULE`.
static BY_GRANULES: [u8; LARGEST_SMALL_SIZE / GRANULE + 1] = {
    let mut table = [0u8; LARGEST_SMALL_SIZE / GRANULE + 1];
    let mut g = 0;
    let mut class = 0;
    while g < table.len() {
        while CLASSES[class].size < g * GRANULE {
            class += 1;
        }
        table[g] = class as u8;
        g += 1;
    }
    table
};

/// Returns the index of the smallest class that holds `layout` with its alignment, or
/// `None` when the layout must be served with whole pages.
///
/// Constant time: one table look-up, and a short walk up the classes only for layouts
/// whose alignment exceeds the natural alignment of the class their size picks.
pub(super) fn class_for(layout: Layout) -> Option<usize> {
    let size = layout.size().max(1);
    if size > LARGEST_SMALL_SIZE || layout.align() > LARGEST_SMALL_SIZE {
        return None;
    }
    let first = BY_GRANULES[size.div_ceil(GRANULE)] as usize;
    (first..CLASS_COUNT).find(|&c| CLASSES[c].align >= layout.align())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_divides_its_slab_and_is_aligned_naturally() {
        for class in CLASSES {
            assert_eq!(class.slab_bytes() % class.size, 0, "{class:?}");
            assert_eq!(class.size % class.align, 0);
            assert!(class.align >= GRANULE);
            assert!(class.blocks() <= u16::MAX as usize);
        }
        assert!(CLASSES.windows(2).all(|w| w[0].size < w[1].size));
    }

    #[test]
    fn class_for_picks_the_smallest_class_that_fits_size_and_alignment() {
        for size in 0..=LARGEST_SMALL_SIZE + 1 {
            for shift in 0..=13 {
                let align = 1usize << shift;
                let layout = Layout::from_size_align(size, align).unwrap();
                let expected = CLASSES
                    .iter()
                    .position(|c| c.size >= size.max(1) && c.align >= align);
                assert_eq!(class_for(layout), expected, "size {size} align {align}");
            }
        }
    }

    #[test]
    fn examples() {
        let class = |size, align| class_for(Layout::from_size_align(size, align).unwrap());
        assert_eq!(class(0, 1), Some(0));
        assert_eq!(class(16, 16), Some(0));
        assert_eq!(class(17, 8), Some(1));
        assert_eq!(class(40, 8), Some(2));
        assert_eq!(class(40, 32), Some(3), "48 is only 16-aligned");
        assert_eq!(class(2048, 2048), Some(13));
        assert_eq!(class(2049, 8), None);
        assert_eq!(class(8, 4096), None);
    }
}
