//! What QEMU needs of the kernel image before it boots: where its loaded segments end in
//! physical memory, so that a guest too small to hold the image is refused with a clear
//! error instead of a hang or a triple fault (the kernel cannot report what it cannot run).

use std::fs;

use super::config::QemuConfig;

/// Memory the kernel needs above its image before it can report anything: its start-up
/// page tables and the start-up area of one core fit in this.
const BOOT_MARGIN: u64 = 1 << 20;

/// Returns the first physical address above every loaded segment (`PT_LOAD`, with its
/// `.bss`) of the ELF64 image `bytes`, or `None` when it is not a little-endian ELF64.
fn loaded_end(bytes: &[u8]) -> Option<u64> {
    let field = |at: usize, offset: usize, width: usize| {
        let start = at.checked_add(offset)?;
        bytes.get(start..start.checked_add(width)?)
    };
    let u16_at =
        |at: usize, offset: usize| Some(u16::from_le_bytes(field(at, offset, 2)?.try_into().ok()?));
    let u32_at =
        |at: usize, offset: usize| Some(u32::from_le_bytes(field(at, offset, 4)?.try_into().ok()?));
    let u64_at =
        |at: usize, offset: usize| Some(u64::from_le_bytes(field(at, offset, 8)?.try_into().ok()?));
    // Magic, 64-bit class, little-endian.
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let table = usize::try_from(u64_at(0, 0x20)?).ok()?;
    let entry_size = usize::from(u16_at(0, 0x36)?);
    let entries = usize::from(u16_at(0, 0x38)?);
    let mut end = None;
    for index in 0..entries {
        let header = table.checked_add(index.checked_mul(entry_size)?)?;
        const PT_LOAD: u32 = 1;
        if u32_at(header, 0)? != PT_LOAD {
            continue;
        }
        let segment_end = u64_at(header, 0x18)?.checked_add(u64_at(header, 0x28)?)?;
        end = Some(end.map_or(segment_end, |end: u64| end.max(segment_end)));
    }
    end
}

/// Returns the smallest `--mem`, in MiB, in which an image ending at `end` can start and
/// report: the image, then [`BOOT_MARGIN`], rounded up to whole MiB.
fn smallest_memory_mib(end: u64) -> u64 {
    end.saturating_add(BOOT_MARGIN).div_ceil(1 << 20)
}

impl QemuConfig {
    /// Returns `Ok` when the guest's memory holds the kernel image with room to start, else
    /// a clear error naming the smallest size that does. An image that cannot be read or
    /// is not ELF64 is left to QEMU, which says so itself.
    pub fn check_memory(&self) -> Result<(), String> {
        let Some(end) = fs::read(&self.kernel)
            .ok()
            .and_then(|bytes| loaded_end(&bytes))
        else {
            return Ok(());
        };
        let smallest = smallest_memory_mib(end);
        if self.mem.mebibytes() < smallest {
            return Err(format!(
                "--mem {} is too small for this kernel: its image ends at {:.1} MiB of \
                 physical memory; give at least {smallest}M (the kernel then says what its \
                 cores need)",
                self.mem,
                end as f64 / f64::from(1 << 20)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header with `segments` program headers of (type, physical address, size).
    fn image(segments: &[(u32, u64, u64)]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for &(kind, address, size) in segments {
            let mut header = vec![0u8; 56];
            header[..4].copy_from_slice(&kind.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&address.to_le_bytes());
            header[0x28..0x30].copy_from_slice(&size.to_le_bytes());
            bytes.extend(header);
        }
        bytes
    }

    #[test]
    fn the_image_ends_after_its_highest_loaded_segment() {
        let bytes = image(&[
            (1, 0x10_0000, 0xc_dbca),
            (4, 0x90_0000, 0x1000), // a note, not loaded
            (1, 0x20_1000, 0xb_c540),
            (1, 0x1c_e000, 0x3_2658),
        ]);
        assert_eq!(loaded_end(&bytes), Some(0x2b_d540));
        // 2.74 MiB of image and 1 MiB to start in: 4 MiB.
        assert_eq!(smallest_memory_mib(0x2b_d540), 4);
        assert_eq!(smallest_memory_mib(2 << 20), 3);
    }

    #[test]
    fn what_is_not_an_elf64_image_has_no_end() {
        assert_eq!(loaded_end(b""), None);
        assert_eq!(loaded_end(b"\x7fELF\x01\x01"), None);
        let mut truncated = image(&[(1, 0x10_0000, 0x1000)]);
        truncated.truncate(80);
        assert_eq!(loaded_end(&truncated), None);
        assert_eq!(loaded_end(&image(&[])), None);
        let mut huge = image(&[(1, u64::MAX, 2)]);
        assert_eq!(loaded_end(&huge), None);
        huge[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(loaded_end(&huge), None);
    }
}
