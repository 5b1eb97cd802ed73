//! 8.3 short names: display, validity, the NT lower-case flags, and generation of unique
//! `BASIS~N.EXT` names from long names.

use alloc::string::String;

use crate::error::{Error, Result};

/// The NT reserved-byte flag: the base name is shown in lower case.
pub(crate) const LOWER_BASE: u8 = 0x08;
/// The NT reserved-byte flag: the extension is shown in lower case.
pub(crate) const LOWER_EXTENSION: u8 = 0x10;

/// Returns whether `byte` may appear in a short name (upper case, as stored).
fn is_short_char(byte: u8) -> bool {
    byte.is_ascii_uppercase()
        || byte.is_ascii_digit()
        || b"!#$%&'()-@^_`{}~".contains(&byte)
        || byte >= 0x80
}

/// Returns the name that the 11 stored bytes and the NT flags show, like `README.TXT`.
pub(crate) fn display(short: &[u8; 11], nt_flags: u8) -> String {
    let mut name = String::new();
    let base_end = short[..8]
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(0, |i| i + 1);
    let extension_end = short[8..]
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(0, |i| i + 1);
    let convert = |byte: u8, lower: bool| -> char {
        let c = char::from(byte);
        if lower {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    for (i, &byte) in short[..base_end].iter().enumerate() {
        let byte = if i == 0 && byte == 0x05 { 0xE5 } else { byte };
        name.push(convert(byte, nt_flags & LOWER_BASE != 0));
    }
    if extension_end > 0 {
        name.push('.');
        for &byte in &short[8..8 + extension_end] {
            name.push(convert(byte, nt_flags & LOWER_EXTENSION != 0));
        }
    }
    name
}

/// Returns the short name and NT flags that store `name` exactly, if it is an 8.3 name
/// whose base and extension are each all upper case or all lower case.
pub(crate) fn exact(name: &str) -> Option<([u8; 11], u8)> {
    let (base, extension) = match name.rfind('.') {
        Some(dot) => (&name[..dot], &name[dot + 1..]),
        None => (name, ""),
    };
    if base.is_empty() || base.len() > 8 || extension.len() > 3 || (name.ends_with('.')) {
        return None;
    }
    let mut short = [b' '; 11];
    let mut flags = 0;
    for (part, range, flag) in [
        (base, 0..8, LOWER_BASE),
        (extension, 8..11, LOWER_EXTENSION),
    ] {
        let has_lower = part.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = part.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper {
            return None;
        }
        if has_lower {
            flags |= flag;
        }
        for (slot, byte) in short[range].iter_mut().zip(part.bytes()) {
            let upper = byte.to_ascii_uppercase();
            if !is_short_char(upper) || upper >= 0x80 {
                return None;
            }
            *slot = upper;
        }
    }
    Some((short, flags))
}

/// Returns the basis name of `long` (upper case, invalid characters as `_`, spaces and
/// leading dots dropped), as Microsoft's specification describes, before any `~N` tail.
fn basis(long: &str) -> ([u8; 8], usize, [u8; 3]) {
    let trimmed = long.trim_start_matches('.');
    let (base, extension) = match trimmed.rfind('.') {
        Some(dot) => (&trimmed[..dot], &trimmed[dot + 1..]),
        None => (trimmed, ""),
    };
    let to_short = |c: char| -> Option<u8> {
        if c == ' ' || c == '.' {
            return None;
        }
        let upper = c.to_ascii_uppercase();
        Some(if upper.is_ascii() && is_short_char(upper as u8) {
            upper as u8
        } else {
            b'_'
        })
    };
    let mut base_bytes = [b' '; 8];
    let mut base_len = 0;
    for byte in base.chars().filter_map(to_short).take(8) {
        base_bytes[base_len] = byte;
        base_len += 1;
    }
    if base_len == 0 {
        base_bytes[0] = b'_';
        base_len = 1;
    }
    let mut extension_bytes = [b' '; 3];
    for (slot, byte) in extension_bytes
        .iter_mut()
        .zip(extension.chars().filter_map(to_short))
    {
        *slot = byte;
    }
    (base_bytes, base_len, extension_bytes)
}

/// Returns a short name for `long` that `taken` does not report as used, of the form
/// `BASIS~N.EXT` with the smallest free `N`.
pub(crate) fn generate(long: &str, mut taken: impl FnMut(&[u8; 11]) -> bool) -> Result<[u8; 11]> {
    let (base, base_len, extension) = basis(long);
    let mut digits = [0u8; 7];
    for n in 1u32..1_000_000 {
        let mut value = n;
        let mut count = 0;
        while value > 0 {
            digits[count] = b'0' + (value % 10) as u8;
            value /= 10;
            count += 1;
        }
        let keep = base_len.min(8 - 1 - count);
        let mut short = [b' '; 11];
        short[..keep].copy_from_slice(&base[..keep]);
        short[keep] = b'~';
        for i in 0..count {
            short[keep + 1 + i] = digits[count - 1 - i];
        }
        short[8..].copy_from_slice(&extension);
        if !taken(&short) {
            return Ok(short);
        }
    }
    Err(Error::DirectoryFull)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_names_with_nt_case_flags() {
        assert_eq!(display(b"README  TXT", 0), "README.TXT");
        assert_eq!(
            display(b"README  TXT", LOWER_BASE | LOWER_EXTENSION),
            "readme.txt"
        );
        assert_eq!(display(b"MAKEFILE   ", LOWER_BASE), "makefile");
        assert_eq!(display(b"\x05BC        ", 0), "\u{e5}BC");
    }

    #[test]
    fn stores_plain_8_3_names_exactly() {
        assert_eq!(exact("README.TXT"), Some((*b"README  TXT", 0)));
        assert_eq!(exact("readme.TXT"), Some((*b"README  TXT", LOWER_BASE)));
        assert_eq!(exact("ReadMe.txt"), None);
        assert_eq!(exact("toolongname.txt"), None);
        assert_eq!(exact("a.b.c"), None);
        assert_eq!(exact("a+b"), None);
        assert_eq!(exact(".hidden"), None);
    }

    #[test]
    fn generates_unique_numbered_tails() {
        let first = generate("Long File Name.text", |_| false).unwrap();
        assert_eq!(&first, b"LONGFI~1TEX");
        let taken = [*b"LONGFI~1TEX", *b"LONGFI~2TEX"];
        assert_eq!(
            &generate("Long File Name.text", |s| taken.contains(s)).unwrap(),
            b"LONGFI~3TEX"
        );
        assert_eq!(&generate(".bashrc", |_| false).unwrap(), b"BASHRC~1   ");
        assert_eq!(&generate("ñ+x.tar.gz", |_| false).unwrap(), b"__XTAR~1GZ ");
        let mut calls = 0;
        let tenth = generate("abcdefghij", |_| {
            calls += 1;
            calls < 10
        });
        assert_eq!(&tenth.unwrap(), b"ABCDE~10   ");
    }
}
