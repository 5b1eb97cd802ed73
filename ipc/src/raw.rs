//! The crate's only `unsafe`: a boxed value whose ownership travels inside a message, and
//! the slot frame that carries it.
//!
//! An [`Owned`] is the sole owner of a `Box<T>` of some `Send` type, like a
//! `Box<dyn Any + Send>` that fits two words: the box's address and a pointer to a
//! static table for `T` (its `TypeId` and its drop). A message that carries one
//! encodes it into its ring slot and forgets it; decoding the slot rebuilds the owner,
//! and [`Owned::into_box`] gives the box back only as the type it was made from.
//!
//! Soundness argument, in one place. The words of an owner are only made by
//! `Frame::encode`, which moves the owner into them, and only turned back by
//! `Frame::decode`. `Frame` is reached only through the sealed `Encode` trait, which no
//! code outside this crate can name, so only a ring's slots hold such words; a ring's
//! receiver decodes each slot once (the ring's own protocol), so each owner comes back
//! exactly once. From then on the owner is an ordinary value: not `Clone`, dropped once,
//! and [`Owned::into_box`] consumes it after checking the type.

use alloc::boxed::Box;
use core::any::TypeId;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use crate::wire::{private::Encode, Words, SLOT_WORDS};

/// What an [`Owned`] needs to know about its value's type: one static table per type.
struct Table {
    /// Returns the value's `TypeId`: compared on the way out, so a box is never taken
    /// as another type (a function, because `TypeId` cannot be made in a `const`).
    type_id: fn() -> TypeId,
    /// Frees the box at the address.
    drop: unsafe fn(NonNull<()>),
}

/// The table of `T`, a static promoted from the constant.
trait Typed {
    const TABLE: &'static Table;
}

impl<T: Send + 'static> Typed for T {
    const TABLE: &'static Table = &Table {
        type_id: TypeId::of::<T>,
        drop: drop_box::<T>,
    };
}

/// Frees a `Box<T>` given up by [`Owned::new`].
///
/// # Safety
/// `pointer` must come from `Box::<T>::into_raw` and be freed only here, once.
unsafe fn drop_box<T>(pointer: NonNull<()>) {
    // SAFETY: the caller's contract.
    drop(unsafe { Box::from_raw(pointer.cast::<T>().as_ptr()) });
}

/// A boxed value of some `Send` type whose ownership can move to another core inside a
/// [`Message`](crate::Message), without a copy.
///
/// Taken back with [`Owned::into_box`] as the type it was made from; dropped (the box
/// freed) if nobody takes it. It cannot be copied or cloned, so one value arrives once:
///
/// ```compile_fail
/// let owned = ipc::Owned::new(Box::new(7u32));
/// let twice = owned.clone();
/// ```
pub struct Owned {
    pointer: NonNull<()>,
    table: &'static Table,
}

// SAFETY: `Owned::new` takes only `Send` values, and an `Owned` is their only owner (like
// the `Box` it was made from), so moving it moves exclusive access with it.
unsafe impl Send for Owned {}

// SAFETY: a shared `&Owned` gives no access to the value at all (only its type check).
unsafe impl Sync for Owned {}

impl Owned {
    /// Returns the owner of `value`.
    pub fn new<T: Send + 'static>(value: Box<T>) -> Self {
        Self {
            pointer: NonNull::from(Box::leak(value)).cast(),
            table: T::TABLE,
        }
    }

    /// Returns true when the value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        (self.table.type_id)() == TypeId::of::<T>()
    }

    /// Returns the box this owner was made from, or the owner back when the value is not
    /// a `T`.
    pub fn into_box<T: 'static>(self) -> Result<Box<T>, Owned> {
        if !self.is::<T>() {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: the value is a `T` (checked above), boxed by `Owned::new`; this owner
        // was its only one and is consumed (`ManuallyDrop` keeps `Drop` from freeing it).
        Ok(unsafe { Box::from_raw(this.pointer.cast::<T>().as_ptr()) })
    }

    /// Returns the address of the value (to check that nothing was copied).
    pub fn as_ptr(&self) -> *const () {
        self.pointer.as_ptr()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: the table is `T`'s and the pointer a `Box<T>`'s (both from `new`); the
        // owner is dropped once, and `into_box` and `Frame::encode` never let it drop.
        unsafe { (self.table.drop)(self.pointer) }
    }
}

impl core::fmt::Debug for Owned {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Owned")
            .field("pointer", &self.pointer)
            .finish_non_exhaustive()
    }
}

/// Bit of the head word that says an owner travels in words 1 and 2.
const OWNED_FLAG: u64 = 1 << 15;

/// Words of inline data in a slot without an owner, and with one.
pub(crate) const INLINE_WORDS: usize = SLOT_WORDS - 1;
pub(crate) const INLINE_WORDS_WITH_OWNED: usize = SLOT_WORDS - 3;

/// A slot's content as the message layer sees it: the head word (its bit 15 belongs to
/// this module), an owner perhaps, and the inline words that fit beside it (the last
/// two are zero and dropped when an owner travels).
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) head: u64,
    pub(crate) owned: Option<Owned>,
    pub(crate) inline: [u64; INLINE_WORDS],
}

/// Slot layout: word 0 is the head; then the inline words, or the owner's address and
/// table in words 1 and 2 and the first four inline words after them.
impl Encode for Frame {
    fn encode(self) -> Words {
        let Frame {
            head,
            owned,
            inline,
        } = self;
        let mut words = [0; SLOT_WORDS];
        words[0] = head & !OWNED_FLAG;
        match owned {
            None => words[1..].copy_from_slice(&inline),
            Some(owned) => {
                let owned = ManuallyDrop::new(owned);
                words[0] |= OWNED_FLAG;
                words[1] = owned.pointer.as_ptr() as usize as u64;
                words[2] = core::ptr::from_ref(owned.table) as usize as u64;
                words[3..].copy_from_slice(&inline[..INLINE_WORDS_WITH_OWNED]);
            }
        }
        words
    }

    fn decode(words: Words) -> Self {
        let mut inline = [0; INLINE_WORDS];
        let owned = if words[0] & OWNED_FLAG != 0 {
            inline[..INLINE_WORDS_WITH_OWNED].copy_from_slice(&words[3..]);
            let pointer = NonNull::new(words[1] as usize as *mut ());
            let table = words[2] as usize as *const Table;
            pointer.map(|pointer| Owned {
                pointer,
                // SAFETY: the flag is only set by `encode` above, next to the words of an
                // owner it moved into the slot; only `encode` makes the words a `Frame`
                // decodes (`Encode` is sealed), and each slot is decoded once, so this
                // takes back that owner, once. The table is a `'static` one from `Typed`.
                table: unsafe { &*table },
            })
        } else {
            inline.copy_from_slice(&words[1..]);
            None
        };
        Frame {
            head: words[0] & !OWNED_FLAG,
            owned,
            inline,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_box_comes_back_once_as_its_own_type() {
        let owned = Owned::new(Box::new([7u64; 3]));
        let address = owned.as_ptr();
        assert!(owned.is::<[u64; 3]>() && !owned.is::<u64>());
        let owned = owned.into_box::<u64>().expect_err("not a u64");
        let value = owned.into_box::<[u64; 3]>().unwrap();
        assert_eq!(*value, [7; 3]);
        assert_eq!(core::ptr::from_ref(&*value).cast(), address);
    }

    #[test]
    fn an_owner_nobody_takes_drops_its_value_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let owned = Owned::new(Box::new(Counted(drops.clone())));
        let owned = owned.into_box::<u8>().unwrap_err();
        assert_eq!(drops.load(Ordering::Relaxed), 0);
        drop(owned);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        let taken = Owned::new(Box::new(Counted(drops.clone())))
            .into_box::<Counted>()
            .unwrap();
        drop(taken);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_frame_round_trips_with_and_without_an_owner() {
        let drops = Arc::new(AtomicUsize::new(0));
        let inline = [1, 2, 3, 4, 5, 6];
        let plain = Frame::decode(
            Frame {
                head: 0x1234,
                owned: None,
                inline,
            }
            .encode(),
        );
        assert_eq!((plain.head, plain.inline), (0x1234, inline));
        assert!(plain.owned.is_none());

        let owned = Owned::new(Box::new(Counted(drops.clone())));
        let address = owned.as_ptr();
        let words = Frame {
            head: 0x1234,
            owned: Some(owned),
            inline,
        }
        .encode();
        assert_eq!(drops.load(Ordering::Relaxed), 0, "moved into the words");
        let frame = Frame::decode(words);
        assert_eq!(frame.head, 0x1234);
        assert_eq!(frame.inline, [1, 2, 3, 4, 0, 0]);
        let owned = frame.owned.unwrap();
        assert_eq!(owned.as_ptr(), address, "moved by reference, not copied");
        drop(owned);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
    }
}
