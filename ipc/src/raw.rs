//! The crate's only `unsafe`: buffers whose ownership travels by pointer inside messages.
//!
//! An [`OwnedBuffer`] is the sole owner of a byte buffer, like a `Box<[u8]>`. A
//! [`Message`] that carries one encodes it as three words (address, length, origin) and
//! forgets it; decoding rebuilds the owner. That is sound because the encoding trait is
//! sealed and unnameable outside this crate, a ring of messages only ever holds words
//! that `Message::encode` produced, and its receiver decodes each slot exactly once.

#[cfg(feature = "alloc")]
use alloc::boxed::Box;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use crate::message::{
    bytes_from_words, words_from_bytes, Header, Kind, Message, INLINE_BYTES,
    INLINE_BYTES_WITH_BUFFER,
};
use crate::wire::{private::Encode, Words};

/// Where an [`OwnedBuffer`]'s memory came from, so that its last owner frees it right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Memory that lives forever; dropping the buffer forgets it.
    Static = 1,
    /// A `Box<[u8]>` from the global allocator; dropping the buffer frees it (in the
    /// kernel the allocator returns a remote free to its owning core).
    #[cfg(feature = "alloc")]
    Boxed = 2,
}

/// A byte buffer with a single owner, which can move to another core inside a
/// [`Message`] without being copied.
pub struct OwnedBuffer {
    pointer: NonNull<u8>,
    len: usize,
    origin: Origin,
}

// SAFETY: an `OwnedBuffer` is the only handle to its bytes (like `Box<[u8]>`), so moving
// it to another thread moves exclusive access with it.
unsafe impl Send for OwnedBuffer {}

// SAFETY: a shared `&OwnedBuffer` only gives out `&[u8]`, and `u8` is `Sync`.
unsafe impl Sync for OwnedBuffer {}

impl OwnedBuffer {
    /// Returns the owner of `bytes`, memory that lives for the whole run (a static
    /// pool, a region carved at boot). Dropping the buffer forgets it.
    pub fn from_static(bytes: &'static mut [u8]) -> Self {
        let len = bytes.len();
        Self {
            pointer: NonNull::from(bytes).cast(),
            len,
            origin: Origin::Static,
        }
    }

    /// Returns the owner of `bytes`. Dropping the buffer frees it.
    #[cfg(feature = "alloc")]
    pub fn from_box(bytes: Box<[u8]>) -> Self {
        let len = bytes.len();
        Self {
            pointer: NonNull::from(Box::leak(bytes)).cast(),
            len,
            origin: Origin::Boxed,
        }
    }

    /// Returns the buffer as a `Box`, or gives it back if it was not made from one.
    #[cfg(feature = "alloc")]
    pub fn into_box(self) -> Result<Box<[u8]>, Self> {
        if self.origin != Origin::Boxed {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        let slice = core::ptr::slice_from_raw_parts_mut(this.pointer.as_ptr(), this.len);
        // SAFETY: `pointer` and `len` come from `Box::leak` in `from_box` (origin is
        // `Boxed`), nobody else owns them, and `ManuallyDrop` keeps `Drop` from freeing
        // them a second time.
        Ok(unsafe { Box::from_raw(slice) })
    }

    /// Returns the buffer as the static slice it was made from, or gives it back if it
    /// was made from something else.
    pub fn into_static(self) -> Result<&'static mut [u8], Self> {
        if self.origin != Origin::Static {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: the memory came from a `&'static mut [u8]` in `from_static`, so it is
        // valid for `len` bytes forever, and this buffer was its only owner; the owner
        // is consumed, so the returned reference is unique.
        Ok(unsafe { core::slice::from_raw_parts_mut(this.pointer.as_ptr(), this.len) })
    }

    /// Returns the number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the address of the first byte (to check that nothing was copied).
    pub fn as_ptr(&self) -> *const u8 {
        self.pointer.as_ptr()
    }

    /// Returns the three words that stand for this buffer; ownership moves into them.
    fn into_wire(self) -> [u64; 3] {
        let this = ManuallyDrop::new(self);
        [
            this.pointer.as_ptr() as usize as u64,
            this.len as u64,
            this.origin as u64,
        ]
    }

    /// Returns the buffer that `words` stand for.
    ///
    /// # Safety
    ///
    /// `words` must come from [`OwnedBuffer::into_wire`], and this must be the only
    /// call with those words: it takes back the ownership `into_wire` gave away.
    unsafe fn from_wire(words: [u64; 3]) -> Self {
        let origin = match words[2] {
            #[cfg(feature = "alloc")]
            2 => Origin::Boxed,
            _ => Origin::Static,
        };
        let pointer = NonNull::new(words[0] as usize as *mut u8);
        debug_assert!(pointer.is_some(), "buffer words not made by into_wire");
        Self {
            pointer: pointer.unwrap_or(NonNull::dangling()),
            len: words[1] as usize,
            origin,
        }
    }
}

impl Deref for OwnedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `pointer` is valid for `len` bytes for as long as this owner lives (a
        // live static or boxed slice), and `&self` keeps it alive and unmodified.
        unsafe { core::slice::from_raw_parts(self.pointer.as_ptr(), self.len) }
    }
}

impl DerefMut for OwnedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access.
        unsafe { core::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.len) }
    }
}

impl Drop for OwnedBuffer {
    fn drop(&mut self) {
        match self.origin {
            Origin::Static => {}
            #[cfg(feature = "alloc")]
            Origin::Boxed => {
                let slice = core::ptr::slice_from_raw_parts_mut(self.pointer.as_ptr(), self.len);
                // SAFETY: a `Boxed` buffer holds the parts of a leaked `Box<[u8]>`; this
                // is its only owner and it is being dropped, so it is freed once.
                drop(unsafe { Box::from_raw(slice) });
            }
        }
    }
}

impl core::fmt::Debug for OwnedBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OwnedBuffer")
            .field("pointer", &self.pointer)
            .field("len", &self.len)
            .field("origin", &self.origin)
            .finish()
    }
}

/// Bits of the wire `kind` field that the crate keeps for itself.
const REPLY_FLAG: u64 = 1 << 14;
const BUFFER_FLAG: u64 = 1 << 15;

/// Wire layout: word 0 is `kind | flags` (16 bits), `source` (16), `correlation` (32);
/// words 1 to 6 are the inline bytes, or the buffer's three words and 24 inline bytes.
impl Encode for Message {
    fn encode(self) -> Words {
        let Message {
            header,
            inline,
            buffer,
        } = self;
        let mut words = [0; 7];
        words[0] = u64::from(header.kind.value())
            | if header.reply { REPLY_FLAG } else { 0 }
            | if buffer.is_some() { BUFFER_FLAG } else { 0 }
            | u64::from(header.source) << 16
            | u64::from(header.correlation) << 32;
        let inline = words_from_bytes(&inline);
        match buffer {
            None => words[1..].copy_from_slice(&inline),
            Some(buffer) => {
                words[1..4].copy_from_slice(&buffer.into_wire());
                words[4..].copy_from_slice(&inline[..INLINE_BYTES_WITH_BUFFER / 8]);
            }
        }
        words
    }

    fn decode(words: Words) -> Self {
        let header = Header {
            kind: Kind::new((words[0] & u64::from(Kind::MAX)) as u16),
            source: (words[0] >> 16) as u16,
            correlation: (words[0] >> 32) as u32,
            reply: words[0] & REPLY_FLAG != 0,
        };
        let mut inline = [0; 6];
        let buffer = if words[0] & BUFFER_FLAG != 0 {
            inline[..3].copy_from_slice(&words[4..]);
            // SAFETY: the buffer flag is only set by `encode` above, next to the words of
            // `into_wire`; `Encode` cannot be named outside this crate, so only `encode`
            // makes words a `Message` decodes, and each ring slot is decoded once.
            Some(unsafe { OwnedBuffer::from_wire([words[1], words[2], words[3]]) })
        } else {
            inline.copy_from_slice(&words[1..]);
            None
        };
        let inline: [u8; INLINE_BYTES] = bytes_from_words(&inline);
        Message {
            header,
            inline,
            buffer,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn static_buffer_round_trips() {
        static mut POOL: [u8; 16] = [3; 16];
        // SAFETY: this test is the only user of POOL and makes this one reference to it.
        let bytes: &'static mut [u8] = unsafe { &mut *core::ptr::addr_of_mut!(POOL) };
        let mut buffer = OwnedBuffer::from_static(bytes);
        buffer[0] = 1;
        let buffer = {
            // SAFETY: words from into_wire, used once.
            unsafe { OwnedBuffer::from_wire(buffer.into_wire()) }
        };
        assert_eq!(buffer.len(), 16);
        #[cfg(feature = "alloc")]
        let buffer = buffer.into_box().unwrap_err();
        let bytes = buffer.into_static().unwrap();
        assert_eq!(bytes[0], 1);
        assert_eq!(bytes[1], 3);
    }

    #[test]
    #[cfg(feature = "alloc")]
    fn boxed_buffer_is_freed_once() {
        let buffer = OwnedBuffer::from_box(vec![1, 2, 3].into_boxed_slice());
        let buffer = buffer.into_static().unwrap_err();
        // SAFETY: words from into_wire, used once.
        let buffer = unsafe { OwnedBuffer::from_wire(buffer.into_wire()) };
        assert_eq!(&*buffer.into_box().unwrap(), &[1, 2, 3]);
        let empty = OwnedBuffer::from_box(Vec::new().into_boxed_slice());
        assert!(empty.is_empty());
    }
}
