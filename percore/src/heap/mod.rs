//! The per-core heap: a lock-free allocator over one core's share of RAM.
//!
//! Every core owns a heap over its own extents and is the only one to allocate from it
//! or write its metadata, so the fast paths take no lock and touch no shared cache line.
//! The kernel's global allocator serves the calling core's heap.
//!
//! # Layers
//! - `pages`: the page allocator. Each extent starts with its page map (a 20-byte
//!   entry per 4 KiB page, carved from the extent), free runs of pages are kept in
//!   segregated lists with boundary tags: taking and giving back runs is O(1) in the
//!   common case, and freed runs merge with their neighbours at once.
//! - `class`: 14 size classes from 16 to [`LARGEST_SMALL_SIZE`] bytes, 2^k and 3·2^k,
//!   each aligned to the largest power of two dividing its size.
//! - `allocator`: [`Heap`]. Small blocks come from slabs (one page for 2^k classes,
//!   three for 3·2^k) with an intrusive free list and lazy carving: O(1) to allocate and
//!   free. Larger blocks, and blocks aligned above 2 KiB, are page runs; runs aligned
//!   above a page are cut from a longer run whose ends go back.
//! - `remote` and `owner`: a block freed on a core that does not own it is found in
//!   the read-only [`OwnerMap`] and queued in that core's [`RemoteFrees`] outbox; full
//!   batches travel home by message and the owner frees them with
//!   [`Heap::receive_remote`] (snmalloc's remote frees, batched).
//! - `outbox`: [`RemoteState`], one core's remote frees on their way home: its outbox,
//!   and the full batches waiting for the kernel to send them, linked through the freed
//!   blocks (so queueing never allocates).
//! - `link` and `raw`, the only `unsafe` code: the writes into freed blocks (a slab's
//!   free-list link, the links of blocks going home), and claiming the memory
//!   ([`Heap::new`]) with the free entry points whose callers vouch for a pointer.
//!
//! # Why no block headers
//! A block's size is found from its page (page map entry: slab class or run length), so
//! a 16-byte request costs 16 bytes and a page-aligned request gets exactly its pages.
//! The same look-up checks every free against what was allocated and catches wrong
//! layouts and most double frees with a panic rather than a corrupt heap.

mod allocator;
mod class;
#[allow(unsafe_code)]
mod link;
mod outbox;
mod owner;
mod pages;
#[allow(unsafe_code)]
mod raw;
mod remote;

#[cfg(test)]
#[allow(unsafe_code)]
mod tests;

pub use allocator::{AllocError, Heap, HeapStats};
pub use class::LARGEST_SMALL_SIZE;
pub use outbox::{RemoteState, BLOCKS_PER_MESSAGE};
pub use owner::{OwnerMap, OwnerMapError, OWNER_MAP_CAPACITY};
pub use pages::PAGE;
pub use remote::{RemoteFreeBatch, RemoteFrees, REMOTE_BATCH_CAPACITY};
