//! The BIOS parameter block: checked parsing of the boot sector into the volume's layout.

use crate::bytes::{u16_at, u32_at};
use crate::device::SECTOR_SIZE;
use crate::error::{Error, Result};

/// Directory entries in one 512-byte sector.
const ENTRIES_PER_SECTOR: u32 = (SECTOR_SIZE / 32) as u32;

/// What FAT16 asks of the root directory's size.
const ROOT_RULE: &str = "the root directory must fill whole sectors: a nonzero multiple of 16";

/// Returns the error for a BPB `field` holding `value`, which breaks `rule`.
fn bad(field: &'static str, value: u32, rule: &'static str) -> Error {
    Error::BadBpb { field, value, rule }
}

/// The FAT variant, decided by the number of clusters as Microsoft's specification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    /// Fewer than 4085 clusters.
    Fat12,
    /// 4085 to 65524 clusters.
    Fat16,
    /// 65525 clusters or more.
    Fat32,
}

impl FatType {
    /// Returns the FAT variant of a volume with `clusters` data clusters.
    pub fn from_cluster_count(clusters: u32) -> Self {
        if clusters < 4085 {
            FatType::Fat12
        } else if clusters < 65525 {
            FatType::Fat16
        } else {
            FatType::Fat32
        }
    }
}

/// Where everything lies on a FAT16 volume, in absolute device sectors. Every field was
/// checked against the others and against the device when it was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The volume's boot sector.
    pub volume_start: u64,
    /// The number of sectors in the volume.
    pub total_sectors: u32,
    /// Sectors per cluster, a power of two from 1 to 128.
    pub sectors_per_cluster: u32,
    /// The first sector of the first FAT.
    pub fat_start: u64,
    /// Sectors per FAT copy.
    pub fat_sectors: u32,
    /// The number of FAT copies.
    pub fat_count: u32,
    /// The first sector of the fixed root directory.
    pub root_start: u64,
    /// The number of root directory entries.
    pub root_entries: u32,
    /// The sectors the root directory occupies.
    pub root_sectors: u32,
    /// The first sector of cluster 2.
    pub data_start: u64,
    /// The number of data clusters; valid cluster numbers are 2 to `cluster_count + 1`.
    pub cluster_count: u32,
    /// The volume serial number.
    pub serial: u32,
}

impl Layout {
    /// Returns the layout described by the boot sector at `volume_start`, whose volume may
    /// use at most `available_sectors` sectors. FAT12 and FAT32 volumes are refused.
    pub fn parse(
        sector: &[u8; SECTOR_SIZE],
        volume_start: u64,
        available_sectors: u64,
    ) -> Result<Self> {
        if sector[510] != 0x55 || sector[511] != 0xAA {
            return Err(Error::Corrupt("boot sector signature missing"));
        }
        if !(sector[0] == 0xE9 || sector[0] == 0xEB) {
            return Err(Error::Corrupt("boot sector has no jump instruction"));
        }
        let bytes_per_sector = u16_at(sector, 11);
        if !bytes_per_sector.is_power_of_two() || !(512..=4096).contains(&bytes_per_sector) {
            return Err(bad(
                "bytes per sector",
                bytes_per_sector.into(),
                "must be 512, 1024, 2048 or 4096",
            ));
        }
        if usize::from(bytes_per_sector) != SECTOR_SIZE {
            return Err(Error::Unsupported("sector size other than 512 bytes"));
        }
        let sectors_per_cluster = u32::from(sector[13]);
        if !sectors_per_cluster.is_power_of_two() || sectors_per_cluster > 128 {
            return Err(bad(
                "sectors per cluster",
                sectors_per_cluster,
                "must be a power of two from 1 to 128",
            ));
        }
        let reserved = u32::from(u16_at(sector, 14));
        if reserved == 0 {
            return Err(bad(
                "reserved sectors",
                reserved,
                "must be at least 1 (the boot sector itself)",
            ));
        }
        let fat_count = u32::from(sector[16]);
        if !(1..=2).contains(&fat_count) {
            return Err(bad("FAT count", fat_count, "must be 1 or 2"));
        }
        let root_entries = u32::from(u16_at(sector, 17));
        if !root_entries.is_multiple_of(ENTRIES_PER_SECTOR) {
            return Err(bad("root entries", root_entries, ROOT_RULE));
        }
        let total16 = u32::from(u16_at(sector, 19));
        let total_sectors = if total16 != 0 {
            total16
        } else {
            u32_at(sector, 32)
        };
        if total_sectors == 0 {
            return Err(bad("total sectors", 0, "must not be 0"));
        }
        let fat16_sectors = u32::from(u16_at(sector, 22));
        let fat_sectors = if fat16_sectors != 0 {
            fat16_sectors
        } else {
            u32_at(sector, 36)
        };
        if fat_sectors == 0 {
            return Err(bad("sectors per FAT", 0, "must not be 0"));
        }
        let root_sectors = root_entries / ENTRIES_PER_SECTOR;
        let metadata = u64::from(reserved)
            + u64::from(fat_count) * u64::from(fat_sectors)
            + u64::from(root_sectors);
        let data_sectors = u64::from(total_sectors).checked_sub(metadata).ok_or(bad(
            "total sectors",
            total_sectors,
            "must leave room for the reserved sectors, the FATs and the root directory",
        ))?;
        let cluster_count = u32::try_from(data_sectors / u64::from(sectors_per_cluster))
            .map_err(|_| Error::Corrupt("cluster count out of range"))?;
        match FatType::from_cluster_count(cluster_count) {
            FatType::Fat12 => return Err(Error::Unsupported("FAT12 volume")),
            FatType::Fat32 => return Err(Error::Unsupported("FAT32 volume")),
            FatType::Fat16 => {}
        }
        if fat16_sectors == 0 {
            return Err(Error::Corrupt(
                "FAT16 cluster count with a FAT32 boot sector",
            ));
        }
        if root_entries == 0 {
            return Err(bad("root entries", 0, ROOT_RULE));
        }
        if u64::from(fat_sectors) * (SECTOR_SIZE as u64 / 2) < u64::from(cluster_count) + 2 {
            return Err(bad(
                "sectors per FAT",
                fat_sectors,
                "too few for the volume's cluster count",
            ));
        }
        if u64::from(total_sectors) > available_sectors {
            return Err(bad(
                "total sectors",
                total_sectors,
                "more than the device or partition holds",
            ));
        }
        let fat_start = volume_start + u64::from(reserved);
        let root_start = fat_start + u64::from(fat_count) * u64::from(fat_sectors);
        let data_start = root_start + u64::from(root_sectors);
        Ok(Layout {
            volume_start,
            total_sectors,
            sectors_per_cluster,
            fat_start,
            fat_sectors,
            fat_count,
            root_start,
            root_entries,
            root_sectors,
            data_start,
            cluster_count,
            serial: if sector[38] == 0x29 {
                u32_at(sector, 39)
            } else {
                0
            },
        })
    }

    /// Returns the number of bytes in a cluster.
    pub fn cluster_bytes(&self) -> u32 {
        self.sectors_per_cluster * SECTOR_SIZE as u32
    }

    /// Returns the highest valid cluster number.
    pub fn max_cluster(&self) -> u32 {
        self.cluster_count + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns a boot sector like `mkfs.fat -F 16` writes for a 16 MiB volume.
    fn boot_sector() -> [u8; SECTOR_SIZE] {
        let mut s = [0u8; SECTOR_SIZE];
        s[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        s[11..13].copy_from_slice(&512u16.to_le_bytes());
        s[13] = 4;
        s[14..16].copy_from_slice(&4u16.to_le_bytes());
        s[16] = 2;
        s[17..19].copy_from_slice(&512u16.to_le_bytes());
        s[19..21].copy_from_slice(&32768u16.to_le_bytes());
        s[22..24].copy_from_slice(&32u16.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn parses_a_fat16_boot_sector() {
        let layout = Layout::parse(&boot_sector(), 63, 40000).unwrap();
        assert_eq!(layout.fat_start, 67);
        assert_eq!(layout.root_start, 67 + 64);
        assert_eq!(layout.data_start, 67 + 64 + 32);
        assert_eq!(layout.cluster_count, (32768 - 4 - 64 - 32) / 4);
        assert_eq!(layout.cluster_bytes(), 2048);
    }

    /// Returns the error of parsing `boot_sector()` after `change`.
    fn parse_changed(change: impl FnOnce(&mut [u8; SECTOR_SIZE])) -> Result<Layout> {
        let mut s = boot_sector();
        change(&mut s);
        Layout::parse(&s, 0, 40000)
    }

    fn expect_bad(result: Result<Layout>, field: &str, value: u32) {
        match result {
            Err(Error::BadBpb {
                field: found,
                value: found_value,
                rule,
            }) => {
                assert_eq!((found, found_value), (field, value), "{rule}");
                let shown = Error::BadBpb {
                    field: found,
                    value: found_value,
                    rule,
                }
                .to_string();
                assert!(
                    shown.starts_with(&format!(
                        "BPB field {field} = {value} is not valid for FAT16: "
                    )),
                    "{shown}"
                );
            }
            other => panic!("{field} = {value}: {other:?}"),
        }
    }

    #[test]
    fn root_entries_must_fill_whole_sectors() {
        for entries in [1u16, 17, 15, 500, 513] {
            expect_bad(
                parse_changed(|s| s[17..19].copy_from_slice(&entries.to_le_bytes())),
                "root entries",
                entries.into(),
            );
        }
        expect_bad(
            parse_changed(|s| s[17..19].copy_from_slice(&0u16.to_le_bytes())),
            "root entries",
            0,
        );
        let small = parse_changed(|s| s[17..19].copy_from_slice(&16u16.to_le_bytes())).unwrap();
        assert_eq!(small.root_sectors, 1);
    }

    #[test]
    fn sectors_per_cluster_is_a_power_of_two_up_to_128() {
        for value in [0u8, 3, 6, 12, 255] {
            expect_bad(
                parse_changed(|s| s[13] = value),
                "sectors per cluster",
                value.into(),
            );
        }
    }

    #[test]
    fn bytes_per_sector_is_a_power_of_two_from_512_to_4096() {
        for value in [0u16, 256, 513, 1000, 8192] {
            expect_bad(
                parse_changed(|s| s[11..13].copy_from_slice(&value.to_le_bytes())),
                "bytes per sector",
                value.into(),
            );
        }
        assert_eq!(
            parse_changed(|s| s[11..13].copy_from_slice(&4096u16.to_le_bytes())),
            Err(Error::Unsupported("sector size other than 512 bytes"))
        );
    }

    #[test]
    fn reserved_sectors_and_fat_count_are_checked() {
        expect_bad(
            parse_changed(|s| s[14..16].copy_from_slice(&0u16.to_le_bytes())),
            "reserved sectors",
            0,
        );
        expect_bad(
            parse_changed(|s| s[14..16].copy_from_slice(&40000u16.to_le_bytes())),
            "total sectors",
            32768,
        );
        for count in [0u8, 3, 255] {
            expect_bad(parse_changed(|s| s[16] = count), "FAT count", count.into());
        }
        assert!(parse_changed(|s| s[16] = 1).is_ok());
    }

    #[test]
    fn sizes_are_checked_against_each_other_and_the_device() {
        expect_bad(
            parse_changed(|s| s[22..24].copy_from_slice(&2u16.to_le_bytes())),
            "sectors per FAT",
            2,
        );
        expect_bad(
            Layout::parse(&boot_sector(), 0, 1000),
            "total sectors",
            32768,
        );
        expect_bad(
            parse_changed(|s| {
                s[19..21].copy_from_slice(&0u16.to_le_bytes());
            }),
            "total sectors",
            0,
        );
    }

    #[test]
    fn signature_and_jump_are_required() {
        assert!(matches!(
            parse_changed(|s| s[510] = 0),
            Err(Error::Corrupt(message)) if message.contains("signature")
        ));
        assert!(matches!(
            parse_changed(|s| s[0] = 0),
            Err(Error::Corrupt(message)) if message.contains("jump")
        ));
    }

    #[test]
    fn recognises_fat12_and_fat32_by_cluster_count() {
        let mut small = boot_sector();
        small[19..21].copy_from_slice(&8000u16.to_le_bytes());
        assert_eq!(
            Layout::parse(&small, 0, 40000),
            Err(Error::Unsupported("FAT12 volume"))
        );
        let mut big = boot_sector();
        big[13] = 1;
        big[19..21].copy_from_slice(&0u16.to_le_bytes());
        big[32..36].copy_from_slice(&200_000u32.to_le_bytes());
        assert_eq!(
            Layout::parse(&big, 0, 400_000),
            Err(Error::Unsupported("FAT32 volume"))
        );
        assert_eq!(FatType::from_cluster_count(4084), FatType::Fat12);
        assert_eq!(FatType::from_cluster_count(4085), FatType::Fat16);
        assert_eq!(FatType::from_cluster_count(65525), FatType::Fat32);
    }
}
