//! The net service's device: virtio-net behind either transport (PCI or MMIO), as a
//! `net::Device`.
//!
//! The net core owns it: frames are copied between smoltcp's buffers and the queues'
//! DMA slots, received buffers go straight back to the device, and transmitted slots are
//! reclaimed on every call, so a long run never runs dry. The TCP and UDP checksums the
//! device negotiated to take (`virtio::net`) are reported to the stack, which then leaves
//! them out.

use crate::transport::VirtioTransport;
use crate::virtio::dma::DmaRegion;
use crate::virtio::net::{self, NetConfig, NetQueues};
use crate::virtio::transport::STATUS_FAILED;
use crate::virtio::{DeviceTransport, TransportError};

/// Descriptors per queue (and packet slots per direction).
pub const QUEUE_SIZE: u16 = 256;

/// Returns the bytes of DMA memory one network device needs.
pub const fn dma_size() -> usize {
    NetQueues::memory_size(QUEUE_SIZE)
}

/// A network device for the net service: its transport and DMA memory.
#[derive(Debug)]
pub struct NetSetup<T: DeviceTransport = VirtioTransport> {
    pub transport: T,
    pub dma: DmaRegion,
    pub location: heapless::String<16>,
}

/// Why the device could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetSetupError {
    Transport(TransportError),
    Device(net::NetError),
    NoQueues,
}

/// A started virtio-net device.
#[derive(Debug)]
pub struct VirtioNet<T: DeviceTransport = VirtioTransport> {
    transport: T,
    queues: NetQueues,
    /// Received frames can raise an interrupt ([`VirtioNet::route_receive_interrupts`]).
    wakes: bool,
}

impl<T: DeviceTransport> VirtioNet<T> {
    /// Negotiates, sets up the receive and transmit queues, posts every receive buffer.
    /// A device that cannot be used is left marked FAILED.
    pub fn start(setup: NetSetup<T>) -> Result<VirtioNet<T>, NetSetupError> {
        let mut transport = setup.transport;
        match Self::bring_up(&mut transport, setup.dma) {
            Ok(queues) => Ok(VirtioNet {
                transport,
                queues,
                wakes: false,
            }),
            Err(error) => {
                transport.add_status(STATUS_FAILED);
                Err(error)
            }
        }
    }

    fn bring_up(transport: &mut T, dma: DmaRegion) -> Result<NetQueues, NetSetupError> {
        let negotiated = transport
            .negotiate(net::driver_features)
            .map_err(NetSetupError::Transport)?;
        let mut config_bytes = [0u8; 8];
        transport
            .read_device_config(&mut config_bytes)
            .map_err(NetSetupError::Transport)?;
        let config = NetConfig::from_config_space(negotiated, &config_bytes)
            .map_err(NetSetupError::Device)?;
        let size = transport
            .max_queue_size(0)
            .min(transport.max_queue_size(1))
            .min(QUEUE_SIZE);
        if size < 2 {
            return Err(NetSetupError::NoQueues);
        }
        let size = 1 << (15 - size.leading_zeros());
        let mut queues = NetQueues::new(dma, size, config).map_err(|_| NetSetupError::NoQueues)?;
        for (index, queue) in [(0u16, queues.receive_queue()), (1, queues.transmit_queue())] {
            let (descriptors, driver, device) = (
                queue.descriptor_table_address(),
                queue.available_address(),
                queue.used_address(),
            );
            transport
                .enable_queue(index, size, descriptors, driver, device)
                .map_err(NetSetupError::Transport)?;
        }
        queues.set_interrupts(false);
        transport.driver_ok();
        queues.kick(transport);
        Ok(queues)
    }

    /// Returns the device's configuration (MAC, link).
    pub fn config(&self) -> &NetConfig {
        self.queues.config()
    }
}

impl VirtioNet<VirtioTransport> {
    /// Routes the receive queue's interrupts to MSI-X table entry `vector` (which the
    /// caller pointed at this core); from then on the net service may halt when idle and
    /// be woken by a received frame. Returns false when the transport or the device
    /// cannot (virtio-mmio has no MSI-X here).
    pub fn route_receive_interrupts(&mut self, vector: u16) -> bool {
        self.wakes = self.transport.set_queue_vector(net::RECEIVE_QUEUE, vector);
        self.wakes
    }
}

impl<T: DeviceTransport> ::net::Device for VirtioNet<T> {
    fn mac(&self) -> [u8; 6] {
        self.queues.config().mac
    }

    fn receive(&mut self, out: &mut [u8]) -> Option<usize> {
        self.queues.reclaim_transmitted();
        loop {
            let started = ::net::trace::start();
            let received = self.queues.receive_into(out)?;
            ::net::trace::finish(started, ::net::trace::Counter::DeviceCopyCycles, None);
            self.queues.kick(&mut self.transport);
            // A frame the device delivered badly is skipped; its buffer was re-posted.
            if let Ok(length) = received {
                return Some(length);
            }
        }
    }

    fn can_transmit(&mut self) -> bool {
        self.queues.reclaim_transmitted();
        self.queues.transmits_in_flight() < usize::from(self.queues.transmit_queue().capacity())
    }

    fn can_wake(&self) -> bool {
        self.wakes
    }

    fn arm_wakeup(&mut self) -> bool {
        self.queues.set_receive_interrupts(true);
        // The device writes the used index, then reads our flag; we write the flag, then
        // read its index: only a full fence keeps one of the two from missing the other.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.queues.received_pending()
    }

    fn disarm_wakeup(&mut self) {
        self.queues.set_receive_interrupts(false);
    }

    fn checksum_offload(&self) -> ::net::ChecksumOffload {
        // The queues complete, fill in and check what was negotiated (virtio::net).
        self.queues.config().checksum
    }

    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.queues.reclaim_transmitted();
        let started = ::net::trace::start();
        let sent = self.queues.transmit(frame).is_ok();
        ::net::trace::finish(started, ::net::trace::Counter::DeviceCopyCycles, None);
        if sent {
            self.queues.kick(&mut self.transport);
        }
        sent
    }
}
