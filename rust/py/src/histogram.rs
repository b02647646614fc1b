//! Bindings for the latency histogram: `LatencyHistogram` and its `Timer`.
//!
//! The histogram is `overdrive_core::hist::Histogram` (lock-free atomics), so
//! every method runs without a lock and `record` never releases the GIL (the
//! record is cheaper than a release). Python sees seconds as floats; the core
//! keeps integer nanoseconds.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use overdrive_core::hist::{self, Histogram, NS_PER_S};
use pyo3::buffer::{PyBuffer, PyUntypedBuffer};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};

use crate::args::{self, type_name, FromArg};
use crate::errors::{at_item, bad_value, to_py, wrong_type, IntoPy};

/// Inputs of `record_many` at least this long are recorded with the GIL released.
const DETACH_AT: usize = 4096;

/// Nanoseconds to seconds.
#[inline]
fn secs(ns: f64) -> f64 {
    ns / NS_PER_S
}

/// One number in seconds: a `float` read directly (the hot path of
/// `record`), anything else through the shared argument reader.
#[inline]
fn seconds_arg(obj: &Bound<'_, PyAny>, param: &'static str) -> PyResult<f64> {
    match obj.cast::<PyFloat>() {
        Ok(f) => Ok(f.value()),
        Err(_) => f64::from_arg(obj, param),
    }
}

/// What `__reduce__` pickles: (bucket index, count) pairs, count, sum, min, max, overflow.
type StateTuple = (Vec<(usize, u64)>, u64, u64, u64, u64, u64);
/// `__reduce__`'s value: the class, its arguments and the state.
type Reduced<'py> = (Bound<'py, PyAny>, (Py<PyString>, f64), StateTuple);

/// The percentiles `stats()` reports, with their keys.
const SNAPSHOT_PS: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p999", 99.9),
];

/// A lock-free log-linear latency histogram (values in seconds).
#[pyclass(frozen, weakref, module = "overdrive._core", name = "LatencyHistogram")]
pub(crate) struct PyLatencyHistogram {
    inner: Arc<Histogram>,
    name: Py<PyString>,
    max_seconds: f64,
}

impl PyLatencyHistogram {
    /// `ps` (percentiles 0..=100) checked, naming `param` and the index.
    fn read_ps(py: Python<'_>, ps: &Bound<'_, PyAny>, param: &'static str) -> PyResult<Vec<f64>> {
        if ps.is_instance_of::<PyString>() || ps.is_instance_of::<PyBytes>() {
            return Err(wrong_type(
                py,
                format!(
                    "{param} must be a sequence of numbers, not {}",
                    type_name(ps)
                ),
            ));
        }
        let iter = ps.try_iter().map_err(|_| {
            wrong_type(
                py,
                format!(
                    "{param} must be a sequence of numbers, not {}",
                    type_name(ps)
                ),
            )
        })?;
        let mut out = Vec::new();
        for (i, item) in iter.enumerate() {
            let p = seconds_arg(&item?, param).map_err(|e| at_item(py, e, i))?;
            out.push(
                hist::check_percentile(p, param)
                    .py(py)
                    .map_err(|e| at_item(py, e, i))?,
            );
        }
        Ok(out)
    }

    fn dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.summary();
        let ps: Vec<f64> = SNAPSHOT_PS.iter().map(|(_, p)| *p).collect();
        let values = self.inner.percentiles(&ps).py(py)?;
        let d = PyDict::new(py);
        d.set_item("name", self.name.bind(py))?;
        d.set_item("count", s.count)?;
        d.set_item("sum", secs(s.sum as f64))?;
        d.set_item("mean", secs(overdrive_core::stats::ratio(s.sum, s.count)))?;
        d.set_item("min", secs(s.min as f64))?;
        d.set_item("max", secs(s.max as f64))?;
        d.set_item("overflow", s.overflow)?;
        for ((key, _), v) in SNAPSHOT_PS.iter().zip(values) {
            d.set_item(*key, secs(v))?;
        }
        Ok(d)
    }
}

#[pymethods]
impl PyLatencyHistogram {
    /// Registers the new histogram with `overdrive.telemetry` (construction only).
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) {
        crate::telemetry_hook::announce(slf.as_any(), "latency");
    }

    #[new]
    #[pyo3(signature = (name = "latency", max_seconds = 3600.0))]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::hist_name)] name: &str,
        #[pyo3(from_py_with = args::max_seconds)] max_seconds: f64,
    ) -> PyResult<Self> {
        Ok(PyLatencyHistogram {
            inner: Arc::new(Histogram::from_max_seconds(max_seconds).py(py)?),
            name: PyString::new(py, name).unbind(),
            max_seconds,
        })
    }

    /// The name given at construction (the `name` label in Prometheus).
    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyString> {
        self.name.clone_ref(py)
    }

    /// The highest value (seconds) with its own bucket; larger ones are overflow.
    #[getter]
    fn max_seconds(&self) -> f64 {
        self.max_seconds
    }

    /// Record one duration in seconds (a float or int >= 0).
    fn record(&self, seconds: &Bound<'_, PyAny>) -> PyResult<()> {
        let s = seconds_arg(seconds, "seconds")?;
        match hist::seconds_to_ns(s, "seconds") {
            Ok(ns) => {
                self.inner.record(ns);
                Ok(())
            }
            Err(e) => Err(to_py(seconds.py(), e)),
        }
    }

    /// Record one duration in integer nanoseconds (>= 0).
    fn record_ns(&self, #[pyo3(from_py_with = args::ns)] ns: u64) {
        self.inner.record(ns);
    }

    /// Record every duration (seconds) of an iterable of numbers or a float64 /
    /// float32 buffer (numpy arrays); all or nothing: an invalid value records
    /// none. Large inputs are recorded with the GIL released.
    fn record_many(&self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let param = "values";
        let wrong = |what: String| wrong_type(py, format!("{param} must be {what}"));
        if values.is_instance_of::<PyString>()
            || values.is_instance_of::<PyBytes>()
            || values.is_instance_of::<PyByteArray>()
        {
            return Err(wrong(format!(
                "an iterable of numbers or a float buffer, not {}",
                type_name(values)
            )));
        }
        let floats: Vec<f64> = if let Ok(buf) = PyBuffer::<f64>::get(values) {
            buf.to_vec(py)?
        } else if let Ok(buf) = PyBuffer::<f32>::get(values) {
            buf.to_vec(py)?.into_iter().map(f64::from).collect()
        } else if let Ok(buf) = PyUntypedBuffer::get(values) {
            return Err(wrong(format!(
                "a buffer of float64 or float32 values, not format {:?} (convert with numpy's astype(float))",
                buf.format().to_string_lossy()
            )));
        } else {
            let iter = values.try_iter().map_err(|_| {
                wrong(format!(
                    "an iterable of numbers or a float buffer, not {}",
                    type_name(values)
                ))
            })?;
            let mut out = Vec::with_capacity(values.len().unwrap_or(0));
            for (i, item) in iter.enumerate() {
                out.push(seconds_arg(&item?, "seconds").map_err(|e| at_item(py, e, i))?);
            }
            out
        };
        let n = floats.len();
        let inner = &self.inner;
        let record = move || -> overdrive_core::Result<()> {
            let ns = floats
                .iter()
                .enumerate()
                .map(|(i, &s)| hist::seconds_to_ns(s, "seconds").map_err(|e| e.at_item(i)))
                .collect::<overdrive_core::Result<Vec<u64>>>()?;
            inner.record_many(&ns);
            Ok(())
        };
        if n >= DETACH_AT {
            py.detach(record).py(py)
        } else {
            record().py(py)
        }
    }

    /// The `p`-th percentile (0..=100, nearest rank) in seconds; 0.0 when empty.
    fn percentile(&self, py: Python<'_>, #[pyo3(from_py_with = args::p)] p: f64) -> PyResult<f64> {
        Ok(secs(self.inner.percentile(p).py(py)?))
    }

    /// Several percentiles in one pass (seconds, in the order given).
    fn percentiles(&self, py: Python<'_>, ps: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
        let ps = Self::read_ps(py, ps, "ps")?;
        Ok(self
            .inner
            .percentiles(&ps)
            .py(py)?
            .into_iter()
            .map(secs)
            .collect())
    }

    /// Values recorded.
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }

    /// Their sum in seconds.
    #[getter]
    fn sum(&self) -> f64 {
        secs(self.inner.sum() as f64)
    }

    /// Mean in seconds; 0.0 when empty.
    #[getter]
    fn mean(&self) -> f64 {
        secs(self.inner.mean())
    }

    /// Smallest value in seconds; 0.0 when empty.
    #[getter]
    fn min(&self) -> f64 {
        secs(self.inner.min() as f64)
    }

    /// Largest value in seconds; 0.0 when empty.
    #[getter]
    fn max(&self) -> f64 {
        secs(self.inner.max() as f64)
    }

    /// Values above `max_seconds` (kept in the top bucket).
    #[getter]
    fn overflow(&self) -> u64 {
        self.inner.overflow()
    }

    /// Add everything `other` (a LatencyHistogram) recorded.
    fn merge(&self, other: &Bound<'_, PyAny>) -> PyResult<()> {
        let other = other.cast::<PyLatencyHistogram>().map_err(|_| {
            wrong_type(
                other.py(),
                format!("other must be a LatencyHistogram, not {}", type_name(other)),
            )
        })?;
        self.inner.merge(&other.get().inner);
        Ok(())
    }

    /// Forget every value.
    fn reset(&self) {
        self.inner.reset();
    }

    /// name, count, sum, mean, min, max (seconds), overflow and p50/p90/p95/p99/p999.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.dict(py)
    }

    /// The same as `snapshot()` (the `stats()` every component offers).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.dict(py)
    }

    /// Cumulative counts for Prometheus: `(upper bound in seconds, values <= it)`.
    ///
    /// Without `bounds`, one pair per non-empty bucket (its highest value);
    /// with `bounds` (ascending seconds; `inf` allowed), one pair per bound.
    /// Overflow values count only toward `inf`.
    #[pyo3(signature = (bounds = None))]
    fn buckets<'py>(
        &self,
        py: Python<'py>,
        bounds: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (ns_bounds, secs_bounds): (Vec<u64>, Vec<f64>) = match bounds {
            None => {
                let b = self.inner.buckets();
                (
                    b.iter().map(|b| b.high).collect(),
                    b.iter().map(|b| secs(b.high as f64)).collect(),
                )
            }
            Some(obj) => {
                let mut ns = Vec::new();
                let mut sb = Vec::new();
                let iter = obj.try_iter().map_err(|_| {
                    wrong_type(
                        py,
                        format!(
                            "bounds must be a sequence of seconds, not {}",
                            type_name(obj)
                        ),
                    )
                })?;
                for (i, item) in iter.enumerate() {
                    let s = seconds_arg(&item?, "bounds").map_err(|e| at_item(py, e, i))?;
                    let n = hist::seconds_to_ns(s, "bounds")
                        .py(py)
                        .map_err(|e| at_item(py, e, i))?;
                    if sb.last().is_some_and(|&prev| s <= prev) {
                        return Err(at_item(
                            py,
                            bad_value(py, "bounds", s, "must be strictly ascending"),
                            i,
                        ));
                    }
                    ns.push(n);
                    sb.push(s);
                }
                (ns, sb)
            }
        };
        let counts = self.inner.cumulative(&ns_bounds);
        let total = self.inner.count();
        let list = PyList::empty(py);
        for (s, c) in secs_bounds.into_iter().zip(counts) {
            let c = if s == f64::INFINITY { total } else { c };
            list.append((s, c))?;
        }
        Ok(list)
    }

    /// A context manager and decorator that records elapsed time:
    /// `with h.time(): ...`, `@h.time()` or `@h.time` on a sync or async
    /// function (with `func`, returns the decorated function).
    #[pyo3(signature = (func = None))]
    fn time(slf: &Bound<'_, Self>, func: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let timer = PyTimer::new(slf);
        match func {
            None => Ok(Bound::new(slf.py(), timer)?.into_any().unbind()),
            Some(f) => timer.__call__(slf.py(), f),
        }
    }

    /// The same as `time()`.
    #[pyo3(signature = (func = None))]
    fn timer(slf: &Bound<'_, Self>, func: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        Self::time(slf, func)
    }

    /// Pickle support: `(LatencyHistogram, (name, max_seconds), state)`.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
        let py = slf.py();
        let me = slf.get();
        let st = me.inner.state();
        let s = st.summary;
        Ok((
            slf.get_type().into_any(),
            (me.name.clone_ref(py), me.max_seconds),
            (st.buckets, s.count, s.sum, s.min, s.max, s.overflow),
        ))
    }

    /// Add a pickled state (from `__reduce__`) to this histogram.
    fn __setstate__(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let (buckets, count, sum, min, max, overflow): StateTuple =
            state.extract().map_err(|_| {
                bad_value(
                    py,
                    "state",
                    args::show(state),
                    "must be the state a LatencyHistogram pickles",
                )
            })?;
        let st = hist::State {
            buckets,
            summary: hist::Summary {
                count,
                sum,
                min,
                max,
                overflow,
            },
        };
        self.inner.add_state(&st).py(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let name = self.name.bind(py).repr()?;
        Ok(format!(
            "LatencyHistogram(name={name}, count={}, p50={}, p99={}, max={})",
            self.inner.count(),
            secs(self.inner.percentile(50.0).py(py)?),
            secs(self.inner.percentile(99.0).py(py)?),
            secs(self.inner.max() as f64),
        ))
    }
}

/// Nanoseconds on the monotonic clock (the clock of `time.perf_counter`).
#[inline]
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Returned by `LatencyHistogram.time()`: records the time spent in a
/// `with` block, or (as a decorator) in each call of a function.
#[pyclass(frozen, module = "overdrive._core", name = "Timer")]
pub(crate) struct PyTimer {
    hist: Py<PyLatencyHistogram>,
    inner: Arc<Histogram>,
    start: AtomicU64,
    elapsed: AtomicU64,
}

impl PyTimer {
    fn new(h: &Bound<'_, PyLatencyHistogram>) -> Self {
        PyTimer {
            hist: h.clone().unbind(),
            inner: Arc::clone(&h.get().inner),
            start: AtomicU64::new(u64::MAX),
            elapsed: AtomicU64::new(u64::MAX),
        }
    }
}

#[pymethods]
impl PyTimer {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.get().start.store(now_ns(), Relaxed);
        slf.clone()
    }

    #[pyo3(signature = (_exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        let start = self.start.swap(u64::MAX, Relaxed);
        if start != u64::MAX {
            let ns = now_ns().saturating_sub(start);
            self.inner.record(ns);
            self.elapsed.store(ns, Relaxed);
        }
        false
    }

    /// Seconds the last `with` block took; None before it ends.
    #[getter]
    fn elapsed(&self) -> Option<f64> {
        match self.elapsed.load(Relaxed) {
            u64::MAX => None,
            ns => Some(secs(ns as f64)),
        }
    }

    /// Decorate a sync or async function: each call records its duration.
    fn __call__(&self, py: Python<'_>, func: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        static DECORATE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let decorate = DECORATE.import(py, "overdrive.telemetry.histogram", "_decorate")?;
        decorate
            .call1((self.hist.bind(py), func))
            .map(Bound::unbind)
    }

    fn __repr__(&self) -> String {
        match self.elapsed() {
            Some(s) => format!("Timer(elapsed={s})"),
            None => "Timer(elapsed=None)".to_string(),
        }
    }
}
