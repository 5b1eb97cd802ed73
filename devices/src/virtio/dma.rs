//! Memory shared with a device by DMA: the only module of `virtio` that touches raw pointers.
//!
//! A device reads and writes this memory outside the program, so every access is a single
//! naturally aligned atomic load or store (on x86-64 the same one `mov` a volatile access
//! would be). Atomics rather than volatile because on the host the "device" is another
//! thread, and only atomics plus fences make that a race-free program whose ordering the
//! queue code can reason about. Values are little-endian, as virtio 1.x requires.
//!
//! Physical addresses equal virtual addresses in this kernel (identity mapping), so the
//! address a device is given is the pointer value.

use core::fmt;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The page size that DMA regions are aligned to.
pub const PAGE_SIZE: usize = 4096;

/// Returns `value` rounded up to a multiple of `align` (a power of two).
pub const fn align_up(value: usize, align: usize) -> usize {
    (value + align - 1) & !(align - 1)
}

/// Why memory could not be taken as a DMA region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaError {
    /// The pointer was null.
    Null,
    /// The pointer was not page-aligned.
    Misaligned,
    /// The length was zero.
    Empty,
    /// The region would run past the end of the address space.
    Wraps,
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            DmaError::Null => "null DMA address",
            DmaError::Misaligned => "DMA address not page-aligned",
            DmaError::Empty => "empty DMA region",
            DmaError::Wraps => "DMA region wraps the address space",
        };
        f.write_str(text)
    }
}

/// A page-aligned chunk of memory that a device may read and write by DMA.
///
/// It does not own the memory: the memory comes from the service reserve (or, in host
/// tests, from the test) and is never freed while a device may still use it.
#[derive(Debug)]
pub struct DmaRegion {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is a plain address range; every access through it is atomic, so
// moving it to (or sharing it with) another thread cannot cause a data race.
unsafe impl Send for DmaRegion {}
// SAFETY: as above: all accessors take `&self` and perform atomic accesses only.
unsafe impl Sync for DmaRegion {}

macro_rules! accessors {
    ($($read:ident, $write:ident, $int:ty, $atomic:ty;)*) => {$(
        #[doc = concat!("Returns the little-endian `", stringify!($int), "` at `offset`.")]
        ///
        /// # Panics
        /// If the access is out of bounds or not naturally aligned.
        pub fn $read(&self, offset: usize) -> $int {
            let pointer = self.checked::<$int>(offset);
            // SAFETY: `checked` proved the location in bounds and naturally aligned; the
            // memory is valid for the region's life (`from_raw` contract) and is only ever
            // accessed atomically, by us and by the device.
            let atomic = unsafe { <$atomic>::from_ptr(pointer) };
            <$int>::from_le(atomic.load(Ordering::Relaxed))
        }

        #[doc = concat!("Stores `value` as a little-endian `", stringify!($int), "` at `offset`.")]
        ///
        /// # Panics
        /// If the access is out of bounds or not naturally aligned.
        pub fn $write(&self, offset: usize, value: $int) {
            let pointer = self.checked::<$int>(offset);
            // SAFETY: as in the read accessor: in bounds, aligned, valid, atomic-only.
            let atomic = unsafe { <$atomic>::from_ptr(pointer) };
            atomic.store(value.to_le(), Ordering::Relaxed);
        }
    )*};
}

impl DmaRegion {
    /// Returns a region over `len` bytes at `base`, checked for a page-aligned, non-null,
    /// non-empty, non-wrapping range.
    ///
    /// # Safety
    /// `base..base + len` must be readable and writable memory, identity mapped (its
    /// address is its physical address), that stays valid and is used for nothing else
    /// for as long as this region, anything split from it, or a device given its
    /// addresses may use it. Other `DmaRegion`s over the same memory are allowed (a host
    /// test's fake device holds one): every access through a region is atomic.
    pub unsafe fn from_raw(base: *mut u8, len: usize) -> Result<Self, DmaError> {
        let base = NonNull::new(base).ok_or(DmaError::Null)?;
        if len == 0 {
            return Err(DmaError::Empty);
        }
        if !(base.as_ptr() as usize).is_multiple_of(PAGE_SIZE) {
            return Err(DmaError::Misaligned);
        }
        if (base.as_ptr() as usize).checked_add(len).is_none() {
            return Err(DmaError::Wraps);
        }
        Ok(DmaRegion { base, len })
    }

    /// Returns the physical address of the first byte (the pointer value: identity map).
    pub fn address(&self) -> u64 {
        self.base.as_ptr() as usize as u64
    }

    /// Returns the length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns true if the region has no bytes (never, by construction; for clippy's sake).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns true if `address..address + len` lies inside this region.
    pub fn contains(&self, address: u64, len: usize) -> bool {
        let start = self.address();
        address >= start
            && (address - start)
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.len as u64)
    }

    /// Splits the region in two at `offset`, so one allocation can serve two owners.
    ///
    /// # Panics
    /// If `offset` is zero, not a multiple of [`PAGE_SIZE`], or not inside the region:
    /// both halves must stay page-aligned and non-empty.
    pub fn split_at(self, offset: usize) -> (DmaRegion, DmaRegion) {
        assert!(
            offset != 0 && offset.is_multiple_of(PAGE_SIZE) && offset < self.len,
            "DMA split at {offset:#x} of a {:#x}-byte region",
            self.len
        );
        let tail = self.base.as_ptr().wrapping_add(offset);
        let head = DmaRegion {
            base: self.base,
            len: offset,
        };
        // `tail` is inside a non-null, non-wrapping range, so it is not null.
        let tail = DmaRegion {
            base: NonNull::new(tail).unwrap_or(self.base),
            len: self.len - offset,
        };
        (head, tail)
    }

    accessors! {
        read_u8, write_u8, u8, AtomicU8;
        read_u16, write_u16, u16, AtomicU16;
        read_u32, write_u32, u32, AtomicU32;
        read_u64, write_u64, u64, AtomicU64;
    }

    /// Copies bytes from `offset` into `buffer`, a word at a time where the region is
    /// word-aligned (a frame is copied with an eighth of the accesses).
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn read_bytes(&self, offset: usize, buffer: &mut [u8]) {
        self.check_range(offset, buffer.len());
        let mut done = 0;
        while done < buffer.len() && !(offset + done).is_multiple_of(8) {
            buffer[done] = self.read_u8(offset + done);
            done += 1;
        }
        while buffer.len() - done >= 8 {
            // Little-endian on both sides: the bytes land in memory order.
            let word = self.read_u64(offset + done);
            buffer[done..done + 8].copy_from_slice(&word.to_le_bytes());
            done += 8;
        }
        while done < buffer.len() {
            buffer[done] = self.read_u8(offset + done);
            done += 1;
        }
    }

    /// Copies `bytes` into the region at `offset`, a word at a time where the region
    /// is word-aligned.
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        self.check_range(offset, bytes.len());
        let mut done = 0;
        while done < bytes.len() && !(offset + done).is_multiple_of(8) {
            self.write_u8(offset + done, bytes[done]);
            done += 1;
        }
        while bytes.len() - done >= 8 {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[done..done + 8]);
            self.write_u64(offset + done, u64::from_le_bytes(word));
            done += 8;
        }
        while done < bytes.len() {
            self.write_u8(offset + done, bytes[done]);
            done += 1;
        }
    }

    /// Sets every byte of `offset..offset + len` to zero.
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn zero(&self, offset: usize, len: usize) {
        self.check_range(offset, len);
        let mut at = offset;
        let end = offset + len;
        while at < end {
            if at.is_multiple_of(8) && end - at >= 8 {
                self.write_u64(at, 0);
                at += 8;
            } else {
                self.write_u8(at, 0);
                at += 1;
            }
        }
    }

    fn check_range(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "DMA range {offset:#x}+{len:#x} outside a {:#x}-byte region",
            self.len
        );
    }

    /// Returns a pointer to a `T` at `offset`, after checking bounds and alignment.
    fn checked<T>(&self, offset: usize) -> *mut T {
        self.check_range(offset, size_of::<T>());
        // The base is page-aligned, so aligning the offset aligns the address.
        assert!(
            offset.is_multiple_of(align_of::<T>()),
            "misaligned DMA access at {offset:#x}"
        );
        self.base.as_ptr().wrapping_add(offset).cast()
    }
}

/// Host-side test memory: page-aligned, zeroed, leaked (tests are short-lived, and a fake
/// device thread may still hold a view when a test fails).
#[cfg(test)]
pub(crate) fn host_regions(len: usize) -> (DmaRegion, DmaRegion) {
    extern crate std;
    let layout = std::alloc::Layout::from_size_align(len, PAGE_SIZE).expect("layout");
    // SAFETY: the layout has a non-zero size (tests never ask for zero bytes).
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!base.is_null(), "host allocation failed");
    // SAFETY: freshly allocated, page-aligned, never freed; the two views are the driver's
    // and the fake device's, and all their accesses are atomic.
    let driver = unsafe { DmaRegion::from_raw(base, len) }.expect("region");
    // SAFETY: as above.
    let device = unsafe { DmaRegion::from_raw(base, len) }.expect("region");
    (driver, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_are_little_endian_and_bounded() {
        let (region, view) = host_regions(PAGE_SIZE);
        region.write_u32(4, 0x1122_3344);
        assert_eq!(view.read_u8(4), 0x44);
        assert_eq!(view.read_u16(6), 0x1122);
        region.write_u64(8, u64::MAX);
        region.zero(9, 6);
        assert_eq!(view.read_u64(8), 0xFF00_0000_0000_00FF);
        let mut bytes = [0u8; 3];
        view.read_bytes(4, &mut bytes);
        assert_eq!(bytes, [0x44, 0x33, 0x22]);
        assert!(region.contains(region.address() + 4095, 1));
        assert!(!region.contains(region.address() + 4095, 2));
        assert!(std::panic::catch_unwind(|| view.read_u32(4094)).is_err());
        assert!(std::panic::catch_unwind(|| view.read_u32(2)).is_err());
    }

    #[test]
    fn byte_copies_of_every_alignment_and_length_round_trip() {
        let (region, view) = host_regions(PAGE_SIZE);
        let pattern: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for offset in 0..17 {
            for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 200] {
                region.zero(0, 512);
                region.write_bytes(offset, &pattern[..length]);
                let mut back = vec![0u8; length];
                view.read_bytes(offset, &mut back);
                assert_eq!(back, pattern[..length], "offset {offset}, length {length}");
                // Nothing around the copy was touched.
                if offset > 0 {
                    assert_eq!(view.read_u8(offset - 1), 0);
                }
                assert_eq!(view.read_u8(offset + length), 0);
            }
        }
        assert!(
            std::panic::catch_unwind(|| view.read_bytes(PAGE_SIZE - 4, &mut [0u8; 5])).is_err()
        );
    }

    #[test]
    fn raw_constructor_checks_its_input() {
        // SAFETY: each call fails its checks before the memory could be used.
        unsafe {
            assert_eq!(
                DmaRegion::from_raw(core::ptr::null_mut(), 1).err(),
                Some(DmaError::Null)
            );
            assert_eq!(
                DmaRegion::from_raw(core::ptr::dangling_mut::<u8>().wrapping_add(PAGE_SIZE), 0)
                    .err(),
                Some(DmaError::Empty)
            );
        }
    }

    #[test]
    fn split_keeps_both_halves_page_aligned() {
        let (region, _) = host_regions(3 * PAGE_SIZE);
        let base = region.address();
        let (head, tail) = region.split_at(PAGE_SIZE);
        assert_eq!((head.address(), head.len()), (base, PAGE_SIZE));
        assert_eq!(
            (tail.address(), tail.len()),
            (base + PAGE_SIZE as u64, 2 * PAGE_SIZE)
        );
    }
}
