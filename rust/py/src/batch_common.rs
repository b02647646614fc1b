//! Settings, pushing and stats shared by `BatchQueue` and `MessageQueue`
//! (their arguments are read by `args.rs`, like every binding's).

use std::time::Duration;

use overdrive_core::batcher::{
    millis, Config, Meta, OnFull, PushError, PushOk, Queue, Reason, StatsSnapshot,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{bad_value, to_py, IntoPy};
use crate::wait::wait_detached;

// --- settings ----------------------------------------------------------------

const SIZE: &str = "must be an integer >= 1";

/// Parse the settings shared by `BatchQueue` and `MessageQueue`.
pub(crate) fn make_config(
    py: Python<'_>,
    max_batch_size: i64,
    max_wait_ms: f64,
    max_queue: i64,
    on_full: OnFull,
    max_batch_weight: Option<i64>,
    max_concurrency: i64,
) -> PyResult<Config> {
    let positive = |name: &'static str, v: i64| {
        usize::try_from(v)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad_value(py, name, v, SIZE))
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
        on_full,
        max_batch_weight,
        max_concurrency: positive("max_concurrency", max_concurrency)?,
        ..Config::default()
    })
}

// --- pushing -----------------------------------------------------------------

/// What `push_or_block` did with the value.
pub(crate) enum Pushed<T> {
    /// Queued; an item evicted by `drop_oldest` comes back to be failed.
    Queued(Option<T>),
    /// Full under `on_full="block"` and the caller may not block.
    WouldBlock(T),
}

/// Push with the GIL held; when the policy is `block` and the queue is full,
/// wait for room (if `block`) with the GIL released, in slices with a signal
/// check between them: Ctrl-C reaches a producer blocked on a full queue,
/// and the value it was pushing is dropped (never queued).
pub(crate) fn push_or_block<T: Send>(
    py: Python<'_>,
    q: &Queue<T>,
    value: T,
    meta: Meta,
    timeout: Option<Duration>,
    block: bool,
) -> PyResult<Pushed<T>> {
    let queued = |ok: PushOk<T>| Pushed::Queued(ok.dropped);
    let value = match q.push(value, meta, false, None) {
        Ok(ok) => return Ok(queued(ok)),
        Err(PushError::Failed(_, e)) => return Err(to_py(py, e)),
        Err(PushError::WouldBlock(v)) if !block => return Ok(Pushed::WouldBlock(v)),
        Err(PushError::WouldBlock(v)) => v,
    };
    let mut pending = Some(value);
    let (done, _) = wait_detached(py, timeout, |slice| {
        let Some(v) = pending.take() else {
            return Ok(None);
        };
        match q.push_within(v, meta, slice) {
            Ok(ok) => Ok(Some(ok)),
            Err(PushError::WouldBlock(v)) => {
                pending = Some(v);
                Ok(None)
            }
            Err(PushError::Failed(v, e)) => {
                pending = Some(v);
                Err(e)
            }
        }
    })?;
    match done {
        Some(ok) => Ok(queued(ok)),
        None => Err(to_py(py, q.blocked_too_long(timeout))),
    }
}

// --- stats -------------------------------------------------------------------

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
    d.set_item("lanes", snap.lanes)?;
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
