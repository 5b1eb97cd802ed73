//! Failed operations change nothing: for every error each operation can return, the
//! image after the failure (and a flush) is byte for byte the image before it.

mod common;

use common::*;
use fs::{Attributes, Error, FixedClock, MountOptions, OpenOptions, RamDisk, SeekFrom, Volume};

/// Returns the volume's bytes once everything cached is written.
fn snapshot(volume: &mut TestVolume) -> Vec<u8> {
    volume.flush().unwrap();
    volume.device().as_bytes().to_vec()
}

/// Runs `operation`, expects `expected`, and checks that the image did not change.
fn fails_cleanly<T: std::fmt::Debug>(
    volume: &mut TestVolume,
    what: &str,
    expected: Error,
    operation: impl FnOnce(&mut TestVolume) -> Result<T, Error>,
) {
    let before = snapshot(volume);
    let result = operation(volume);
    assert!(
        matches!(&result, Err(error) if *error == expected),
        "{what}: expected {expected:?}, got {result:?}"
    );
    let after = snapshot(volume);
    if let Some(at) = before.iter().zip(&after).position(|(a, b)| a != b) {
        panic!(
            "{what} failed with {expected:?} but changed the image at byte {at} (sector {})",
            at / 512
        );
    }
}

/// Returns a volume with a few files and folders; `root_entries` sizes its root.
fn populated(name: &str, root_entries: &str) -> TestVolume {
    let dir = temp_dir(name);
    let image = dir.join("ops.img");
    mkfs(&image, 2200, &["-s", "1", "-r", root_entries]);
    let mut volume = mount_image(&image);
    volume.create_dir("/dir").unwrap();
    volume.create_dir("/dir/inner").unwrap();
    volume.write_file("/dir/inner/deep.txt", b"deep").unwrap();
    volume.write_file("/file.txt", &[7u8; 3000]).unwrap();
    volume
        .write_file("/a long name that needs several entries.txt", b"long")
        .unwrap();
    volume.write_file("/ro.txt", b"read only").unwrap();
    volume
        .set_attributes("/ro.txt", Attributes(Attributes::READ_ONLY))
        .unwrap();
    // A subdirectory whose only cluster (16 slots: `.`, `..` and 14) is full.
    volume.create_dir("/full").unwrap();
    for i in 0..14 {
        volume.write_file(&format!("/full/F{i}"), b"").unwrap();
    }
    volume
}

/// Uses up every free cluster with one file.
fn fill(volume: &mut TestVolume) {
    let free = volume.free_space().unwrap() as usize;
    volume.write_file("/filler.bin", &vec![1u8; free]).unwrap();
    assert_eq!(volume.free_space().unwrap(), 0);
}

/// Fills the root directory with short-named files until it refuses another.
fn fill_root(volume: &mut TestVolume) {
    for i in 0.. {
        match volume.write_file(&format!("/R{i}"), b"") {
            Ok(()) => {}
            Err(Error::DirectoryFull) => return,
            Err(other) => panic!("filling the root: {other}"),
        }
    }
}

fn create_new() -> OpenOptions {
    OpenOptions {
        write: true,
        create_new: true,
        ..OpenOptions::default()
    }
}

#[test]
fn name_and_path_errors_change_nothing() {
    let mut v = populated("names", "512");
    let long = format!("/{}", "x".repeat(256));
    for bad in [
        "/bad:name",
        "/a*b",
        "/trailing.",
        long.as_str(),
        "/dir/../x",
    ] {
        fails_cleanly(&mut v, bad, Error::InvalidName, |v| v.create_dir(bad));
        fails_cleanly(&mut v, bad, Error::InvalidName, |v| v.create(bad));
        fails_cleanly(&mut v, bad, Error::InvalidName, |v| v.write_file(bad, b"x"));
        fails_cleanly(&mut v, bad, Error::InvalidName, |v| {
            v.rename("/file.txt", bad)
        });
    }
    fails_cleanly(&mut v, "mkdir no parent", Error::NotFound, |v| {
        v.create_dir("/missing/new")
    });
    fails_cleanly(&mut v, "create no parent", Error::NotFound, |v| {
        v.create("/missing/new")
    });
    fails_cleanly(&mut v, "open missing", Error::NotFound, |v| {
        v.open("/missing.txt", OpenOptions::write())
    });
    fails_cleanly(&mut v, "rename missing", Error::NotFound, |v| {
        v.rename("/missing.txt", "/new.txt")
    });
    fails_cleanly(&mut v, "rename into missing", Error::NotFound, |v| {
        v.rename("/file.txt", "/missing/new.txt")
    });
    fails_cleanly(&mut v, "remove missing", Error::NotFound, |v| {
        v.remove_file("/missing.txt")
    });
    fails_cleanly(&mut v, "rmdir missing", Error::NotFound, |v| {
        v.remove_dir("/missing")
    });
    fails_cleanly(&mut v, "attributes missing", Error::NotFound, |v| {
        v.set_attributes("/missing", Attributes(0))
    });
    fails_cleanly(&mut v, "mkdir below a file", Error::NotADirectory, |v| {
        v.create_dir("/file.txt/new")
    });
    fails_cleanly(&mut v, "create below a file", Error::NotADirectory, |v| {
        v.create("/file.txt/new")
    });
    fails_cleanly(&mut v, "rename below a file", Error::NotADirectory, |v| {
        v.rename("/ro.txt", "/file.txt/new")
    });
    fails_cleanly(&mut v, "rmdir of a file", Error::NotADirectory, |v| {
        v.remove_dir("/file.txt")
    });
    fails_cleanly(&mut v, "mkdir existing", Error::AlreadyExists, |v| {
        v.create_dir("/DIR")
    });
    fails_cleanly(&mut v, "mkdir over a file", Error::AlreadyExists, |v| {
        v.create_dir("/FILE.TXT")
    });
    fails_cleanly(&mut v, "create_new existing", Error::AlreadyExists, |v| {
        v.open("/file.txt", create_new())
    });
    fails_cleanly(&mut v, "rename onto existing", Error::AlreadyExists, |v| {
        v.rename("/file.txt", "/ro.txt")
    });
    fails_cleanly(&mut v, "create a directory", Error::IsADirectory, |v| {
        v.create("/dir")
    });
    fails_cleanly(&mut v, "write_file a directory", Error::IsADirectory, |v| {
        v.write_file("/dir", b"x")
    });
    fails_cleanly(&mut v, "remove a directory", Error::IsADirectory, |v| {
        v.remove_file("/dir")
    });
    fails_cleanly(&mut v, "rmdir non-empty", Error::DirectoryNotEmpty, |v| {
        v.remove_dir("/dir")
    });
    for (what, path) in [("mkdir root", "/"), ("rmdir root", "/")] {
        let expected = Error::InvalidArgument(if what == "mkdir root" {
            "the root directory"
        } else {
            "cannot remove the root directory"
        });
        fails_cleanly(&mut v, what, expected, |v| {
            if what == "mkdir root" {
                v.create_dir(path)
            } else {
                v.remove_dir(path)
            }
        });
    }
    fails_cleanly(
        &mut v,
        "rename below itself",
        Error::InvalidArgument("cannot move a directory below itself"),
        |v| v.rename("/dir", "/dir/inner/dir"),
    );
    fails_cleanly(
        &mut v,
        "rename the root",
        Error::InvalidArgument("cannot rename the root directory"),
        |v| v.rename("/", "/x"),
    );
}

#[test]
fn read_only_refusals_change_nothing() {
    let mut v = populated("readonly", "512");
    fails_cleanly(&mut v, "truncate read-only", Error::ReadOnly, |v| {
        v.create("/ro.txt")
    });
    fails_cleanly(&mut v, "write_file read-only", Error::ReadOnly, |v| {
        v.write_file("/ro.txt", b"new")
    });
    fails_cleanly(&mut v, "open read-only for writing", Error::ReadOnly, |v| {
        v.open("/ro.txt", OpenOptions::write())
    });
    let mut reader = v.open("/file.txt", OpenOptions::read()).unwrap();
    fails_cleanly(
        &mut v,
        "write through a read handle",
        Error::ReadOnly,
        |v| v.write(&mut reader, b"x"),
    );
    let mut stale = v.open("/dir/inner/deep.txt", OpenOptions::write()).unwrap();
    v.remove_file("/dir/inner/deep.txt").unwrap();
    fails_cleanly(
        &mut v,
        "write through a stale handle",
        Error::StaleHandle,
        |v| v.write(&mut stale, b"x"),
    );
    fails_cleanly(
        &mut v,
        "set_len through a stale handle",
        Error::StaleHandle,
        |v| v.set_len(&mut stale, 10),
    );

    let bytes = snapshot(&mut v);
    let options = MountOptions {
        read_only: true,
        ..MountOptions::default()
    };
    let mut ro: TestVolume =
        Volume::mount_with(RamDisk::from_bytes(bytes), FixedClock(NOW), options).unwrap();
    fails_cleanly(&mut ro, "mkdir read-only mount", Error::ReadOnly, |v| {
        v.create_dir("/new")
    });
    fails_cleanly(&mut ro, "create read-only mount", Error::ReadOnly, |v| {
        v.create("/new")
    });
    fails_cleanly(&mut ro, "rename read-only mount", Error::ReadOnly, |v| {
        v.rename("/file.txt", "/new")
    });
    fails_cleanly(&mut ro, "remove read-only mount", Error::ReadOnly, |v| {
        v.remove_file("/file.txt")
    });
    fails_cleanly(
        &mut ro,
        "write_file read-only mount",
        Error::ReadOnly,
        |v| v.write_file("/file.txt", b"x"),
    );
}

#[test]
fn size_limits_change_nothing() {
    let mut v = populated("limits", "512");
    let mut file = v.open("/file.txt", OpenOptions::write()).unwrap();
    v.seek(&mut file, SeekFrom::Start(u64::from(u32::MAX) - 1))
        .unwrap();
    fails_cleanly(&mut v, "write past 4 GiB", Error::FileTooLarge, |v| {
        v.write(&mut file, b"xyz")
    });
    fails_cleanly(&mut v, "set_len past 4 GiB", Error::FileTooLarge, |v| {
        v.set_len(&mut file, 1 << 32)
    });
    // Larger than the volume: no clusters for it.
    fails_cleanly(&mut v, "set_len past the free space", Error::NoSpace, |v| {
        v.set_len(&mut file, 4 << 20)
    });
    v.seek(&mut file, SeekFrom::Start(0)).unwrap();
    fails_cleanly(&mut v, "write past the free space", Error::NoSpace, |v| {
        v.write(&mut file, &vec![3u8; 4 << 20])
    });
    let free = v.free_space().unwrap() as usize;
    // Replacing a 3000-byte file may use its own clusters again, but no more.
    fails_cleanly(&mut v, "replace beyond free space", Error::NoSpace, |v| {
        v.write_file("/file.txt", &vec![5u8; free + 3072 + 1])
    });
    fails_cleanly(&mut v, "new file beyond free space", Error::NoSpace, |v| {
        v.write_file("/new.bin", &vec![5u8; free + 1])
    });
    v.write_file("/file.txt", &vec![5u8; free + 3072]).unwrap();
    assert_eq!(v.free_space().unwrap(), 0);
}

#[test]
fn a_full_volume_refuses_cleanly() {
    let mut v = populated("nospace", "512");
    fill(&mut v);
    fails_cleanly(&mut v, "mkdir on a full volume", Error::NoSpace, |v| {
        v.create_dir("/new")
    });
    fails_cleanly(&mut v, "mkdir needing growth", Error::NoSpace, |v| {
        v.create_dir("/full/new")
    });
    fails_cleanly(&mut v, "create needing growth", Error::NoSpace, |v| {
        v.create("/full/new")
    });
    fails_cleanly(&mut v, "create_new needing growth", Error::NoSpace, |v| {
        v.open("/full/new", create_new())
    });
    fails_cleanly(&mut v, "rename needing growth", Error::NoSpace, |v| {
        v.rename("/file.txt", "/full/new")
    });
    fails_cleanly(&mut v, "write_file needing growth", Error::NoSpace, |v| {
        v.write_file("/full/new", b"")
    });
    fails_cleanly(&mut v, "new file with data", Error::NoSpace, |v| {
        v.write_file("/new.txt", b"x")
    });
    let mut file = v
        .open(
            "/file.txt",
            OpenOptions {
                append: true,
                ..OpenOptions::default()
            },
        )
        .unwrap();
    // 3000 bytes leave 72 in the last cluster; 100 more need a cluster.
    fails_cleanly(&mut v, "append on a full volume", Error::NoSpace, |v| {
        v.write(&mut file, &[9u8; 100])
    });
    v.write(&mut file, &[9u8; 72]).unwrap();
}

#[test]
fn a_full_root_refuses_cleanly() {
    let mut v = populated("rootfull", "32");
    fill_root(&mut v);
    fails_cleanly(&mut v, "mkdir in a full root", Error::DirectoryFull, |v| {
        v.create_dir("/new")
    });
    fails_cleanly(&mut v, "create in a full root", Error::DirectoryFull, |v| {
        v.create("/new")
    });
    fails_cleanly(
        &mut v,
        "write_file in a full root",
        Error::DirectoryFull,
        |v| v.write_file("/new", b"data"),
    );
    fails_cleanly(
        &mut v,
        "rename into a full root",
        Error::DirectoryFull,
        |v| v.rename("/dir/inner/deep.txt", "/deep.txt"),
    );
    // A long name needs more slots than a short one frees.
    v.remove_file("/R0").unwrap();
    fails_cleanly(
        &mut v,
        "long rename in the root",
        Error::DirectoryFull,
        |v| v.rename("/file.txt", "/a much longer name than before.txt"),
    );
    v.rename("/file.txt", "/short.txt").unwrap();
}
