//! The virtio-pci modern transport (virtio 1.x): the common, notify, ISR and device
//! configuration structures that vendor capabilities point at inside the BARs.
//!
//! Every register access is a volatile MMIO access at `BAR address + offset`; the boot
//! core maps the BARs (uncached) before any driver starts. A transport refuses devices
//! without `VIRTIO_F_VERSION_1` (legacy-only devices).

use crate::pci::{Bar, ConfigSpace, PciDevice};
use crate::virtio::{Transport, FEATURE_VERSION_1};

const CAPABILITY_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;

// Common configuration layout (virtio 1.2, 4.1.4.3).
const DEVICE_FEATURE_SELECT: usize = 0x00;
const DEVICE_FEATURE: usize = 0x04;
const DRIVER_FEATURE_SELECT: usize = 0x08;
const DRIVER_FEATURE: usize = 0x0C;
const DEVICE_STATUS: usize = 0x14;
const CONFIG_GENERATION: usize = 0x15;
const QUEUE_SELECT: usize = 0x16;
const QUEUE_SIZE: usize = 0x18;
const QUEUE_MSIX_VECTOR: usize = 0x1A;
const QUEUE_ENABLE: usize = 0x1C;
const QUEUE_NOTIFY_OFF: usize = 0x1E;
const QUEUE_DESC: usize = 0x20;
const QUEUE_DRIVER: usize = 0x28;
const QUEUE_DEVICE: usize = 0x30;

const STATUS_ACKNOWLEDGE: u8 = 1;
const STATUS_DRIVER: u8 = 2;
const STATUS_DRIVER_OK: u8 = 4;
const STATUS_FEATURES_OK: u8 = 8;
const STATUS_FAILED: u8 = 128;
const NO_VECTOR: u16 = 0xFFFF;

/// Why a device could not be driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// A required capability (common, notify or device configuration) is missing.
    MissingCapability(u8),
    /// A capability points at a BAR that is not a memory BAR, or past its end.
    BadCapability(u8),
    /// The device does not offer `VIRTIO_F_VERSION_1`.
    LegacyOnly,
    /// The device refused the features we asked for.
    FeaturesRefused,
    /// The queue does not exist or is already in use.
    NoSuchQueue(u16),
}

/// A region inside a BAR.
#[derive(Debug, Clone, Copy)]
struct Window {
    address: usize,
    length: usize,
}

/// A virtio device behind the modern PCI transport.
#[derive(Debug)]
pub struct VirtioPci {
    common: Window,
    notify: Window,
    notify_multiplier: u32,
    isr: Window,
    device: Window,
    /// Notify offset of each queue set up, by queue index.
    notify_offsets: [u16; 8],
}

/// The MMIO accessors: the only unsafe code of the transport.
#[allow(unsafe_code)]
mod mmio {
    use super::Window;

    macro_rules! access {
        ($read:ident, $write:ident, $int:ty) => {
            pub fn $read(window: Window, offset: usize) -> $int {
                assert!(offset + core::mem::size_of::<$int>() <= window.length);
                // SAFETY: the window lies inside a mapped memory BAR of the device
                // (`VirtioPci::new`'s contract), and the offset is inside the window.
                unsafe { core::ptr::read_volatile((window.address + offset) as *const $int) }
            }

            pub fn $write(window: Window, offset: usize, value: $int) {
                assert!(offset + core::mem::size_of::<$int>() <= window.length);
                // SAFETY: as in the read.
                unsafe { core::ptr::write_volatile((window.address + offset) as *mut $int, value) }
            }
        };
    }

    access!(read8, write8, u8);
    access!(read16, write16, u16);
    access!(read32, write32, u32);
}

impl VirtioPci {
    /// Finds the transport structures of `device`.
    ///
    /// # Safety
    /// The device's memory BARs must be mapped uncached at their addresses, and nothing
    /// else may drive this device.
    #[allow(unsafe_code)]
    pub unsafe fn new(
        device: &PciDevice,
        config: &dyn ConfigSpace,
    ) -> Result<VirtioPci, TransportError> {
        let mut windows = [None; 5];
        let mut notify_multiplier = 0;
        for capability in device.capabilities(CAPABILITY_VENDOR) {
            let at = u16::from(capability.offset);
            let kind = config.read8(device.bdf, at + 3);
            let bar = config.read8(device.bdf, at + 4);
            let offset = config.read32(device.bdf, at + 8) as u64;
            let length = config.read32(device.bdf, at + 12) as u64;
            if !(CFG_COMMON..=CFG_DEVICE).contains(&kind) || windows[usize::from(kind)].is_some() {
                continue;
            }
            let Some(Bar::Memory { address, size, .. }) =
                device.bars.get(usize::from(bar)).copied()
            else {
                return Err(TransportError::BadCapability(kind));
            };
            if offset + length > size {
                return Err(TransportError::BadCapability(kind));
            }
            if kind == CFG_NOTIFY {
                notify_multiplier = config.read32(device.bdf, at + 16);
            }
            windows[usize::from(kind)] = Some(Window {
                address: (address + offset) as usize,
                length: length as usize,
            });
        }
        let need =
            |kind: u8| windows[usize::from(kind)].ok_or(TransportError::MissingCapability(kind));
        Ok(VirtioPci {
            common: need(CFG_COMMON)?,
            notify: need(CFG_NOTIFY)?,
            notify_multiplier,
            isr: need(CFG_ISR)?,
            device: need(CFG_DEVICE)?,
            notify_offsets: [0; 8],
        })
    }

    fn status(&self) -> u8 {
        mmio::read8(self.common, DEVICE_STATUS)
    }

    fn add_status(&mut self, bits: u8) {
        let status = self.status();
        mmio::write8(self.common, DEVICE_STATUS, status | bits);
    }

    /// Resets the device and negotiates features: offers `choose(device features)`,
    /// which must keep `VIRTIO_F_VERSION_1`. Returns the features agreed.
    pub fn negotiate(&mut self, choose: impl FnOnce(u64) -> u64) -> Result<u64, TransportError> {
        mmio::write8(self.common, DEVICE_STATUS, 0);
        while self.status() != 0 {
            core::hint::spin_loop();
        }
        self.add_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let mut offered = 0u64;
        for half in 0..2u32 {
            mmio::write32(self.common, DEVICE_FEATURE_SELECT, half);
            offered |= u64::from(mmio::read32(self.common, DEVICE_FEATURE)) << (32 * half);
        }
        if offered & FEATURE_VERSION_1 == 0 {
            self.add_status(STATUS_FAILED);
            return Err(TransportError::LegacyOnly);
        }
        let wanted = (choose(offered) & offered) | FEATURE_VERSION_1;
        for half in 0..2u32 {
            mmio::write32(self.common, DRIVER_FEATURE_SELECT, half);
            mmio::write32(self.common, DRIVER_FEATURE, (wanted >> (32 * half)) as u32);
        }
        self.add_status(STATUS_FEATURES_OK);
        if self.status() & STATUS_FEATURES_OK == 0 {
            self.add_status(STATUS_FAILED);
            return Err(TransportError::FeaturesRefused);
        }
        Ok(wanted)
    }

    /// Copies the device configuration into `buffer`, again if the device changed it
    /// meanwhile (configuration generation).
    pub fn read_device_config(&self, buffer: &mut [u8]) {
        let length = buffer.len().min(self.device.length);
        loop {
            let before = mmio::read8(self.common, CONFIG_GENERATION);
            for (offset, byte) in buffer[..length].iter_mut().enumerate() {
                *byte = mmio::read8(self.device, offset);
            }
            if mmio::read8(self.common, CONFIG_GENERATION) == before {
                break;
            }
        }
    }

    /// Returns the largest size queue `index` supports (0: no such queue).
    pub fn max_queue_size(&mut self, index: u16) -> u16 {
        mmio::write16(self.common, QUEUE_SELECT, index);
        mmio::read16(self.common, QUEUE_SIZE)
    }

    /// Gives queue `index` its size and ring addresses and enables it (polled: no
    /// interrupt vector).
    pub fn enable_queue(
        &mut self,
        index: u16,
        size: u16,
        descriptors: u64,
        driver: u64,
        device: u64,
    ) -> Result<(), TransportError> {
        if usize::from(index) >= self.notify_offsets.len() {
            return Err(TransportError::NoSuchQueue(index));
        }
        mmio::write16(self.common, QUEUE_SELECT, index);
        if mmio::read16(self.common, QUEUE_SIZE) == 0
            || mmio::read16(self.common, QUEUE_ENABLE) != 0
        {
            return Err(TransportError::NoSuchQueue(index));
        }
        mmio::write16(self.common, QUEUE_SIZE, size);
        mmio::write16(self.common, QUEUE_MSIX_VECTOR, NO_VECTOR);
        for (offset, address) in [
            (QUEUE_DESC, descriptors),
            (QUEUE_DRIVER, driver),
            (QUEUE_DEVICE, device),
        ] {
            mmio::write32(self.common, offset, address as u32);
            mmio::write32(self.common, offset + 4, (address >> 32) as u32);
        }
        self.notify_offsets[usize::from(index)] = mmio::read16(self.common, QUEUE_NOTIFY_OFF);
        mmio::write16(self.common, QUEUE_ENABLE, 1);
        Ok(())
    }

    /// Routes the interrupts of queue `index` to MSI-X table entry `vector`; returns
    /// false when the device refused (it reads back no vector).
    pub fn set_queue_vector(&mut self, index: u16, vector: u16) -> bool {
        mmio::write16(self.common, QUEUE_SELECT, index);
        mmio::write16(self.common, QUEUE_MSIX_VECTOR, vector);
        mmio::read16(self.common, QUEUE_MSIX_VECTOR) == vector
    }

    /// Tells the device the driver is ready.
    pub fn driver_ok(&mut self) {
        self.add_status(STATUS_DRIVER_OK);
    }

    /// Reads (and so acknowledges) the interrupt status.
    pub fn interrupt_status(&self) -> u8 {
        mmio::read8(self.isr, 0)
    }
}

impl Transport for VirtioPci {
    fn notify(&mut self, queue: u16) {
        let offset =
            usize::from(self.notify_offsets[usize::from(queue) % self.notify_offsets.len()])
                * self.notify_multiplier as usize;
        mmio::write16(self.notify, offset, queue);
    }
}
