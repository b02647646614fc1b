//! A pool of arbitrary items with idle eviction.
//!
//! The pool never creates, validates or resets items: it hands the caller a
//! reserved slot ([`Take::Create`]) or an idle item, and the caller runs its
//! factory / validate / reset code with no lock held, then reports back
//! ([`ObjectPool::put`], [`ObjectPool::discard`]). Idle items are kept LIFO
//! (the warmest item is reused first, cold ones age out).

use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{check_sizes, exhausted, Gate};
use crate::error::{Error, Result};

/// How an [`ObjectPool`] is shaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectPoolConfig {
    /// Items kept even when idle (created up front by the caller).
    pub min_size: usize,
    /// Most items in existence (idle + in use); the exhaustion bound.
    pub max_size: usize,
    /// Idle items older than this are evicted (down to `min_size`).
    pub max_idle: Option<Duration>,
}

/// What [`ObjectPool::take`] found.
#[derive(Debug)]
pub enum Take<T> {
    /// An idle item: validate it, then use it or [`ObjectPool::discard`] it.
    Idle(T),
    /// A slot was reserved: create an item, or call
    /// [`ObjectPool::discard`] if creation fails.
    Create,
    /// `max_size` items are out.
    Exhausted,
}

/// A point-in-time copy of an object pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ObjectPoolStats {
    /// Borrows served by an idle item.
    pub hits: u64,
    /// Borrows that needed a new item.
    pub misses: u64,
    /// Items created (including up-front and replacements).
    pub created: u64,
    /// Items dropped: failed validation or reset, or creation failed.
    pub discarded: u64,
    /// Idle items evicted after `max_idle`.
    pub evicted: u64,
    /// Items lent out and not yet returned.
    pub in_use: usize,
    /// Idle items.
    pub idle: usize,
    /// Most items in use at once.
    pub high_water: usize,
    /// Acquisitions that gave up (timeout or `block=False`).
    pub exhausted: u64,
}

impl ObjectPoolStats {
    /// hits / (hits + misses), 0 before the first borrow.
    pub fn hit_ratio(&self) -> f64 {
        crate::stats::ratio(self.hits, self.hits + self.misses)
    }
}

/// A bounded pool of `T` with LIFO reuse and idle eviction. Thread-safe.
#[derive(Debug)]
pub struct ObjectPool<T> {
    cfg: ObjectPoolConfig,
    /// Idle items with the time they came back; newest at the back.
    idle: Mutex<VecDeque<(T, Instant)>>,
    /// Items in existence or being created: idle + in use + reserved.
    total: AtomicUsize,
    in_use: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    created: AtomicU64,
    discarded: AtomicU64,
    evicted: AtomicU64,
    high_water: AtomicUsize,
    exhausted: AtomicU64,
    gate: Gate,
}

/// Most items made up front (`min_size`): each is one factory call while
/// the pool is made, and the idle list holds them all.
pub const MAX_MIN_SIZE: usize = 1 << 16;

impl<T> ObjectPool<T> {
    /// An empty pool; the caller creates `min_size` items with [`Self::take`].
    pub fn new(cfg: ObjectPoolConfig) -> Result<Self> {
        check_sizes(cfg.min_size, cfg.max_size)?;
        if cfg.min_size > MAX_MIN_SIZE {
            return Err(Error::invalid(
                "min_size",
                cfg.min_size,
                format!("at most {MAX_MIN_SIZE} objects are made up front"),
            ));
        }
        if cfg.max_idle.is_some_and(|d| d.is_zero()) {
            return Err(Error::invalid("max_idle_s", 0, "must be > 0 or None"));
        }
        Ok(ObjectPool {
            cfg,
            idle: Mutex::new(VecDeque::new()),
            total: AtomicUsize::new(0),
            in_use: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            created: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            high_water: AtomicUsize::new(0),
            exhausted: AtomicU64::new(0),
            gate: Gate::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ObjectPoolConfig {
        &self.cfg
    }

    /// Reserve a slot for an item made up front (for `min_size`), if below
    /// `max_size`. The caller then calls [`Self::put_new`] or [`Self::discard`].
    pub fn reserve(&self) -> bool {
        self.total
            .fetch_update(SeqCst, Relaxed, |t| {
                (t < self.cfg.max_size).then_some(t + 1)
            })
            .is_ok()
    }

    fn lent(&self) {
        let n = self.in_use.fetch_add(1, Relaxed) + 1;
        self.high_water.fetch_max(n, Relaxed);
    }

    /// An idle item, a reserved slot, or `Exhausted`. The item (or slot) now
    /// counts as in use.
    pub fn take(&self) -> Take<T> {
        if let Some((item, _)) = self.idle.lock().pop_back() {
            self.lent();
            return Take::Idle(item);
        }
        if self.reserve() {
            self.lent();
            return Take::Create;
        }
        // Between the two a returning item may have arrived.
        match self.idle.lock().pop_back() {
            Some((item, _)) => {
                self.lent();
                Take::Idle(item)
            }
            None => Take::Exhausted,
        }
    }

    /// Like [`Self::take`], waiting up to `timeout` for an item to come back.
    pub fn take_timeout(&self, timeout: Duration) -> Take<T> {
        match self.take() {
            Take::Exhausted => self
                .gate
                .wait_for(timeout, || match self.take() {
                    Take::Exhausted => None,
                    got => Some(got),
                })
                .unwrap_or(Take::Exhausted),
            got => got,
        }
    }

    /// Count the outcome of a borrow: `hit` when an idle item was used.
    pub fn count_borrow(&self, hit: bool) {
        if hit {
            self.hits.fetch_add(1, Relaxed);
        } else {
            self.misses.fetch_add(1, Relaxed);
        }
    }

    /// Count one item created by the caller.
    pub fn count_created(&self) {
        self.created.fetch_add(1, Relaxed);
    }

    /// Count a give-up and build the error.
    pub fn exhausted_error(&self, waited: Option<Duration>) -> Error {
        self.exhausted.fetch_add(1, Relaxed);
        exhausted("ObjectPool", self.cfg.max_size, waited)
    }

    /// Return a lent item (already reset by the caller) to the idle list.
    pub fn put(&self, item: T) {
        self.in_use.fetch_sub(1, Relaxed);
        self.idle.lock().push_back((item, Instant::now()));
        self.gate.notify();
    }

    /// Add an item made up front with a slot from [`Self::reserve`].
    pub fn put_new(&self, item: T) {
        self.created.fetch_add(1, Relaxed);
        self.idle.lock().push_back((item, Instant::now()));
        self.gate.notify();
    }

    /// Forget a lent item or a reserved slot (failed validation, reset or
    /// creation): its slot is free for a new item.
    pub fn discard(&self, lent: bool) {
        self.discarded.fetch_add(1, Relaxed);
        if lent {
            self.in_use.fetch_sub(1, Relaxed);
        }
        self.total.fetch_sub(1, SeqCst);
        self.gate.notify();
    }

    /// Remove idle items that came back more than `max_idle` before `now`,
    /// keeping `min_size` items in existence. The caller drops them.
    pub fn evict_expired(&self, now: Instant) -> Vec<T> {
        let Some(max_idle) = self.cfg.max_idle else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut idle = self.idle.lock();
        while let Some((_, at)) = idle.front() {
            if now.saturating_duration_since(*at) < max_idle {
                break;
            }
            let spare = self
                .total
                .fetch_update(SeqCst, Relaxed, |t| (t > self.cfg.min_size).then(|| t - 1));
            if spare.is_err() {
                break;
            }
            if let Some((item, _)) = idle.pop_front() {
                out.push(item);
            }
        }
        drop(idle);
        self.evicted.fetch_add(out.len() as u64, Relaxed);
        if !out.is_empty() {
            self.gate.notify();
        }
        out
    }

    /// Remove idle items beyond `keep`; the caller drops them.
    pub fn trim(&self, keep: usize) -> Vec<T> {
        let mut idle = self.idle.lock();
        let n = idle.len().saturating_sub(keep);
        let out: Vec<T> = idle.drain(..n).map(|(item, _)| item).collect();
        drop(idle);
        self.total.fetch_sub(out.len(), SeqCst);
        if !out.is_empty() {
            self.gate.notify();
        }
        out
    }

    /// Apply `f` to every idle item (for garbage-collector traversal); skips
    /// the walk (returning `false`) when the list is busy.
    pub fn try_for_each_idle<E>(&self, mut f: impl FnMut(&T) -> Result<(), E>) -> Result<bool, E> {
        let Some(idle) = self.idle.try_lock() else {
            return Ok(false);
        };
        for (item, _) in idle.iter() {
            f(item)?;
        }
        Ok(true)
    }

    /// Remove every idle item (the caller drops them); the pool stays usable.
    pub fn drain_idle(&self) -> Vec<T> {
        self.trim(0)
    }

    /// Threads waiting in [`Self::take_timeout`].
    pub fn waiters(&self) -> usize {
        self.gate.waiters()
    }

    /// Read every counter.
    pub fn stats(&self) -> ObjectPoolStats {
        ObjectPoolStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            created: self.created.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            in_use: self.in_use.load(Relaxed),
            idle: self.idle.lock().len(),
            high_water: self.high_water.load(Relaxed),
            exhausted: self.exhausted.load(Relaxed),
        }
    }
}
