//! A cheap trace of where a request's time goes: counters and TSC cycles per core,
//! switched on at run time (`trace=1` on the kernel command line) and read back by
//! `cargo xtask bench http --trace`.
//!
//! Each core adds only to its own slot (a cache line of its own, so cores never write
//! the same line); anyone may read every slot for a report. With the trace off, a
//! counter costs one relaxed load of a flag that never changes.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Requests answered (counted by the application).
    Requests,
    /// Socket calls sent to the net core from another core (one round trip each).
    NetCalls,
    /// Cycles callers waited for those calls, from sending to waking up.
    NetCallCycles,
    /// File system calls sent to the fs core (one round trip each).
    FsCalls,
    /// Cycles callers waited for them.
    FsCallCycles,
    /// Cycles the net core spent in its service: polling the stack, running socket
    /// calls and connection handlers.
    NetServiceCycles,
    /// Of those, cycles in connection handlers run on the net core.
    HandlerCycles,
    /// Connections a handler gave to a thread (a request it could not answer itself).
    Handoffs,
    /// Requests answered from a cache without another core.
    CacheHits,
    /// Cycles the stack spent taking received frames in (smoltcp's ingress, the
    /// device's receive copies included).
    IngressCycles,
    /// Cycles the stack spent sending (smoltcp's egress, the device's transmit copies
    /// included).
    EgressCycles,
    /// Cycles the device spent copying frames in and out of its DMA memory.
    DeviceCopyCycles,
    /// Frames received.
    FramesIn,
    /// Frames sent.
    FramesOut,
    /// Notifications written to the device (each one a VM exit).
    DeviceNotifies,
    /// Service polls that found nothing to do, and their cycles.
    IdlePolls,
    /// Cycles of those idle polls.
    IdlePollCycles,
    /// Times the busy service loop got the CPU back more than 10 ms after its last
    /// poll (its vCPU was not running: the host's doing, under emulation).
    Stalls,
    /// Cycles of those stalls.
    StallCycles,
    /// Times the idle service halted, armed for its device's interrupt.
    Halts,
    /// Times the device's interrupt woke it.
    Wakeups,
}

impl Counter {
    /// Every counter, in report order.
    pub const ALL: [Counter; 21] = [
        Counter::Requests,
        Counter::NetCalls,
        Counter::NetCallCycles,
        Counter::FsCalls,
        Counter::FsCallCycles,
        Counter::NetServiceCycles,
        Counter::HandlerCycles,
        Counter::Handoffs,
        Counter::CacheHits,
        Counter::IngressCycles,
        Counter::EgressCycles,
        Counter::DeviceCopyCycles,
        Counter::FramesIn,
        Counter::FramesOut,
        Counter::DeviceNotifies,
        Counter::IdlePolls,
        Counter::IdlePollCycles,
        Counter::Stalls,
        Counter::StallCycles,
        Counter::Halts,
        Counter::Wakeups,
    ];

    /// Returns the counter's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Requests => "requests",
            Counter::NetCalls => "net_calls",
            Counter::NetCallCycles => "net_call_cycles",
            Counter::FsCalls => "fs_calls",
            Counter::FsCallCycles => "fs_call_cycles",
            Counter::NetServiceCycles => "net_service_cycles",
            Counter::HandlerCycles => "handler_cycles",
            Counter::Handoffs => "handoffs",
            Counter::CacheHits => "cache_hits",
            Counter::IngressCycles => "ingress_cycles",
            Counter::EgressCycles => "egress_cycles",
            Counter::DeviceCopyCycles => "device_copy_cycles",
            Counter::FramesIn => "frames_in",
            Counter::FramesOut => "frames_out",
            Counter::DeviceNotifies => "device_notifies",
            Counter::IdlePolls => "idle_polls",
            Counter::IdlePollCycles => "idle_poll_cycles",
            Counter::Stalls => "stalls",
            Counter::StallCycles => "stall_cycles",
            Counter::Halts => "halts",
            Counter::Wakeups => "wakeups",
        }
    }
}

const COUNTERS: usize = Counter::ALL.len();

/// One core's counters, on lines of their own.
#[repr(align(128))]
struct Slot([AtomicU64; COUNTERS]);

impl Slot {
    const fn new() -> Slot {
        Slot([const { AtomicU64::new(0) }; COUNTERS])
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static SLOTS: [Slot; percore::MAX_CORES] = [const { Slot::new() }; percore::MAX_CORES];

/// Switches the trace on (for the rest of the run).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Returns whether the trace is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Adds `value` to `counter` of the running core.
pub fn add(counter: Counter, value: u64) {
    if !enabled() {
        return;
    }
    // Outside a numbered core (host tests) the counts go to slot 0.
    let core = percore::cpu::current().map_or(0, percore::CoreLocal::index);
    let Some(slot) = SLOTS.get(core) else {
        return;
    };
    // Only this core writes its slot, so a load and a store are enough.
    let cell = &slot.0[counter as usize];
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(value),
        Ordering::Relaxed,
    );
}

/// Returns the TSC now when the trace is on: the start of a measured stretch.
pub fn start() -> Option<u64> {
    enabled().then(percore::time::ticks)
}

/// Adds the cycles since `started` (from [`start`]) to `counter`, and one to `calls`
/// when given.
pub fn finish(started: Option<u64>, cycles: Counter, calls: Option<Counter>) {
    if let Some(started) = started {
        add(cycles, percore::time::ticks().saturating_sub(started));
        if let Some(calls) = calls {
            add(calls, 1);
        }
    }
}

/// Returns one line per core that counted anything: `trace core=K name=value ...`.
pub fn report(cores: usize) -> alloc::string::String {
    use core::fmt::Write as _;
    let mut text = alloc::string::String::new();
    for (core, counts) in snapshot(cores).iter().enumerate() {
        if counts.iter().all(|&count| count == 0) {
            continue;
        }
        let _ = write!(text, "trace core={core}");
        for (counter, count) in Counter::ALL.iter().zip(counts) {
            let _ = write!(text, " {}={count}", counter.name());
        }
        text.push('\n');
    }
    text
}

/// Returns every core's counters (index: core), in [`Counter::ALL`] order, for the
/// first `cores` cores.
pub fn snapshot(cores: usize) -> Vec<[u64; COUNTERS]> {
    SLOTS
        .iter()
        .take(cores)
        .map(|slot| core::array::from_fn(|index| slot.0[index].load(Ordering::Relaxed)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_when_enabled_and_per_core() {
        // Host tests without a core block count as core 0.
        let before = snapshot(1)[0][Counter::Handoffs as usize];
        if !enabled() {
            add(Counter::Handoffs, 5);
            assert_eq!(snapshot(1)[0][Counter::Handoffs as usize], before);
        }
        enable();
        add(Counter::Handoffs, 2);
        let started = start();
        assert!(started.is_some());
        finish(started, Counter::FsCallCycles, Some(Counter::FsCalls));
        let after = snapshot(1)[0];
        assert_eq!(after[Counter::Handoffs as usize], before + 2);
        assert!(after[Counter::FsCalls as usize] >= 1);
        assert_eq!(Counter::ALL.len(), COUNTERS);
        assert_eq!(Counter::ALL[3].name(), "fs_calls");
    }
}
