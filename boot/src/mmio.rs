//! Finds the virtio-mmio devices at boot: `LNRO0005` devices in the ACPI DSDT/SSDTs
//! (QEMU's microvm with ACPI, Firecracker with ACPI) and `virtio_mmio.device=` words on
//! the command line (microvm without ACPI, Firecracker), maps each window uncached,
//! prints one line per device, and keeps the blk and net transports for their services
//! beside the PCI ones (`transports`).

use crate::acpi::DeviceTables;
use crate::paging;
use devices::mmio::MmioWindow;
use devices::transport::VirtioTransport;
use devices::virtio_mmio::{
    command_line, device_name, dsdt, DeviceWindow, Source, VirtioMmio, DEVICE_BLOCK, DEVICE_NET,
};
use percore::println;

/// The most virtio-mmio devices looked at (QEMU's microvm has 24 transports).
const MAX_DEVICES: usize = 32;
/// The largest register window accepted (virtio-mmio needs 0x100 bytes plus the
/// device configuration; QEMU uses 512, Firecracker 4 KiB).
const MAX_WINDOW: u64 = 1 << 20;

/// The windows the command line names; written once by the boot core before
/// [`discover`], read-only afterwards.
static COMMAND_LINE_WINDOWS: spin::Once<heapless::Vec<DeviceWindow, MAX_DEVICES>> =
    spin::Once::new();

/// Reads the `virtio_mmio.device=` words of `command_line` for [`discover`], reporting
/// the ones it cannot use. Boot core, before `pci::discover`.
pub fn read_command_line(command_line: &str) {
    COMMAND_LINE_WINDOWS.call_once(|| {
        let mut windows = heapless::Vec::new();
        for word in command_line::devices(command_line) {
            match word.parsed {
                Ok(window) => {
                    if windows.push(window).is_err() {
                        println!(
                            "manada: virtio-mmio: more than {MAX_DEVICES} devices; {} left out",
                            word.text
                        );
                    }
                }
                Err(error) => println!(
                    "manada: virtio-mmio: ignoring virtio_mmio.device={}: {error}",
                    word.text
                ),
            }
        }
        windows
    });
}

/// Finds, maps and probes every virtio-mmio device: the ACPI ones first (in table
/// order, which is the order they were attached), then the command line's; a window
/// named twice is probed once. Boot core only, before other cores start (it writes
/// page tables).
pub fn discover(acpi: &DeviceTables, frames: paging::FrameSource<'_>) {
    let mut windows: heapless::Vec<DeviceWindow, MAX_DEVICES> = heapless::Vec::new();
    for table in &acpi.aml_tables {
        // SAFETY: the ACPI walk found this table through the RSDT/XSDT (or the FADT) and
        // checked its signature, length and checksum; its AML lies in identity-mapped memory that
        // nothing writes (ACPI tables are firmware's, read-only to the kernel).
        let aml = unsafe { core::slice::from_raw_parts(table.address as *const u8, table.length) };
        for found in dsdt::devices(aml) {
            match found.window {
                Ok(window) => keep(&mut windows, window),
                Err(error) => println!(
                    "manada: virtio-mmio: ACPI device {} not used: {error}",
                    found.name()
                ),
            }
        }
    }
    for window in COMMAND_LINE_WINDOWS.get().into_iter().flatten() {
        keep(&mut windows, *window);
    }
    for window in &windows {
        probe(window, frames);
    }
}

fn keep(windows: &mut heapless::Vec<DeviceWindow, MAX_DEVICES>, window: DeviceWindow) {
    if windows.iter().any(|kept| kept.base == window.base) {
        return;
    }
    if windows.push(window).is_err() {
        println!(
            "manada: virtio-mmio {:#x}: more than {MAX_DEVICES} devices; left out",
            window.base
        );
    }
}

/// Maps `window`, checks what is there and keeps a blk or net transport.
fn probe(window: &DeviceWindow, frames: paging::FrameSource<'_>) {
    let base = window.base;
    let source = match window.source {
        Source::Acpi => "ACPI",
        Source::CommandLine => "command line",
    };
    let mut irq = heapless::String::<16>::new();
    let _ = match window.interrupt {
        Some(line) => core::fmt::write(&mut irq, format_args!("irq {line}")),
        None => core::fmt::write(&mut irq, format_args!("no irq")),
    };
    if window.size > MAX_WINDOW {
        println!(
            "manada: virtio-mmio {base:#x} ({source}): window of {:#x} bytes is larger than {MAX_WINDOW:#x}; not used",
            window.size
        );
        return;
    }
    if let Err(error) = paging::map_mmio(base, window.size, frames) {
        println!("manada: virtio-mmio {base:#x} ({source}): cannot map: {error:?}");
        return;
    }
    // SAFETY: the firmware's DSDT or the loader's command line describes this window
    // as a virtio-mmio device; it is mapped uncached (above, or as non-RAM below 4 GiB
    // by `paging::init`), probed once (duplicates were dropped) and then owned by one
    // service. `VirtioMmio::new` only reads, and refuses the window unless the magic
    // value, version and device id say a virtio device is there.
    let registers = unsafe { MmioWindow::new(base as usize, window.size as usize) };
    let transport = match VirtioMmio::new(registers) {
        Ok(transport) => transport,
        Err(error) => {
            println!("manada: virtio-mmio {base:#x} {irq} ({source}): not used: {error}");
            return;
        }
    };
    let device = transport.device_id();
    println!(
        "manada: virtio-mmio {base:#x}+{:#x} {irq} {} ({source})",
        window.size,
        device_name(device)
    );
    let mut location = heapless::String::new();
    let _ = core::fmt::write(&mut location, format_args!("{base:#x}"));
    let kept = match device {
        DEVICE_BLOCK => {
            crate::transports::add_blk_transport(VirtioTransport::Mmio(transport), location)
        }
        DEVICE_NET => {
            crate::transports::add_net_transport(VirtioTransport::Mmio(transport), location)
        }
        // Nothing drives other device types yet.
        _ => true,
    };
    if !kept {
        println!("manada: virtio-mmio {base:#x}: too many devices of its kind; left out");
    }
}
