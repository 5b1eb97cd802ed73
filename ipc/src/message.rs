//! Typed messages: a small header and 48 bytes inline, or a boxed value moved by
//! reference.
//!
//! A message fills one ring slot exactly. Its header names the kind of message and the
//! core that sent it. A value that does not fit inline travels as an [`Owned`]: the
//! message carries the box's address, and ownership of the box moves with it (one
//! address space, no copies).

use crate::raw::{Frame, Owned, INLINE_WORDS_WITH_OWNED};
use crate::wire::{private::Encode, Words};

/// Number of inline payload bytes in a message without an owned value.
pub const INLINE_BYTES: usize = 48;

/// Number of inline payload bytes in a message that carries an [`Owned`] value (its
/// address and type take the other 16).
pub const INLINE_BYTES_WITH_OWNED: usize = INLINE_WORDS_WITH_OWNED * 8;

/// What a message means, chosen by the protocol that uses it.
///
/// Values go up to [`Kind::MAX`]; the two top bits of the wire field are kept for the
/// crate's own use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(u16);

impl Kind {
    /// The largest kind value.
    pub const MAX: u16 = 0x3fff;

    /// Returns the kind `value`.
    ///
    /// # Panics
    ///
    /// If `value` is above [`Kind::MAX`]; in a `const` this is a compile error.
    pub const fn new(value: u16) -> Self {
        assert!(value <= Self::MAX, "message kind above Kind::MAX");
        Self(value)
    }

    /// Returns the kind `value`, or `None` if it is above [`Kind::MAX`].
    pub const fn try_new(value: u16) -> Option<Self> {
        if value <= Self::MAX {
            Some(Self(value))
        } else {
            None
        }
    }

    /// Returns the numeric value.
    pub const fn value(self) -> u16 {
        self.0
    }
}

/// The header of a message: kind and sending core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    kind: Kind,
    source: u16,
}

impl Header {
    /// Returns the kind of the message.
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// Returns the index of the core that sent the message.
    pub const fn source(&self) -> u16 {
        self.source
    }
}

/// A message that fits one ring slot.
///
/// It is neither `Clone` nor `Copy`: a message that carries an [`Owned`] value hands it
/// over once.
#[derive(Debug)]
pub struct Message {
    header: Header,
    /// With an owned value attached, only the first [`INLINE_BYTES_WITH_OWNED`] bytes
    /// travel; the rest stay zero.
    inline: [u8; INLINE_BYTES],
    owned: Option<Owned>,
}

impl Message {
    /// Returns a message of `kind` from core `source` with `inline` as payload.
    pub const fn new(kind: Kind, source: u16, inline: [u8; INLINE_BYTES]) -> Self {
        Self {
            header: Header { kind, source },
            inline,
            owned: None,
        }
    }

    /// Returns a message whose payload is `bytes` followed by zeros, or `None` if
    /// `bytes` is longer than [`INLINE_BYTES`].
    pub fn from_slice(kind: Kind, source: u16, bytes: &[u8]) -> Option<Self> {
        let mut inline = [0; INLINE_BYTES];
        inline.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self::new(kind, source, inline))
    }

    /// Returns a message that hands `owned` over to the receiver, with `inline` as the
    /// first bytes of its payload.
    pub fn with_owned(
        kind: Kind,
        source: u16,
        owned: Owned,
        inline: [u8; INLINE_BYTES_WITH_OWNED],
    ) -> Self {
        let mut message = Self::new(kind, source, [0; INLINE_BYTES]);
        message.inline[..INLINE_BYTES_WITH_OWNED].copy_from_slice(&inline);
        message.owned = Some(owned);
        message
    }

    /// Returns the header.
    pub const fn header(&self) -> Header {
        self.header
    }

    /// Returns the inline payload. With an owned value attached only the first
    /// [`INLINE_BYTES_WITH_OWNED`] bytes are meaningful.
    pub const fn inline(&self) -> &[u8; INLINE_BYTES] {
        &self.inline
    }

    /// Returns the little-endian word at `index` (0 to 5) of the inline payload.
    ///
    /// # Panics
    ///
    /// If `index` is 6 or more.
    pub fn inline_word(&self, index: usize) -> u64 {
        let bytes = &self.inline[index * 8..index * 8 + 8];
        let mut word = [0; 8];
        word.copy_from_slice(bytes);
        u64::from_le_bytes(word)
    }

    /// Returns the attached value, if any, without taking it.
    pub fn owned(&self) -> Option<&Owned> {
        self.owned.as_ref()
    }

    /// Takes the attached value, if any, and its ownership: a second call returns `None`.
    pub fn take_owned(&mut self) -> Option<Owned> {
        self.owned.take()
    }
}

/// Wire layout of the head word: the kind in bits 0 to 13, the source in bits 16 to 31
/// (bits 14 and 15 are the crate's; see `raw`).
impl Encode for Message {
    fn encode(self) -> Words {
        let Message {
            header,
            inline,
            owned,
        } = self;
        Frame {
            head: u64::from(header.kind.value()) | u64::from(header.source) << 16,
            owned,
            inline: words_from_bytes(&inline),
        }
        .encode()
    }

    fn decode(words: Words) -> Self {
        let frame = Frame::decode(words);
        Message {
            header: Header {
                kind: Kind::new((frame.head & u64::from(Kind::MAX)) as u16),
                source: (frame.head >> 16) as u16,
            },
            inline: bytes_from_words(&frame.inline),
            owned: frame.owned,
        }
    }
}

/// Returns the six little-endian words of a 48-byte payload.
pub fn words_from_bytes(bytes: &[u8; INLINE_BYTES]) -> [u64; 6] {
    core::array::from_fn(|i| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(word)
    })
}

/// Returns the 48 bytes of six little-endian words.
pub fn bytes_from_words(words: &[u64; 6]) -> [u8; INLINE_BYTES] {
    let mut bytes = [0; INLINE_BYTES];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ring::Ring;
    use alloc::boxed::Box;

    const PING: Kind = Kind::new(7);

    #[test]
    fn kind_range() {
        assert_eq!(Kind::try_new(Kind::MAX), Some(Kind(Kind::MAX)));
        assert_eq!(Kind::try_new(Kind::MAX + 1), None);
        assert_eq!(PING.value(), 7);
    }

    #[test]
    #[should_panic(expected = "above Kind::MAX")]
    fn kind_new_rejects_flag_bits() {
        let _ = Kind::new(0x8000);
    }

    #[test]
    fn inline_message_round_trips_through_words() {
        let mut payload = [0; INLINE_BYTES];
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte = i as u8 * 3;
        }
        let message = Message::new(Kind::new(Kind::MAX), 65535, payload);
        let decoded = Message::decode(message.encode());
        assert_eq!(decoded.header().kind(), Kind::new(Kind::MAX));
        assert_eq!(decoded.header().source(), 65535);
        assert_eq!(decoded.inline(), &payload);
        assert!(decoded.owned().is_none());
    }

    #[test]
    fn from_slice_rejects_too_long() {
        assert!(Message::from_slice(PING, 0, &[1; INLINE_BYTES]).is_some());
        assert!(Message::from_slice(PING, 0, &[1; INLINE_BYTES + 1]).is_none());
    }

    #[test]
    fn words_and_bytes_agree() {
        let words = [1, 2, 3, u64::MAX, 5, 0x0102_0304_0506_0708];
        let bytes = bytes_from_words(&words);
        assert_eq!(words_from_bytes(&bytes), words);
        let message = Message::new(PING, 0, bytes);
        assert_eq!(message.inline_word(5), 0x0102_0304_0506_0708);
    }

    #[test]
    fn an_owned_value_moves_with_the_message() {
        let value = Box::new(vec![9u8; 1000]);
        let address = value.as_ptr();
        let message = Message::with_owned(PING, 3, Owned::new(value), [5; INLINE_BYTES_WITH_OWNED]);
        let mut decoded = Message::decode(message.encode());
        assert_eq!(decoded.header().source(), 3);
        assert_eq!(&decoded.inline()[..32], &[5; 32]);
        assert_eq!(&decoded.inline()[32..], &[0; 16]);
        let value = decoded.take_owned().unwrap().into_box::<Vec<u8>>().unwrap();
        assert_eq!(value.as_ptr(), address, "moved by reference, not copied");
        assert_eq!(value.len(), 1000);
        assert!(decoded.take_owned().is_none(), "taken once");
    }

    /// The value of a message leaves the ring once: the slot is received once, the
    /// message cannot be copied, and its value can be taken once.
    #[test]
    fn a_message_is_received_and_its_value_taken_once() {
        let ring = Ring::<Message, 2>::new();
        let (mut tx, mut rx) = ring.split().unwrap();
        let message = Message::with_owned(PING, 0, Owned::new(Box::new(41u32)), [0; 32]);
        tx.try_send(message).unwrap();
        let mut received = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_none(), "one slot, one message");
        let owned = received.take_owned().unwrap();
        assert!(received.take_owned().is_none());
        let owned = owned.into_box::<u64>().expect_err("a u32 is not a u64");
        assert_eq!(*owned.into_box::<u32>().unwrap(), 41);
    }
}
