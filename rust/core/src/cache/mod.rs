//! The L1 cache store behind `MemoryTier`: a bounded map with W-TinyLFU (or
//! LRU) eviction, per-entry TTL and tags.
//!
//! The store is generic over keys and values and knows nothing of Python:
//! the caller hashes a key (any `u64`; the store mixes it) and passes an
//! equality closure, so the binding can compare Python keys with their own
//! `__eq__` (the closure may fail; its error is returned as is). Time is a
//! `u64` count of nanoseconds from the caller's monotonic clock: the store
//! has no clock of its own. Whatever leaves the store (evicted, expired,
//! replaced or deleted entries) is handed back to the caller in an `out`
//! vector, so the binding can drop Python objects after releasing its lock.
//!
//! Layout: a `hashbrown::HashTable` of [`Slot`]s (key, value, slab index and
//! a coarse expiry: everything a hit reads, in one bucket), one slab of
//! policy entries (reused through a free list) threaded by `u32`-index
//! doubly linked lists (the W-TinyLFU window, probation and protected
//! segments; LRU uses the window list alone), and a count-min sketch. An
//! entry costs 32 bytes of slab plus 25 bytes per index bucket (about
//! 29-57 bytes per entry at hashbrown's load factors) and 8 bytes of
//! sketch, before the key and value themselves.
//!
//! A hit touches its bucket only: the policy's bookkeeping (frequency,
//! list moves) is recorded in a small read buffer of slab indices and
//! replayed, in order, when the buffer fills and before anything that
//! changes the store's membership or reads its order (Caffeine's read
//! buffer, without its losses). Replaying in order before every eviction
//! decision makes the policy exactly what it would be with the
//! bookkeeping done on each hit.
//!
//! Not thread-safe by itself: the binding wraps it in a mutex.

use std::collections::HashMap;

use hashbrown::HashTable;

use crate::error::{Error, Result};
use slab::Slab;

mod sketch;
mod slab;
#[cfg(test)]
mod tests;

pub use sketch::Sketch;

/// "No slab index" in the lists.
const NIL: u32 = u32::MAX;
/// `expires` of an entry that never expires.
pub const NEVER: u64 = u64::MAX;

/// Which list an entry is on.
const WINDOW: u8 = 0;
const PROBATION: u8 = 1;
const PROTECTED: u8 = 2;
const FREE: u8 = 3;

/// Entries the index is first sized for (at most the entry bound): a
/// cache holding few entries keeps them in a compact index (fewer cache
/// lines and pages per lookup); past this it grows straight to the bound.
const TABLE_START: usize = 1024;
/// Bounds above this size the index up front (the one-step growth left
/// about 2 more bytes per entry resident at 1 Mi entries, measured).
const TABLE_START_MAX_BOUND: usize = 1 << 16;

/// The entries an index starts with for an entry bound of `reserve`.
fn table_start(reserve: usize) -> usize {
    if reserve > TABLE_START_MAX_BOUND {
        reserve
    } else {
        reserve.min(TABLE_START)
    }
}

/// Most entries an entry bound reserves index and sketch space for.
const RESERVE_MAX: u64 = 1 << 22;

/// Slots the periodic expiry sweep inspects per write.
const SWEEP_PER_WRITE: usize = 2;

/// Hits the read buffer holds before they are replayed.
const READ_BUFFER: usize = 64;

/// A bucket's expiry hint is the expiry shifted right by this many bits
/// (units of about 1.07 s).
const HINT_SHIFT: u32 = 30;
/// The hint of an entry that never expires (hints take 31 bits: units of
/// 2^30 ns, up to 2^61 ns, about 73 years, of the caller's clock).
const HINT_NEVER: u32 = 0x7fff_ffff;
/// The top bit of a slot's `hint` word: the entry is hot (see [`Slot`]).
const HOT: u32 = 0x8000_0000;

/// A lower bound of `expires` in 32 bits: `u64::from(hint(e)) << HINT_SHIFT
/// <= e` for every `e` but [`NEVER`] (whose hint is [`HINT_NEVER`]).
#[inline]
fn hint(expires: u64) -> u32 {
    if expires == NEVER {
        HINT_NEVER
    } else {
        // Saturates below HINT_NEVER: a smaller hint is still a lower bound.
        (expires >> HINT_SHIFT).min(u64::from(HINT_NEVER - 1)) as u32
    }
}

/// Mix a caller's hash into a well-spread 64-bit hash (Python hashes of
/// small ints are the ints themselves: hashbrown needs the high bits to vary).
#[inline]
pub fn mix(h: u64) -> u64 {
    let x = (h ^ 0x2545_f491_4f6c_dd1d) as u128 * 0x9e37_79b9_7f4a_7c15u128;
    (x as u64) ^ ((x >> 64) as u64)
}

/// The index hash of a caller's hash: 32 well-mixed bits, kept in the
/// entry, widened by [`expand`] (so an entry stores 4 bytes of hash, not 8).
#[inline]
fn table_hash(h: u64) -> u64 {
    expand(mix(h) as u32)
}

/// A 64-bit index hash from its low 32 bits: hashbrown takes its bucket
/// from the low bits and its tag from the top 7, so both halves carry the
/// (already well-mixed) 32 bits. No multiply: this sits on the critical
/// path of every lookup.
#[inline]
fn expand(h32: u32) -> u64 {
    let x = u64::from(h32);
    (x << 32) | x
}

/// The sketch's hash of an entry's 32 stored bits: the sketch picks its
/// block from the low bits and its counters from the high 32, which must
/// not be the same bits.
#[inline]
fn sketch_hash(h32: u32) -> u64 {
    let x = u64::from(h32);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_ffff_0000_0000) | x
}

/// The eviction policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// W-TinyLFU: a 1% LRU window, a segmented main LRU (probation 20% /
    /// protected 80%), admission by sketch frequency.
    TinyLfu,
    /// Plain least-recently-used.
    Lru,
}

impl Policy {
    /// Parse the Python spelling ("tinylfu" or "lru").
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "tinylfu" => Ok(Policy::TinyLfu),
            "lru" => Ok(Policy::Lru),
            other => Err(Error::invalid(
                "policy",
                format!("{other:?}"),
                "must be 'tinylfu' or 'lru'",
            )),
        }
    }

    /// The Python spelling.
    pub fn name(self) -> &'static str {
        match self {
            Policy::TinyLfu => "tinylfu",
            Policy::Lru => "lru",
        }
    }
}

/// Bounds and policy of a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Most total weight (bytes); `None`: no byte bound.
    pub max_bytes: Option<u64>,
    /// Most entries; `None`: no count bound.
    pub max_entries: Option<u64>,
    /// Eviction policy.
    pub policy: Policy,
    /// Put a doorkeeper in front of the sketch (TinyLFU only).
    pub doorkeeper: bool,
}

/// The default byte bound when neither bound is given (1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

impl Config {
    /// Check the bounds (at least one, each >= 1; both `None` means
    /// [`DEFAULT_MAX_BYTES`]).
    pub fn new(max_bytes: Option<u64>, max_entries: Option<u64>, policy: Policy) -> Result<Self> {
        if max_bytes == Some(0) {
            return Err(Error::invalid(
                "max_bytes",
                0,
                "must be an integer >= 1, or None",
            ));
        }
        if let Some(n) = max_entries {
            if n == 0 || n > u64::from(NIL - 1) {
                return Err(Error::invalid(
                    "max_entries",
                    n,
                    format!("must be an integer from 1 to {}, or None", NIL - 1),
                ));
            }
        }
        let max_bytes = match (max_bytes, max_entries) {
            (None, None) => Some(DEFAULT_MAX_BYTES),
            (b, _) => b,
        };
        Ok(Config {
            max_bytes,
            max_entries,
            policy,
            doorkeeper: false,
        })
    }
}

/// The hill climber's step, as a fraction of the capacity (Caffeine's).
const CLIMB_STEP: f64 = 0.0625;
/// A hit-rate change this large restarts the climb at the full step.
const CLIMB_RESTART: f64 = 0.05;
/// Each sample without a restart shrinks the step by this factor.
const CLIMB_DECAY: f64 = 0.98;

/// Adapts the TinyLFU window to the workload (Caffeine's hill climber):
/// after every sample of `10 x capacity` requests it moves the window size
/// one step the way that raised the hit rate last time (recency-heavy
/// workloads grow it, frequency-heavy ones shrink it).
#[derive(Debug, Clone, Copy)]
struct Climber {
    /// The capacity in policy units (entries or bytes).
    capacity: u64,
    step: f64,
    prev_rate: f64,
    /// Counters at the start of the sample.
    hits: u64,
    misses: u64,
    sample: u64,
}

/// Counters (monotonic except `entries` and `bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
    /// Writes (new entries and replacements, rejected ones included).
    pub sets: u64,
    /// Entries removed by `delete`.
    pub deletes: u64,
    /// Entries removed by the size/count bound (including TinyLFU's
    /// rejected candidates).
    pub evictions: u64,
    /// Entries removed because their TTL passed.
    pub expirations: u64,
    /// Writes not stored because the entry alone outweighs `max_bytes`
    /// (or weighs 4 GiB or more: weights are kept in 32 bits).
    pub rejected: u64,
    /// Entries held now (expired ones not yet cleaned included).
    pub entries: u64,
    /// Total weight held now.
    pub bytes: u64,
}

/// An index bucket: what a hit needs, in one place.
struct Slot<K, V> {
    key: K,
    value: V,
    /// The entry's slab index.
    idx: u32,
    /// A lower bound of the expiry ([`hint`]) in the low 31 bits; [`HOT`]
    /// when the entry is protected, referenced and at the top frequency,
    /// so that a hit would change nothing in its slab entry (a hit of a
    /// hot entry skips the read buffer: only the sketch's access count
    /// moves). The entry's `hot` mirrors the bit.
    hint: u32,
}

/// Compares a stored key with the one looked up. `quick` answers when it
/// can without running user code (identity, two ints, two str); otherwise
/// the store compares the stored 32-bit hashes first and calls `full` only
/// when they agree, so user `__eq__` runs only on a hash match (as dict
/// lookups do). Every `FnMut(&K) -> Result<bool, E>` closure is a matcher
/// with no quick answer.
pub trait Matcher<K> {
    /// The error of a failed comparison.
    type Error;
    /// The answer when it is cheap and certain, else None.
    #[inline]
    fn quick(&mut self, _key: &K) -> Option<bool> {
        None
    }
    /// The full comparison (called after the hashes matched).
    fn full(&mut self, key: &K) -> Result<bool, Self::Error>;
}

impl<K, E, F: FnMut(&K) -> Result<bool, E>> Matcher<K> for F {
    type Error = E;
    #[inline]
    fn full(&mut self, key: &K) -> Result<bool, E> {
        self(key)
    }
}

/// The slot under `hash` whose key matches, found in `table` (`entries`
/// holds the full hashes `quick` cannot do without).
#[inline(always)]
fn find_in<'t, K, V, M: Matcher<K>>(
    table: &'t HashTable<Slot<K, V>>,
    entries: &Slab<Entry>,
    hash: u64,
    m: &mut M,
) -> Result<Option<&'t Slot<K, V>>, M::Error> {
    // `iter_hash` rather than `find`: `find` calls its closure through a
    // `dyn FnMut`, which keeps the key comparison out of line.
    let h32 = hash as u32;
    for slot in table.iter_hash(hash) {
        match m.quick(&slot.key) {
            Some(true) => return Ok(Some(slot)),
            Some(false) => continue,
            None => {}
        }
        // SAFETY: every slot's idx is a slab slot the slab holds (`alloc`
        // hands out only indices below its length, the slab never shrinks,
        // and `clear` empties both together).
        let e = unsafe { entries.get_unchecked(slot.idx as usize) };
        if e.hash == h32 && m.full(&slot.key)? {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// A slab entry: the policy's state of one key.
#[derive(Clone, Copy)]
struct Entry {
    /// The low half of the table hash ([`expand`] gives it whole).
    hash: u32,
    /// Nanoseconds on the caller's clock; [`NEVER`] for no expiry.
    expires: u64,
    weight: u32,
    prev: u32,
    next: u32,
    /// Bumped on every write and removal (tag references carry it).
    generation: u32,
    queue: u8,
    /// Hit since it was last put on a list's tail (TinyLFU window and
    /// protected entries: CLOCK's reference bit).
    referenced: bool,
    /// Its slot carries [`HOT`].
    hot: bool,
    /// Hits since admission, aged with the sketch (TinyLFU): a hit costs
    /// no sketch access; the count joins the sketch when the entry leaves.
    freq: u8,
}

#[derive(Clone, Copy)]
struct List {
    head: u32, // least recently used
    tail: u32, // most recently used
    /// Policy weight on the list.
    weight: u64,
    /// Entries on the list.
    len: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
    weight: 0,
    len: 0,
};

// TinyLFU's window and protected segments are CLOCK approximations of
// LRU (second chance): a hit marks the entry `referenced` instead of
// moving it to the tail, and a referenced entry that reaches the head when
// the segment overflows goes back to the tail, unmarked, instead of
// leaving. A hit is then a few stores to its entry, with no list surgery
// (which touched three more entries). The `lru` policy stays exact.

/// What a lookup found.
#[derive(Debug)]
pub enum Found<'a, K, V> {
    /// A live entry: its value and its expiry ([`NEVER`] for none).
    Hit(&'a V, u64),
    /// Nothing under the key.
    Miss,
    /// The entry had expired: it was removed and is handed back.
    Expired(K, V),
}

/// The W-TinyLFU / LRU store.
pub struct Store<K, V> {
    config: Config,
    entries: Slab<Entry>,
    free: u32,
    table: HashTable<Slot<K, V>>,
    /// The entries the index is sized for once it outgrows [`TABLE_START`].
    table_reserve: usize,
    /// Slab indices of hits not yet replayed ([`Store::drain_reads`]).
    reads: [u32; READ_BUFFER],
    nreads: usize,
    /// Hits of hot entries since the last replay (sketch access counts).
    unticked: u64,
    lists: [List; 3],
    /// Count bound measures regions in entries, else in bytes.
    by_count: bool,
    window_max: u64,
    protected_max: u64,
    climber: Climber,
    sketch: Option<Sketch>,
    rng: u64,
    sweep: usize,
    tags: HashMap<Box<str>, Vec<(u32, u32)>>,
    tag_refs: usize,
    tag_sweep_at: usize,
    stats: Stats,
}

impl<K, V> Store<K, V> {
    /// An empty store.
    pub fn new(config: Config) -> Self {
        let by_count = config.max_entries.is_some();
        let capacity = config
            .max_entries
            .or(config.max_bytes)
            .unwrap_or(DEFAULT_MAX_BYTES);
        let (window_max, protected_max) = match config.policy {
            Policy::TinyLfu => {
                let window = (capacity / 100).max(1);
                let main = capacity.saturating_sub(window);
                (window, main / 5 * 4 + (main % 5) * 4 / 5)
            }
            Policy::Lru => (u64::MAX, 0),
        };
        // An entry bound sizes the sketch and the slab's first chunk up
        // front, and the index in two steps for bounds up to
        // TABLE_START_MAX_BOUND (TABLE_START entries, then the bound; larger
        // bounds in one): growing them by doubling would copy, and leave the
        // outgrown copies to the allocator; the slab's untouched pages cost
        // no memory. Up to 4 Mi entries; beyond that they grow with the
        // entries held.
        let reserve = config
            .max_entries
            .map_or(0, |n| n.min(RESERVE_MAX) as usize);
        let sketch = (config.policy == Policy::TinyLfu).then(|| {
            let n = reserve.max(1024);
            Sketch::new(n, config.doorkeeper)
        });
        Store {
            config,
            // Inserting runs one entry over the bound before evicting.
            entries: Slab::with_first_chunk(reserve + 1),
            free: NIL,
            table: HashTable::with_capacity(table_start(reserve)),
            table_reserve: reserve,
            reads: [NIL; READ_BUFFER],
            nreads: 0,
            unticked: 0,
            lists: [EMPTY; 3],
            by_count,
            window_max,
            protected_max,
            climber: Climber {
                capacity,
                step: -(capacity as f64) * CLIMB_STEP,
                prev_rate: 0.0,
                hits: 0,
                misses: 0,
                sample: capacity.saturating_mul(10).clamp(1024, 1 << 40),
            },
            sketch,
            rng: 0x853c_49e6_748f_ea9b,
            sweep: 0,
            tags: HashMap::new(),
            tag_refs: 0,
            tag_sweep_at: 1024,
            stats: Stats::default(),
        }
    }

    /// The bounds and policy.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Entries held (expired ones not yet cleaned included).
    pub fn len(&self) -> usize {
        self.stats.entries as usize
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.stats.entries == 0
    }

    /// Heap bytes the store itself holds (slab, index, sketch, tag
    /// references), not counting what keys and values point to.
    pub fn heap_bytes(&self) -> usize {
        self.entries.heap_bytes()
            + self.table.allocation_size()
            + self.sketch.as_ref().map_or(0, Sketch::heap_bytes)
            + self
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.capacity() * 8 + 48)
                .sum::<usize>()
    }

    #[inline]
    fn pw(&self, weight: u64) -> u64 {
        if self.by_count {
            1
        } else {
            weight
        }
    }

    #[inline]
    fn over_capacity(&self) -> bool {
        self.config
            .max_entries
            .is_some_and(|m| self.stats.entries > m)
            || self.config.max_bytes.is_some_and(|m| self.stats.bytes > m)
    }

    /// The slab index of the entry under `hash` that `m` matches.
    #[inline]
    fn find<M: Matcher<K>>(&self, hash: u64, m: &mut M) -> Result<Option<u32>, M::Error> {
        Ok(find_in(&self.table, &self.entries, hash, m)?.map(|s| s.idx))
    }

    /// The slot of live entry `i` (under `hash`, its table hash).
    #[inline]
    fn slot_mut(&mut self, hash: u64, i: u32) -> Option<&mut Slot<K, V>> {
        self.table.find_mut(hash, |s| s.idx == i)
    }

    /// Set or clear entry `i`'s [`HOT`] mark (on its slot and its entry).
    #[cold]
    #[inline(never)]
    fn set_hot(&mut self, i: u32, hot: bool) {
        let hash = expand(self.entries[i as usize].hash);
        if let Some(slot) = self.table.find_mut(hash, |s| s.idx == i) {
            slot.hint = if hot {
                slot.hint | HOT
            } else {
                slot.hint & !HOT
            };
            self.entries[i as usize].hot = hot;
        }
    }

    /// Replay the buffered hits (in order) into the policy.
    #[inline]
    fn drain_reads(&mut self) {
        if self.nreads > 0 || self.unticked > 0 {
            self.drain_reads_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn drain_reads_slow(&mut self) {
        // Hits of hot entries: access counts for the sketch, nothing else.
        let unticked = std::mem::replace(&mut self.unticked, 0);
        if unticked > 0 && self.sketch.as_mut().is_some_and(|s| s.tick_n(unticked)) {
            self.halve_freqs();
        }
        let n = std::mem::replace(&mut self.nreads, 0);
        for j in 0..n {
            let i = self.reads[j];
            self.touch(i);
        }
    }

    // --- lists ---------------------------------------------------------------

    #[inline]
    fn unlink(&mut self, i: u32) {
        let (prev, next, q, w) = {
            let e = &self.entries[i as usize];
            (e.prev, e.next, e.queue, u64::from(e.weight))
        };
        let pw = self.pw(w);
        let list = &mut self.lists[q as usize];
        list.weight -= pw;
        list.len -= 1;
        if prev == NIL {
            list.head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
    }

    #[inline]
    fn push_tail(&mut self, i: u32, q: u8) {
        let pw = self.pw(u64::from(self.entries[i as usize].weight));
        let list = &mut self.lists[q as usize];
        list.weight += pw;
        list.len += 1;
        let tail = list.tail;
        list.tail = i;
        if tail == NIL {
            list.head = i;
        } else {
            self.entries[tail as usize].next = i;
        }
        let e = &mut self.entries[i as usize];
        e.prev = tail;
        e.next = NIL;
        e.queue = q;
        e.referenced = false;
        if e.hot {
            self.set_hot(i, false);
        }
    }

    #[inline]
    fn move_to_tail(&mut self, i: u32, q: u8) {
        let e = &self.entries[i as usize];
        if e.queue == q && e.next == NIL {
            return; // already the most recent
        }
        self.unlink(i);
        self.push_tail(i, q);
    }

    /// Record an access of entry `i` (a hit or an overwrite). Inlined
    /// always: it is a few loads and stores on a hit, and a call would
    /// cost about as much again.
    #[inline(always)]
    fn touch(&mut self, i: u32) {
        let Some(sketch) = self.sketch.as_mut() else {
            self.move_to_tail(i, WINDOW);
            return;
        };
        if sketch.tick() {
            self.halve_freqs();
        }
        let e = &mut self.entries[i as usize];
        e.freq = e.freq.saturating_add(1).min(15);
        match e.queue {
            PROTECTED => {
                // Marked, not moved (see `referenced`).
                e.referenced = true;
                if e.freq == 15 && !e.hot {
                    self.set_hot(i, true);
                }
            }
            PROBATION => self.promote(i),
            _ => self.move_to_tail(i, WINDOW),
        }
    }

    /// A probation entry was hit: it moves to protected (TinyLFU).
    #[inline(never)]
    fn promote(&mut self, i: u32) {
        self.move_to_tail(i, PROTECTED);
        self.demote_protected();
    }

    /// The head of list `q`, after giving its referenced entries their
    /// second chance (each goes back to the tail, unmarked; every entry is
    /// looked at at most once, so this ends).
    fn clock_head(&mut self, q: u8) -> u32 {
        let mut n = self.lists[q as usize].len;
        loop {
            let head = self.lists[q as usize].head;
            if head == NIL || n == 0 || !self.entries[head as usize].referenced {
                return head;
            }
            n -= 1;
            // push_tail clears the mark.
            self.unlink(head);
            self.push_tail(head, q);
        }
    }

    fn demote_protected(&mut self) {
        while self.lists[PROTECTED as usize].weight > self.protected_max {
            let head = self.clock_head(PROTECTED);
            if head == NIL {
                break;
            }
            self.unlink(head);
            self.push_tail(head, PROBATION);
        }
    }

    // --- slab ----------------------------------------------------------------

    fn alloc(&mut self, hash: u64, weight: u64, expires: u64) -> u32 {
        if self.free != NIL {
            let i = self.free;
            let e = &mut self.entries[i as usize];
            self.free = e.next;
            e.hash = hash as u32;
            e.expires = expires;
            e.weight = weight as u32;
            e.generation = e.generation.wrapping_add(1);
            e.freq = 0;
            i
        } else {
            let i = self.entries.len() as u32;
            self.entries.push(Entry {
                hash: hash as u32,
                expires,
                weight: weight as u32,
                prev: NIL,
                next: NIL,
                generation: 0,
                queue: FREE,
                referenced: false,
                hot: false,
                freq: 0,
            });
            i
        }
    }

    /// Take entry `i` out of every structure; returns its key and value.
    /// The read buffer must be empty (a buffered index may be reused).
    fn remove_at(&mut self, i: u32) -> Option<(K, V)> {
        debug_assert_eq!(self.nreads, 0, "remove with hits not replayed");
        let (hash, weight, freq) = {
            let e = &self.entries[i as usize];
            if e.queue == FREE {
                return None;
            }
            (e.hash, u64::from(e.weight), e.freq)
        };
        if freq > 0 {
            if let Some(s) = self.sketch.as_mut() {
                s.add(sketch_hash(hash), u64::from(freq));
            }
        }
        let hash = expand(hash);
        self.unlink(i);
        let kv = match self.table.find_entry(hash, |s| s.idx == i) {
            Ok(slot) => {
                let (s, _) = slot.remove();
                Some((s.key, s.value))
            }
            Err(_) => None,
        };
        self.stats.entries -= 1;
        self.stats.bytes -= weight;
        let free = self.free;
        let e = &mut self.entries[i as usize];
        e.queue = FREE;
        e.hot = false;
        e.generation = e.generation.wrapping_add(1);
        e.next = free;
        e.prev = NIL;
        e.expires = NEVER;
        self.free = i;
        kv
    }

    /// Remove `i` for `reason` (a counter), pushing the pair to `out`.
    fn drop_at(&mut self, i: u32, out: &mut Vec<(K, V)>, reason: fn(&mut Stats)) {
        if let Some(kv) = self.remove_at(i) {
            reason(&mut self.stats);
            out.push(kv);
        }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    // --- eviction ------------------------------------------------------------

    fn evict(&mut self, out: &mut Vec<(K, V)>) {
        if self.sketch.is_none() {
            while self.over_capacity() {
                let head = self.lists[WINDOW as usize].head;
                if head == NIL {
                    break;
                }
                self.drop_at(head, out, |s| s.evictions += 1);
            }
            return;
        }
        // Window overflow moves to probation; those entries are the candidates.
        let mut candidate = NIL;
        while self.lists[WINDOW as usize].weight > self.window_max {
            let head = self.clock_head(WINDOW);
            if head == NIL {
                break;
            }
            self.unlink(head);
            self.push_tail(head, PROBATION);
            if candidate == NIL {
                candidate = head;
            }
        }
        while self.over_capacity() {
            let victim = self.lists[PROBATION as usize].head;
            if victim == NIL {
                // Only protected / window entries left: the oldest go.
                let head = match self.lists[PROTECTED as usize].head {
                    NIL => self.lists[WINDOW as usize].head,
                    h => h,
                };
                if head == NIL {
                    break;
                }
                self.drop_at(head, out, |s| s.evictions += 1);
                continue;
            }
            if candidate == NIL || victim == candidate {
                if victim == candidate {
                    candidate = self.entries[victim as usize].next;
                }
                self.drop_at(victim, out, |s| s.evictions += 1);
                continue;
            }
            if self.admit(candidate, victim) {
                self.drop_at(victim, out, |s| s.evictions += 1);
            } else {
                let loser = candidate;
                candidate = self.entries[loser as usize].next;
                self.drop_at(loser, out, |s| s.evictions += 1);
            }
        }
    }

    /// TinyLFU admission: does `candidate` deserve `victim`'s place?
    fn admit(&mut self, candidate: u32, victim: u32) -> bool {
        let (c, v) = (
            &self.entries[candidate as usize],
            &self.entries[victim as usize],
        );
        let Some(sketch) = self.sketch.as_ref() else {
            return true;
        };
        let fc = (sketch.frequency(sketch_hash(c.hash)) + u64::from(c.freq)).min(15);
        let fv = (sketch.frequency(sketch_hash(v.hash)) + u64::from(v.freq)).min(15);
        if fc > fv {
            true
        } else if fc <= 5 {
            false
        } else {
            // A warm candidate wins now and then, so an attacker cannot pin
            // the victim by inflating its frequency (Caffeine's defence).
            self.next_random() & 127 == 0
        }
    }

    /// The sketch halved its counters: halve the entries' own counts too.
    #[cold]
    #[inline(never)]
    fn halve_freqs(&mut self) {
        for e in self.entries.iter_mut() {
            e.freq >>= 1;
            // Below the top frequency: no entry stays hot.
            e.hot = false;
        }
        for slot in self.table.iter_mut() {
            slot.hint &= !HOT;
        }
    }

    /// One hill-climbing step when a sample is complete.
    fn climb(&mut self) {
        let c = &mut self.climber;
        let hits = self.stats.hits - c.hits;
        let requests = hits + (self.stats.misses - c.misses);
        if requests < c.sample {
            return;
        }
        let rate = hits as f64 / requests as f64;
        let change = rate - c.prev_rate;
        let amount = if change >= 0.0 { c.step } else { -c.step };
        c.step = if change.abs() >= CLIMB_RESTART {
            c.capacity as f64 * CLIMB_STEP * amount.signum()
        } else {
            amount * CLIMB_DECAY
        };
        c.prev_rate = rate;
        c.hits = self.stats.hits;
        c.misses = self.stats.misses;
        self.resize_window(amount as i64);
    }

    /// Move the window / main split by `delta` policy units.
    fn resize_window(&mut self, delta: i64) {
        let capacity = self.climber.capacity;
        let most = capacity - capacity / 5;
        let window = (self.window_max as i64)
            .saturating_add(delta)
            .clamp(1, most.max(1) as i64) as u64;
        self.window_max = window;
        let main = capacity.saturating_sub(window);
        self.protected_max = main / 5 * 4 + (main % 5) * 4 / 5;
        // A grown window takes main's least recent entries ...
        while self.lists[WINDOW as usize].weight < self.window_max {
            let head = match self.lists[PROBATION as usize].head {
                NIL => self.lists[PROTECTED as usize].head,
                h => h,
            };
            if head == NIL {
                break;
            }
            self.unlink(head);
            self.push_tail(head, WINDOW);
        }
        // ... a shrunk one hands its least recent to probation.
        while self.lists[WINDOW as usize].weight > self.window_max {
            let head = self.lists[WINDOW as usize].head;
            if head == NIL {
                break;
            }
            self.unlink(head);
            self.push_tail(head, PROBATION);
        }
        self.demote_protected();
    }

    fn grow_sketch(&mut self) {
        if let Some(s) = &self.sketch {
            let n = self.stats.entries as usize;
            if n > s.capacity() && s.capacity() < (1 << 26) {
                self.sketch = Some(Sketch::new(n, self.config.doorkeeper));
            }
        }
    }

    /// Drop up to `n` expired entries at the sweep cursor.
    fn sweep_expired(&mut self, now: u64, n: usize, out: &mut Vec<(K, V)>) {
        let len = self.entries.len();
        if len == 0 {
            return;
        }
        for _ in 0..n {
            if self.sweep >= len {
                self.sweep = 0;
            }
            let i = self.sweep as u32;
            self.sweep += 1;
            let e = &self.entries[i as usize];
            if e.queue != FREE && e.expires <= now {
                self.drop_at(i, out, |s| s.expirations += 1);
            }
        }
    }

    // --- public operations ---------------------------------------------------

    /// Look `hash`/`eq` up and count a hit or a miss; a hit counts as an
    /// access for the policy. An expired entry is removed and handed back.
    /// `now` is called only when the entry has an expiry, with that expiry
    /// or a lower bound of it (and then maybe again with the expiry): a
    /// caller with a cheap coarse clock may answer with a time that lags
    /// the true time when the value passed is clearly not due yet.
    /// A hit carries the entry's exact expiry.
    #[inline]
    pub fn get<M: Matcher<K>>(
        &mut self,
        hash: u64,
        eq: M,
        now: impl FnMut(u64) -> u64,
    ) -> Result<Found<'_, K, V>, M::Error> {
        self.lookup::<true, M>(hash, eq, now)
    }

    /// [`Store::get`] for callers that do not need the exact expiry: a
    /// hit carries a lower bound of it (any value for an entry that
    /// expires, [`NEVER`] for one that does not), so a hit reads the
    /// entry's index bucket only.
    #[inline]
    pub fn get_value<M: Matcher<K>>(
        &mut self,
        hash: u64,
        eq: M,
        now: impl FnMut(u64) -> u64,
    ) -> Result<Found<'_, K, V>, M::Error> {
        self.lookup::<false, M>(hash, eq, now)
    }

    #[inline(always)]
    fn lookup<const EXACT: bool, M: Matcher<K>>(
        &mut self,
        hash: u64,
        mut eq: M,
        mut now: impl FnMut(u64) -> u64,
    ) -> Result<Found<'_, K, V>, M::Error> {
        // Room for this lookup's hit, made before the slot is borrowed
        // (and the hot hits' access counts passed on as often).
        if self.nreads >= READ_BUFFER || self.unticked >= READ_BUFFER as u64 {
            self.drain_reads_slow();
        }
        let hash = table_hash(hash);
        let (i, word, value) = match find_in(&self.table, &self.entries, hash, &mut eq)? {
            Some(slot) => (slot.idx, slot.hint, &slot.value as *const V),
            None => {
                self.stats.misses += 1;
                return Ok(Found::Miss);
            }
        };
        let hint = word & !HOT;
        let mut expires = NEVER;
        if hint != HINT_NEVER {
            let lower = u64::from(hint) << HINT_SHIFT;
            expires = lower;
            // Clearly alive unless the lower bound is due: only then read
            // the exact expiry.
            if EXACT || lower <= now(lower) {
                // SAFETY: slot indices are slab slots (see `find_in`).
                expires = unsafe { self.entries.get_unchecked(i as usize).expires };
                if expires <= now(expires) {
                    self.stats.misses += 1;
                    return Ok(self.take_expired(i));
                }
            }
        }
        self.stats.hits += 1;
        if word & HOT != 0 {
            self.unticked += 1;
        } else if let Some(r) = self.reads.get_mut(self.nreads) {
            // nreads < READ_BUFFER (made so above).
            *r = i;
            self.nreads += 1;
        }
        // SAFETY: `value` points into the slot found above, and nothing
        // since changed the table (only the counters and the read buffer);
        // the returned borrow of `self` keeps it unchanged while it lives.
        Ok(Found::Hit(unsafe { &*value }, expires))
    }

    /// Remove the expired entry `i` found by a lookup.
    #[cold]
    #[inline(never)]
    fn take_expired(&mut self, i: u32) -> Found<'_, K, V> {
        self.drain_reads();
        match self.remove_at(i) {
            Some((k, v)) => {
                self.stats.expirations += 1;
                Found::Expired(k, v)
            }
            None => Found::Miss,
        }
    }

    /// Like [`Store::get`] without counting or touching (`in`, `peek`).
    pub fn peek<M: Matcher<K>>(
        &mut self,
        hash: u64,
        mut eq: M,
        mut now: impl FnMut(u64) -> u64,
    ) -> Result<Found<'_, K, V>, M::Error> {
        let hash = table_hash(hash);
        let Some(i) = self.find(hash, &mut eq)? else {
            return Ok(Found::Miss);
        };
        let expires = self.entries[i as usize].expires;
        if expires != NEVER && expires <= now(expires) {
            return Ok(self.take_expired(i));
        }
        match self.table.find(hash, |s| s.idx == i) {
            Some(s) => Ok(Found::Hit(&s.value, expires)),
            None => Ok(Found::Miss),
        }
    }

    /// Store `value` under `key`, weighing `weight`, expiring at `expires`
    /// ([`NEVER`]: never), tagged `tags`. An existing entry keeps its key
    /// object and gets the new value; everything that leaves the store
    /// (the old value with the new key, evicted and expired entries, the
    /// pair itself when it is rejected) goes to `out`. Returns false when
    /// the entry alone outweighs `max_bytes` or weighs 4 GiB or more (not
    /// stored; any old entry
    /// under the key is removed).
    #[allow(clippy::too_many_arguments)]
    pub fn insert<M: Matcher<K>>(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u64,
        expires: u64,
        tags: &[&str],
        now: u64,
        mut eq: M,
        out: &mut Vec<(K, V)>,
    ) -> Result<bool, M::Error> {
        self.drain_reads();
        let hash = table_hash(hash);
        let found = self.find(hash, &mut eq)?;
        self.stats.sets += 1;
        if weight > u64::from(u32::MAX) || self.config.max_bytes.is_some_and(|m| weight > m) {
            self.stats.rejected += 1;
            if let Some(i) = found {
                if let Some(kv) = self.remove_at(i) {
                    out.push(kv);
                }
            }
            out.push((key, value));
            return Ok(false);
        }
        let i = match found {
            Some(i) => {
                let old_weight = u64::from(self.entries[i as usize].weight);
                // Re-weigh in place: take it off its list, update, put it back.
                let q = self.entries[i as usize].queue;
                self.unlink(i);
                let e = &mut self.entries[i as usize];
                e.weight = weight as u32;
                e.expires = expires;
                e.generation = e.generation.wrapping_add(1);
                let old = match self.slot_mut(hash, i) {
                    Some(slot) => {
                        // Not hot any more: unlinked and put back just above.
                        slot.hint = hint(expires);
                        std::mem::replace(&mut slot.value, value)
                    }
                    None => value, // unreachable: found entries have a slot
                };
                out.push((key, old));
                self.stats.bytes = self.stats.bytes - old_weight + weight;
                self.push_tail(i, q);
                self.touch(i);
                i
            }
            None => {
                let i = self.alloc(hash, weight, expires);
                let entries = &self.entries;
                if self.table.len() >= self.table.capacity()
                    && self.table_reserve > self.table.len()
                {
                    // One step from the small start to the bound (doubling
                    // would leave each outgrown copy to the allocator).
                    let more = self.table_reserve - self.table.len();
                    self.table
                        .reserve(more, |s| expand(entries[s.idx as usize].hash));
                }
                self.table.insert_unique(
                    hash,
                    Slot {
                        key,
                        value,
                        idx: i,
                        hint: hint(expires),
                    },
                    |s| expand(entries[s.idx as usize].hash),
                );
                self.stats.entries += 1;
                self.stats.bytes += weight;
                if self
                    .sketch
                    .as_mut()
                    .is_some_and(|s| s.increment(sketch_hash(hash as u32)))
                {
                    self.halve_freqs();
                }
                self.push_tail(i, WINDOW);
                self.grow_sketch();
                i
            }
        };
        if !tags.is_empty() {
            self.add_tags(i, tags);
        }
        self.evict(out);
        if self.sketch.is_some() && self.stats.evictions > 0 {
            self.climb();
        }
        self.sweep_expired(now, SWEEP_PER_WRITE, out);
        Ok(true)
    }

    /// Remove the entry under `hash`/`eq` (counted as a delete when it was
    /// live, as an expiration when it had expired), pushing it to `out`;
    /// true when a live entry was deleted.
    pub fn delete<M: Matcher<K>>(
        &mut self,
        hash: u64,
        mut eq: M,
        now: u64,
        out: &mut Vec<(K, V)>,
    ) -> Result<bool, M::Error> {
        self.drain_reads();
        let hash = table_hash(hash);
        let Some(i) = self.find(hash, &mut eq)? else {
            return Ok(false);
        };
        let expired = self.entries[i as usize].expires <= now;
        let Some(kv) = self.remove_at(i) else {
            return Ok(false);
        };
        out.push(kv);
        if expired {
            self.stats.expirations += 1;
            Ok(false)
        } else {
            self.stats.deletes += 1;
            Ok(true)
        }
    }

    fn add_tags(&mut self, i: u32, tags: &[&str]) {
        let generation = self.entries[i as usize].generation;
        for tag in tags {
            match self.tags.get_mut(*tag) {
                Some(refs) => refs.push((i, generation)),
                None => {
                    self.tags.insert((*tag).into(), vec![(i, generation)]);
                }
            }
            self.tag_refs += 1;
        }
        if self.tag_refs >= self.tag_sweep_at {
            self.sweep_tags();
        }
    }

    /// Drop tag references to entries that changed or left.
    fn sweep_tags(&mut self) {
        let entries = &self.entries;
        let mut live = 0;
        self.tags.retain(|_, refs| {
            refs.retain(|&(i, g)| {
                let e = &entries[i as usize];
                e.queue != FREE && e.generation == g
            });
            refs.shrink_to(refs.len() * 2);
            live += refs.len();
            !refs.is_empty()
        });
        self.tag_refs = live;
        self.tag_sweep_at = (live * 2).max(1024);
    }

    /// Remove every entry tagged `tag` (as deletes); returns how many.
    pub fn invalidate_tag(&mut self, tag: &str, out: &mut Vec<(K, V)>) -> usize {
        self.drain_reads();
        let Some(refs) = self.tags.remove(tag) else {
            return 0;
        };
        self.tag_refs -= refs.len();
        let mut n = 0;
        for (i, g) in refs {
            let e = &self.entries[i as usize];
            if e.queue != FREE && e.generation == g {
                if let Some(kv) = self.remove_at(i) {
                    self.stats.deletes += 1;
                    out.push(kv);
                    n += 1;
                }
            }
        }
        n
    }

    /// Remove every expired entry now; returns how many.
    pub fn expire(&mut self, now: u64, out: &mut Vec<(K, V)>) -> usize {
        self.drain_reads();
        let before = out.len();
        for i in 0..self.entries.len() as u32 {
            let e = &self.entries[i as usize];
            if e.queue != FREE && e.expires <= now {
                self.drop_at(i, out, |s| s.expirations += 1);
            }
        }
        out.len() - before
    }

    /// Remove everything (not counted); the counters stay.
    pub fn clear(&mut self) -> Vec<(K, V)> {
        // Buffered hits of entries about to go: nothing to replay.
        self.nreads = 0;
        let small = HashTable::with_capacity(table_start(self.table_reserve));
        let out: Vec<(K, V)> = std::mem::replace(&mut self.table, small)
            .into_iter()
            .map(|s| (s.key, s.value))
            .collect();
        drop(self.entries.take_all());
        self.free = NIL;
        self.lists = [EMPTY; 3];
        self.tags = HashMap::new();
        self.tag_refs = 0;
        self.tag_sweep_at = 1024;
        self.sweep = 0;
        self.stats.entries = 0;
        self.stats.bytes = 0;
        if let Some(s) = self.sketch.as_mut() {
            s.clear();
        }
        out
    }

    /// Visit every held pair (expired ones included); stops at the first error.
    pub fn try_for_each<E>(&self, mut f: impl FnMut(&K, &V) -> Result<(), E>) -> Result<(), E> {
        for s in self.table.iter() {
            f(&s.key, &s.value)?;
        }
        Ok(())
    }

    /// The live keys' pairs with their expiry, oldest first within each
    /// segment (for snapshots and tests).
    pub fn pairs(&self) -> impl Iterator<Item = (&K, &V, u64)> {
        self.table
            .iter()
            .map(|s| (&s.key, &s.value, self.entries[s.idx as usize].expires))
    }

    /// Keys from least to most recently used (LRU policy; for tests).
    pub fn lru_order(&mut self) -> Vec<&K> {
        self.drain_reads();
        let mut out = Vec::new();
        for q in [WINDOW, PROBATION, PROTECTED] {
            let mut i = self.lists[q as usize].head;
            while i != NIL {
                let e = &self.entries[i as usize];
                if let Some(s) = self.table.find(expand(e.hash), |s| s.idx == i) {
                    out.push(&s.key);
                }
                i = e.next;
            }
        }
        out
    }

    /// Check every internal invariant (for tests): list links and weights,
    /// index and counters agree.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let mut count = 0u64;
        let mut bytes = 0u64;
        for q in [WINDOW, PROBATION, PROTECTED] {
            let list = self.lists[q as usize];
            let mut i = list.head;
            let mut prev = NIL;
            let mut w = 0;
            let mut n = 0;
            while i != NIL {
                n += 1;
                let e = &self.entries[i as usize];
                if e.queue != q || e.prev != prev {
                    return Err(format!("bad links at {i} on list {q}"));
                }
                match self.table.find(expand(e.hash), |s| s.idx == i) {
                    None => return Err(format!("entry {i} not indexed")),
                    Some(s) if s.hint & !HOT != hint(e.expires) => {
                        return Err(format!("entry {i}: expiry hint out of date"))
                    }
                    Some(s) if (s.hint & HOT != 0) != e.hot => {
                        return Err(format!("entry {i}: hot mark differs"))
                    }
                    Some(_) if e.hot && !(q == PROTECTED && e.referenced && e.freq == 15) => {
                        return Err(format!("entry {i}: hot but a hit would change it"))
                    }
                    Some(_) => {}
                }
                w += self.pw(u64::from(e.weight));
                count += 1;
                bytes += u64::from(e.weight);
                prev = i;
                i = e.next;
            }
            if prev != list.tail || w != list.weight || n != list.len {
                return Err(format!("list {q}: tail or weight wrong"));
            }
        }
        if count != self.stats.entries || bytes != self.stats.bytes {
            return Err(format!(
                "counters: {count} entries / {bytes} bytes on lists, stats say {:?}",
                self.stats
            ));
        }
        if self.table.len() as u64 != count {
            return Err("index size differs".into());
        }
        // Every buffered hit names a live entry (the buffer is replayed
        // before anything leaves the store).
        for &i in &self.reads[..self.nreads] {
            if i as usize >= self.entries.len() || self.entries[i as usize].queue == FREE {
                return Err(format!("read buffer names entry {i}, which is not live"));
            }
        }
        Ok(())
    }
}
