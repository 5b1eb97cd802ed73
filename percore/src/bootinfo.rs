//! Boot information: what the boot core learned about the machine, shared read-only.
//!
//! The boot core fills a [`BootInfo`] while it brings the machine up and publishes it
//! once, before any core runs kernel or application code. From then on it never
//! changes, so every core may read it without locks (invariant: boot information is
//! read-only after start-up).

use crate::mailbox::MailboxLocation;
use crate::memory::PhysRange;
use crate::timeline::{ticks_to_micros, Phase, Timeline};
use crate::MAX_CORES;

/// Longest kernel command line, in bytes (without its terminating NUL). A longer one is
/// refused at boot, never cut.
pub const CMDLINE_MAX: usize = 4096;

/// One online core, as numbered by the kernel.
#[derive(Clone, Debug)]
pub struct CoreDesc {
    /// The core's local APIC id (not necessarily equal to its index).
    pub apic_id: u32,
    /// The core's own memory, stacks and rings already carved out.
    pub memory: heapless::Vec<PhysRange, { crate::memory::MAX_EXTENTS }>,
    /// Where the core's inbound rings and doorbell are.
    pub mailbox: MailboxLocation,
}

/// The machine as the boot core found it.
#[derive(Debug)]
pub struct BootInfo {
    /// Online cores; a core's index is its position here. Core 0 is the boot core.
    pub cores: heapless::Vec<CoreDesc, MAX_CORES>,
    /// The kernel command line.
    pub cmdline: heapless::String<CMDLINE_MAX>,
    /// TSC ticks per second, as calibrated at boot.
    pub tsc_hz: u64,
    /// How the start-up went: TSC values at kernel entry and at the end of each phase up
    /// to the last core online ([`Phase::Aps`]); later phases are recorded in a copy.
    pub timeline: Timeline,
    /// True when cores use x2APIC mode (APIC ids above 255 are possible).
    pub x2apic: bool,
    /// Memory set aside for device services (DMA rings and buffers), not in any core's
    /// heap.
    pub service_reserve: Option<PhysRange>,
    /// Which core runs each device service, and so which cores the application has.
    pub services: crate::placement::Placement,
}

impl BootInfo {
    /// Returns the parsed command line.
    pub fn command_line(&self) -> crate::cmdline::CommandLine<'_> {
        crate::cmdline::CommandLine::new(&self.cmdline)
    }

    /// Returns the index of the core whose APIC id is `apic_id`.
    pub fn core_index(&self, apic_id: u32) -> Option<usize> {
        self.cores.iter().position(|c| c.apic_id == apic_id)
    }

    /// Returns how long the cores took to come online, in microseconds since kernel entry.
    pub fn online_micros(&self) -> u64 {
        let online = self
            .timeline
            .ended(Phase::Aps)
            .unwrap_or(self.timeline.start());
        ticks_to_micros(online.saturating_sub(self.timeline.start()), self.tsc_hz)
    }
}

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

/// Publishes the boot information. Only the first call has an effect; returns the
/// published value. Kernel only.
pub fn publish(_kernel: &crate::KernelCapability, info: BootInfo) -> &'static BootInfo {
    BOOT_INFO.call_once(|| info)
}

/// Returns the boot information, or `None` before the boot core published it.
pub fn try_boot_info() -> Option<&'static BootInfo> {
    BOOT_INFO.get()
}

/// Returns the boot information.
///
/// # Panics
/// Panics when called before the boot core published it, which only kernel start-up
/// code could do.
pub fn boot_info() -> &'static BootInfo {
    try_boot_info().expect("boot information read before it was published")
}

/// Returns the number of online cores.
pub fn core_count() -> usize {
    boot_info().cores.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lookup_by_apic_id() {
        let mut cores = heapless::Vec::new();
        for apic_id in [0, 2, 4, 6] {
            let mailbox = MailboxLocation {
                inbound: &[],
                doorbell: Box::leak(Box::new(ipc::Doorbell::new())),
                apic_id,
            };
            cores
                .push(CoreDesc {
                    apic_id,
                    memory: heapless::Vec::new(),
                    mailbox,
                })
                .unwrap();
        }
        let mut timeline = Timeline::new(100);
        timeline.end(Phase::Acpi, 600);
        timeline.end(Phase::Aps, 2100);
        let info = BootInfo {
            cores,
            cmdline: heapless::String::try_from("app=hello").unwrap(),
            tsc_hz: 1_000_000,
            timeline,
            x2apic: false,
            service_reserve: None,
            services: crate::placement::Placement::default(),
        };
        assert_eq!(info.core_index(4), Some(2));
        assert_eq!(info.core_index(1), None);
        assert_eq!(info.online_micros(), 2000);
        assert_eq!(info.command_line().get("app"), Some("hello"));
    }
}
