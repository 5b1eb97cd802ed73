//! A full volume gives `NoSpace` (or `DirectoryFull` for the fixed root) and changes
//! nothing: no half-written file, no lost clusters.

mod common;

use common::*;
use fs::{Error, OpenOptions};

#[test]
fn filling_the_volume_fails_cleanly() {
    let dir = temp_dir("full");
    let image = dir.join("full.img");
    mkfs(&image, 2200, &["-s", "1"]);
    let mut volume = mount_image(&image);
    let mut rng = Rng::new(5);
    let mut expected = Tree::new();
    volume.create_dir("/sub").unwrap();
    expected.insert("/sub".into(), None);
    // Fill the directory's first cluster (16 slots, two for `.` and `..`).
    for i in 0..14 {
        let path = format!("/sub/F{i}");
        volume.write_file(&path, b"").unwrap();
        expected.insert(path, Some(Vec::new()));
    }
    let mut log = Vec::new();
    volume.write_file("/log.txt", b"").unwrap();
    let mut n = 0;
    loop {
        let data = rng.bytes(40_000);
        let path = format!("/file{n}.bin");
        let free_before = volume.free_space().unwrap();
        match volume.write_file(&path, &data) {
            Ok(()) => {
                expected.insert(path, Some(data));
                n += 1;
            }
            Err(Error::NoSpace) => {
                assert_eq!(
                    volume.free_space().unwrap(),
                    free_before,
                    "a failed write keeps no clusters"
                );
                assert_eq!(
                    volume.exists(&path),
                    Ok(false),
                    "no half-written file is left"
                );
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(n > 40, "the volume held {n} files");
    // Use up what is left in small appends, then see an append fail without change.
    let mut file = volume
        .open(
            "/log.txt",
            OpenOptions {
                append: true,
                ..OpenOptions::default()
            },
        )
        .unwrap();
    loop {
        let chunk = rng.bytes(700);
        match volume.write(&mut file, &chunk) {
            Ok(_) => log.extend_from_slice(&chunk),
            Err(Error::NoSpace) => break,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(
        volume.free_space().unwrap(),
        0,
        "700-byte appends stop only when nothing is free"
    );
    assert_eq!(
        volume.read_file("/log.txt").unwrap(),
        log,
        "the failed append changed nothing"
    );
    expected.insert("/log.txt".into(), Some(log));
    assert_eq!(volume.create_dir("/another"), Err(Error::NoSpace));
    assert_eq!(
        volume.write_file("/sub/one too many", b""),
        Err(Error::NoSpace)
    );
    assert_eq!(volume.read_dir("/sub").unwrap().len(), 14);
    assert_same_tree(&volume_tree(&mut volume), &expected, "full volume");
    save_image(volume, &image);
    assert_fsck_clean(&image);
    assert_same_tree(
        &host_tree(&mcopy_out(&image, "full-out")),
        &expected,
        "mcopy of a full volume",
    );
}

#[test]
fn the_fixed_root_directory_fills_up() {
    let dir = temp_dir("root");
    let image = dir.join("root.img");
    mkfs(&image, 4096, &["-s", "1", "-r", "16"]);
    let mut volume = mount_image(&image);
    for i in 0..16 {
        volume.write_file(&format!("/F{i}.TXT"), b"x").unwrap();
    }
    assert_eq!(
        volume.write_file("/F16.TXT", b"x"),
        Err(Error::DirectoryFull)
    );
    assert_eq!(volume.create_dir("/D"), Err(Error::DirectoryFull));
    volume.remove_file("/F3.TXT").unwrap();
    assert_eq!(
        volume.write_file("/long name needs three slots", b"x"),
        Err(Error::DirectoryFull)
    );
    volume.write_file("/F16.TXT", b"y").unwrap();
    save_image(volume, &image);
    assert_fsck_clean(&image);
    assert_eq!(host_tree(&mcopy_out(&image, "root-out")).len(), 16);
}
