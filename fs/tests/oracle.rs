//! Images made by mkfs.fat and filled by mcopy read exactly as mtools extracts them, and
//! what the crate writes reads back the same through mtools.

mod common;

use std::path::Path;

use common::*;
use fs::{Error, FixedClock, OpenOptions, RamDisk, SeekFrom, Timestamp, Volume};

/// Fills `root` with long names, nested folders, empty files and files of many sizes.
fn make_source_tree(root: &Path) {
    let mut rng = Rng::new(7);
    let sizes = [
        0usize, 1, 511, 512, 513, 1023, 1024, 1025, 2048, 4095, 4097, 10_000, 65_536, 150_001,
    ];
    for (i, size) in sizes.iter().enumerate() {
        std::fs::write(root.join(format!("size{i:02}.bin")), rng.bytes(*size)).unwrap();
    }
    std::fs::write(root.join("readme.txt"), b"lower-case 8.3 name\n").unwrap();
    std::fs::write(root.join("UPPER.TXT"), b"upper-case 8.3 name\n").unwrap();
    std::fs::write(root.join("MixedCase.Txt"), b"mixed case\n").unwrap();
    std::fs::write(root.join("A long file name with spaces.text"), b"long\n").unwrap();
    std::fs::write(root.join("many.dots.in.this.name"), b"dots\n").unwrap();
    std::fs::write(root.join("ünïcödé lōng nàmé.txt"), b"unicode\n").unwrap();
    std::fs::write(root.join("x".repeat(200)), b"two hundred\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    let nested = root.join("Level One Folder/level two/LEVEL3");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("deep file.bin"), rng.bytes(7777)).unwrap();
    std::fs::create_dir_all(root.join("empty folder")).unwrap();
    let crowded = root.join("crowded");
    std::fs::create_dir_all(&crowded).unwrap();
    for i in 0..150 {
        std::fs::write(
            crowded.join(format!("crowded file number {i}.dat")),
            format!("{i}").repeat(i),
        )
        .unwrap();
    }
}

#[test]
fn mtools_images_list_and_read_exactly_as_mtools_extracts_them() {
    let dir = temp_dir("read");
    let source = dir.join("source");
    std::fs::create_dir_all(&source).unwrap();
    make_source_tree(&source);
    for (size_kb, cluster_sectors) in [(8192, "1"), (32768, "4"), (65536, "16")] {
        let image = dir.join(format!("image-{cluster_sectors}.img"));
        mkfs(&image, size_kb, &["-s", cluster_sectors]);
        mcopy_in(&image, &source);
        let extracted = host_tree(&mcopy_out(&image, "read-out"));
        assert_same_tree(
            &extracted,
            &host_tree(&source),
            "mtools round trip (sanity)",
        );
        let mut volume = mount_image(&image);
        assert_eq!(
            volume.info().cluster_size,
            cluster_sectors.parse::<u32>().unwrap() * 512
        );
        assert_same_tree(&volume_tree(&mut volume), &extracted, "crate vs mcopy");
    }
}

#[test]
fn stat_reports_what_mtools_stored() {
    let dir = temp_dir("stat");
    let source = dir.join("source");
    std::fs::create_dir_all(source.join("Sub Dir")).unwrap();
    let file = source.join("Sub Dir/stamped file.txt");
    std::fs::write(&file, b"0123456789").unwrap();
    // 2021-06-15 10:20:30 UTC; mcopy -m keeps it and the tools run with TZ=UTC.
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_623_752_430);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let image = dir.join("stat.img");
    mkfs(&image, 8192, &["-s", "2"]);
    mcopy_in(&image, &source);
    let mut volume = mount_image(&image);
    let metadata = volume.metadata("/sub dir/STAMPED FILE.TXT").unwrap();
    assert_eq!(metadata.size, 10);
    assert!(metadata.is_file());
    assert_eq!(metadata.modified, Timestamp::new(2021, 6, 15, 10, 20, 30));
    assert!(volume.metadata("/Sub Dir").unwrap().is_dir());
    let listing = volume.read_dir("/").unwrap();
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].name, "Sub Dir");
    assert_eq!(listing[0].short_name, "SUBDIR~1");
}

#[test]
fn written_volumes_pass_fsck_and_extract_with_mtools() {
    let dir = temp_dir("write");
    let image = dir.join("write.img");
    mkfs(&image, 8192, &["-s", "2"]);
    let mut volume = mount_image(&image);
    let mut rng = Rng::new(11);
    let big = rng.bytes(100_000);
    volume.create_dir("/Documents and Settings").unwrap();
    volume
        .create_dir("/Documents and Settings/Nested Folder")
        .unwrap();
    volume.create_dir("/bin").unwrap();
    volume
        .write_file(
            "/Documents and Settings/Nested Folder/Long File Name.txt",
            b"first",
        )
        .unwrap();
    volume
        .write_file(
            "/Documents and Settings/Nested Folder/Long File Number.txt",
            b"second",
        )
        .unwrap();
    volume.write_file("/bin/big.bin", &big).unwrap();
    volume.write_file("/readme.txt", b"case flags").unwrap();
    volume.write_file("/empty", b"").unwrap();
    volume
        .write_file("/ünïcödé.txt", "ünïcödé".as_bytes())
        .unwrap();
    save_image(volume, &image);

    assert_fsck_clean(&image);
    let listing = run_ok(
        "mdir",
        &[
            "-i",
            image.to_str().unwrap(),
            "::/Documents and Settings/Nested Folder",
        ],
    );
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.contains("LONGFI~1 TXT") && text.contains("Long File Name.txt"),
        "{text}"
    );
    assert!(
        text.contains("LONGFI~2 TXT") && text.contains("Long File Number.txt"),
        "{text}"
    );
    assert!(
        text.contains("2023-04-05"),
        "timestamps from the clock: {text}"
    );

    let out = mcopy_out(&image, "write-out");
    let mut expected = Tree::new();
    expected.insert("/Documents and Settings".into(), None);
    expected.insert("/Documents and Settings/Nested Folder".into(), None);
    expected.insert(
        "/Documents and Settings/Nested Folder/Long File Name.txt".into(),
        Some(b"first".to_vec()),
    );
    expected.insert(
        "/Documents and Settings/Nested Folder/Long File Number.txt".into(),
        Some(b"second".to_vec()),
    );
    expected.insert("/bin".into(), None);
    expected.insert("/bin/big.bin".into(), Some(big));
    expected.insert("/readme.txt".into(), Some(b"case flags".to_vec()));
    expected.insert("/empty".into(), Some(Vec::new()));
    expected.insert("/ünïcödé.txt".into(), Some("ünïcödé".as_bytes().to_vec()));
    assert_same_tree(
        &host_tree(&out),
        &expected,
        "mcopy extraction of our writes",
    );
    let modified = std::fs::metadata(out.join("readme.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let seconds = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(seconds, 1_680_674_828, "2023-04-05 06:07:08 UTC");
}

#[test]
fn files_seek_append_truncate_and_rename() {
    let dir = temp_dir("ops");
    let image = dir.join("ops.img");
    mkfs(&image, 8192, &["-s", "1"]);
    let mut volume = mount_image(&image);
    let mut file = volume.create("/notes.txt").unwrap();
    volume.write(&mut file, b"hello world").unwrap();
    volume.seek(&mut file, SeekFrom::Start(6)).unwrap();
    volume.write(&mut file, b"WORLD").unwrap();
    volume.seek(&mut file, SeekFrom::End(2000)).unwrap();
    volume.write(&mut file, b"!").unwrap();
    let mut expected = b"hello WORLD".to_vec();
    expected.resize(11 + 2000, 0);
    expected.push(b'!');
    assert_eq!(volume.read_file("/NOTES.TXT").unwrap(), expected);

    let mut log = volume
        .open(
            "/notes.txt",
            OpenOptions {
                append: true,
                ..OpenOptions::default()
            },
        )
        .unwrap();
    volume.seek(&mut log, SeekFrom::Start(0)).unwrap();
    volume.write(&mut log, b"tail").unwrap();
    expected.extend_from_slice(b"tail");
    assert_eq!(volume.read_file("/notes.txt").unwrap(), expected);

    volume.set_len(&mut file, 5).unwrap();
    assert_eq!(volume.read_file("/notes.txt").unwrap(), b"hello");
    volume.set_len(&mut file, 700).unwrap();
    let mut grown = b"hello".to_vec();
    grown.resize(700, 0);
    assert_eq!(volume.read_file("/notes.txt").unwrap(), grown);

    let mut reader = volume.open("/notes.txt", OpenOptions::read()).unwrap();
    assert_eq!(volume.write(&mut reader, b"x"), Err(Error::ReadOnly));
    let mut buf = [0u8; 3];
    volume.seek(&mut reader, SeekFrom::Start(1)).unwrap();
    assert_eq!(volume.read(&mut reader, &mut buf).unwrap(), 3);
    assert_eq!(&buf, b"ell");

    volume.create_dir("/a").unwrap();
    volume.create_dir("/a/b").unwrap();
    volume
        .rename("/notes.txt", "/a/b/Renamed Notes.txt")
        .unwrap();
    assert_eq!(volume.read(&mut reader, &mut buf), Err(Error::StaleHandle));
    assert_eq!(volume.exists("/notes.txt"), Ok(false));
    assert_eq!(volume.read_file("/A/B/renamed notes.TXT").unwrap(), grown);
    volume.rename("/a/b", "/moved b").unwrap();
    volume.create_dir("/a/c").unwrap();
    assert!(matches!(
        volume.rename("/a", "/a/b2"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        volume.rename("/a", "/a/c/inside"),
        Err(Error::InvalidArgument(_))
    ));
    volume
        .rename("/moved b/Renamed Notes.txt", "/moved b/RENAMED NOTES.TXT")
        .unwrap();
    assert_eq!(
        volume.read_dir("/moved b").unwrap()[0].name,
        "RENAMED NOTES.TXT"
    );
    assert_eq!(volume.remove_dir("/a"), Err(Error::DirectoryNotEmpty));
    volume.remove_dir("/a/c").unwrap();
    volume.remove_dir("/a").unwrap();
    assert_eq!(volume.remove_file("/moved b"), Err(Error::IsADirectory));
    assert_eq!(
        volume.remove_dir("/moved b/renamed notes.txt"),
        Err(Error::NotADirectory)
    );
    assert_eq!(volume.create_dir("/MOVED B"), Err(Error::AlreadyExists));
    assert_eq!(volume.create_dir("/bad:name"), Err(Error::InvalidName));
    assert_eq!(
        volume.open("/missing", OpenOptions::read()).err(),
        Some(Error::NotFound)
    );
    assert_eq!(
        volume.open("/moved b", OpenOptions::read()).err(),
        Some(Error::IsADirectory)
    );
    save_image(volume, &image);
    assert_fsck_clean(&image);
    let out = host_tree(&mcopy_out(&image, "ops-out"));
    let mut expected_tree = Tree::new();
    expected_tree.insert("/moved b".into(), None);
    expected_tree.insert("/moved b/RENAMED NOTES.TXT".into(), Some(grown));
    assert_same_tree(&out, &expected_tree, "after renames");
    let dot_dot = run_ok("mdir", &["-i", image.to_str().unwrap(), "-a", "::/moved b"]);
    assert!(String::from_utf8_lossy(&dot_dot.stdout).contains(".."));
}

#[test]
fn mbr_partitioned_disks_mount_at_their_partition() {
    let dir = temp_dir("mbr");
    let image = dir.join("part.img");
    mkfs(&image, 8192, &["-s", "2"]);
    let source = dir.join("source");
    std::fs::create_dir_all(source.join("folder")).unwrap();
    std::fs::write(source.join("folder/inside partition.txt"), b"vvfat style").unwrap();
    mcopy_in(&image, &source);
    let volume_bytes = std::fs::read(&image).unwrap();
    let sectors = (volume_bytes.len() / 512) as u32;
    // Like QEMU's vvfat: an MBR with one FAT16 (LBA) partition at sector 63.
    let mut disk = vec![0u8; 63 * 512];
    disk[446 + 4] = 0x0E;
    disk[446 + 8..446 + 12].copy_from_slice(&63u32.to_le_bytes());
    disk[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xAA;
    disk.extend_from_slice(&volume_bytes);
    let mut volume = Volume::mount(RamDisk::from_bytes(disk), FixedClock(NOW)).unwrap();
    assert_eq!(volume.info().start_sector, 63);
    assert_eq!(
        volume.read_file("/folder/inside partition.txt").unwrap(),
        b"vvfat style"
    );
    volume
        .write_file("/folder/written.txt", b"through the partition")
        .unwrap();
    let disk = volume.unmount().unwrap().into_bytes();
    std::fs::write(&image, &disk[63 * 512..]).unwrap();
    assert_fsck_clean(&image);
    let out = host_tree(&mcopy_out(&image, "mbr-out"));
    assert_eq!(
        out["/folder/written.txt"].as_deref(),
        Some(&b"through the partition"[..])
    );
}

#[test]
fn fat12_and_fat32_volumes_are_refused() {
    let dir = temp_dir("kinds");
    for (kind, size, expected) in [
        ("12", "2048", "FAT12 volume"),
        ("32", "66000", "FAT32 volume"),
    ] {
        let image = dir.join(format!("fat{kind}.img"));
        run_ok(
            "mkfs.fat",
            &["-F", kind, "-C", image.to_str().unwrap(), size],
        );
        let disk = RamDisk::from_bytes(std::fs::read(&image).unwrap());
        assert_eq!(
            Volume::mount(disk, FixedClock(NOW)).err(),
            Some(Error::Unsupported(expected))
        );
    }
}

#[test]
fn sequential_small_reads_are_served_by_read_ahead() {
    let dir = temp_dir("readahead");
    let image = dir.join("ra.img");
    mkfs(&image, 32768, &["-s", "8"]);
    let source = dir.join("source");
    std::fs::create_dir_all(&source).unwrap();
    let data = Rng::new(3).bytes(64 * 1024);
    std::fs::write(source.join("data.bin"), &data).unwrap();
    mcopy_in(&image, &source);
    let mut volume = mount_image(&image);
    let mut file = volume.open("/data.bin", OpenOptions::read()).unwrap();
    let before = volume.cache_stats().device_reads;
    let mut back = Vec::new();
    let mut chunk = [0u8; 100];
    loop {
        let count = volume.read(&mut file, &mut chunk).unwrap();
        if count == 0 {
            break;
        }
        back.extend_from_slice(&chunk[..count]);
    }
    assert_eq!(back, data);
    let reads = volume.cache_stats().device_reads - before;
    // 128 sectors in 16 clusters of 8: one request per cluster plus a few for the FAT.
    assert!(reads <= 24, "{reads} device reads for 128 sectors");
}
