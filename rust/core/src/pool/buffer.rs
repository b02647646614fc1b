//! Fixed-size buffers on a lock-free free list, with auto-sizing.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use parking_lot::Mutex;

use super::{check_sizes, exhausted, Gate};
use crate::error::{Error, Result};

/// Alignment of every buffer: a cache line, enough for any numpy dtype / SIMD.
pub const BUF_ALIGN: usize = 64;
/// Largest buffer size accepted (1 GiB).
pub const MAX_BUFFER_SIZE: usize = 1 << 30;
/// Most idle buffers kept on the free list, whatever `max_size` says: the
/// lock-free queue reserves its slots up front (16 bytes each).
pub const MAX_IDLE_SLOTS: usize = 1 << 16;

/// One heap buffer of fixed length, 64-byte aligned, zero-initialised when
/// allocated. Owned: dropping it frees the memory.
#[derive(Debug)]
pub struct Buf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Buf` owns its allocation exclusively (like `Box<[u8]>`).
unsafe impl Send for Buf {}
// SAFETY: shared access only reads through `&self`.
unsafe impl Sync for Buf {}

impl Buf {
    fn layout(len: usize) -> Result<Layout> {
        Layout::from_size_align(len.max(1), BUF_ALIGN)
            .map_err(|_| Error::invalid("buffer_size", len, "too large"))
    }

    /// A zeroed buffer of `len` bytes (`len` >= 1).
    pub fn new(len: usize) -> Result<Self> {
        let layout = Self::layout(len)?;
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| {
            Error::invalid("buffer_size", len, "out of memory allocating the buffer")
        })?;
        Ok(Buf { ptr, len })
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (buffers have at least one byte).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start of the memory.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Give up ownership; [`Buf::from_raw`] takes it back.
    pub fn into_raw(self) -> NonNull<u8> {
        let p = self.ptr;
        std::mem::forget(self);
        p
    }

    /// Re-own a pointer from [`Buf::into_raw`].
    ///
    /// # Safety
    /// `ptr` must come from `into_raw` of a `Buf` of exactly `len` bytes and
    /// must not be used by anything else afterwards.
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Self {
        Buf { ptr, len }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Ok(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `new` with this very layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

/// How a [`BufferPool`] is shaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BufferPoolConfig {
    /// Bytes per buffer.
    pub buffer_size: usize,
    /// Buffers allocated up front and never trimmed by auto-sizing.
    pub min_size: usize,
    /// Most buffers in existence (idle + in use); the exhaustion bound.
    pub max_size: usize,
    /// Wipe each buffer when it is released.
    pub zero_on_release: bool,
    /// Length of the auto-sizing window (shrink needs a whole quiet window).
    pub window: Duration,
}

impl Default for BufferPoolConfig {
    fn default() -> Self {
        BufferPoolConfig {
            buffer_size: 65536,
            min_size: 8,
            max_size: 1024,
            zero_on_release: false,
            window: Duration::from_secs(1),
        }
    }
}

/// A point-in-time copy of a pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BufferPoolStats {
    /// Acquisitions served from the free list.
    pub hits: u64,
    /// Acquisitions that allocated a fresh buffer.
    pub misses: u64,
    /// Buffers handed out and not yet released.
    pub in_use: usize,
    /// Buffers on the free list.
    pub idle: usize,
    /// Most buffers ever in use at once.
    pub high_water: usize,
    /// Bytes held by the pool (idle + in use).
    pub bytes_allocated: usize,
    /// The auto-sized target number of buffers.
    pub capacity: usize,
    /// Times auto-sizing grew / shrank the capacity.
    pub grows: u64,
    /// See `grows`.
    pub shrinks: u64,
    /// Buffers freed (shrink, trim, excess on release).
    pub freed: u64,
    /// Acquisitions that gave up (timeout or `block=False`).
    pub exhausted: u64,
}

impl BufferPoolStats {
    /// hits / (hits + misses), 0 before the first acquisition.
    pub fn hit_ratio(&self) -> f64 {
        crate::stats::ratio(self.hits, self.hits + self.misses)
    }
}

/// Release count between two looks at the clock for the shrink window.
const WINDOW_CHECK_EVERY: u64 = 64;

/// A pool of fixed-size buffers. Thread-safe; `acquire`/`release` are
/// lock-free on the fast path (one queue operation and one counter each).
#[derive(Debug)]
pub struct BufferPool {
    cfg: BufferPoolConfig,
    idle: ArrayQueue<Buf>,
    /// Buffers in existence: idle + in use + in transit.
    total: AtomicUsize,
    /// Auto-sized target for `total`, in `min_size..=max_size`.
    capacity: AtomicUsize,
    acquires: AtomicU64,
    releases: AtomicU64,
    misses: AtomicU64,
    high_water: AtomicUsize,
    window_peak: AtomicUsize,
    window_start: Mutex<Instant>,
    grows: AtomicU64,
    shrinks: AtomicU64,
    freed: AtomicU64,
    exhausted: AtomicU64,
    gate: Gate,
}

impl BufferPool {
    /// A pool with `min_size` buffers allocated up front.
    pub fn new(cfg: BufferPoolConfig) -> Result<Self> {
        if cfg.buffer_size == 0 || cfg.buffer_size > MAX_BUFFER_SIZE {
            return Err(Error::invalid(
                "buffer_size",
                cfg.buffer_size,
                format!("must be between 1 and {MAX_BUFFER_SIZE} bytes"),
            ));
        }
        check_sizes(cfg.min_size, cfg.max_size)?;
        let per = cfg.buffer_size.div_ceil(BUF_ALIGN) * BUF_ALIGN;
        if per
            .checked_mul(cfg.max_size)
            .is_none_or(|b| b > isize::MAX as usize)
        {
            return Err(Error::invalid(
                "max_size",
                cfg.max_size,
                "max_size * buffer_size does not fit in memory",
            ));
        }
        if cfg.window.is_zero() {
            return Err(Error::invalid("window_s", 0, "must be > 0"));
        }
        let pool = BufferPool {
            idle: ArrayQueue::new(cfg.max_size.min(MAX_IDLE_SLOTS)),
            total: AtomicUsize::new(0),
            capacity: AtomicUsize::new(cfg.min_size.max(1)),
            acquires: AtomicU64::new(0),
            releases: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            high_water: AtomicUsize::new(0),
            window_peak: AtomicUsize::new(0),
            window_start: Mutex::new(Instant::now()),
            grows: AtomicU64::new(0),
            shrinks: AtomicU64::new(0),
            freed: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            gate: Gate::default(),
            cfg,
        };
        pool.fill_to(cfg.min_size)?;
        Ok(pool)
    }

    /// The configuration.
    pub fn config(&self) -> &BufferPoolConfig {
        &self.cfg
    }

    /// Bytes per buffer.
    #[inline]
    pub fn buffer_size(&self) -> usize {
        self.cfg.buffer_size
    }

    /// Allocate idle buffers until `total` reaches `target` (capped at max_size).
    fn fill_to(&self, target: usize) -> Result<()> {
        let target = target.min(self.cfg.max_size);
        while self.reserve_below(target) {
            match Buf::new(self.cfg.buffer_size) {
                Ok(b) => {
                    if let Err(b) = self.idle.push(b) {
                        // The free list is full (MAX_IDLE_SLOTS): stop here.
                        drop(b);
                        self.total.fetch_sub(1, SeqCst);
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.total.fetch_sub(1, SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Count one more buffer into `total` if it stays <= `limit`.
    fn reserve_below(&self, limit: usize) -> bool {
        self.total
            .fetch_update(SeqCst, Relaxed, |t| (t < limit).then_some(t + 1))
            .is_ok()
    }

    #[inline]
    fn in_use_now(&self) -> usize {
        let a = self.acquires.load(Relaxed);
        let r = self.releases.load(Relaxed);
        a.saturating_sub(r) as usize
    }

    /// Book-keeping after a successful acquisition.
    #[inline]
    fn acquired(&self) {
        let n = self.acquires.fetch_add(1, Relaxed) + 1;
        let in_use = n.saturating_sub(self.releases.load(Relaxed)) as usize;
        if in_use > self.high_water.load(Relaxed) {
            self.high_water.fetch_max(in_use, Relaxed);
        }
        if in_use > self.window_peak.load(Relaxed) {
            self.window_peak.fetch_max(in_use, Relaxed);
        }
        // Grow by 25% when utilisation passes 80% of the capacity.
        let cap = self.capacity.load(Relaxed);
        if in_use * 5 > cap * 4 && cap < self.cfg.max_size {
            self.grow(cap);
        }
    }

    #[cold]
    fn grow(&self, cap: usize) {
        let new_cap = (cap + cap.div_ceil(4)).min(self.cfg.max_size);
        if self
            .capacity
            .compare_exchange(cap, new_cap, Relaxed, Relaxed)
            .is_ok()
        {
            self.grows.fetch_add(1, Relaxed);
            // Pre-allocate so the next acquisitions are hits. Failure to
            // allocate now is not an error: a miss will try again.
            let _ = self.fill_to(new_cap);
        }
    }

    /// A buffer now, or `None` if `max_size` buffers are out.
    #[inline]
    pub fn try_acquire(&self) -> Result<Option<Buf>> {
        if let Some(b) = self.idle.pop() {
            self.acquired();
            return Ok(Some(b));
        }
        self.acquire_fresh()
    }

    #[cold]
    fn acquire_fresh(&self) -> Result<Option<Buf>> {
        if !self.reserve_below(self.cfg.max_size) {
            // Between the pop and the reservation a buffer may have come back.
            return Ok(self.idle.pop().inspect(|_| self.acquired()));
        }
        match Buf::new(self.cfg.buffer_size) {
            Ok(b) => {
                self.misses.fetch_add(1, Relaxed);
                self.acquired();
                Ok(Some(b))
            }
            Err(e) => {
                // No notify: this may run inside a waiter's attempt, under
                // the gate lock. Waiters retry on their own slices anyway.
                self.total.fetch_sub(1, SeqCst);
                Err(e)
            }
        }
    }

    /// Wait up to `timeout` for a buffer to come back when `max_size` are
    /// out; `Ok(None)` on timeout (not counted: see [`Self::exhausted_error`]).
    /// Blocks the calling thread: the binding calls it with the GIL released,
    /// in short slices.
    pub fn wait_for_buffer(&self, timeout: Duration) -> Result<Option<Buf>> {
        if let Some(b) = self.try_acquire()? {
            return Ok(Some(b));
        }
        let mut failure = None;
        let got = self.gate.wait_for(timeout, || match self.try_acquire() {
            Ok(Some(b)) => Some(Some(b)),
            Ok(None) => None,
            Err(e) => {
                failure = Some(e);
                Some(None)
            }
        });
        match (got.flatten(), failure) {
            (Some(b), _) => Ok(Some(b)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(None),
        }
    }

    /// A buffer, waiting up to `timeout` (`None`: do not wait).
    pub fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Buf> {
        let got = match timeout {
            None => self.try_acquire()?,
            Some(t) => self.wait_for_buffer(t)?,
        };
        got.ok_or_else(|| self.exhausted_error(timeout))
    }

    /// Count a give-up and build the error (the binding reports the total wait).
    pub fn exhausted_error(&self, waited: Option<Duration>) -> Error {
        self.exhausted.fetch_add(1, Relaxed);
        exhausted("BufferPool", self.cfg.max_size, waited)
    }

    /// Take a buffer back: wipe it if configured, then pool it, or free it
    /// when the pool holds more buffers than its auto-sized capacity.
    #[inline]
    pub fn release(&self, mut buf: Buf) {
        if self.cfg.zero_on_release {
            buf.as_mut_slice().fill(0);
        }
        // Counted before the buffer is visible again, so `in_use` (acquires
        // - releases) never overstates and `high_water` stays exact.
        let r = self.releases.fetch_add(1, Relaxed) + 1;
        let keep = self.total.load(Relaxed) <= self.capacity.load(Relaxed) || !self.free_one();
        if keep {
            if let Err(b) = self.idle.push(buf) {
                // More than MAX_IDLE_SLOTS idle: free this one.
                drop(b);
                self.total.fetch_sub(1, SeqCst);
                self.freed.fetch_add(1, Relaxed);
            }
        }
        self.gate.notify();
        if r % WINDOW_CHECK_EVERY == 0 {
            self.end_window_if_due(Instant::now());
        }
    }

    /// Drop one buffer's count if `total` exceeds the capacity (the caller frees it).
    fn free_one(&self) -> bool {
        let freed = self
            .total
            .fetch_update(SeqCst, Relaxed, |t| {
                (t > self.capacity.load(Relaxed)).then(|| t - 1)
            })
            .is_ok();
        if freed {
            self.freed.fetch_add(1, Relaxed);
        }
        freed
    }

    /// Close the auto-sizing window if it has run its length: when peak
    /// utilisation stayed under 25%, shrink the capacity by 12% (never below
    /// `min_size`) and free the idle buffers above it.
    pub fn end_window_if_due(&self, now: Instant) {
        let Some(mut start) = self.window_start.try_lock() else {
            return;
        };
        if now.saturating_duration_since(*start) < self.cfg.window {
            return;
        }
        *start = now;
        drop(start);
        let in_use = self.in_use_now();
        let peak = self.window_peak.swap(in_use, Relaxed).max(in_use);
        let cap = self.capacity.load(Relaxed);
        if peak * 4 < cap {
            let new_cap = (cap - cap.div_ceil(8)).max(self.cfg.min_size).max(1);
            if new_cap < cap
                && self
                    .capacity
                    .compare_exchange(cap, new_cap, Relaxed, Relaxed)
                    .is_ok()
            {
                self.shrinks.fetch_add(1, Relaxed);
                self.free_idle_above(new_cap);
            }
        }
    }

    /// Free idle buffers while `total` exceeds `limit`; returns how many.
    fn free_idle_above(&self, limit: usize) -> usize {
        let mut n = 0;
        while self.total.load(Relaxed) > limit {
            let Some(b) = self.idle.pop() else { break };
            drop(b);
            self.total.fetch_sub(1, SeqCst);
            n += 1;
        }
        self.freed.fetch_add(n as u64, Relaxed);
        if n > 0 {
            self.gate.notify();
        }
        n
    }

    /// Free idle buffers now, keeping at most `keep` idle; the capacity is
    /// reset to what is in use plus `keep` (at least `min_size`). Returns the
    /// bytes freed.
    pub fn trim(&self, keep: usize) -> usize {
        let mut n = 0;
        while self.idle.len() > keep {
            let Some(b) = self.idle.pop() else { break };
            drop(b);
            self.total.fetch_sub(1, SeqCst);
            n += 1;
        }
        self.freed.fetch_add(n as u64, Relaxed);
        let cap = (self.in_use_now() + keep)
            .max(self.cfg.min_size)
            .clamp(1, self.cfg.max_size);
        self.capacity.store(cap, Relaxed);
        *self.window_start.lock() = Instant::now();
        self.window_peak.store(self.in_use_now(), Relaxed);
        if n > 0 {
            self.gate.notify();
        }
        n * self.cfg.buffer_size
    }

    /// Threads waiting in [`BufferPool::acquire_timeout`].
    pub fn waiters(&self) -> usize {
        self.gate.waiters()
    }

    /// Read every counter.
    pub fn stats(&self) -> BufferPoolStats {
        let acquires = self.acquires.load(Relaxed);
        let misses = self.misses.load(Relaxed);
        let total = self.total.load(Relaxed);
        BufferPoolStats {
            hits: acquires.saturating_sub(misses),
            misses,
            in_use: self.in_use_now(),
            idle: self.idle.len(),
            high_water: self.high_water.load(Relaxed),
            bytes_allocated: total * self.cfg.buffer_size,
            capacity: self.capacity.load(Relaxed),
            grows: self.grows.load(Relaxed),
            shrinks: self.shrinks.load(Relaxed),
            freed: self.freed.load(Relaxed),
            exhausted: self.exhausted.load(Relaxed),
        }
    }
}
