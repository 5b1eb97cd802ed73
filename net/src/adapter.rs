//! smoltcp's `phy::Device` over our [`Device`]: one frame buffer each way, no copies
//! beyond the one into the device's DMA memory.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::device::Device;

/// The largest frame without FCS.
pub const MAX_FRAME: usize = 1514;

pub(crate) struct Adapter<D> {
    pub(crate) device: D,
    received: Vec<u8>,
    transmit: Vec<u8>,
}

impl<D: Device> Adapter<D> {
    pub(crate) fn new(device: D) -> Self {
        Self {
            device,
            received: vec![0; MAX_FRAME],
            transmit: vec![0; MAX_FRAME],
        }
    }
}

pub(crate) struct Receive<'a> {
    frame: &'a [u8],
}

pub(crate) struct Transmit<'a, D> {
    device: &'a mut D,
    buffer: &'a mut [u8],
}

impl phy::RxToken for Receive<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl<D: Device> phy::TxToken for Transmit<'_, D> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.buffer.len());
        let result = f(&mut self.buffer[..len]);
        // Tokens are only handed out when the device has room (`can_transmit`), so this
        // does not fail; if it did, TCP would retransmit.
        let _ = self.device.transmit(&self.buffer[..len]);
        result
    }
}

impl<D: Device> phy::Device for Adapter<D> {
    type RxToken<'a>
        = Receive<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = Transmit<'a, D>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // A received frame may need an answer: take it only when one could go out, so
        // the device's back-pressure reaches TCP instead of dropping frames.
        if !self.device.can_transmit() {
            return None;
        }
        let length = self.device.receive(&mut self.received)?;
        Some((
            Receive {
                frame: &self.received[..length],
            },
            Transmit {
                device: &mut self.device,
                buffer: &mut self.transmit,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        if !self.device.can_transmit() {
            return None;
        }
        Some(Transmit {
            device: &mut self.device,
            buffer: &mut self.transmit,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = MAX_FRAME;
        capabilities
    }
}
