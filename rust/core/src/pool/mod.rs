//! Buffer and object pools.
//!
//! - [`BufferPool`]: fixed-size, 64-byte aligned, zero-initialised buffers on
//!   a lock-free FIFO free list (crossbeam `ArrayQueue`), with counters,
//!   auto-sizing (grow 25% above 80% utilisation, shrink 12% below 25% over a
//!   window), `trim()` and blocking / timed / non-blocking acquisition.
//! - [`Lease`]: the state of one handed-out buffer: held or released, and
//!   how many exports (memoryviews, numpy arrays) borrow its memory. Release
//!   is refused while an export lives, so memory is never reused under one.
//! - [`ObjectPool`]: a LIFO pool of arbitrary items (the binding stores
//!   Python objects) with idle eviction; it never runs user code itself: the
//!   caller creates, validates and resets items outside every lock.
//!
//! Waiting for a free item goes through [`Gate`]: a waiter count checked by
//! the releasing side (one load on the fast path) and a condvar.

mod buffer;
mod lease;
mod object;

pub use buffer::{
    Buf, BufferPool, BufferPoolConfig, BufferPoolStats, BUF_ALIGN, MAX_BUFFER_SIZE, MAX_IDLE_SLOTS,
};
pub use lease::{Lease, LeaseError};
pub use object::{ObjectPool, ObjectPoolConfig, ObjectPoolStats, Take, MAX_MIN_SIZE};

use std::sync::atomic::{
    fence, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;

/// Waiters for a pool item: the releasing side notifies only when someone waits.
#[derive(Debug, Default)]
pub struct Gate {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Gate {
    /// Wake one waiter, if any (a single load when nobody waits).
    ///
    /// Callers make their item available before calling this; the fence
    /// here pairs with the waiters' SeqCst increment before they retry, so
    /// either the waiter sees the item or this sees the waiter.
    #[inline]
    pub fn notify(&self) {
        fence(SeqCst);
        if self.waiters.load(Relaxed) > 0 {
            let _guard = self.lock.lock();
            self.cv.notify_one();
        }
    }

    /// Retry `attempt` until it yields a value or `timeout` passes, sleeping
    /// on the condvar between tries. Never runs anything but `attempt`, which
    /// runs under the gate lock: it must not block and must not call
    /// [`Gate::notify`] (that would self-deadlock). Returns `None` on timeout.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut attempt: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = self.lock.lock();
        self.waiters.fetch_add(1, SeqCst);
        let out = loop {
            if let Some(v) = attempt() {
                break Some(v);
            }
            let timed_out = match deadline {
                Some(d) => self.cv.wait_until(&mut guard, d).timed_out(),
                None => {
                    self.cv.wait(&mut guard);
                    false
                }
            };
            if timed_out {
                break attempt();
            }
        };
        self.waiters.fetch_sub(1, SeqCst);
        drop(guard);
        // A wake-up we consumed without using may belong to another waiter.
        if out.is_none() {
            self.notify();
        }
        out
    }

    /// Threads currently waiting.
    pub fn waiters(&self) -> usize {
        self.waiters.load(SeqCst)
    }
}

/// The error for an exhausted pool; `waited` is `None` for `block=False`.
pub fn exhausted(pool: &'static str, max_size: usize, waited: Option<Duration>) -> Error {
    Error::PoolExhausted {
        pool,
        max_size,
        waited: waited.map_or_else(String::new, |d| {
            format!(
                " (waited {:.3} s; raise max_size or release sooner)",
                d.as_secs_f64()
            )
        }),
    }
}

/// Check a pool's size bounds: `1 <= max_size`, `min_size <= max_size`.
pub fn check_sizes(min_size: usize, max_size: usize) -> crate::Result<()> {
    if max_size == 0 {
        return Err(Error::invalid("max_size", 0, "must be at least 1"));
    }
    if min_size > max_size {
        return Err(Error::invalid(
            "min_size",
            min_size,
            format!("must be <= max_size={max_size}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
