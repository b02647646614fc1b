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
//!
//! Fork: a guard held by another thread when the process forks would stay
//! "held" in the child forever (that thread does not exist there). Each
//! guard records the fork epoch it was taken in (bumped by a
//! `pthread_atfork` child handler); a waiter that finds a guard from an
//! earlier epoch takes the flag over. Sound because every stretch where a
//! holder runs Python code (and so can be stranded by a fork) is a
//! read-only lookup, before the store is changed.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use pyo3::Python;

/// Bumped in every forked child (see the module docs).
static FORK_EPOCH: AtomicU32 = AtomicU32::new(0);
static AT_FORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// Register the fork handler (once per process; called at module init).
pub(crate) fn install_fork_handler() {
    AT_FORK.call_once(|| {
        // SAFETY: registers a plain function that only touches an atomic.
        // A failure (ENOMEM) leaves fork recovery off, nothing else.
        let _ = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

/// How long a waiter stays detached before it re-attaches to check for
/// signals (Ctrl-C must reach a thread waiting on a tier).
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// `T` behind a busy flag that only attached threads touch.
pub(crate) struct GilLock<T> {
    busy: AtomicBool,
    epoch: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: every access goes through `try_enter`/`enter` (which need a
// `Python` token, i.e. an attached thread) or `&mut self`, and the busy flag
// keeps one guard at a time; T itself crosses threads, so it must be Send.
unsafe impl<T: Send> Sync for GilLock<T> {}

/// Exclusive access to the value until dropped.
pub(crate) struct GilGuard<'a, T> {
    lock: &'a GilLock<T>,
    // Not Send/Sync by default: a guard stays on the thread that took it.
    _not_send: PhantomData<*const ()>,
}

impl<T> GilLock<T> {
    pub(crate) fn new(value: T) -> Self {
        GilLock {
            busy: AtomicBool::new(false),
            epoch: AtomicU32::new(0),
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
        self.epoch
            .store(FORK_EPOCH.load(Ordering::Relaxed), Ordering::Relaxed);
        Some(GilGuard {
            lock: self,
            _not_send: PhantomData,
        })
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
        self.epoch
            .store(FORK_EPOCH.load(Ordering::Relaxed), Ordering::Relaxed);
        Some(GilGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// Wait, detached, until no guard is out or about 10 ms passed (the
    /// caller re-attaches, checks for signals and retries `try_enter`: the
    /// flag may be taken again by then). A guard taken before this process
    /// was forked is released here: its holder does not exist any more.
    pub(crate) fn wait_free(&self, py: Python<'_>) {
        if self.busy.load(Ordering::Relaxed)
            && self.epoch.load(Ordering::Relaxed) != FORK_EPOCH.load(Ordering::Relaxed)
        {
            // Attached: no other thread runs between the check and the store.
            self.busy.store(false, Ordering::Release);
            return;
        }
        let busy = &self.busy;
        py.detach(|| {
            let start = Instant::now();
            let mut spins = 0u32;
            while busy.load(Ordering::Acquire) {
                if spins < 64 {
                    std::thread::yield_now();
                    spins += 1;
                } else if start.elapsed() >= WAIT_SLICE {
                    return;
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
