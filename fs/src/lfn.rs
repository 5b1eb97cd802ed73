//! VFAT long file names: validation, checksums, and encoding into and decoding from the
//! 32-byte entries that precede a short entry.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, Result};

/// The attribute byte that marks a long-name entry.
pub(crate) const ATTRIBUTE: u8 = 0x0F;
/// The flag in the order byte of the entry that holds the end of the name.
const LAST: u8 = 0x40;
/// Name characters per entry.
const CHARS_PER_ENTRY: usize = 13;
/// The longest name, in UTF-16 units.
pub(crate) const MAX_UNITS: usize = 255;
/// Byte offsets of the 13 UTF-16 units within an entry.
const OFFSETS: [usize; CHARS_PER_ENTRY] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];

/// Returns the checksum of a short name that its long-name entries carry.
pub(crate) fn checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &byte| sum.rotate_right(1).wrapping_add(byte))
}

/// Returns the UTF-16 form of `name` if it is a valid long name: not empty, not `.` or
/// `..`, at most 255 units, no control characters or `"*/:<>?\|`, and not ending in a
/// dot or a space.
pub(crate) fn encode(name: &str) -> Result<Vec<u16>> {
    if name.is_empty() || name == "." || name == ".." || name.ends_with('.') || name.ends_with(' ')
    {
        return Err(Error::InvalidName);
    }
    if name
        .chars()
        .any(|c| (c as u32) < 0x20 || c == '\u{7f}' || "\"*/:<>?\\|".contains(c))
    {
        return Err(Error::InvalidName);
    }
    let units: Vec<u16> = name.encode_utf16().collect();
    if units.len() > MAX_UNITS {
        return Err(Error::InvalidName);
    }
    Ok(units)
}

/// Returns the number of long-name entries that `units` needs.
pub(crate) fn entry_count(units: &[u16]) -> usize {
    units.len().div_ceil(CHARS_PER_ENTRY)
}

/// Returns the long-name entries for `units`, in on-disk order (the last part first).
pub(crate) fn entries(units: &[u16], short: &[u8; 11]) -> Vec<[u8; 32]> {
    let count = entry_count(units);
    let sum = checksum(short);
    let mut result = Vec::with_capacity(count);
    for ordinal in (1..=count).rev() {
        let mut entry = [0u8; 32];
        entry[0] = ordinal as u8 | if ordinal == count { LAST } else { 0 };
        entry[11] = ATTRIBUTE;
        entry[13] = sum;
        for (i, &offset) in OFFSETS.iter().enumerate() {
            let index = (ordinal - 1) * CHARS_PER_ENTRY + i;
            let unit = match index.cmp(&units.len()) {
                core::cmp::Ordering::Less => units[index],
                core::cmp::Ordering::Equal => 0x0000,
                core::cmp::Ordering::Greater => 0xFFFF,
            };
            entry[offset..offset + 2].copy_from_slice(&unit.to_le_bytes());
        }
        result.push(entry);
    }
    result
}

/// Collects long-name entries as a directory scan meets them, and hands out the name
/// when the short entry that follows matches.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    units: Vec<u16>,
    /// The ordinal expected next, counting down to 1; 0 when no sequence is open.
    expected: u8,
    checksum: u8,
    /// How many entries the open sequence has so far.
    pub(crate) collected: usize,
}

impl Assembler {
    /// Forgets any partial sequence.
    pub(crate) fn reset(&mut self) {
        self.expected = 0;
        self.collected = 0;
        self.units.clear();
    }

    /// Takes in a long-name entry.
    pub(crate) fn push(&mut self, entry: &[u8; 32]) {
        let ordinal = entry[0] & 0x3F;
        if entry[0] & LAST != 0 {
            self.reset();
            if ordinal == 0 || usize::from(ordinal) * CHARS_PER_ENTRY > MAX_UNITS + CHARS_PER_ENTRY
            {
                return;
            }
            self.units
                .resize(usize::from(ordinal) * CHARS_PER_ENTRY, 0xFFFF);
            self.checksum = entry[13];
            self.expected = ordinal;
        } else if self.expected == 0 || ordinal != self.expected || entry[13] != self.checksum {
            self.reset();
            return;
        }
        let start = (usize::from(ordinal) - 1) * CHARS_PER_ENTRY;
        for (i, &offset) in OFFSETS.iter().enumerate() {
            self.units[start + i] = crate::bytes::u16_at(entry, offset);
        }
        self.expected -= 1;
        self.collected += 1;
    }

    /// Returns the long name for the short entry `short` if a complete sequence with the
    /// right checksum precedes it, and starts over.
    pub(crate) fn finish(&mut self, short: &[u8; 11]) -> Option<String> {
        let complete = self.collected > 0 && self.expected == 0 && self.checksum == checksum(short);
        let name = if complete {
            let end = self
                .units
                .iter()
                .position(|&u| u == 0)
                .unwrap_or(self.units.len());
            let name: String = char::decode_utf16(self.units[..end].iter().copied())
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect();
            (!name.is_empty()).then_some(name)
        } else {
            None
        };
        self.reset();
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_specification_example() {
        // The specification's algorithm applied by hand to "FILENA~1TXT".
        let mut sum = 0u8;
        for &b in b"FILENA~1TXT" {
            sum = (if sum & 1 != 0 { 0x80u8 } else { 0 })
                .wrapping_add(sum >> 1)
                .wrapping_add(b);
        }
        assert_eq!(checksum(b"FILENA~1TXT"), sum);
    }

    #[test]
    fn round_trips_long_names() {
        let short = *b"A~1        ";
        for name in [
            "a",
            "exactly13char",
            "exactly13chars",
            "ünïcödé name with spaces.txt",
        ] {
            let units = encode(name).unwrap();
            let mut assembler = Assembler::default();
            for entry in entries(&units, &short) {
                assembler.push(&entry);
            }
            assert_eq!(assembler.finish(&short).as_deref(), Some(name));
        }
        let long = "x".repeat(255);
        assert_eq!(entry_count(&encode(&long).unwrap()), 20);
        assert_eq!(encode(&"x".repeat(256)), Err(Error::InvalidName));
    }

    #[test]
    fn ignores_a_sequence_with_a_wrong_checksum_or_gap() {
        let units = encode("a rather long file name.txt").unwrap();
        let short = *b"ARATHE~1TXT";
        let list = entries(&units, &short);
        let mut assembler = Assembler::default();
        for entry in &list {
            assembler.push(entry);
        }
        assert_eq!(assembler.finish(b"OTHER   TXT"), None);
        assembler.push(&list[0]);
        assembler.push(&list[2]);
        assert_eq!(assembler.finish(&short), None);
    }

    #[test]
    fn refuses_invalid_names() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a*",
            "trailing.",
            "trailing ",
            "tab\t",
        ] {
            assert_eq!(encode(bad), Err(Error::InvalidName), "{bad:?}");
        }
    }
}
