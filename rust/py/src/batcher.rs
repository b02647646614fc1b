//! Binding for the request batcher's queue: `BatchQueue`.
//!
//! Items and their futures are Python objects held as owned references
//! (`Py<PyAny>`); the core only moves them around. While the GIL is released
//! (a blocking push, a dispatcher waiting for a batch) nothing touches them.
//! The Python facade (`overdrive/batching.py`) calls the handler and
//! resolves the futures.

use std::time::{Duration, Instant};

use overdrive_core::batcher::{millis, Batch, Config, Meta, Next, OnFull, PushError, Queue, Reason};
use overdrive_core::Error;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::errors::{bad_value, to_py, IntoPy};

/// An item and the future its caller waits on.
pub(crate) struct Slot {
    item: Py<PyAny>,
    fut: Py<PyAny>,
}

/// Parse the settings shared by `BatchQueue` and `MessageQueue`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_config(
    py: Python<'_>,
    max_batch_size: i64,
    max_wait_ms: f64,
    max_queue: i64,
    on_full: &str,
    max_batch_weight: Option<i64>,
    max_concurrency: i64,
) -> PyResult<Config> {
    let positive = |name: &'static str, v: i64| {
        usize::try_from(v)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad_value(py, name, v, "must be an integer >= 1"))
    };
    let max_batch_weight = match max_batch_weight {
        None => None,
        Some(w) => Some(
            u64::try_from(w)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad_value(py, "max_batch_weight", w, "must be >= 1 or None"))?,
        ),
    };
    Ok(Config {
        max_batch_size: positive("max_batch_size", max_batch_size)?,
        max_wait: millis("max_wait_ms", max_wait_ms, true).py(py)?,
        max_queue: positive("max_queue", max_queue)?,
        on_full: OnFull::parse(on_full).py(py)?,
        max_batch_weight,
        max_concurrency: positive("max_concurrency", max_concurrency)?,
        ..Config::default()
    })
}

/// Optional block timeout in seconds -> Duration.
pub(crate) fn block_timeout(py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout
        .map(|t| millis("timeout", t * 1000.0, true).py(py))
        .transpose()
}

/// Push with the GIL held; when the policy is `block` and the queue is full,
/// release the GIL and wait for room.
pub(crate) fn push_or_block<T: Send>(
    py: Python<'_>,
    q: &Queue<T>,
    value: T,
    meta: Meta,
    timeout: Option<Duration>,
    block: bool,
) -> Result<Option<T>, (T, Error)> {
    let r = match q.push(value, meta, false, timeout) {
        Err(PushError::WouldBlock(v)) if block => py.detach(|| q.push(v, meta, true, timeout)),
        other => other,
    };
    match r {
        Ok(ok) => Ok(ok.dropped),
        Err(PushError::Failed(v, e)) => Err((v, e)),
        Err(PushError::WouldBlock(v)) => Err((
            v,
            Error::QueueFull(format!(
                "queue full: max_queue={} items are waiting (on_full=\"block\", not blocking here)",
                q.config().max_queue
            )),
        )),
    }
}

/// The stats dict shared by both queue classes.
pub(crate) fn stats_dict<'py, T>(py: Python<'py>, q: &Queue<T>) -> PyResult<Bound<'py, PyDict>> {
    let snap = q.snapshot();
    let s = &snap.stats;
    let d = PyDict::new(py);
    d.set_item("submitted", s.submitted)?;
    d.set_item("completed", s.completed)?;
    d.set_item("failed", s.failed)?;
    d.set_item("expired", s.expired)?;
    d.set_item("rejected", s.rejected)?;
    d.set_item("dropped", s.dropped)?;
    d.set_item("cancelled", s.cancelled)?;
    d.set_item("batches", s.batches)?;
    d.set_item(
        "mean_batch_size",
        if s.batches == 0 {
            0.0
        } else {
            s.batched_items as f64 / s.batches as f64
        },
    )?;
    let sizes = PyDict::new(py);
    for (label, c) in s.size_buckets() {
        sizes.set_item(label, c)?;
    }
    d.set_item("batch_sizes", sizes)?;
    let reasons = PyDict::new(py);
    for r in Reason::ALL {
        reasons.set_item(r.as_str(), s.reasons[r as usize])?;
    }
    d.set_item("flush_reasons", reasons)?;
    for (name, h) in [("queue_wait", &s.queue_wait), ("handler_time", &s.handler_time)] {
        let p = PyDict::new(py);
        for q in [50.0, 90.0, 99.0] {
            p.set_item(format!("p{q:.0}"), h.percentile(q))?;
        }
        p.set_item("count", h.count())?;
        d.set_item(format!("{name}_s"), p)?;
    }
    d.set_item("queue_depth", snap.queue_depth)?;
    d.set_item("in_flight", snap.in_flight)?;
    let (a, b, size, cap) = snap.model;
    let m = PyDict::new(py);
    m.set_item("a_s", a)?;
    m.set_item("b_s_per_item", b)?;
    m.set_item("batch_size", size)?;
    m.set_item("aimd_cap", cap)?;
    d.set_item("model", m)?;
    Ok(d)
}

/// The Python value of a batch: (items, futures, expired futures, reason).
fn batch_tuple<'py>(
    py: Python<'py>,
    batch: Option<Batch<Slot>>,
    expired: Vec<Slot>,
    wait: Option<f64>,
) -> PyResult<Bound<'py, PyTuple>> {
    let (items, futs, reason) = match batch {
        Some(b) => {
            let mut items = Vec::with_capacity(b.items.len());
            let mut futs = Vec::with_capacity(b.items.len());
            for s in b.items {
                items.push(s.item);
                futs.push(s.fut);
            }
            (items, futs, b.reason.as_str())
        }
        None => (Vec::new(), Vec::new(), ""),
    };
    let expired: Vec<Py<PyAny>> = expired.into_iter().map(|s| s.fut).collect();
    (
        PyList::new(py, items)?,
        PyList::new(py, futs)?,
        PyList::new(py, expired)?,
        reason,
        wait,
    )
        .into_pyobject(py)
}

/// The queue, timing and batch formation of a `Batcher` (see overdrive.batching).
#[pyclass(frozen, module = "overdrive._core", name = "BatchQueue")]
pub(crate) struct PyBatchQueue {
    q: Queue<Slot>,
}

#[pymethods]
impl PyBatchQueue {
    #[new]
    #[pyo3(signature = (max_batch_size = 64, max_wait_ms = 5.0, max_queue = 10_000, on_full = "block", max_batch_weight = None, max_concurrency = 1, adaptive = false, latency_target_ms = None, aging_ms = 100.0, admission = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_batch_size: i64,
        max_wait_ms: f64,
        max_queue: i64,
        on_full: &str,
        max_batch_weight: Option<i64>,
        max_concurrency: i64,
        adaptive: bool,
        latency_target_ms: Option<f64>,
        aging_ms: f64,
        admission: bool,
    ) -> PyResult<Self> {
        let mut cfg = make_config(
            py,
            max_batch_size,
            max_wait_ms,
            max_queue,
            on_full,
            max_batch_weight,
            max_concurrency,
        )?;
        cfg.adaptive = adaptive;
        cfg.latency_target = latency_target_ms
            .map(|t| millis("latency_target_ms", t, false).py(py))
            .transpose()?;
        cfg.aging = millis("aging_ms", aging_ms, false).py(py)?;
        cfg.admission = admission;
        Ok(PyBatchQueue {
            q: Queue::new(cfg).py(py)?,
        })
    }

    /// Queue `item` with default metadata; returns an evicted future or None.
    /// With `block=False` a full queue under `on_full="block"` raises
    /// QueueFull instead of waiting (the asyncio path retries without blocking).
    #[pyo3(signature = (item, fut, block = true))]
    fn put(
        &self,
        py: Python<'_>,
        item: Py<PyAny>,
        fut: Py<PyAny>,
        block: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.push_slot(py, Slot { item, fut }, Meta::default(), None, block)
    }

    /// Queue `item` with metadata; returns an evicted future (drop_oldest) or None.
    #[pyo3(signature = (item, fut, priority = 0, deadline_ms = None, key = 0, weight = 1, timeout = None, block = true))]
    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        py: Python<'_>,
        item: Py<PyAny>,
        fut: Py<PyAny>,
        priority: i32,
        deadline_ms: Option<f64>,
        key: u64,
        weight: i64,
        timeout: Option<f64>,
        block: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        let deadline = deadline_ms
            .map(|ms| millis("deadline_ms", ms, false).py(py))
            .transpose()?
            .map(|d| Instant::now() + d);
        let weight = u64::try_from(weight)
            .map_err(|_| bad_value(py, "weight", weight, "the weigher must return an int >= 0"))?;
        let meta = Meta {
            priority,
            deadline,
            key,
            weight,
        };
        let timeout = block_timeout(py, timeout)?;
        self.push_slot(py, Slot { item, fut }, meta, timeout, block)
    }

    /// Block (GIL released) until a batch is due: (items, futures, expired
    /// futures, reason, None); reason is "" when only expired items or the
    /// timeout came back. None once closed and drained.
    #[pyo3(signature = (timeout = None))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let timeout = block_timeout(py, timeout)?;
        let next = py.detach(|| self.q.next(timeout));
        self.convert(py, next)
    }

    /// Non-blocking: like `next`, but with nothing due returns ([], [], [],
    /// "", wait) where wait is the seconds until it may be (None: until woken).
    fn poll<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let next = self.q.poll();
        self.convert(py, next)
    }

    /// A batch of `n` items finished in `elapsed` seconds.
    fn done(&self, n: usize, elapsed: f64, ok: bool, completed: u64, failed: u64) {
        let elapsed = Duration::try_from_secs_f64(elapsed.max(0.0)).unwrap_or_default();
        self.q.done(n, elapsed, ok, completed, failed);
    }

    /// Count items their callers cancelled before they ran.
    fn note_cancelled(&self, n: u64) {
        self.q.note_cancelled(n);
    }

    /// Force out everything queued so far.
    fn flush(&self) {
        self.q.flush();
    }

    /// Stop accepting; what is queued still drains through `next`/`poll`.
    fn close(&self) {
        self.q.close();
    }

    /// Remove every queued item; returns their futures (to fail them).
    fn drain(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        let all = self.q.drain_all();
        let _ = py;
        all.into_iter().map(|s| s.fut).collect()
    }

    /// True once `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.q.is_closed()
    }

    /// Batches running now.
    #[getter]
    fn in_flight(&self) -> usize {
        self.q.in_flight()
    }

    fn __len__(&self) -> usize {
        self.q.len()
    }

    /// Counters, percentiles, flush reasons, queue depth and the model.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.q)
    }
}
impl PyBatchQueue {
    fn push_slot(
        &self,
        py: Python<'_>,
        slot: Slot,
        meta: Meta,
        timeout: Option<Duration>,
        block: bool,
    ) -> PyResult<Option<Py<PyAny>>> {
        match push_or_block(py, &self.q, slot, meta, timeout, block) {
            Ok(dropped) => Ok(dropped.map(|s| s.fut)),
            Err((_slot, e)) => Err(to_py(py, e)),
        }
    }

    fn convert<'py>(
        &self,
        py: Python<'py>,
        next: Next<Slot>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        match next {
            Next::Batch(b, expired) => batch_tuple(py, Some(b), expired, None).map(Some),
            Next::Expired(expired) => batch_tuple(py, None, expired, None).map(Some),
            Next::Wait(when) => {
                let wait = when.map(|w| w.saturating_duration_since(Instant::now()).as_secs_f64());
                batch_tuple(py, None, Vec::new(), wait.or(Some(-1.0))).map(Some)
            }
            Next::Timeout => batch_tuple(py, None, Vec::new(), None).map(Some),
            Next::Closed => Ok(None),
        }
    }
}
