//! Real `mkfs.fat` images with one BPB field broken: mounting names the field and the
//! value, also on a disk without a partition table.

mod common;

use common::*;
use fs::{Error, FixedClock, RamDisk, Volume};

/// Returns the error of mounting `image` after `change` to its boot sector.
fn mount_changed(image: &[u8], change: impl FnOnce(&mut [u8])) -> Error {
    let mut bytes = image.to_vec();
    change(&mut bytes[..512]);
    let disk = RamDisk::from_bytes(bytes);
    Volume::mount(disk, FixedClock(NOW)).expect_err("the BPB is bad")
}

/// A field's name, the bad value, and how to put it into a boot sector.
type Case = (&'static str, u32, fn(&mut [u8]));

#[test]
fn each_bad_field_is_named_with_its_value() {
    let dir = temp_dir("bad-bpb");
    let image = dir.join("bpb.img");
    mkfs(&image, 8192, &["-s", "1"]);
    let bytes = std::fs::read(&image).unwrap();
    let cases: [Case; 6] = [
        ("root entries", 17, |s| {
            s[17..19].copy_from_slice(&17u16.to_le_bytes())
        }),
        ("root entries", 1, |s| {
            s[17..19].copy_from_slice(&1u16.to_le_bytes())
        }),
        ("sectors per cluster", 3, |s| s[13] = 3),
        ("bytes per sector", 1000, |s| {
            s[11..13].copy_from_slice(&1000u16.to_le_bytes())
        }),
        ("reserved sectors", 0, |s| {
            s[14..16].copy_from_slice(&[0, 0])
        }),
        ("FAT count", 0, |s| s[16] = 0),
    ];
    for (field, value, change) in cases {
        let error = mount_changed(&bytes, change);
        match error {
            Error::BadBpb {
                field: found,
                value: found_value,
                ..
            } => assert_eq!((found, found_value), (field, value)),
            other => panic!("{field} = {value}: {other}"),
        }
        let shown = error.to_string();
        assert!(
            shown.contains(&format!(
                "BPB field {field} = {value} is not valid for FAT16"
            )),
            "{shown}"
        );
        assert!(!shown.contains("partition"), "{shown}");
    }
}

#[test]
fn an_empty_disk_is_named_as_such() {
    let error = Volume::mount(RamDisk::from_bytes(Vec::new()), FixedClock(NOW))
        .expect_err("nothing to mount");
    assert_eq!(
        error.to_string(),
        "corrupt volume: the disk is empty (0 sectors)"
    );
}
