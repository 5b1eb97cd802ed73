//! The net service's wiring: the first virtio-net device found at boot, with its DMA
//! memory, the TCP/IP stack and the socket table on the net core.

use devices::netdev::{self, NetSetup, VirtioNet};
use percore::{println, KernelCapability};

use super::reserve::ReserveCursor;

/// The network device found at boot with its DMA memory, and the net core.
static SETUP: spin::Mutex<Option<(usize, NetSetup)>> = spin::Mutex::new(None);

/// Gives the first virtio-net device its DMA memory, for the service on `core`.
pub fn prepare(core: usize, reserve: &mut ReserveCursor) {
    let Some((transport, location)) = crate::transports::take_net_transports().into_iter().next()
    else {
        return;
    };
    let Some(dma) = reserve.take(netdev::dma_size()) else {
        reserve.report_full("net", "virtio-net", &location, netdev::dma_size());
        return;
    };
    *SETUP.lock() = Some((
        core,
        NetSetup {
            transport,
            dma,
            location,
        },
    ));
}

/// Starts the net service on its core (sockets work once this returns) and leaves its
/// polling loop running there.
pub fn start(kernel: &KernelCapability) {
    if let Some((core, setup)) = SETUP.lock().take() {
        let kernel = *kernel;
        match percore::spawn_on(core, move || start_here(&kernel, setup)).join() {
            Ok(true) => {
                // The service loop never ends; nobody joins it. A fault in it fails its
                // core (the socket calls would wait for good otherwise): callers then
                // get `NoService`.
                let _ = percore::spawn_on(core, move || {
                    let _critical = percore::fault::critical();
                    net::service::run(&kernel)
                });
            }
            Ok(false) => {}
            Err(error) => {
                println!("manada: net: the service did not start on core {core}: {error}")
            }
        }
    }
}

/// Starts the net service on this core: the device, the TCP/IP stack and the socket
/// table. Returns false when the device could not be used (the run goes on without
/// networking; socket calls then fail with `NoService`).
fn start_here(kernel: &KernelCapability, setup: NetSetup) -> bool {
    let location = setup.location.clone();
    let mut device = match VirtioNet::start(setup) {
        Ok(device) => device,
        Err(error) => {
            println!("manada: net: virtio-net {location} not used: {error:?}");
            return false;
        }
    };
    // The receive queue's interrupt goes to this core, so the service halts when idle.
    let wanted = percore::boot_info().command_line().get("net.interrupts") != Some("0");
    let interrupts = wanted
        && crate::msix::route_net(
            0,
            crate::apic::id_from_cpuid(),
            crate::vectors::DEVICE_VECTOR,
        )
        && device.route_receive_interrupts(0);
    let mac = device.config().mac;
    println!(
        "manada: net: virtio-net {location}, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, link {}, {}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
        if device.config().link_up { "up" } else { "down" },
        if interrupts { "MSI-X to this core" } else { "polled" }
    );
    // The socket limit follows the memory this core has left (see `Limits::for_memory`).
    let heap = percore::global::heap_stats();
    let limits = net::Limits::for_memory(heap.bytes_total.saturating_sub(heap.bytes_in_use));
    let started = net::service::start(
        kernel,
        alloc::boxed::Box::new(device),
        net::Addressing::Dhcp {
            fallback_after_ms: 3000,
        },
        limits,
    );
    match started {
        Ok(()) => {
            println!(
                "manada: net: up to {} sockets ({} KiB each) on core {}",
                limits.sockets,
                limits.bytes_per_socket() / 1024,
                percore::current_core()
            );
            true
        }
        Err(error) => {
            println!(
                "manada: net: no network: the net core has {} KiB of heap free, too little \
                 for the socket table ({error}); give the guest more memory (--mem)",
                heap.bytes_total.saturating_sub(heap.bytes_in_use) / 1024
            );
            false
        }
    }
}
