//! The virtio-pci modern transport (virtio 1.x): the common, notify, ISR and device
//! configuration structures that vendor capabilities point at inside the BARs.
//!
//! Every register access is a volatile MMIO access at `BAR address + offset`; the boot
//! core maps the BARs (uncached) before any driver starts. A transport refuses devices
//! without `VIRTIO_F_VERSION_1` (legacy-only devices). Reset, negotiation and the
//! configuration read are [`DeviceTransport`]'s, shared with virtio-mmio.
//!
//! There is no host fake of this transport: its registers are reached at BAR addresses.
//! The sequence it shares with virtio-mmio is tested against the MMIO fake.

use crate::pci::{Bar, ConfigSpace, PciDevice};
use crate::virtio::{DeviceTransport, Transport};

pub use crate::virtio::TransportError;

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

const NO_VECTOR: u16 = 0xFFFF;

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

    /// Routes the interrupts of queue `index` to MSI-X table entry `vector`; returns
    /// false when the device refused (it reads back no vector).
    pub fn set_queue_vector(&mut self, index: u16, vector: u16) -> bool {
        mmio::write16(self.common, QUEUE_SELECT, index);
        mmio::write16(self.common, QUEUE_MSIX_VECTOR, vector);
        mmio::read16(self.common, QUEUE_MSIX_VECTOR) == vector
    }
}

impl DeviceTransport for VirtioPci {
    fn status(&self) -> u8 {
        mmio::read8(self.common, DEVICE_STATUS)
    }

    fn set_status(&mut self, status: u8) {
        mmio::write8(self.common, DEVICE_STATUS, status);
    }

    fn device_features(&mut self, word: u32) -> u32 {
        mmio::write32(self.common, DEVICE_FEATURE_SELECT, word);
        mmio::read32(self.common, DEVICE_FEATURE)
    }

    fn set_driver_features(&mut self, word: u32, value: u32) {
        mmio::write32(self.common, DRIVER_FEATURE_SELECT, word);
        mmio::write32(self.common, DRIVER_FEATURE, value);
    }

    fn config_generation(&self) -> u32 {
        u32::from(mmio::read8(self.common, CONFIG_GENERATION))
    }

    fn config_len(&self) -> usize {
        self.device.length
    }

    fn config_byte(&self, offset: usize) -> u8 {
        mmio::read8(self.device, offset)
    }

    fn max_queue_size(&mut self, index: u16) -> u16 {
        mmio::write16(self.common, QUEUE_SELECT, index);
        mmio::read16(self.common, QUEUE_SIZE)
    }

    fn enable_queue(
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
        let maximum = mmio::read16(self.common, QUEUE_SIZE);
        if maximum == 0 || mmio::read16(self.common, QUEUE_ENABLE) != 0 {
            return Err(TransportError::NoSuchQueue(index));
        }
        if size == 0 || size > maximum {
            return Err(TransportError::BadQueueSize(size));
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

    /// Reads the ISR status, which the read itself acknowledges.
    fn interrupt_status(&mut self) -> u8 {
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
