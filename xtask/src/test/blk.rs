//! blk tests: every core reads a pattern image through the blk service, the guest's
//! writes are checked on the host, a read-only disk refuses writes, and I/O errors
//! injected with QEMU's blkdebug come back as errors.

use std::fs;
use std::path::Path;

use super::runner::{
    remove_scratch, require_line, require_success, scratch_dir, Case, CaseResult, Context, WithTail,
};
use crate::qemu::{self, Machine};

/// Returns the blk tests.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for machine in [Machine::Q35, Machine::Pc, Machine::Microvm] {
        cases.push(Case::boot(
            format!("blk-test {} x4", machine.name()),
            move |context: &Context| run_blk_test(context, machine, 4),
        ));
        cases.push(Case::boot(
            format!("blk-errors {} blkdebug", machine.name()),
            move |context: &Context| run_blk_errors(context, machine),
        ));
    }
    cases
}

/// Sectors of the test images (2 MiB).
const TEST_DISK_SECTORS: u64 = 4096;
/// Where and how much `blk-test` writes (see apps/src/blk_test.rs).
const GUEST_WRITE: std::ops::Range<u64> = 1024..1088;

/// Byte `index` of sector `sector` in a fresh test image (apps/src/blk_test.rs checks it).
fn image_byte(sector: u64, index: usize) -> u8 {
    (sector.wrapping_mul(7) as usize + index) as u8
}

/// Byte `index` of sector `sector` as `blk-test` writes it.
fn guest_byte(sector: u64, index: usize) -> u8 {
    (sector.wrapping_mul(13) as usize + index + 1) as u8
}

/// Writes a test image with the pattern into `path`.
fn write_test_image(path: &Path) -> Result<(), String> {
    let mut bytes = Vec::with_capacity(TEST_DISK_SECTORS as usize * 512);
    for sector in 0..TEST_DISK_SECTORS {
        bytes.extend((0..512).map(|index| image_byte(sector, index)));
    }
    fs::write(path, bytes).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Runs `blk-test` with a read-write and a read-only image, then checks on the host that
/// the guest's writes landed and nothing else changed.
fn run_blk_test(context: &Context, machine: Machine, cores: usize) -> CaseResult {
    let dir = scratch_dir(&format!("blk-{}", machine.name()))?;
    let (writable, readonly) = (dir.join("disk0.img"), dir.join("disk1.img"));
    write_test_image(&writable)?;
    write_test_image(&readonly)?;
    let disks = vec![
        qemu::DiskSpec {
            path: writable.display().to_string(),
            read_only: false,
        },
        qemu::DiskSpec {
            path: readonly.display().to_string(),
            read_only: true,
        },
    ];
    let mut config = context.config(machine, cores, "blk-test");
    config.disks = disks;
    let outcome = context.run(&config)?;
    require_success(&outcome)?;
    for line in [
        "blk-test: all checks passed",
        "blk-test: disk0 id 'manada-disk0'",
        // The read-only check may not be skipped: it must have run and refused.
        "blk-test: disk1 is read-only and refused a write",
    ] {
        require_line(&outcome, line)?;
    }
    let bytes =
        fs::read(&writable).map_err(|error| format!("cannot read back the image: {error}"))?;
    for sector in 0..TEST_DISK_SECTORS {
        let expected: fn(u64, usize) -> u8 = if GUEST_WRITE.contains(&sector) {
            guest_byte
        } else {
            image_byte
        };
        let data = &bytes[sector as usize * 512..][..512];
        if data
            .iter()
            .enumerate()
            .any(|(index, &byte)| byte != expected(sector, index))
        {
            return Err(format!(
                "sector {sector} of the image is not what the guest should have left"
            ))
            .tail_of(&outcome);
        }
    }
    let untouched = fs::read(&readonly).map_err(|error| error.to_string())?;
    if untouched
        != bytes
            .iter()
            .enumerate()
            .map(|(i, _)| image_byte(i as u64 / 512, i % 512))
            .collect::<Vec<u8>>()
    {
        return Err("the read-only image changed".to_string()).tail_of(&outcome);
    }
    remove_scratch(&dir);
    Ok(())
}

/// Runs `blk-errors` with disk0 behind blkdebug failing reads of sector 100.
fn run_blk_errors(context: &Context, machine: Machine) -> CaseResult {
    let dir = scratch_dir(&format!("blkdebug-{}", machine.name()))?;
    let (image, rules) = (dir.join("disk0.img"), dir.join("rules.conf"));
    write_test_image(&image)?;
    fs::write(
        &rules,
        "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"100\"\n",
    )
    .map_err(|error| error.to_string())?;
    let disk = qemu::DiskSpec {
        path: format!("blkdebug:{}:{}", rules.display(), image.display()),
        read_only: false,
    };
    let mut config = context.config(machine, 2, "blk-errors");
    config.disks = vec![disk];
    let outcome = context.run(&config)?;
    require_success(&outcome)?;
    let errors = outcome
        .console
        .iter()
        .filter(|line| line.contains("failed with an I/O error, as injected"))
        .count();
    if errors != 3 {
        return Err(format!("{errors} injected errors reported, expected 3")).tail_of(&outcome);
    }
    require_line(&outcome, "blk-errors: sector 0 still reads")?;
    remove_scratch(&dir);
    Ok(())
}
