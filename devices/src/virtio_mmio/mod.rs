//! virtio over MMIO, the transport of QEMU's microvm, Firecracker and cloud-hypervisor's
//! MMIO mode: the transport itself ([`VirtioMmio`]), and finding the devices without PCI,
//! from `virtio_mmio.device=` words on the kernel command line ([`command_line`]) and
//! from `LNRO0005` devices in the ACPI DSDT ([`dsdt`]). Both finders are plain parsing,
//! tested on the host; the boot code hands them the bytes and maps what they find.

pub mod command_line;
pub mod dsdt;
mod transport;

pub use transport::{
    device_name, register, RegisterWindow, VirtioMmio, DEVICE_BLOCK, DEVICE_NET, MAGIC,
    VERSION_LEGACY, VERSION_MODERN,
};

/// Where a virtio-mmio device was described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `virtio_mmio.device=` word on the kernel command line.
    CommandLine,
    /// An ACPI device with `_HID` `LNRO0005` (DSDT or SSDT).
    Acpi,
}

/// A virtio-mmio device as the firmware or the command line describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceWindow {
    /// Physical address of the register window.
    pub base: u64,
    /// Bytes in the window.
    pub size: u64,
    /// The interrupt line (GSI), if one was given. The drivers poll; it is for the log.
    pub interrupt: Option<u32>,
    pub source: Source,
}
