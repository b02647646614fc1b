//! Waiting with the interpreter released, one helper for every blocking
//! call: the wait runs detached in short slices with a signal check between
//! them, so Ctrl-C (and any other signal handler) gets through a long wait.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::errors::{bad_value, IntoPy};

/// Longest stretch spent detached while waiting, between signal checks.
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(50);

/// A non-negative, finite timeout in seconds (None: wait forever).
pub(crate) fn check_timeout(py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Duration>> {
    check_timeout_named(py, "timeout", timeout)
}

/// [`check_timeout`] for a parameter with another name (e.g. `block_timeout`).
pub(crate) fn check_timeout_named(
    py: Python<'_>,
    param: &'static str,
    timeout: Option<f64>,
) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        // A timeout too large for a Duration waits forever, like None.
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Duration::try_from_secs_f64(t).ok()),
        Some(t) => Err(bad_value(
            py,
            param,
            t,
            "must be a finite number of seconds >= 0, or None to wait forever",
        )),
    }
}

/// Wait for `attempt` in detached slices until it yields or `timeout` passes.
/// `attempt` runs detached: it must touch no Python object.
pub(crate) fn wait_detached<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut attempt: impl FnMut(Duration) -> overdrive_core::Result<Option<T>> + Send,
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
