//! Bindings for `ObjectPool` / `PooledObject`: the core holds the idle
//! objects and the slot count; every call into Python (factory, reset,
//! validate) happens here with no core lock held.

use std::time::{Duration, Instant};

use overdrive_core::pool::{ObjectPool, ObjectPoolConfig, Take};
use overdrive_core::Error;
use parking_lot::Mutex;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::PyTraverseError;

use crate::args;
use crate::errors::{bad_value, to_py, IntoPy};
use crate::wait::{check_timeout, wait_detached};

struct Callbacks {
    factory: Py<PyAny>,
    reset: Option<Py<PyAny>>,
    validate: Option<Py<PyAny>>,
}

/// A pool of expensive Python objects (clients, parsers, sessions, arrays).
#[pyclass(
    frozen,
    weakref,
    generic,
    module = "overdrive._core",
    name = "ObjectPool"
)]
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
    /// Registers the new object with `overdrive.telemetry` (construction only).
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) {
        crate::telemetry_hook::announce(slf.as_any(), "object_pool");
    }

    #[new]
    #[pyo3(signature = (factory, reset = None, validate = None, min_size = 0, max_size = 64, max_idle_s = None))]
    fn new(
        py: Python<'_>,
        factory: Py<PyAny>,
        reset: Option<Py<PyAny>>,
        validate: Option<Py<PyAny>>,
        #[pyo3(from_py_with = args::min_size)] min_size: usize,
        #[pyo3(from_py_with = args::max_size)] max_size: usize,
        #[pyo3(from_py_with = args::max_idle_s)] max_idle_s: Option<f64>,
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
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        #[pyo3(from_py_with = args::block)] block: bool,
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
    fn trim(&self, #[pyo3(from_py_with = args::keep)] keep: Option<usize>) -> usize {
        let keep = keep.unwrap_or(self.core.config().min_size);
        self.core.trim(keep).len()
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

    /// Collected in a cycle while still held: as when dropped, the object
    /// is dropped (not reset, so not pooled) and its slot freed.
    fn __clear__(&self) {
        let value = self.value.lock().take();
        if value.is_some() {
            self.pool.get().core.discard(true);
        }
        drop(value);
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
