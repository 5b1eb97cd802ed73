//! Finds the PCI devices at boot (ECAM from ACPI MCFG where present, ports otherwise),
//! prints one line per device, and maps memory BARs above 4 GiB; then the virtio-mmio
//! devices (`mmio`). Keeps the virtio-blk and virtio-net transports of both for their
//! services.

use crate::acpi::DeviceTables;
use crate::paging;
use devices::disk;
use devices::pci::{self, Bar, ConfigSpace, Devices};
use devices::transport::VirtioTransport;
use devices::virtio_pci::VirtioPci;
use percore::println;

/// The devices found at boot; written once by the boot core, read-only afterwards.
static DEVICES: spin::Once<Devices> = spin::Once::new();

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

/// Records the transport of every virtio-blk function (vendor 0x1af4, device 0x1042
/// modern or 0x1001 transitional) and every virtio-net function (0x1041 or 0x1000).
fn find_virtio_devices(config: &dyn ConfigSpace, found: &Devices) {
    for device in found.iter().filter(|d| d.id.vendor == 0x1AF4) {
        let is_blk = matches!(device.id.device, 0x1042 | 0x1001);
        let is_net = matches!(device.id.device, 0x1041 | 0x1000);
        if !is_blk && !is_net {
            continue;
        }
        let mut location = heapless::String::new();
        let _ = core::fmt::write(&mut location, format_args!("{}", device.bdf));
        // SAFETY: `discover` maps every memory BAR before drivers start, and only the
        // device's service drives it.
        let transport = match unsafe { VirtioPci::new(device, config) } {
            Ok(transport) => transport,
            Err(error) => {
                println!(
                    "manada: pci {}: not a usable virtio device: {error:?}",
                    device.bdf
                );
                continue;
            }
        };
        let kept = if is_blk {
            add_blk_transport(transport.into(), location)
        } else {
            if net_count() == 0 {
                // The net service uses the first device; it may wake its core.
                crate::msix::enable_for_net(config, device);
            }
            add_net_transport(transport.into(), location)
        };
        if !kept {
            println!(
                "manada: pci {}: too many devices of its kind; left out",
                device.bdf
            );
        }
    }
}

/// Returns the devices found at boot (none before `discover`).
#[allow(dead_code)] // The device services (virtio-blk, virtio-net) will start from here.
pub fn devices() -> &'static [pci::PciDevice] {
    DEVICES.get().map_or(&[], |devices| devices.as_slice())
}

/// Enumerates PCI and maps the BARs that lie above the identity-mapped 4 GiB, then finds
/// the virtio-mmio devices. Boot core only, before other cores start (it writes page
/// tables).
pub fn discover(acpi: &DeviceTables, frames: paging::FrameSource<'_>) {
    let devices = DEVICES.call_once(|| {
        let mut found = Devices::new();
        enumerate(acpi, frames, &mut found);
        found
    });
    for device in devices {
        println!("manada: pci {device}");
        for bar in &device.bars {
            if let Bar::Memory { address, size, .. } = *bar {
                if let Err(error) = paging::map_mmio(address, size, frames) {
                    println!(
                        "manada: pci {}: cannot map BAR at {address:#x}: {error:?}",
                        device.bdf
                    );
                }
            }
        }
    }
    crate::mmio::discover(acpi, frames);
}

fn enumerate(acpi: &DeviceTables, frames: paging::FrameSource<'_>, found: &mut Devices) {
    match acpi.ecam {
        Some(ecam) => {
            let buses = u64::from(ecam.last_bus) + 1;
            if let Err(error) = paging::map_mmio(ecam.base, buses << 20, frames) {
                println!(
                    "manada: pci: cannot map ECAM at {:#x}: {error:?}",
                    ecam.base
                );
                return;
            }
            // SAFETY: the MCFG table describes this window; it is mapped uncached above
            // (or lies in the identity-mapped, uncached non-RAM part below 4 GiB).
            let config =
                unsafe { pci::Ecam::new(ecam.base as usize, ecam.first_bus, ecam.last_bus) };
            pci::enumerate(&config, found);
            find_virtio_devices(&config, found);
        }
        None => {
            // SAFETY: the boot core runs alone; nothing else uses ports 0xCF8-0xCFF.
            let config = unsafe { pci::PortIo::new() };
            // microvm has no PCI: nothing answers at the host bridge's address.
            if config.read16(
                pci::Bdf {
                    bus: 0,
                    device: 0,
                    function: 0,
                },
                0,
            ) != 0xFFFF
            {
                pci::enumerate(&config, found);
                find_virtio_devices(&config, found);
            }
        }
    }
    if found.is_empty() {
        println!("manada: pci: no devices");
    }
}
