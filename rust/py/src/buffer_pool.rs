//! Bindings for `BufferPool` / `PooledBuffer`.
//!
//! The fast path (`acquire()` + `release()` of a buffer) stays attached to
//! the interpreter: it is ~100 ns of lock-free work, far less than a GIL
//! hand-off. Only waiting for an exhausted pool detaches, in short slices
//! with a signal check between them (Ctrl-C works while waiting).
//!
//! `PooledBuffer` objects are recycled too: a released wrapper goes to a
//! small queue and is reused only when that queue holds the last reference
//! to it (refcount 1), so a stale reference to a released buffer can never
//! observe a later holder's buffer.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use overdrive_core::pool::{Buf, BufferPool, BufferPoolConfig, Lease, LeaseError};
use overdrive_core::Error;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::args;
use crate::errors::{bad_value, to_py, IntoPy};
use crate::wait::{check_timeout, wait_detached};

/// Spare `PooledBuffer` wrapper objects kept per pool.
const SPARE_WRAPPERS: usize = 64;

fn lease_error(py: Python<'_>, what: &'static str, e: LeaseError) -> PyErr {
    match e {
        LeaseError::Released => to_py(
            py,
            Error::Released {
                what,
                hint: "; acquire a new one from the pool",
            },
        ),
        LeaseError::Exported(exports) => to_py(py, Error::BufferExported { exports }),
    }
}

/// What a pool and its buffers share.
struct Shared {
    core: BufferPool,
    /// Released wrapper objects waiting for reuse.
    spare: ArrayQueue<Py<PyPooledBuffer>>,
    /// False once the `BufferPool` object is gone: wrappers are then not
    /// kept (that would be a reference cycle through `spare`).
    alive: AtomicBool,
}

/// A pool of fixed-size, reusable buffers.
#[pyclass(frozen, weakref, module = "overdrive._core", name = "BufferPool")]
pub(crate) struct PyBufferPool {
    shared: Arc<Shared>,
}

impl Drop for PyBufferPool {
    fn drop(&mut self) {
        self.shared.alive.store(false, Relaxed);
        while self.shared.spare.pop().is_some() {}
    }
}

impl PyBufferPool {
    /// Hand `buf` out in a recycled wrapper when one is free, else a new one.
    fn wrap<'py>(&self, py: Python<'py>, mut buf: Buf) -> PyResult<Bound<'py, PyPooledBuffer>> {
        let shared = &self.shared;
        for _ in 0..2 {
            let Some(w) = shared.spare.pop() else { break };
            // SAFETY: `w` is a valid object and we are attached. The count
            // is exact on GIL builds (this abi3 module never loads on
            // free-threaded ones).
            let sole_owner = unsafe { ffi::Py_REFCNT(w.as_ptr()) } == 1;
            if sole_owner {
                match w.get().lease.hold(buf) {
                    Ok(()) => return Ok(w.into_bound(py)),
                    Err(b) => buf = b,
                }
            } else if let Err(w) = shared.spare.push(w) {
                // Still referenced by user code: try it again later.
                drop(w);
            }
        }
        Bound::new(
            py,
            PyPooledBuffer {
                lease: Lease::holding(buf),
                shared: Arc::clone(shared),
            },
        )
    }
}

#[pymethods]
impl PyBufferPool {
    /// Registers the new object with `overdrive.telemetry` (construction only).
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) {
        crate::telemetry_hook::announce(slf.as_any(), "buffer_pool");
    }

    #[new]
    #[pyo3(signature = (buffer_size = 65536, min_size = 8, max_size = 1024, zero_on_release = false, window_s = 1.0))]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::buffer_size)] buffer_size: usize,
        #[pyo3(from_py_with = args::min_size)] min_size: usize,
        #[pyo3(from_py_with = args::max_size)] max_size: usize,
        #[pyo3(from_py_with = args::zero_on_release)] zero_on_release: bool,
        #[pyo3(from_py_with = args::window_s)] window_s: f64,
    ) -> PyResult<Self> {
        if !(window_s.is_finite() && window_s > 0.0) {
            return Err(bad_value(
                py,
                "window_s",
                window_s,
                "must be a finite number of seconds > 0",
            ));
        }
        let window = Duration::try_from_secs_f64(window_s)
            .map_err(|_| bad_value(py, "window_s", window_s, "too large"))?;
        let cfg = BufferPoolConfig {
            buffer_size,
            min_size,
            max_size,
            zero_on_release,
            window,
        };
        let core = py.detach(|| BufferPool::new(cfg)).py(py)?;
        Ok(PyBufferPool {
            shared: Arc::new(Shared {
                core,
                spare: ArrayQueue::new(SPARE_WRAPPERS),
                alive: AtomicBool::new(true),
            }),
        })
    }

    /// Take a buffer. When all `max_size` buffers are out: wait up to
    /// `timeout` seconds (None: forever), or raise at once if `block` is
    /// False; PoolExhausted (a TimeoutError) when none came back.
    #[pyo3(signature = (timeout = None, block = true))]
    fn acquire<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        #[pyo3(from_py_with = args::block)] block: bool,
    ) -> PyResult<Bound<'py, PyPooledBuffer>> {
        // Checked before the fast path: a bad timeout is an error even when a
        // buffer is free (None, the common case, costs nothing to check).
        let timeout = check_timeout(py, timeout)?;
        let core = &self.shared.core;
        if let Some(buf) = core.try_acquire().py(py)? {
            return self.wrap(py, buf);
        }
        if !block {
            return Err(to_py(py, core.exhausted_error(None)));
        }
        match wait_detached(py, timeout, |slice| core.wait_for_buffer(slice))? {
            (Some(buf), _) => self.wrap(py, buf),
            (None, waited) => Err(to_py(py, core.exhausted_error(Some(waited)))),
        }
    }

    /// A buffer now, or None when all `max_size` are out (never waits; not
    /// counted as exhausted).
    fn try_acquire<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyPooledBuffer>>> {
        match self.shared.core.try_acquire().py(py)? {
            Some(buf) => self.wrap(py, buf).map(Some),
            None => Ok(None),
        }
    }

    /// Free idle buffers now, keeping `keep` (default `min_size`) idle.
    /// Returns the number of bytes freed.
    #[pyo3(signature = (keep = None))]
    fn trim(&self, #[pyo3(from_py_with = args::keep)] keep: Option<usize>) -> usize {
        let core = &self.shared.core;
        let keep = keep.unwrap_or(core.config().min_size);
        while self.shared.spare.pop().is_some() {}
        core.trim(keep)
    }

    /// Bytes per buffer.
    #[getter]
    fn buffer_size(&self) -> usize {
        self.shared.core.buffer_size()
    }

    /// Buffers kept even when idle.
    #[getter]
    fn min_size(&self) -> usize {
        self.shared.core.config().min_size
    }

    /// Most buffers in existence; acquire waits when all are out.
    #[getter]
    fn max_size(&self) -> usize {
        self.shared.core.config().max_size
    }

    /// Whether buffers are wiped when released.
    #[getter]
    fn zero_on_release(&self) -> bool {
        self.shared.core.config().zero_on_release
    }

    /// Length of the auto-sizing window in seconds.
    #[getter]
    fn window_s(&self) -> f64 {
        self.shared.core.config().window.as_secs_f64()
    }

    /// Counters: hits, misses, hit_ratio, in_use, idle, high_water,
    /// bytes_allocated, capacity, grows, shrinks, freed, exhausted, waiters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let core = &self.shared.core;
        let s = core.stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("hit_ratio", s.hit_ratio())?;
        d.set_item("in_use", s.in_use)?;
        d.set_item("idle", s.idle)?;
        d.set_item("high_water", s.high_water)?;
        d.set_item("bytes_allocated", s.bytes_allocated)?;
        d.set_item("capacity", s.capacity)?;
        d.set_item("grows", s.grows)?;
        d.set_item("shrinks", s.shrinks)?;
        d.set_item("freed", s.freed)?;
        d.set_item("exhausted", s.exhausted)?;
        d.set_item("waiters", core.waiters())?;
        d.set_item("buffer_size", core.buffer_size())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let c = self.shared.core.config();
        let s = self.shared.core.stats();
        format!(
            "BufferPool(buffer_size={}, min_size={}, max_size={}, zero_on_release={}, in_use={}, idle={})",
            c.buffer_size,
            c.min_size,
            c.max_size,
            if c.zero_on_release { "True" } else { "False" },
            s.in_use,
            s.idle
        )
    }
}

/// One buffer lent by a `BufferPool`; supports the buffer protocol.
#[pyclass(frozen, module = "overdrive._core", name = "PooledBuffer")]
pub(crate) struct PyPooledBuffer {
    lease: Lease,
    shared: Arc<Shared>,
}

impl Drop for PyPooledBuffer {
    fn drop(&mut self) {
        // Dropped while still held (never released): return the memory.
        if let Ok(buf) = self.lease.take() {
            self.shared.core.release(buf);
        }
    }
}

fn release_buffer(slf: &Bound<'_, PyPooledBuffer>) -> Result<(), LeaseError> {
    let this = slf.get();
    let buf = this.lease.take()?;
    this.shared.core.release(buf);
    if this.shared.alive.load(Relaxed) {
        // A full spare queue just drops the extra reference.
        let _ = this.shared.spare.push(slf.clone().unbind());
    }
    Ok(())
}

#[pymethods]
impl PyPooledBuffer {
    /// Give the buffer back to its pool. Raises BufferExportedError (a
    /// BufferError) while a memoryview or numpy array of it is alive, and
    /// ReleasedError (a ValueError) if it was already released.
    fn release(slf: &Bound<'_, Self>) -> PyResult<()> {
        release_buffer(slf).map_err(|e| lease_error(slf.py(), "the PooledBuffer", e))
    }

    /// True once released: the buffer can no longer be used.
    #[getter]
    fn released(&self) -> bool {
        !self.lease.is_held()
    }

    /// Live exports (memoryviews, numpy arrays) of this buffer.
    #[getter]
    fn exports(&self) -> usize {
        self.lease.exports()
    }

    /// Size in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.lease.len()
    }

    fn __len__(&self) -> usize {
        self.lease.len()
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        if slf.get().lease.is_held() {
            Ok(slf.clone())
        } else {
            Err(lease_error(
                slf.py(),
                "the PooledBuffer",
                LeaseError::Released,
            ))
        }
    }

    /// Release on leaving the block (no-op if already released inside it).
    #[pyo3(signature = (_exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        slf: &Bound<'_, Self>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        match release_buffer(slf) {
            Ok(()) | Err(LeaseError::Released) => Ok(false),
            Err(e) => Err(lease_error(slf.py(), "the PooledBuffer", e)),
        }
    }

    /// # Safety
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        if view.is_null() {
            return Err(PyBufferError::new_err("__getbuffer__ got a NULL view"));
        }
        let this = slf.get();
        let ptr = this
            .lease
            .export()
            .map_err(|e| lease_error(py, "the PooledBuffer", e))?;
        let len = isize::try_from(this.lease.len()).unwrap_or(isize::MAX);
        // SAFETY: `view` is non-null and CPython's to fill; `ptr` points to
        // `len` bytes that stay allocated and owned by this lease until the
        // matching `__releasebuffer__` (release is refused while exported).
        // FillInfo takes a new reference to `slf` for `view.obj`.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr.as_ptr().cast(), len, 0, flags)
        };
        if rc != 0 {
            this.lease.unexport();
            return Err(PyErr::fetch(py));
        }
        Ok(())
    }

    /// # Safety
    /// Called by CPython once per successful `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.lease.unexport();
    }

    fn __repr__(&self) -> String {
        format!(
            "<PooledBuffer nbytes={} {}>",
            self.lease.len(),
            if self.lease.is_held() {
                format!("held exports={}", self.lease.exports())
            } else {
                "released".to_string()
            }
        )
    }
}
