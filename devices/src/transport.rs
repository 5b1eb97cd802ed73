//! [`VirtioTransport`]: a virtio device on either transport, the one type the blk and net
//! services keep.
//!
//! An enum rather than `Box<dyn DeviceTransport>`: the boot core collects the transports
//! before any core has a heap, so they must be plain values in fixed-size lists; and a
//! notify (the only call on the data path) is then a two-way branch, not an indirect call.
//! `DeviceTransport` itself takes a closure in `negotiate`, which a trait object could not.

use crate::virtio::{DeviceTransport, Transport, TransportError};
use crate::virtio_mmio::VirtioMmio;
use crate::virtio_pci::VirtioPci;

/// A virtio device behind the PCI or the MMIO transport.
#[derive(Debug)]
pub enum VirtioTransport {
    Pci(VirtioPci),
    Mmio(VirtioMmio),
}

impl From<VirtioPci> for VirtioTransport {
    fn from(transport: VirtioPci) -> Self {
        VirtioTransport::Pci(transport)
    }
}

impl From<VirtioMmio> for VirtioTransport {
    fn from(transport: VirtioMmio) -> Self {
        VirtioTransport::Mmio(transport)
    }
}

/// Calls `$method` on whichever transport this is.
macro_rules! dispatch {
    ($self:ident, $transport:ident => $call:expr) => {
        match $self {
            VirtioTransport::Pci($transport) => $call,
            VirtioTransport::Mmio($transport) => $call,
        }
    };
}

impl VirtioTransport {
    /// Routes the interrupts of queue `index` to MSI-X table entry `vector`; false when
    /// the device refused, or has no MSI-X (virtio-mmio, here).
    pub fn set_queue_vector(&mut self, index: u16, vector: u16) -> bool {
        match self {
            VirtioTransport::Pci(transport) => transport.set_queue_vector(index, vector),
            VirtioTransport::Mmio(_) => false,
        }
    }
}

impl Transport for VirtioTransport {
    fn notify(&mut self, queue: u16) {
        dispatch!(self, transport => transport.notify(queue))
    }
}

impl DeviceTransport for VirtioTransport {
    fn status(&self) -> u8 {
        dispatch!(self, transport => transport.status())
    }

    fn set_status(&mut self, status: u8) {
        dispatch!(self, transport => transport.set_status(status))
    }

    fn device_features(&mut self, word: u32) -> u32 {
        dispatch!(self, transport => transport.device_features(word))
    }

    fn set_driver_features(&mut self, word: u32, value: u32) {
        dispatch!(self, transport => transport.set_driver_features(word, value))
    }

    fn config_generation(&self) -> u32 {
        dispatch!(self, transport => transport.config_generation())
    }

    fn config_len(&self) -> usize {
        dispatch!(self, transport => transport.config_len())
    }

    fn config_byte(&self, offset: usize) -> u8 {
        dispatch!(self, transport => transport.config_byte(offset))
    }

    fn max_queue_size(&mut self, index: u16) -> u16 {
        dispatch!(self, transport => transport.max_queue_size(index))
    }

    fn enable_queue(
        &mut self,
        index: u16,
        size: u16,
        descriptors: u64,
        driver: u64,
        device: u64,
    ) -> Result<(), TransportError> {
        dispatch!(self, transport => transport.enable_queue(index, size, descriptors, driver, device))
    }

    fn interrupt_status(&mut self) -> u8 {
        dispatch!(self, transport => transport.interrupt_status())
    }
}
