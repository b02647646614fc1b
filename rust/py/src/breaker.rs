//! `_BreakerCore`: the per-call entry of `overdrive.resilience.CircuitBreaker`.
//!
//! `CircuitBreaker` (Python) subclasses this class. Its `call()` is here, so
//! the two paths that run on every call cost no Python frame of their own:
//!
//! - closed, lock-free ("fast") breaker: call the function; on success take
//!   the next number of the success counter and, at `_check_at`, let Python
//!   evaluate the window; on an exception hand it to Python's `_closed_error`
//!   and re-raise it;
//! - open breaker inside its open period: count the rejection and raise
//!   `CircuitOpen(name, retry_after)` (or answer with the fallback).
//!
//! Everything else (half-open probes, Redis-shared state, time windows, slow
//! calls) goes to Python's `_call_slow`, which owns the semantics. The state
//! the fast paths read (`_fast`, `_reject_until`, `_ctr`, `_check_at`,
//! `_n_rejected`) lives here as properties that the Python code sets.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

type Obj = Py<PyAny>;

/// The class of `time.monotonic`'s clock: CLOCK_MONOTONIC in seconds.
#[cfg(target_os = "linux")]
fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // The same arithmetic as CPython's time.monotonic(): nanoseconds / 1e9.
    (ts.tv_sec * 1_000_000_000 + ts.tv_nsec) as f64 / 1e9
}

#[cfg(not(target_os = "linux"))]
fn monotonic() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn circuit_open(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CELL.import(py, "overdrive.exceptions", "CircuitOpen")
}

/// What `_core_init` sets once: the breaker's name, its clock (`None` for
/// `time.monotonic`, read natively) and its fallback.
struct Fixed {
    name: Obj,
    clock: Option<Obj>,
    fallback: Option<Obj>,
}

/// Base class of `CircuitBreaker` (private): its per-call paths in Rust.
#[pyclass(
    subclass,
    frozen,
    weakref,
    module = "overdrive._core",
    name = "_BreakerCore"
)]
pub(crate) struct PyBreakerCore {
    /// Set by `_core_init`; taken by `__clear__` (the fallback may refer back).
    fixed: Mutex<Option<Arc<Fixed>>>,
    fast: AtomicBool,
    /// f64 bits: calls before this time are refused without Python.
    reject_until: AtomicU64,
    rejected: AtomicU64,
    check_at: AtomicI64,
    /// The success counter of the current closed epoch (`itertools.count`).
    ctr: Mutex<Option<Obj>>,
}

impl PyBreakerCore {
    /// `next(ctr) == check_at`.
    fn count_success(&self, py: Python<'_>) -> PyResult<bool> {
        let ctr = match &*self.ctr.lock() {
            Some(c) => c.clone_ref(py),
            None => return Ok(false),
        };
        // SAFETY: ctr is a live object kept alive by the clone above;
        // PyIter_Next returns a new reference or NULL (exception set, or an
        // exhausted iterator with none set).
        let n = unsafe {
            let r = ffi::PyIter_Next(ctr.as_ptr());
            if r.is_null() {
                return match PyErr::take(py) {
                    Some(e) => Err(e),
                    None => Ok(false),
                };
            }
            Bound::from_owned_ptr(py, r)
        };
        Ok(n.extract::<i64>()? == self.check_at.load(Ordering::Relaxed))
    }

    fn now(&self, py: Python<'_>, fixed: &Fixed) -> PyResult<f64> {
        match &fixed.clock {
            None => Ok(monotonic()),
            Some(c) => c.call0(py)?.extract::<f64>(py),
        }
    }
}

#[pymethods]
impl PyBreakerCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self {
            fixed: Mutex::new(None),
            fast: AtomicBool::new(false),
            reject_until: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            rejected: AtomicU64::new(0),
            check_at: AtomicI64::new(0),
            ctr: Mutex::new(None),
        }
    }

    /// Set the name, the clock (`None`: `time.monotonic`) and the fallback, once.
    fn _core_init(&self, name: Obj, clock: Option<Obj>, fallback: Option<Obj>) -> PyResult<()> {
        let mut slot = self.fixed.lock();
        if slot.is_some() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "_core_init called twice",
            ));
        }
        *slot = Some(Arc::new(Fixed {
            name,
            clock,
            fallback,
        }));
        Ok(())
    }

    /// `fn(*args, **kwargs)` if the breaker admits it (else CircuitOpen, or
    /// the fallback's value), recording the outcome; the result or exception
    /// passes through.
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn call(
        slf: &Bound<'_, Self>,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Obj> {
        let py = slf.py();
        let this = slf.get();
        if this.fast.load(Ordering::Relaxed) {
            return match func.call(args, kwargs) {
                Ok(result) => {
                    if this.count_success(py)? {
                        slf.call_method0("_evaluate_at_min")?;
                    }
                    Ok(result.unbind())
                }
                Err(err) => match slf.call_method1("_closed_error", (err.value(py),)) {
                    Ok(_) => Err(err),
                    Err(new) => {
                        // As Python's `except ...: handler()` would: the
                        // handler's exception carries the call's as context.
                        new.value(py).setattr("__context__", err.value(py))?;
                        Err(new)
                    }
                },
            };
        }
        let until = f64::from_bits(this.reject_until.load(Ordering::Relaxed));
        if until > f64::NEG_INFINITY {
            let fixed = this.fixed.lock().clone();
            if let Some(fixed) = fixed {
                let now = this.now(py, &fixed)?;
                if now < until {
                    this.rejected.fetch_add(1, Ordering::Relaxed);
                    if let Some(fb) = &fixed.fallback {
                        return Ok(fb.bind(py).call(args, kwargs)?.unbind());
                    }
                    let class = circuit_open(py)?;
                    return Err(PyErr::from_type(
                        class.clone(),
                        (fixed.name.clone_ref(py), until - now),
                    ));
                }
            }
        }
        Ok(slf
            .call_method1("_call_slow", (func, args, kwargs))?
            .unbind())
    }

    /// True while calls take the closed, lock-free path.
    #[getter(_fast)]
    fn get_fast(&self) -> bool {
        self.fast.load(Ordering::Relaxed)
    }

    #[setter(_fast)]
    fn set_fast(&self, value: bool) {
        self.fast.store(value, Ordering::Relaxed);
    }

    /// Calls before this time (the breaker's clock) are refused.
    #[getter(_reject_until)]
    fn get_reject_until(&self) -> f64 {
        f64::from_bits(self.reject_until.load(Ordering::Relaxed))
    }

    #[setter(_reject_until)]
    fn set_reject_until(&self, value: f64) {
        self.reject_until.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Calls refused so far.
    #[getter(_n_rejected)]
    fn get_n_rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    #[setter(_n_rejected)]
    fn set_n_rejected(&self, value: u64) {
        self.rejected.store(value, Ordering::Relaxed);
    }

    /// The success number at which the window is first evaluated.
    #[getter(_check_at)]
    fn get_check_at(&self) -> i64 {
        self.check_at.load(Ordering::Relaxed)
    }

    #[setter(_check_at)]
    fn set_check_at(&self, value: i64) {
        self.check_at.store(value, Ordering::Relaxed);
    }

    /// The success counter of the current closed epoch.
    #[getter(_ctr)]
    fn get_ctr(&self, py: Python<'_>) -> Option<Obj> {
        self.ctr.lock().as_ref().map(|c| c.clone_ref(py))
    }

    #[setter(_ctr)]
    fn set_ctr(&self, value: Obj) {
        let old = self.ctr.lock().replace(value);
        drop(old); // outside the lock: a decref may run Python code
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(guard) = self.fixed.try_lock() {
            if let Some(f) = &*guard {
                visit.call(&f.name)?;
                if let Some(c) = &f.clock {
                    visit.call(c)?;
                }
                if let Some(fb) = &f.fallback {
                    visit.call(fb)?;
                }
            }
        }
        if let Some(guard) = self.ctr.try_lock() {
            if let Some(c) = &*guard {
                visit.call(c)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = self.ctr.lock().take();
        drop(old);
        let fixed = self.fixed.lock().take();
        drop(fixed); // outside the locks: decrefs may run Python code
    }
}
