//! virtio over split virtqueues: DMA memory, the virtqueue itself, the virtio-blk request
//! protocol and the virtio-net device logic, all independent of the transport (virtio-pci
//! and virtio-mmio live elsewhere, behind [`transport::DeviceTransport`]) so the logic is
//! tested on the host against a fake device. [`checksum`] holds the packet arithmetic of
//! virtio-net's checksum offload.
//!
//! Only [`dma`] contains `unsafe`; [`queue`], [`blk`] and [`net`] reach shared memory
//! through it.

#[allow(unsafe_code)]
pub mod dma;

pub mod blk;
pub mod checksum;
pub mod net;
pub mod queue;
pub mod transport;

pub use transport::{DeviceTransport, TransportError};

/// VIRTIO_F_VERSION_1 (feature bit 32): the device follows virtio 1.x, not the legacy
/// interface; every modern driver must accept it.
pub const FEATURE_VERSION_1: u64 = 1 << 32;

/// The part of a transport a queue needs: ringing the device's doorbell.
pub trait Transport {
    /// Tells the device that virtqueue `queue` has new available buffers.
    fn notify(&mut self, queue: u16);
}
