//! Settings, pushing and stats shared by `BatchQueue` and `MessageQueue`.

use std::time::Duration;

use overdrive_core::batcher::{
    millis, Config, Meta, OnFull, PushError, Queue, Reason, StatsSnapshot,
};
use overdrive_core::Error;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{bad_value, IntoPy};

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

/// Why `push_or_block` did not queue the value.
pub(crate) enum PushFail {
    /// Full under `on_full="block"` and the caller may not block.
    WouldBlock,
    /// Refused: closed, full, deadline.
    Error(Error),
}

/// Push with the GIL held; when the policy is `block` and the queue is full,
/// release the GIL and wait for room (if `block`).
pub(crate) fn push_or_block<T: Send>(
    py: Python<'_>,
    q: &Queue<T>,
    value: T,
    meta: Meta,
    timeout: Option<Duration>,
    block: bool,
) -> Result<(Option<T>, usize), (T, PushFail)> {
    let r = match q.push(value, meta, false, timeout) {
        Err(PushError::WouldBlock(v)) if block => py.detach(|| q.push(v, meta, true, timeout)),
        other => other,
    };
    match r {
        Ok(ok) => Ok((ok.dropped, ok.len)),
        Err(PushError::Failed(v, e)) => Err((v, PushFail::Error(e))),
        Err(PushError::WouldBlock(v)) => Err((v, PushFail::WouldBlock)),
    }
}

/// The stats dict shared by both queue classes.
pub(crate) fn stats_dict<'py, T>(py: Python<'py>, q: &Queue<T>) -> PyResult<Bound<'py, PyDict>> {
    snapshot_dict(py, q.snapshot())
}

/// The stats dict of a snapshot.
pub(crate) fn snapshot_dict(py: Python<'_>, snap: StatsSnapshot) -> PyResult<Bound<'_, PyDict>> {
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
    for (name, h) in [
        ("queue_wait", &s.queue_wait),
        ("handler_time", &s.handler_time),
    ] {
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
