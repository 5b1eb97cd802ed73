//! The start-up sequence: boot core, then every core's own instance, then the app.
//!
//! Boot core: PVH start_info -> console -> TSC -> ACPI MADT -> memory split and paging
//! (`plan`) -> own stack -> wake the others -> placement of the services -> publish
//! `BootInfo` -> go. Every core: own GDT/TSS/IDT -> online -> wait for go -> mailbox,
//! heap, `CoreLocal` -> its scheduler; core 0 also starts the services (`services`) and
//! runs the application's main thread, whose outcome (with what failed during the run)
//! ends the run.

use crate::cpu::{halt_forever, rdtsc};
use crate::exit::{exit, Outcome};
use crate::gdt::CoreTables;
use crate::plan::{self, LocalPage, Plan, Slot, PLAN};
use crate::{acpi, apic, console, entry, interrupts, paging, pvh, services, smp, tsc};
use core::sync::atomic::{AtomicBool, Ordering};
use ipc::Doorbell;
use percore::bootinfo::{self, BootInfo, CoreDesc};
use percore::heap::{Heap, OwnerMap};
use percore::mailbox::{self, Hooks, MailboxLocation, Ring};
use percore::memory::{self, PhysRange};
use percore::{println, CoreLocal, Mailbox, MAX_CORES};

const AP_START_TIMEOUT_US: u64 = 3_000_000;
const MIB: u64 = 1 << 20;

/// Set by the boot core once `BootInfo` is published: every core may run the app.
static GO: AtomicBool = AtomicBool::new(false);

#[unsafe(no_mangle)]
extern "C" fn boot_core_main(start_info: u32) -> ! {
    percore::cpu::install_none();
    console::init();
    // SAFETY: `start_info` is the ebx value of the PVH entry, passed through unchanged,
    // and nothing has written low memory yet.
    let params = match unsafe { pvh::read(u64::from(start_info)) } {
        Ok(params) => params,
        Err(error) => fatal(format_args!("cannot read PVH start_info: {error}")),
    };
    let command_line = percore::cmdline::CommandLine::new(&params.cmdline);
    // Without `app=`, the image's first application runs.
    let applications = crate::app::registered();
    let app_name = command_line
        .get("app")
        .or(applications.first().map(|app| app.name))
        .unwrap_or("(none)");
    let ram_total: u64 = params.ram.iter().map(PhysRange::len).sum();
    println!(
        "manada: PVH boot, command line '{}', {} MiB RAM in {} ranges",
        params.cmdline,
        ram_total / MIB,
        params.ram.len()
    );
    crate::mmio::read_command_line(&params.cmdline);
    let Some(app) = crate::find(applications, app_name) else {
        let mut names = heapless::String::<256>::new();
        for (i, name) in applications.iter().map(|app| app.name).enumerate() {
            let _ = names.push_str(if i == 0 { "" } else { ", " });
            let _ = names.push_str(name);
        }
        fatal(format_args!(
            "unknown app '{app_name}' (available: {names})"
        ));
    };

    // SAFETY: masking both 8259 PICs (all IRQ lines) only stops legacy interrupts.
    unsafe {
        x86::io::outb(0x21, 0xFF);
        x86::io::outb(0xA1, 0xFF);
    }
    let (hz, source) = tsc::calibrate();
    println!(
        "manada: TSC {}.{:02} GHz ({source:?})",
        hz / 1_000_000_000,
        hz / 10_000_000 % 100
    );
    match devices::rtc::publish_wall_clock() {
        Some(now) => println!(
            "manada: RTC {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            now.year, now.month, now.day, now.hour, now.minute, now.second
        ),
        None => println!("manada: no real-time clock; files get a fixed date"),
    }

    let topology = match acpi::read_topology(params.rsdp) {
        Ok(topology) => topology,
        Err(error) => fatal(format_args!("cannot read ACPI: {error}")),
    };
    let x2apic = apic::choose_mode(topology.local_apic_address);
    apic::enable();
    let boot_apic_id = apic::id();
    plan::report_topology(&topology, x2apic);

    let apic_ids = plan::choose_cores(&topology, boot_apic_id, x2apic);
    let (slots, service_reserve) = plan::build_plan(&params.ram, &topology, &apic_ids);
    interrupts::init();
    let plan = PLAN.call_once(|| Plan {
        service_reserve,
        slots,
        cmdline: params.cmdline.clone(),
        app,
    });
    // SAFETY: boot core only, no AP woken yet; the page is below 1 MiB, never handed out.
    unsafe { smp::install_trampoline(entry::page_table_root(), ap_entry) };
    // SAFETY: slot 0's stack was carved from the boot core's own memory just now and is
    // used by nothing else; nothing on the boot stack is needed afterwards.
    unsafe { smp::switch_stack(plan.slots[0].stack_top, boot_core_continue, 0) }
}

extern "C" fn boot_core_continue(_: usize) -> ! {
    let plan = PLAN.get().expect("plan published before the switch");
    enter_own_tables(&plan.slots[0]);
    smp::mark_online(0);

    let others: heapless::Vec<u32, MAX_CORES> =
        plan.slots.iter().skip(1).map(|slot| slot.apic_id).collect();
    let mut left_asleep = None;
    if !others.is_empty() {
        println!("manada: starting {} application processors", others.len());
        if crate::selftest::simulate_dead_core(&plan.cmdline) {
            left_asleep = others.last().copied();
            println!("manada: selftest: leaving the core with APIC id {left_asleep:?} asleep");
        }
    }
    smp::start_application_processors(&others, left_asleep, AP_START_TIMEOUT_US);
    let online_tsc = rdtsc();

    let online_count = (0..plan.slots.len())
        .filter(|&slot| smp::is_online(slot))
        .count();
    let mut cores = heapless::Vec::new();
    for (slot_index, slot) in plan.slots.iter().enumerate() {
        if smp::is_online(slot_index) {
            let memory = slot.memory.extents().iter().copied().collect();
            let _ = cores.push(CoreDesc {
                apic_id: slot.apic_id,
                memory,
                mailbox: plan::mailbox_location(slot, online_count),
            });
        } else {
            println!(
                "manada: core with APIC id {} did not come up within {} ms; going on without it",
                slot.apic_id,
                AP_START_TIMEOUT_US / 1000
            );
        }
    }
    let command_line = percore::cmdline::CommandLine::new(&plan.cmdline);
    crate::selftest::check(&plan.cmdline, cores.len());
    let placement = services::decide(cores.len(), &command_line);
    let info = bootinfo::publish(BootInfo {
        cores,
        cmdline: plan.cmdline.clone(),
        tsc_hz: tsc::hz(),
        boot_tsc: entry::boot_tsc(),
        online_tsc,
        x2apic: apic::is_x2apic(),
        service_reserve: plan.service_reserve,
        services: placement,
    });
    let micros = info.online_micros();
    println!(
        "manada: {} cores online in {}.{} ms",
        info.cores.len(),
        micros / 1000,
        micros / 100 % 10
    );
    let per_core = info
        .cores
        .iter()
        .map(|c| c.memory.iter().map(PhysRange::len).sum::<u64>())
        .min()
        .unwrap_or(0);
    println!(
        "manada: running app {} on {} cores ({} MiB of memory each, {} MiB reserved for device services)",
        plan.app.name,
        info.cores.len(),
        per_core / MIB,
        info.service_reserve.map_or(0, |r| r.len() / MIB)
    );
    mailbox::install_hooks(Hooks {
        wake: |apic_id| apic::send_interrupt(apic_id, interrupts::WAKEUP_VECTOR),
        halt: interrupts::halt_until_interrupt,
        arm_timer: apic::arm_timer,
        protect: |address, guard| {
            assert!(
                paging::set_present(address as u64, !guard),
                "guard page {address:#x} is not in 4 KiB-mapped core memory"
            );
        },
        raise: crate::selftest::raise,
        core_failed: main_core_failed,
    });
    publish_owner_map(info);
    services::prepare(info);
    apic::calibrate_timer();
    GO.store(true, Ordering::Release);
    run_core(&plan.slots[0])
}

/// Records which core owns which memory, for frees that cross cores.
fn publish_owner_map(info: &BootInfo) {
    let mut owners = OwnerMap::new();
    for (core, desc) in info.cores.iter().enumerate() {
        for extent in &desc.memory {
            if let Err(error) = owners.insert(core, extent.start as usize..extent.end as usize) {
                fatal(format_args!(
                    "cannot record the memory of core {core}: {error:?}"
                ));
            }
        }
    }
    percore::global::publish_owner_map(owners);
}

/// Where a woken core lands, on a bootstrap stack chosen by `ticket`.
extern "C" fn ap_entry(_ticket: u32) -> ! {
    percore::cpu::install_none();
    apic::enable();
    let apic_id = apic::id();
    let plan = PLAN
        .get()
        .expect("APs are woken after the plan is published");
    let Some(slot) = plan.slots.iter().position(|slot| slot.apic_id == apic_id) else {
        percore::console::CONSOLE.print_fatal(format_args!(
            "manada: woke a core with unplanned APIC id {apic_id}; parking it\n"
        ));
        halt_forever()
    };
    // SAFETY: the slot's stack was carved from this core's own memory for it alone.
    unsafe { smp::switch_stack(plan.slots[slot].stack_top, ap_continue, slot) }
}

extern "C" fn ap_continue(slot_index: usize) -> ! {
    let plan = PLAN.get().expect("plan published");
    let slot = &plan.slots[slot_index];
    enter_own_tables(slot);
    smp::mark_online(slot_index);
    while !GO.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    if percore::bootinfo::boot_info()
        .core_index(slot.apic_id)
        .is_none()
    {
        // Came up after the boot core gave up on it: it is not part of this run.
        halt_forever()
    }
    run_core(slot)
}

/// Loads this core's own GDT/TSS (in its local page) and the shared IDT.
fn enter_own_tables(slot: &Slot) {
    let page = slot.local_page as *mut LocalPage;
    // SAFETY: the local page was carved from this core's memory for this core alone;
    // it is written once here and stays in place for the life of the core.
    let tables: &'static mut CoreTables = unsafe {
        core::ptr::write(&raw mut (*page).tables, CoreTables::new(slot.ist_tops));
        &mut (*page).tables
    };
    // SAFETY: the tables are 'static and this core is in long mode with interrupts off.
    unsafe { tables.load() };
    interrupts::load();

    // The mailbox's memory, in this core's share, made ready before the core reports
    // online; senders take their ends only after `GO`.
    let planned = PLAN.get().map_or(0, |plan| plan.slots.len());
    let rings = slot.rings as *mut Ring;
    // SAFETY: `rings` was carved for `planned` rings from this core's own memory, and
    // the doorbell is a field of this core's local page; no other core reads either
    // before this core reports online.
    unsafe {
        core::ptr::write(&raw mut (*page).doorbell, Doorbell::new());
        for i in 0..planned {
            core::ptr::write(rings.add(i), Ring::new());
        }
    }
}

/// Makes this core a kernel instance of its own (mailbox, heap, scheduler) and runs it;
/// core 0 also starts the application's main thread.
fn run_core(slot: &Slot) -> ! {
    let info = percore::boot_info();
    let index = info
        .core_index(slot.apic_id)
        .expect("only numbered cores run");
    let locations: heapless::Vec<MailboxLocation, MAX_CORES> =
        info.cores.iter().map(|core| core.mailbox).collect();
    let mailbox = match Mailbox::open(index, &locations) {
        Ok(mailbox) => mailbox,
        Err(error) => panic!("cannot open the mailbox of core {index}: {error:?}"),
    };
    let extents: heapless::Vec<core::ops::Range<usize>, { memory::MAX_EXTENTS }> = info.cores
        [index]
        .memory
        .iter()
        .map(|extent| extent.start as usize..extent.end as usize)
        .collect();
    // SAFETY: these extents are this core's share minus what was carved for its stacks,
    // tables and rings; nothing else uses them, and the core owns them for good.
    let heap = unsafe { Heap::new(&extents) };
    let page = slot.local_page as *mut LocalPage;
    // SAFETY: same page as in `enter_own_tables`; `local` is a separate field, written
    // once here before being installed, never written again.
    let local: &'static mut CoreLocal = unsafe {
        core::ptr::write(
            &raw mut (*page).local,
            CoreLocal::new(index, slot.apic_id, Some(mailbox), Some(heap)),
        );
        &mut (*page).local
    };
    // SAFETY: this core's block, in this core's memory, for the rest of the run.
    unsafe { percore::cpu::install(local) };
    percore::global::enable_remote_frees();
    apic::enable_timer(interrupts::TIMER_VECTOR);

    crate::selftest::start_core(index, info.cores.len());
    if index == MAIN_CORE {
        let app = PLAN.get().expect("plan published").app;
        percore::spawn(move || {
            // This thread ends the run: if it faults, its core fails, and another core
            // ends the run (`main_core_failed`).
            let _critical = percore::fault::critical();
            // The services start before the application, each on its core.
            services::start_all();
            let outcome = percore::spawn(app.main).join();
            end_run(app, outcome)
        });
    }
    percore::sched::run()
}

/// The core that runs the application's main thread.
const MAIN_CORE: usize = 0;

/// Ends the run with the outcome of the application's main thread: success only when
/// it returned `Ok` and nothing failed during the run (what failed is counted first).
fn end_run(
    app: &crate::App,
    outcome: Result<Result<(), crate::AppError>, percore::JoinError>,
) -> ! {
    // What returned Ok is on the disk when the run ends (also after a failure).
    let written = services::finish();
    if let Err(error) = &written {
        println!("manada: {error}");
    }
    let failures = percore::fault::failures();
    if failures.any() {
        println!("manada: {failures}");
    }
    if written.is_err() {
        exit(Outcome::Failure)
    }
    match outcome {
        Ok(Ok(())) if !failures.any() => {
            println!("manada: app {} finished: success", app.name);
            exit(Outcome::Success)
        }
        Ok(Ok(())) => println!(
            "manada: app {} failed: its main returned success, but part of the run failed",
            app.name
        ),
        Ok(Err(error)) => println!("manada: app {} failed: {error}", app.name),
        Err(error) => println!(
            "manada: app {} failed: its main thread gave no result: {error}",
            app.name
        ),
    }
    exit(Outcome::Failure)
}

/// Told on every core that goes on that core `core` failed: when that is the main
/// thread's core, nobody is left to decide the run, so the lowest core still running
/// ends it with failure.
fn main_core_failed(core: usize) {
    if core != MAIN_CORE {
        return;
    }
    let lowest_running = (0..percore::core_count()).find(|&other| !percore::core_failed(other));
    if lowest_running != Some(percore::current_core()) {
        return;
    }
    let app = PLAN.get().expect("plan published").app;
    println!(
        "manada: core {MAIN_CORE}, which ran the main thread of app {}, failed; the run ends",
        app.name
    );
    // In a thread: ending the run syncs the volume, which waits for the fs core.
    let ending = percore::try_spawn_on(percore::current_core(), move || {
        let _critical = percore::fault::critical();
        end_run(app, Err(percore::JoinError::CoreFailed(MAIN_CORE)))
    });
    if let Err(error) = ending {
        println!("manada: the run ends without syncing the volume: {error}");
        exit(Outcome::Failure)
    }
}

/// Reports a start-up failure and ends the run.
pub fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    percore::console::CONSOLE.print_fatal(format_args!("manada: {args}\n"));
    exit(Outcome::Failure)
}
