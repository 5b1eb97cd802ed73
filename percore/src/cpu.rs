//! The current core's identity block, found through the GS base register.
//!
//! Each core points its GS base at its own [`CoreLocal`], whose first word is its own
//! address. A core installs its block once it knows its index (after the boot core
//! numbered the online cores); before that its GS base is zero and [`current`] returns
//! `None`. On the host (tests) a thread-local plays the register.

use crate::heap::{Heap, RemoteState};
use crate::mailbox::Mailbox;
use crate::threads::Scheduler;
use core::any::{Any, TypeId};
use core::cell::{Cell, RefCell};

/// The most device services one core runs at once (blk, fs and net all fit on one core).
pub const MAX_SERVICES: usize = 4;

/// One service's state on its core, found by the state's type.
#[derive(Debug)]
struct ServiceSlot {
    kind: Cell<Option<TypeId>>,
    /// Its own cell: a service borrows its state while another's on the same core is
    /// borrowed too (an fs operation waits on the blk service of its core).
    state: RefCell<Option<alloc::boxed::Box<dyn Any>>>,
}

impl ServiceSlot {
    const fn new() -> Self {
        Self {
            kind: Cell::new(None),
            state: RefCell::new(None),
        }
    }
}

/// The per-core block. `#[repr(C)]` because `self_addr` must be at offset 0.
#[repr(C)]
#[derive(Debug)]
pub struct CoreLocal {
    self_addr: usize,
    index: usize,
    apic_id: u32,
    /// Only this core touches it, and nothing preempts kernel code on a core, so a
    /// `RefCell` suffices: a nested borrow is a bug and panics instead of corrupting.
    mailbox: RefCell<Option<Mailbox>>,
    pub(crate) scheduler: RefCell<Scheduler>,
    pub(crate) heap: RefCell<Option<Heap>>,
    pub(crate) remote: RefCell<Option<RemoteState>>,
    /// The states of the device services this core runs (only this core uses them).
    services: [ServiceSlot; MAX_SERVICES],
    /// The guard page below the running thread's stack (0 in the core's loop), read by
    /// the page-fault handler to name a stack overflow.
    guard_page: Cell<usize>,
    /// Faults the core is handling now, one inside the other (a second one fails the
    /// core; a third, while it fails, halts it at once).
    pub(crate) faults_handled: Cell<u8>,
    /// The fault the injector armed on this core, until it is raised.
    pub(crate) injection: Cell<Option<crate::injection::Armed>>,
}

impl CoreLocal {
    /// Returns a block for core `index` with local APIC id `apic_id`, its mailbox and
    /// its heap.
    pub const fn new(
        index: usize,
        apic_id: u32,
        mailbox: Option<Mailbox>,
        heap: Option<Heap>,
    ) -> Self {
        Self {
            self_addr: 0,
            index,
            apic_id,
            mailbox: RefCell::new(mailbox),
            scheduler: RefCell::new(Scheduler::new()),
            heap: RefCell::new(heap),
            remote: RefCell::new(None),
            guard_page: Cell::new(0),
            services: [const { ServiceSlot::new() }; MAX_SERVICES],
            faults_handled: Cell::new(0),
            injection: Cell::new(None),
        }
    }

    /// Returns the kernel state of this core that is in use (borrowed) right now, if any:
    /// a fault then struck it half-changed, and only failing the core is safe. (The
    /// scheduler is checked by the scheduler itself.)
    pub fn busy_state(&self) -> Option<&'static str> {
        if self.heap.try_borrow_mut().is_err() {
            Some("heap")
        } else if self.remote.try_borrow_mut().is_err() {
            Some("remote-free outbox")
        } else if self.mailbox.try_borrow_mut().is_err() {
            Some("mailbox")
        } else if self
            .services
            .iter()
            .any(|slot| slot.state.try_borrow_mut().is_err())
        {
            Some("service state")
        } else {
            None
        }
    }

    /// Returns the guard page of the running thread's stack (0 when no thread runs).
    pub fn guard_page(&self) -> usize {
        self.guard_page.get()
    }

    /// Returns `f` applied to this core's mailbox, or `None` if the core has none.
    pub(crate) fn with_mailbox<R>(&self, f: impl FnOnce(&mut Mailbox) -> R) -> Option<R> {
        self.mailbox.borrow_mut().as_mut().map(f)
    }

    /// Returns the core's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Returns the core's local APIC id.
    pub fn apic_id(&self) -> u32 {
        self.apic_id
    }
}

/// Runs `f` with the running core's mailbox (the kernel's access; applications go
/// through `sched::with_mailbox`, which handles the kernel messages their polls meet).
///
/// # Panics
/// Panics on a core without a mailbox (before it was numbered) or when called from
/// inside `f` itself.
pub(crate) fn with_mailbox<R>(f: impl FnOnce(&mut Mailbox) -> R) -> R {
    current()
        .and_then(|local| local.with_mailbox(f))
        .expect("this core has no mailbox yet")
}

/// Makes `state` the state of `service` on the running core (a device service's driver
/// data), and records that `service` runs here (see `placement::service_core`). A core
/// runs up to [`MAX_SERVICES`] services, each found by its state's type. Kernel only: the
/// services' start-up, which the kernel calls on the service's core.
///
/// # Panics
/// Panics on a core without a `CoreLocal`, if the core already runs a service with this
/// state type, or if it runs [`MAX_SERVICES`] already (both are wiring bugs).
pub fn install_service<T: 'static>(
    _kernel: &crate::KernelCapability,
    service: crate::placement::Service,
    state: T,
) {
    let local = current().expect("a service runs on a numbered core");
    let kind = TypeId::of::<T>();
    assert!(
        local
            .services
            .iter()
            .all(|slot| slot.kind.get() != Some(kind)),
        "core {} already runs this service",
        local.index
    );
    let slot = local
        .services
        .iter()
        .find(|slot| slot.kind.get().is_none())
        .unwrap_or_else(|| panic!("core {} runs {MAX_SERVICES} services already", local.index));
    *slot.state.borrow_mut() = Some(alloc::boxed::Box::new(state));
    slot.kind.set(Some(kind));
    crate::placement::record_running(service, local.index);
}

/// Runs `f` with the running core's service state of type `T`; `None` if this core runs
/// no such service.
///
/// # Panics
/// Panics when called from inside `f` for the same service on the same core.
pub fn with_service<T: 'static, R>(f: impl FnOnce(&mut T) -> R) -> Option<R> {
    let local = current()?;
    let kind = TypeId::of::<T>();
    let slot = local
        .services
        .iter()
        .find(|slot| slot.kind.get() == Some(kind))?;
    let mut state = slot.state.borrow_mut();
    state.as_mut()?.downcast_mut::<T>().map(f)
}

/// Records the guard page of the thread about to run (0: none).
pub(crate) fn set_guard_page(page: usize) {
    if let Some(local) = current() {
        local.guard_page.set(page);
    }
}

/// Returns the index of the core running the caller.
///
/// # Panics
/// Panics when called on a core that has not been given its index yet (only early
/// start-up code runs there).
pub fn current_core() -> usize {
    current()
        .map(CoreLocal::index)
        .expect("current_core() called before the core was numbered")
}

#[cfg(target_os = "none")]
mod imp {
    use super::CoreLocal;

    const IA32_GS_BASE: u32 = 0xC000_0101;

    /// What `gs:[0]` reads on a core that has no block yet: zero.
    static NO_BLOCK: usize = 0;

    fn set_gs_base(addr: u64) {
        // SAFETY: kernel code runs in ring 0; writing GS base changes no memory and only
        // this core's GS-relative loads, which all go through this module.
        unsafe {
            core::arch::asm!(
                "wrmsr",
                in("ecx") IA32_GS_BASE,
                in("eax") addr as u32,
                in("edx") (addr >> 32) as u32,
                options(nostack, preserves_flags),
            );
        }
    }

    /// Points this core's GS base at a zero word, so [`current`] says `None` until the
    /// core installs its block. The first thing every core does in long mode.
    pub fn install_none() {
        set_gs_base(&raw const NO_BLOCK as u64);
    }

    /// Makes `local` the running core's block.
    ///
    /// # Safety
    /// Must run on the core that `local` describes, in ring 0, and `local` must stay at
    /// this address for as long as the core runs (it is `'static`, so it does).
    pub unsafe fn install(local: &'static mut CoreLocal) {
        local.self_addr = local as *mut CoreLocal as usize;
        set_gs_base(local.self_addr as u64);
    }

    /// Returns the running core's block, or `None` before the core installed one.
    pub fn current() -> Option<&'static CoreLocal> {
        let addr: usize;
        // SAFETY: GS base points at a zero word (`install_none`) or at a block whose
        // first word is its own address (`install`); one load, no side effect.
        unsafe {
            core::arch::asm!(
                "mov {}, gs:[0]",
                out(reg) addr,
                options(nostack, readonly, preserves_flags),
            );
        }
        if addr == 0 {
            return None;
        }
        // SAFETY: a non-zero word at gs:[0] was written by `install`, which only takes
        // `'static` blocks.
        Some(unsafe { &*(addr as *const CoreLocal) })
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use super::CoreLocal;
    use core::cell::Cell;

    std::thread_local! {
        static CURRENT: Cell<Option<&'static CoreLocal>> = const { Cell::new(None) };
    }

    /// Host stand-in: a new thread has no block.
    pub fn install_none() {
        CURRENT.with(|c| c.set(None));
    }

    /// Makes `local` the calling thread's block (host stand-in for the GS base).
    ///
    /// # Safety
    /// Always safe on the host; `unsafe` to match the kernel's signature.
    pub unsafe fn install(local: &'static mut CoreLocal) {
        local.self_addr = local as *mut CoreLocal as usize;
        let local: &'static CoreLocal = local;
        CURRENT.with(|c| c.set(Some(local)));
    }

    /// Returns the calling thread's block, or `None` before one was installed.
    pub fn current() -> Option<&'static CoreLocal> {
        CURRENT.with(Cell::get)
    }
}

pub use imp::{current, install, install_none};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::Service;

    #[test]
    fn a_core_runs_several_services_each_found_by_type() {
        std::thread::spawn(|| {
            let local = Box::leak(Box::new(CoreLocal::new(0, 0, None, None)));
            // SAFETY: host stand-in, always safe.
            unsafe { install(local) };
            struct Blk(u32);
            struct Fs(&'static str);
            assert_eq!(with_service(|blk: &mut Blk| blk.0), None);
            // SAFETY: the test plays the kernel's start-up.
            let kernel = unsafe { crate::KernelCapability::new() };
            install_service(&kernel, Service::Blk, Blk(7));
            install_service(&kernel, Service::Fs, Fs("volume"));
            // One service's state is usable while another's is borrowed.
            let both = with_service(|blk: &mut Blk| {
                blk.0 += 1;
                with_service(|fs: &mut Fs| fs.0).map(|name| (blk.0, name))
            });
            assert_eq!(both, Some(Some((8, "volume"))));
            assert_eq!(with_service(|_: &mut u64| ()), None);
            let again = std::panic::catch_unwind(|| install_service(&kernel, Service::Blk, Blk(1)));
            assert!(
                again.is_err(),
                "a second blk service on one core is refused"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn threads_see_their_own_block() {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    assert!(current().is_none());
                    let local = Box::leak(Box::new(CoreLocal::new(i, 10 + i as u32, None, None)));
                    // SAFETY: host stand-in, always safe.
                    unsafe { install(local) };
                    std::thread::yield_now();
                    assert_eq!(current_core(), i);
                    assert_eq!(current().unwrap().apic_id(), 10 + i as u32);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
