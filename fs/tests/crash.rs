//! Crash safety: a mixed workload (create, append, overwrite, rename, remove, mkdir)
//! runs on a disk that records every sector it writes; then, for every k, the image as a
//! crash after the k-th sector write would leave it is checked with `fsck.fat -n`, whose
//! findings must all be of the allowed kinds, and is mounted again and used.
//!
//! The next mount must repair exactly what `fsck.fat` found (FAT copies brought in
//! step, chains cut to their files' sizes, lost clusters freed), and after some more
//! work the volume must be clean.
//!
//! The crash model: writes reach the disk in the order they were issued, a sector at a
//! time (a multi-sector request may be cut between sectors), and nothing after the
//! crash. That is what killing QEMU does to a raw image in the host's page cache.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;

use common::*;
use fs::{BlockDevice, Error, FixedClock, IoError, OpenOptions, RamDisk, SeekFrom, Volume};

/// One sector as it was written, and the operation that wrote it.
struct Written {
    lba: u64,
    data: Vec<u8>,
    operation: usize,
    /// The sectors of the request this sector came in.
    request_length: usize,
    /// This is the request's last sector.
    last_of_request: bool,
}

#[derive(Default)]
struct Log {
    writes: Vec<Written>,
    operation: usize,
}

/// A RAM disk that records every sector written to it.
struct Recording {
    disk: RamDisk,
    log: Rc<RefCell<Log>>,
}

impl BlockDevice for Recording {
    fn sector_count(&self) -> u64 {
        self.disk.sector_count()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.disk.read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError> {
        self.disk.write(lba, buf)?;
        let mut log = self.log.borrow_mut();
        let operation = log.operation;
        let request_length = buf.len() / 512;
        for (i, sector) in buf.chunks_exact(512).enumerate() {
            log.writes.push(Written {
                lba: lba + i as u64,
                data: sector.to_vec(),
                operation,
                request_length,
                last_of_request: i + 1 == request_length,
            });
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

const NAMES: [&str; 8] = [
    "a.txt",
    "B.DAT",
    "a long file name.text",
    "Another Long Name Here.bin",
    "x.y.z",
    "short",
    "Ünïcödé name.txt",
    "data file number seven.log",
];

/// Runs the workload on `volume`, numbering its operations in `log`. Returns a
/// description of each operation.
fn workload(volume: &mut Volume<Recording, FixedClock>, log: &Rc<RefCell<Log>>) -> Vec<String> {
    let mut rng = Rng::new(16);
    let mut done = Vec::new();
    let mut folders = vec![String::new()];
    let mut files: Vec<String> = Vec::new();
    for step in 0..160 {
        log.borrow_mut().operation = done.len();
        let folder = rng.pick(&folders).clone();
        let fresh = format!("{folder}/{}{}", rng.below(4), rng.pick(&NAMES));
        let choice = if files.is_empty() { 0 } else { rng.below(12) };
        let what = match choice {
            0 | 1 => {
                let length = rng.below(9000) as usize;
                let data = rng.bytes(length);
                match volume.write_file(&fresh, &data) {
                    Ok(()) => {
                        if !files.contains(&fresh) {
                            files.push(fresh.clone());
                        }
                    }
                    Err(Error::IsADirectory | Error::AlreadyExists) => {}
                    Err(error) => panic!("step {step}: create {fresh}: {error}"),
                }
                format!("create {fresh} ({} bytes)", data.len())
            }
            2..=4 => {
                let path = rng.pick(&files).clone();
                let mut file = volume
                    .open(
                        &path,
                        OpenOptions {
                            append: true,
                            ..OpenOptions::default()
                        },
                    )
                    .unwrap();
                let length = 1 + rng.below(14000) as usize;
                let data = rng.bytes(length);
                volume.write(&mut file, &data).unwrap();
                format!("append {} bytes to {path}", data.len())
            }
            5 => {
                let path = rng.pick(&files).clone();
                let length = rng.below(12000) as usize;
                let data = rng.bytes(length);
                volume.write_file(&path, &data).unwrap();
                format!("overwrite {path} ({} bytes)", data.len())
            }
            6 => {
                let path = rng.pick(&files).clone();
                let mut file = volume.open(&path, OpenOptions::write()).unwrap();
                let size = volume.file_metadata(&file).unwrap().size;
                let at = rng.below(u64::from(size) + 1);
                volume.seek(&mut file, SeekFrom::Start(at)).unwrap();
                let length = 1 + rng.below(1500) as usize;
                let data = rng.bytes(length);
                volume.write(&mut file, &data).unwrap();
                format!("write {} bytes at {at} of {path}", data.len())
            }
            7 | 8 => {
                let index = rng.below(files.len() as u64) as usize;
                let from = files[index].clone();
                match volume.rename(&from, &fresh) {
                    Ok(()) => files[index] = fresh.clone(),
                    Err(Error::AlreadyExists) => {}
                    Err(error) => panic!("step {step}: rename {from} to {fresh}: {error}"),
                }
                format!("rename {from} to {fresh}")
            }
            9 | 10 => {
                let index = rng.below(files.len() as u64) as usize;
                let path = files.swap_remove(index);
                volume.remove_file(&path).unwrap();
                format!("remove {path}")
            }
            _ => {
                let path = format!("{folder}/folder {}", rng.below(100));
                match volume.create_dir(&path) {
                    Ok(()) => folders.push(path.clone()),
                    Err(Error::AlreadyExists) => {}
                    Err(error) => panic!("step {step}: mkdir {path}: {error}"),
                }
                format!("mkdir {path}")
            }
        };
        done.push(what);
        // The service's write-back deadline, every few operations.
        if step % 3 == 2 {
            volume.flush().unwrap();
        }
    }
    log.borrow_mut().operation = done.len();
    volume.flush().unwrap();
    done.push("final flush".into());
    done
}

/// Returns the kinds of findings in `fsck.fat -n` output; fails on any kind not allowed.
fn classify(text: &str, context: &str) -> BTreeSet<&'static str> {
    let mut kinds = BTreeSet::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line.is_empty()
            || line.starts_with("fsck.fat ")
            || line.starts_with("Leaving filesystem unchanged")
            || line.contains(" files, ")
            || line.starts_with("Perform changes")
            || line.starts_with("Checking")
        {
            continue;
        }
        if line.starts_with("Reclaimed ") || line.contains("unused cluster") {
            kinds.insert("lost clusters");
            continue;
        }
        if line.starts_with("FATs differ") || line == "Using first FAT." {
            kinds.insert("FAT copies differ");
            continue;
        }
        if line.starts_with('/') {
            // A path; the finding is on the next lines.
            let detail = lines.get(i).map_or("", |next| next.trim());
            if detail.starts_with("File size is") && detail.contains("cluster chain length is >") {
                kinds.insert("size shorter than chain");
                i += 2;
                continue;
            }
        }
        panic!("{context}: fsck.fat reports a finding that is not allowed: {line}\n{text}");
    }
    kinds
}

/// Checks that the two FAT copies of `image` differ only where the write that the
/// crash cut off was about to bring the second copy in step with the first.
fn check_fat_copies(image: &[u8], pending: &[Written], context: &str) {
    let sector = |lba: u64| &image[lba as usize * 512..(lba as usize + 1) * 512];
    let reserved = u64::from(u16::from_le_bytes([image[14], image[15]]));
    let fat_sectors = u64::from(u16::from_le_bytes([image[22], image[23]]));
    for offset in 0..fat_sectors {
        let (first, second) = (reserved + offset, reserved + fat_sectors + offset);
        if sector(first) == sector(second) {
            continue;
        }
        let next = pending.iter().find(|written| written.lba == second);
        assert!(
            next.is_some_and(|written| written.data == sector(first)),
            "{context}: FAT sector {offset} differs between the copies, and not because \
             the second copy's write was cut off"
        );
    }
}

/// Mounts the crash image (whose `fsck.fat` findings are `kinds`), checks that the
/// mount repaired just those, reads every file, works on it, and checks that the result
/// is clean.
fn mount_and_use(image: &[u8], kinds: &BTreeSet<&str>, scratch: &Path, context: &str) {
    let mut volume = Volume::mount(RamDisk::from_bytes(image.to_vec()), FixedClock(NOW))
        .unwrap_or_else(|error| panic!("{context}: the next mount fails: {error}"));
    let info = volume.info();
    for (kind, repaired) in [
        ("lost clusters", info.reclaimed_clusters),
        ("size shorter than chain", info.trimmed_files),
        ("FAT copies differ", info.repaired_fat_sectors),
    ] {
        assert_eq!(
            kinds.contains(kind),
            repaired > 0,
            "{context}: fsck.fat found {kinds:?}, the mount repaired {info:?}"
        );
    }
    let tree = volume_tree(&mut volume);
    volume.create_dir("/after crash").unwrap();
    let data = Rng::new(tree.len() as u64).bytes(5000);
    volume
        .write_file("/after crash/new file.bin", &data)
        .unwrap();
    for (path, contents) in &tree {
        if contents.is_some() {
            let mut file = volume
                .open(
                    path,
                    OpenOptions {
                        append: true,
                        ..OpenOptions::default()
                    },
                )
                .unwrap();
            volume
                .write(&mut file, b"appended after the crash")
                .unwrap();
        }
    }
    if let Some(path) = tree.keys().find(|path| tree[*path].is_some()) {
        volume.rename(path, "/after crash/renamed").unwrap();
        volume.remove_file("/after crash/renamed").unwrap();
    }
    assert_eq!(volume.read_file("/after crash/new file.bin").unwrap(), data);
    let after = volume.unmount().unwrap().into_bytes();
    std::fs::write(scratch, &after).unwrap();
    let output = run("fsck.fat", &["-n", scratch.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let kinds = classify(&text, &format!("{context}, after the next mount"));
    assert!(
        kinds.is_empty(),
        "{context}: the volume is not clean after the next mount and use:\n{text}"
    );
}

#[test]
fn every_crash_point_leaves_only_allowed_findings() {
    let dir = temp_dir("crash");
    let image = dir.join("crash.img");
    mkfs(&image, 2200, &["-s", "1", "-r", "64"]);
    let initial = std::fs::read(&image).unwrap();
    let log = Rc::new(RefCell::new(Log::default()));
    let disk = Recording {
        disk: RamDisk::from_bytes(initial.clone()),
        log: log.clone(),
    };
    let mut volume = Volume::mount(disk, FixedClock(NOW)).unwrap();
    let operations = workload(&mut volume, &log);
    drop(volume);
    let log = log.take();
    let writes = log.writes;
    println!(
        "{} operations wrote {} sectors",
        operations.len(),
        writes.len()
    );

    let field = |at: usize| u64::from(u16::from_le_bytes([initial[at], initial[at + 1]]));
    // Reserved sectors, two FATs, the root directory.
    let data_start = field(14) + 2 * field(22) + field(17) * 32 / 512;
    let scratch = dir.join("scratch.img");
    let after_scratch = dir.join("after.img");
    let mut current = initial;
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for k in 0..=writes.len() {
        if k > 0 {
            let written = &writes[k - 1];
            let at = written.lba as usize * 512;
            current[at..at + 512].copy_from_slice(&written.data);
        }
        // A cut inside a long request (file data, in whole sectors) changes no
        // structure: check its ends, and every sector of short requests and below the
        // data region (boot sector, FATs, root directory).
        if let Some(written) = k.checked_sub(1).map(|i| &writes[i]) {
            if written.request_length > 4 && !written.last_of_request && written.lba >= data_start {
                continue;
            }
        }
        let interrupted = writes.get(k).map_or("nothing (all written)", |w| {
            operations[w.operation].as_str()
        });
        let context = format!(
            "crash after sector write {k} of {}, in: {interrupted}",
            writes.len()
        );
        std::fs::write(&scratch, &current).unwrap();
        let output = run("fsck.fat", &["-n", scratch.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        let kinds = classify(&text, &context);
        if kinds.contains("FAT copies differ") {
            check_fat_copies(&current, &writes[k..], &context);
        }
        for kind in &kinds {
            *seen.entry(kind).or_default() += 1;
        }
        *seen.entry("images checked").or_default() += 1;
        mount_and_use(&current, &kinds, &after_scratch, &context);
    }
    println!("findings by kind (images): {seen:?}");
    assert!(seen["images checked"] > 300, "{seen:?}");
}

#[test]
fn a_read_only_mount_repairs_nothing_and_a_writable_one_everything() {
    let dir = temp_dir("repair");
    let image = dir.join("repair.img");
    mkfs(&image, 2200, &["-s", "1"]);
    let mut volume = mount_image(&image);
    volume.write_file("/file.bin", &[1u8; 1500]).unwrap();
    let mut bytes = volume.unmount().unwrap().into_bytes();
    let field = |bytes: &[u8], at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let (fat, fat_sectors) = (field(&bytes, 14) * 512, field(&bytes, 22) * 512);
    // Cluster 100 allocated in both copies but in no chain (lost); cluster 101 only in
    // the first copy.
    for copy in [fat, fat + fat_sectors] {
        bytes[copy + 200..copy + 202].copy_from_slice(&0xFFFFu16.to_le_bytes());
    }
    bytes[fat + 202..fat + 204].copy_from_slice(&0xFFFFu16.to_le_bytes());
    let options = fs::MountOptions {
        read_only: true,
        ..fs::MountOptions::default()
    };
    let read_only =
        Volume::mount_with(RamDisk::from_bytes(bytes.clone()), FixedClock(NOW), options).unwrap();
    let info = read_only.info();
    assert_eq!((info.reclaimed_clusters, info.trimmed_files), (0, 0));
    assert_eq!(info.repaired_fat_sectors, 1, "counted, not written");
    assert_eq!(read_only.device().as_bytes(), &bytes[..]);

    let writable = Volume::mount(RamDisk::from_bytes(bytes), FixedClock(NOW)).unwrap();
    let info = writable.info();
    assert_eq!((info.repaired_fat_sectors, info.reclaimed_clusters), (1, 2));
    std::fs::write(&image, writable.unmount().unwrap().into_bytes()).unwrap();
    assert_fsck_clean(&image);
}
