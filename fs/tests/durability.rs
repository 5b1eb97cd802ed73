//! What `Volume::flush` (behind `api::sync`, the service's write-back and its sync
//! before exit) promises: every change is on the device, in a state another mount reads.

mod common;

use common::*;
use fs::{FixedClock, OpenOptions, RamDisk, Volume};

#[test]
fn changes_wait_in_the_cache_until_a_flush_puts_them_all_on_the_device() {
    let dir = temp_dir("durability");
    let image = dir.join("sync.img");
    mkfs(&image, 4096, &["-s", "1"]);
    let mut volume = mount_image(&image);
    assert!(!volume.has_unwritten_changes());
    // The case: four folders, of which only three reached the disk.
    for name in ["one", "two", "three", "four"] {
        volume.create_dir(&format!("/{name}")).unwrap();
    }
    volume.write_file("/four/data.bin", &[5u8; 3000]).unwrap();
    let mut log = volume
        .open(
            "/log.txt",
            OpenOptions {
                append: true,
                create: true,
                ..OpenOptions::default()
            },
        )
        .unwrap();
    volume.write(&mut log, b"a line").unwrap();
    assert!(
        volume.has_unwritten_changes(),
        "directory entries wait in the cache"
    );
    let expected = volume_tree(&mut volume);

    volume.flush().unwrap();
    assert!(!volume.has_unwritten_changes());
    let copy = volume.device().as_bytes().to_vec();
    std::fs::write(&image, &copy).unwrap();
    assert_fsck_clean(&image);
    let mut fresh = Volume::mount(RamDisk::from_bytes(copy), FixedClock(NOW)).unwrap();
    assert_same_tree(
        &volume_tree(&mut fresh),
        &expected,
        "a fresh mount after flush",
    );
    assert_eq!(expected.len(), 6);
}
