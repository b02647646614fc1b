//! A lock for data only ever touched while attached to the interpreter.
//!
//! The interpreter lock already serialises every thread that touches the
//! data, so the lock only has to cover the stretches where the holder runs
//! Python code that may let the interpreter go (a key's `__eq__`): a plain
//! "busy" flag, set and cleared with ordinary loads and stores (no atomic
//! read-modify-write on the hot path: a check-then-set cannot be split by
//! another thread, since switching threads needs the interpreter lock,
//! which Rust code between the check and the set never lets go). A thread
//! that finds the flag set waits detached, never blocking the holder.
//!
//! Sound only where the interpreter lock exists: the module is declared
//! `gil_used` (pyo3's default), so a free-threaded interpreter re-enables
//! the lock when it imports `overdrive._core`.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::Python;

/// `T` behind a busy flag that only attached threads touch.
pub(crate) struct GilLock<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: every access goes through `try_enter`/`enter` (which need a
// `Python` token, i.e. an attached thread) or `&mut self`, and the busy flag
// keeps one guard at a time; T itself crosses threads, so it must be Send.
unsafe impl<T: Send> Sync for GilLock<T> {}

/// Exclusive access to the value until dropped.
pub(crate) struct GilGuard<'a, T> {
    lock: &'a GilLock<T>,
}

impl<T> GilLock<T> {
    pub(crate) fn new(value: T) -> Self {
        GilLock {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, unless a guard is out (its holder may be this very
    /// thread, inside Python code it called while holding the guard).
    #[inline]
    pub(crate) fn try_enter<'a>(&'a self, _py: Python<'_>) -> Option<GilGuard<'a, T>> {
        // Attached: no other thread runs between this load and the store.
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        self.busy.store(true, Ordering::Relaxed);
        Some(GilGuard { lock: self })
    }

    /// [`GilLock::try_enter`] for callers without a token that are
    /// attached all the same (the garbage collector's traverse and clear).
    ///
    /// # Safety
    /// The calling thread must be attached to the interpreter.
    #[inline]
    pub(crate) unsafe fn try_enter_attached(&self) -> Option<GilGuard<'_, T>> {
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        self.busy.store(true, Ordering::Relaxed);
        Some(GilGuard { lock: self })
    }

    /// Wait, detached, until no guard is out (it may be out again by the
    /// time the caller re-attaches: retry `try_enter`).
    pub(crate) fn wait_free(&self, py: Python<'_>) {
        let busy = &self.busy;
        py.detach(|| {
            let mut spins = 0u32;
            while busy.load(Ordering::Acquire) {
                if spins < 64 {
                    std::thread::yield_now();
                    spins += 1;
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        });
    }
}

impl<T> Deref for GilGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the busy flag grants this guard sole access.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for GilGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the busy flag grants this guard sole access.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for GilGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.busy.store(false, Ordering::Release);
    }
}
