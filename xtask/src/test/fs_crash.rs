//! fs crash tests: QEMU killed at random moments while `fs-writer` creates, appends,
//! overwrites, renames and removes files from two cores; after every kill `fsck.fat -n`
//! may find only what a crash is allowed to leave, and the next boot mounts the image,
//! repairs it and keeps working on it. Also: the write-back deadline, the sync after a
//! failed main, and FAT times from the real-time clock.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percore::random::XorShift64;

use super::runner::{
    remove_scratch, require_line, scratch_dir, Case, CaseResult, Context, Failure, WithTail,
};
use crate::qemu::{self, Machine, QemuConfig, Status};

/// Kills in the full run (at least 20, as the durability rule's tests promise).
const KILLS: usize = 20;
/// The size of the test volume, in 512-byte sectors (32 MiB).
const VOLUME_SECTORS: u64 = 65536;

/// Returns the fs crash tests.
pub fn cases() -> Vec<Case> {
    vec![
        Case::boot(
            "fs-writer q35 x3 killed 20 times, fsck after each",
            |context| run_kills(context, KILLS),
        ),
        Case::boot("fs-writer q35 x3 write-back within 200 ms", run_write_back),
        Case::boot(
            "fs-writer q35 x3 synced after a failed main, real time",
            run_failed_main,
        ),
    ]
}

/// Makes an empty FAT16 volume at `path` with mkfs.fat.
fn make_volume(path: &Path) -> Result<(), Failure> {
    let output = Command::new("mkfs.fat")
        .args(["-F", "16", "-C"])
        .arg(path)
        .arg((VOLUME_SECTORS / 2).to_string())
        .output()
        .map_err(|error| format!("cannot run mkfs.fat: {error}"))?;
    if !output.status.success() {
        return Err(Failure::from(format!(
            "mkfs.fat failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

/// Returns the configuration of `fs-writer` on `image` with `kernel_args`.
fn writer(context: &Context, image: &Path, kernel_args: &[&str]) -> QemuConfig {
    let mut config = context.config(Machine::Q35, 3, "fs-writer");
    config.disks = vec![qemu::DiskSpec {
        path: image.display().to_string(),
        read_only: false,
    }];
    config.kernel_args = std::iter::once("fs.disk=disk0")
        .chain(kernel_args.iter().copied())
        .map(String::from)
        .collect();
    config
}

/// What `fsck.fat -n` found, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Clusters allocated but in no chain (`Reclaimed ...`).
    pub lost_clusters: usize,
    /// The two FAT copies differ (fsck keeps the first).
    pub fats_differ: usize,
    /// A file's chain is longer than its size (an interrupted append or overwrite).
    pub size_short_of_chain: usize,
    /// Every other finding: none is allowed.
    pub forbidden: Vec<String>,
}

impl Findings {
    /// Returns whether fsck found nothing at all.
    fn is_clean(&self) -> bool {
        *self == Findings::default()
    }
}

/// Returns the findings in `fsck.fat -n`'s output, classified.
pub fn classify(report: &str) -> Findings {
    let mut findings = Findings::default();
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let next = lines.get(index + 1).copied().unwrap_or("");
        index += 1;
        if line.is_empty()
            || line.starts_with("fsck.fat ")
            || line == "Leaving filesystem unchanged."
            || (line.contains(" files, ") && line.contains(" clusters"))
        {
            continue;
        }
        if line.starts_with("Reclaimed ") {
            findings.lost_clusters += 1;
        } else if line == "FATs differ but appear to be intact." {
            findings.fats_differ += 1;
            if next.starts_with("Using first FAT.") {
                index += 1;
            }
        } else if line.starts_with("Using first FAT.") {
            // Belongs to a "FATs differ" line above.
        } else if line.starts_with('/')
            && next.starts_with("File size is ")
            && next.contains("cluster chain length is > ")
        {
            findings.size_short_of_chain += 1;
            index += 1;
            if lines
                .get(index)
                .is_some_and(|line| line.starts_with("Truncating file to "))
            {
                index += 1;
            }
        } else {
            findings.forbidden.push(line.to_string());
        }
    }
    findings
}

/// Runs `fsck.fat -n` on `image` and returns its classified findings and its report.
fn fsck(image: &Path) -> Result<(Findings, String), Failure> {
    let output = Command::new("fsck.fat")
        .arg("-n")
        .arg(image)
        .output()
        .map_err(|error| format!("cannot run fsck.fat: {error}"))?;
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    Ok((classify(&report), report))
}

/// Returns a failure that shows fsck's report.
fn fsck_failure(reason: String, report: &str) -> Failure {
    Failure {
        reason,
        tail: report.lines().map(String::from).collect(),
    }
}

/// Returns the kill moments, seeded from the clock so runs differ; the moments are
/// printed with any failure.
fn kill_delays(count: usize) -> Vec<Duration> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0x9e37_79b9, |now| now.as_nanos() as u64);
    let mut random = XorShift64::new(seed);
    (0..count)
        .map(|_| Duration::from_millis(random.below(2000)))
        .collect()
}

/// Kills QEMU `kills` times during `fs-writer`, each time checking the image with fsck
/// and booting it again for a round that must succeed.
fn run_kills(context: &Context, kills: usize) -> CaseResult {
    let dir = scratch_dir("fs-kills")?;
    let image = dir.join("volume.img");
    make_volume(&image)?;
    let mut totals = Findings::default();
    for (kill, delay) in kill_delays(kills).into_iter().enumerate() {
        let what = format!(
            "kill {} of {kills}, {} ms after the first round",
            kill + 1,
            delay.as_millis()
        );
        let config = writer(context, &image, &[]);
        let outcome = qemu::kill_after_line(
            &config,
            context.timeout,
            "fs-writer: worker 0 round 1 ok",
            delay,
        )?;
        if outcome.status != Status::Killed {
            return Err(format!(
                "{what}: QEMU ended with {:?} before the kill",
                outcome.status
            ))
            .tail_of(&outcome);
        }
        let (found, report) = fsck(&image)?;
        if !found.forbidden.is_empty() {
            return Err(fsck_failure(
                format!(
                    "{what}: fsck.fat found what a crash may not leave: {:?}",
                    found.forbidden
                ),
                &report,
            ));
        }
        totals.lost_clusters += found.lost_clusters;
        totals.fats_differ += found.fats_differ;
        totals.size_short_of_chain += found.size_short_of_chain;
        // The next boot mounts the image as the crash left it, repairs it, and works.
        let next = context.run(&writer(context, &image, &["rounds=1"]))?;
        next.verdict()
            .map_err(|reason| format!("{what}: the next boot failed: {reason}"))
            .tail_of(&next)?;
        require_line(&next, "fs-writer: done: 1 rounds by 2 workers")?;
        if !next
            .console
            .iter()
            .any(|line| line.ends_with("from earlier runs, all readable"))
        {
            return Err(format!(
                "{what}: the next boot did not read the earlier files"
            ))
            .tail_of(&next);
        }
        let (after, report) = fsck(&image)?;
        if !after.is_clean() {
            return Err(fsck_failure(
                format!("{what}: the image is not clean after the repairing run: {after:?}"),
                &report,
            ));
        }
    }
    println!(
        "xtask: fs crash test: {kills} kills; fsck found lost clusters after {}, differing FATs after {}, sizes short of their chain in {}, nothing else",
        totals.lost_clusters, totals.fats_differ, totals.size_short_of_chain
    );
    remove_scratch(&dir);
    Ok(())
}

/// Three rounds, then the app holds; QEMU is killed 1 s after the last round: the
/// write-back deadline (200 ms), not the sync at exit, must have put everything on disk.
fn run_write_back(context: &Context) -> CaseResult {
    let dir = scratch_dir("fs-write-back")?;
    let image = dir.join("volume.img");
    make_volume(&image)?;
    let config = writer(context, &image, &["rounds=3", "hold=1"]);
    let outcome = qemu::kill_after_line(
        &config,
        context.timeout,
        "fs-writer: done",
        Duration::from_secs(1),
    )?;
    if outcome.status != Status::Killed {
        return Err(format!(
            "QEMU ended with {:?} before the kill",
            outcome.status
        ))
        .tail_of(&outcome);
    }
    let (found, report) = fsck(&image)?;
    if !found.is_clean() {
        return Err(fsck_failure(
            format!("1 s after the last write the image is not clean: {found:?}"),
            &report,
        ));
    }
    let files = writer_files(&image)?;
    if files == 0 {
        return Err(Failure::from(
            "no file of the workload is on the disk".to_string(),
        ));
    }
    remove_scratch(&dir);
    Ok(())
}

/// Two rounds, then main fails on purpose: the kernel still syncs, so fsck finds nothing;
/// the files carry today's date and a time within two minutes of the host's (UTC).
fn run_failed_main(context: &Context) -> CaseResult {
    let dir = scratch_dir("fs-failed-main")?;
    let image = dir.join("volume.img");
    make_volume(&image)?;
    let outcome = context.run(&writer(context, &image, &["rounds=2", "end=fail"]))?;
    if outcome.status != Status::KernelFailure {
        return Err(format!(
            "QEMU ended with {:?}, not the kernel's failure",
            outcome.status
        ))
        .tail_of(&outcome);
    }
    require_line(
        &outcome,
        "manada: app fs-writer failed: ended with a failure on purpose",
    )?;
    let (found, report) = fsck(&image)?;
    if !found.is_clean() {
        return Err(fsck_failure(
            format!("after a failed main the image is not clean: {found:?}"),
            &report,
        ));
    }
    let done = mtools(&image, &["mtype", "::/writer-done.txt"])?;
    if done != "2 rounds by 2 workers\n" {
        return Err(Failure::from(format!(
            "the run's last write is not on the disk: /writer-done.txt reads {done:?}"
        )));
    }
    check_times(&image)?;
    remove_scratch(&dir);
    Ok(())
}

/// Returns how many files `mdir -/ -b` lists in the workers' folders.
fn writer_files(image: &Path) -> Result<usize, Failure> {
    let listing = mtools(image, &["mdir", "-/", "-b", "::/"])?;
    Ok(listing
        .lines()
        .filter(|line| line.contains("/writer-") && !line.ends_with('/'))
        .count())
}

/// Returns the output of an mtools command on `image`.
fn mtools(image: &Path, command: &[&str]) -> Result<String, Failure> {
    let output = Command::new(command[0])
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(image)
        .args(&command[1..])
        .output()
        .map_err(|error| format!("cannot run {}: {error}", command[0]))?;
    if !output.status.success() {
        return Err(Failure::from(format!(
            "{} failed: {}",
            command[0],
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Checks that the root's `writer-*` folders carry a time within two minutes of now (UTC).
fn check_times(image: &Path) -> Result<(), Failure> {
    let listing = mtools(image, &["mdir", "::/"])?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|error| error.to_string())?
        .as_secs();
    let mut seen = 0;
    for line in listing.lines().filter(|line| line.starts_with("writer-")) {
        let stamp = parse_mdir_time(line)
            .ok_or_else(|| format!("cannot read the date and time in `{line}`"))?;
        // mdir shows minutes: allow two minutes either way, plus the minute cut.
        if stamp.abs_diff(now) > 180 {
            return Err(Failure::from(format!(
                "`{line}` is {} s away from the host's time",
                stamp.abs_diff(now)
            )));
        }
        seen += 1;
    }
    if seen == 0 {
        return Err(Failure::from(format!(
            "no writer folder in the root:\n{listing}"
        )));
    }
    Ok(())
}

/// Returns the Unix time of an `mdir` line's `YYYY-MM-DD  H:MM` (read as UTC).
fn parse_mdir_time(line: &str) -> Option<u64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let date = words
        .iter()
        .position(|word| word.len() == 10 && word.as_bytes()[4] == b'-')?;
    let mut parts = words[date].split('-').map(str::parse::<u64>);
    let (year, month, day) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    let (hour, minute) = words.get(date + 1)?.split_once(':')?;
    let (hour, minute): (u64, u64) = (hour.parse().ok()?, minute.parse().ok()?);
    Some(days_from_civil(year, month, day)? * 86_400 + hour * 3600 + minute * 60)
}

/// Returns the days from 1970-01-01 to the given date (proleptic Gregorian).
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let (year, month) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_findings_are_counted_and_the_rest_is_forbidden() {
        let report = "fsck.fat 4.2 (2021-01-31)\n\
            FATs differ but appear to be intact.\n\
            Using first FAT.\n\
            /writer-0/log.txt\n\
            \x20 File size is 4096 bytes, cluster chain length is > 6144 bytes.\n\
            \x20 Truncating file to 4096 bytes.\n\
            Reclaimed 2 unused clusters (4096 bytes) in 1 chain.\n\
            Leaving filesystem unchanged.\n\
            volume.img: 10 files, 29/16343 clusters\n";
        let found = classify(report);
        assert_eq!(found.fats_differ, 1);
        assert_eq!(found.size_short_of_chain, 1);
        assert_eq!(found.lost_clusters, 1);
        assert!(found.forbidden.is_empty(), "{:?}", found.forbidden);
        let bad = classify(
            "/writer-1/a.bin and\n/writer-1/b.bin\n  share clusters.\n\
             /writer-0/x\n  File size is 8192 bytes, cluster chain length is 4096 bytes.\n",
        );
        assert!(bad.forbidden.len() >= 3, "{:?}", bad.forbidden);
        assert!(classify("fsck.fat 4.2\nvolume.img: 3 files, 9/16343 clusters\n").is_clean());
    }

    #[test]
    fn reads_mdir_times_as_utc() {
        let line = "writer-0     <DIR>     2026-12-05   1:52 ";
        assert_eq!(parse_mdir_time(line), Some(1_796_435_520));
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(parse_mdir_time("no date here"), None);
    }
}
