//! The virtio-mmio transport, version 2 ("modern") registers only (virtio 1.2, 4.2.2).
//!
//! The registers sit in one window (512 bytes on QEMU's microvm and Firecracker): 32-bit
//! control registers below 0x100, the device configuration from 0x100 on. The window is a
//! [`RegisterWindow`]: [`MmioWindow`] on the machine, a fake that plays the device in the
//! host tests. Version 1 (legacy) devices are refused: their queue layout (QueuePFN, guest
//! page size) is a different protocol, and QEMU offers version 2 when told
//! (`-global virtio-mmio.force-legacy=false`).

use crate::mmio::MmioWindow;
use crate::virtio::{DeviceTransport, Transport, TransportError};

/// "virt" in little-endian: the value of the MagicValue register.
pub const MAGIC: u32 = 0x7472_6976;
/// The Version register of the modern interface.
pub const VERSION_MODERN: u32 = 2;
/// The Version register of the legacy interface.
pub const VERSION_LEGACY: u32 = 1;
/// DeviceID of a network card.
pub const DEVICE_NET: u32 = 1;
/// DeviceID of a block device.
pub const DEVICE_BLOCK: u32 = 2;

/// Register offsets (virtio 1.2, table 4.1).
pub mod register {
    pub const MAGIC_VALUE: usize = 0x000;
    pub const VERSION: usize = 0x004;
    pub const DEVICE_ID: usize = 0x008;
    pub const VENDOR_ID: usize = 0x00C;
    pub const DEVICE_FEATURES: usize = 0x010;
    pub const DEVICE_FEATURES_SELECT: usize = 0x014;
    pub const DRIVER_FEATURES: usize = 0x020;
    pub const DRIVER_FEATURES_SELECT: usize = 0x024;
    pub const QUEUE_SELECT: usize = 0x030;
    pub const QUEUE_SIZE_MAX: usize = 0x034;
    pub const QUEUE_SIZE: usize = 0x038;
    pub const QUEUE_READY: usize = 0x044;
    pub const QUEUE_NOTIFY: usize = 0x050;
    pub const INTERRUPT_STATUS: usize = 0x060;
    pub const INTERRUPT_ACK: usize = 0x064;
    pub const STATUS: usize = 0x070;
    pub const QUEUE_DESCRIPTOR_LOW: usize = 0x080;
    pub const QUEUE_DESCRIPTOR_HIGH: usize = 0x084;
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    pub const QUEUE_DRIVER_HIGH: usize = 0x094;
    pub const QUEUE_DEVICE_LOW: usize = 0x0A0;
    pub const QUEUE_DEVICE_HIGH: usize = 0x0A4;
    pub const CONFIG_GENERATION: usize = 0x0FC;
    /// The device configuration starts here.
    pub const CONFIG: usize = 0x100;
}

/// Returns the name of virtio device type `id`, for the boot log.
pub fn device_name(id: u32) -> &'static str {
    match id {
        DEVICE_NET => "virtio-net",
        DEVICE_BLOCK => "virtio-blk",
        3 => "virtio-console",
        4 => "virtio-rng",
        5 => "virtio-balloon",
        9 => "virtio-9p",
        16 => "virtio-gpu",
        18 => "virtio-input",
        19 => "virtio-vsock",
        26 => "virtio-fs",
        _ => "virtio device of unknown type",
    }
}

/// A device's register window as the transport reads and writes it: 32-bit control
/// registers, byte-wide configuration reads.
pub trait RegisterWindow {
    /// Returns the window's size in bytes.
    fn size(&self) -> usize;
    /// Returns the 32-bit register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, offset: usize, value: u32);
    /// Returns the byte at `offset` (device configuration).
    fn read8(&self, offset: usize) -> u8;
}

impl RegisterWindow for MmioWindow {
    fn size(&self) -> usize {
        self.len()
    }

    fn read32(&self, offset: usize) -> u32 {
        MmioWindow::read32(self, offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        MmioWindow::write32(self, offset, value);
    }

    fn read8(&self, offset: usize) -> u8 {
        MmioWindow::read8(self, offset)
    }
}

/// A virtio device behind the MMIO transport (version 2).
#[derive(Debug)]
pub struct VirtioMmio<W: RegisterWindow = MmioWindow> {
    window: W,
    device_id: u32,
    vendor_id: u32,
}

impl<W: RegisterWindow> VirtioMmio<W> {
    /// Returns the transport of the device in `window`, after checking that the window
    /// holds a version 2 virtio-mmio device with a device behind it.
    pub fn new(window: W) -> Result<VirtioMmio<W>, TransportError> {
        if window.size() < register::CONFIG {
            return Err(TransportError::WindowTooSmall(window.size()));
        }
        let magic = window.read32(register::MAGIC_VALUE);
        if magic != MAGIC {
            return Err(TransportError::NotVirtio(magic));
        }
        match window.read32(register::VERSION) {
            VERSION_MODERN => {}
            VERSION_LEGACY => return Err(TransportError::LegacyInterface),
            version => return Err(TransportError::UnknownVersion(version)),
        }
        let device_id = window.read32(register::DEVICE_ID);
        if device_id == 0 {
            return Err(TransportError::NoDevice);
        }
        let vendor_id = window.read32(register::VENDOR_ID);
        Ok(VirtioMmio {
            window,
            device_id,
            vendor_id,
        })
    }

    /// Returns the virtio device type ([`DEVICE_NET`], [`DEVICE_BLOCK`], ...).
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// Returns the vendor id the device reports.
    pub fn vendor_id(&self) -> u32 {
        self.vendor_id
    }

    /// Returns the register window (the tests look at what the driver wrote).
    pub fn window(&self) -> &W {
        &self.window
    }
}

impl<W: RegisterWindow> DeviceTransport for VirtioMmio<W> {
    fn status(&self) -> u8 {
        // Only the low 8 bits are defined.
        self.window.read32(register::STATUS) as u8
    }

    fn set_status(&mut self, status: u8) {
        self.window.write32(register::STATUS, u32::from(status));
    }

    fn device_features(&mut self, word: u32) -> u32 {
        self.window.write32(register::DEVICE_FEATURES_SELECT, word);
        self.window.read32(register::DEVICE_FEATURES)
    }

    fn set_driver_features(&mut self, word: u32, value: u32) {
        self.window.write32(register::DRIVER_FEATURES_SELECT, word);
        self.window.write32(register::DRIVER_FEATURES, value);
    }

    fn config_generation(&self) -> u32 {
        self.window.read32(register::CONFIG_GENERATION)
    }

    fn config_len(&self) -> usize {
        self.window.size() - register::CONFIG
    }

    fn config_byte(&self, offset: usize) -> u8 {
        self.window.read8(register::CONFIG + offset)
    }

    fn max_queue_size(&mut self, index: u16) -> u16 {
        self.window
            .write32(register::QUEUE_SELECT, u32::from(index));
        let maximum = self.window.read32(register::QUEUE_SIZE_MAX);
        u16::try_from(maximum).unwrap_or(u16::MAX)
    }

    fn enable_queue(
        &mut self,
        index: u16,
        size: u16,
        descriptors: u64,
        driver: u64,
        device: u64,
    ) -> Result<(), TransportError> {
        self.window
            .write32(register::QUEUE_SELECT, u32::from(index));
        if self.window.read32(register::QUEUE_READY) != 0 {
            return Err(TransportError::NoSuchQueue(index));
        }
        let maximum = self.window.read32(register::QUEUE_SIZE_MAX);
        if maximum == 0 {
            return Err(TransportError::NoSuchQueue(index));
        }
        if size == 0 || u32::from(size) > maximum {
            return Err(TransportError::BadQueueSize(size));
        }
        self.window.write32(register::QUEUE_SIZE, u32::from(size));
        for (low, address) in [
            (register::QUEUE_DESCRIPTOR_LOW, descriptors),
            (register::QUEUE_DRIVER_LOW, driver),
            (register::QUEUE_DEVICE_LOW, device),
        ] {
            self.window.write32(low, address as u32);
            self.window.write32(low + 4, (address >> 32) as u32);
        }
        self.window.write32(register::QUEUE_READY, 1);
        Ok(())
    }

    /// Reads InterruptStatus and writes the bits read to InterruptACK.
    fn interrupt_status(&mut self) -> u8 {
        let status = self.window.read32(register::INTERRUPT_STATUS);
        if status != 0 {
            self.window.write32(register::INTERRUPT_ACK, status);
        }
        status as u8
    }
}

impl<W: RegisterWindow> Transport for VirtioMmio<W> {
    fn notify(&mut self, queue: u16) {
        self.window
            .write32(register::QUEUE_NOTIFY, u32::from(queue));
    }
}
