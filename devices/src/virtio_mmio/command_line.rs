//! `virtio_mmio.device=SIZE@BASE:IRQ[:ID]` words on the kernel command line, as Linux
//! reads them (drivers/virtio/virtio_mmio.c) and as QEMU's microvm without ACPI and
//! Firecracker write them: SIZE with an optional K, M or G suffix, BASE and SIZE in
//! decimal, `0x` hexadecimal or `0` octal, IRQ in decimal, ID (Linux's platform device
//! id) accepted and ignored.

use core::fmt;

use super::{DeviceWindow, Source};

/// The key of the words this module reads.
pub const KEY: &str = "virtio_mmio.device";

/// Why a `virtio_mmio.device=` word was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordError {
    /// SIZE is missing, not a number, or has an unknown suffix.
    BadSize,
    /// SIZE is 0.
    ZeroSize,
    /// `@BASE` is missing or not a number.
    BadBase,
    /// `:IRQ` is missing or not a decimal number.
    BadInterrupt,
    /// `:ID` is not a decimal number, or something follows it.
    TrailingText,
    /// BASE + SIZE is beyond the 64-bit address space.
    Overflow,
}

impl fmt::Display for WordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WordError::BadSize => "SIZE is not a number with an optional K, M or G suffix",
            WordError::ZeroSize => "SIZE is 0",
            WordError::BadBase => "@BASE is missing or not a number",
            WordError::BadInterrupt => ":IRQ is missing or not a decimal number",
            WordError::TrailingText => "unexpected text after :IRQ (only :ID may follow)",
            WordError::Overflow => "BASE + SIZE overflows",
        })?;
        f.write_str(" (expected virtio_mmio.device=SIZE@BASE:IRQ, e.g. 512@0xfeb00e00:12)")
    }
}

/// One `virtio_mmio.device=` word, parsed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word<'a> {
    /// The value after `=`, for error messages.
    pub text: &'a str,
    pub parsed: Result<DeviceWindow, WordError>,
}

/// Returns every `virtio_mmio.device=` word of `command_line`, in order.
pub fn devices(command_line: &str) -> impl Iterator<Item = Word<'_>> {
    command_line
        .split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix(KEY)?.strip_prefix('='))
        .map(|text| Word {
            text,
            parsed: parse(text),
        })
}

/// Parses the value of one word: `SIZE@BASE:IRQ[:ID]`.
pub fn parse(text: &str) -> Result<DeviceWindow, WordError> {
    let (size_text, rest) = text.split_once('@').ok_or(WordError::BadBase)?;
    let size = parse_size(size_text)?;
    if size == 0 {
        return Err(WordError::ZeroSize);
    }
    let (base_text, rest) = rest.split_once(':').ok_or(WordError::BadInterrupt)?;
    let base = parse_number(base_text).ok_or(WordError::BadBase)?;
    let (interrupt_text, id_text) = match rest.split_once(':') {
        Some((interrupt, id)) => (interrupt, Some(id)),
        None => (rest, None),
    };
    let interrupt = parse_decimal(interrupt_text)
        .and_then(|value| u32::try_from(value).ok())
        .ok_or(WordError::BadInterrupt)?;
    if let Some(id) = id_text {
        // Linux reads the id with %d: an optional minus sign, then digits.
        let digits = id.strip_prefix('-').unwrap_or(id);
        if parse_decimal(digits).is_none() {
            return Err(WordError::TrailingText);
        }
    }
    base.checked_add(size).ok_or(WordError::Overflow)?;
    Ok(DeviceWindow {
        base,
        size,
        interrupt: Some(interrupt),
        source: Source::CommandLine,
    })
}

/// Parses a size as Linux's `memparse`: a number, then an optional K, M or G (any case).
fn parse_size(text: &str) -> Result<u64, WordError> {
    let (number, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value = parse_number(number).ok_or(WordError::BadSize)?;
    value.checked_mul(1 << shift).ok_or(WordError::Overflow)
}

/// Parses a number as C's `%lli`/`strtoull(.., 0)`: `0x` hexadecimal, `0` octal, else
/// decimal. The whole text must be the number.
fn parse_number(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return parse_radix(hex, 16);
    }
    if text.len() > 1 && text.starts_with('0') {
        return parse_radix(&text[1..], 8);
    }
    parse_radix(text, 10)
}

fn parse_decimal(text: &str) -> Option<u64> {
    parse_radix(text, 10)
}

/// Parses digits only (no sign, no spaces; `from_str_radix` would accept a `+`).
fn parse_radix(text: &str, radix: u32) -> Option<u64> {
    if text.is_empty() || !text.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(text, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(base: u64, size: u64, interrupt: u32) -> DeviceWindow {
        DeviceWindow {
            base,
            size,
            interrupt: Some(interrupt),
            source: Source::CommandLine,
        }
    }

    #[test]
    fn reads_the_words_qemu_microvm_appends() {
        // What QEMU 7.2's microvm with acpi=off put on our command line (net, then blk).
        let line = "app=hello virtio_mmio.device=512@0xfeb00e00:12 \
                    virtio_mmio.device=512@0xfeb00c00:11";
        let found: Vec<_> = devices(line).map(|word| word.parsed).collect();
        assert_eq!(
            found,
            [
                Ok(window(0xfeb0_0e00, 512, 12)),
                Ok(window(0xfeb0_0c00, 512, 11))
            ]
        );
    }

    #[test]
    fn reads_firecracker_words_with_suffixes_and_ids() {
        assert_eq!(parse("4K@0xd0000000:5"), Ok(window(0xd000_0000, 4096, 5)));
        assert_eq!(parse("4k@0xd0001000:6:2"), Ok(window(0xd000_1000, 4096, 6)));
        assert_eq!(parse("1M@4096:7:-1"), Ok(window(4096, 1 << 20, 7)));
        assert_eq!(parse("1g@0X10:0"), Ok(window(16, 1 << 30, 0)));
        assert_eq!(parse("0x200@010:3"), Ok(window(8, 512, 3)));
    }

    #[test]
    fn refuses_malformed_words_with_the_reason() {
        assert_eq!(parse(""), Err(WordError::BadBase));
        assert_eq!(parse("512"), Err(WordError::BadBase));
        assert_eq!(parse("@0x1000:5"), Err(WordError::BadSize));
        assert_eq!(parse("512X@0x1000:5"), Err(WordError::BadSize));
        assert_eq!(parse("+512@0x1000:5"), Err(WordError::BadSize));
        assert_eq!(parse("0@0x1000:5"), Err(WordError::ZeroSize));
        assert_eq!(parse("512@0x1000"), Err(WordError::BadInterrupt));
        assert_eq!(parse("512@0xzz:5"), Err(WordError::BadBase));
        assert_eq!(parse("512@09:5"), Err(WordError::BadBase));
        assert_eq!(parse("512@0x1000:"), Err(WordError::BadInterrupt));
        assert_eq!(parse("512@0x1000:0x5"), Err(WordError::BadInterrupt));
        assert_eq!(
            parse("512@0x1000:99999999999"),
            Err(WordError::BadInterrupt)
        );
        assert_eq!(parse("512@0x1000:5:x"), Err(WordError::TrailingText));
        assert_eq!(parse("512@0x1000:5:1:2"), Err(WordError::TrailingText));
        assert_eq!(parse("512@0xffffffffffffff00:5"), Err(WordError::Overflow));
        assert_eq!(parse("99999999999G@0:5"), Err(WordError::Overflow));
        let message = WordError::BadBase.to_string();
        assert!(message.contains("SIZE@BASE:IRQ"), "{message}");
    }

    #[test]
    fn ignores_other_words_and_keeps_bad_ones_for_the_report() {
        let line = "virtio_mmio.devices=1@1:1 xvirtio_mmio.device=1@1:1 \
                    virtio_mmio.device virtio_mmio.device=bad app=echo";
        let words: Vec<_> = devices(line).collect();
        assert_eq!(words.len(), 1);
        assert_eq!(words[0].text, "bad");
        assert_eq!(words[0].parsed, Err(WordError::BadBase));
        assert_eq!(devices("").count(), 0);
    }
}
