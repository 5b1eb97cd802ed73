//! The http suite's per-request breakdown: the host CPU each QEMU thread spent (every
//! vCPU, and QEMU's main thread, which runs the user networking), and, with `--trace`,
//! the guest's own counters (`net::trace`: cross-core calls, frames, notifications and
//! TSC cycles of the net core's work), each over the requests of the same wrk run; and
//! the host's TCP counters that show connections lost before the guest saw them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

/// CPU time (clock ticks) per QEMU thread name.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct ThreadTimes(BTreeMap<String, u64>);

/// Returns the process id of the QEMU that forwards host port `port`.
pub(super) fn qemu_pid(port: u16) -> Option<u32> {
    let forward = format!("hostfwd=tcp:127.0.0.1:{port}-");
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let command = fs::read(entry.path().join("cmdline")).ok()?;
        let words: Vec<&[u8]> = command.split(|&byte| byte == 0).collect();
        let is_qemu = words
            .first()
            .is_some_and(|program| program.ends_with(b"qemu-system-x86_64"));
        let forwards = words
            .iter()
            .any(|word| word.windows(forward.len()).any(|w| w == forward.as_bytes()));
        (is_qemu && forwards).then_some(pid)
    })
}

/// Returns the user and system ticks of a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Returns the CPU time of every thread of process `pid`, summed by thread name.
pub(super) fn thread_times(pid: u32) -> ThreadTimes {
    let mut times = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return ThreadTimes(times);
    };
    for task in tasks.flatten() {
        let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let ticks = fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| stat_ticks(&stat));
        if let Some(ticks) = ticks {
            *times.entry(name.trim().to_string()).or_default() += ticks;
        }
    }
    ThreadTimes(times)
}

/// Returns the column a QEMU thread's time goes to: `vcpuK` for `CPU K/TCG` (or
/// `/KVM`), `qemu_main` for the main thread, `qemu_other` for the rest.
fn column(thread: &str) -> String {
    if let Some(rest) = thread.strip_prefix("CPU ") {
        if let Some((index, _)) = rest.split_once('/') {
            return format!("vcpu{index}");
        }
    }
    if thread.starts_with("qemu-system") {
        return "qemu_main".into();
    }
    "qemu_other".into()
}

/// Returns the host CPU microseconds per request of each column between `before` and
/// `after` (`ticks_per_second` clock ticks a second).
pub(super) fn cpu_per_request(
    before: &ThreadTimes,
    after: &ThreadTimes,
    requests: u64,
    ticks_per_second: u64,
) -> BTreeMap<String, f64> {
    let mut columns: BTreeMap<String, f64> = BTreeMap::new();
    for (thread, &ticks) in &after.0 {
        let spent = ticks.saturating_sub(before.0.get(thread).copied().unwrap_or(0));
        *columns.entry(column(thread)).or_default() += spent as f64;
    }
    for value in columns.values_mut() {
        *value = *value * 1e6 / ticks_per_second.max(1) as f64 / requests.max(1) as f64;
    }
    columns
}

/// Returns the kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub(super) fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Every core's trace counters: core index to counter name to value.
pub(super) type Trace = BTreeMap<usize, BTreeMap<String, u64>>;

/// Returns the counters in the guest's report (`trace core=K name=value ...` lines).
pub(super) fn parse_trace(text: &str) -> Trace {
    let mut trace = Trace::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("trace") {
            continue;
        }
        let mut core = None;
        let mut counters = BTreeMap::new();
        for word in words {
            let Some((name, value)) = word.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            if name == "core" {
                core = Some(value as usize);
            } else {
                counters.insert(name.to_string(), value);
            }
        }
        if let Some(core) = core {
            trace.insert(core, counters);
        }
    }
    trace
}

/// Returns the guest's trace counters from its trace port (forwarded to host `port`),
/// or `None` when it does not answer (a kernel without the trace, or `trace` off).
pub(super) fn read_trace(port: u16) -> Option<Trace> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let trace = parse_trace(&text);
    (!trace.is_empty()).then_some(trace)
}

/// The counters summed over cores (counts of events) and how they are shown.
const COUNTS: &[(&str, &str)] = &[
    ("net_calls", "net_calls"),
    ("fs_calls", "fs_calls"),
    ("handoffs", "handoffs"),
    ("cache_hits", "cache_hits"),
    ("frames_in", "frames_in"),
    ("frames_out", "frames_out"),
    ("device_notifies", "notifies"),
    ("idle_polls", "idle_polls"),
    ("stalls", "stalls"),
    ("halts", "halts"),
    ("wakeups", "wakeups"),
];

/// The cycle counters of the net core's work, shown in thousands of TSC cycles per
/// request.
const CYCLES: &[(&str, &str)] = &[
    ("handler_cycles", "handler_kcycles"),
    ("ingress_cycles", "ingress_kcycles"),
    ("egress_cycles", "egress_kcycles"),
    ("device_copy_cycles", "copy_kcycles"),
    ("stall_cycles", "stall_kcycles"),
];

/// The round trips to another core, shown as thousands of TSC cycles a caller waited
/// per call (a call that waits for a connection to come counts its whole wait).
const WAITS: &[(&str, &str, &str)] = &[
    ("net_call_cycles", "net_calls", "net_wait_kcycles_per_call"),
    ("fs_call_cycles", "fs_calls", "fs_wait_kcycles_per_call"),
];

/// Returns the trace's measures per request between `before` and `after`: counts per
/// request, thousands of cycles per request, and the net core's busy cycles (its
/// service's cycles less those of polls that found nothing). `None` without requests.
pub(super) fn trace_per_request(before: &Trace, after: &Trace) -> Option<BTreeMap<String, f64>> {
    let total = |trace: &Trace, name: &str| -> u64 {
        trace
            .values()
            .map(|counters| counters.get(name).copied().unwrap_or(0))
            .sum()
    };
    let delta = |name: &str| total(after, name).saturating_sub(total(before, name)) as f64;
    let requests = delta("requests");
    if requests == 0.0 {
        return None;
    }
    let mut measures = BTreeMap::new();
    measures.insert("requests".to_string(), requests);
    for (counter, shown) in COUNTS {
        measures.insert((*shown).to_string(), delta(counter) / requests);
    }
    for (counter, shown) in CYCLES {
        measures.insert((*shown).to_string(), delta(counter) / requests / 1000.0);
    }
    for (cycles, calls, shown) in WAITS {
        let calls = delta(calls);
        // A call or two in a run (the trace report's own accept waits the whole run)
        // says nothing per call.
        if calls >= requests / 100.0 && calls > 0.0 {
            measures.insert((*shown).to_string(), delta(cycles) / calls / 1000.0);
        }
    }
    let busy = delta("net_service_cycles") - delta("idle_poll_cycles");
    measures.insert("net_busy_kcycles".into(), busy.max(0.0) / requests / 1000.0);
    Some(measures)
}

/// The host's TCP counters that tell a wait in the host from a wait in the guest.
///
/// QEMU's user networking listens on a forwarded port with a backlog of one: when a client
/// opens many connections at once, the host kernel drops the handshakes that find the
/// queue full, and the client sends again after 0.2 s (1 s for a connection request),
/// doubling each time. Those waits are in the client's latency, but the guest never saw
/// the connection. The counters are the whole host's, so they mean this only on a quiet
/// host.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct HostTcp {
    /// Handshakes dropped because a listening socket's queue was full
    /// (`TcpExt: ListenOverflows` in `/proc/net/netstat`).
    pub listen_overflows: u64,
    /// Segments sent again (`Tcp: RetransSegs` in `/proc/net/snmp`).
    pub retransmitted: u64,
}

impl HostTcp {
    /// Returns the counts from `self` to `later`.
    pub fn until(&self, later: &HostTcp) -> HostTcp {
        HostTcp {
            listen_overflows: later.listen_overflows.saturating_sub(self.listen_overflows),
            retransmitted: later.retransmitted.saturating_sub(self.retransmitted),
        }
    }
}

/// Returns counter `field` of a `/proc/net/snmp` or `/proc/net/netstat` text, whose rows
/// come in pairs that start with `prefix`: the names, then the values.
fn proc_net_counter(text: &str, prefix: &str, field: &str) -> Option<u64> {
    let mut rows = text.lines().filter(|line| line.starts_with(prefix));
    while let (Some(names), Some(values)) = (rows.next(), rows.next()) {
        let pairs = names.split_whitespace().zip(values.split_whitespace());
        if let Some((_, value)) = pairs.skip(1).find(|(name, _)| *name == field) {
            return value.parse().ok();
        }
    }
    None
}

/// Returns the host's TCP counters, or `None` where `/proc/net` does not have them.
pub(super) fn host_tcp() -> Option<HostTcp> {
    let netstat = fs::read_to_string("/proc/net/netstat").ok()?;
    let snmp = fs::read_to_string("/proc/net/snmp").ok()?;
    Some(HostTcp {
        listen_overflows: proc_net_counter(&netstat, "TcpExt:", "ListenOverflows")?,
        retransmitted: proc_net_counter(&snmp, "Tcp:", "RetransSegs")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_become_columns() {
        assert_eq!(column("CPU 1/TCG"), "vcpu1");
        assert_eq!(column("CPU 12/KVM"), "vcpu12");
        assert_eq!(column("qemu-system-x86"), "qemu_main");
        assert_eq!(column("call_rcu"), "qemu_other");
        assert_eq!(column("worker"), "qemu_other");
    }

    #[test]
    fn reads_proc_stat_lines_with_spaces_in_the_name() {
        let stat = "123 (CPU 0/TCG) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(stat_ticks(stat), Some(300));
        assert_eq!(stat_ticks("garbage"), None);
        // This very process has a stat line of the same shape.
        let own = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(stat_ticks(&own).is_some());
    }

    #[test]
    fn cpu_per_request_by_column() {
        let before = ThreadTimes(BTreeMap::from([
            ("CPU 0/TCG".to_string(), 100),
            ("CPU 1/TCG".to_string(), 200),
            ("qemu-system-x86".to_string(), 50),
        ]));
        let after = ThreadTimes(BTreeMap::from([
            ("CPU 0/TCG".to_string(), 100),
            ("CPU 1/TCG".to_string(), 300),
            ("qemu-system-x86".to_string(), 100),
            ("worker".to_string(), 10),
        ]));
        let columns = cpu_per_request(&before, &after, 10_000, 100);
        // 100 ticks of 10 ms over 10,000 requests: 100 us each.
        assert_eq!(columns["vcpu1"], 100.0);
        assert_eq!(columns["vcpu0"], 0.0);
        assert_eq!(columns["qemu_main"], 50.0);
        assert_eq!(columns["qemu_other"], 10.0);
    }

    #[test]
    fn trace_reports_become_measures_per_request() {
        let before = parse_trace(
            "trace core=1 requests=100 net_calls=0 net_service_cycles=1000 idle_poll_cycles=500 frames_in=100\n",
        );
        let after = parse_trace(
            "trace core=0 requests=0 fs_calls=30 fs_call_cycles=300000\n\
             trace core=1 requests=1100 net_calls=1 net_service_cycles=3001000 idle_poll_cycles=1000500 frames_in=1300\n\
             garbage line\n",
        );
        assert_eq!(after.len(), 2);
        let measures = trace_per_request(&before, &after).unwrap();
        assert_eq!(measures["requests"], 1000.0);
        assert_eq!(measures["frames_in"], 1.2);
        assert_eq!(measures["fs_calls"], 0.03);
        assert_eq!(measures["fs_wait_kcycles_per_call"], 10.0);
        assert!(!measures.contains_key("net_wait_kcycles_per_call"));
        assert_eq!(measures["net_busy_kcycles"], 2.0);
        assert_eq!(trace_per_request(&before, &before), None);
    }

    #[test]
    fn reads_host_tcp_counters() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                       TcpExt: 0 69 69\n\
                       IpExt: InNoRoutes ListenOverflows\n\
                       IpExt: 0 5\n";
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RetransSegs InErrs\nTcp: 1 64 0\n";
        assert_eq!(
            proc_net_counter(netstat, "TcpExt:", "ListenOverflows"),
            Some(69)
        );
        assert_eq!(
            proc_net_counter(netstat, "IpExt:", "ListenOverflows"),
            Some(5)
        );
        assert_eq!(proc_net_counter(snmp, "Tcp:", "RetransSegs"), Some(64));
        assert_eq!(proc_net_counter(snmp, "Tcp:", "Missing"), None);
        assert_eq!(proc_net_counter(snmp, "Udp:", "RetransSegs"), None);
        // The prefix names a column too: it is the row's name, not a counter.
        assert_eq!(proc_net_counter(snmp, "Tcp:", "Tcp:"), None);
        let before = HostTcp {
            listen_overflows: 10,
            retransmitted: 100,
        };
        let after = HostTcp {
            listen_overflows: 24,
            retransmitted: 130,
        };
        assert_eq!(
            before.until(&after),
            HostTcp {
                listen_overflows: 14,
                retransmitted: 30
            }
        );
        assert_eq!(after.until(&before), HostTcp::default());
    }
}
