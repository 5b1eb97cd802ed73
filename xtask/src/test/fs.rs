//! fs tests: the `files` app on a vvfat share (the host then finds the guest's file) and
//! on a `mkfs.fat` image (then `fsck.fat -n` finds it clean and `mtype` reads the file),
//! at every core count a user can choose and with every service on one core.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::runner::{
    remove_scratch, require_line, require_success, run_xtask, scratch_dir, Case, CaseResult,
    Context, Failure, WithTail,
};
use crate::qemu::{self, Machine};

/// A `files` run: on `cores` cores, with these extra kernel arguments.
#[derive(Clone, Copy, Debug)]
struct Files {
    machine: Machine,
    cores: usize,
    kernel_args: &'static [&'static str],
}

/// Returns the fs tests.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for machine in [Machine::Q35, Machine::Pc, Machine::Microvm] {
        let run = Files {
            machine,
            cores: 4,
            kernel_args: &[],
        };
        cases.push(Case::boot(
            format!("files {} vvfat share", machine.name()),
            move |context: &Context| run_fs_share(context, run),
        ));
        cases.push(Case::boot(
            format!("files {} mkfs.fat image", machine.name()),
            move |context: &Context| run_fs_image(context, run),
        ));
    }
    // Every size a user can choose: the services share cores below four.
    for cores in [1, 2, 3] {
        let run = Files {
            machine: Machine::Q35,
            cores,
            kernel_args: &[],
        };
        cases.push(Case::boot(
            format!("files q35 x{cores} vvfat share"),
            move |context: &Context| run_fs_share(context, run),
        ));
    }
    let crowded = Files {
        machine: Machine::Q35,
        cores: 4,
        kernel_args: &["place.blk=0", "place.fs=0", "place.net=0"],
    };
    cases.push(Case::boot(
        "files q35 x4 every service on core 0",
        move |context: &Context| run_fs_share(context, crowded),
    ));
    // Small memory: the service reserve scales down, and a run that cannot fit a device
    // says how much memory it needs.
    cases.push(Case::boot("files q35 x2 --mem 32M", |context: &Context| {
        let (dir, share) = filled_folder("mem32", "share")?;
        let mut config = context.config(Machine::Q35, 2, "files");
        config.mem = crate::qemu::MemSize::from_mebibytes(32);
        config.disks = vec![qemu::DiskSpec {
            path: format!("fat:rw:{}", share.display()),
            read_only: false,
        }];
        config.kernel_args = vec!["fs.disk=disk0".into()];
        let outcome = context.run(&config)?;
        require_success(&outcome)?;
        remove_scratch(&dir);
        Ok(())
    }));
    cases.push(Case::boot(
        "fs-bench q35 x3 --mem 96M streams a 200 MiB file from a vvfat share",
        streams_a_big_file,
    ));
    cases.push(Case::boot(
        "files q35 x3 --mem 10M names the memory needed",
        |context: &Context| {
            let (dir, share) = filled_folder("mem10", "share")?;
            let mut config = context.config(Machine::Q35, 3, "files");
            config.mem = crate::qemu::MemSize::from_mebibytes(10);
            config.disks = vec![qemu::DiskSpec {
                path: format!("fat:rw:{}", share.display()),
                read_only: false,
            }];
            config.kernel_args = vec!["fs.disk=disk0".into()];
            let outcome = context.run(&config)?;
            let said = outcome.console.iter().any(|line| {
                line.starts_with("manada: blk: the device-service reserve")
                    && line.contains("run with --mem ")
            });
            if !said || outcome.status != qemu::Status::KernelFailure {
                return Err(
                    "a run without room for its disk did not say how much --mem it needs"
                        .to_string(),
                )
                .tail_of(&outcome);
            }
            remove_scratch(&dir);
            Ok(())
        },
    ));
    cases.push(Case::boot(
        "files q35 run --disk: the user's image is mounted",
        run_users_disk_wins,
    ));
    cases.push(Case::boot(
        "files q35 fs.disk=disk7 refused at boot",
        |context: &Context| {
            let (dir, share) = filled_folder("disk7", "share")?;
            let mut config = context.config(Machine::Q35, 2, "files");
            config.disks = vec![qemu::DiskSpec {
                path: format!("fat:rw:{}", share.display()),
                read_only: false,
            }];
            config.kernel_args = vec!["fs.disk=disk7".into()];
            let outcome = context.run(&config)?;
            let named = outcome.console.iter().any(|line| {
                line.contains("manada: fs.disk=disk7: no such disk; the only disk is disk0")
            });
            if !named || outcome.status != qemu::Status::KernelFailure {
                return Err("the kernel did not refuse a disk that does not exist".to_string())
                    .tail_of(&outcome);
            }
            remove_scratch(&dir);
            Ok(())
        },
    ));
    cases.push(Case::host("run --kernel-arg fs.disk=disk7 refused", || {
        let run = run_xtask(
            &[
                "run",
                "--app",
                "files",
                "--kernel-arg",
                "fs.disk=disk7",
                "--kernel",
                "/nonexistent/manada",
            ],
            Duration::from_secs(30),
        )?;
        let named = run.output.contains("fs.disk=disk7: no disk is attached");
        if run.success || !named || run.output.contains("xtask: running") {
            return Err(Failure {
                reason: "xtask did not refuse a disk that does not exist before QEMU".into(),
                tail: run.output.lines().map(String::from).collect(),
            });
        }
        Ok(())
    }));
    cases
}

/// `xtask run --app files --disk IMAGE` (then with `fs.disk=disk0` named too) mounts the
/// user's image, not the default share: a blank image fails the run, naming the disk.
fn run_users_disk_wins(context: &Context) -> CaseResult {
    let dir = scratch_dir("users-disk")?;
    let image = dir.join("blank.img");
    fs::write(&image, vec![0u8; 1 << 20]).map_err(|error| error.to_string())?;
    let image = image.display().to_string();
    let kernel = context.kernel.display().to_string();
    for named in [false, true] {
        let mut args = vec![
            "run",
            "--app",
            "files",
            "--cores",
            "2",
            "--accel",
            "tcg",
            "--timeout",
            "60",
            "--kernel",
            &kernel,
            "--disk",
            &image,
        ];
        if named {
            args.extend(["--kernel-arg", "fs.disk=disk0"]);
        }
        let run = run_xtask(&args, Duration::from_secs(90))?;
        let tail = || run.output.lines().map(String::from).collect();
        if run.output.contains("sharing") {
            return Err(Failure {
                reason: "xtask shared a folder although the user gave a disk".into(),
                tail: tail(),
            });
        }
        if run.success || !run.output.contains("manada: fs: cannot mount disk0") {
            return Err(Failure {
                reason: "a blank --disk image was not the volume the fs service tried".into(),
                tail: tail(),
            });
        }
    }
    remove_scratch(&dir);
    Ok(())
}

/// Where `files` writes (apps/src/files.rs), and what.
const FILES_WRITTEN: &str = "from-manada/greeting.txt";

/// Returns what `files` writes when it runs on `cores` cores.
fn files_text(cores: usize) -> String {
    format!("written by manada on {cores} cores\n")
}
const HELLO_TEXT: &str = "hello from the host, for the test\n";

/// Fills `dir` with the files `files` expects: hello.txt, and a long name in a folder.
fn fill_share(dir: &Path) -> Result<(), String> {
    let io = |error: std::io::Error| format!("cannot fill {}: {error}", dir.display());
    fs::write(dir.join("hello.txt"), HELLO_TEXT).map_err(io)?;
    fs::create_dir_all(dir.join("docs")).map_err(io)?;
    fs::write(dir.join("docs").join("A long file name.txt"), "nested\n").map_err(io)
}

/// Runs `files` with `disk` as the fs service's volume and checks the console.
fn run_files(context: &Context, run: Files, disk: qemu::DiskSpec) -> CaseResult {
    let mut config = context.config(run.machine, run.cores, "files");
    config.disks = vec![disk];
    config.kernel_args = std::iter::once("fs.disk=disk0")
        .chain(run.kernel_args.iter().copied())
        .map(String::from)
        .collect();
    let outcome = context.run(&config)?;
    require_success(&outcome)?;
    let wrote = format!(
        "files: wrote /from-manada/greeting.txt ({} bytes) and read it back",
        files_text(run.cores).len()
    );
    for line in [
        "files: hello.txt says: hello from the host, for the test",
        "files:   docs/",
        wrote.as_str(),
    ] {
        require_line(&outcome, line)?;
    }
    Ok(())
}

/// Returns a new scratch folder `scratch` and, inside it, the folder `name` holding the
/// files the `files` app expects.
fn filled_folder(scratch: &str, name: &str) -> Result<(PathBuf, PathBuf), String> {
    let dir = scratch_dir(scratch)?;
    let folder = dir.join(name);
    fs::create_dir_all(&folder).map_err(|error| error.to_string())?;
    fill_share(&folder)?;
    Ok((dir, folder))
}

/// `files` on a folder shared through vvfat; the new file must appear on the host.
fn run_fs_share(context: &Context, run: Files) -> CaseResult {
    let scratch = format!(
        "share-{}-x{}-{}",
        run.machine.name(),
        run.cores,
        run.kernel_args.len()
    );
    let (dir, share) = filled_folder(&scratch, "share")?;
    let disk = qemu::DiskSpec {
        path: format!("fat:rw:{}", share.display()),
        read_only: false,
    };
    run_files(context, run, disk)?;
    let written = fs::read_to_string(share.join(FILES_WRITTEN))
        .map_err(|error| format!("the guest's file is not in the shared folder: {error}"))?;
    let expected = files_text(run.cores);
    if written != expected {
        return Err(Failure::from(format!(
            "the shared folder holds {written:?}, expected {expected:?}"
        )));
    }
    remove_scratch(&dir);
    Ok(())
}

/// `files` on an image made by mkfs.fat and mcopy; fsck.fat must find it clean and
/// mtype must read the guest's file.
fn run_fs_image(context: &Context, run: Files) -> CaseResult {
    let (dir, content) = filled_folder(&format!("image-{}", run.machine.name()), "content")?;
    let image = dir.join("volume.img");
    crate::mkimage::main(&crate::mkimage::MkimageArgs {
        dir: content,
        image: image.clone(),
        size_mib: 32,
    })?;
    let disk = qemu::DiskSpec {
        path: image.display().to_string(),
        read_only: false,
    };
    run_files(context, run, disk)?;
    let fsck = Command::new("fsck.fat")
        .arg("-n")
        .arg(&image)
        .output()
        .map_err(|error| format!("cannot run fsck.fat: {error}"))?;
    if !fsck.status.success() {
        let report = String::from_utf8_lossy(&fsck.stdout)
            .lines()
            .map(String::from)
            .collect();
        return Err(Failure {
            reason: "fsck.fat -n found problems in the image the guest wrote".into(),
            tail: report,
        });
    }
    let mtype = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&image)
        .arg(format!("::/{FILES_WRITTEN}"))
        .output()
        .map_err(|error| format!("cannot run mtype: {error}"))?;
    if String::from_utf8_lossy(&mtype.stdout) != files_text(run.cores) {
        return Err(Failure::from(format!(
            "mtype reads {:?} from the image",
            String::from_utf8_lossy(&mtype.stdout)
        )));
    }
    remove_scratch(&dir);
    Ok(())
}

/// The size of the file `streams_a_big_file` reads: more than the whole guest's memory.
const BIG_FILE_BYTES: u64 = 200 << 20;

/// `fs-bench` on a 96 MiB guest (about 29 MiB per core) reads a 200 MiB file of a vvfat
/// share to its end: reads stream through one buffer, in constant memory.
fn streams_a_big_file(context: &Context) -> CaseResult {
    let dir = scratch_dir("fs-big-file")?;
    let share = dir.join("share");
    fs::create_dir_all(share.join("small")).map_err(|error| error.to_string())?;
    // A sparse file: vvfat reads it as zeros, and the host writes nothing.
    fs::File::create(share.join("big.bin"))
        .and_then(|file| file.set_len(BIG_FILE_BYTES))
        .map_err(|error| format!("cannot make the 200 MiB file: {error}"))?;
    for index in 0..4 {
        fs::write(
            share.join("small").join(format!("f{index}.txt")),
            [b'x'; 3000],
        )
        .map_err(|error| error.to_string())?;
    }
    let mut config = context.config(Machine::Q35, 3, "fs-bench");
    config.mem = crate::qemu::MemSize::from_mebibytes(96);
    config.disks = vec![qemu::DiskSpec {
        path: format!("fat:rw:{}", share.display()),
        read_only: false,
    }];
    config.kernel_args = vec!["fs.disk=disk0".into()];
    let outcome = context.run(&config)?;
    require_success(&outcome)?;
    require_line(
        &outcome,
        &format!("fs-bench: streamed {BIG_FILE_BYTES} bytes of /big.bin"),
    )?;
    if let Some(line) = outcome
        .console
        .iter()
        .find(|line| line.starts_with("fs-bench: seq_read"))
    {
        println!("xtask: 200 MiB through a 96 MiB guest: {line}");
    }
    remove_scratch(&dir);
    Ok(())
}
