//! `cargo xtask run`: boots the kernel under QEMU with the console on stdout.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::qemu::{self, AccelChoice, Machine, MemSize, QemuConfig};
use crate::{build, tools};

/// Options of `cargo xtask run`.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Number of cores (1..=64).
    #[arg(long, default_value = "4", value_name = "N", value_parser = qemu::parse_cores)]
    pub cores: usize,
    /// The app the kernel runs. Applications and examples: hello (the default), files,
    /// echo, httpd, primes, pipeline. Test fixtures: ipc, threads, blk-test, blk-errors,
    /// free-storm, overflow, oom, panic, faults, fs-writer. Benches: ipc-bench,
    /// percore-bench, scale, blk-bench, fs-bench. With --app-crate: that crate's
    /// application.
    #[arg(long, value_name = "NAME", value_parser = qemu::parse_app)]
    pub app: Option<String>,
    /// Build and boot the application crate in this folder instead of this repository's
    /// apps (see `cargo xtask new`).
    #[arg(long, value_name = "PATH", conflicts_with = "kernel")]
    pub app_crate: Option<PathBuf>,
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
    /// Kill QEMU after this many seconds (0 = never). Default: 120, and never for the
    /// servers (echo, httpd).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Extra kernel command-line word (`key=value`), repeatable; e.g. `selftest=dead-core`.
    #[arg(long = "kernel-arg", value_name = "KEY=VALUE", value_parser = qemu::parse_kernel_arg)]
    pub kernel_args: Vec<String>,
    /// Attach a raw disk image as virtio-blk (repeatable; `PATH,ro` for read-only).
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = qemu::parse_disk)]
    pub disks: Vec<qemu::DiskSpec>,
    /// Share a host folder with the guest as a FAT16 disk (QEMU's vvfat, read-write),
    /// mounted by the fs service. Default for `--app files`: the repository's `files/`;
    /// for `--app httpd`: its `www/`.
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

/// The app `run` boots when `--app` names none.
const DEFAULT_APP: &str = "hello";

impl RunArgs {
    /// Returns the app to run: `--app`, else the default.
    fn app(&self) -> &str {
        self.app.as_deref().unwrap_or(DEFAULT_APP)
    }
}

/// The apps that serve until QEMU is stopped, so `run` sets them no default timeout.
const SERVERS: &[&str] = &["echo", "httpd"];

/// The timeout of a run without `--timeout`, for apps that end by themselves.
const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// Returns how long `run` lets QEMU go: `--timeout` (0 = forever), else forever for the
/// servers and 120 s for the rest.
fn timeout(args: &RunArgs) -> Option<Duration> {
    match args.timeout {
        Some(0) => None,
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None if SERVERS.contains(&args.app()) => None,
        None => Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
    }
}

/// The folder an app shares when `--share` is not given, and the file put in it when
/// it is created: `files/` for `files`, `www/` for `httpd`.
fn default_share(app: &str) -> Option<(&'static str, &'static str, &'static str)> {
    match app {
        "files" => Some((
            "files",
            "hello.txt",
            "Hello from the host, through QEMU's vvfat and Manada's FAT16 service.\n",
        )),
        "httpd" => Some((
            "www",
            "index.html",
            "<!DOCTYPE html>\n<title>Manada</title>\n<h1>Hello from Manada</h1>\n\
             <p>Served by the httpd app from the host's www/ folder, through QEMU's vvfat, \
             Manada's FAT16 service and its TCP/IP stack.</p>\n",
        )),
        _ => None,
    }
}

/// What the fs service is to mount, as the user's options decide it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Volume {
    /// The user named the disk (`--kernel-arg fs.disk=NAME`): xtask adds nothing.
    Named,
    /// The user's first `--disk`, for an app that serves files (`files`, `httpd`).
    FirstDisk,
    /// This folder, shared through vvfat after the user's disks.
    Share(PathBuf),
    /// No volume.
    None,
}

/// Returns what the fs service mounts: the disk the user named, else `--share DIR`, else
/// for an app that serves files the user's first `--disk`, else its default folder. The
/// user's choice always wins over xtask's defaults.
fn choose_volume(args: &RunArgs, root: &std::path::Path) -> Volume {
    let named = args
        .kernel_args
        .iter()
        .any(|arg| arg.starts_with("fs.disk="));
    match (&args.share, default_share(args.app())) {
        _ if named => Volume::Named,
        (Some(dir), _) => Volume::Share(dir.clone()),
        (None, Some(_)) if !args.disks.is_empty() => Volume::FirstDisk,
        (None, Some((folder, _, _))) => Volume::Share(root.join(folder)),
        (None, None) => Volume::None,
    }
}

/// Returns the disks to attach and xtask's own kernel arguments for the volume.
fn with_share(
    workspace: &tools::Workspace,
    args: &RunArgs,
) -> Result<(Vec<qemu::DiskSpec>, Vec<String>), String> {
    let mut disks = args.disks.clone();
    if let Some(name) = args
        .kernel_args
        .iter()
        .filter_map(|arg| arg.strip_prefix("fs.disk="))
        .next_back()
    {
        // Shares are attached after the user's disks, so they count too.
        let attached = disks.len() + usize::from(args.share.is_some());
        check_disk_name(name, attached)?;
    }
    let dir = match choose_volume(args, &workspace.root) {
        Volume::Named => {
            // The user's disk is mounted; a --share is still attached if asked for.
            match &args.share {
                Some(dir) => dir.clone(),
                None => return Ok((disks, Vec::new())),
            }
        }
        Volume::FirstDisk => {
            eprintln!("xtask: the fs service mounts disk0 ({})", disks[0].path);
            return Ok((disks, vec!["fs.disk=disk0".into()]));
        }
        Volume::None => return Ok((disks, Vec::new())),
        Volume::Share(dir) => {
            if args.share.is_none() && !dir.exists() {
                let (_, file, text) = default_share(args.app()).expect("a default share");
                std::fs::create_dir_all(&dir)
                    .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
                std::fs::write(dir.join(file), text)
                    .map_err(|error| format!("cannot write into {}: {error}", dir.display()))?;
            }
            dir
        }
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
    let words = if args
        .kernel_args
        .iter()
        .any(|arg| arg.starts_with("fs.disk="))
    {
        Vec::new()
    } else {
        vec![format!("fs.disk=disk{}", disks.len())]
    };
    disks.push(qemu::DiskSpec {
        path: format!("fat:rw:{}", dir.display()),
        read_only: false,
    });
    Ok((disks, words))
}

/// Returns `Ok` when `name` is one of `attached` disks (`disk0`, `disk1`, ...), else a
/// clear error before QEMU starts.
fn check_disk_name(name: &str, attached: usize) -> Result<(), String> {
    let index = name
        .strip_prefix("disk")
        .and_then(|digits| digits.parse::<usize>().ok());
    match index {
        Some(index) if index < attached => Ok(()),
        _ if attached == 0 => Err(format!(
            "fs.disk={name}: no disk is attached; add --disk IMAGE or --share DIR"
        )),
        _ if attached == 1 => Err(format!(
            "fs.disk={name}: no such disk; the only attached disk is disk0"
        )),
        _ => Err(format!(
            "fs.disk={name}: no such disk; the attached disks are disk0 to disk{}",
            attached - 1
        )),
    }
}

/// Returns the kernel's command line words after `app=`: xtask's own first, then the
/// placements, then the user's `--kernel-arg` words, so that the user's last word for
/// a key is the one the kernel keeps.
fn kernel_words(args: &RunArgs, own: Vec<String>) -> Vec<String> {
    own.into_iter()
        .chain(
            args.places
                .iter()
                .map(|(service, core)| format!("place.{service}={core}")),
        )
        .chain(args.kernel_args.iter().cloned())
        .collect()
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

/// Returns `Ok` when every forwarded host port is free on 127.0.0.1 for TCP and UDP, else
/// which one is taken (QEMU would only say it could not set up the rule).
fn check_ports_free(forwards: &[(u16, u16)]) -> Result<(), String> {
    for &(host, guest) in forwards {
        let tcp = std::net::TcpListener::bind(("127.0.0.1", host)).map(drop);
        let udp = std::net::UdpSocket::bind(("127.0.0.1", host)).map(drop);
        if let Err(error) = tcp.and(udp) {
            return Err(format!(
                "--forward {host}:{guest}: 127.0.0.1:{host} is not free ({error}); another \
                 guest or program may be using it: choose another host port"
            ));
        }
    }
    Ok(())
}

/// Returns `Ok` when no host port is forwarded twice (QEMU would refuse the second rule
/// with a message about its own syntax).
fn check_forwards(forwards: &[(u16, u16)]) -> Result<(), String> {
    for (index, (host, guest)) in forwards.iter().enumerate() {
        if let Some((_, other)) = forwards[..index].iter().find(|(seen, _)| seen == host) {
            return Err(format!(
                "--forward {host}:{guest}: host port {host} is already forwarded to guest port {other}"
            ));
        }
    }
    Ok(())
}

/// Returns where the host reaches httpd: the URL of the forward to its port (`port=N`
/// among the kernel arguments, else 80), or how to add one.
fn httpd_address(kernel_args: &[String], forwards: &[(u16, u16)]) -> String {
    let port = kernel_args
        .iter()
        .filter_map(|arg| arg.strip_prefix("port="))
        .next_back()
        .and_then(|value| value.parse::<u16>().ok())
        .unwrap_or(80);
    match forwards.iter().find(|(_, guest)| *guest == port) {
        Some((host, _)) => format!("httpd: open http://127.0.0.1:{host}/ (e.g. curl http://127.0.0.1:{host}/)"),
        None => format!(
            "httpd: no --forward to guest port {port}, so the host cannot reach it; add e.g. --forward 8080:{port}"
        ),
    }
}

/// Builds the kernel, boots it and returns `Ok` only when the kernel reported success.
pub fn main(args: &RunArgs) -> Result<(), String> {
    for (service, core) in &args.places {
        if *core >= args.cores {
            return Err(format!(
                "--place {service}={core}: cores are 0 to {} with --cores {}",
                args.cores - 1,
                args.cores
            ));
        }
    }
    let workspace = tools::workspace()?;
    // An application crate's image runs the crate's application unless --app says.
    let mut args = args.clone();
    let crate_image = match &args.app_crate {
        Some(dir) => {
            let built = crate::app_crate::build(&workspace, dir, args.release)?;
            args.app.get_or_insert(built.package);
            Some(built.image)
        }
        None => None,
    };
    let args = &args;
    // The user's options are checked before anything is built or started.
    if !args.forwards.is_empty() && args.net != NetChoice::User {
        return Err("--forward needs --net user".into());
    }
    check_forwards(&args.forwards)?;
    check_ports_free(&args.forwards)?;
    let (disks, share_args) = with_share(&workspace, args)?;
    let kernel = match crate_image {
        Some(image) => image,
        None => build::kernel_or_build(&workspace, args.kernel.as_deref(), args.release)?,
    };
    tools::ensure_qemu()?;
    let accel = tools::resolve_accel(args.accel)?;
    let mut config = QemuConfig::new(kernel, args.machine, args.cores, accel, args.app());
    config.mem = args.mem;
    config.kernel_args = kernel_words(args, share_args);
    config.disks = disks;
    config.net = (args.net == NetChoice::User).then(|| args.forwards.clone());
    config.gdb = args.gdb;
    config.check_command_line()?;
    config.check_memory()?;
    for (host, guest) in &args.forwards {
        eprintln!("xtask: forwarding 127.0.0.1:{host} to guest port {guest} (tcp and udp)");
    }
    if !args.forwards.is_empty() {
        // QEMU's user networking listens with a backlog of one: a burst of connections
        // costs host retransmissions that look like a slow guest (README, --forward).
        eprintln!(
            "xtask: QEMU queues two new connections per forwarded port: the host retries \
             more at once after 0.2-1.7 s (see --forward in the README)"
        );
    }
    if args.app() == "httpd" {
        eprintln!(
            "xtask: {}",
            httpd_address(&config.kernel_args, &args.forwards)
        );
    }
    eprintln!("xtask: running {}", config.command_line());
    if args.gdb {
        eprintln!("xtask: QEMU waits for gdb; attach with:");
        eprintln!(
            "    gdb {} -ex 'target remote :1234'",
            config.kernel.display()
        );
    }
    let outcome = qemu::run(&config, timeout(args), true)?;
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
        args.app(),
        outcome.elapsed.as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_port_must_be_free() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = check_ports_free(&[(port, 80)]).unwrap_err();
        assert!(
            error.starts_with(&format!(
                "--forward {port}:80: 127.0.0.1:{port} is not free"
            )),
            "{error}"
        );
        drop(taken);
        assert_eq!(check_ports_free(&[]), Ok(()));
    }

    #[test]
    fn a_host_port_is_forwarded_once() {
        assert_eq!(check_forwards(&[]), Ok(()));
        assert_eq!(check_forwards(&[(8080, 80), (7777, 7), (7778, 7)]), Ok(()));
        let error = check_forwards(&[(8080, 80), (7777, 7), (7777, 8)]).unwrap_err();
        assert_eq!(
            error,
            "--forward 7777:8: host port 7777 is already forwarded to guest port 7"
        );
    }
    use clap::Parser;

    /// `cargo xtask run` alone, for parsing its options in tests.
    #[derive(Debug, Parser)]
    struct Run {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse(words: &[&str]) -> RunArgs {
        Run::try_parse_from(std::iter::once("run").chain(words.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn app_help_lists_every_app_applications_first() {
        use clap::CommandFactory;
        let command = Run::command();
        let help = command
            .get_arguments()
            .find(|argument| argument.get_id() == "app")
            .and_then(|argument| argument.get_help())
            .expect("--app has help")
            .to_string();
        let words: Vec<&str> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .collect();
        // The help names every app of the image, in the table's order (applications,
        // then fixtures, then benches).
        let mut from = 0;
        for name in apps::names() {
            let Some(at) = words[from..].iter().position(|word| *word == name) else {
                panic!("--app help does not name `{name}` after the apps before it: {help}");
            };
            from += at + 1;
        }
    }

    #[test]
    fn an_app_crate_runs_its_own_app_unless_told() {
        assert_eq!(parse(&[]).app(), "hello");
        let crate_args = parse(&["--app-crate", "../pingpong"]);
        assert_eq!(crate_args.app, None);
        assert_eq!(crate_args.app_crate, Some(PathBuf::from("../pingpong")));
        assert!(Run::try_parse_from(["run", "--app-crate", "x", "--kernel", "k"]).is_err());
    }

    #[test]
    fn servers_run_until_stopped_unless_told() {
        assert_eq!(timeout(&parse(&[])), Some(Duration::from_secs(120)));
        assert_eq!(timeout(&parse(&["--app", "httpd"])), None);
        assert_eq!(timeout(&parse(&["--app", "echo"])), None);
        assert_eq!(
            timeout(&parse(&["--app", "httpd", "--timeout", "30"])),
            Some(Duration::from_secs(30))
        );
        assert_eq!(timeout(&parse(&["--app", "files", "--timeout", "0"])), None);
    }

    #[test]
    fn share_and_forward_combine_for_httpd() {
        let args = parse(&[
            "--app",
            "httpd",
            "--share",
            "/tmp/site",
            "--forward",
            "8080:80",
            "--forward",
            "7777:7",
        ]);
        assert_eq!(args.share, Some(PathBuf::from("/tmp/site")));
        assert_eq!(args.forwards, [(8080, 80), (7777, 7)]);
        assert_eq!(
            httpd_address(&[], &args.forwards),
            "httpd: open http://127.0.0.1:8080/ (e.g. curl http://127.0.0.1:8080/)"
        );
        assert!(httpd_address(&["port=8000".into()], &args.forwards)
            .contains("no --forward to guest port 8000"));
        assert!(httpd_address(&["port=8000".into()], &[(9000, 8000)])
            .contains("http://127.0.0.1:9000/"));
    }

    #[test]
    fn the_users_disk_wins_over_the_default_share() {
        let root = std::path::Path::new("/repo");
        let named = parse(&["--app", "files", "--kernel-arg", "fs.disk=disk0"]);
        assert_eq!(choose_volume(&named, root), Volume::Named);
        let mut with_disk = parse(&["--app", "files"]);
        with_disk.disks.push(qemu::DiskSpec {
            path: "my.img".into(),
            read_only: false,
        });
        assert_eq!(choose_volume(&with_disk, root), Volume::FirstDisk);
        assert_eq!(
            choose_volume(&parse(&["--app", "files"]), root),
            Volume::Share(root.join("files"))
        );
        assert_eq!(
            choose_volume(&parse(&["--app", "httpd", "--share", "/site"]), root),
            Volume::Share(PathBuf::from("/site"))
        );
        assert_eq!(choose_volume(&parse(&[]), root), Volume::None);
    }

    #[test]
    fn a_disk_name_that_does_not_exist_is_refused() {
        assert_eq!(check_disk_name("disk0", 1), Ok(()));
        assert_eq!(check_disk_name("disk1", 2), Ok(()));
        assert!(check_disk_name("disk1", 1)
            .unwrap_err()
            .contains("the only attached disk is disk0"));
        assert!(check_disk_name("disk7", 2)
            .unwrap_err()
            .contains("disk0 to disk1"));
        assert!(check_disk_name("disk0", 0)
            .unwrap_err()
            .contains("no disk is attached"));
        assert!(check_disk_name("sda", 1).is_err());
    }

    #[test]
    fn the_users_kernel_words_come_last() {
        let args = parse(&[
            "--place",
            "net=1",
            "--kernel-arg",
            "fs.disk=disk0",
            "--kernel-arg",
            "place.net=0",
        ]);
        assert_eq!(
            kernel_words(&args, vec!["fs.disk=disk1".into()]),
            [
                "fs.disk=disk1",
                "place.net=1",
                "fs.disk=disk0",
                "place.net=0"
            ]
        );
    }

    #[test]
    fn default_shares() {
        assert_eq!(default_share("files").map(|share| share.0), Some("files"));
        let (folder, file, text) = default_share("httpd").unwrap();
        assert_eq!((folder, file), ("www", "index.html"));
        assert!(text.starts_with("<!DOCTYPE html>"));
        assert_eq!(default_share("hello"), None);
    }
}
