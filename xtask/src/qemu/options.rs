//! The choices a QEMU run is made of (machine, accelerator, memory size, cores, app,
//! kernel words, disks) and their parsers from xtask's command line.

use std::fmt;
use std::str::FromStr;

use clap::ValueEnum;

use crate::MAX_CORES;

/// The QEMU machine type to boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Machine {
    /// Modern PC with PCIe (ECAM).
    Q35,
    /// i440FX PC with legacy PCI.
    Pc,
    /// Minimal machine without firmware work (with ACPI on).
    Microvm,
}

impl Machine {
    /// Returns the name used on xtask's command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
            Machine::Microvm => "microvm",
        }
    }

    /// Returns the value of QEMU's `-machine` option.
    pub(super) fn qemu_value(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
            // The kernel finds its cores through the ACPI MADT, and the virtio-mmio
            // devices through the DSDT (QEMU adds no virtio_mmio.device= words then).
            Machine::Microvm => "microvm,acpi=on",
        }
    }

    /// Returns the `-device` value of a virtio device of `kind` (`blk`, `net`) with its
    /// `backend` option (`drive=ID`, `netdev=ID`) on this machine: virtio-pci (modern
    /// only) on q35 and pc, virtio-mmio on microvm.
    pub(super) fn virtio_device(self, kind: &str, backend: &str) -> String {
        match self {
            Machine::Q35 | Machine::Pc => format!("virtio-{kind}-pci,{backend},disable-legacy=on"),
            Machine::Microvm => format!("virtio-{kind}-device,{backend}"),
        }
    }
}

/// The accelerator asked for on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccelChoice {
    /// KVM when this host can run it, else TCG.
    Auto,
    /// KVM with the host CPU model.
    Kvm,
    /// Multi-threaded TCG (MTTCG).
    Tcg,
}

/// The accelerator QEMU runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// Multi-threaded TCG.
    Tcg,
}

impl Accel {
    /// Returns the short name used in reports (`kvm`, `tcg`).
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// Returns the name with a word on the mode, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg (MTTCG)",
        }
    }

    /// Returns QEMU's arguments for this accelerator.
    pub(super) fn qemu_args(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => &["-accel", "tcg,thread=multi"],
        }
    }
}

/// A guest memory size, kept in MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemSize {
    mebibytes: u64,
}

impl MemSize {
    /// The largest size accepted (1 TiB).
    const MAX_MEBIBYTES: u64 = 1 << 20;

    /// Returns a size of `mebibytes` MiB.
    pub const fn from_mebibytes(mebibytes: u64) -> MemSize {
        MemSize { mebibytes }
    }

    /// Returns the size in MiB.
    pub const fn mebibytes(self) -> u64 {
        self.mebibytes
    }
}

impl FromStr for MemSize {
    type Err = String;

    /// Parses `512M`, `1G`, `2048` (MiB, as QEMU reads a bare number), `1T`; `MiB`/`GiB` too.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid memory size '{text}': expected a size like 512M or 1G");
        let trimmed = text.trim();
        let digits_end = trimmed
            .find(|char: char| !char.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(digits_end);
        let count: u64 = digits.parse().map_err(|_| invalid())?;
        let unit = unit.to_ascii_uppercase();
        let multiplier = match unit.trim_end_matches("IB").trim_end_matches('B') {
            "" | "M" => 1,
            "G" => 1 << 10,
            "T" => 1 << 20,
            _ => return Err(invalid()),
        };
        let mebibytes = count.checked_mul(multiplier).ok_or_else(invalid)?;
        if mebibytes == 0 || mebibytes > Self::MAX_MEBIBYTES {
            return Err(format!(
                "invalid memory size '{text}': must be between 1M and 1T"
            ));
        }
        Ok(MemSize { mebibytes })
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mebibytes.is_multiple_of(1024) {
            write!(formatter, "{}G", self.mebibytes / 1024)
        } else {
            write!(formatter, "{}M", self.mebibytes)
        }
    }
}

/// Returns the core count in `text` when it is within `1..=MAX_CORES`.
pub fn parse_cores(text: &str) -> Result<usize, String> {
    let out_of_range =
        || format!("cores must be in 1..={MAX_CORES} (the kernel supports 1 to {MAX_CORES} cores)");
    let cores: usize = text.trim().parse().map_err(|_| out_of_range())?;
    if (1..=MAX_CORES).contains(&cores) {
        Ok(cores)
    } else {
        Err(out_of_range())
    }
}

/// Returns the app name when it can travel on the kernel command line.
pub fn parse_app(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid app name '{text}': use letters, digits, '_' and '-'"
        ))
    }
}

/// Parses a kernel command-line word `key=value` (no spaces or quotes; `app` is set by `--app`).
pub fn parse_kernel_arg(text: &str) -> Result<String, String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!(
            "invalid kernel argument '{text}': expected KEY=VALUE"
        ));
    };
    let plain = |part: &str| {
        part.bytes()
            .all(|byte| byte.is_ascii_graphic() && !b"'\"".contains(&byte))
    };
    if key.is_empty() || !plain(key) || !plain(value) {
        return Err(format!(
            "invalid kernel argument '{text}': use KEY=VALUE without spaces or quotes"
        ));
    }
    if key == "app" {
        return Err("set the app with --app, not --kernel-arg app=...".into());
    }
    Ok(text.to_string())
}

/// A disk image to attach: `PATH` or `PATH,ro` on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// The image (raw), or a QEMU block spec such as `blkdebug:RULES:IMAGE`.
    pub path: String,
    pub read_only: bool,
}

/// Parses `--disk PATH[,ro]`.
pub fn parse_disk(text: &str) -> Result<DiskSpec, String> {
    let (path, read_only) = match text.strip_suffix(",ro") {
        Some(path) => (path, true),
        None => (text, false),
    };
    if path.is_empty() {
        return Err("empty disk path; use --disk PATH or --disk PATH,ro".into());
    }
    // A plain file must exist; a QEMU driver spec (blkdebug:...) is QEMU's to check.
    if !path.contains(':') && !std::path::Path::new(path).is_file() {
        return Err(format!("disk image '{path}' does not exist"));
    }
    Ok(DiskSpec {
        path: path.to_string(),
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memory_sizes() {
        let mib = |text: &str| text.parse::<MemSize>().map(|size| size.mebibytes);
        assert_eq!(mib("512M"), Ok(512));
        assert_eq!(mib("512m"), Ok(512));
        assert_eq!(mib("512MiB"), Ok(512));
        assert_eq!(mib("1G"), Ok(1024));
        assert_eq!(mib("2gb"), Ok(2048));
        assert_eq!(mib("256"), Ok(256));
        assert_eq!(mib("1T"), Ok(1 << 20));
        for bad in [
            "",
            "M",
            "0M",
            "1.5G",
            "-1G",
            "12Q",
            "2T",
            "99999999999999999999G",
            "1 G",
        ] {
            assert!(mib(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!("1G".parse::<MemSize>().unwrap().to_string(), "1G");
        assert_eq!("1536M".parse::<MemSize>().unwrap().to_string(), "1536M");
    }

    #[test]
    fn validates_core_counts() {
        assert_eq!(parse_cores("1"), Ok(1));
        assert_eq!(parse_cores("64"), Ok(64));
        for bad in ["0", "65", "-1", "", "four", "1000000000000000000000"] {
            let error = parse_cores(bad).unwrap_err();
            assert!(error.contains("1..=64"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn validates_app_names() {
        assert_eq!(parse_app("hello"), Ok("hello".into()));
        assert_eq!(parse_app("http_d-2"), Ok("http_d-2".into()));
        assert!(parse_app("").is_err());
        assert!(parse_app("a b").is_err());
        assert!(parse_app("a=b").is_err());
    }

    #[test]
    fn validates_kernel_args() {
        assert!(parse_kernel_arg("selftest=page-fault").is_ok());
        assert!(parse_kernel_arg("novalue").is_err());
        assert!(parse_kernel_arg("a=b c").is_err());
        assert!(parse_kernel_arg("app=x").is_err());
        assert!(parse_kernel_arg("=x").is_err());
    }

    #[test]
    fn parses_disk_specs() {
        assert!(parse_disk("").is_err());
        assert!(parse_disk("/no/such/image.img")
            .unwrap_err()
            .contains("does not exist"));
        assert_eq!(
            parse_disk("blkdebug:r.conf:d.img,ro").unwrap(),
            DiskSpec {
                path: "blkdebug:r.conf:d.img".into(),
                read_only: true
            }
        );
    }
}
