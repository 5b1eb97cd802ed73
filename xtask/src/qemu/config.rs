//! The configuration of one QEMU run, and the one constructor every caller starts from.

use std::path::PathBuf;

use super::options::{Accel, DiskSpec, Machine, MemSize};

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
    /// Keeps struct literals out of other modules, so every configuration starts from
    /// [`QemuConfig::new`] and a new field gets its default in one place.
    _from_new: (),
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
            _from_new: (),
        }
    }
}
