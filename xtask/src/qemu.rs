//! QEMU command lines for Manada images, and running QEMU with a live console and a timeout.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::console::{parse_line, Marker};
use crate::MAX_CORES;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// The longest kernel command line the kernel takes (`percore::bootinfo::CMDLINE_MAX`).
pub const KERNEL_COMMAND_LINE_MAX: usize = 4096;

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
    fn qemu_value(self) -> &'static str {
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
    fn virtio_device(self, kind: &str, backend: &str) -> String {
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
    fn qemu_args(self) -> &'static [&'static str] {
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

/// Everything that decides a QEMU command line.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// The kernel ELF image.
    pub kernel: PathBuf,
    /// The machine type.
    pub machine: Machine,
    /// The number of virtual CPUs.
    pub cores: usize,
    /// The guest memory size.
    pub mem: MemSize,
    /// The accelerator.
    pub accel: Accel,
    /// The app the kernel runs (`app=NAME` on its command line).
    pub app: String,
    /// Further words for the kernel command line (`key=value`).
    pub kernel_args: Vec<String>,
    /// Disk images, attached as virtio-blk (`disk0`, `disk1`, ... in the guest).
    pub disks: Vec<DiskSpec>,
    /// A virtio-net device on QEMU's user networking, with these `(host, guest)` port
    /// forwards (TCP and UDP, host side on 127.0.0.1); `None`: no network device.
    pub net: Option<Vec<(u16, u16)>>,
    /// With `net`: also put the guest's network on a hub with a UDP socket, QEMU
    /// listening on 127.0.0.1 at the first port and sending every frame to the second,
    /// so a host program can inject raw Ethernet frames (`-netdev socket,udp=`).
    pub inject: Option<(u16, u16)>,
    /// Whether QEMU waits for gdb on :1234 before the first instruction.
    pub gdb: bool,
}

impl QemuConfig {
    /// Returns the configuration every run starts from: `app` on `machine` with `cores`
    /// cores and 512 MiB, no kernel arguments, disks or network, no gdb.
    pub fn new(kernel: PathBuf, machine: Machine, cores: usize, accel: Accel, app: &str) -> Self {
        QemuConfig {
            kernel,
            machine,
            cores,
            mem: MemSize::from_mebibytes(512),
            accel,
            app: app.to_string(),
            kernel_args: Vec::new(),
            disks: Vec::new(),
            net: None,
            inject: None,
            gdb: false,
        }
    }

    /// Returns the kernel command line QEMU passes (`app=NAME` and the other words).
    pub fn kernel_command_line(&self) -> String {
        std::iter::once(format!("app={}", self.app))
            .chain(self.kernel_args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Returns `Ok` when the kernel command line fits the kernel's limit, else a clear
    /// error (the kernel refuses a longer one rather than cut it).
    pub fn check_command_line(&self) -> Result<(), String> {
        let length = self.kernel_command_line().len();
        if length > KERNEL_COMMAND_LINE_MAX {
            return Err(format!(
                "the kernel command line is {length} bytes, more than the kernel's {KERNEL_COMMAND_LINE_MAX}; use fewer or shorter --kernel-arg words"
            ));
        }
        Ok(())
    }

    /// Returns QEMU's arguments (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-machine".into(),
            self.machine.qemu_value().into(),
            "-smp".into(),
            self.cores.to_string(),
            "-m".into(),
            self.mem.to_string(),
        ];
        args.extend(self.accel.qemu_args().iter().map(|arg| arg.to_string()));
        args.extend([
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-append".into(),
            self.kernel_command_line(),
        ]);
        args.extend(
            [
                "-serial",
                "stdio",
                "-display",
                "none",
                "-monitor",
                "none",
                "-no-reboot",
                // Thread names ("CPU 1/TCG"): the web bench reads each vCPU's CPU time.
                "-name",
                "manada,debug-threads=on",
                // No default VGA, NIC or drives: the guest gets what we add, nothing more.
                "-nodefaults",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ]
            .map(String::from),
        );
        if self.machine == Machine::Microvm {
            // QEMU 7.2's virtio-mmio defaults to the legacy (version 1) registers; the
            // kernel speaks version 2 only.
            args.extend(["-global".into(), "virtio-mmio.force-legacy=false".into()]);
        }
        for (index, disk) in self.disks.iter().enumerate() {
            // QEMU's option syntax doubles commas inside a value.
            let mut drive = format!(
                "file={},format=raw,if=none,id=disk{index}",
                disk.path.replace(',', ",,")
            );
            if disk.read_only {
                drive.push_str(",readonly=on");
            }
            args.extend([
                "-drive".into(),
                drive,
                "-device".into(),
                // The serial is what the guest's get-id request returns.
                format!(
                    "{},serial=manada-disk{index}",
                    self.machine
                        .virtio_device("blk", &format!("drive=disk{index}"))
                ),
            ]);
        }
        if let Some(forwards) = &self.net {
            let mut netdev = String::from("user,id=net0");
            for (host, guest) in forwards {
                netdev.push_str(&format!(
                    ",hostfwd=tcp:127.0.0.1:{host}-:{guest},hostfwd=udp:127.0.0.1:{host}-:{guest}"
                ));
            }
            let mut device = "net0";
            args.extend(["-netdev".into(), netdev]);
            if let Some((listen, peer)) = self.inject {
                // A hub joins the NIC, user networking and the injection socket.
                device = "hub0";
                args.extend([
                    "-netdev".into(),
                    format!("socket,id=inject0,udp=127.0.0.1:{peer},localaddr=127.0.0.1:{listen}"),
                    "-netdev".into(),
                    "hubport,id=hub0,hubid=0".into(),
                    "-netdev".into(),
                    "hubport,id=hub1,hubid=0,netdev=net0".into(),
                    "-netdev".into(),
                    "hubport,id=hub2,hubid=0,netdev=inject0".into(),
                ]);
            }
            args.extend([
                "-device".into(),
                self.machine
                    .virtio_device("net", &format!("netdev={device}")),
            ]);
            // Every frame to and from the guest, for Wireshark or tcpdump.
            if let Some(pcap) = std::env::var_os("MANADA_PCAP") {
                args.extend([
                    "-object".into(),
                    format!(
                        "filter-dump,id=dump0,netdev={device},file={}",
                        pcap.to_string_lossy()
                    ),
                ]);
            }
        }
        if self.gdb {
            args.extend(["-s".into(), "-S".into()]);
        }
        args
    }

    /// Returns the command line as a shell would take it, for printing.
    pub fn command_line(&self) -> String {
        std::iter::once(QEMU.to_string())
            .chain(self.args().iter().map(|arg| shell_quote(arg)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Returns `arg` quoted for a POSIX shell when it needs quoting.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_=,./:+@%".contains(&byte));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// How QEMU ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The kernel wrote 0x10 to the exit port (QEMU status 33).
    KernelSuccess,
    /// The kernel wrote 0x11 to the exit port (QEMU status 35).
    KernelFailure,
    /// QEMU exited 0: no kernel status, usually a triple fault under `-no-reboot`.
    NoKernelCode,
    /// Any other QEMU exit status.
    Other(i32),
    /// QEMU was killed by a signal xtask did not send.
    Signal,
    /// xtask killed QEMU at the timeout (or when the client beside it was done).
    TimedOut,
    /// xtask killed QEMU on purpose, as a crash test asked (`kill_after_line`).
    Killed,
}

impl Status {
    /// Returns the status for QEMU's exit status.
    pub fn from_exit(status: ExitStatus) -> Status {
        match status.code() {
            Some(33) => Status::KernelSuccess,
            Some(35) => Status::KernelFailure,
            Some(0) => Status::NoKernelCode,
            Some(code) => Status::Other(code),
            None => Status::Signal,
        }
    }
}

/// When the kernel said all its cores were online.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Online {
    /// The number of cores the kernel reported.
    pub cores: usize,
    /// The kernel's own figure: milliseconds since kernel entry.
    pub kernel_ms: f64,
    /// Host time from QEMU's spawn to the line arriving.
    pub after_start: Duration,
}

/// What a QEMU run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How QEMU ended.
    pub status: Status,
    /// The guest console (QEMU's stdout), line by line.
    pub console: Vec<String>,
    /// When each console line arrived, as host time since QEMU's spawn (one per line
    /// of `console` that came from QEMU).
    pub arrivals: Vec<Duration>,
    /// QEMU's own stderr lines.
    pub stderr: Vec<String>,
    /// The `cores online` marker, if it appeared.
    pub online: Option<Online>,
    /// The first panic or exception line, if any.
    pub fatal: Option<String>,
    /// The first `unknown app` marker, if any.
    pub unknown_app: Option<String>,
    /// Host time from spawn to exit.
    pub elapsed: Duration,
    /// The timeout the run had.
    pub timeout: Option<Duration>,
    /// xtask killed QEMU on purpose (`kill_after_line`).
    pub killed: bool,
}

impl Outcome {
    /// An outcome with `status` and `console` and nothing else seen yet.
    pub fn new(status: Status, console: Vec<String>, timeout: Option<Duration>) -> Self {
        Outcome {
            status,
            console,
            arrivals: Vec::new(),
            stderr: Vec::new(),
            online: None,
            fatal: None,
            unknown_app: None,
            elapsed: Duration::ZERO,
            timeout,
            killed: false,
        }
    }

    /// Returns `Ok` when the kernel reported success and nothing fatal appeared, otherwise why not.
    pub fn verdict(&self) -> Result<(), String> {
        if let Some(line) = &self.fatal {
            return Err(match self.status {
                Status::KernelFailure => format!("kernel reported failure: {line}"),
                _ => format!("kernel crashed: {line}"),
            });
        }
        if let Some(message) = &self.unknown_app {
            return Err(message.clone());
        }
        match self.status {
            Status::KernelSuccess => Ok(()),
            Status::KernelFailure => Err("kernel reported failure".into()),
            Status::NoKernelCode => Err(
                // QEMU exits 0 when someone else stops it with a signal, and says so.
                match self
                    .stderr
                    .iter()
                    .find(|line| line.contains("terminating on signal"))
                {
                    Some(line) => format!("QEMU was stopped from outside: {}", line.trim()),
                    None => "QEMU exited without a kernel status (triple fault?)".into(),
                },
            ),
            Status::Other(code) => {
                let last = self
                    .stderr
                    .last()
                    .map(|line| format!(": {line}"))
                    .unwrap_or_default();
                Err(format!("QEMU exited with status {code}{last}"))
            }
            Status::Signal => Err("QEMU was killed by a signal".into()),
            Status::Killed => Err("QEMU was killed on purpose by the test".into()),
            Status::TimedOut => Err(format!(
                "timed out after {} s; QEMU killed",
                self.timeout.map_or(0, |timeout| timeout.as_secs())
            )),
        }
    }

    /// Returns the last `count` console lines, then QEMU's stderr lines, for failure reports.
    pub fn tail(&self, count: usize) -> Vec<String> {
        let start = self.console.len().saturating_sub(count);
        let console = self.console[start..].iter().cloned();
        console
            .chain(self.stderr.iter().map(|line| format!("qemu: {line}")))
            .collect()
    }
}

/// A running QEMU that is killed when dropped, so no test leaves one behind.
#[derive(Debug)]
struct QemuGuard {
    child: Child,
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        // Fails harmlessly when QEMU already exited; wait() reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A line from one of QEMU's output streams.
enum Event {
    Console(String, Instant),
    ConsoleClosed,
    Stderr(String),
}

/// Sends each line of `stream` through `sender`, then `closed` (if any).
fn forward_lines(
    stream: impl Read + Send + 'static,
    sender: mpsc::Sender<Event>,
    make: fn(String, Instant) -> Event,
    closed: Option<fn() -> Event>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer);
                    let line = line.trim_end_matches(['\r', '\n']).to_string();
                    if sender.send(make(line, Instant::now())).is_err() {
                        return;
                    }
                }
            }
        }
        if let Some(closed) = closed {
            let _ = sender.send(closed());
        }
    });
}

/// Boots `config` under QEMU until it exits or `timeout` passes (then QEMU is killed).
///
/// With `echo`, the console goes to stdout and QEMU's stderr to stderr as it arrives.
pub fn run(config: &QemuConfig, timeout: Option<Duration>, echo: bool) -> Result<Outcome, String> {
    run_until(config, timeout, echo, None)
}

/// Runs the guest of `config` while `client` talks to it from the host. The guest is
/// stopped as soon as the client returns; the client is handed a flag that turns true
/// when the guest ended (on its own or at `limit`), so it can stop waiting. Returns the
/// guest's outcome and the client's result.
pub fn serve_while<T: Send>(
    config: &QemuConfig,
    limit: Duration,
    client: impl FnOnce(&std::sync::atomic::AtomicBool) -> Result<T, String> + Send,
) -> (Result<Outcome, String>, Result<T, String>) {
    serve_watching(config, limit, |guest| client(guest.ended))
}

/// What a host client running beside a guest sees of it: whether it ended, and its
/// console so far.
#[derive(Debug)]
pub struct Guest<'a> {
    ended: &'a std::sync::atomic::AtomicBool,
    console: &'a Mutex<Vec<String>>,
}

impl Guest<'_> {
    /// Returns true once the guest ended (on its own or at the limit).
    pub fn ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Returns the console lines the guest printed so far.
    pub fn console(&self) -> Vec<String> {
        self.console
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Returns the first console line for which `wanted` is true, waiting for it up to
    /// `limit` (or until the guest ended); `None` if it did not come.
    pub fn wait_for_line(&self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.console().into_iter().find(|line| wanted(line)) {
                return Some(line);
            }
            if self.ended() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Like [`serve_while`], with the client watching the guest's console as it comes.
pub fn serve_watching<T: Send>(
    config: &QemuConfig,
    limit: Duration,
    client: impl FnOnce(&Guest<'_>) -> Result<T, String> + Send,
) -> (Result<Outcome, String>, Result<T, String>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (stop, ended) = (AtomicBool::new(false), AtomicBool::new(false));
    let console = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let result = client(&Guest {
                ended: &ended,
                console: &console,
            });
            stop.store(true, Ordering::Release);
            result
        });
        let outcome = run_with(
            config,
            Some(limit),
            false,
            Some(&stop),
            None,
            Some(&console),
        );
        ended.store(true, Ordering::Release);
        let result = handle
            .join()
            .unwrap_or_else(|_| Err("the client panicked".into()));
        (outcome, result)
    })
}

/// Like [`run`], but also ends QEMU (status `TimedOut`) as soon as `stop` is set: for
/// guests that serve until stopped, while a host program talks to them.
pub fn run_until(
    config: &QemuConfig,
    timeout: Option<Duration>,
    echo: bool,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Outcome, String> {
    run_with(config, timeout, echo, stop, None, None)
}

/// Runs QEMU like [`run`] and kills it (SIGKILL, status `Killed`) `delay` after the first
/// console line that starts with `prefix`: a power cut at a chosen moment, for crash tests.
pub fn kill_after_line(
    config: &QemuConfig,
    limit: Duration,
    prefix: &str,
    delay: Duration,
) -> Result<Outcome, String> {
    run_with(
        config,
        Some(limit),
        false,
        None,
        Some((prefix, delay)),
        None,
    )
}

/// The loop behind [`run_until`], [`kill_after_line`] and [`serve_watching`] (which
/// gets each console line in `mirror` as it arrives).
///
/// A panic or exception line does not end the run: the kernel contains faults (a
/// thread or a core fails, the others go on) and ends the run itself when its main is
/// done; the first such line is kept in the outcome, so the verdict is still failure.
fn run_with(
    config: &QemuConfig,
    timeout: Option<Duration>,
    echo: bool,
    stop: Option<&std::sync::atomic::AtomicBool>,
    kill: Option<(&str, Duration)>,
    mirror: Option<&Mutex<Vec<String>>>,
) -> Result<Outcome, String> {
    let timeout = if config.gdb { None } else { timeout };
    let mut kill_at: Option<Instant> = None;
    let start = Instant::now();
    let child = Command::new(QEMU)
        .args(config.args())
        // Not the terminal: QEMU would put it in raw mode and a killed QEMU leaves it so.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start {QEMU}: {error}"))?;
    let mut guard = QemuGuard { child };
    let (sender, receiver) = mpsc::channel();
    let stdout = guard
        .child
        .stdout
        .take()
        .ok_or("QEMU stdout not captured")?;
    let stderr = guard
        .child
        .stderr
        .take()
        .ok_or("QEMU stderr not captured")?;
    forward_lines(
        stdout,
        sender.clone(),
        Event::Console,
        Some(|| Event::ConsoleClosed),
    );
    forward_lines(stderr, sender, |line, _| Event::Stderr(line), None);

    let mut outcome = Outcome::new(Status::TimedOut, Vec::new(), timeout);
    let deadline = timeout.map(|timeout| start + timeout);
    let mut console_open = true;
    let status = loop {
        if !console_open {
            if let Some(status) = guard.child.try_wait().map_err(|error| error.to_string())? {
                break Some(status);
            }
        }
        let now = Instant::now();
        let limit = deadline;
        let stopped = stop.is_some_and(|stop| stop.load(std::sync::atomic::Ordering::Acquire));
        if stopped || limit.is_some_and(|limit| now >= limit) {
            break None;
        }
        if kill_at.is_some_and(|at| now >= at) {
            outcome.killed = true;
            break None;
        }
        let wait = limit.map_or(Duration::from_millis(100), |limit| limit - now);
        match receiver.recv_timeout(wait.min(Duration::from_millis(100))) {
            Ok(Event::Console(line, arrived)) => {
                if echo {
                    println!("{line}");
                }
                match parse_line(&line) {
                    Some(Marker::Online { cores, kernel_ms }) if outcome.online.is_none() => {
                        outcome.online = Some(Online {
                            cores,
                            kernel_ms,
                            after_start: arrived - start,
                        });
                    }
                    Some(marker) if marker.is_fatal() && outcome.fatal.is_none() => {
                        outcome.fatal = Some(line.clone());
                    }
                    Some(Marker::UnknownApp { app, available })
                        if outcome.unknown_app.is_none() =>
                    {
                        outcome.unknown_app = Some(format!(
                            "the kernel has no app '{app}' (available: {available})"
                        ));
                    }
                    _ => {}
                }
                if let Some((prefix, delay)) = kill {
                    if kill_at.is_none() && line.starts_with(prefix) {
                        kill_at = Some(arrived + delay);
                    }
                }
                if let Some(mirror) = mirror {
                    mirror
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push(line.clone());
                }
                outcome.console.push(line);
                outcome.arrivals.push(arrived - start);
            }
            Ok(Event::Stderr(line)) => {
                if echo {
                    eprintln!("{line}");
                }
                outcome.stderr.push(line);
            }
            Ok(Event::ConsoleClosed) => console_open = false,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => console_open = false,
        }
    };
    if echo {
        let _ = std::io::stdout().flush();
    }
    outcome.status = match status {
        Some(status) => Status::from_exit(status),
        None if outcome.killed => Status::Killed,
        None => Status::TimedOut,
    };
    drop(guard);
    // QEMU's stderr may still hold its last words (e.g. why it refused to start).
    while let Ok(event) = receiver.recv_timeout(Duration::from_millis(50)) {
        if let Event::Stderr(line) = event {
            if echo {
                eprintln!("{line}");
            }
            outcome.stderr.push(line);
        }
    }
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(machine: Machine, accel: Accel) -> QemuConfig {
        QemuConfig::new(PathBuf::from("/t/manada"), machine, 4, accel, "hello")
    }

    #[test]
    fn a_command_line_longer_than_the_kernel_takes_is_refused() {
        let mut config = config(Machine::Q35, Accel::Tcg);
        config.kernel_args = vec![format!("pad={}", "x".repeat(4000))];
        assert!(config.check_command_line().is_ok());
        config.kernel_args = vec![format!("pad={}", "x".repeat(4100))];
        let error = config.check_command_line().unwrap_err();
        assert!(error.contains("more than the kernel's 4096"), "{error}");
    }

    const COMMON_TAIL: &str = "-kernel /t/manada -append app=hello -serial stdio -display none \
        -monitor none -no-reboot -name manada,debug-threads=on -nodefaults \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04";

    #[test]
    fn builds_arguments_for_each_machine_and_accel() {
        let cases = [
            (
                Machine::Q35,
                Accel::Tcg,
                "-machine q35 -smp 4 -m 512M -accel tcg,thread=multi",
            ),
            (
                Machine::Pc,
                Accel::Tcg,
                "-machine pc -smp 4 -m 512M -accel tcg,thread=multi",
            ),
            (
                Machine::Microvm,
                Accel::Tcg,
                "-machine microvm,acpi=on -smp 4 -m 512M -accel tcg,thread=multi",
            ),
            (
                Machine::Q35,
                Accel::Kvm,
                "-machine q35 -smp 4 -m 512M -accel kvm -cpu host",
            ),
            (
                Machine::Pc,
                Accel::Kvm,
                "-machine pc -smp 4 -m 512M -accel kvm -cpu host",
            ),
            (
                Machine::Microvm,
                Accel::Kvm,
                "-machine microvm,acpi=on -smp 4 -m 512M -accel kvm -cpu host",
            ),
        ];
        for (machine, accel, head) in cases {
            let args = config(machine, accel).args().join(" ");
            let tail = if machine == Machine::Microvm {
                format!("{COMMON_TAIL} -global virtio-mmio.force-legacy=false")
            } else {
                COMMON_TAIL.to_string()
            };
            assert_eq!(args, format!("{head} {tail}"), "{machine:?} {accel:?}");
        }
    }

    #[test]
    fn gdb_waits_for_the_debugger() {
        let mut gdb = config(Machine::Q35, Accel::Tcg);
        gdb.gdb = true;
        gdb.app = "my app".into();
        let args = gdb.args();
        assert_eq!(&args[args.len() - 2..], ["-s", "-S"]);
        assert!(gdb.command_line().contains("-append 'app=my app'"));
        assert!(gdb
            .command_line()
            .starts_with("qemu-system-x86_64 -machine q35 "));
    }

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
    fn maps_exit_statuses() {
        use std::os::unix::process::ExitStatusExt;
        let exit = |code: i32| Status::from_exit(ExitStatus::from_raw(code << 8));
        assert_eq!(exit(33), Status::KernelSuccess);
        assert_eq!(exit(35), Status::KernelFailure);
        assert_eq!(exit(0), Status::NoKernelCode);
        assert_eq!(exit(1), Status::Other(1));
        assert_eq!(Status::from_exit(ExitStatus::from_raw(9)), Status::Signal);
    }

    #[test]
    fn verdict_prefers_fatal_lines_over_status() {
        let mut outcome = Outcome::new(
            Status::KernelSuccess,
            vec!["PANIC on core 1: boom".into()],
            None,
        );
        assert_eq!(outcome.verdict(), Ok(()));
        outcome.fatal = Some("PANIC on core 1: boom".into());
        assert!(outcome.verdict().unwrap_err().contains("PANIC on core 1"));
        outcome.fatal = None;
        outcome.status = Status::NoKernelCode;
        assert!(outcome.verdict().unwrap_err().contains("triple fault"));
        outcome
            .stderr
            .push("qemu-system-x86_64: terminating on signal 15 from pid 7".into());
        assert!(outcome
            .verdict()
            .unwrap_err()
            .contains("stopped from outside"));
        outcome.stderr.pop();
        assert!(outcome.verdict().unwrap_err().contains("triple fault"));
        outcome.status = Status::KernelFailure;
        assert_eq!(outcome.verdict(), Err("kernel reported failure".into()));
    }

    #[test]
    fn kernel_args_join_the_command_line() {
        let mut c = config(Machine::Q35, Accel::Tcg);
        c.kernel_args = vec!["selftest=dead-core".into()];
        let args = c.args();
        let append = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(args[append + 1], "app=hello selftest=dead-core");
        assert!(parse_kernel_arg("selftest=page-fault").is_ok());
        assert!(parse_kernel_arg("novalue").is_err());
        assert!(parse_kernel_arg("a=b c").is_err());
        assert!(parse_kernel_arg("app=x").is_err());
        assert!(parse_kernel_arg("=x").is_err());
    }

    #[test]
    fn disks_become_virtio_blk_devices() {
        let mut c = config(Machine::Q35, Accel::Tcg);
        c.disks = vec![
            DiskSpec {
                path: "/tmp/a,b.img".into(),
                read_only: false,
            },
            DiskSpec {
                path: "ro.img".into(),
                read_only: true,
            },
        ];
        let line = c.args().join(" ");
        assert!(line.contains("-drive file=/tmp/a,,b.img,format=raw,if=none,id=disk0 -device virtio-blk-pci,drive=disk0,disable-legacy=on,serial=manada-disk0"));
        assert!(line.contains("-drive file=ro.img,format=raw,if=none,id=disk1,readonly=on"));
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

    #[test]
    fn microvm_gets_virtio_mmio_devices() {
        let mut c = config(Machine::Microvm, Accel::Tcg);
        c.disks = vec![DiskSpec {
            path: "fat:rw:/tmp/share".into(),
            read_only: false,
        }];
        c.net = Some(vec![(7777, 7)]);
        let line = c.args().join(" ");
        assert!(line.contains("-global virtio-mmio.force-legacy=false"));
        assert!(line.contains(
            "-drive file=fat:rw:/tmp/share,format=raw,if=none,id=disk0 \
             -device virtio-blk-device,drive=disk0,serial=manada-disk0"
        ));
        assert!(line.contains("-device virtio-net-device,netdev=net0"));
        assert!(line.contains("hostfwd=tcp:127.0.0.1:7777-:7"));
        assert!(!line.contains("-pci"));
        assert!(!line.contains("disable-legacy"));
        // The hub for frame injection works the same way on microvm.
        c.inject = Some((9000, 9001));
        assert!(c
            .args()
            .join(" ")
            .contains("-device virtio-net-device,netdev=hub0"));
        // q35 and pc stay on modern-only virtio-pci, without the microvm switch.
        c.machine = Machine::Pc;
        let line = c.args().join(" ");
        assert!(line.contains("-device virtio-net-pci,netdev=hub0,disable-legacy=on"));
        assert!(!line.contains("virtio-mmio"));
    }
}
