//! Registration of new components with `overdrive.telemetry`.
//!
//! `overdrive.telemetry.registry` installs its hook once at import
//! (`_set_telemetry_hook`); each exported class's `__init__` hands the new
//! object to it, so every live component appears in `/metrics` without a
//! user call. Construction only: no method of any class touches this.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static HOOK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Install the telemetry registration hook, ``hook(obj, component)`` (the
/// first call wins; later calls are ignored).
#[pyfunction]
pub(crate) fn _set_telemetry_hook(py: Python<'_>, hook: Py<PyAny>) {
    let _ = HOOK.set(py, hook);
}

/// Hand a new component to the hook. Never fails the constructor: an error
/// in the hook is reported as unraisable.
pub(crate) fn announce(obj: &Bound<'_, PyAny>, component: &str) {
    let py = obj.py();
    if let Some(hook) = HOOK.get(py) {
        if let Err(err) = hook.call1(py, (obj, component)) {
            err.write_unraisable(py, Some(obj));
        }
    }
}
