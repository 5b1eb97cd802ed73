//! What decides between a full, a partial and an empty answer: a file's validators
//! (`ETag`, `Last-Modified`), the request's conditions (`If-None-Match`,
//! `If-Modified-Since`, `If-Range`) and its `Range` (RFC 9110, sections 8.8, 13 and
//! 14). Single ranges only; a request for several is answered in full, as a server may.

use alloc::string::String;

use super::date;
use super::request::{Conditions, Method};

/// An entity tag as the server sends it, quotes included (`"..."`, always strong).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EntityTag {
    bytes: [u8; 40],
    length: u8,
}

impl core::fmt::Debug for EntityTag {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl EntityTag {
    /// Returns the tag of a file whose whole content is known: a hash of the bytes, so
    /// two different contents get different tags whatever their dates.
    pub fn of_content(content: &[u8]) -> EntityTag {
        // FNV-1a, 64 bits: cheap, and a change of content changes it.
        let hash = content
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        Self::from_parts(&[hash ^ content.len() as u64])
    }

    /// Returns the tag of a file too big to hash per request: its modification time and
    /// size (what nginx sends).
    pub fn of_metadata(modified: u64, size: u64) -> EntityTag {
        Self::from_parts(&[modified, size])
    }

    /// Returns `"HEX-HEX..."` of `parts`.
    fn from_parts(parts: &[u64]) -> EntityTag {
        let mut tag = EntityTag {
            bytes: [0; 40],
            length: 0,
        };
        tag.push(b'"');
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                tag.push(b'-');
            }
            let digits = if *part == 0 {
                1
            } else {
                (67 - part.leading_zeros() as usize) / 4
            };
            for shift in (0..digits).rev() {
                tag.push(b"0123456789abcdef"[((part >> (shift * 4)) & 0xF) as usize]);
            }
        }
        tag.push(b'"');
        tag
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(usize::from(self.length)) {
            *slot = byte;
            self.length += 1;
        }
    }

    /// Returns the tag as sent, quotes included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.length)]
    }
}

/// What identifies the version of a file the server has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validators {
    /// Its entity tag.
    pub etag: EntityTag,
    /// Its modification time in seconds since the Unix epoch, when known.
    pub last_modified: Option<u64>,
}

/// What to answer a GET or HEAD for a file of a known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: the whole file.
    Full,
    /// 304: the client's copy is current.
    NotModified,
    /// 206: bytes `start..=end`.
    Partial {
        /// The first byte.
        start: u64,
        /// The last byte (inclusive).
        end: u64,
    },
    /// 416: the range lies outside the file.
    Unsatisfiable,
}

/// Returns what to answer `method` with `conditions` for a file of `size` bytes with
/// `validators`, in the order of RFC 9110, section 13.2.2.
pub fn answer(
    method: Method,
    conditions: &Conditions<'_>,
    validators: &Validators,
    size: u64,
) -> Answer {
    if let Some(tags) = conditions.if_none_match {
        if none_match_fails(tags, &validators.etag) {
            return Answer::NotModified;
        }
    } else if let (Some(since), Some(modified)) =
        (conditions.if_modified_since, validators.last_modified)
    {
        // An invalid date is ignored (section 13.1.3).
        if date::parse(since).is_some_and(|since| modified <= since) {
            return Answer::NotModified;
        }
    }
    let Some(range) = conditions.range else {
        return Answer::Full;
    };
    if method != Method::Get {
        return Answer::Full;
    }
    if let Some(validator) = conditions.if_range {
        if !if_range_holds(validator, validators) {
            return Answer::Full;
        }
    }
    range_answer(range, size)
}

/// Returns true when `If-None-Match: tags` matches `etag` (weak comparison), so the
/// answer is 304.
fn none_match_fails(tags: &[u8], etag: &EntityTag) -> bool {
    let tags = tags.trim_ascii();
    if tags == b"*" {
        return true;
    }
    tags.split(|&byte| byte == b',').any(|tag| {
        let tag = tag.trim_ascii();
        let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
        tag == etag.as_bytes()
    })
}

/// Returns true when `If-Range: validator` names the file's current version: its
/// entity tag (strong comparison) or exactly its modification date.
fn if_range_holds(validator: &[u8], validators: &Validators) -> bool {
    let validator = validator.trim_ascii();
    if validator.starts_with(b"\"") || validator.starts_with(b"W/") {
        return validator == validators.etag.as_bytes();
    }
    match (date::parse(validator), validators.last_modified) {
        (Some(date), Some(modified)) => date == modified,
        _ => false,
    }
}

/// Returns what `Range: header` asks of `size` bytes: one satisfiable range, nothing
/// satisfiable, or `Full` when the header is not a single byte range this server
/// reads (another unit, several ranges, bad syntax: all ignored, as allowed).
pub fn range_answer(header: &[u8], size: u64) -> Answer {
    let header = header.trim_ascii();
    let Some(unit_end) = header.iter().position(|&byte| byte == b'=') else {
        return Answer::Full;
    };
    if !header[..unit_end]
        .trim_ascii()
        .eq_ignore_ascii_case(b"bytes")
    {
        return Answer::Full;
    }
    let spec = header[unit_end + 1..].trim_ascii();
    if spec.contains(&b',') {
        return Answer::Full;
    }
    let Some(dash) = spec.iter().position(|&byte| byte == b'-') else {
        return Answer::Full;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    let number = |digits: &[u8]| -> Option<u64> {
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        digits.iter().try_fold(0u64, |value, &digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
    };
    match (first.is_empty(), last.is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match number(last) {
            // A suffix longer than u64 asks for the whole file.
            None if last.iter().all(u8::is_ascii_digit) && size > 0 => Answer::Partial {
                start: 0,
                end: size - 1,
            },
            None => Answer::Full,
            Some(0) => Answer::Unsatisfiable,
            Some(_) if size == 0 => Answer::Unsatisfiable,
            Some(suffix) => Answer::Partial {
                start: size - suffix.min(size),
                end: size - 1,
            },
        },
        // `N-` or `N-M`.
        (false, _) => {
            let Some(start) = number(first) else {
                return Answer::Full;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match number(last) {
                    Some(end) if end >= start => end,
                    // `last < first` makes the range invalid: ignored.
                    Some(_) => return Answer::Full,
                    // More digits than u64: as far as the file goes.
                    None if last.iter().all(u8::is_ascii_digit) => u64::MAX,
                    None => return Answer::Full,
                }
            };
            if start >= size {
                Answer::Unsatisfiable
            } else {
                Answer::Partial {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
        (true, true) => Answer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators() -> Validators {
        Validators {
            etag: EntityTag::of_content(b"hello"),
            last_modified: Some(784_111_777),
        }
    }

    fn conditions<'a>() -> Conditions<'a> {
        Conditions::default()
    }

    #[test]
    fn tags_are_quoted_hex_and_follow_the_content() {
        let tag = EntityTag::of_content(b"hello");
        let text = tag.as_bytes();
        assert!(text.starts_with(b"\"") && text.ends_with(b"\""));
        assert!(text[1..text.len() - 1].iter().all(u8::is_ascii_hexdigit));
        assert_ne!(tag, EntityTag::of_content(b"hellp"));
        assert_ne!(tag, EntityTag::of_content(b"hello "));
        assert_eq!(
            EntityTag::of_metadata(0x5f, 0x267).as_bytes(),
            b"\"5f-267\""
        );
        assert_eq!(
            EntityTag::of_metadata(u64::MAX, 0).as_bytes(),
            b"\"ffffffffffffffff-0\""
        );
    }

    #[test]
    fn single_ranges() {
        let cases: &[(&[u8], u64, Answer)] = &[
            (b"bytes=0-99", 1000, Answer::Partial { start: 0, end: 99 }),
            (
                b"bytes=990-2000",
                1000,
                Answer::Partial {
                    start: 990,
                    end: 999,
                },
            ),
            (
                b"bytes=500-",
                1000,
                Answer::Partial {
                    start: 500,
                    end: 999,
                },
            ),
            (
                b"bytes=-10",
                1000,
                Answer::Partial {
                    start: 990,
                    end: 999,
                },
            ),
            (b"bytes=-5000", 1000, Answer::Partial { start: 0, end: 999 }),
            (b" Bytes = 1-1 ", 1000, Answer::Partial { start: 1, end: 1 }),
            (
                b"bytes=999-999",
                1000,
                Answer::Partial {
                    start: 999,
                    end: 999,
                },
            ),
            (b"bytes=1000-", 1000, Answer::Unsatisfiable),
            (b"bytes=1000-1001", 1000, Answer::Unsatisfiable),
            (b"bytes=-0", 1000, Answer::Unsatisfiable),
            (b"bytes=0-", 0, Answer::Unsatisfiable),
            (b"bytes=-1", 0, Answer::Unsatisfiable),
            (b"bytes=5-4", 1000, Answer::Full),
            (b"bytes=0-1,5-6", 1000, Answer::Full),
            (b"bytes=a-b", 1000, Answer::Full),
            (b"bytes=-", 1000, Answer::Full),
            (b"items=0-1", 1000, Answer::Full),
            (b"bytes 0-1", 1000, Answer::Full),
            (
                b"bytes=0-99999999999999999999999",
                10,
                Answer::Partial { start: 0, end: 9 },
            ),
            (b"bytes=99999999999999999999999-", 10, Answer::Full),
        ];
        for (header, size, expected) in cases {
            assert_eq!(
                range_answer(header, *size),
                *expected,
                "{} of {size}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        let validators = validators();
        let tag = validators.etag.as_bytes();
        let mut request = conditions();
        request.if_none_match = Some(tag);
        assert_eq!(
            answer(Method::Get, &request, &validators, 5),
            Answer::NotModified
        );
        let weak = [b"W/".as_slice(), tag].concat();
        let list = [b"\"x\", ".as_slice(), &weak].concat();
        request.if_none_match = Some(&list);
        assert_eq!(
            answer(Method::Head, &request, &validators, 5),
            Answer::NotModified
        );
        request.if_none_match = Some(b"*");
        assert_eq!(
            answer(Method::Get, &request, &validators, 5),
            Answer::NotModified
        );
        // A tag that does not match: the date is not looked at.
        request.if_none_match = Some(b"\"other\"");
        request.if_modified_since = Some(b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(answer(Method::Get, &request, &validators, 5), Answer::Full);
    }

    #[test]
    fn if_modified_since_compares_seconds() {
        let validators = validators();
        let mut request = conditions();
        request.if_modified_since = Some(b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            answer(Method::Get, &request, &validators, 5),
            Answer::NotModified
        );
        request.if_modified_since = Some(b"Sun, 06 Nov 1994 08:49:36 GMT");
        assert_eq!(answer(Method::Get, &request, &validators, 5), Answer::Full);
        request.if_modified_since = Some(b"not a date");
        assert_eq!(answer(Method::Get, &request, &validators, 5), Answer::Full);
        let unknown = Validators {
            last_modified: None,
            ..validators
        };
        request.if_modified_since = Some(b"Sun, 06 Nov 2094 08:49:37 GMT");
        assert_eq!(answer(Method::Get, &request, &unknown, 5), Answer::Full);
    }

    #[test]
    fn if_range_decides_whether_the_range_counts() {
        let validators = validators();
        let mut request = conditions();
        request.range = Some(b"bytes=1-2");
        assert_eq!(
            answer(Method::Get, &request, &validators, 5),
            Answer::Partial { start: 1, end: 2 }
        );
        assert_eq!(answer(Method::Head, &request, &validators, 5), Answer::Full);
        request.if_range = Some(validators.etag.as_bytes());
        assert_eq!(
            answer(Method::Get, &request, &validators, 5),
            Answer::Partial { start: 1, end: 2 }
        );
        request.if_range = Some(b"\"stale\"");
        assert_eq!(answer(Method::Get, &request, &validators, 5), Answer::Full);
        let weak = [b"W/".as_slice(), validators.etag.as_bytes()].concat();
        request.if_range = Some(&weak);
        assert_eq!(answer(Method::Get, &request, &validators, 5), Answer::Full);
        request.if_range = Some(b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            answer(Method::Get, &request, &validators, 5),
            Answer::Partial { start: 1, end: 2 }
        );
        request.if_range = Some(b"Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(answer(Method::Get, &request, &validators, 5), Answer::Full);
        request.if_range = None;
        request.range = Some(b"bytes=9-");
        assert_eq!(
            answer(Method::Get, &request, &validators, 5),
            Answer::Unsatisfiable
        );
    }
}
