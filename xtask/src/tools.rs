//! Host tools: finding cargo and the workspace, the kernel's Rust target, QEMU and KVM.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::qemu::{Accel, AccelChoice, QEMU};

/// The Rust target the kernel is built for.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// Returns the cargo to run: `$CARGO` (set when run through cargo), else `cargo`.
pub fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// The workspace as cargo sees it.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The directory of the root Cargo.toml.
    pub root: PathBuf,
    /// Cargo's target directory (honours `CARGO_TARGET_DIR` and `build.target-dir`).
    pub target_dir: PathBuf,
}

/// Returns the workspace root and target directory from `cargo metadata`.
pub fn workspace() -> Result<Workspace, String> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fallback_root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
    let output = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(&fallback_root)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot run `{} metadata`: {error}", cargo()))?;
    if !output.status.success() {
        return Err(format!("`cargo metadata` failed with {}", output.status));
    }
    let json = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| {
        json_string_field(&json, key)
            .map(PathBuf::from)
            .ok_or_else(|| format!("`cargo metadata` output has no \"{key}\""))
    };
    Ok(Workspace {
        root: field("workspace_root")?,
        target_dir: field("target_directory")?,
    })
}

/// Returns the value of the first `"key": "string"` pair in a JSON text.
///
/// Good enough for `cargo metadata`'s top-level path fields; avoids a JSON dependency.
pub fn json_string_field(json: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\"");
    let mut search_from = 0;
    while let Some(found) = json[search_from..].find(&pattern) {
        let after_key = search_from + found + pattern.len();
        search_from = after_key;
        let rest = json[after_key..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('"') else {
            continue;
        };
        let mut value = String::new();
        let mut chars = rest.chars();
        while let Some(char) = chars.next() {
            match char {
                '"' => return Some(value),
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    'b' => value.push('\u{8}'),
                    'f' => value.push('\u{c}'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    other => value.push(other),
                },
                other => value.push(other),
            }
        }
        return None;
    }
    None
}

/// Installs the kernel's Rust target with rustup when it is missing.
///
/// rustup does not install `rust-toolchain.toml` targets for a toolchain that is already
/// installed, so a fresh checkout needs this.
pub fn ensure_kernel_target(workspace: &Workspace) -> Result<(), String> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(&workspace.root)
        .stderr(Stdio::inherit())
        .output();
    let output = match listed {
        Ok(output) if output.status.success() => output,
        // Without rustup the toolchain is managed some other way; let cargo report a missing target.
        _ => return Ok(()),
    };
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.trim() == KERNEL_TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: installing the {KERNEL_TARGET} target: rustup target add {KERNEL_TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", KERNEL_TARGET])
        .current_dir(&workspace.root)
        .status()
        .map_err(|error| format!("cannot run rustup: {error}"))?;
    if !status.success() {
        return Err(format!(
            "`rustup target add {KERNEL_TARGET}` failed with {status}"
        ));
    }
    Ok(())
}

/// Returns the first executable called `name` on `$PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Returns whether this process runs as root (real uid 0, read from /proc).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Makes sure QEMU is installed (installing it with apt-get when running as root).
pub fn ensure_qemu() -> Result<(), String> {
    ensure_tool(QEMU, "qemu-system-x86")
}

/// The host programs the tests use, with the Debian package of each: the FAT tools are
/// the fs host tests' oracles, QEMU and curl the integration tests'.
const TEST_TOOLS: &[(&str, &str, bool)] = &[
    ("mkfs.fat", "dosfstools", false),
    ("fsck.fat", "dosfstools", false),
    ("mcopy", "mtools", false),
    ("mdir", "mtools", false),
    ("mtype", "mtools", false),
    (QEMU, "qemu-system-x86", true),
    ("curl", "curl", true),
];

/// Makes sure every program the tests use is installed before the first test runs (the
/// QEMU tests' programs only with `qemu`): one apt-get for all that are missing when
/// running as root, otherwise one command that names them all.
pub fn ensure_test_tools(qemu: bool) -> Result<(), String> {
    let needed: Vec<(&str, &str)> = TEST_TOOLS
        .iter()
        .filter(|(_, _, for_qemu)| qemu || !for_qemu)
        .map(|&(binary, package, _)| (binary, package))
        .collect();
    ensure_tools(&needed)
}

/// Makes sure the host program `binary` from the Debian package `package` is on PATH:
/// installs it with apt-get when running as root, otherwise says exactly what to run.
pub fn ensure_tool(binary: &str, package: &str) -> Result<(), String> {
    ensure_tools(&[(binary, package)])
}

/// Makes sure every `(binary, package)` is on PATH, installing the missing packages with
/// one apt-get when running as root, otherwise naming the one command that would.
pub fn ensure_tools(tools: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<(&str, &str)> = tools
        .iter()
        .copied()
        .filter(|(binary, _)| find_in_path(binary).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|&(_, package)| package).collect();
    packages.dedup();
    let binaries: Vec<&str> = missing.iter().map(|&(binary, _)| binary).collect();
    let apt = find_in_path("apt-get").is_some();
    if apt && is_root() {
        eprintln!(
            "xtask: {} not found; installing: apt-get update && apt-get install -y {}",
            binaries.join(", "),
            packages.join(" ")
        );
        let install: Vec<&str> = ["install", "-y", "--no-install-recommends"]
            .into_iter()
            .chain(packages.iter().copied())
            .collect();
        for args in [&["update"][..], &install[..]] {
            let status = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map_err(|error| format!("cannot run apt-get: {error}"))?;
            if !status.success() {
                return Err(format!("`apt-get {}` failed with {status}", args.join(" ")));
            }
        }
        let still: Vec<&str> = binaries
            .iter()
            .copied()
            .filter(|binary| find_in_path(binary).is_none())
            .collect();
        return if still.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} still not found after installing {}",
                still.join(", "),
                packages.join(" ")
            ))
        };
    }
    let command = install_command(&packages, apt, find_in_path("dnf").is_some());
    Err(format!(
        "{} not found on PATH; run: {command}",
        binaries.join(", ")
    ))
}

/// Returns the command a user runs to install `packages` (Debian's names).
fn install_command(packages: &[&str], apt: bool, dnf: bool) -> String {
    let list = packages.join(" ");
    if apt {
        format!("sudo apt-get update && sudo apt-get install -y {list}")
    } else if dnf {
        format!("sudo dnf install -y {list}")
    } else {
        format!("install the packages that provide them ({list} on Debian)")
    }
}

/// Returns `Ok` when KVM can run guests here, otherwise why not.
fn probe_kvm() -> Result<&'static str, String> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|error| format!("/dev/kvm not usable: {error}"))?;
    let cpuinfo = fs::read_to_string("/proc/cpuinfo")
        .map_err(|error| format!("cannot read /proc/cpuinfo: {error}"))?;
    cpu_virtualization_flag(&cpuinfo)
        .ok_or_else(|| "/dev/kvm not usable: no vmx/svm flag".to_string())
}

/// Returns `vmx` or `svm` when a `flags` line of /proc/cpuinfo has it.
fn cpu_virtualization_flag(cpuinfo: &str) -> Option<&'static str> {
    let flags = cpuinfo.lines().filter(|line| line.starts_with("flags"));
    for line in flags {
        let words = line.split_once(':').map_or("", |(_, words)| words);
        for word in words.split_whitespace() {
            match word {
                "vmx" => return Some("vmx"),
                "svm" => return Some("svm"),
                _ => {}
            }
        }
    }
    None
}

/// Returns the accelerator for `choice` and a one-line reason, given the KVM probe result.
fn decide_accel(choice: AccelChoice, kvm: Result<&str, String>) -> Result<(Accel, String), String> {
    match (choice, kvm) {
        (AccelChoice::Tcg, _) => Ok((Accel::Tcg, "requested".to_string())),
        (AccelChoice::Kvm | AccelChoice::Auto, Ok(flag)) => {
            let how = if choice == AccelChoice::Kvm {
                "requested"
            } else {
                "auto"
            };
            Ok((
                Accel::Kvm,
                format!("{how}: /dev/kvm usable, CPU has {flag}"),
            ))
        }
        (AccelChoice::Kvm, Err(why)) => Err(format!(
            "--accel kvm requested but {why}; use --accel tcg or --accel auto"
        )),
        (AccelChoice::Auto, Err(why)) => Ok((Accel::Tcg, why)),
    }
}

/// Returns the accelerator for `choice` and prints which one and why.
pub fn resolve_accel(choice: AccelChoice) -> Result<Accel, String> {
    let probe = if choice == AccelChoice::Tcg {
        Err(String::new())
    } else {
        probe_kvm()
    };
    let (accel, reason) = decide_accel(choice, probe)?;
    eprintln!("xtask: accel {}: {reason}", accel.describe());
    Ok(accel)
}

/// Returns the number of CPUs the host gives this process.
pub fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |count| count.get())
}

/// Returns a TCP and UDP port on 127.0.0.1 that is free now and that this process has
/// not handed out before (tests run in parallel, and a port is only taken once QEMU
/// starts and forwards it).
pub fn free_port() -> Result<u16, String> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
        let port = tcp.local_addr().map_err(|error| error.to_string())?.port();
        if !given.contains(&port) && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    Err("no free port".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metadata_fields() {
        let json = r#"{"packages":[],"target_directory":"/w/target","workspace_root":"/w \"q\"\\x","x":1}"#;
        assert_eq!(
            json_string_field(json, "target_directory").as_deref(),
            Some("/w/target")
        );
        assert_eq!(
            json_string_field(json, "workspace_root").as_deref(),
            Some("/w \"q\"\\x")
        );
        assert_eq!(json_string_field(json, "x"), None);
        assert_eq!(json_string_field(json, "missing"), None);
        assert_eq!(
            json_string_field(r#"{"a": "\u00e9"}"#, "a").as_deref(),
            Some("é")
        );
    }

    #[test]
    fn names_one_install_command_for_all_missing_packages() {
        assert_eq!(
            install_command(&["dosfstools", "mtools"], true, false),
            "sudo apt-get update && sudo apt-get install -y dosfstools mtools"
        );
        assert_eq!(
            install_command(&["mtools"], false, true),
            "sudo dnf install -y mtools"
        );
        assert!(install_command(&["curl"], false, false).contains("curl on Debian"));
    }

    #[test]
    fn test_tools_cover_the_fs_oracles_without_qemu() {
        let host_only: Vec<&str> = TEST_TOOLS
            .iter()
            .filter(|(_, _, for_qemu)| !for_qemu)
            .map(|(binary, _, _)| *binary)
            .collect();
        for oracle in ["mkfs.fat", "fsck.fat", "mcopy", "mdir", "mtype"] {
            assert!(host_only.contains(&oracle), "{oracle} missing");
        }
    }

    #[test]
    fn finds_virtualization_flags() {
        assert_eq!(
            cpu_virtualization_flag("flags\t\t: fpu vme vmx sse\n"),
            Some("vmx")
        );
        assert_eq!(cpu_virtualization_flag("flags\t\t: fpu svm\n"), Some("svm"));
        assert_eq!(
            cpu_virtualization_flag("flags\t\t: fpu vmxe sse\nvmx flags : ept\n"),
            None
        );
    }

    #[test]
    fn chooses_accelerator() {
        let no_kvm = || Err("/dev/kvm not usable: no vmx/svm flag".to_string());
        assert_eq!(
            decide_accel(AccelChoice::Auto, no_kvm()).unwrap().0,
            Accel::Tcg
        );
        assert_eq!(
            decide_accel(AccelChoice::Auto, Ok("vmx")).unwrap().0,
            Accel::Kvm
        );
        assert_eq!(
            decide_accel(AccelChoice::Tcg, Ok("vmx")).unwrap().0,
            Accel::Tcg
        );
        assert_eq!(
            decide_accel(AccelChoice::Kvm, Ok("svm")).unwrap().0,
            Accel::Kvm
        );
        assert!(decide_accel(AccelChoice::Kvm, no_kvm()).is_err());
        let (_, reason) = decide_accel(AccelChoice::Auto, no_kvm()).unwrap();
        assert_eq!(reason, "/dev/kvm not usable: no vmx/svm flag");
    }
}
