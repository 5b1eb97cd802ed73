//! The net service's wiring: the first virtio-net device found at boot, with its DMA
//! memory, the TCP/IP stack and the socket table on the net core.

use devices::netdev::{self, NetSetup, VirtioNet};
use percore::println;

use super::reserve::ReserveCursor;

/// The network device found at boot with its DMA memory, and the net core.
static SETUP: spin::Mutex<Option<(usize, NetSetup)>> = spin::Mutex::new(None);

/// Gives the first virtio-net device its DMA memory, for the service on `core`.
pub fn prepare(core: usize, reserve: &mut ReserveCursor) {
    let Some((transport, location)) = crate::pci::take_net_transports().into_iter().next() else {
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
pub fn start() {
    if let Some((core, setup)) = SETUP.lock().take() {
        if percore::spawn_on(core, move || start_here(setup)).join() {
            // The service loop never ends; nobody joins it.
            let _ = percore::spawn_on(core, || net::service::run());
        }
    }
}

/// Starts the net service on this core: the device, the TCP/IP stack and the socket
/// table. Returns false when the device could not be used (the run goes on without
/// networking; socket calls then fail with `NoService`).
fn start_here(setup: NetSetup) -> bool {
    let location = setup.location.clone();
    let device = match VirtioNet::start(setup) {
        Ok(device) => device,
        Err(error) => {
            println!("manada: net: virtio-net {location} not used: {error:?}");
            return false;
        }
    };
    let mac = device.config().mac;
    println!(
        "manada: net: virtio-net {location}, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, link {}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
        if device.config().link_up { "up" } else { "down" }
    );
    net::service::start(
        alloc::boxed::Box::new(device),
        net::Addressing::Dhcp {
            fallback_after_ms: 3000,
        },
        net::Limits::default(),
    );
    true
}
