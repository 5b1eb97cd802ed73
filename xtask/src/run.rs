//! `cargo xtask run`: boots the kernel under QEMU with the console on stdout.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::qemu::{self, AccelChoice, Machine, MemSize, QemuConfig};
use crate::{build, tools};

/// Options of `cargo xtask run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Number of cores (1..=64).
    #[arg(long, default_value = "4", value_name = "N", value_parser = qemu::parse_cores)]
    pub cores: usize,
    /// The app the kernel runs.
    #[arg(long, default_value = "hello", value_name = "NAME", value_parser = qemu::parse_app)]
    pub app: String,
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Q35)]
    pub machine: Machine,
    /// Guest memory, e.g. 512M or 1G.
    #[arg(long, default_value = "512M", value_name = "SIZE")]
    pub mem: MemSize,
    /// Accelerator: KVM when usable (auto), or forced.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Build and boot the release kernel.
    #[arg(long)]
    pub release: bool,
    /// Let QEMU wait for gdb on localhost:1234 (disables the timeout).
    #[arg(long)]
    pub gdb: bool,
    /// Kill QEMU after this many seconds (0 = never).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub timeout: u64,
    /// Extra kernel command-line word (`key=value`), repeatable; e.g. `selftest=dead-core`.
    #[arg(long = "kernel-arg", value_name = "KEY=VALUE", value_parser = qemu::parse_kernel_arg)]
    pub kernel_args: Vec<String>,
    /// Attach a raw disk image as virtio-blk (repeatable; `PATH,ro` for read-only).
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = qemu::parse_disk)]
    pub disks: Vec<qemu::DiskSpec>,
    /// Share a host folder with the guest as a FAT16 disk (QEMU's vvfat, read-write),
    /// mounted by the fs service. Default for `--app files`: the repository's `files/`.
    #[arg(long, value_name = "DIR")]
    pub share: Option<PathBuf>,
    /// Network: `user` (QEMU user networking, guest 10.0.2.15) or `none`.
    #[arg(long, value_enum, default_value_t = NetChoice::User)]
    pub net: NetChoice,
    /// Forward a host port on 127.0.0.1 to a guest port, TCP and UDP (repeatable).
    #[arg(long = "forward", value_name = "HOST:GUEST", value_parser = parse_forward)]
    pub forwards: Vec<(u16, u16)>,
    /// Run a service on a chosen core, e.g. `blk=1` or `fs=2` (repeatable).
    #[arg(long = "place", value_name = "SERVICE=CORE", value_parser = parse_place)]
    pub places: Vec<(String, usize)>,
    /// Boot this kernel image instead of building one.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,
}

/// Returns the disks to attach and the kernel arguments for the share: `--share DIR`,
/// or the repository's `files/` (created if missing) for `--app files`.
fn with_share(
    workspace: &tools::Workspace,
    args: &RunArgs,
) -> Result<(Vec<qemu::DiskSpec>, Vec<String>), String> {
    let mut disks = args.disks.clone();
    let share = match (&args.share, args.app.as_str()) {
        (Some(dir), _) => Some(dir.clone()),
        (None, "files") => {
            let dir = workspace.root.join("files");
            if !dir.exists() {
                std::fs::create_dir_all(&dir)
                    .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
                std::fs::write(
                    dir.join("hello.txt"),
                    "Hello from the host, through QEMU's vvfat and Manada's FAT16 service.\n",
                )
                .map_err(|error| format!("cannot write into {}: {error}", dir.display()))?;
            }
            Some(dir)
        }
        (None, _) => None,
    };
    let Some(dir) = share else {
        return Ok((disks, Vec::new()));
    };
    if !dir.is_dir() {
        return Err(format!("--share {}: not a folder", dir.display()));
    }
    let dir = dir
        .canonicalize()
        .map_err(|error| format!("--share {}: {error}", dir.display()))?;
    eprintln!(
        "xtask: sharing {} as disk{} (FAT16 through vvfat; do not change it while the guest runs)",
        dir.display(),
        disks.len()
    );
    let kernel_arg = format!("fs.disk=disk{}", disks.len());
    disks.push(qemu::DiskSpec {
        path: format!("fat:rw:{}", dir.display()),
        read_only: false,
    });
    Ok((disks, vec![kernel_arg]))
}

/// The network choices of `--net`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetChoice {
    /// QEMU user networking (NAT; the guest gets 10.0.2.15 by DHCP).
    User,
    /// No network device.
    None,
}

/// Parses `--forward HOST:GUEST`.
pub fn parse_forward(text: &str) -> Result<(u16, u16), String> {
    let (host, guest) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid forward '{text}': expected HOST:GUEST, e.g. 8080:80"))?;
    let port = |part: &str| {
        part.parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or_else(|| format!("invalid port '{part}' in '{text}'"))
    };
    Ok((port(host)?, port(guest)?))
}

/// Parses `--place SERVICE=CORE`.
pub fn parse_place(text: &str) -> Result<(String, usize), String> {
    let (service, core) = text
        .split_once('=')
        .ok_or_else(|| format!("invalid placement '{text}': expected SERVICE=CORE, e.g. blk=1"))?;
    if !matches!(service, "blk" | "fs" | "net") {
        return Err(format!(
            "unknown service '{service}' (services: blk, fs, net)"
        ));
    }
    let core = core
        .parse()
        .map_err(|_| format!("invalid core '{core}' in '{text}'"))?;
    Ok((service.to_string(), core))
}

/// Builds the kernel, boots it and returns `Ok` only when the kernel reported success.
pub fn main(args: &RunArgs) -> Result<(), String> {
    for (service, core) in &args.places {
        if *core >= args.cores {
            return Err(format!(
                "--place {service}={core}: cores are 0..{} with --cores {}",
                args.cores, args.cores
            ));
        }
    }
    let wants_disks = !args.disks.is_empty() || args.share.is_some() || args.app == "files";
    if wants_disks && args.machine == Machine::Microvm {
        return Err(
            "--disk needs PCI, which microvm does not have here; use --machine q35 or pc".into(),
        );
    }
    let workspace = tools::workspace()?;
    let kernel = build::kernel_or_build(&workspace, args.kernel.as_deref(), args.release)?;
    tools::ensure_qemu()?;
    let accel = tools::resolve_accel(args.accel)?;
    let (disks, share_args) = with_share(&workspace, args)?;
    let config = QemuConfig {
        kernel,
        machine: args.machine,
        cores: args.cores,
        mem: args.mem,
        accel,
        app: args.app.clone(),
        kernel_args: args
            .kernel_args
            .iter()
            .cloned()
            .chain(
                args.places
                    .iter()
                    .map(|(service, core)| format!("place.{service}={core}")),
            )
            .chain(share_args)
            .collect(),
        disks,
        // microvm has no PCI here, so no virtio-net-pci either.
        net: (args.net == NetChoice::User && args.machine != Machine::Microvm)
            .then(|| args.forwards.clone()),
        inject: None,
        gdb: args.gdb,
    };
    for (host, guest) in &args.forwards {
        eprintln!("xtask: forwarding 127.0.0.1:{host} to guest port {guest} (tcp and udp)");
    }
    if !args.forwards.is_empty() && config.net.is_none() {
        return Err("--forward needs --net user on q35 or pc".into());
    }
    eprintln!("xtask: running {}", config.command_line());
    if args.gdb {
        eprintln!("xtask: QEMU waits for gdb; attach with:");
        eprintln!(
            "    gdb {} -ex 'target remote :1234'",
            config.kernel.display()
        );
    }
    let timeout = (args.timeout > 0).then(|| Duration::from_secs(args.timeout));
    let outcome = qemu::run(&config, timeout, true)?;
    match outcome.online {
        Some(online) => eprintln!(
            "xtask: all {} cores online {:.2} s after QEMU start (kernel: {:.1} ms from entry)",
            online.cores,
            online.after_start.as_secs_f64(),
            online.kernel_ms
        ),
        None => eprintln!("xtask: the kernel never reported its cores online"),
    }
    outcome.verdict()?;
    eprintln!(
        "xtask: app {} finished: success ({:.2} s)",
        args.app,
        outcome.elapsed.as_secs_f64()
    );
    Ok(())
}
