//! Finds the PCI devices at boot (ECAM from ACPI MCFG where present, ports otherwise),
//! prints one line per device, maps memory BARs above 4 GiB, and keeps the virtio-blk and
//! virtio-net transports for their services (`transports`).

use crate::acpi::DeviceTables;
use crate::paging;
use crate::transports::{add_blk_transport, add_net_transport, net_count};
use devices::pci::{self, Bar, ConfigSpace, Devices};
use devices::virtio_pci::VirtioPci;
use percore::println;

/// The devices found at boot; written once by the boot core, read-only afterwards.
static DEVICES: spin::Once<Devices> = spin::Once::new();

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

/// Enumerates PCI and maps the BARs that lie above the identity-mapped 4 GiB. Boot core
/// only, before other cores start (it writes page tables).
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
