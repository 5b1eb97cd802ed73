//! 10,000 mutated images (bit flips and byte overwrites in the boot sector, the FATs and
//! the directories of a real mkfs.fat/mcopy image), each listed, read in full and written
//! to: the crate must return errors, never panic or hang.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fs::{BlockDevice, FixedClock, IoError, MountOptions, OpenOptions, SeekFrom, Volume};

const CASES: u64 = 10_000;
/// Device requests allowed per case: a bound on work even if a loop went through I/O.
const STEP_BOUND: u64 = 200_000;
/// A case that runs this long counts as a hang.
const HANG: Duration = Duration::from_secs(20);

/// A copy-on-write view of the base image, with a budget of requests.
struct Overlay<'a> {
    base: &'a [u8],
    changed: BTreeMap<u64, [u8; 512]>,
    requests: u64,
}

impl Overlay<'_> {
    fn sector(&self, lba: u64) -> [u8; 512] {
        match self.changed.get(&lba) {
            Some(sector) => *sector,
            None => self.base[lba as usize * 512..(lba as usize + 1) * 512]
                .try_into()
                .unwrap(),
        }
    }

    fn charge(&mut self, lba: u64, len: usize) -> Result<(), IoError> {
        self.requests += 1;
        if self.requests > STEP_BOUND {
            return Err(IoError::Device);
        }
        if !len.is_multiple_of(512) || lba + (len / 512) as u64 > self.sector_count() {
            return Err(IoError::OutOfRange);
        }
        Ok(())
    }
}

impl BlockDevice for Overlay<'_> {
    fn sector_count(&self) -> u64 {
        (self.base.len() / 512) as u64
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.charge(lba, buf.len())?;
        for (i, chunk) in buf.chunks_exact_mut(512).enumerate() {
            chunk.copy_from_slice(&self.sector(lba + i as u64));
        }
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError> {
        self.charge(lba, buf.len())?;
        for (i, chunk) in buf.chunks_exact(512).enumerate() {
            self.changed
                .insert(lba + i as u64, chunk.try_into().unwrap());
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

/// Returns the base image: nested directories, long names, files of many sizes.
fn base_image() -> Vec<u8> {
    let dir = temp_dir("corrupt");
    let source = dir.join("source");
    let mut rng = Rng::new(99);
    std::fs::create_dir_all(source.join("Folder One/Sub Folder")).unwrap();
    std::fs::create_dir_all(source.join("EMPTYDIR")).unwrap();
    for (i, size) in [0usize, 1, 600, 1500, 5000, 12_000].iter().enumerate() {
        std::fs::write(
            source.join(format!("file number {i}.bin")),
            rng.bytes(*size),
        )
        .unwrap();
        std::fs::write(
            source.join(format!("Folder One/F{i}.DAT")),
            rng.bytes(size / 2),
        )
        .unwrap();
        std::fs::write(
            source.join(format!("Folder One/Sub Folder/a rather long name {i}.txt")),
            rng.bytes(*size),
        )
        .unwrap();
    }
    let image = dir.join("base.img");
    mkfs(&image, 2200, &["-s", "1", "-r", "64"]);
    mcopy_in(&image, &source);
    std::fs::read(&image).unwrap()
}

/// Regions worth mutating, as sector ranges: boot sector, FATs, root, first data sectors.
fn regions(image: &[u8]) -> Vec<(u64, u64)> {
    let reserved = u64::from(u16::from_le_bytes([image[14], image[15]]));
    let fats = u64::from(image[16]);
    let fat_sectors = u64::from(u16::from_le_bytes([image[22], image[23]]));
    let root_sectors = u64::from(u16::from_le_bytes([image[17], image[18]])) * 32 / 512;
    let root = reserved + fats * fat_sectors;
    let data = root + root_sectors;
    vec![
        (0, 1),
        (reserved, reserved + 2),
        (reserved + fat_sectors, reserved + fat_sectors + 2),
        (root, data),
        (data, data + 80),
    ]
}

fn mutate(rng: &mut Rng, overlay: &mut Overlay, regions: &[(u64, u64)]) {
    for _ in 0..=rng.below(4) {
        let (start, end) = *rng.pick(regions);
        let lba = start + rng.below(end - start);
        let mut sector = overlay.sector(lba);
        let offset = rng.below(512) as usize;
        match rng.below(4) {
            0 => sector[offset] ^= 1 << rng.below(8),
            1 => {
                sector[offset] = *rng.pick(&[
                    0x00, 0xFF, 0xF7, 0xF8, 0xE5, 0x0F, 0x10, 0x2E, 0x05, 0x41, 0x80,
                ])
            }
            2 => sector[offset] = rng.next_u64() as u8,
            _ => {
                let at = offset & !1;
                let value = match rng.below(3) {
                    0 => rng.below(0x1_0000) as u16,
                    1 => rng.below(4400) as u16,
                    _ => *rng.pick(&[0u16, 1, 2, 0xFFF7, 0xFFF8, 0xFFFF, 0xFFF0]),
                };
                sector[at..at + 2].copy_from_slice(&value.to_le_bytes());
            }
        }
        overlay.changed.insert(lba, sector);
    }
}

/// Lists, reads and writes whatever the mutated volume lets through.
fn exercise(volume: &mut Volume<Overlay, FixedClock>) {
    let mut pending = vec![(String::new(), 0)];
    let mut visited = 0;
    let mut files = Vec::new();
    while let Some((path, depth)) = pending.pop() {
        let Ok(entries) = volume.read_dir(if path.is_empty() { "/" } else { &path }) else {
            continue;
        };
        for entry in entries {
            visited += 1;
            if visited > 2000 {
                break;
            }
            let child = format!("{path}/{}", entry.name);
            let _ = volume.metadata(&child);
            if entry.metadata.is_dir() {
                // Corrupt directories may point at their ancestors: bound the depth.
                if depth < 6 {
                    pending.push((child, depth + 1));
                }
            } else {
                files.push(child);
            }
        }
    }
    let mut buffer = [0u8; 4096];
    for path in &files {
        if let Ok(mut file) = volume.open(path, OpenOptions::read()) {
            while let Ok(count) = volume.read(&mut file, &mut buffer) {
                if count == 0 {
                    break;
                }
            }
        }
    }
    let _ = volume.write_file("/fuzz new file.bin", &[0xAB; 3000]);
    let _ = volume.create_dir("/fuzzdir");
    if let Some(path) = files.first() {
        if let Ok(mut file) = volume.open(path, OpenOptions::write()) {
            let _ = volume.seek(&mut file, SeekFrom::End(100));
            let _ = volume.write(&mut file, &[1; 700]);
            let _ = volume.set_len(&mut file, 10);
        }
        let _ = volume.rename(path, "/fuzzdir/moved.bin");
        let _ = volume.remove_file("/fuzzdir/moved.bin");
    }
    let _ = volume.remove_dir("/fuzzdir");
    let _ = volume.flush();
}

#[test]
fn mutated_images_never_panic_or_hang() {
    let base = base_image();
    let regions = regions(&base);
    let progress = Arc::new(AtomicU64::new(0));
    let watched = Arc::clone(&progress);
    std::thread::spawn(move || {
        let mut last = (u64::MAX, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let case = watched.load(Ordering::Relaxed);
            if case == u64::MAX {
                return;
            }
            if case != last.0 {
                last = (case, Instant::now());
            } else if last.1.elapsed() > HANG {
                eprintln!(
                    "corrupt image case {case} hangs (more than {HANG:?}); rerun with that seed"
                );
                std::process::abort();
            }
        }
    });
    let started = Instant::now();
    let mut mounted = 0;
    for case in 0..CASES {
        progress.store(case, Ordering::Relaxed);
        let mut rng = Rng::new(case + 1);
        let mut overlay = Overlay {
            base: &base,
            changed: BTreeMap::new(),
            requests: 0,
        };
        mutate(&mut rng, &mut overlay, &regions);
        let options = MountOptions {
            cache_sectors: 16,
            ..MountOptions::default()
        };
        if let Ok(mut volume) = Volume::mount_with(overlay, FixedClock(NOW), options) {
            mounted += 1;
            exercise(&mut volume);
        }
    }
    progress.store(u64::MAX, Ordering::Relaxed);
    println!(
        "{CASES} mutated images, {mounted} mounted, in {:?}",
        started.elapsed()
    );
    assert!(
        mounted > CASES / 2,
        "most mutations should leave a mountable volume ({mounted})"
    );
}
