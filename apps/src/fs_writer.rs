//! `fs-writer`: a writing workload for crash tests. Worker threads on two application
//! cores create, append to, overwrite, rename and remove files and make and remove
//! folders, each worker in its own folder `/writer-W`, round after round: forever, or
//! `rounds=N` rounds (`--kernel-arg rounds=N`). Everything written is read back and
//! checked within the run.
//!
//! It starts by reading every file under the `/writer-*` folders whole, so a run after
//! a crash shows that the volume mounts and reads. Markers: `fs-writer: found F files
//! (B bytes) from earlier runs, all readable`, then `fs-writer: worker W round N ok`
//! after each round of each worker, and `fs-writer: done: N rounds by W workers`, after which it writes `/writer-done.txt`. With
//! `hold=1` it then waits for ever instead of ending the run, so a test can kill the
//! machine later and find that the write-back deadline, not the sync at exit, put every
//! change on the disk; with `end=fail` main returns an error after the rounds, so a test
//! sees that the sync at exit follows a failed main too.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::app::{app_cores, App, AppError};
use fs::api;
use percore::println;

pub(crate) const APP: App = App {
    name: "fs-writer",
    summary: "create, append, overwrite, rename and remove files from two cores (crash workload)",
    main,
};

/// Written last of all, after the rounds; a test reads it from the image.
const DONE_FILE: &str = "/writer-done.txt";
/// Worker threads, spread over the application cores.
const WORKERS: usize = 2;
/// The log file is started again once it is this long.
const LOG_LIMIT: u64 = 128 * 1024;

fn fail(what: &'static str, error: fs::Error) -> AppError {
    println!("fs-writer: {what}: {error}");
    AppError(what)
}

fn main() -> Result<(), AppError> {
    let rounds = percore::boot_info()
        .command_line()
        .get("rounds")
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(0);
    let (files, bytes) = read_earlier_runs()?;
    println!("fs-writer: found {files} files ({bytes} bytes) from earlier runs, all readable");
    let cores = app_cores();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let core = cores[worker % cores.len()];
            percore::try_spawn_on(core, move || work(worker, rounds))
                .map_err(|_| AppError("cannot start a worker"))
        })
        .collect::<Result<_, _>>()?;
    for worker in workers {
        worker.join()?;
    }
    println!("fs-writer: done: {rounds} rounds by {WORKERS} workers");
    // The last change of the run, right before main returns: only the kernel's sync at
    // exit (or the write-back deadline, with `hold=1`) can put it on the disk in time.
    // (Not `api::write`, which flushes by itself.)
    api::File::create(DONE_FILE)
        .and_then(|mut file| {
            file.write_all(format!("{rounds} rounds by {WORKERS} workers\n").as_bytes())
        })
        .map_err(|error| fail("cannot write the done file", error))?;
    let command_line = percore::boot_info().command_line();
    if command_line.get("hold") == Some("1") {
        loop {
            percore::sleep(core::time::Duration::from_secs(3600));
        }
    }
    if command_line.get("end") == Some("fail") {
        // The kernel syncs the volume after a failed main too; a test checks that.
        return Err(AppError("ended with a failure on purpose (end=fail)"));
    }
    Ok(())
}

/// Reads every file below the workers' folders to its end; returns files and bytes.
fn read_earlier_runs() -> Result<(u64, u64), AppError> {
    let mut pending: Vec<String> = api::read_dir("/")
        .map_err(|error| fail("cannot list the root", error))?
        .into_iter()
        .filter(|entry| entry.metadata.is_dir() && entry.name.starts_with("writer-"))
        .map(|entry| format!("/{}", entry.name))
        .collect();
    let (mut files, mut bytes) = (0, 0);
    while let Some(folder) = pending.pop() {
        for entry in api::read_dir(&folder).map_err(|error| fail("cannot list", error))? {
            let path = format!("{folder}/{}", entry.name);
            if entry.metadata.is_dir() {
                pending.push(path);
                continue;
            }
            let mut file = api::File::open(&path).map_err(|error| fail("cannot open", error))?;
            let mut buffer = Vec::new();
            let mut length = 0u64;
            loop {
                buffer = file
                    .read_chunk(buffer, 64 * 1024)
                    .map_err(|error| fail("cannot read a file of an earlier run", error))?;
                if buffer.is_empty() {
                    break;
                }
                length += buffer.len() as u64;
            }
            if length != u64::from(entry.metadata.size) {
                println!(
                    "fs-writer: {path} read {length} bytes of {}",
                    entry.metadata.size
                );
                return Err(AppError("a file reads shorter than its size"));
            }
            files += 1;
            bytes += length;
        }
    }
    Ok((files, bytes))
}

/// Returns `length` bytes that depend on `seed`, to tell one write from another.
fn pattern(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Removes `path` if it is there.
fn remove_if_there(path: &str) -> Result<(), AppError> {
    match api::remove_file(path) {
        Ok(()) | Err(fs::Error::NotFound) => Ok(()),
        Err(error) => Err(fail("cannot remove a file", error)),
    }
}

/// Checks that the file at `path` holds `expected`.
fn check(path: &str, expected: &[u8]) -> Result<(), AppError> {
    let back = api::read(path).map_err(|error| fail("cannot read back", error))?;
    if back != expected {
        println!(
            "fs-writer: {path} reads {} bytes, not the {} written",
            back.len(),
            expected.len()
        );
        return Err(AppError("a file read back differs from what was written"));
    }
    Ok(())
}

/// One worker: rounds of changes in `/writer-W`.
fn work(worker: usize, rounds: u64) -> Result<(), AppError> {
    let folder = format!("/writer-{worker}");
    match api::create_dir(&folder) {
        Ok(()) | Err(fs::Error::AlreadyExists) => {}
        Err(error) => return Err(fail("cannot create the worker's folder", error)),
    }
    let mut round = 0u64;
    while rounds == 0 || round < rounds {
        round += 1;
        one_round(&folder, (worker as u64) << 40 | round)?;
        println!("fs-writer: worker {worker} round {round} ok");
    }
    Ok(())
}

fn one_round(folder: &str, seed: u64) -> Result<(), AppError> {
    // Create (or replace) a few files of different sizes.
    let mut contents = Vec::new();
    for index in 0..4u64 {
        let length = 1 + (seed.wrapping_mul(index + 7) % (24 * 1024)) as usize;
        let data = pattern(seed + index, length);
        let path = format!("{folder}/file {index}.dat");
        api::write(&path, &data).map_err(|error| fail("cannot create a file", error))?;
        contents.push(data);
    }
    check(&format!("{folder}/file 3.dat"), &contents[3])?;

    // Append to the log, starting it again when it grew long.
    let log = format!("{folder}/log.txt");
    let mut file = match api::File::open_with(
        &log,
        fs::OpenOptions {
            append: true,
            create: true,
            ..fs::OpenOptions::default()
        },
    ) {
        Ok(file) => file,
        Err(error) => return Err(fail("cannot open the log", error)),
    };
    let size = file
        .metadata()
        .map_err(|error| fail("cannot stat the log", error))?
        .size;
    if u64::from(size) > LOG_LIMIT {
        api::write(&log, b"").map_err(|error| fail("cannot restart the log", error))?;
    }
    let line = pattern(seed ^ 0x10, 700 + (seed % 2000) as usize);
    file.write_all(&line)
        .map_err(|error| fail("cannot append to the log", error))?;

    // Overwrite the middle of a file in place.
    let mut file = api::File::open_with(&format!("{folder}/file 0.dat"), fs::OpenOptions::write())
        .map_err(|error| fail("cannot open for overwriting", error))?;
    let middle = contents[0].len() / 2;
    let patch = pattern(seed ^ 0x20, 3000);
    file.seek(fs::SeekFrom::Start(middle as u64))
        .map_err(|error| fail("cannot seek", error))?;
    file.write_all(&patch)
        .map_err(|error| fail("cannot overwrite", error))?;
    let mut expected = contents[0][..middle].to_vec();
    expected.extend_from_slice(&patch);
    if contents[0].len() > expected.len() {
        expected.extend_from_slice(&contents[0][expected.len()..]);
    }
    check(&format!("{folder}/file 0.dat"), &expected)?;

    // Rename within the folder and into a subfolder, then remove.
    let renamed = format!("{folder}/renamed with a long name.dat");
    remove_if_there(&renamed)?;
    api::rename(&format!("{folder}/file 1.dat"), &renamed)
        .map_err(|error| fail("cannot rename", error))?;
    check(&renamed, &contents[1])?;
    let sub = format!("{folder}/sub");
    match api::create_dir(&sub) {
        Ok(()) | Err(fs::Error::AlreadyExists) => {}
        Err(error) => return Err(fail("cannot create a subfolder", error)),
    }
    let moved = format!("{sub}/moved.dat");
    remove_if_there(&moved)?;
    api::rename(&format!("{folder}/file 2.dat"), &moved)
        .map_err(|error| fail("cannot move into the subfolder", error))?;
    check(&moved, &contents[2])?;
    api::remove_file(&renamed).map_err(|error| fail("cannot remove", error))?;
    api::remove_file(&moved).map_err(|error| fail("cannot remove", error))?;

    // A folder made and removed again.
    let temporary = format!("{folder}/folder {}", seed % 8);
    match api::create_dir(&temporary) {
        Ok(()) | Err(fs::Error::AlreadyExists) => {}
        Err(error) => return Err(fail("cannot create a folder", error)),
    }
    let inside = format!("{temporary}/inside.txt");
    api::write(&inside, b"in a folder").map_err(|error| fail("cannot write", error))?;
    api::remove_file(&inside).map_err(|error| fail("cannot remove", error))?;
    api::remove_dir(&temporary).map_err(|error| fail("cannot remove a folder", error))?;
    Ok(())
}
