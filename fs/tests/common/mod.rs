//! Shared helpers of the integration tests: the dosfstools and mtools oracles, temporary
//! directories, tree comparison and a small seeded PRNG.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use fs::{FixedClock, RamDisk, Timestamp, Volume};

/// The time every test volume is stamped with.
pub const NOW: Timestamp = Timestamp::new(2023, 4, 5, 6, 7, 8);

pub type TestVolume = Volume<RamDisk, FixedClock>;

/// Runs an external tool; fails the test with install instructions if it is missing.
pub fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run `{program}` ({error}): the fs oracle tests need dosfstools and mtools; \
                 install them (Debian: apt-get install dosfstools mtools)"
            )
        });
    output
}

/// Runs a tool and fails the test if it does not succeed.
pub fn run_ok(program: &str, args: &[&str]) -> Output {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Returns a fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fs-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes a FAT16 image of `size_kb` KiB with `mkfs.fat -F 16` and extra arguments.
pub fn mkfs(image: &Path, size_kb: u32, extra: &[&str]) {
    let _ = std::fs::remove_file(image);
    let size = size_kb.to_string();
    let mut args = vec!["-F", "16"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-C", image.to_str().unwrap(), &size]);
    run_ok("mkfs.fat", &args);
}

/// Copies every entry of `source` into the image's root with `mcopy -s -m`.
pub fn mcopy_in(image: &Path, source: &Path) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut args = vec![
        "-i".to_string(),
        image.to_str().unwrap().to_string(),
        "-s".into(),
        "-m".into(),
    ];
    args.extend(entries.iter().map(|p| p.to_str().unwrap().to_string()));
    args.push("::/".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok("mcopy", &args);
}

/// Extracts the whole image with `mcopy -s -m` into a new directory and returns it.
pub fn mcopy_out(image: &Path, name: &str) -> PathBuf {
    let out = temp_dir(name);
    run_ok(
        "mcopy",
        &[
            "-i",
            image.to_str().unwrap(),
            "-s",
            "-m",
            "-n",
            "::/",
            out.to_str().unwrap(),
        ],
    );
    out
}

/// Checks the image with `fsck.fat -n` and fails the test on any complaint.
pub fn assert_fsck_clean(image: &Path) {
    let output = run("fsck.fat", &["-n", image.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "fsck.fat -n failed:\n{text}");
    for word in [
        "differ",
        "lost",
        "dirty",
        "Free cluster summary",
        "Orphan",
        "truncat",
        "Deleting",
        "bad",
    ] {
        assert!(
            !text.contains(word),
            "fsck.fat -n complains ({word}):\n{text}"
        );
    }
}

/// A file system tree: path (with `/`) to `None` for a directory, or a file's bytes.
pub type Tree = BTreeMap<String, Option<Vec<u8>>>;

/// Returns the tree below `root` on the host.
pub fn host_tree(root: &Path) -> Tree {
    fn walk(dir: &Path, prefix: &str, tree: &mut Tree) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = format!("{prefix}/{name}");
            if entry.file_type().unwrap().is_dir() {
                tree.insert(path.clone(), None);
                walk(&entry.path(), &path, tree);
            } else {
                tree.insert(path, Some(std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    let mut tree = Tree::new();
    walk(root, "", &mut tree);
    tree
}

/// Returns the tree of a mounted volume, read through the crate.
pub fn volume_tree(volume: &mut TestVolume) -> Tree {
    fn walk(volume: &mut TestVolume, prefix: &str, tree: &mut Tree) {
        let dir = if prefix.is_empty() { "/" } else { prefix };
        for entry in volume.read_dir(dir).unwrap() {
            let path = format!("{prefix}/{}", entry.name);
            if entry.metadata.is_dir() {
                tree.insert(path.clone(), None);
                walk(volume, &path, tree);
            } else {
                let contents = volume.read_file(&path).unwrap();
                assert_eq!(contents.len() as u32, entry.metadata.size, "{path}");
                tree.insert(path, Some(contents));
            }
        }
    }
    let mut tree = Tree::new();
    walk(volume, "", &mut tree);
    tree
}

/// Fails with a readable difference if two trees differ.
pub fn assert_same_tree(ours: &Tree, theirs: &Tree, what: &str) {
    let our_keys: Vec<&String> = ours.keys().collect();
    let their_keys: Vec<&String> = theirs.keys().collect();
    assert_eq!(our_keys, their_keys, "{what}: names differ");
    for (path, contents) in ours {
        let other = &theirs[path];
        match (contents, other) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!(
                a == b,
                "{what}: contents of {path} differ ({} vs {} bytes)",
                a.len(),
                b.len()
            ),
            _ => panic!("{what}: {path} is a file on one side and a directory on the other"),
        }
    }
}

/// Mounts an image file with the test clock.
pub fn mount_image(image: &Path) -> TestVolume {
    let disk = RamDisk::from_bytes(std::fs::read(image).unwrap());
    Volume::mount(disk, FixedClock(NOW)).unwrap()
}

/// Unmounts a volume and writes its device back to the image file.
pub fn save_image(volume: TestVolume, image: &Path) {
    let disk = volume.unmount().unwrap();
    std::fs::write(image, disk.into_bytes()).unwrap();
}

/// The shared generator, so failures reproduce from the seed.
pub use percore::random::XorShift64 as Rng;

/// What the tests draw from the generator besides numbers.
pub trait Draw {
    /// Returns `count` generated bytes.
    fn bytes(&mut self, count: usize) -> Vec<u8>;
    /// Returns one of `items` (which must not be empty).
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T;
}

impl Draw for Rng {
    fn bytes(&mut self, count: usize) -> Vec<u8> {
        let mut bytes = vec![0; count];
        self.fill(&mut bytes);
        bytes
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
