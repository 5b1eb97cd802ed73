//! The virtio-blk and virtio-net transports found at boot, PCI (`pci`) and MMIO (`mmio`)
//! alike, kept until their services take them.

use devices::disk;
use devices::transport::VirtioTransport;

/// A transport found at boot and where it is (a PCI address or an MMIO window), for
/// the log.
pub type Found = (VirtioTransport, heapless::String<16>);

/// The most virtio-net devices kept for the net service.
pub const MAX_NET_DEVICES: usize = 4;

/// The virtio-blk transports found at boot (PCI and MMIO), waiting for the blk service.
static BLK_TRANSPORTS: spin::Mutex<heapless::Vec<Found, { disk::MAX_DISKS }>> =
    spin::Mutex::new(heapless::Vec::new());

/// The virtio-net transports found at boot (PCI and MMIO), waiting for the net service.
static NET_TRANSPORTS: spin::Mutex<heapless::Vec<Found, MAX_NET_DEVICES>> =
    spin::Mutex::new(heapless::Vec::new());

/// Returns how many virtio-blk disks were found at boot (and not yet taken).
pub fn blk_count() -> usize {
    BLK_TRANSPORTS.lock().len()
}

/// Returns how many virtio-net devices were found at boot (and not yet taken).
pub fn net_count() -> usize {
    NET_TRANSPORTS.lock().len()
}

/// Takes the virtio-net transports found at boot (once; later calls get none).
pub fn take_net_transports() -> heapless::Vec<Found, MAX_NET_DEVICES> {
    core::mem::take(&mut *NET_TRANSPORTS.lock())
}

/// Takes the virtio-blk transports found at boot (once; later calls get none).
pub fn take_blk_transports() -> heapless::Vec<Found, { disk::MAX_DISKS }> {
    core::mem::take(&mut *BLK_TRANSPORTS.lock())
}

/// Keeps a virtio-blk transport for the blk service; false when the list is full.
pub fn add_blk_transport(transport: VirtioTransport, location: heapless::String<16>) -> bool {
    BLK_TRANSPORTS.lock().push((transport, location)).is_ok()
}

/// Keeps a virtio-net transport for the net service; false when the list is full.
pub fn add_net_transport(transport: VirtioTransport, location: heapless::String<16>) -> bool {
    NET_TRANSPORTS.lock().push((transport, location)).is_ok()
}
