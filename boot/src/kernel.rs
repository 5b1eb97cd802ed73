//! The start-up sequence: boot core, then every core's own instance, then the app.
//!
//! Boot core: PVH start_info -> console -> TSC -> ACPI MADT -> memory split and paging
//! (`plan`) -> own stack -> wake the others -> placement of the services -> publish
//! `BootInfo` -> go. Every core: own GDT/TSS/IDT -> online -> wait for go -> mailbox,
//! heap, `CoreLocal` -> its scheduler; core 0 also starts the services (`services`) and
//! runs the application's main thread, whose outcome (with what failed during the run)
//! ends the run.

use crate::cpu::{halt_forever, rdtsc};
use crate::exit::{exit, fatal, Outcome};
use crate::gdt::CoreTables;
use crate::plan::{self, LocalPage, Plan, Slot, PLAN};
use crate::{acpi, apic, entry, interrupts, paging, pvh, serial, services, smp, tsc, vectors};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use ipc::Doorbell;
use percore::bootinfo::{self, BootInfo, CoreDesc};
use percore::heap::{Heap, OwnerMap};
use percore::mailbox::{MailboxLocation, Ring};
use percore::memory;
use percore::platform::{self, Hooks};
use percore::timeline::{Phase, Timeline};
use percore::{println, CoreLocal, KernelCapability, Mailbox, MAX_CORES};

const AP_START_TIMEOUT_US: u64 = 3_000_000;

/// The kernel's capability, which the kernel-only entry points of the crates below ask
/// for (installing the hooks, publishing the boot information, starting the services).
/// Made here, once, and passed down only to them; this crate gives applications none.
// SAFETY: this is the kernel's start-up, the one place that may make the capability;
// it stays private to this module, which hands it only to kernel-only entry points.
static KERNEL: KernelCapability = unsafe { KernelCapability::new() };

/// Set by the boot core once `BootInfo` is published: every core may run the app.
static GO: AtomicBool = AtomicBool::new(false);

/// The TSC value at which the boot core had written the start-up report out.
static REPORTED_TSC: AtomicU64 = AtomicU64::new(0);

/// The TSC value at which each core (by index) finished its own set-up; 0 before. Each
/// core writes only its own entry, once; core 0 reads them for the boot timeline.
static READY_TSC: [AtomicU64; MAX_CORES] = [const { AtomicU64::new(0) }; MAX_CORES];

#[unsafe(no_mangle)]
extern "C" fn boot_core_main(start_info: u32) -> ! {
    percore::cpu::install_none();
    serial::hold(&KERNEL);
    // SAFETY: `start_info` is the ebx value of the PVH entry, passed through unchanged,
    // and nothing has written low memory yet.
    let params = match unsafe { pvh::read(u64::from(start_info)) } {
        Ok(params) => params,
        Err(error) => fatal(format_args!("cannot read PVH start_info: {error}")),
    };

    // SAFETY: masking both 8259 PICs (all IRQ lines) only stops legacy interrupts.
    unsafe {
        x86::io::outb(0x21, 0xFF);
        x86::io::outb(0xA1, 0xFF);
    }
    let mut timeline = Timeline::new(entry::boot_tsc());
    let found = acpi::locate(params.rsdp).and_then(|tables| {
        let topology = tables.topology()?;
        Ok((tables, topology))
    });
    let (tables, topology) = match found {
        Ok(found) => found,
        Err(error) => fatal(format_args!("cannot read ACPI: {error}")),
    };
    timeline.end(Phase::Acpi, rdtsc());

    let (mut usable, mut frames) = plan::usable_memory(&params.ram);
    plan::map_memory(&params.ram, &topology, &mut frames);
    let x2apic = apic::choose_mode(topology.local_apic_address);
    apic::enable();
    // From CPUID, as the others take theirs: no APIC register read, and the code the
    // others run is translated by the time they run it.
    let boot_apic_id = apic::id_from_cpuid();
    // A processor that needs the old 10 ms between INIT and STARTUP gets its INIT now,
    // so that the wait overlaps the plan. Any other gets it right before its STARTUP:
    // under QEMU a vCPU woken by INIT sleeps again until its STARTUP wakes it, and that
    // second wake-up cost more than the INIT saved (8 cores: 0.1 ms later online).
    let facts = tsc::cpuid_facts();
    let init_delay = facts.needs_init_delay();
    let others_listed = topology.processors.len() + topology.processors_dropped > 1;
    let early_init = (others_listed && init_delay).then(smp::send_init_to_others);
    timeline.end(Phase::Paging, rdtsc());

    // Only what the others need to come online is decided before they start: which
    // cores, their blocks of the start-up area, the IDT. The memory shares, the app and
    // the report wait until they are online.
    let apic_ids = plan::choose_cores(&topology, boot_apic_id, x2apic);
    let area = plan::take_area(&mut usable, apic_ids.len());
    interrupts::init();
    let every_processor_planned = topology.processors_disabled == 0
        && topology.processors_dropped == 0
        && apic_ids.len() == topology.processors.len();
    let plan = PLAN.call_once(|| Plan::new(apic_ids, area));
    let others: &'static [u32] = &plan.apic_ids[1..];
    if !others.is_empty() {
        // SAFETY: boot core only, no AP started yet; the page is below 1 MiB, never
        // handed out.
        unsafe { smp::install_trampoline(entry::page_table_root(), ap_entry) };
    }
    let left_asleep = if crate::selftest::simulate_dead_core(&params.cmdline) {
        others.last().copied()
    } else {
        None
    };
    // The shorthand that wakes all at once reaches every processor there is: only when
    // each one the firmware lists is in the plan and none is to stay asleep.
    let wake = if every_processor_planned && left_asleep.is_none() {
        smp::Wake::All
    } else {
        smp::Wake::Each
    };
    if let Some(init_sent) = early_init {
        tsc::begin(&tables.clocks(), facts);
        tsc::provisional();
        tsc::spin_until(init_sent.saturating_add(tsc::hz() / 100));
    }
    timeline.end(Phase::Plan, rdtsc());
    // The others start in parallel from here, while this core moves onto its own stack
    // and tables, then halts (under QEMU's TCG anything else it did would compete with
    // them for the emulator's lock) until they are online, and measures the TSC.
    if early_init.is_none() && !others.is_empty() {
        smp::send_init_to_others();
    }
    let started = rdtsc();
    smp::start_application_processors(boot_apic_id, others, wake, left_asleep);
    let mut starting = Starting {
        params,
        usable,
        topology,
        facts,
        tables,
        frames,
        timeline,
        others,
        wake,
        left_asleep,
        second_startup: facts
            .needs_second_startup()
            .then_some((started, if init_delay { 200 } else { 10 })),
    };
    // SAFETY: slot 0's stack is in the boot core's block of the start-up area and is used
    // by nothing else. `starting` stays where it is, in this frame on the boot stack:
    // this function never returns and nothing else uses the boot stack, so the pointer
    // stays valid, and `boot_core_continue` is the only one to use it.
    unsafe {
        smp::switch_stack(
            plan.slot(0).stack_top,
            boot_core_continue,
            &raw mut starting as usize,
        )
    }
}

/// What the boot core carries over its stack switch for the steps after it.
struct Starting {
    params: pvh::BootParams,
    /// Usable memory not in the start-up area: for the shares and the service reserve.
    usable: heapless::Vec<percore::PhysRange, 64>,
    topology: acpi::Topology,
    facts: percore::calibration::CpuidFacts,
    tables: acpi::Tables,
    frames: plan::TableFrames,
    timeline: Timeline,
    /// The APIC ids of the cores started, how, and the one left asleep (self test).
    others: &'static [u32],
    wake: smp::Wake,
    left_asleep: Option<u32>,
    /// When the first STARTUP went out and how many microseconds after it a second one
    /// is due, where the processor wants one.
    second_startup: Option<(u64, u64)>,
}

/// The application that runs, found once the cores are online.
static APP: spin::Once<&'static crate::App> = spin::Once::new();

/// Goes on from `boot_core_main` on the boot core's own stack; `starting` is the address
/// of what `boot_core_main` left for it on the boot stack.
extern "C" fn boot_core_continue(starting: usize) -> ! {
    let plan = PLAN.get().expect("plan published before the switch");
    // SAFETY: `boot_core_main` passes the address of its `Starting`, which stays in its
    // frame on the boot stack for good (see there), used by this function alone.
    let starting = unsafe { &mut *(starting as *mut Starting) };
    let &mut Starting {
        ref params,
        ref mut usable,
        ref topology,
        facts,
        ref tables,
        ref mut frames,
        mut timeline,
        others,
        wake,
        left_asleep,
        second_startup,
    } = starting;
    enter_own_tables(&plan.slot(0));
    smp::mark_online(0);
    // The TSC is measured from here until the cores are online, once they are, or after
    // a moment (at one core, at once). Not earlier: under QEMU every read of a clock or
    // an APIC register takes the emulator's lock, which the cores just started want too.
    smp::rest_while_starting(others.len());
    tsc::begin(&tables.clocks(), facts);
    tsc::provisional();
    if let Some((first, micros)) = second_startup {
        smp::repeat_startup(others, wake, left_asleep, first, micros);
    }
    let (_, online) = smp::wait_until_online(others.len(), AP_START_TIMEOUT_US, tsc::poll);
    timeline.end(Phase::Aps, online);

    // Before the TSC's window closes (it needs 0.5 ms of its clock, 1 ms of the PIT), the
    // work that prints nothing: the app, the memory shares, the real-time clock and the
    // device tables. Then what the start-up found goes to the (held) console, then the
    // devices (the placement of the services depends on them). The UART is set up (it
    // holds no output yet) before any other core may print a fatal report: its
    // self-test loops output back and would swallow one.
    let app = APP.call_once(|| find_app(&params.cmdline));
    let shares = plan.set_shares(plan::share_out(
        &params.ram,
        core::mem::take(usable),
        plan.cores(),
    ));
    let now = devices::rtc::publish_wall_clock(&KERNEL);
    let device_tables = acpi::device_tables(tables);
    tsc::finish();
    timeline.end(Phase::Tsc, rdtsc());

    let machine = crate::report::Machine::new(&params.ram, topology, tables, apic::is_x2apic());
    crate::report::machine(&machine, &params.cmdline, now);
    serial::init(&KERNEL);
    crate::mmio::read_command_line(&params.cmdline);
    crate::pci::discover(&device_tables, &mut || frames.take());
    crate::mmio::discover(&device_tables, &mut || frames.take());
    timeline.end(Phase::Pci, rdtsc());

    let online_count = (0..plan.cores())
        .filter(|&slot| smp::is_online(slot))
        .count();
    let mut cores = heapless::Vec::new();
    for slot_index in (0..plan.cores()).filter(|&slot| smp::is_online(slot)) {
        let slot = plan.slot(slot_index);
        let memory = plan
            .memory(slot_index)
            .1
            .extents()
            .iter()
            .copied()
            .collect();
        let _ = cores.push(CoreDesc {
            apic_id: slot.apic_id,
            memory,
            mailbox: plan::mailbox_location(&slot, online_count),
        });
    }
    tsc::settle_apic_timer();
    let command_line = percore::cmdline::CommandLine::new(&params.cmdline);
    crate::selftest::check(&params.cmdline, cores.len());
    let placement = services::decide(cores.len(), &command_line);
    let info = bootinfo::publish(
        &KERNEL,
        BootInfo {
            cores,
            cmdline: params.cmdline.clone(),
            tsc_hz: tsc::hz(),
            timeline,
            x2apic: apic::is_x2apic(),
            service_reserve: shares.service_reserve,
            services: placement,
        },
    );
    platform::install_hooks(
        &KERNEL,
        Hooks {
            wake: |apic_id| apic::send_interrupt(apic_id, vectors::WAKEUP_VECTOR),
            halt: interrupts::halt_until_interrupt,
            arm_timer: apic::arm_timer,
            protect: protect_guard_page,
            raise: crate::selftest::raise,
            core_failed: main_core_failed,
        },
    );
    publish_owner_map(&KERNEL, info);
    GO.store(true, Ordering::Release);
    // The others halt until this wake-up (a core that is not in the run, woken too,
    // halts again for good), then set their own instances up while this core reports.
    if info.cores.len() > 1 {
        apic::send_interrupt_to_others(vectors::WAKEUP_VECTOR);
    }
    crate::report::print(&KERNEL, plan, info, app, AP_START_TIMEOUT_US / 1000);
    services::prepare(info);
    REPORTED_TSC.store(rdtsc(), Ordering::Release);
    run_core(0)
}

/// Returns the application `command_line` names with `app=` (without one, the image's
/// first), or ends the run naming the ones there are.
fn find_app(command_line: &str) -> &'static crate::App {
    let applications = crate::app::registered();
    let app_name = percore::cmdline::CommandLine::new(command_line)
        .get("app")
        .or(applications.first().map(|app| app.name))
        .unwrap_or("(none)");
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
    app
}

/// Each core's page-table frames (by core index), for splitting its 2 MiB pages.
static TABLE_POOLS: [paging::TablePool; MAX_CORES] =
    [const { paging::TablePool::new() }; MAX_CORES];

/// Unmaps (`guard`) or maps again the guard page at `address`, a page of this core's
/// memory. Its 2 MiB page is split first if it is still whole, with a frame from this
/// core's table pool. Returns false when the pool is empty (it never should be).
fn protect_guard_page(address: usize, guard: bool) -> bool {
    let address = address as u64;
    if guard && paging::is_split(address) == Some(false) {
        let pool = &TABLE_POOLS[percore::current_core()];
        let Some(frame) = pool.take() else {
            return false;
        };
        if let Err(frame) = paging::split_at(address, frame) {
            // Another core split this 2 MiB page (it holds memory of both) first.
            pool.give_back(frame);
        }
    }
    paging::set_present(address, !guard)
}

/// Records which core owns which memory, for frees that cross cores.
fn publish_owner_map(kernel: &KernelCapability, info: &BootInfo) {
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
    percore::global::publish_owner_map(kernel, owners);
}

/// Where a woken core lands, on a bootstrap stack chosen by `ticket`.
extern "C" fn ap_entry(_ticket: u32) -> ! {
    percore::cpu::install_none();
    apic::enable();
    // From CPUID rather than the APIC's register: under QEMU every register access
    // takes the emulator's lock, which all the starting cores want at once.
    let apic_id = apic::id_from_cpuid();
    let plan = PLAN
        .get()
        .expect("APs are woken after the plan is published");
    let Some(slot) = plan.apic_ids.iter().position(|&id| id == apic_id) else {
        percore::console::CONSOLE.print_fatal(format_args!(
            "manada: woke a core with unplanned APIC id {apic_id}; parking it\n"
        ));
        halt_forever()
    };
    // SAFETY: the slot's stack is in this core's block of the start-up area, for it alone.
    unsafe { smp::switch_stack(plan.slot(slot).stack_top, ap_continue, slot) }
}

extern "C" fn ap_continue(slot_index: usize) -> ! {
    let plan = PLAN.get().expect("plan published");
    let slot = plan.slot(slot_index);
    enter_own_tables(&slot);
    smp::mark_online(slot_index);
    // Halted, not spinning: under TCG a spinning vCPU takes a host CPU from those
    // still starting. The boot core's wake-up follows `GO`, so none is missed.
    while !GO.load(Ordering::Acquire) {
        interrupts::halt_until_interrupt();
    }
    if percore::bootinfo::boot_info()
        .core_index(slot.apic_id)
        .is_none()
    {
        // Came up after the boot core gave up on it: it is not part of this run.
        halt_forever()
    }
    run_core(slot_index)
}

/// Loads this core's own GDT/TSS (in its local page) and the shared IDT.
///
/// Never inlined: the boot core runs it first, and under TCG the APs then find its code
/// translated already (an inlined copy in `ap_continue` was translated again).
#[inline(never)]
fn enter_own_tables(slot: &Slot) {
    let page = slot.local_page as *mut LocalPage;
    // SAFETY: the local page is in this core's block of the start-up area, for this
    // core alone; it is written once here and stays in place for the life of the core.
    let tables: &'static mut CoreTables = unsafe {
        core::ptr::write(&raw mut (*page).tables, CoreTables::new(slot.ist_tops));
        &mut (*page).tables
    };
    // SAFETY: the tables are 'static and this core is in long mode with interrupts off.
    unsafe { tables.load() };
    interrupts::load();

    // The mailbox's memory, in this core's share, made ready before the core reports
    // online; senders take their ends only after `GO`.
    let planned = PLAN.get().map_or(0, Plan::cores);
    let rings = slot.rings as *mut Ring;
    // SAFETY: `rings` has room for `planned` rings in this core's block of the start-up
    // area, and the doorbell is a field of this core's local page; no other core reads
    // either before this core reports online.
    unsafe {
        core::ptr::write(&raw mut (*page).doorbell, Doorbell::new());
        for i in 0..planned {
            core::ptr::write(rings.add(i), Ring::new());
        }
    }
}

/// Makes this core a kernel instance of its own (mailbox, heap, scheduler) and runs it;
/// core 0 also starts the application's main thread.
fn run_core(slot_index: usize) -> ! {
    let plan = PLAN.get().expect("plan published");
    let slot = plan.slot(slot_index);
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
    // SAFETY: these extents are this core's share minus its page-table frames; nothing
    // else uses them, and the core owns them for good.
    let heap = unsafe { Heap::new(&extents) };
    TABLE_POOLS[index].fill(plan.memory(slot_index).0);
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
    percore::global::enable_remote_frees(&KERNEL);
    apic::enable_timer(vectors::TIMER_VECTOR);
    READY_TSC[index].store(rdtsc(), Ordering::Release);

    crate::selftest::start_core(index, info.cores.len());
    if index == MAIN_CORE {
        let app = *APP.get().expect("found before GO");
        percore::spawn(move || {
            // This thread ends the run: if it faults, its core fails, and another core
            // ends the run (`main_core_failed`).
            let _critical = percore::fault::critical();
            // The services start before the application, each on its core.
            services::start_all(&KERNEL);
            report_timeline();
            crate::selftest::before_app();
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
    let app = *APP.get().expect("found before GO");
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

/// Prints the boot timeline, once every core finished its own set-up.
fn report_timeline() {
    let info = percore::boot_info();
    let mut timeline = info.timeline;
    let ready = loop {
        let ready = READY_TSC[..info.cores.len()]
            .iter()
            .map(|tsc| tsc.load(Ordering::Acquire))
            .collect::<heapless::Vec<u64, MAX_CORES>>();
        if ready.iter().all(|&tsc| tsc != 0) {
            break ready.iter().copied().max().unwrap_or(0);
        }
        percore::yield_now();
    };
    timeline.end(Phase::Report, REPORTED_TSC.load(Ordering::Acquire));
    timeline.end(Phase::Cores, ready);
    timeline.end(Phase::Services, rdtsc());
    println!("manada: {}", timeline.display(info.tsc_hz));
}
