//! The one mapping from core errors to Python exceptions.
//!
//! The exception classes live in `overdrive/exceptions.py` (so they can
//! subclass both `OverdriveError` and the builtin that fits, e.g.
//! `ValueError`); they are imported once and cached.

use overdrive_core::Error;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

macro_rules! exception_classes {
    ($($fn_name:ident => $class:literal),* $(,)?) => {
        $(
            pub(crate) fn $fn_name(py: Python<'_>) -> Option<Bound<'_, PyType>> {
                static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
                CELL.import(py, "overdrive.exceptions", $class).ok().map(|t| t.clone())
            }
        )*
    };
}

exception_classes! {
    configuration_error => "ConfigurationError",
    input_type_error => "InputTypeError",
    compression_error => "CompressionError",
    decompression_error => "DecompressionError",
    output_limit_exceeded => "OutputLimitExceeded",
    dictionary_error => "DictionaryError",
    // pools (BufferPool, ObjectPool)
    pool_exhausted => "PoolExhausted",
    buffer_exported_error => "BufferExportedError",
    released_error => "ReleasedError",
    // balancing
    no_backend_available => "NoBackendAvailable",
    worker_queue_full => "WorkerQueueFull",
    worker_pool_shutdown => "WorkerPoolShutdown",
    worker_start_error => "WorkerStartError",
    // batcher
    queue_full => "QueueFull",
    batcher_closed => "BatcherClosed",
    deadline_exceeded => "DeadlineExceeded",
    frame_error => "FrameError",
    no_running_event_loop => "NoRunningEventLoop",
    // caches
    reentrant_call_error => "ReentrantCallError",
}

fn raise(class: Option<Bound<'_, PyType>>, msg: String) -> PyErr {
    match class {
        Some(t) => PyErr::from_type(t, msg),
        // Only if overdrive.exceptions cannot be imported (a broken install).
        None => PyValueError::new_err(msg),
    }
}

/// Convert a core error into the matching `overdrive.exceptions` class.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let msg = err.to_string();
    let class = match err.root() {
        Error::InvalidParameter { .. } => configuration_error(py),
        Error::Compression(_) => compression_error(py),
        Error::Decompression(_) => decompression_error(py),
        Error::OutputTooLarge { .. } => output_limit_exceeded(py),
        Error::Dictionary(_) => dictionary_error(py),
        Error::Item { .. } => None, // root() never returns a wrapper
        // pools (BufferPool, ObjectPool)
        Error::PoolExhausted { .. } => pool_exhausted(py),
        Error::BufferExported { .. } => buffer_exported_error(py),
        Error::Released { .. } => released_error(py),
        // balancing
        Error::NoBackendAvailable(_) => no_backend_available(py),
        Error::WorkerQueueFull { .. } => worker_queue_full(py),
        Error::PoolShutdown => worker_pool_shutdown(py),
        Error::WorkerStart(_) => worker_start_error(py),
        // batcher
        Error::QueueFull(_) => queue_full(py),
        Error::Closed(_) => batcher_closed(py),
        Error::DeadlineExceeded(_) => deadline_exceeded(py),
        Error::Frame(_) => frame_error(py),
        // caches
        Error::Reentrant(_) => reentrant_call_error(py),
    };
    raise(class, msg)
}

/// A TypeError (`InputTypeError`) for an argument of the wrong type.
pub(crate) fn wrong_type(py: Python<'_>, msg: String) -> PyErr {
    match input_type_error(py) {
        Some(t) => PyErr::from_type(t, msg),
        None => PyTypeError::new_err(msg),
    }
}

/// A `ConfigurationError` for a bad argument value.
pub(crate) fn bad_value(
    py: Python<'_>,
    param: &'static str,
    value: impl std::fmt::Display,
    expected: &str,
) -> PyErr {
    to_py(py, Error::invalid(param, value, expected))
}

/// `.py(py)` on core results: map the error with [`to_py`].
pub(crate) trait IntoPy<T> {
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    #[inline]
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

/// The same exception class with "item {index}: " before the message, for
/// errors raised while processing one item of a batch.
pub(crate) fn at_item(py: Python<'_>, err: PyErr, index: usize) -> PyErr {
    let msg = err
        .value(py)
        .str()
        .map_or_else(|_| String::new(), |s| s.to_string());
    PyErr::from_type(err.get_type(py), format!("item {index}: {msg}"))
}
