//! Typed messages: an 8-byte header and 48 bytes inline, or a buffer moved by reference.
//!
//! A message fills one ring slot exactly. Its header names the kind of message, the
//! core that sent it and a correlation id that ties a reply to its request. Data that
//! does not fit inline travels as an [`OwnedBuffer`]: the message carries the pointer and
//! length, and ownership of the memory moves with it (one address space, no copies).

use crate::raw::OwnedBuffer;

/// Number of inline payload bytes in a message without a buffer.
pub const INLINE_BYTES: usize = 48;

/// Number of inline payload bytes in a message that carries a buffer (the buffer's
/// pointer, length and origin take the other 24).
pub const INLINE_BYTES_WITH_BUFFER: usize = 24;

/// What a message means, chosen by the protocol that uses it.
///
/// Values go up to [`Kind::MAX`]; the two top bits of the wire field are the crate's
/// own flags (reply, buffer attached).
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

/// The header of a message: kind, sending core and correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub(crate) kind: Kind,
    pub(crate) source: u16,
    pub(crate) correlation: u32,
    pub(crate) reply: bool,
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

    /// Returns the correlation id; 0 for a message that expects no reply.
    pub const fn correlation(&self) -> u32 {
        self.correlation
    }

    /// Returns whether the message answers the request with the same correlation id.
    pub const fn is_reply(&self) -> bool {
        self.reply
    }
}

/// A message that fits one ring slot.
#[derive(Debug)]
pub struct Message {
    pub(crate) header: Header,
    /// With a buffer attached, only the first [`INLINE_BYTES_WITH_BUFFER`] bytes travel;
    /// the rest stay zero.
    pub(crate) inline: [u8; INLINE_BYTES],
    pub(crate) buffer: Option<OwnedBuffer>,
}

impl Message {
    /// Returns a message of `kind` from core `source` with `inline` as payload.
    pub const fn new(kind: Kind, source: u16, inline: [u8; INLINE_BYTES]) -> Self {
        Self {
            header: Header {
                kind,
                source,
                correlation: 0,
                reply: false,
            },
            inline,
            buffer: None,
        }
    }

    /// Returns a message whose payload is `bytes` followed by zeros, or `None` if
    /// `bytes` is longer than [`INLINE_BYTES`].
    pub fn from_slice(kind: Kind, source: u16, bytes: &[u8]) -> Option<Self> {
        let mut inline = [0; INLINE_BYTES];
        inline.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Self::new(kind, source, inline))
    }

    /// Returns a message that hands `buffer` over to the receiver, with `inline` as the
    /// first bytes of its payload.
    pub fn with_buffer(
        kind: Kind,
        source: u16,
        buffer: OwnedBuffer,
        inline: [u8; INLINE_BYTES_WITH_BUFFER],
    ) -> Self {
        let mut message = Self::new(kind, source, [0; INLINE_BYTES]);
        message.inline[..INLINE_BYTES_WITH_BUFFER].copy_from_slice(&inline);
        message.buffer = Some(buffer);
        message
    }

    /// Returns this message turned into the reply to the request with header `request`.
    #[must_use]
    pub const fn into_reply_to(mut self, request: &Header) -> Self {
        self.header.correlation = request.correlation;
        self.header.reply = true;
        self
    }

    /// Returns the header.
    pub const fn header(&self) -> Header {
        self.header
    }

    /// Returns the inline payload. With a buffer attached only the first
    /// [`INLINE_BYTES_WITH_BUFFER`] bytes are meaningful.
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

    /// Returns the attached buffer, if any, without taking it.
    pub fn buffer(&self) -> Option<&OwnedBuffer> {
        self.buffer.as_ref()
    }

    /// Returns the attached buffer, if any, and its ownership.
    pub fn take_buffer(&mut self) -> Option<OwnedBuffer> {
        self.buffer.take()
    }

    /// Sets the correlation id; the request layer chooses fresh ones.
    pub(crate) fn set_correlation(&mut self, correlation: u32) {
        self.header.correlation = correlation;
        self.header.reply = false;
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
    use crate::wire::private::Encode;

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
        let mut message = Message::new(Kind::new(Kind::MAX), 65535, payload);
        message.set_correlation(0xdead_beef);
        let decoded = Message::decode(message.encode());
        assert_eq!(decoded.header().kind(), Kind::new(Kind::MAX));
        assert_eq!(decoded.header().source(), 65535);
        assert_eq!(decoded.header().correlation(), 0xdead_beef);
        assert!(!decoded.header().is_reply());
        assert_eq!(decoded.inline(), &payload);
        assert!(decoded.buffer().is_none());
    }

    #[test]
    fn reply_keeps_correlation() {
        let mut request = Message::from_slice(PING, 1, b"ping").unwrap();
        request.set_correlation(42);
        let reply = Message::from_slice(PING, 2, b"pong")
            .unwrap()
            .into_reply_to(&request.header());
        let decoded = Message::decode(reply.encode());
        assert!(decoded.header().is_reply());
        assert_eq!(decoded.header().correlation(), 42);
        assert_eq!(&decoded.inline()[..4], b"pong");
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
    #[cfg(feature = "alloc")]
    fn buffer_moves_with_the_message() {
        let buffer = OwnedBuffer::from_box(vec![9u8; 1000].into_boxed_slice());
        let address = buffer.as_ptr();
        let message = Message::with_buffer(PING, 3, buffer, [5; INLINE_BYTES_WITH_BUFFER]);
        let mut decoded = Message::decode(message.encode());
        assert_eq!(&decoded.inline()[..24], &[5; 24]);
        assert_eq!(&decoded.inline()[24..], &[0; 24]);
        let buffer = decoded.take_buffer().unwrap();
        assert_eq!(buffer.as_ptr(), address, "moved by reference, not copied");
        assert_eq!(buffer.len(), 1000);
        assert!(buffer.iter().all(|&b| b == 9));
        assert!(decoded.take_buffer().is_none());
    }
}
