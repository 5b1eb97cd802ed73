//! QEMU's command line for a configuration, and the kernel command line inside it.

use super::config::QemuConfig;
use super::options::Machine;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// The longest kernel command line the kernel takes (`percore::bootinfo::CMDLINE_MAX`).
pub const KERNEL_COMMAND_LINE_MAX: usize = 4096;

impl QemuConfig {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::qemu::options::{Accel, DiskSpec};

    fn config(machine: Machine, accel: Accel) -> QemuConfig {
        QemuConfig::new(PathBuf::from("/t/manada"), machine, 4, accel, "hello")
    }

    #[test]
    fn command_line_limit_matches_the_kernel() {
        assert_eq!(KERNEL_COMMAND_LINE_MAX, percore::bootinfo::CMDLINE_MAX);
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
    fn kernel_args_join_the_command_line() {
        let mut c = config(Machine::Q35, Accel::Tcg);
        c.kernel_args = vec!["selftest=dead-core".into()];
        let args = c.args();
        let append = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(args[append + 1], "app=hello selftest=dead-core");
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
