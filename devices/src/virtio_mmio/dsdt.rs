//! Finds virtio-mmio devices (`_HID` "LNRO0005") in ACPI AML (the DSDT and SSDTs)
//! without an interpreter, and decodes their `_CRS` window and interrupt.
//!
//! Why a scan: AML has no index, and finding a `Device` in general means parsing every
//! opcode, which only an interpreter can (a method call's argument count is known only
//! from the namespace). rust-osdev's `aml` crate does that, but 0.16 needs nightly
//! (`#![feature(decl_macro)]`) and a heap, and the boot core reads ACPI before any heap
//! exists. What we look for is simple and static on every machine that has it (QEMU's
//! microvm, Firecracker): a `Device` whose body names `_HID` as the string "LNRO0005"
//! (it cannot be an EISA id: those have 3 letters) and `_CRS` as a resource-template
//! buffer. So:
//!
//! 1. Every `DeviceOp` (0x5B 0x82) byte pair is a candidate. It counts only if its
//!    package length lies inside the table and a valid name follows.
//! 2. The candidate's body is walked term by term at its top level: `Name` ops are
//!    decoded (their data objects sized exactly), terms with a package length (methods,
//!    nested devices, scopes, fields) are stepped over, and the walk stops at the first
//!    term it cannot size. QEMU's and Firecracker's virtio devices contain only `Name`s.
//! 3. A candidate is a virtio-mmio device only if that walk found `_HID` "LNRO0005";
//!    then its `_CRS` must be a buffer of well-formed resource descriptors with exactly
//!    one memory window and an end tag, or the device is reported as an error.
//!
//! A false candidate (0x5B 0x82 inside other data) would need all of that in its bytes,
//! and the boot code still checks the virtio magic value and version at the window before
//! writing any register. Every read is bounds-checked (nothing here can panic on any
//! input), and the work is bounded: at most [`STEP_BUDGET`] terms per table.

use core::fmt;

use super::{DeviceWindow, Source};

/// The `_HID` of a virtio-mmio device.
pub const HARDWARE_ID: &[u8] = b"LNRO0005";
/// The most body terms the scan of one table looks at before it gives up.
pub const STEP_BUDGET: u32 = 1_000_000;

const DEVICE_OP: [u8; 2] = [0x5B, 0x82];
const NAME_OP: u8 = 0x08;
const STRING_PREFIX: u8 = 0x0D;
const BUFFER_OP: u8 = 0x11;

/// Why a virtio-mmio device in the AML could not be used, or the scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmlError {
    /// The device has no `_CRS`, or it is not a plain buffer (a method, say).
    NoResources,
    /// A resource descriptor runs past the end of the buffer.
    TruncatedResource,
    /// The resources have no end tag.
    NoEndTag,
    /// The resources name no memory window.
    NoWindow,
    /// The resources name more than one memory window.
    SeveralWindows,
    /// The memory window has length 0 or overflows.
    BadWindow,
    /// The scan used up its step budget (a table built to make it slow).
    TooComplex,
}

impl fmt::Display for AmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AmlError::NoResources => "no _CRS resource template",
            AmlError::TruncatedResource => "_CRS resource descriptor truncated",
            AmlError::NoEndTag => "_CRS has no end tag",
            AmlError::NoWindow => "_CRS names no memory window",
            AmlError::SeveralWindows => "_CRS names more than one memory window",
            AmlError::BadWindow => "_CRS memory window is empty or overflows",
            AmlError::TooComplex => "AML scan gave up (step budget used)",
        })
    }
}

/// A virtio-mmio device found in the AML: its ACPI name and its window, or why the
/// window could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The device's name segment (`VR23` on QEMU); empty for the budget error.
    pub name: [u8; 4],
    pub window: Result<DeviceWindow, AmlError>,
}

impl Found {
    /// Returns the name as text.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name)
            .unwrap_or("????")
            .trim_end_matches(['_', '\0'])
    }
}

/// Returns the virtio-mmio devices of the AML block `aml` (a DSDT or SSDT without its
/// 36-byte header), in table order.
pub fn devices(aml: &[u8]) -> Devices<'_> {
    Devices {
        aml,
        position: 0,
        steps: 0,
    }
}

/// The iterator of [`devices`].
#[derive(Debug)]
pub struct Devices<'a> {
    aml: &'a [u8],
    position: usize,
    steps: u32,
}

impl Iterator for Devices<'_> {
    type Item = Found;

    fn next(&mut self) -> Option<Found> {
        while self.position + DEVICE_OP.len() <= self.aml.len() {
            let at = self.position;
            self.position += 1;
            if self.aml[at..at + 2] != DEVICE_OP {
                continue;
            }
            let Some(device) = Device::at(self.aml, at + 2) else {
                continue;
            };
            let body = Body {
                aml: &self.aml[..device.end],
                position: device.body,
            };
            let mut hid = None;
            let mut crs = None;
            for term in body {
                self.steps += 1;
                if self.steps > STEP_BUDGET {
                    self.position = self.aml.len();
                    return Some(Found {
                        name: [0; 4],
                        window: Err(AmlError::TooComplex),
                    });
                }
                if let Term::Name { name, object } = term {
                    match &name {
                        b"_HID" => hid = Some(object),
                        b"_CRS" => crs = Some(object),
                        _ => {}
                    }
                }
            }
            if hid.and_then(string_value) != Some(HARDWARE_ID) {
                continue;
            }
            let window = crs
                .and_then(buffer_value)
                .ok_or(AmlError::NoResources)
                .and_then(decode_resources);
            return Some(Found {
                name: device.name,
                window,
            });
        }
        None
    }
}

/// Returns the package length at `at` and the bytes it took (ACPI 6.5, 20.2.4).
fn package_length(aml: &[u8], at: usize) -> Option<(usize, usize)> {
    let lead = *aml.get(at)?;
    let follow = usize::from(lead >> 6);
    if follow == 0 {
        return Some((usize::from(lead & 0x3F), 1));
    }
    let mut length = usize::from(lead & 0x0F);
    for index in 0..follow {
        length |= usize::from(*aml.get(at + 1 + index)?) << (4 + 8 * index);
    }
    Some((length, 1 + follow))
}

/// Returns the end of the package whose length starts at `at`, if it lies inside `aml`.
fn package_end(aml: &[u8], at: usize) -> Option<usize> {
    let (length, taken) = package_length(aml, at)?;
    let end = at.checked_add(length)?;
    (length >= taken && end <= aml.len()).then_some(end)
}

fn is_lead_name_char(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte == b'_'
}

fn is_name_char(byte: u8) -> bool {
    is_lead_name_char(byte) || byte.is_ascii_digit()
}

/// Returns the last name segment of the name string at `at` and where it ends.
fn name_string(aml: &[u8], mut at: usize) -> Option<([u8; 4], usize)> {
    match aml.get(at)? {
        b'\\' => at += 1,
        b'^' => {
            while aml.get(at) == Some(&b'^') {
                at += 1;
            }
        }
        _ => {}
    }
    let segments = match *aml.get(at)? {
        0x00 => return Some(([0; 4], at + 1)),
        0x2E => {
            at += 1;
            2
        }
        0x2F => {
            at += 2;
            usize::from(*aml.get(at - 1)?)
        }
        _ => 1,
    };
    let mut last = [0u8; 4];
    for _ in 0..segments {
        let segment = aml.get(at..at + 4)?;
        if !is_lead_name_char(segment[0]) || !segment[1..].iter().all(|&b| is_name_char(b)) {
            return None;
        }
        last.copy_from_slice(segment);
        at += 4;
    }
    (segments > 0).then_some((last, at))
}

/// A `Device` term: its name and where its body starts and ends.
struct Device {
    name: [u8; 4],
    body: usize,
    end: usize,
}

impl Device {
    /// Returns the device whose package length starts at `at` (just after DeviceOp).
    fn at(aml: &[u8], at: usize) -> Option<Device> {
        let end = package_end(aml, at)?;
        let (_, taken) = package_length(aml, at)?;
        let (name, body) = name_string(&aml[..end], at + taken)?;
        Some(Device { name, body, end })
    }
}

/// A term at the top level of a device body.
enum Term<'a> {
    /// `Name(NAME, object)`, with the object's bytes.
    Name { name: [u8; 4], object: &'a [u8] },
    /// A term stepped over.
    Other,
}

/// The top-level terms of a device body, until the first one that cannot be sized.
struct Body<'a> {
    /// The table up to the end of the body.
    aml: &'a [u8],
    position: usize,
}

impl<'a> Iterator for Body<'a> {
    type Item = Term<'a>;

    fn next(&mut self) -> Option<Term<'a>> {
        let aml = self.aml;
        let at = self.position;
        let (term, end) = match *aml.get(at)? {
            NAME_OP => {
                let (name, object_start) = name_string(aml, at + 1)?;
                let object_end = data_object_end(aml, object_start)?;
                (
                    Term::Name {
                        name,
                        object: &aml[object_start..object_end],
                    },
                    object_end,
                )
            }
            // Scope, Method, If, Else, While: a package length covers them.
            0x10 | 0x14 | 0xA0 | 0xA1 | 0xA2 => (Term::Other, package_end(aml, at + 1)?),
            0x5B => match *aml.get(at + 1)? {
                // Field, Device, Processor, PowerResource, ThermalZone, IndexField,
                // BankField.
                0x81..=0x87 => (Term::Other, package_end(aml, at + 2)?),
                // Mutex: a name and a sync-flags byte.
                0x01 => (Term::Other, name_string(aml, at + 2)?.1 + 1),
                // Event: a name.
                0x02 => (Term::Other, name_string(aml, at + 2)?.1),
                // OperationRegion: name, space byte, offset and length as constants.
                0x80 => {
                    let after_space = name_string(aml, at + 2)?.1 + 1;
                    let after_offset = integer_end(aml, after_space)?;
                    (Term::Other, integer_end(aml, after_offset)?)
                }
                _ => return None,
            },
            _ => return None,
        };
        if end > aml.len() || end <= at {
            return None;
        }
        self.position = end;
        Some(term)
    }
}

/// Returns the end of the integer constant at `at` (Zero, One, Ones, Byte/Word/DWord/
/// QWord constants).
fn integer_end(aml: &[u8], at: usize) -> Option<usize> {
    let size = match *aml.get(at)? {
        0x00 | 0x01 | 0xFF => 0,
        0x0A => 1,
        0x0B => 2,
        0x0C => 4,
        0x0E => 8,
        _ => return None,
    };
    let end = at + 1 + size;
    (end <= aml.len()).then_some(end)
}

/// Returns the end of the data object at `at`: an integer, string, buffer or package.
fn data_object_end(aml: &[u8], at: usize) -> Option<usize> {
    match *aml.get(at)? {
        STRING_PREFIX => {
            let length = aml.get(at + 1..)?.iter().position(|&byte| byte == 0)?;
            Some(at + 1 + length + 1)
        }
        // Buffer, Package, VarPackage.
        BUFFER_OP | 0x12 | 0x13 => package_end(aml, at + 1),
        _ => integer_end(aml, at),
    }
}

/// Returns the characters of a string object.
fn string_value(object: &[u8]) -> Option<&[u8]> {
    match object {
        [STRING_PREFIX, text @ .., 0] => Some(text),
        _ => None,
    }
}

/// Returns the bytes of a buffer object: after its size term, as many as the size says
/// and the package holds.
fn buffer_value(object: &[u8]) -> Option<&[u8]> {
    if object.first() != Some(&BUFFER_OP) {
        return None;
    }
    let (_, taken) = package_length(object, 1)?;
    let size_at = 1 + taken;
    let bytes_at = integer_end(object, size_at)?;
    let declared = match object[size_at] {
        0x00 => 0,
        0x01 => 1,
        0x0A => u64::from(object[size_at + 1]),
        0x0B => u64::from(u16::from_le_bytes([
            object[size_at + 1],
            object[size_at + 2],
        ])),
        0x0C => u64::from(read_u32(object, size_at + 1)?),
        _ => return None,
    };
    let available = object.len() - bytes_at;
    let length = usize::try_from(declared).map_or(available, |d| d.min(available));
    Some(&object[bytes_at..bytes_at + length])
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

// Resource descriptors (ACPI 6.5, 6.4).
const SMALL_IRQ: u8 = 0x04;
const SMALL_END: u8 = 0x0F;
const LARGE_MEMORY32: u8 = 0x05;
const LARGE_MEMORY32_FIXED: u8 = 0x06;
const LARGE_DWORD_ADDRESS: u8 = 0x07;
const LARGE_EXTENDED_INTERRUPT: u8 = 0x09;
const LARGE_QWORD_ADDRESS: u8 = 0x0A;
/// Resource type "memory range" of an address space descriptor.
const ADDRESS_SPACE_MEMORY: u8 = 0;

/// Returns the memory window and first interrupt of a resource template.
pub fn decode_resources(bytes: &[u8]) -> Result<DeviceWindow, AmlError> {
    let mut window: Option<(u64, u64)> = None;
    let mut interrupt = None;
    let mut at = 0;
    while at < bytes.len() {
        let tag = bytes[at];
        let (kind, body_at, length, large) = if tag & 0x80 == 0 {
            ((tag >> 3) & 0x0F, at + 1, usize::from(tag & 0x07), false)
        } else {
            let length = bytes
                .get(at + 1..at + 3)
                .ok_or(AmlError::TruncatedResource)?;
            (
                tag & 0x7F,
                at + 3,
                usize::from(u16::from_le_bytes([length[0], length[1]])),
                true,
            )
        };
        let body = bytes
            .get(body_at..body_at + length)
            .ok_or(AmlError::TruncatedResource)?;
        let mut found_window = None;
        match (large, kind) {
            (false, SMALL_END) => {
                let (base, size) = window.ok_or(AmlError::NoWindow)?;
                return Ok(DeviceWindow {
                    base,
                    size,
                    interrupt,
                    source: Source::Acpi,
                });
            }
            (false, SMALL_IRQ) if length >= 2 => {
                let mask = u16::from_le_bytes([body[0], body[1]]);
                if mask != 0 && interrupt.is_none() {
                    interrupt = Some(mask.trailing_zeros());
                }
            }
            (true, LARGE_MEMORY32_FIXED) if length >= 9 => {
                let base = read_u32(body, 1).ok_or(AmlError::TruncatedResource)?;
                let size = read_u32(body, 5).ok_or(AmlError::TruncatedResource)?;
                found_window = Some((u64::from(base), u64::from(size)));
            }
            (true, LARGE_MEMORY32) if length >= 17 => {
                let minimum = read_u32(body, 1).ok_or(AmlError::TruncatedResource)?;
                let size = read_u32(body, 13).ok_or(AmlError::TruncatedResource)?;
                found_window = Some((u64::from(minimum), u64::from(size)));
            }
            (true, LARGE_DWORD_ADDRESS) if length >= 23 && body[0] == ADDRESS_SPACE_MEMORY => {
                let minimum = read_u32(body, 7).ok_or(AmlError::TruncatedResource)?;
                let size = read_u32(body, 19).ok_or(AmlError::TruncatedResource)?;
                found_window = Some((u64::from(minimum), u64::from(size)));
            }
            (true, LARGE_QWORD_ADDRESS) if length >= 43 && body[0] == ADDRESS_SPACE_MEMORY => {
                let minimum = read_u64(body, 11).ok_or(AmlError::TruncatedResource)?;
                let size = read_u64(body, 35).ok_or(AmlError::TruncatedResource)?;
                found_window = Some((minimum, size));
            }
            (true, LARGE_EXTENDED_INTERRUPT) if length >= 2 => {
                let count = usize::from(body[1]);
                if length < 2 + 4 * count {
                    return Err(AmlError::TruncatedResource);
                }
                if count > 0 && interrupt.is_none() {
                    interrupt = read_u32(body, 2);
                }
            }
            _ => {}
        }
        if let Some((base, size)) = found_window {
            if window.is_some() {
                return Err(AmlError::SeveralWindows);
            }
            if size == 0 || base.checked_add(size).is_none() {
                return Err(AmlError::BadWindow);
            }
            window = Some((base, size));
        }
        at = body_at + length;
    }
    Err(AmlError::NoEndTag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_lengths_of_every_width() {
        assert_eq!(package_length(&[0x3F], 0), Some((0x3F, 1)));
        assert_eq!(package_length(&[0x4A, 0x01], 0), Some((0x1A, 2)));
        assert_eq!(package_length(&[0x81, 0x23, 0x01], 0), Some((0x1231, 3)));
        assert_eq!(
            package_length(&[0xC1, 0x00, 0x00, 0x01], 0),
            Some((0x10_0001, 4))
        );
        assert_eq!(package_length(&[0x81, 0x23], 0), None);
        assert_eq!(package_length(&[], 0), None);
    }

    #[test]
    fn name_strings() {
        assert_eq!(name_string(b"VR23", 0), Some((*b"VR23", 4)));
        assert_eq!(name_string(b"\\_SB_", 0), Some((*b"_SB_", 5)));
        assert_eq!(name_string(b"^^PCI0", 0), Some((*b"PCI0", 6)));
        assert_eq!(name_string(b"\x2E_SB_VR23", 0), Some((*b"VR23", 9)));
        assert_eq!(
            name_string(b"\x2F\x03_SB_PCI0VR23", 0),
            Some((*b"VR23", 14))
        );
        assert_eq!(name_string(b"\x2F\x00", 0), None);
        assert_eq!(name_string(b"vr23", 0), None);
        assert_eq!(name_string(b"1R23", 0), None);
        assert_eq!(name_string(b"VR2", 0), None);
    }

    #[test]
    fn buffer_sizes_bound_the_bytes() {
        // Buffer(5) { 1, 2, 3 }: zero-filled past what the package holds; we take what is there.
        assert_eq!(
            buffer_value(&[0x11, 0x06, 0x0A, 0x05, 1, 2, 3]),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(
            buffer_value(&[0x11, 0x06, 0x0A, 0x02, 1, 2, 3]),
            Some(&[1u8, 2][..])
        );
        assert_eq!(buffer_value(&[0x11, 0x02, 0x00]), Some(&[][..]));
        assert_eq!(buffer_value(&[0x12, 0x02, 0x00]), None);
        assert_eq!(buffer_value(&[0x11, 0x03, 0x0B, 0x01]), None);
    }

    fn memory32_fixed(base: u32, size: u32) -> Vec<u8> {
        let mut bytes = vec![0x86, 9, 0, 1];
        bytes.extend(base.to_le_bytes());
        bytes.extend(size.to_le_bytes());
        bytes
    }

    #[test]
    fn resources_as_qemu_writes_them() {
        let mut bytes = memory32_fixed(0xfeb0_2e00, 0x200);
        bytes.extend([0x89, 6, 0, 1, 1, 0x2F, 0, 0, 0, 0x79, 0]);
        assert_eq!(
            decode_resources(&bytes),
            Ok(DeviceWindow {
                base: 0xfeb0_2e00,
                size: 0x200,
                interrupt: Some(0x2F),
                source: Source::Acpi,
            })
        );
    }

    #[test]
    fn other_resource_forms() {
        // Legacy IRQ descriptor (IRQ 5) and a QWord memory window above 4 GiB.
        let mut bytes = vec![0x22, 0x20, 0x00];
        bytes.extend([0x8A, 43, 0, ADDRESS_SPACE_MEMORY, 0, 0]);
        let mut qword = [0u8; 40];
        qword[8..16].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        qword[32..40].copy_from_slice(&0x1000u64.to_le_bytes());
        bytes.extend(qword);
        bytes.extend([0x79, 0]);
        let window = decode_resources(&bytes).expect("decodes");
        assert_eq!(
            (window.base, window.size, window.interrupt),
            (0x1_0000_0000, 0x1000, Some(5))
        );
        // A device without an interrupt is fine (the drivers poll).
        let mut bytes = memory32_fixed(0x1000, 0x200);
        bytes.extend([0x79, 0]);
        assert_eq!(decode_resources(&bytes).map(|w| w.interrupt), Ok(None));
    }

    #[test]
    fn bad_resources_are_errors() {
        let end = [0x79u8, 0];
        assert_eq!(decode_resources(&end), Err(AmlError::NoWindow));
        assert_eq!(decode_resources(&[]), Err(AmlError::NoEndTag));
        let window = memory32_fixed(0x1000, 0x200);
        assert_eq!(decode_resources(&window), Err(AmlError::NoEndTag));
        assert_eq!(
            decode_resources(&window[..window.len() - 1]),
            Err(AmlError::TruncatedResource)
        );
        assert_eq!(
            decode_resources(&[0x86, 9]),
            Err(AmlError::TruncatedResource)
        );
        let twice = [window.clone(), window.clone(), end.to_vec()].concat();
        assert_eq!(decode_resources(&twice), Err(AmlError::SeveralWindows));
        let empty = [memory32_fixed(0x1000, 0), end.to_vec()].concat();
        assert_eq!(decode_resources(&empty), Err(AmlError::BadWindow));
        // An extended interrupt descriptor claiming more interrupts than it holds.
        let lying = [window, vec![0x89, 6, 0, 1, 2, 5, 0, 0, 0], end.to_vec()].concat();
        assert_eq!(decode_resources(&lying), Err(AmlError::TruncatedResource));
    }
}
