//! The start-up sequence: boot core, then every core's own instance, then the app.
//!
//! Boot core: PVH start_info -> console -> TSC -> ACPI MADT -> memory split and paging
//! -> start-up plan -> own stack -> wake the others -> publish `BootInfo` -> go.
//! Every core: own GDT/TSS/IDT -> online -> wait for go -> mailbox, heap, `CoreLocal`
//! -> its scheduler; core 0 also runs the application's main thread.

use crate::acpi::{self, Topology};
use crate::cpu::{halt_forever, rdtsc};
use crate::exit::{exit, Outcome};
use crate::gdt::{CoreTables, IST_STACKS};
use crate::{apic, console, entry, interrupts, paging, pvh, smp, tsc};
use core::sync::atomic::{AtomicBool, Ordering};
use devices::blk;
use devices::netdev::{self, NetSetup, VirtioNet};
use devices::virtio::dma::DmaRegion;
use ipc::Doorbell;
use percore::bootinfo::{self, BootInfo, CoreDesc};
use percore::heap::{Heap, OwnerMap};
use percore::mailbox::{self, Hooks, MailboxLocation, Ring};
use percore::memory::{self, CoreMemory, PhysRange};
use percore::{println, CoreLocal, Mailbox, MAX_CORES};

const KERNEL_STACK_SIZE: u64 = 64 * 1024;
const IST_STACK_SIZE: u64 = 16 * 1024;
const AP_START_TIMEOUT_US: u64 = 3_000_000;
const DEFAULT_APP: &str = "hello";
const MIB: u64 = 1 << 20;
const FOUR_GIB: u64 = 4 << 30;
const PAGE_2M: u64 = 2 << 20;

/// One core's start-up resources, decided by the boot core before any other core runs.
#[derive(Debug)]
struct Slot {
    apic_id: u32,
    stack_top: u64,
    ist_tops: [u64; IST_STACKS],
    /// A page of the core's own memory for its GDT, TSS, doorbell and `CoreLocal`.
    local_page: u64,
    /// The core's inbound mailbox rings, one per planned core.
    rings: u64,
    memory: CoreMemory,
}

/// The start-up plan, decided by the boot core. Read-only once published.
#[derive(Debug)]
struct Plan {
    /// Slot 0 is the boot core.
    slots: heapless::Vec<Slot, MAX_CORES>,
    cmdline: heapless::String<{ bootinfo::CMDLINE_MAX }>,
    app: &'static apps::App,
    service_reserve: Option<PhysRange>,
}

static PLAN: spin::Once<Plan> = spin::Once::new();
/// Set by the boot core once `BootInfo` is published: every core may run the app.
static GO: AtomicBool = AtomicBool::new(false);

extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// The layout of a core's local page.
#[repr(C)]
struct LocalPage {
    tables: CoreTables,
    doorbell: Doorbell,
    local: CoreLocal,
}

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
    let app_name = command_line.get("app").unwrap_or(DEFAULT_APP);
    let ram_total: u64 = params.ram.iter().map(PhysRange::len).sum();
    println!(
        "manada: PVH boot, command line '{}', {} MiB RAM in {} ranges",
        params.cmdline,
        ram_total / MIB,
        params.ram.len()
    );
    let Some(app) = apps::find(app_name) else {
        let mut names = heapless::String::<256>::new();
        for (i, name) in apps::names().enumerate() {
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

    let topology = match acpi::read_topology(params.rsdp) {
        Ok(topology) => topology,
        Err(error) => fatal(format_args!("cannot read ACPI: {error}")),
    };
    let x2apic = apic::choose_mode(topology.local_apic_address);
    apic::enable();
    let boot_apic_id = apic::id();
    report_topology(&topology, x2apic);

    let apic_ids = choose_cores(&topology, boot_apic_id, x2apic);
    let (slots, service_reserve) = build_plan(&params.ram, &topology, &apic_ids);
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
                mailbox: mailbox_location(slot, online_count),
            });
        } else {
            println!(
                "manada: core with APIC id {} did not come up within {} ms; going on without it",
                slot.apic_id,
                AP_START_TIMEOUT_US / 1000
            );
        }
    }
    let info = bootinfo::publish(BootInfo {
        cores,
        cmdline: plan.cmdline.clone(),
        tsc_hz: tsc::hz(),
        boot_tsc: entry::boot_tsc(),
        online_tsc,
        x2apic: apic::is_x2apic(),
        service_reserve: plan.service_reserve,
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
    });
    publish_owner_map(info);
    let mut reserve = ReserveCursor::new(info);
    prepare_blk_service(info, &mut reserve);
    prepare_net_service(info, &mut reserve);
    apic::calibrate_timer();
    GO.store(true, Ordering::Release);
    run_core(&plan.slots[0])
}

/// The disks found at boot with their DMA memory, for the blk service to take.
static BLK_SETUP: spin::Mutex<Option<(usize, heapless::Vec<blk::DiskSetup, { blk::MAX_DISKS }>)>> =
    spin::Mutex::new(None);

/// Gives every virtio-blk disk its DMA memory from the service reserve and chooses the
/// service core (`place.blk=K`, else the last core).
/// Returns the core of `service`: `place.SERVICE=K` from the command line, else
/// `default`. A core outside the run ends it with a clear error.
fn service_core(info: &BootInfo, service: &str, default: usize) -> usize {
    let cores = info.cores.len();
    let key: heapless::String<16> = {
        let mut key = heapless::String::new();
        let _ = core::fmt::write(&mut key, format_args!("place.{service}"));
        key
    };
    match info.command_line().get(&key).map(str::parse::<usize>) {
        None => default,
        Some(Ok(core)) if core < cores => core,
        Some(_) => fatal(format_args!("{key} must name a core below {cores}")),
    }
}

/// Hands out DMA memory from the service reserve, in order; never the same byte twice.
struct ReserveCursor {
    next: u64,
    end: u64,
}

impl ReserveCursor {
    fn new(info: &BootInfo) -> Self {
        let reserve = info.service_reserve.unwrap_or_default();
        ReserveCursor {
            next: reserve.start,
            end: reserve.end,
        }
    }

    /// Returns `size` zeroed bytes of the reserve as a DMA region, or `None` when it ran out.
    fn take(&mut self, size: usize) -> Option<DmaRegion> {
        if self.next + size as u64 > self.end {
            return None;
        }
        let start = self.next;
        self.next += size as u64;
        // SAFETY: this range of the service reserve is handed out once, to one device,
        // and used by nothing else; the reserve is identity-mapped RAM.
        unsafe {
            core::ptr::write_bytes(start as *mut u8, 0, size);
            DmaRegion::from_raw(start as *mut u8, size).ok()
        }
    }
}

/// The network device found at boot with its DMA memory, and the net core.
static NET_SETUP: spin::Mutex<Option<(usize, NetSetup)>> = spin::Mutex::new(None);

/// Gives the first virtio-net device its DMA memory and chooses the net core
/// (`place.net=K`, else core 1 below four cores and core N-3 from four on).
fn prepare_net_service(info: &BootInfo, reserve: &mut ReserveCursor) {
    let Some((transport, location)) = crate::pci::take_net_transports().into_iter().next() else {
        return;
    };
    let cores = info.cores.len();
    let core = service_core(info, "net", if cores >= 4 { cores - 3 } else { cores - 1 });
    let Some(dma) = reserve.take(netdev::dma_size()) else {
        println!("manada: net: no reserved memory left for virtio-net {location}");
        return;
    };
    println!("manada: net service on core {core}");
    *NET_SETUP.lock() = Some((
        core,
        NetSetup {
            transport,
            dma,
            location,
        },
    ));
}

/// Starts the net service on this core: the device, the TCP/IP stack and the socket
/// table. Returns false when the device could not be used (the run goes on without
/// networking; socket calls then fail with `NoService`).
fn start_net_service(setup: NetSetup) -> bool {
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

fn prepare_blk_service(info: &BootInfo, reserve: &mut ReserveCursor) {
    let transports = crate::pci::take_blk_transports();
    if transports.is_empty() {
        return;
    }
    let cores = info.cores.len();
    let core = service_core(info, "blk", cores - 1);
    let mut setups = heapless::Vec::new();
    for (transport, location) in transports {
        let Some(dma) = reserve.take(blk::dma_size()) else {
            println!("manada: blk: no reserved memory left for virtio-blk {location}");
            break;
        };
        let _ = setups.push(blk::DiskSetup {
            transport,
            dma,
            location,
        });
    }
    println!("manada: blk service on core {core}");
    *BLK_SETUP.lock() = Some((core, setups));
}

/// Mounts the disk named by `fs.disk=NAME` and serves it from the fs core (`place.fs=K`,
/// else the core below the blk service's when there are three cores or more).
fn start_fs_service() {
    let info = percore::boot_info();
    let Some(name) = info.command_line().get("fs.disk") else {
        return;
    };
    let Some(disk) = blk::Disk::open(name) else {
        println!("manada: fs: no disk '{name}' to mount");
        return;
    };
    let cores = info.cores.len();
    let blk_core = blk::service_core().unwrap_or(0);
    let core = service_core(
        info,
        "fs",
        if cores >= 3 {
            blk_core.saturating_sub(1)
        } else {
            blk_core
        },
    );
    println!("manada: fs service on core {core}, volume on {name}");
    let mounted = percore::spawn_on(core, move || {
        fs::service::start(alloc::boxed::Box::new(disk))
    })
    .join();
    match mounted {
        Ok(volume) => println!("manada: fs: mounted FAT16 on {name}: {volume:?}"),
        Err(error) => println!("manada: fs: cannot mount {name}: {error}"),
    }
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

/// Returns where `slot`'s mailbox lives, for a run of `cores` online cores.
fn mailbox_location(slot: &Slot, cores: usize) -> MailboxLocation {
    let page = slot.local_page as *const LocalPage;
    // SAFETY: the core of this slot initialised its rings (at least `cores` of them:
    // one per planned core) and its doorbell before it reported online, and never
    // moves or frees them; they are only used through their atomics from now on.
    let (inbound, doorbell) = unsafe {
        (
            core::slice::from_raw_parts(slot.rings as *const Ring, cores),
            &(*page).doorbell,
        )
    };
    MailboxLocation {
        inbound,
        doorbell,
        apic_id: slot.apic_id,
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

    crate::selftest::maybe_fault(index, info.cores.len());
    if index == 0 {
        let app = PLAN.get().expect("plan published").app;
        percore::spawn(move || {
            // Services start before the application, each on its own core.
            if let Some((core, setups)) = BLK_SETUP.lock().take() {
                percore::spawn_on(core, move || {
                    blk::start(setups);
                })
                .join();
            }
            start_fs_service();
            if let Some((core, setup)) = NET_SETUP.lock().take() {
                if percore::spawn_on(core, move || start_net_service(setup)).join() {
                    // The service loop never ends; nobody joins it.
                    let _ = percore::spawn_on(core, || net::service::run());
                }
            }
            let outcome = (app.main)();
            match outcome {
                Ok(()) => {
                    println!("manada: app {} finished: success", app.name);
                    exit(Outcome::Success)
                }
                Err(error) => {
                    println!("manada: app {} failed: {error}", app.name);
                    exit(Outcome::Failure)
                }
            }
        });
    }
    percore::sched::run()
}

fn report_topology(topology: &Topology, x2apic: bool) {
    println!(
        "manada: ACPI (RSDP from {}): {} processors enabled, {} disabled, {} IOAPICs; {} at {:#x}",
        topology.rsdp_source,
        topology.processors.len() + topology.processors_dropped,
        topology.processors_disabled,
        topology.io_apics.len(),
        if x2apic { "x2APIC" } else { "xAPIC" },
        topology.local_apic_address,
    );
}

/// Returns the APIC ids that get a start-up slot, boot core first.
fn choose_cores(
    topology: &Topology,
    boot_apic_id: u32,
    x2apic: bool,
) -> heapless::Vec<u32, MAX_CORES> {
    let mut ids: heapless::Vec<u32, MAX_CORES> = heapless::Vec::new();
    let _ = ids.push(boot_apic_id);
    let mut left_out = topology.processors_dropped;
    for processor in topology
        .processors
        .iter()
        .filter(|p| p.apic_id != boot_apic_id)
    {
        if !x2apic && processor.apic_id > 0xFE {
            println!(
                "manada: APIC id {} needs x2APIC, which this CPU lacks; leaving it out",
                processor.apic_id
            );
            left_out += 1;
        } else if ids.push(processor.apic_id).is_err() {
            left_out += 1;
        }
    }
    if left_out > 0 {
        println!(
            "manada: {left_out} processors left out (this kernel runs at most {MAX_CORES} cores)"
        );
    }
    ids
}

/// Splits RAM among the cores, maps what lies above 4 GiB, and carves each core's
/// stacks and local page from its own share.
fn build_plan(
    ram: &[PhysRange],
    topology: &Topology,
    apic_ids: &[u32],
) -> (heapless::Vec<Slot, MAX_CORES>, Option<PhysRange>) {
    let mut usable: heapless::Vec<PhysRange, 64> = ram.iter().copied().collect();
    let kernel = PhysRange::new(
        &raw const __kernel_start as u64,
        &raw const __kernel_end as u64,
    );
    for hole in [PhysRange::new(0, MIB), kernel] {
        if !memory::subtract(&mut usable, hole) {
            fatal(format_args!("memory map too fragmented"));
        }
    }

    // Page tables for RAM above 4 GiB come from the first usable RAM below 4 GiB,
    // which the entry code already mapped.
    let gib_above_4g: u64 = ram
        .iter()
        .filter(|r| r.end > FOUR_GIB)
        .map(|r| (r.end - r.start.max(FOUR_GIB)) >> 30)
        .sum();
    // One table per 2 MiB of usable RAM too: the cores' memory is split into 4 KiB pages.
    let small_tables: u64 = usable.iter().map(|r| r.len() / PAGE_2M + 2).sum();
    let table_bytes = (gib_above_4g + small_tables + 8) * memory::PAGE_SIZE;
    let Some(table_area) = usable
        .iter_mut()
        .find(|r| r.end <= FOUR_GIB && r.len() >= table_bytes + memory::PAGE_SIZE)
    else {
        fatal(format_args!("no room below 4 GiB for page tables"))
    };
    let mut next_frame = (table_area.start + memory::PAGE_SIZE - 1) & !(memory::PAGE_SIZE - 1);
    let frames_end = next_frame + table_bytes;
    table_area.start = frames_end;
    let mut frames = move || {
        (next_frame < frames_end).then(|| {
            next_frame += memory::PAGE_SIZE;
            next_frame - memory::PAGE_SIZE
        })
    };
    if let Err(error) = paging::init(ram, &mut frames) {
        fatal(format_args!("cannot map RAM: {error:?}"));
    }
    for &mmio in core::iter::once(&topology.local_apic_address).chain(topology.io_apics.iter()) {
        if let Err(error) = paging::map_mmio(mmio, 4096, &mut frames) {
            fatal(format_args!(
                "cannot map the interrupt controllers: {error:?}"
            ));
        }
    }

    crate::pci::discover(topology, &mut frames);
    for range in usable.iter().copied() {
        if let Err(error) = paging::split(range, &mut frames) {
            fatal(format_args!(
                "cannot map the cores' memory in 4 KiB pages: {error:?}"
            ));
        }
    }

    let total: u64 = usable.iter().map(PhysRange::len).sum();
    let reserve = memory::take_reserve(&mut usable, memory::service_reserve_size(total), FOUR_GIB);
    let Some(shares) = memory::partition::<MAX_CORES>(&usable, apic_ids.len()) else {
        fatal(format_args!(
            "cannot split memory among {} cores",
            apic_ids.len()
        ))
    };
    let mut plan = heapless::Vec::new();
    for (&apic_id, mut memory) in apic_ids.iter().zip(shares) {
        let mut carve = |size: u64| match memory.carve(size) {
            Some(range) => range,
            None => fatal(format_args!(
                "core with APIC id {apic_id} has too little memory for its stacks"
            )),
        };
        let stack_top = carve(KERNEL_STACK_SIZE).end;
        let ist_tops: [u64; IST_STACKS] = core::array::from_fn(|_| carve(IST_STACK_SIZE).end);
        let local_page = carve(core::mem::size_of::<LocalPage>() as u64).start;
        let rings = carve((apic_ids.len() * core::mem::size_of::<Ring>()) as u64).start;
        let _ = plan.push(Slot {
            apic_id,
            stack_top,
            ist_tops,
            local_page,
            rings,
            memory,
        });
    }
    (plan, reserve)
}

/// Reports a start-up failure and ends the run.
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    percore::console::CONSOLE.print_fatal(format_args!("manada: {args}\n"));
    exit(Outcome::Failure)
}
