//! `cargo xtask build`: builds the kernel image.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use crate::tools::{self, Workspace, KERNEL_TARGET};

/// Options of `cargo xtask build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
    /// Build the image of the application crate in this folder (see `cargo xtask new`).
    #[arg(long, value_name = "PATH")]
    pub app_crate: Option<PathBuf>,
}

/// Builds the kernel and prints the image path.
pub fn main(args: &BuildArgs) -> Result<(), String> {
    let workspace = tools::workspace()?;
    let image = match &args.app_crate {
        Some(dir) => crate::app_crate::build(&workspace, dir, args.release)?.image,
        None => build_kernel(&workspace, args.release)?,
    };
    println!("{}", image.display());
    Ok(())
}

/// Returns the path of the kernel ELF for a profile.
pub fn kernel_path(workspace: &Workspace, release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    workspace
        .target_dir
        .join(KERNEL_TARGET)
        .join(profile)
        .join("manada")
}

/// Builds the kernel image (the `apps` crate's `manada` binary: the kernel library
/// with the applications) and returns its path.
pub fn build_kernel(workspace: &Workspace, release: bool) -> Result<PathBuf, String> {
    tools::ensure_kernel_target(workspace)?;
    let mut command = Command::new(tools::cargo());
    command
        .args([
            "build",
            "-p",
            "apps",
            "--bin",
            "manada",
            "--target",
            KERNEL_TARGET,
        ])
        .current_dir(&workspace.root);
    if release {
        command.arg("--release");
    }
    let status = command
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if !status.success() {
        return Err(format!("kernel build failed ({status})"));
    }
    let image = kernel_path(workspace, release);
    if !image.is_file() {
        return Err(format!("kernel built but {} is missing", image.display()));
    }
    Ok(image)
}

/// Returns the kernel to boot: `prebuilt` when given (it must exist), else a fresh build.
pub fn kernel_or_build(
    workspace: &Workspace,
    prebuilt: Option<&Path>,
    release: bool,
) -> Result<PathBuf, String> {
    match prebuilt {
        Some(path) if path.is_file() => Ok(path.to_path_buf()),
        Some(path) => Err(format!("kernel image {} not found", path.display())),
        None => build_kernel(workspace, release),
    }
}
