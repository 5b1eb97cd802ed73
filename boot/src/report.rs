//! The start-up report: what the boot core found, written out once the cores are online.
//!
//! Under QEMU's TCG a console line costs about a millisecond (every byte is a trap and a
//! write on the host), and formatting it costs the translation of the formatting code,
//! so the boot core keeps numbers while it brings the machine up and prints them here,
//! in the order they happened, while the other cores set themselves up.

use crate::acpi::{self, Tables, Topology};
use crate::plan::Plan;
use crate::{selftest, serial, smp, tsc};
use percore::time::DateTime;
use percore::{println, BootInfo, KernelCapability, PhysRange};

const MIB: u64 = 1 << 20;

/// What the report says about the machine, kept from the boot core's first steps.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    ram_bytes: u64,
    ram_ranges: usize,
    rsdp_source: &'static str,
    processors_enabled: usize,
    processors_disabled: usize,
    io_apics: usize,
    local_apic_address: u64,
    x2apic: bool,
}

impl Machine {
    /// Returns the summary of `ram` and of what ACPI said (`topology`, `x2apic` mode).
    pub fn new(ram: &[PhysRange], topology: &Topology, tables: &Tables, x2apic: bool) -> Machine {
        Machine {
            ram_bytes: ram.iter().map(PhysRange::len).sum(),
            ram_ranges: ram.len(),
            rsdp_source: acpi::rsdp_source(tables),
            processors_enabled: topology.processors.len() + topology.processors_dropped,
            processors_disabled: topology.processors_disabled,
            io_apics: topology.io_apics.len(),
            local_apic_address: topology.local_apic_address,
            x2apic,
        }
    }
}

/// Prints the machine, the TSC rate, the real-time clock's time (`now`; `None`: it had no
/// valid time) and what ACPI said, into the held console. The boot core, once the cores
/// are online.
pub fn machine(machine: &Machine, command_line: &str, now: Option<DateTime>) {
    println!(
        "manada: PVH boot, command line '{}', {} MiB RAM in {} ranges",
        command_line,
        machine.ram_bytes / MIB,
        machine.ram_ranges
    );
    let hz = tsc::hz();
    match tsc::found() {
        Some(found) => println!(
            "manada: TSC {}.{:03} GHz ({found})",
            hz / 1_000_000_000,
            hz / 1_000_000 % 1000
        ),
        None => println!("manada: TSC rate unknown"),
    }
    match now {
        Some(now) => println!(
            "manada: RTC {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            now.year, now.month, now.day, now.hour, now.minute, now.second
        ),
        None => println!("manada: no real-time clock; files get a fixed date"),
    }
    println!(
        "manada: ACPI (RSDP from {}): {} processors enabled, {} disabled, {} IOAPICs; {} at {:#x}",
        machine.rsdp_source,
        machine.processors_enabled,
        machine.processors_disabled,
        machine.io_apics,
        if machine.x2apic { "x2APIC" } else { "xAPIC" },
        machine.local_apic_address,
    );
}

/// Writes out what the console held (the lines above, PCI's and any warnings), then the
/// rest of the report: the application processors (and any that did not come up), the
/// cores online, the app. Core 0, after `GO`.
pub fn print(
    kernel: &KernelCapability,
    plan: &Plan,
    info: &BootInfo,
    app: &crate::App,
    timeout_ms: u64,
) {
    serial::release(kernel);
    if plan.cores() > 1 {
        println!(
            "manada: starting {} application processors",
            plan.cores() - 1
        );
        if selftest::simulate_dead_core(&info.cmdline) {
            let asleep = plan.apic_ids.last();
            println!("manada: selftest: leaving the core with APIC id {asleep:?} asleep");
        }
    }
    for (index, apic_id) in plan.apic_ids.iter().enumerate() {
        if !smp::is_online(index) {
            println!(
                "manada: core with APIC id {apic_id} did not come up within {timeout_ms} ms; going on without it"
            );
        }
    }
    let micros = info.online_micros();
    println!(
        "manada: {} cores online in {}.{:02} ms",
        info.cores.len(),
        micros / 1000,
        micros / 10 % 100
    );
    let per_core = info
        .cores
        .iter()
        .map(|c| c.memory.iter().map(PhysRange::len).sum::<u64>())
        .min()
        .unwrap_or(0);
    println!(
        "manada: running app {} on {} cores ({} MiB of memory each, {} MiB reserved for device services)",
        app.name,
        info.cores.len(),
        per_core / MIB,
        info.service_reserve.map_or(0, |r| r.len() / MIB)
    );
}
