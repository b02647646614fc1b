//! The state of one handed-out buffer: held or not, and its live exports.
//!
//! One atomic word holds a HELD bit and the export count, so "release only
//! when held and nothing borrows the memory" is a single compare-and-swap:
//! no export can start after a release won, and no release can win while an
//! export is alive.

use std::ptr::{self, NonNull};
use std::sync::atomic::{
    AtomicPtr, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};

use super::Buf;

const HELD: usize = 1 << (usize::BITS - 1);
const COUNT: usize = HELD - 1;

/// Why a lease operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseError {
    /// The lease holds no buffer (released, or never filled).
    Released,
    /// Exports (memoryviews, numpy arrays) still borrow the memory.
    Exported(usize),
}

/// A slot that holds at most one [`Buf`] and counts borrows of its memory.
#[derive(Debug)]
pub struct Lease {
    state: AtomicUsize,
    ptr: AtomicPtr<u8>,
    len: usize,
}

impl Lease {
    /// An empty lease for buffers of `len` bytes.
    pub fn empty(len: usize) -> Self {
        Lease {
            state: AtomicUsize::new(0),
            ptr: AtomicPtr::new(ptr::null_mut()),
            len,
        }
    }

    /// A lease holding `buf`.
    pub fn holding(buf: Buf) -> Self {
        let len = buf.len();
        let lease = Lease::empty(len);
        lease.ptr.store(buf.into_raw().as_ptr(), Relaxed);
        lease.state.store(HELD, Relaxed);
        lease
    }

    /// Put `buf` into an empty lease; gives it back if the lease is not
    /// empty or the length differs.
    pub fn hold(&self, buf: Buf) -> Result<(), Buf> {
        if buf.len() != self.len || self.state.load(Acquire) != 0 {
            return Err(buf);
        }
        let raw = buf.into_raw();
        match self
            .ptr
            .compare_exchange(ptr::null_mut(), raw.as_ptr(), AcqRel, Acquire)
        {
            Ok(_) => {
                self.state.store(HELD, Release);
                Ok(())
            }
            // SAFETY: `raw` came from `into_raw` just above and was not stored.
            Err(_) => Err(unsafe { Buf::from_raw(raw, self.len) }),
        }
    }

    /// Whether the lease holds a buffer.
    #[inline]
    pub fn is_held(&self) -> bool {
        self.state.load(Acquire) & HELD != 0
    }

    /// Live exports.
    #[inline]
    pub fn exports(&self) -> usize {
        self.state.load(Acquire) & COUNT
    }

    /// Buffer length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (buffers have at least one byte).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start an export: the memory stays valid until the matching
    /// [`Lease::unexport`]. Refused when the lease holds no buffer.
    pub fn export(&self) -> Result<NonNull<u8>, LeaseError> {
        let mut s = self.state.load(Acquire);
        loop {
            if s & HELD == 0 {
                return Err(LeaseError::Released);
            }
            if s & COUNT == COUNT {
                return Err(LeaseError::Exported(COUNT));
            }
            match self.state.compare_exchange_weak(s, s + 1, AcqRel, Acquire) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        NonNull::new(self.ptr.load(Acquire)).ok_or(LeaseError::Released)
    }

    /// End an export started by [`Lease::export`].
    pub fn unexport(&self) {
        let _ = self
            .state
            .fetch_update(AcqRel, Acquire, |s| (s & COUNT > 0).then(|| s - 1));
    }

    /// Take the buffer out: only when held and no export is alive.
    pub fn take(&self) -> Result<Buf, LeaseError> {
        if let Err(s) = self.state.compare_exchange(HELD, 0, AcqRel, Acquire) {
            return Err(if s & HELD == 0 {
                LeaseError::Released
            } else {
                LeaseError::Exported(s & COUNT)
            });
        }
        let p = self.ptr.swap(ptr::null_mut(), AcqRel);
        match NonNull::new(p) {
            // SAFETY: the pointer was stored by `holding`/`hold` from
            // `Buf::into_raw` of a `len`-byte buffer, and the swap above made
            // this the only owner.
            Some(p) => Ok(unsafe { Buf::from_raw(p, self.len) }),
            None => Err(LeaseError::Released),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if let Some(p) = NonNull::new(p) {
            // SAFETY: as in `take`; `&mut self` is exclusive.
            drop(unsafe { Buf::from_raw(p, self.len) });
        }
    }
}
