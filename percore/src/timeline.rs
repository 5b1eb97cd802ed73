//! The boot timeline: when each start-up phase ended, in TSC ticks, from the first
//! kernel instruction to the application's `main`.
//!
//! The boot core records the end of each phase as it goes (a phase begins where the one
//! recorded before it ended, the first one at kernel entry), then turns the ticks into
//! milliseconds once the TSC rate is known and prints them on one line:
//! `manada: boot 1.93 ms: acpi 0.21, paging 0.05, plan 0.52, ...`. xtask reads that line
//! back (`cargo xtask bench boot`), so its shape is part of the console protocol.

use core::fmt;

/// A start-up phase, in the order the boot core ends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// From kernel entry: PVH start_info and the ACPI tables the others' start needs
    /// (RSDP, MADT, HPET, FADT).
    Acpi,
    /// The page tables (device windows uncached, RAM above 4 GiB; RAM stays in 2 MiB
    /// pages), the boot core's APIC, and INIT to the others.
    Paging,
    /// The start-up plan: the cores that start, their blocks of the start-up area, the
    /// IDT, the trampoline; until the STARTUP.
    Plan,
    /// Starting the application processors until the last is online (own stack, tables
    /// and rings); the boot core's own meanwhile.
    Aps,
    /// The TSC's window (opened once the cores are online) until it closes, while the
    /// boot core looks the app up, shares the memory out, reads the real-time clock and
    /// the device tables (MCFG, DSDT and SSDTs checked); the close waits only if the
    /// window is still shorter than its clock needs.
    Tsc,
    /// The report's first lines, setting the UART up, PCI enumeration and the
    /// virtio-mmio devices.
    Pci,
    /// Writing out the start-up report that the console held until the cores were
    /// online (the other cores set themselves up meanwhile).
    Report,
    /// Every core's own instance: mailbox, heap, `CoreLocal`, timer.
    Cores,
    /// The device services, until the application's `main` starts.
    Services,
}

impl Phase {
    /// Every phase, in the order the boot core ends them.
    pub const ALL: [Phase; 9] = [
        Phase::Acpi,
        Phase::Paging,
        Phase::Plan,
        Phase::Aps,
        Phase::Tsc,
        Phase::Pci,
        Phase::Report,
        Phase::Cores,
        Phase::Services,
    ];

    /// Returns the phase's name on the timeline line.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Acpi => "acpi",
            Phase::Paging => "paging",
            Phase::Tsc => "tsc",
            Phase::Pci => "pci",
            Phase::Plan => "plan",
            Phase::Aps => "aps",
            Phase::Report => "report",
            Phase::Cores => "cores",
            Phase::Services => "services",
        }
    }
}

/// When each phase ended, as TSC values; read-only once published with `BootInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// TSC value at the first kernel instruction.
    start: u64,
    /// TSC value at the end of each phase of [`Phase::ALL`], once recorded.
    ends: [Option<u64>; Phase::ALL.len()],
}

impl Timeline {
    /// Returns a timeline that starts at TSC value `start` with no phase ended yet.
    pub const fn new(start: u64) -> Timeline {
        Timeline {
            start,
            ends: [None; Phase::ALL.len()],
        }
    }

    /// Returns the TSC value at kernel entry.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Records that `phase` ended at TSC value `tsc` (a second call overwrites).
    pub fn end(&mut self, phase: Phase, tsc: u64) {
        self.ends[index(phase)] = Some(tsc);
    }

    /// Returns the TSC value at which `phase` ended, if recorded.
    pub fn ended(&self, phase: Phase) -> Option<u64> {
        self.ends[index(phase)]
    }

    /// Returns the TSC value of the last recorded phase end (the start if none).
    pub fn last(&self) -> u64 {
        self.ends
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(self.start)
    }

    /// Returns each recorded phase with its length in ticks, in the order they ended:
    /// a phase runs from the end before it (kernel entry for the first) to its own.
    pub fn phases(&self) -> impl Iterator<Item = (Phase, u64)> {
        let mut recorded: heapless::Vec<(u64, Phase), { Phase::ALL.len() }> = Phase::ALL
            .iter()
            .filter_map(|&phase| Some((self.ended(phase)?, phase)))
            .collect();
        // Stable: phases that ended on the same tick keep their `ALL` order.
        recorded.sort_by_key(|&(end, _)| end);
        let mut previous = self.start;
        recorded.into_iter().map(move |(end, phase)| {
            let length = end.saturating_sub(previous);
            previous = previous.max(end);
            (phase, length)
        })
    }

    /// Returns the ticks from kernel entry to the last recorded phase end.
    pub fn total(&self) -> u64 {
        self.last().saturating_sub(self.start)
    }

    /// Returns the timeline as the console line's text (after `manada: `) for a TSC of
    /// `hz` ticks per second.
    pub fn display(&self, hz: u64) -> TimelineLine<'_> {
        TimelineLine { timeline: self, hz }
    }
}

fn index(phase: Phase) -> usize {
    Phase::ALL
        .iter()
        .position(|&p| p == phase)
        .expect("every phase is in ALL")
}

/// A [`Timeline`] written as `boot T ms: phase t, phase t, ...` (milliseconds with two
/// decimals).
#[derive(Debug)]
pub struct TimelineLine<'a> {
    timeline: &'a Timeline,
    hz: u64,
}

impl fmt::Display for TimelineLine<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "boot ")?;
        write_millis(formatter, self.timeline.total(), self.hz)?;
        write!(formatter, " ms:")?;
        for (i, (phase, ticks)) in self.timeline.phases().enumerate() {
            let separator = if i == 0 { " " } else { ", " };
            write!(formatter, "{separator}{} ", phase.name())?;
            write_millis(formatter, ticks, self.hz)?;
        }
        Ok(())
    }
}

/// Returns `ticks` of a `hz` clock in microseconds (0 when `hz` is 0).
pub fn ticks_to_micros(ticks: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    (ticks as u128 * 1_000_000 / hz as u128).min(u64::MAX as u128) as u64
}

/// Writes `ticks` of a `hz` clock as milliseconds with two decimals (rounded).
pub fn write_millis(formatter: &mut impl fmt::Write, ticks: u64, hz: u64) -> fmt::Result {
    let micros = ticks_to_micros(ticks, hz);
    let hundredths = (micros + 5) / 10;
    write!(formatter, "{}.{:02}", hundredths / 100, hundredths % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};

    const HZ: u64 = 1_000_000_000;

    #[test]
    fn micros_from_ticks() {
        assert_eq!(ticks_to_micros(3_000_000, 3_000_000_000), 1000);
        assert_eq!(ticks_to_micros(u64::MAX, 1), u64::MAX, "saturates");
        assert_eq!(ticks_to_micros(5, 0), 0);
    }

    #[test]
    fn phases_run_from_the_previous_end() {
        let mut timeline = Timeline::new(1_000);
        timeline.end(Phase::Acpi, 1_000 + 200_000);
        timeline.end(Phase::Tsc, 1_000 + 700_000);
        timeline.end(Phase::Aps, 1_000 + 1_930_000);
        let phases: std::vec::Vec<_> = timeline.phases().collect();
        assert_eq!(
            phases,
            [
                (Phase::Acpi, 200_000),
                (Phase::Tsc, 500_000),
                (Phase::Aps, 1_230_000)
            ]
        );
        assert_eq!(timeline.total(), 1_930_000);
        assert_eq!(
            timeline.display(HZ).to_string(),
            "boot 1.93 ms: acpi 0.20, tsc 0.50, aps 1.23"
        );
    }

    #[test]
    fn phases_are_listed_in_the_order_they_ended() {
        let mut timeline = Timeline::new(0);
        // The TSC rate measured before ACPI was read, as a boot without ACPI timers does.
        timeline.end(Phase::Acpi, 2_000_000);
        timeline.end(Phase::Tsc, 1_500_000);
        timeline.end(Phase::Services, 2_500_000);
        let phases: std::vec::Vec<_> = timeline.phases().collect();
        assert_eq!(
            phases,
            [
                (Phase::Tsc, 1_500_000),
                (Phase::Acpi, 500_000),
                (Phase::Services, 500_000)
            ]
        );
        assert_eq!(timeline.total(), 2_500_000);
    }

    #[test]
    fn an_end_before_kernel_entry_counts_zero() {
        let mut timeline = Timeline::new(1_000);
        timeline.end(Phase::Acpi, 500);
        timeline.end(Phase::Tsc, 3_000);
        let phases: std::vec::Vec<_> = timeline.phases().collect();
        assert_eq!(phases, [(Phase::Acpi, 0), (Phase::Tsc, 2_000)]);
    }

    #[test]
    fn empty_and_rounding() {
        let timeline = Timeline::new(42);
        assert_eq!(timeline.display(HZ).to_string(), "boot 0.00 ms:");
        assert_eq!(timeline.last(), 42);
        let mut text = String::new();
        write_millis(&mut text, 1_234_567, HZ).unwrap();
        assert_eq!(text, "1.23");
        text.clear();
        write_millis(&mut text, 1_235_000, HZ).unwrap();
        assert_eq!(text, "1.24");
        text.clear();
        write_millis(&mut text, 5, 0).unwrap();
        assert_eq!(text, "0.00", "no rate yet: nothing to show");
    }
}
