//! Bindings for the load balancer: `Balancer` and its `pick()` context manager.

use std::sync::Arc;
use std::time::{Duration, Instant};

use overdrive_core::balance::{Balancer, BalancerConfig, Strategy};
use parking_lot::Mutex;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};

use crate::args::{self, type_name, FromArg};
use crate::errors::{bad_value, wrong_type, IntoPy};

/// `backends` as weights: an int count (all weight 1.0) or a sequence of weights.
fn backend_weights(
    py: Python<'_>,
    backends: &Bound<'_, PyAny>,
    param: &'static str,
) -> PyResult<Vec<f64>> {
    let wrong = || {
        wrong_type(
            py,
            format!(
                "{param} must be an int count or a sequence of weights, got {}",
                type_name(backends)
            ),
        )
    };
    if backends.is_instance_of::<PyBool>() || backends.is_instance_of::<PyString>() {
        return Err(wrong());
    }
    let Ok(iter) = backends.try_iter() else {
        // A count: an int, or anything with `__index__` (numpy integers).
        if !backends.hasattr(intern!(py, "__index__"))? {
            return Err(wrong());
        }
        let n = usize::from_arg(backends, param)?;
        // Checked before allocating: Balancer(10**12) must not try 8 TB.
        let max = overdrive_core::balance::MAX_BACKENDS;
        if !(1..=max).contains(&n) {
            return Err(bad_value(
                py,
                param,
                n,
                &format!("need between 1 and {max} backends"),
            ));
        }
        return Ok(vec![1.0; n]);
    };
    let mut out = Vec::new();
    for item in iter {
        out.push(f64::from_arg(&item?, param)?);
    }
    if out.is_empty() {
        return Err(bad_value(py, param, "[]", "need at least one backend"));
    }
    Ok(out)
}

/// Chooses among N backends and counts requests in flight.
#[pyclass(frozen, weakref, module = "overdrive._core", name = "Balancer")]
pub(crate) struct PyBalancer {
    inner: Arc<Balancer>,
}

#[pymethods]
impl PyBalancer {
    /// Registers the new object with `overdrive.telemetry` (construction only).
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) {
        crate::telemetry_hook::announce(slf.as_any(), "balancer");
    }

    #[new]
    #[pyo3(signature = (backends = None, strategy = "load_score", *, n_backends = None,
        weights = None, load_weight = 0.7, queue_weight = 0.3,
        max_in_flight = 100, active_request_bias = 1.0, ewma_alpha = 0.2, eject_error_rate = 0.5,
        eject_min_requests = 5, cooldown_s = 10.0, max_ejected_fraction = 0.5))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        backends: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::strategy)] strategy: &str,
        n_backends: Option<&Bound<'_, PyAny>>,
        weights: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::load_weight)] load_weight: f64,
        #[pyo3(from_py_with = args::queue_weight)] queue_weight: f64,
        #[pyo3(from_py_with = args::max_in_flight)] max_in_flight: u64,
        #[pyo3(from_py_with = args::active_request_bias)] active_request_bias: f64,
        #[pyo3(from_py_with = args::ewma_alpha)] ewma_alpha: f64,
        #[pyo3(from_py_with = args::eject_error_rate)] eject_error_rate: f64,
        #[pyo3(from_py_with = args::eject_min_requests)] eject_min_requests: u64,
        #[pyo3(from_py_with = args::cooldown_s)] cooldown_s: f64,
        #[pyo3(from_py_with = args::max_ejected_fraction)] max_ejected_fraction: f64,
    ) -> PyResult<Self> {
        // `backends` positionally, or `n_backends=` / `weights=` by name: exactly one.
        let given: Vec<(&Bound<'_, PyAny>, &'static str)> = [
            (backends, "backends"),
            (n_backends, "n_backends"),
            (weights, "weights"),
        ]
        .into_iter()
        .filter_map(|(v, name)| v.map(|v| (v, name)))
        .collect();
        let w = match given.as_slice() {
            [(one, name)] => backend_weights(py, one, name)?,
            _ => {
                return Err(bad_value(
                    py,
                    "backends",
                    format!("{} values", given.len()),
                    "give exactly one of backends, n_backends= or weights=",
                ))
            }
        };
        let cooldown = Duration::try_from_secs_f64(cooldown_s).map_err(|_| {
            bad_value(
                py,
                "cooldown_s",
                cooldown_s,
                "must be a number of seconds >= 0",
            )
        })?;
        let config = BalancerConfig {
            strategy: Strategy::parse(strategy).py(py)?,
            load_weight,
            queue_weight,
            max_in_flight,
            active_request_bias,
            ewma_alpha,
            eject_error_rate,
            eject_min_requests,
            cooldown,
            max_ejected_fraction,
        };
        Ok(PyBalancer {
            inner: Arc::new(Balancer::new(&w, config).py(py)?),
        })
    }

    /// The strategy's name.
    #[getter]
    fn strategy(&self) -> &'static str {
        self.inner.config().strategy.name()
    }

    /// Pick a backend and count one request in flight on it; returns its index.
    fn acquire(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.acquire().py(py)
    }

    /// End a request on `index`; `latency_s` feeds the latency EWMA, `ok` the error rate.
    #[pyo3(signature = (index, latency_s = None, ok = true))]
    fn release(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::index)] index: usize,
        #[pyo3(from_py_with = args::latency_s)] latency_s: Option<f64>,
        #[pyo3(from_py_with = args::ok)] ok: bool,
    ) -> PyResult<()> {
        self.inner.release(index, latency_s, ok).py(py)
    }

    /// A context manager: `with lb.pick() as i:` acquires on entry and releases
    /// on exit with the measured latency (ok unless the block raised).
    fn pick(&self) -> PyPick {
        PyPick {
            inner: Arc::clone(&self.inner),
            held: Mutex::new(None),
        }
    }

    /// Add a backend; returns its index.
    #[pyo3(signature = (weight = 1.0))]
    fn add(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::weight)] weight: f64,
    ) -> PyResult<usize> {
        self.inner.add(weight).py(py)
    }

    /// Remove a backend for good (its index is not reused).
    fn remove(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::index)] index: usize,
    ) -> PyResult<()> {
        self.inner.remove(index).py(py)
    }

    /// Stop picking a backend until `mark_up`.
    fn mark_down(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::index)] index: usize,
    ) -> PyResult<()> {
        self.inner.mark_down(index).py(py)
    }

    /// Pick a backend again (also ends an ejection early).
    fn mark_up(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::index)] index: usize,
    ) -> PyResult<()> {
        self.inner.mark_up(index).py(py)
    }

    /// Change a backend's weight.
    fn set_weight(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::index)] index: usize,
        #[pyo3(from_py_with = args::weight)] weight: f64,
    ) -> PyResult<()> {
        self.inner.set_weight(index, weight).py(py)
    }

    /// Record a backend's own queue utilisation (0..1) for `load_score`.
    fn report_queue(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::index)] index: usize,
        #[pyo3(from_py_with = args::utilisation)] utilisation: f64,
    ) -> PyResult<()> {
        self.inner.report_queue(index, utilisation).py(py)
    }

    /// Requests in flight on `index`.
    fn in_flight(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::index)] index: usize,
    ) -> PyResult<u64> {
        self.inner.in_flight(index).py(py)
    }

    /// The state of `index`: "up", "down", "ejected", "probing" or "removed".
    fn state(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::index)] index: usize,
    ) -> PyResult<&'static str> {
        Ok(self.inner.state(index).py(py)?.name())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Per-backend counters plus totals.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let list = PyList::empty(py);
        let (mut picks, mut in_flight, mut errors) = (0u64, 0u64, 0u64);
        for b in self.inner.stats() {
            picks += b.picks;
            in_flight += b.in_flight;
            errors += b.errors;
            let e = PyDict::new(py);
            e.set_item("index", b.index)?;
            e.set_item("state", b.state.name())?;
            e.set_item("weight", b.weight)?;
            e.set_item("in_flight", b.in_flight)?;
            e.set_item("picks", b.picks)?;
            e.set_item("completed", b.completed)?;
            e.set_item("errors", b.errors)?;
            e.set_item("ejections", b.ejections)?;
            e.set_item("ewma_latency_s", b.ewma_latency_s)?;
            e.set_item("error_rate", b.error_rate)?;
            e.set_item("queue_utilisation", b.queue_utilisation)?;
            list.append(e)?;
        }
        d.set_item("strategy", self.strategy())?;
        d.set_item("picks", picks)?;
        d.set_item("in_flight", in_flight)?;
        d.set_item("errors", errors)?;
        d.set_item("no_backend", self.inner.no_backend_errors())?;
        d.set_item("backends", list)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Balancer(backends={}, strategy={:?})",
            self.inner.len(),
            self.strategy()
        )
    }
}

/// `with lb.pick() as i:` — one acquire on entry, one release on exit.
#[pyclass(frozen, module = "overdrive._core", name = "Pick")]
pub(crate) struct PyPick {
    inner: Arc<Balancer>,
    held: Mutex<Option<(usize, Instant)>>,
}

#[pymethods]
impl PyPick {
    fn __enter__(&self, py: Python<'_>) -> PyResult<usize> {
        let mut held = self.held.lock();
        if held.is_some() {
            return Err(bad_value(py, "pick", "in use", "a pick() is entered once"));
        }
        let i = self.inner.acquire().py(py)?;
        *held = Some((i, Instant::now()));
        Ok(i)
    }

    #[pyo3(signature = (exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let taken = self.held.lock().take();
        if let Some((i, t0)) = taken {
            let ok = exc_type.is_none_or(|t| t.is_none());
            self.inner
                .release(i, Some(t0.elapsed().as_secs_f64()), ok)
                .py(py)?;
        }
        Ok(false)
    }

    /// The backend index while entered, else None.
    #[getter]
    fn index(&self) -> Option<usize> {
        self.held.lock().map(|(i, _)| i)
    }
}
