//! Bindings for the pools: `BufferPool` / `PooledBuffer` and
//! `ObjectPool` / `PooledObject`.
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
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use overdrive_core::pool::{
    Buf, BufferPool, BufferPoolConfig, Lease, LeaseError, ObjectPool, ObjectPoolConfig, Take,
};
use overdrive_core::Error;
use parking_lot::Mutex;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::PyTraverseError;

use crate::errors::{bad_value, to_py, IntoPy};

/// Longest stretch spent detached while waiting, between signal checks.
const WAIT_SLICE: Duration = Duration::from_millis(50);
/// Spare `PooledBuffer` wrapper objects kept per pool.
const SPARE_WRAPPERS: usize = 64;

/// A non-negative, finite timeout in seconds (None: wait forever).
fn check_timeout(py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        // A timeout too large for a Duration waits forever, like None.
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Duration::try_from_secs_f64(t).ok()),
        Some(t) => Err(bad_value(
            py,
            "timeout",
            t,
            "must be a finite number of seconds >= 0, or None to wait forever",
        )),
    }
}

fn check_size(py: Python<'_>, param: &'static str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| bad_value(py, param, value, "must be >= 0"))
}

/// Wait for `attempt` in detached slices until it yields or `timeout` passes.
/// `attempt` runs detached: it must touch no Python object.
fn wait_detached<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    attempt: impl Fn(Duration) -> overdrive_core::Result<Option<T>> + Sync,
) -> PyResult<(Option<T>, Duration)> {
    let start = Instant::now();
    loop {
        let slice = match timeout {
            None => WAIT_SLICE,
            Some(t) => t.saturating_sub(start.elapsed()).min(WAIT_SLICE),
        };
        if let Some(v) = py.detach(|| attempt(slice)).py(py)? {
            return Ok((Some(v), start.elapsed()));
        }
        let waited = start.elapsed();
        if timeout.is_some_and(|t| waited >= t) {
            return Ok((None, waited));
        }
        py.check_signals()?;
    }
}

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

// --- BufferPool ----------------------------------------------------------

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
#[pyclass(frozen, module = "overdrive._core", name = "BufferPool")]
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
    #[new]
    #[pyo3(signature = (buffer_size = 65536, min_size = 8, max_size = 1024, zero_on_release = false, window_s = 1.0))]
    fn new(
        py: Python<'_>,
        buffer_size: i64,
        min_size: i64,
        max_size: i64,
        zero_on_release: bool,
        window_s: f64,
    ) -> PyResult<Self> {
        let buffer_size = usize::try_from(buffer_size)
            .map_err(|_| bad_value(py, "buffer_size", buffer_size, "must be >= 1 byte"))?;
        let min_size = check_size(py, "min_size", min_size)?;
        let max_size = check_size(py, "max_size", max_size)?;
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
        timeout: Option<f64>,
        block: bool,
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
    fn trim(&self, py: Python<'_>, keep: Option<i64>) -> PyResult<usize> {
        let core = &self.shared.core;
        let keep = match keep {
            None => core.config().min_size,
            Some(k) => check_size(py, "keep", k)?,
        };
        while self.shared.spare.pop().is_some() {}
        Ok(core.trim(keep))
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

// --- ObjectPool ----------------------------------------------------------

struct Callbacks {
    factory: Py<PyAny>,
    reset: Option<Py<PyAny>>,
    validate: Option<Py<PyAny>>,
}

/// A pool of expensive Python objects (clients, parsers, sessions, arrays).
#[pyclass(frozen, generic, module = "overdrive._core", name = "ObjectPool")]
pub(crate) struct PyObjectPool {
    core: ObjectPool<Py<PyAny>>,
    callbacks: Mutex<Option<Callbacks>>,
}

type Hooks = (Py<PyAny>, Option<Py<PyAny>>, Option<Py<PyAny>>);

impl PyObjectPool {
    /// Copies of the callbacks, so none is called under the lock.
    fn hooks(&self, py: Python<'_>) -> PyResult<Hooks> {
        match &*self.callbacks.lock() {
            Some(c) => Ok((
                c.factory.clone_ref(py),
                c.reset.as_ref().map(|r| r.clone_ref(py)),
                c.validate.as_ref().map(|v| v.clone_ref(py)),
            )),
            None => Err(to_py(
                py,
                Error::Released {
                    what: "the ObjectPool",
                    hint: " (cleared by the garbage collector); create a new pool",
                },
            )),
        }
    }

    /// Drop expired idle objects (outside every lock).
    fn evict(&self) {
        if self.core.config().max_idle.is_some() {
            drop(self.core.evict_expired(Instant::now()));
        }
    }

    /// Borrow an object, waiting up to `timeout` when `block`; `None` when
    /// the pool stayed exhausted.
    fn borrow(
        slf: &Bound<'_, Self>,
        timeout: Option<Duration>,
        block: bool,
    ) -> PyResult<Option<Py<PyPooledObject>>> {
        let py = slf.py();
        let this = slf.get();
        let (factory, _, validate) = this.hooks(py)?;
        this.evict();
        let start = Instant::now();
        let value = loop {
            let got = match this.core.take() {
                Take::Exhausted if block => {
                    let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
                    let (got, _) = wait_detached(py, left, |slice| {
                        Ok(match this.core.take_timeout(slice) {
                            Take::Exhausted => None,
                            got => Some(got),
                        })
                    })?;
                    got.unwrap_or(Take::Exhausted)
                }
                got => got,
            };
            match got {
                Take::Idle(obj) => {
                    let Some(check) = &validate else {
                        this.core.count_borrow(true);
                        break obj;
                    };
                    let verdict = check
                        .call1(py, (obj.clone_ref(py),))
                        .and_then(|ok| ok.is_truthy(py));
                    match verdict {
                        Ok(true) => {
                            this.core.count_borrow(true);
                            break obj;
                        }
                        Ok(false) => this.core.discard(true), // invalid: replace it
                        Err(e) => {
                            this.core.discard(true);
                            return Err(e);
                        }
                    }
                }
                Take::Create => {
                    this.core.count_borrow(false);
                    break this.create(py, &factory)?;
                }
                Take::Exhausted => return Ok(None),
            }
        };
        Py::new(
            py,
            PyPooledObject {
                value: Mutex::new(Some(value)),
                pool: slf.clone().unbind(),
            },
        )
        .map(Some)
    }

    /// A new object from the factory for a reserved slot.
    fn create(&self, py: Python<'_>, factory: &Py<PyAny>) -> PyResult<Py<PyAny>> {
        match factory.call0(py) {
            Ok(obj) => {
                self.core.count_created();
                Ok(obj)
            }
            Err(e) => {
                self.core.discard(true);
                Err(e)
            }
        }
    }
}

#[pymethods]
impl PyObjectPool {
    #[new]
    #[pyo3(signature = (factory, reset = None, validate = None, min_size = 0, max_size = 64, max_idle_s = None))]
    fn new(
        py: Python<'_>,
        factory: Py<PyAny>,
        reset: Option<Py<PyAny>>,
        validate: Option<Py<PyAny>>,
        min_size: i64,
        max_size: i64,
        max_idle_s: Option<f64>,
    ) -> PyResult<Self> {
        for (name, f) in [
            ("factory", Some(&factory)),
            ("reset", reset.as_ref()),
            ("validate", validate.as_ref()),
        ] {
            if let Some(f) = f {
                if !f.bind(py).is_callable() {
                    let ty = f
                        .bind(py)
                        .get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string());
                    return Err(crate::errors::wrong_type(
                        py,
                        format!("{name} must be callable, not {ty}"),
                    ));
                }
            }
        }
        let min_size = check_size(py, "min_size", min_size)?;
        let max_size = check_size(py, "max_size", max_size)?;
        let max_idle = match max_idle_s {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(
                Duration::try_from_secs_f64(s)
                    .map_err(|_| bad_value(py, "max_idle_s", s, "too large"))?,
            ),
            Some(s) => {
                return Err(bad_value(
                    py,
                    "max_idle_s",
                    s,
                    "must be a finite number of seconds > 0, or None",
                ))
            }
        };
        let core = ObjectPool::new(ObjectPoolConfig {
            min_size,
            max_size,
            max_idle,
        })
        .py(py)?;
        let pool = PyObjectPool {
            core,
            callbacks: Mutex::new(Some(Callbacks {
                factory,
                reset,
                validate,
            })),
        };
        let (factory, _, _) = pool.hooks(py)?;
        for _ in 0..min_size {
            if !pool.core.reserve() {
                break;
            }
            match factory.call0(py) {
                Ok(obj) => pool.core.put_new(obj),
                Err(e) => {
                    pool.core.discard(false);
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Borrow an object: an idle one (checked by `validate`, if given) or a
    /// new one from `factory`. When all `max_size` are out: wait up to
    /// `timeout` seconds (None: forever), or raise at once if `block` is
    /// False; PoolExhausted (a TimeoutError) when none came back.
    #[pyo3(signature = (timeout = None, block = true))]
    fn acquire(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        block: bool,
    ) -> PyResult<Py<PyPooledObject>> {
        let py = slf.py();
        let timeout = check_timeout(py, timeout)?;
        let start = Instant::now();
        match Self::borrow(slf, timeout, block)? {
            Some(lease) => Ok(lease),
            None => {
                let waited = block.then(|| start.elapsed());
                Err(to_py(py, slf.get().core.exhausted_error(waited)))
            }
        }
    }

    /// An object now, or None when all `max_size` are out (never waits;
    /// not counted as exhausted).
    fn try_acquire(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyPooledObject>>> {
        Self::borrow(slf, None, false)
    }

    /// Drop idle objects beyond `keep` (default `min_size`) now; returns how many.
    #[pyo3(signature = (keep = None))]
    fn trim(&self, py: Python<'_>, keep: Option<i64>) -> PyResult<usize> {
        let keep = match keep {
            None => self.core.config().min_size,
            Some(k) => check_size(py, "keep", k)?,
        };
        let dropped = self.core.trim(keep);
        Ok(dropped.len())
    }

    /// Most objects in existence; acquire waits when all are out.
    #[getter]
    fn max_size(&self) -> usize {
        self.core.config().max_size
    }

    /// Objects kept even when idle.
    #[getter]
    fn min_size(&self) -> usize {
        self.core.config().min_size
    }

    /// Idle objects older than this many seconds are evicted (None: never).
    #[getter]
    fn max_idle_s(&self) -> Option<f64> {
        self.core.config().max_idle.map(|d| d.as_secs_f64())
    }

    /// Counters: hits, misses, hit_ratio, in_use, idle, high_water, created,
    /// discarded, evicted, exhausted, waiters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.evict();
        let s = self.core.stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("hit_ratio", s.hit_ratio())?;
        d.set_item("in_use", s.in_use)?;
        d.set_item("idle", s.idle)?;
        d.set_item("high_water", s.high_water)?;
        d.set_item("created", s.created)?;
        d.set_item("discarded", s.discarded)?;
        d.set_item("evicted", s.evicted)?;
        d.set_item("exhausted", s.exhausted)?;
        d.set_item("waiters", self.core.waiters())?;
        Ok(d)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(c) = self.callbacks.try_lock() {
            if let Some(c) = &*c {
                visit.call(&c.factory)?;
                if let Some(r) = &c.reset {
                    visit.call(r)?;
                }
                if let Some(v) = &c.validate {
                    visit.call(v)?;
                }
            }
        }
        self.core.try_for_each_idle(|obj| visit.call(obj))?;
        Ok(())
    }

    fn __clear__(&self) {
        let callbacks = self.callbacks.lock().take();
        drop(callbacks);
        drop(self.core.drain_idle());
    }

    fn __repr__(&self) -> String {
        let s = self.core.stats();
        let c = self.core.config();
        format!(
            "ObjectPool(min_size={}, max_size={}, in_use={}, idle={})",
            c.min_size, c.max_size, s.in_use, s.idle
        )
    }
}

/// One object lent by an `ObjectPool`; a context manager yielding the object.
#[pyclass(frozen, generic, module = "overdrive._core", name = "PooledObject")]
pub(crate) struct PyPooledObject {
    value: Mutex<Option<Py<PyAny>>>,
    pool: Py<PyObjectPool>,
}

impl PyPooledObject {
    fn released_error(py: Python<'_>) -> PyErr {
        to_py(
            py,
            Error::Released {
                what: "the PooledObject",
                hint: "; acquire a new one from the pool",
            },
        )
    }

    /// Return the object: reset it (outside every lock), then pool it; an
    /// object whose reset raised is discarded and the error re-raised.
    fn give_back(&self, py: Python<'_>) -> PyResult<bool> {
        let Some(obj) = self.value.lock().take() else {
            return Ok(false);
        };
        let pool = self.pool.get();
        let reset = match pool.hooks(py) {
            Ok((_, reset, _)) => reset,
            Err(e) => {
                pool.core.discard(true);
                return Err(e);
            }
        };
        if let Some(reset) = reset {
            if let Err(e) = reset.call1(py, (obj.clone_ref(py),)) {
                pool.core.discard(true);
                drop(obj);
                return Err(e);
            }
        }
        pool.core.put(obj);
        pool.evict();
        Ok(true)
    }
}

impl Drop for PyPooledObject {
    fn drop(&mut self) {
        // Never released: the object is dropped (not reset, so not pooled)
        // and its slot freed.
        if self.value.get_mut().take().is_some() {
            self.pool.get().core.discard(true);
        }
    }
}

#[pymethods]
impl PyPooledObject {
    /// The borrowed object (ReleasedError once released).
    #[getter]
    fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &*self.value.lock() {
            Some(v) => Ok(v.clone_ref(py)),
            None => Err(Self::released_error(py)),
        }
    }

    /// True once released.
    #[getter]
    fn released(&self) -> bool {
        self.value.lock().is_none()
    }

    /// Give the object back (reset runs first). ReleasedError if already released.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        if self.give_back(py)? {
            Ok(())
        } else {
            Err(Self::released_error(py))
        }
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.value(py)
    }

    /// Release on leaving the block (no-op if already released inside it).
    #[pyo3(signature = (_exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.give_back(py)?;
        Ok(false)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.pool)?;
        if let Some(v) = self.value.try_lock() {
            if let Some(v) = &*v {
                visit.call(v)?;
            }
        }
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        // Copy the reference out: repr() runs Python code, never under the lock.
        let value = self.value.lock().as_ref().map(|v| v.clone_ref(py));
        match value {
            Some(v) => {
                let r = v
                    .bind(py)
                    .repr()
                    .map_or_else(|_| "?".to_string(), |r| r.to_string());
                format!("<PooledObject {r}>")
            }
            None => "<PooledObject released>".to_string(),
        }
    }
}
