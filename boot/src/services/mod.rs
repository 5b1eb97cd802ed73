//! The device services' wiring: where each runs (one decision, see
//! `percore::placement`), the DMA memory each device gets from the service reserve, and
//! starting them, in order, before the application's main runs. One module per service.

mod blk;
mod fs;
mod net;
mod reserve;

use percore::placement::{Placement, Service};
use percore::{println, BootInfo, KernelCapability};

use crate::exit::fatal;
use reserve::ReserveCursor;
pub use reserve::MEMORY_TOTALS;

/// Returns where the services run on `cores` cores: each service whose device (and, for
/// fs, whose disk) was found, at the core `place.NAME=K` names or the rule's. A core or a
/// disk that does not exist ends the run with a clear error.
pub fn decide(cores: usize, command_line: &percore::cmdline::CommandLine<'_>) -> Placement {
    let disks = crate::transports::blk_count();
    let mut present: heapless::Vec<Service, 3> = heapless::Vec::new();
    if disks > 0 {
        let _ = present.push(Service::Blk);
    }
    if let Some(name) = command_line.get("fs.disk") {
        fs::check_disk_name(name, disks);
        let _ = present.push(Service::Fs);
    }
    if crate::transports::net_count() > 0 {
        let _ = present.push(Service::Net);
    }
    let mut chosen: [Option<usize>; 3] = [None; 3];
    for (slot, service) in chosen.iter_mut().zip(Service::ALL) {
        let mut key = heapless::String::<16>::new();
        let _ = core::fmt::write(&mut key, format_args!("place.{}", service.name()));
        *slot = match command_line.get(&key).map(str::parse::<usize>) {
            None => None,
            Some(Ok(core)) => Some(core),
            Some(Err(_)) => fatal(format_args!(
                "{key} must be a core number, 0 to {}",
                cores.saturating_sub(1)
            )),
        };
    }
    let index = |service: Service| Service::ALL.iter().position(|s| *s == service);
    match Placement::decide(cores, &present, |service| {
        index(service).and_then(|i| chosen[i])
    }) {
        Ok(placement) => placement,
        Err(error) => fatal(format_args!("{error}")),
    }
}

/// Gives every device its DMA memory from the service reserve; the services start later
/// from core 0 ([`start_all`]). Prints the placement.
pub fn prepare(info: &BootInfo) {
    println!("manada: services: {}", info.services);
    let mut reserve = ReserveCursor::new(info);
    if let Some(core) = info.services.core_of(Service::Blk) {
        blk::prepare(core, &mut reserve);
    }
    if let Some(core) = info.services.core_of(Service::Net) {
        net::prepare(core, &mut reserve);
    }
}

/// Returns once every service has put on its device what it was asked to keep (the fs
/// volume is synced, bounded in time), or why it could not; called before the run ends.
pub fn finish() -> Result<(), alloc::string::String> {
    fs::finish()
}

/// Starts every prepared service on its core, in order (fs mounts a blk disk), and
/// returns once each is ready, so the application's first line may use them.
pub fn start_all(kernel: &KernelCapability) {
    let info = percore::boot_info();
    blk::start(kernel);
    if let (Some(core), Some(name)) = (
        info.services.core_of(Service::Fs),
        info.command_line().get("fs.disk"),
    ) {
        fs::start(kernel, core, name);
    }
    net::start(kernel);
}
