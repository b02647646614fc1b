//! Argument conversion, settings, pushing and stats shared by `BatchQueue`
//! and `MessageQueue`.

use std::time::Duration;

use overdrive_core::batcher::{
    millis, Config, Meta, OnFull, PushError, PushOk, Queue, Reason, StatsSnapshot,
};
use pyo3::conversion::FromPyObjectOwned;
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use crate::errors::{bad_value, to_py, wrong_type, IntoPy};
use crate::wait::{check_timeout_named, wait_detached};

// --- arguments ---------------------------------------------------------------
//
// PyO3's own conversions raise a bare OverflowError for an int out of range
// (2**70 for an i64) and a bare TypeError for a wrong type. The batching
// APIs take their numbers through these extractors instead
// (`#[pyo3(from_py_with = ...)]`): ConfigurationError or InputTypeError,
// naming the parameter.

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// The value for an error message (a huge int shortened).
fn repr(obj: &Bound<'_, PyAny>) -> String {
    let r = obj
        .repr()
        .map_or_else(|_| "?".to_string(), |r| r.to_string());
    match r.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &r[..at]),
        None => r,
    }
}

/// An integer parameter: out of `T`'s range is a ConfigurationError saying
/// `range`, not an int an InputTypeError.
fn int<'py, T: FromPyObjectOwned<'py>>(
    obj: &Bound<'py, PyAny>,
    name: &'static str,
    range: &str,
) -> PyResult<T> {
    let py = obj.py();
    obj.extract::<T>().map_err(|e| {
        let e: PyErr = e.into();
        if e.is_instance_of::<PyOverflowError>(py) {
            bad_value(py, name, repr(obj), range)
        } else {
            wrong_type(py, format!("{name} must be an int, not {}", type_name(obj)))
        }
    })
}

/// A number parameter (int or float; NaN and infinities are the caller's to check).
fn number(obj: &Bound<'_, PyAny>, name: &'static str) -> PyResult<f64> {
    let py = obj.py();
    if obj.is_instance_of::<PyString>() {
        // float("5") would parse it: a str is not a number here.
        return Err(wrong_type(py, format!("{name} must be a number, not str")));
    }
    obj.extract::<f64>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(py) {
            bad_value(py, name, repr(obj), "must be a finite number")
        } else {
            wrong_type(
                py,
                format!("{name} must be a number, not {}", type_name(obj)),
            )
        }
    })
}

fn optional<'py, T>(
    obj: &Bound<'py, PyAny>,
    f: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
) -> PyResult<Option<T>> {
    if obj.is_none() {
        Ok(None)
    } else {
        f(obj).map(Some)
    }
}

/// `from_py_with` extractors, one per parameter name and type.
macro_rules! extractors {
    ($($fn:ident -> $ty:ty = |$obj:ident| $body:expr;)*) => {
        $(
            pub(crate) fn $fn($obj: &Bound<'_, PyAny>) -> PyResult<$ty> {
                $body
            }
        )*
    };
}

const SIZE: &str = "must be an integer >= 1";
const SIZE_RANGE: &str = "must be an integer from 1 to 2**63 - 1";
const LIMIT_RANGE: &str = "must be an integer from 1 to 2**63 - 1, or None";
const BYTES_RANGE: &str = "must be a number of bytes from 0 to 2**63 - 1";

extractors! {
    max_batch_size -> i64 = |o| int(o, "max_batch_size", SIZE_RANGE);
    max_queue -> i64 = |o| int(o, "max_queue", SIZE_RANGE);
    max_concurrency -> i64 = |o| int(o, "max_concurrency", SIZE_RANGE);
    max_pending_frames -> i64 = |o| int(o, "max_pending_frames", SIZE_RANGE);
    max_batch_weight -> Option<i64> = |o| optional(o, |o| int(o, "max_batch_weight", LIMIT_RANGE));
    max_batch_bytes -> Option<i64> = |o| optional(o, |o| int(o, "max_batch_bytes", LIMIT_RANGE));
    compress_threshold -> i64 = |o| int(o, "compress_threshold", BYTES_RANGE);
    max_output_size -> i64 = |o| int(o, "max_output_size", BYTES_RANGE);
    level -> i32 = |o| int(o, "level", "zstd levels run from -131072 to 22");
    priority -> i32 = |o| int(o, "priority", "must be an integer from -2**31 to 2**31 - 1");
    max_frames -> usize = |o| int(o, "max_frames", "must be an integer >= 0");
    max_wait_ms -> f64 = |o| number(o, "max_wait_ms");
    aging_ms -> f64 = |o| number(o, "aging_ms");
    latency_target_ms -> Option<f64> = |o| optional(o, |o| number(o, "latency_target_ms"));
    deadline_ms -> Option<f64> = |o| optional(o, |o| number(o, "deadline_ms"));
    block_timeout -> Option<Duration> =
        |o| seconds(o, "block_timeout");
    timeout -> Option<Duration> = |o| seconds(o, "timeout");
    adaptive -> bool = |o| flag(o, "adaptive");
    admission -> bool = |o| flag(o, "admission");
    on_full -> OnFull = |o| on_full_policy(o);
}

/// Seconds to wait, None to wait for ever (a finite number >= 0).
fn seconds(obj: &Bound<'_, PyAny>, name: &'static str) -> PyResult<Option<Duration>> {
    let t = optional(obj, |o| number(o, name))?;
    check_timeout_named(obj.py(), name, t)
}

fn flag(obj: &Bound<'_, PyAny>, name: &'static str) -> PyResult<bool> {
    obj.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
        wrong_type(
            obj.py(),
            format!("{name} must be True or False, not {}", type_name(obj)),
        )
    })
}

fn on_full_policy(obj: &Bound<'_, PyAny>) -> PyResult<OnFull> {
    let py = obj.py();
    let s = obj.cast::<PyString>().map_err(|_| {
        wrong_type(
            py,
            format!(
                "on_full must be 'block', 'reject' or 'drop_oldest', not {}",
                type_name(obj)
            ),
        )
    })?;
    OnFull::parse(&s.to_cow()?).py(py)
}

// --- settings ----------------------------------------------------------------

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
