//! `cargo xtask mkimage DIR IMAGE`: a FAT16 image of a folder, made with `mkfs.fat` and
//! `mcopy` (dosfstools and mtools, installed when missing and possible).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use crate::tools;

/// Options of `cargo xtask mkimage`.
#[derive(Debug, Args)]
pub struct MkimageArgs {
    /// The folder to copy into the image.
    pub dir: PathBuf,
    /// The image to write (replaced if it exists).
    pub image: PathBuf,
    /// Image size in MiB (FAT16 needs 16 to 2047).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(16..=2047))]
    pub size_mib: u64,
}

/// Returns the bytes of the files under `dir`.
fn content_bytes(dir: &Path) -> Result<u64, String> {
    let mut total = 0;
    for entry in
        fs::read_dir(dir).map_err(|error| format!("cannot read {}: {error}", dir.display()))?
    {
        let entry = entry.map_err(|error| error.to_string())?;
        let kind = entry.file_type().map_err(|error| error.to_string())?;
        total += if kind.is_dir() {
            content_bytes(&entry.path())?
        } else {
            entry.metadata().map_err(|error| error.to_string())?.len()
        };
    }
    Ok(total)
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Builds the image.
pub fn main(args: &MkimageArgs) -> Result<(), String> {
    if !args.dir.is_dir() {
        return Err(format!("{} is not a folder", args.dir.display()));
    }
    let content = content_bytes(&args.dir)?;
    // Room for the FATs, directories and cluster slack.
    if content + content / 4 + (2 << 20) > args.size_mib << 20 {
        return Err(format!(
            "{} holds {} MiB; use --size-mib {} or more",
            args.dir.display(),
            content >> 20,
            ((content + content / 4) >> 20) + 3
        ));
    }
    tools::ensure_tool("mkfs.fat", "dosfstools")?;
    tools::ensure_tool("mcopy", "mtools")?;
    let _ = fs::remove_file(&args.image);
    run(Command::new("mkfs.fat")
        .args(["-F", "16", "-n", "MANADA", "-C"])
        .arg(&args.image)
        .arg((args.size_mib * 1024).to_string()))?;
    let mut copied = 0;
    for entry in fs::read_dir(&args.dir).map_err(|error| error.to_string())? {
        let entry = entry.map_err(|error| error.to_string())?;
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-s", "-Q", "-i"])
            .arg(&args.image)
            .arg(entry.path())
            .arg("::/"))?;
        copied += 1;
    }
    eprintln!(
        "xtask: wrote {} ({} MiB FAT16, {copied} {} of {})",
        args.image.display(),
        args.size_mib,
        if copied == 1 { "entry" } else { "entries" },
        args.dir.display()
    );
    Ok(())
}
