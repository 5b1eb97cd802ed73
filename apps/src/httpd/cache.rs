//! httpd's cache of small files on the net core: what a request target named the
//! last time a worker looked it up (a file with its bytes and the start of its 200
//! head, or a folder's redirect), so the next request for it needs no other core.
//!
//! An entry is right as long as the fs volume's generation is the one read before the
//! file was (`fs::generation`): any change through the fs service makes every entry
//! stale at once. Memory is a budget: entries live in a slab reserved when the server
//! attaches, their bytes count against a limit, and the least recently used entries
//! that no response is sending from are evicted to make room; an entry that does not
//! fit is simply not kept. Nothing here allocates.

use alloc::string::String;
use alloc::vec::Vec;

use super::validators::Validators;

/// What a request target names.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    /// A file.
    File {
        /// Its bytes.
        body: Vec<u8>,
        /// The start of its 200 response head: status line and every header but
        /// `Date` and the connection's (see `server`).
        head: Vec<u8>,
        /// Its Content-Type.
        content_type: &'static str,
        /// Its entity tag and modification time.
        validators: Validators,
    },
    /// A folder named without its final `/`: the target to redirect to.
    Redirect {
        /// The Location.
        location: String,
    },
}

/// A cache entry: the target it answers, and the answer.
#[derive(Debug, PartialEq, Eq)]
pub struct CachedFile {
    /// The request target's path as sent (see [`key`]).
    pub key: String,
    /// The fs volume's generation read before the file was.
    pub generation: u64,
    /// The answer.
    pub cached: Cached,
}

impl CachedFile {
    /// Returns the bytes the entry takes, for the budget.
    pub fn bytes(&self) -> usize {
        let inner = match &self.cached {
            Cached::File { body, head, .. } => body.capacity() + head.capacity(),
            Cached::Redirect { location } => location.capacity(),
        };
        ENTRY_OVERHEAD + self.key.capacity() + inner
    }
}

/// Bytes an entry costs besides its strings and bytes.
const ENTRY_OVERHEAD: usize = 128;

/// Returns the part of a request target the cache knows it by: its path as sent,
/// without query or fragment; `None` for targets the cache never answers
/// (absolute form).
pub fn key(target: &str) -> Option<&str> {
    if !target.starts_with('/') {
        return None;
    }
    let end = target.find(['?', '#']).unwrap_or(target.len());
    Some(&target[..end])
}

/// Names one entry while it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef {
    index: u32,
    generation: u32,
}

struct Slot {
    /// Counts the entries this slot held, so an old reference finds nothing.
    generation: u32,
    entry: Option<CachedFile>,
    /// A hash of the entry's key, compared before the key.
    hash: u64,
    /// Responses sending from the entry: it is not dropped while they do.
    users: u32,
    /// Replaced or outdated: no lookup finds it; it goes when its last user does.
    stale: bool,
    /// When it was last used (the cache's clock), for eviction.
    used_at: u64,
}

/// The cache: entries by key, within a byte budget.
pub struct Cache {
    slots: Vec<Slot>,
    /// Bytes the entries take.
    bytes: usize,
    /// Bytes they may take.
    budget: usize,
    /// The largest entry kept.
    max_entry: usize,
    /// Counts lookups, for least-recently-used eviction.
    clock: u64,
}

impl core::fmt::Debug for Cache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.len())
            .field("bytes", &self.bytes)
            .field("budget", &self.budget)
            .finish()
    }
}

/// Returns the hash of a key (FNV-1a).
fn hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Cache {
    /// Returns an empty cache that holds nothing until [`Cache::reserve`] gives it
    /// room.
    pub const fn new() -> Cache {
        Cache {
            slots: Vec::new(),
            bytes: 0,
            budget: 0,
            max_entry: 0,
            clock: 0,
        }
    }

    /// Reserves room for `entries` entries taking `budget` bytes, none over
    /// `max_entry`; `false` when there is no memory for the slots (the cache then
    /// keeps nothing).
    pub fn reserve(&mut self, entries: usize, budget: usize, max_entry: usize) -> bool {
        if self.slots.try_reserve_exact(entries).is_err() {
            return false;
        }
        self.budget = budget;
        self.max_entry = max_entry;
        true
    }

    /// Returns how many entries are kept (stale ones still sending included).
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.entry.is_some())
            .count()
    }

    /// Returns the bytes the entries take.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Returns the entry for `key` if it is current for the volume's generation
    /// `generation`; an outdated one is dropped (or marked stale while in use).
    pub fn lookup(&mut self, key: &str, generation: u64) -> Option<EntryRef> {
        let wanted = hash(key.as_bytes());
        self.clock += 1;
        let clock = self.clock;
        let index = self.slots.iter().position(|slot| {
            !slot.stale
                && slot.hash == wanted
                && slot.entry.as_ref().is_some_and(|entry| entry.key == key)
        })?;
        let slot = &mut self.slots[index];
        if slot.entry.as_ref().map(|entry| entry.generation) != Some(generation) {
            slot.stale = true;
            self.drop_if_unused(index);
            return None;
        }
        slot.used_at = clock;
        Some(EntryRef {
            index: index as u32,
            generation: slot.generation,
        })
    }

    /// Returns the entry `entry` names, if it still exists.
    pub fn get(&self, entry: EntryRef) -> Option<&CachedFile> {
        self.slots
            .get(entry.index as usize)
            .filter(|slot| slot.generation == entry.generation)
            .and_then(|slot| slot.entry.as_ref())
    }

    /// Marks `entry` as in use by a response still sending from it.
    pub fn acquire(&mut self, entry: EntryRef) {
        if let Some(slot) = self.slot_mut(entry) {
            slot.users += 1;
        }
    }

    /// Ends a use begun with [`Cache::acquire`].
    pub fn release(&mut self, entry: EntryRef) {
        if let Some(slot) = self.slot_mut(entry) {
            slot.users = slot.users.saturating_sub(1);
            self.drop_if_unused(entry.index as usize);
        }
    }

    fn slot_mut(&mut self, entry: EntryRef) -> Option<&mut Slot> {
        self.slots
            .get_mut(entry.index as usize)
            .filter(|slot| slot.generation == entry.generation && slot.entry.is_some())
    }

    /// Drops the entry at `index` if it is stale and nothing sends from it.
    fn drop_if_unused(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.stale && slot.users == 0 {
            if let Some(entry) = slot.entry.take() {
                self.bytes -= entry.bytes();
            }
            slot.stale = false;
        }
    }

    /// Keeps `file` (replacing an entry for the same key), evicting the least recently
    /// used entries nobody sends from as needed; gives it back when it cannot be kept
    /// (too big, or everything else in use).
    // The file comes back whole to be answered from the session; boxing it would
    // allocate on the net core.
    #[allow(clippy::result_large_err)]
    pub fn insert(&mut self, file: CachedFile) -> Result<EntryRef, CachedFile> {
        let size = file.bytes();
        if size > self.max_entry || size > self.budget {
            return Err(file);
        }
        let wanted = hash(file.key.as_bytes());
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            if !slot.stale
                && slot.hash == wanted
                && slot
                    .entry
                    .as_ref()
                    .is_some_and(|entry| entry.key == file.key)
            {
                slot.stale = true;
                self.drop_if_unused(index);
            }
        }
        while self.bytes + size > self.budget {
            if !self.evict_one() {
                return Err(file);
            }
        }
        let index = match self.slots.iter().position(|slot| slot.entry.is_none()) {
            Some(index) => index,
            None if self.slots.len() < self.slots.capacity() => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                    hash: 0,
                    users: 0,
                    stale: false,
                    used_at: 0,
                });
                self.slots.len() - 1
            }
            None => {
                if !self.evict_one() {
                    return Err(file);
                }
                match self.slots.iter().position(|slot| slot.entry.is_none()) {
                    Some(index) => index,
                    None => return Err(file),
                }
            }
        };
        self.clock += 1;
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        slot.entry = Some(file);
        slot.hash = wanted;
        slot.users = 0;
        slot.stale = false;
        slot.used_at = self.clock;
        self.bytes += size;
        Ok(EntryRef {
            index: index as u32,
            generation: slot.generation,
        })
    }

    /// Evicts the least recently used entry nobody sends from; `false` when there is
    /// none.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.entry.is_some() && slot.users == 0)
            .min_by_key(|(_, slot)| slot.used_at)
            .map(|(index, _)| index);
        let Some(index) = victim else {
            return false;
        };
        self.slots[index].stale = true;
        self.drop_if_unused(index);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::httpd::validators::EntityTag;

    fn file(key: &str, size: usize, generation: u64) -> CachedFile {
        let body = alloc::vec![b'x'; size];
        CachedFile {
            key: key.into(),
            generation,
            cached: Cached::File {
                validators: Validators {
                    etag: EntityTag::of_content(&body),
                    last_modified: None,
                },
                body,
                head: Vec::new(),
                content_type: "text/plain",
            },
        }
    }

    #[test]
    fn keys_are_paths_as_sent() {
        assert_eq!(key("/a/b.html?x=1"), Some("/a/b.html"));
        assert_eq!(key("/a%20b#frag"), Some("/a%20b"));
        assert_eq!(key("/"), Some("/"));
        assert_eq!(key("http://host/a"), None);
    }

    #[test]
    fn lookups_follow_the_generation() {
        let mut cache = Cache::new();
        assert!(cache.reserve(8, 100_000, 10_000));
        let entry = cache.insert(file("/a", 100, 3)).unwrap();
        assert_eq!(cache.lookup("/a", 3), Some(entry));
        assert_eq!(cache.lookup("/b", 3), None);
        // The volume changed: the entry goes.
        assert_eq!(cache.lookup("/a", 4), None);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.bytes(), 0);
        assert_eq!(cache.get(entry), None);
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used_but_never_one_in_use() {
        let mut cache = Cache::new();
        let one = file("/1", 1000, 0).bytes();
        assert!(cache.reserve(8, 3 * one, 10_000));
        let first = cache.insert(file("/1", 1000, 0)).unwrap();
        cache.insert(file("/2", 1000, 0)).unwrap();
        cache.insert(file("/3", 1000, 0)).unwrap();
        cache.lookup("/1", 0);
        cache.acquire(first);
        // /2 is the least recently used that nobody sends from.
        cache.insert(file("/4", 1000, 0)).unwrap();
        assert_eq!(cache.lookup("/2", 0), None);
        assert!(cache.lookup("/1", 0).is_some());
        assert!(cache.lookup("/3", 0).is_some());
        assert!(cache.bytes() <= 3 * one);
        // Too big for an entry, or nothing left to evict: not kept.
        assert!(cache.insert(file("/big", 20_000, 0)).is_err());
        // Replacing an entry in use keeps the old one for its user, hidden.
        let newer = cache.insert(file("/1", 10, 0)).unwrap();
        assert_eq!(cache.lookup("/1", 0), Some(newer));
        assert!(cache.get(first).is_some());
        cache.release(first);
        assert_eq!(cache.get(first), None);
        assert!(cache.bytes() <= 3 * one);
    }

    #[test]
    fn the_slab_never_grows_past_its_reserve() {
        let mut cache = Cache::new();
        assert!(cache.reserve(4, 1 << 20, 10_000));
        let capacity = cache.slots.capacity();
        for index in 0..100 {
            let key = alloc::format!("/{index}");
            cache.insert(file(&key, 10, 0)).unwrap();
        }
        assert_eq!(cache.slots.capacity(), capacity);
        assert!(cache.len() <= capacity);
        assert!(cache.lookup("/99", 0).is_some());
    }
}
