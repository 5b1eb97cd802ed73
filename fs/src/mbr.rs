//! Finding the FAT volume on a disk: an MBR partition table or an unpartitioned volume.

use crate::bytes::{u16_at, u32_at};
use crate::device::SECTOR_SIZE;
use crate::error::{Error, Result};

/// Where the volume lies on the device, in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// The first sector of the volume (its boot sector).
    pub start: u64,
    /// The number of sectors the volume may use.
    pub sectors: u64,
}

/// MBR partition types of FAT16 volumes (small, large, LBA).
const FAT16_TYPES: [u8; 3] = [0x04, 0x06, 0x0E];
const FAT12_TYPE: u8 = 0x01;
const FAT32_TYPES: [u8; 2] = [0x0B, 0x0C];

/// Returns whether sector 0 looks like a FAT boot sector rather than a partition table:
/// a jump instruction and plausible BPB fields.
fn looks_like_boot_sector(sector: &[u8; SECTOR_SIZE]) -> bool {
    let jump = sector[0] == 0xE9 || (sector[0] == 0xEB && sector[2] == 0x90);
    let bytes_per_sector = u16_at(sector, 11);
    let sectors_per_cluster = sector[13];
    jump && bytes_per_sector.is_power_of_two()
        && (512..=4096).contains(&bytes_per_sector)
        && sectors_per_cluster.is_power_of_two()
        && sector[16] != 0
}

/// Returns whether sector 0 starts with an x86 jump, as every FAT boot sector does.
fn has_jump(sector: &[u8; SECTOR_SIZE]) -> bool {
    sector[0] == 0xE9 || sector[0] == 0xEB
}

/// Returns whether the partition table area holds no partition at all.
fn table_is_empty(sector: &[u8; SECTOR_SIZE]) -> bool {
    (0..4).all(|i| sector[446 + 16 * i + 4] == 0)
}

/// Returns where the FAT volume lies, given sector 0 and the device's size: the whole
/// device when sector 0 is a boot sector, else the first FAT16 partition of the MBR.
///
/// A sector 0 with a jump instruction and an empty partition table is taken for a boot
/// sector even when its BPB is implausible, so that mounting reports the bad BPB field
/// rather than a missing partition.
pub fn locate(sector0: &[u8; SECTOR_SIZE], device_sectors: u64) -> Result<Partition> {
    let whole = Partition {
        start: 0,
        sectors: device_sectors,
    };
    if looks_like_boot_sector(sector0) || (has_jump(sector0) && table_is_empty(sector0)) {
        return Ok(whole);
    }
    if sector0[510] != 0x55 || sector0[511] != 0xAA {
        return Err(Error::Corrupt(
            "sector 0 is neither a boot sector nor a partition table",
        ));
    }
    let mut other = None;
    for i in 0..4 {
        let entry = 446 + 16 * i;
        let kind = sector0[entry + 4];
        if FAT16_TYPES.contains(&kind) {
            let start = u64::from(u32_at(sector0, entry + 8));
            let sectors = u64::from(u32_at(sector0, entry + 12));
            if start == 0 || sectors == 0 || start + sectors > device_sectors {
                return Err(Error::Corrupt("FAT16 partition lies outside the device"));
            }
            return Ok(Partition { start, sectors });
        }
        if kind == FAT12_TYPE {
            other = other.or(Some(Error::Unsupported("FAT12 partition")));
        } else if FAT32_TYPES.contains(&kind) {
            other = other.or(Some(Error::Unsupported("FAT32 partition")));
        }
    }
    Err(other.unwrap_or(Error::Unsupported(
        "no FAT16 partition in the partition table",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(kind: u8, start: u32, sectors: u32) -> [u8; SECTOR_SIZE] {
        let mut s = [0u8; SECTOR_SIZE];
        s[446 + 16 + 4] = kind;
        s[446 + 16 + 8..446 + 16 + 12].copy_from_slice(&start.to_le_bytes());
        s[446 + 16 + 12..446 + 16 + 16].copy_from_slice(&sectors.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn finds_the_first_fat16_partition() {
        let p = locate(&mbr(0x06, 63, 1000), 2000).unwrap();
        assert_eq!(
            p,
            Partition {
                start: 63,
                sectors: 1000
            }
        );
    }

    #[test]
    fn refuses_partitions_outside_the_device_and_other_fat_kinds() {
        assert!(matches!(
            locate(&mbr(0x0E, 63, 1000), 500),
            Err(Error::Corrupt(_))
        ));
        assert_eq!(
            locate(&mbr(0x0C, 63, 100), 500),
            Err(Error::Unsupported("FAT32 partition"))
        );
        assert_eq!(
            locate(&mbr(0x01, 63, 100), 500),
            Err(Error::Unsupported("FAT12 partition"))
        );
        assert!(matches!(
            locate(&[0u8; SECTOR_SIZE], 500),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn a_boot_sector_with_a_bad_bpb_is_still_the_whole_device() {
        let mut boot = [0u8; SECTOR_SIZE];
        boot[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        boot[11..13].copy_from_slice(&1000u16.to_le_bytes());
        boot[13] = 3;
        boot[510] = 0x55;
        boot[511] = 0xAA;
        assert_eq!(locate(&boot, 500).unwrap().start, 0);
        // A boot loader's MBR (GRUB's starts with a jump too) with a partition stays an MBR.
        let mut grub = mbr(0x0C, 63, 100);
        grub[0..3].copy_from_slice(&[0xEB, 0x63, 0x90]);
        assert_eq!(
            locate(&grub, 500),
            Err(Error::Unsupported("FAT32 partition"))
        );
    }
}
