//! Cross-linked cluster chains (two files or directories sharing clusters, a chain that
//! runs into another, a directory that names its ancestor) and out-of-range first
//! clusters are refused at mount with `Error::Corrupt`; clean images still mount.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use fs::{Error, FixedClock, MountOptions, RamDisk, Volume};

/// The parts of a FAT16 image's layout the tests edit.
struct Image {
    bytes: Vec<u8>,
    fat_start: usize,
    fat_bytes: usize,
    fat_count: usize,
    root_start: usize,
    data_start: usize,
    cluster_bytes: usize,
}

impl Image {
    fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let u16_at = |at: usize| usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
        let sector = u16_at(11);
        let cluster_bytes = usize::from(bytes[13]) * sector;
        let reserved = u16_at(14);
        let fat_count = usize::from(bytes[16]);
        let root_entries = u16_at(17);
        let fat_sectors = u16_at(22);
        let fat_start = reserved * sector;
        let root_start = fat_start + fat_count * fat_sectors * sector;
        let data_start = root_start + root_entries * 32;
        Image {
            bytes,
            fat_start,
            fat_bytes: fat_sectors * sector,
            fat_count,
            root_start,
            data_start,
            cluster_bytes,
        }
    }

    /// Returns the byte offset of the short entry called `short` in the directory whose
    /// first byte is at `dir` (the root, or the first cluster of a subdirectory).
    fn entry(&self, dir: usize, short: &[u8; 11]) -> usize {
        (dir..)
            .step_by(32)
            .take_while(|&at| self.bytes[at] != 0)
            .find(|&at| &self.bytes[at..at + 11] == short)
            .unwrap_or_else(|| panic!("no entry {}", String::from_utf8_lossy(short)))
    }

    fn first_cluster(&self, entry: usize) -> u16 {
        u16::from_le_bytes([self.bytes[entry + 26], self.bytes[entry + 27]])
    }

    fn set_first_cluster(&mut self, entry: usize, cluster: u16) {
        self.bytes[entry + 26..entry + 28].copy_from_slice(&cluster.to_le_bytes());
    }

    fn cluster_offset(&self, cluster: u16) -> usize {
        self.data_start + (usize::from(cluster) - 2) * self.cluster_bytes
    }

    fn fat_entry(&self, cluster: u16) -> u16 {
        let at = self.fat_start + usize::from(cluster) * 2;
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    /// Sets the FAT entry of `cluster` in every FAT copy.
    fn set_fat_entry(&mut self, cluster: u16, value: u16) {
        for copy in 0..self.fat_count {
            let at = self.fat_start + copy * self.fat_bytes + usize::from(cluster) * 2;
            self.bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
        }
    }

    /// Returns the chain from `first`.
    fn chain(&self, first: u16) -> Vec<u16> {
        let mut chain = vec![first];
        loop {
            let next = self.fat_entry(*chain.last().unwrap());
            if next >= 0xFFF8 {
                return chain;
            }
            chain.push(next);
        }
    }

    fn mount(&self, options: MountOptions) -> Result<Volume<RamDisk, FixedClock>, Error> {
        Volume::mount_with(
            RamDisk::from_bytes(self.bytes.clone()),
            FixedClock(NOW),
            options,
        )
    }
}

const FILE_A: &[u8; 11] = b"FILEA   BIN";
const FILE_B: &[u8; 11] = b"FILEB   BIN";
const OUTER: &[u8; 11] = b"OUTER      ";
const INNER: &[u8; 11] = b"INNER      ";

/// Returns a fresh image with two multi-cluster files in the root and two multi-cluster
/// files in OUTER/INNER, made by mkfs.fat and mcopy (512-byte clusters).
fn make_image(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let source = dir.join("source");
    let inner = source.join("OUTER/INNER");
    std::fs::create_dir_all(&inner).unwrap();
    let mut rng = Rng::new(31);
    std::fs::write(source.join("FILEA.BIN"), rng.bytes(5000)).unwrap();
    std::fs::write(source.join("FILEB.BIN"), rng.bytes(4000)).unwrap();
    std::fs::write(source.join("OUTER/FILEA.BIN"), rng.bytes(3000)).unwrap();
    std::fs::write(inner.join("FILEB.BIN"), rng.bytes(2600)).unwrap();
    let image = dir.join("image.img");
    mkfs(&image, 4096, &["-s", "1"]);
    mcopy_in(&image, &source);
    image
}

const CROSS_LINKED: &str = "cross-linked cluster chains";
const OUT_OF_RANGE: &str = "directory entry's first cluster out of range";

/// Fails unless mounting the image (with the default options) reports `Corrupt(detail)`,
/// and unless the image mounts with the check turned off (so the check is what refuses).
fn assert_corrupt(image: &Image, detail: &str, what: &str) {
    match image.mount(MountOptions::default()) {
        Err(Error::Corrupt(found)) => assert_eq!(found, detail, "{what}"),
        Err(other) => panic!("{what}: mount failed with {other:?}, not Corrupt"),
        Ok(_) => panic!("{what}: mount succeeded"),
    }
    let unchecked = MountOptions {
        check: false,
        ..MountOptions::default()
    };
    assert!(image.mount(unchecked).is_ok(), "{what}: unchecked mount");
}

#[test]
fn clean_image_with_multi_cluster_files_mounts_and_reads_like_mtools() {
    let path = make_image("crosslink-clean");
    let image = Image::read(&path);
    let a = image.first_cluster(image.entry(image.root_start, FILE_A));
    assert!(image.chain(a).len() > 1, "FILEA.BIN spans clusters");
    let mut volume = image.mount(MountOptions::default()).unwrap();
    assert_same_tree(
        &volume_tree(&mut volume),
        &host_tree(&mcopy_out(&path, "crosslink-clean-out")),
        "clean image",
    );
}

#[test]
fn entry_pointing_into_another_files_chain_is_corrupt() {
    let mut image = Image::read(&make_image("crosslink-entry"));
    let a = image.first_cluster(image.entry(image.root_start, FILE_A));
    let b_entry = image.entry(image.root_start, FILE_B);
    let a_chain = image.chain(a);
    assert!(a_chain.len() >= 3);
    image.set_first_cluster(b_entry, a_chain[1]);
    assert_corrupt(
        &image,
        CROSS_LINKED,
        "FILEB.BIN starts inside FILEA.BIN's chain",
    );
}

#[test]
fn two_entries_sharing_a_first_cluster_are_corrupt() {
    let mut image = Image::read(&make_image("crosslink-same"));
    let a = image.first_cluster(image.entry(image.root_start, FILE_A));
    let b_entry = image.entry(image.root_start, FILE_B);
    image.set_first_cluster(b_entry, a);
    assert_corrupt(
        &image,
        CROSS_LINKED,
        "FILEA.BIN and FILEB.BIN share their first cluster",
    );
}

#[test]
fn fat_chain_running_into_another_chain_is_corrupt() {
    let mut image = Image::read(&make_image("crosslink-fat"));
    let a = image.first_cluster(image.entry(image.root_start, FILE_A));
    let b = image.first_cluster(image.entry(image.root_start, FILE_B));
    let (a_chain, b_chain) = (image.chain(a), image.chain(b));
    assert!(a_chain.len() >= 3 && b_chain.len() >= 3);
    // FILEA.BIN's second cluster jumps into the middle of FILEB.BIN's chain, in both FATs.
    image.set_fat_entry(a_chain[1], b_chain[2]);
    assert_eq!(image.fat_count, 2);
    assert_corrupt(
        &image,
        CROSS_LINKED,
        "FILEA.BIN's chain runs into FILEB.BIN's",
    );
}

#[test]
fn cross_link_between_files_in_subdirectories_is_corrupt() {
    let mut image = Image::read(&make_image("crosslink-nested"));
    let outer = image.first_cluster(image.entry(image.root_start, OUTER));
    let outer_at = image.cluster_offset(outer);
    let outer_a = image.first_cluster(image.entry(outer_at, FILE_A));
    let inner = image.first_cluster(image.entry(outer_at, INNER));
    let inner_at = image.cluster_offset(inner);
    let inner_b = image.first_cluster(image.entry(inner_at, FILE_B));
    let last = *image.chain(inner_b).last().unwrap();
    // OUTER/INNER/FILEB.BIN's last cluster continues into OUTER/FILEA.BIN's chain.
    image.set_fat_entry(last, image.chain(outer_a)[1]);
    assert_corrupt(&image, CROSS_LINKED, "nested chains cross-linked");
}

#[test]
fn directory_naming_its_ancestor_is_corrupt() {
    let mut image = Image::read(&make_image("crosslink-loop"));
    let outer = image.first_cluster(image.entry(image.root_start, OUTER));
    let outer_at = image.cluster_offset(outer);
    let inner_entry = image.entry(outer_at, INNER);
    // OUTER/INNER now names OUTER itself: a loop in the tree.
    image.set_first_cluster(inner_entry, outer);
    assert_corrupt(&image, CROSS_LINKED, "directory loop");
}

#[test]
fn directory_sharing_a_files_clusters_is_corrupt() {
    let mut image = Image::read(&make_image("crosslink-dir-file"));
    let a = image.first_cluster(image.entry(image.root_start, FILE_A));
    let outer_entry = image.entry(image.root_start, OUTER);
    image.set_first_cluster(outer_entry, a);
    assert_corrupt(&image, CROSS_LINKED, "OUTER's chain is FILEA.BIN's");
}

#[test]
fn first_cluster_out_of_range_is_corrupt() {
    let mut image = Image::read(&make_image("crosslink-range"));
    let b_entry = image.entry(image.root_start, FILE_B);
    for bad in [1u16, 0xFFF0] {
        image.set_first_cluster(b_entry, bad);
        assert_corrupt(&image, OUT_OF_RANGE, "first cluster out of range");
    }
}
