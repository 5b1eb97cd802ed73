//! The kernel's global allocator: every core allocates from its own heap, without a
//! lock; a block freed on another core goes home by message.
//!
//! `dealloc` of another core's block queues it in this core's outbox (one batch per
//! owner, see `heap::RemoteFrees`). Full batches wait in `pending` until the core's
//! loop sends them (`send_remote_frees`), three blocks to a message, without ever
//! blocking: a full ring just leaves them pending. An idle core also flushes partial
//! batches, so freed memory never sits in an outbox for good. The owner frees what
//! arrives with `Heap::receive_remote_blocks`, on its own core.
//!
//! `pending` is an intrusive list per owner, kept in the freed blocks themselves (every
//! block has at least 16 bytes: a link and its size), as in snmalloc: queueing a free
//! never allocates, so it cannot recurse into the allocator, and it has no limit. The
//! block is dead memory that this core held until it hands it back.

use alloc::boxed::Box;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{null_mut, NonNull};

use crate::cpu::{self, CoreLocal};
use crate::fence;
use crate::heap::{HeapStats, OwnerMap, RemoteFrees, RemoteState};
use crate::mailbox::KernelMessage;
use crate::MAX_CORES;

static OWNERS: spin::Once<OwnerMap> = spin::Once::new();

/// Publishes which core owns which memory. Boot core, before other cores allocate.
pub fn publish_owner_map(_kernel: &crate::KernelCapability, owners: OwnerMap) {
    OWNERS.call_once(|| owners);
}

fn local() -> &'static CoreLocal {
    cpu::current().expect("memory is used on a core before it has a heap")
}

/// Gives this core its remote-free outbox (allocated from its now-working heap); once,
/// when the core starts its kernel instance.
pub fn enable_remote_frees(_kernel: &crate::KernelCapability) {
    let local = local();
    // Built in place on the heap: the outbox is tens of KiB.
    let mut outbox: Box<core::mem::MaybeUninit<RemoteFrees<MAX_CORES>>> = Box::new_uninit();
    outbox.write(RemoteFrees::new());
    // SAFETY: just initialised.
    let outbox = unsafe { outbox.assume_init() };
    *local.remote.borrow_mut() = Some(RemoteState::new(outbox));
}

/// The global allocator over the per-core heaps.
#[derive(Debug)]
pub struct CoreHeaps;

// SAFETY: `alloc` returns blocks of the running core's heap (or null), which hands out
// non-overlapping blocks of the asked layout; `dealloc` returns each block to the heap
// it came from, on its owner's core.
unsafe impl GlobalAlloc for CoreHeaps {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        try_alloc(layout).map_or(null_mut(), |addr| addr as *mut u8)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block from `alloc` with its layout.
        unsafe { dealloc(ptr as usize, layout) }
    }
}

/// Allocates from this core's heap; `None` when it is out of memory.
pub fn try_alloc(layout: Layout) -> Option<usize> {
    let local = cpu::current()?;
    let mut heap = local.heap.borrow_mut();
    heap.as_mut()?
        .alloc(layout)
        .ok()
        .map(|block| block.as_ptr() as usize)
}

/// Frees a block from any core's heap.
///
/// # Safety
/// `addr` must come from [`try_alloc`] (on any core) with `layout`, freed once.
pub unsafe fn dealloc(addr: usize, layout: Layout) {
    let local = local();
    let Some(ptr) = NonNull::new(addr as *mut u8) else {
        return;
    };
    let full = {
        let mut heap = local.heap.borrow_mut();
        let heap = heap.as_mut().expect("free on a core without a heap");
        let mut remote = local.remote.borrow_mut();
        match remote.as_mut() {
            Some(remote) => {
                let owners = OWNERS
                    .get()
                    .expect("owner map published before cores allocate");
                // SAFETY: forwarded caller's contract.
                unsafe { heap.dealloc_or_forward(ptr, layout, owners, remote.outbox()) }
            }
            // Before the outbox exists only local blocks can be freed.
            None => {
                // SAFETY: forwarded caller's contract.
                unsafe { heap.dealloc(ptr, layout) };
                None
            }
        }
    };
    if let Some(batch) = full {
        if let Some(remote) = local.remote.borrow_mut().as_mut() {
            remote.queue(&batch);
        }
    }
}

/// Moves partial outbox batches to `pending` (the core is idle).
pub(crate) fn flush_outbox() {
    if let Some(remote) = local().remote.borrow_mut().as_mut() {
        remote.flush_outbox();
    }
}

/// Returns true when blocks wait to be sent home.
pub(crate) fn remote_frees_pending() -> bool {
    local()
        .remote
        .borrow()
        .as_ref()
        .is_some_and(|remote| remote.owners_pending() != 0)
}

/// Sends pending blocks home, three to a message, while rings have room. Never waits.
/// Blocks of a core that failed are dropped (leaked). Returns true when it sent anything.
pub(crate) fn send_remote_frees() -> bool {
    let local = local();
    let owners = local
        .remote
        .borrow()
        .as_ref()
        .map_or(0, RemoteState::owners_pending);
    let mut sent_any = false;
    for owner in (0..MAX_CORES).filter(|&owner| owners & (1 << owner) != 0) {
        if fence::is_fenced(owner) {
            if let Some(remote) = local.remote.borrow_mut().as_mut() {
                remote.discard(owner);
            }
            continue;
        }
        let mut sent = false;
        loop {
            let chunk = match local.remote.borrow_mut().as_mut() {
                Some(remote) => remote.take_chunk(owner),
                None => break,
            };
            if chunk.is_empty() {
                break;
            }
            let message = KernelMessage::RemoteFree(chunk.clone());
            if cpu::with_mailbox(|mailbox| mailbox.try_send_kernel(owner, message)).is_err() {
                // Full ring: keep the blocks, in order, and try on a later turn.
                if let Some(remote) = local.remote.borrow_mut().as_mut() {
                    remote.put_back(owner, &chunk);
                }
                break;
            }
            sent = true;
        }
        if sent {
            cpu::with_mailbox(|mailbox| mailbox.notify(owner));
            sent_any = true;
        }
    }
    sent_any
}

/// Frees `blocks`, which came home to their owner (this core) in a kernel message.
pub(crate) fn receive_remote_frees(blocks: &[(usize, usize)]) {
    let local = local();
    let mut heap = local.heap.borrow_mut();
    let heap = heap
        .as_mut()
        .expect("remote frees reach a core with a heap");
    // SAFETY: only `send_remote_frees` sends freed blocks home (applications cannot send
    // kernel kinds), blocks of batches filled for this core, each once.
    unsafe { heap.receive_remote_blocks(blocks) };
}

/// Returns this core's heap counters.
pub fn heap_stats() -> HeapStats {
    local()
        .heap
        .borrow()
        .as_ref()
        .map(|heap| heap.stats())
        .unwrap_or_default()
}

/// Returns the number of this core's freed blocks not yet home (queued or pending).
pub fn remote_frees_in_flight() -> usize {
    local()
        .remote
        .borrow()
        .as_ref()
        .map_or(0, RemoteState::in_flight)
}
