//! Which core runs each device service: decided once at boot, in one place, and read by
//! everyone after (the services to start themselves there, applications to keep their
//! own threads off those cores); and, once a service started, the core it runs on
//! ([`service_core`]), which its clients send their requests to.
//!
//! The rule: with enough cores (one per service and one more), each service gets its own
//! core, taken from the top (blk on the last core, then fs, then net); with fewer, they
//! all share the last core, so from two cores on at least one core runs no service and
//! is left to the application. A core named on the command line (`place.net=K`) wins.

use core::fmt;

use crate::MAX_CORES;

/// A device service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// The virtio-blk disks.
    Blk,
    /// The FAT16 volume (on a blk disk).
    Fs,
    /// TCP/IP over virtio-net.
    Net,
}

impl Service {
    /// Every service, in the order they take cores from the top.
    pub const ALL: [Service; 3] = [Service::Blk, Service::Fs, Service::Net];

    /// Returns the service's name, as in `place.NAME=K`.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Blk => "blk",
            Service::Fs => "fs",
            Service::Net => "net",
        }
    }

    const fn index(self) -> usize {
        match self {
            Service::Blk => 0,
            Service::Fs => 1,
            Service::Net => 2,
        }
    }
}

/// The core each service started on (by `Service::index`), recorded when it installed
/// its state there (`cpu::install_service`).
static RUNNING: [spin::Once<usize>; 3] = [const { spin::Once::new() }; 3];

/// Records that `service` runs on `core` from now on (only the first record counts: a
/// service starts once).
pub(crate) fn record_running(service: Service, core: usize) {
    RUNNING[service.index()].call_once(|| core);
}

/// Returns the core `service` runs on, or `None` before it started (or when it did not
/// start: no device, a disk that would not mount), so that its clients answer
/// "no service" instead of waiting on a core that will never serve them.
pub fn service_core(service: Service) -> Option<usize> {
    RUNNING[service.index()].get().copied()
}

/// Why a placement was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementError {
    pub service: Service,
    pub core: usize,
    pub cores: usize,
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "place.{}={}: there are only cores 0 to {}",
            self.service.name(),
            self.core,
            self.cores.saturating_sub(1)
        )
    }
}

/// The core of each service that runs, and so the cores left to the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Placement {
    cores: usize,
    /// By `Service::index`; `None` for a service that does not run.
    core_of: [Option<usize>; 3],
}

impl Placement {
    /// Returns the placement of the `present` services on `cores` cores, with the cores
    /// `chosen` returns (the command line's `place.NAME=K`) before the rule.
    pub fn decide(
        cores: usize,
        present: &[Service],
        chosen: impl Fn(Service) -> Option<usize>,
    ) -> Result<Placement, PlacementError> {
        let cores = cores.max(1);
        let running: heapless::Vec<Service, 3> = Service::ALL
            .into_iter()
            .filter(|service| present.contains(service))
            .collect();
        let mut core_of = [None; 3];
        let own_cores = cores > running.len();
        for (rank, service) in running.iter().enumerate() {
            let default = if own_cores {
                cores - 1 - rank
            } else {
                cores - 1
            };
            let core = match chosen(*service) {
                Some(core) if core >= cores => {
                    return Err(PlacementError {
                        service: *service,
                        core,
                        cores,
                    })
                }
                Some(core) => core,
                None => default,
            };
            core_of[service.index()] = Some(core);
        }
        Ok(Placement { cores, core_of })
    }

    /// Returns the core that runs `service`, or `None` when it does not run.
    pub fn core_of(&self, service: Service) -> Option<usize> {
        self.core_of[service.index()]
    }

    /// Returns whether `core` runs any service.
    pub fn runs_a_service(&self, core: usize) -> bool {
        self.core_of.contains(&Some(core))
    }

    /// Returns the cores that run no service, for the application's own threads; all
    /// cores when every core runs one (a single core, or services placed on every core).
    pub fn app_cores(&self) -> heapless::Vec<usize, MAX_CORES> {
        let free: heapless::Vec<usize, MAX_CORES> = (0..self.cores)
            .filter(|&core| !self.runs_a_service(core))
            .collect();
        if free.is_empty() {
            (0..self.cores).collect()
        } else {
            free
        }
    }
}

/// `blk core 1, fs core 1, net core 1; application cores 0`, as printed at boot.
impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for service in Service::ALL {
            if let Some(core) = self.core_of(service) {
                let separator = if any { ", " } else { "" };
                write!(f, "{separator}{} core {core}", service.name())?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        f.write_str("; application cores ")?;
        write_ranges(f, &self.app_cores())
    }
}

/// Writes `cores` (ascending) as `0, 2-5, 7`.
fn write_ranges(f: &mut fmt::Formatter<'_>, cores: &[usize]) -> fmt::Result {
    let mut index = 0;
    while index < cores.len() {
        let start = cores[index];
        let mut end = start;
        while index + 1 < cores.len() && cores[index + 1] == end + 1 {
            index += 1;
            end = cores[index];
        }
        if start != cores[0] {
            f.write_str(", ")?;
        }
        if end > start {
            write!(f, "{start}-{end}")?;
        } else {
            write!(f, "{start}")?;
        }
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    const ALL: &[Service] = &Service::ALL;

    fn default(cores: usize, present: &[Service]) -> Placement {
        Placement::decide(cores, present, |_| None).unwrap()
    }

    #[test]
    fn enough_cores_give_each_service_its_own_from_the_top() {
        let placement = default(4, ALL);
        assert_eq!(placement.core_of(Service::Blk), Some(3));
        assert_eq!(placement.core_of(Service::Fs), Some(2));
        assert_eq!(placement.core_of(Service::Net), Some(1));
        assert_eq!(placement.app_cores().as_slice(), &[0]);
        assert_eq!(
            placement.to_string(),
            "blk core 3, fs core 2, net core 1; application cores 0"
        );
        let big = default(8, ALL);
        assert_eq!(big.app_cores().as_slice(), &[0, 1, 2, 3, 4]);
        assert_eq!(
            big.to_string(),
            "blk core 7, fs core 6, net core 5; application cores 0-4"
        );
    }

    #[test]
    fn few_cores_pack_every_service_on_the_last_and_keep_one_for_the_app() {
        for cores in 2..=3 {
            let placement = default(cores, ALL);
            for service in Service::ALL {
                assert_eq!(placement.core_of(service), Some(cores - 1));
            }
            let app: std::vec::Vec<usize> = (0..cores - 1).collect();
            assert_eq!(placement.app_cores().as_slice(), app.as_slice());
        }
        assert_eq!(
            default(2, ALL).to_string(),
            "blk core 1, fs core 1, net core 1; application cores 0"
        );
        let one = default(1, ALL);
        assert_eq!(one.core_of(Service::Net), Some(0));
        assert_eq!(one.app_cores().as_slice(), &[0]);
    }

    #[test]
    fn only_the_services_present_take_cores() {
        let net = default(2, &[Service::Net]);
        assert_eq!(net.core_of(Service::Net), Some(1));
        assert_eq!(net.core_of(Service::Blk), None);
        assert_eq!(net.to_string(), "net core 1; application cores 0");
        let disks = default(3, &[Service::Blk, Service::Fs]);
        assert_eq!(disks.core_of(Service::Blk), Some(2));
        assert_eq!(disks.core_of(Service::Fs), Some(1));
        assert_eq!(disks.app_cores().as_slice(), &[0]);
        let none = default(4, &[]);
        assert_eq!(none.to_string(), "none; application cores 0-3");
    }

    #[test]
    fn chosen_cores_win_and_may_be_shared() {
        let placement = Placement::decide(4, ALL, |_| Some(0)).unwrap();
        for service in Service::ALL {
            assert_eq!(placement.core_of(service), Some(0));
        }
        assert_eq!(placement.app_cores().as_slice(), &[1, 2, 3]);
        let net_only =
            Placement::decide(4, ALL, |service| (service == Service::Net).then_some(3)).unwrap();
        assert_eq!(net_only.core_of(Service::Net), Some(3));
        assert_eq!(net_only.core_of(Service::Blk), Some(3));
        assert_eq!(net_only.app_cores().as_slice(), &[0, 1]);
        let everywhere = Placement::decide(2, ALL, |service| {
            Some(if service == Service::Net { 0 } else { 1 })
        })
        .unwrap();
        assert_eq!(everywhere.app_cores().as_slice(), &[0, 1]);
    }

    #[test]
    fn a_core_outside_the_run_is_refused() {
        let error =
            Placement::decide(2, ALL, |service| (service == Service::Fs).then_some(2)).unwrap_err();
        assert_eq!(error.service, Service::Fs);
        assert_eq!(error.to_string(), "place.fs=2: there are only cores 0 to 1");
    }
}
