//! smoltcp's `phy::Device` over our [`Device`]: one frame buffer each way, no copies
//! beyond the one into the device's DMA memory.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::device::{ChecksumOffload, Device};

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
        crate::trace::add(crate::trace::Counter::FramesOut, 1);
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
        capabilities.checksum = checksum_capabilities(self.device.checksum_offload());
        capabilities
    }
}

/// Returns what smoltcp must still compute (transmit) and check (receive) given what the
/// device offloads: TCP and UDP follow the device, the IPv4 header and ICMP are always
/// smoltcp's (virtio-net offloads neither).
fn checksum_capabilities(offload: ChecksumOffload) -> ChecksumCapabilities {
    let transport = match (offload.transmit, offload.receive) {
        (false, false) => Checksum::Both,
        (true, false) => Checksum::Rx,
        (false, true) => Checksum::Tx,
        (true, true) => Checksum::None,
    };
    let mut capabilities = ChecksumCapabilities::default();
    capabilities.tcp = transport;
    capabilities.udp = transport;
    capabilities
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Wire;

    /// A device that offloads what it is told to.
    struct Offloading(ChecksumOffload);

    impl Device for Offloading {
        fn mac(&self) -> [u8; 6] {
            [2, 0, 0, 0, 0, 1]
        }
        fn receive(&mut self, _out: &mut [u8]) -> Option<usize> {
            None
        }
        fn transmit(&mut self, _frame: &[u8]) -> bool {
            true
        }
        fn checksum_offload(&self) -> ChecksumOffload {
            self.0
        }
    }

    fn checksums(transmit: bool, receive: bool) -> ChecksumCapabilities {
        let adapter = Adapter::new(Offloading(ChecksumOffload { transmit, receive }));
        phy::Device::capabilities(&adapter).checksum
    }

    #[test]
    fn without_offload_smoltcp_does_every_checksum() {
        let (end, _) = Wire::pair([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 4);
        let checksum = phy::Device::capabilities(&Adapter::new(end)).checksum;
        for each in [checksum.ipv4, checksum.tcp, checksum.udp, checksum.icmpv4] {
            assert!(each.tx() && each.rx());
        }
        let boxed: alloc::boxed::Box<dyn Device> =
            alloc::boxed::Box::new(Offloading(ChecksumOffload {
                transmit: true,
                receive: true,
            }));
        assert_eq!(
            boxed.checksum_offload(),
            ChecksumOffload {
                transmit: true,
                receive: true
            }
        );
    }

    #[test]
    fn offloaded_directions_are_left_to_the_device_for_tcp_and_udp_only() {
        for (transmit, receive) in [(false, false), (true, false), (false, true), (true, true)] {
            let checksum = checksums(transmit, receive);
            for each in [checksum.tcp, checksum.udp] {
                assert_eq!(each.tx(), !transmit, "{transmit} {receive}");
                assert_eq!(each.rx(), !receive, "{transmit} {receive}");
            }
            // virtio-net offloads neither the IPv4 header nor ICMP.
            for each in [checksum.ipv4, checksum.icmpv4] {
                assert!(each.tx() && each.rx());
            }
        }
    }
}
