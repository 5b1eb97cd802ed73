//! What a ring slot carries: 56 bytes as seven words, and the types allowed to travel.

/// Number of 64-bit words of payload in one slot (64-byte line minus the sequence word).
pub const SLOT_WORDS: usize = 7;

/// Number of payload bytes in one slot.
pub const SLOT_PAYLOAD_BYTES: usize = SLOT_WORDS * 8;

/// The raw payload of one slot: 56 bytes as seven words.
pub type Words = [u64; SLOT_WORDS];

/// A value that can travel through a [`crate::Ring`].
///
/// Sealed: the crate implements it for [`Words`] (plain data) and [`crate::Message`]
/// (which may own a boxed value). A ring of one type only ever holds words produced by
/// that type's encoding, which is what lets a `Message` turn words back into an owner.
pub trait Wire: Send + private::Encode {}

impl<T: Send + private::Encode> Wire for T {}

pub(crate) mod private {
    use super::Words;

    /// Conversion to and from slot words. Not nameable outside the crate, so nobody
    /// else can decode words into a value that owns memory.
    pub trait Encode: Sized {
        /// Returns the words that represent `self`; ownership moves into the words.
        fn encode(self) -> Words;
        /// Returns the value `words` represent; `words` must come from `encode` of the
        /// same type and be decoded at most once (the ring guarantees both).
        fn decode(words: Words) -> Self;
    }
}

impl private::Encode for Words {
    fn encode(self) -> Words {
        self
    }

    fn decode(words: Words) -> Self {
        words
    }
}
