//! Arguments from Python, converted in one place for every binding.
//!
//! pyo3's own conversions raise `OverflowError` for an int that does not fit
//! the Rust type (`compress(level=2**40)`) and a bare `TypeError` for a wrong
//! type (`acquire(timeout="1")`); neither is an `overdrive.exceptions` class.
//! So every number, flag and string a public call takes is declared once in
//! the [`params!`] table below and read with
//! `#[pyo3(from_py_with = args::NAME)]`: a wrong type raises `InputTypeError`
//! (a `TypeError`), a value outside the Rust type's range `ConfigurationError`
//! (a `ValueError`), both naming the parameter and the value. Tighter ranges
//! (zstd levels, pool sizes, ...) are the core's to check, or the binding's
//! (`make_config` for the batchers, `check_timeout` for timeouts); they name
//! the parameter the same way.

use overdrive_core::batcher::OnFull;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyUnicodeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

use crate::errors::{bad_value, configuration_error, wrong_type, IntoPy};

/// A Rust value read from one Python argument.
pub(crate) trait FromArg: Sized {
    /// What the parameter takes, for the wrong-type message ("an int").
    const KIND: &'static str;

    /// Read `obj`, the value given for `param`.
    fn from_arg(obj: &Bound<'_, PyAny>, param: &'static str) -> PyResult<Self>;
}

/// The name of `obj`'s type, for messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// `repr(obj)` cut to a readable length, for messages (never fails: the
/// repr of an int over 4300 digits raises, for one).
pub(crate) fn show(obj: &Bound<'_, PyAny>) -> String {
    const MAX_CHARS: usize = 80;
    match obj.repr() {
        Ok(r) => {
            let s = r.to_string();
            if s.chars().count() > MAX_CHARS {
                let head: String = s.chars().take(MAX_CHARS - 3).collect();
                format!("{head}...")
            } else {
                s
            }
        }
        Err(_) => format!("<{} object>", type_name(obj)),
    }
}

/// Map a failed pyo3 extraction of `obj` for `param`: TypeError becomes
/// `InputTypeError`, OverflowError `ConfigurationError` (`range` says what
/// fits); anything else (an `__index__` that raised, say) passes through.
fn extraction_error(
    obj: &Bound<'_, PyAny>,
    param: &'static str,
    kind: &str,
    err: PyErr,
    range: &dyn Fn() -> String,
) -> PyErr {
    let py = obj.py();
    if err.is_instance_of::<PyTypeError>(py) {
        wrong_type(
            py,
            format!("{param} must be {kind}, not {}", type_name(obj)),
        )
    } else if err.is_instance_of::<PyOverflowError>(py) {
        bad_value(py, param, show(obj), &range())
    } else if err.is_instance_of::<PyUnicodeError>(py) {
        bad_value(
            py,
            param,
            show(obj),
            "must be valid Unicode (no lone surrogates)",
        )
    } else {
        err
    }
}

macro_rules! int_args {
    ($($t:ty),* $(,)?) => {$(
        impl FromArg for $t {
            const KIND: &'static str = "an int";

            fn from_arg(obj: &Bound<'_, PyAny>, param: &'static str) -> PyResult<Self> {
                let range = || format!("must be an int between {} and {}", <$t>::MIN, <$t>::MAX);
                let out_of_range = || bad_value(obj.py(), param, show(obj), &range());
                // One C call on the hot path (i64); u64 only for the ints
                // above i64::MAX (i128 extraction is several calls under abi3).
                match obj.extract::<i64>() {
                    Ok(v) => <$t>::try_from(v).map_err(|_| out_of_range()),
                    Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
                        match obj.extract::<u64>() {
                            Ok(v) => <$t>::try_from(v).map_err(|_| out_of_range()),
                            Err(_) => Err(out_of_range()),
                        }
                    }
                    Err(e) => Err(extraction_error(obj, param, Self::KIND, e, &range)),
                }
            }
        }
    )*};
}

int_args!(i32, i64, u64, usize);

impl FromArg for f64 {
    const KIND: &'static str = "a number";

    fn from_arg(obj: &Bound<'_, PyAny>, param: &'static str) -> PyResult<Self> {
        obj.extract().map_err(|e| {
            extraction_error(obj, param, Self::KIND, e, &|| {
                "too large for a float".to_string()
            })
        })
    }
}

/// `True` or `False` only: not an int, not a truthy object (and not a
/// `numpy.bool_`, which pyo3's own conversion would take).
impl FromArg for bool {
    const KIND: &'static str = "a bool";

    fn from_arg(obj: &Bound<'_, PyAny>, param: &'static str) -> PyResult<Self> {
        obj.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
            wrong_type(
                obj.py(),
                format!("{param} must be {}, not {}", Self::KIND, type_name(obj)),
            )
        })
    }
}

/// A `str` argument, borrowed from the Python object (so a literal default
/// works, and shows in the signature).
pub(crate) fn text<'a>(obj: &'a Bound<'_, PyAny>, param: &'static str) -> PyResult<&'a str> {
    str_arg(obj, param, "a str")
}

/// A `str` that `kind` describes, for the wrong-type message; a lone
/// surrogate is a `ConfigurationError`.
fn str_arg<'a>(obj: &'a Bound<'_, PyAny>, param: &'static str, kind: &str) -> PyResult<&'a str> {
    let s = obj.cast::<PyString>().map_err(|_| {
        wrong_type(
            obj.py(),
            format!("{param} must be {kind}, not {}", type_name(obj)),
        )
    })?;
    s.to_str()
        .map_err(|e| extraction_error(obj, param, kind, e, &String::new))
}

/// A batcher's policy for a full queue, by its Python spelling.
impl FromArg for OnFull {
    const KIND: &'static str = "'block', 'reject' or 'drop_oldest'";

    fn from_arg(obj: &Bound<'_, PyAny>, param: &'static str) -> PyResult<Self> {
        OnFull::parse(str_arg(obj, param, Self::KIND)?).py(obj.py())
    }
}

impl<T: FromArg> FromArg for Option<T> {
    const KIND: &'static str = T::KIND;

    fn from_arg(obj: &Bound<'_, PyAny>, param: &'static str) -> PyResult<Self> {
        if obj.is_none() {
            Ok(None)
        } else {
            T::from_arg(obj, param).map(Some).map_err(|e| {
                // Say that None is fine too.
                let py = obj.py();
                if e.is_instance_of::<PyTypeError>(py) {
                    wrong_type(
                        py,
                        format!(
                            "{param} must be {} or None, not {}",
                            T::KIND,
                            type_name(obj)
                        ),
                    )
                } else {
                    e
                }
            })
        }
    }
}

/// One extractor per parameter name: `name: Type`, or
/// `name as "python_name": Type` when the Python user knows the parameter by
/// another name (two bindings taking a same-named parameter as different
/// types). A name means the same type everywhere it is used. `=> expected`
/// (a `&str` or `String` expression, evaluated only on error) replaces the
/// Rust type's range in the out-of-range message.
macro_rules! params {
    ($($name:ident $(as $py:literal)?: $t:ty $(=> $expected:expr)?),* $(,)?) => {$(
        #[doc = concat!("The `", param_name!($name $($py)?), "` argument.")]
        pub(crate) fn $name(obj: &Bound<'_, PyAny>) -> PyResult<$t> {
            let param = param_name!($name $($py)?);
            let value = <$t as FromArg>::from_arg(obj, param);
            $(let value = value.map_err(|e| with_expected(obj, param, e, || String::from($expected)));)?
            value
        }
    )*};
}

/// An out-of-range error that says the parameter's real range (`expected`)
/// instead of the Rust type's.
fn with_expected(
    obj: &Bound<'_, PyAny>,
    param: &'static str,
    err: PyErr,
    expected: impl FnOnce() -> String,
) -> PyErr {
    let py = obj.py();
    match configuration_error(py) {
        Some(t) if err.get_type(py).is(&t) => bad_value(py, param, show(obj), &expected()),
        _ => err,
    }
}

/// The same for `str` parameters, borrowed as `&str`.
macro_rules! str_params {
    ($($name:ident $(as $py:literal)?),* $(,)?) => {$(
        #[doc = concat!("The `", stringify!($name), "` argument.")]
        pub(crate) fn $name<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
            text(obj, param_name!($name $($py)?))
        }
    )*};
}

macro_rules! param_name {
    ($name:ident) => {
        stringify!($name)
    };
    ($name:ident $py:literal) => {
        $py
    };
}

/// The batchers' counts and sizes, read as i64 (`make_config` and the
/// bindings check the lower bound).
const COUNT_RANGE: &str = "must be an integer from 1 to 2**63 - 1";
const LIMIT_RANGE: &str = "must be an integer from 1 to 2**63 - 1, or None";
const BYTES_RANGE: &str = "must be a number of bytes from 0 to 2**63 - 1";

params! {
    // compression (and encode_batch / decode_batch)
    level: i32 => overdrive_core::compress::level_expected(),
    threshold: usize,
    max_output_size: usize => crate::compress::cap_expected(),
    size: usize,
    // pools (BufferPool, ObjectPool)
    buffer_size: usize,
    min_size: usize,
    max_size: usize,
    zero_on_release: bool,
    window_s: f64,
    max_idle_s: Option<f64>,
    timeout: Option<f64>,
    block: bool,
    wait: bool,
    keep: Option<usize>,
    // balancing (Balancer, ShardRouter)
    load_weight: f64,
    queue_weight: f64,
    max_in_flight: u64,
    active_request_bias: f64,
    ewma_alpha: f64,
    eject_error_rate: f64,
    eject_min_requests: u64,
    cooldown_s: f64,
    max_ejected_fraction: f64,
    index: usize,
    latency_s: Option<f64>,
    ok: bool,
    weight: f64,
    utilisation: f64,
    load_factor: f64,
    vnodes: usize,
    // telemetry (LatencyHistogram)
    max_seconds: f64,
    ns: u64 => "must be an integer number of nanoseconds from 0 to 2**64 - 1",
    p: f64,
    // worker pool
    min_workers: usize,
    max_workers: usize,
    max_queue: usize,
    aging_s: Option<f64>,
    scale_up_depth: usize,
    scale_up_util: f64,
    scale_down_util: f64,
    scale_down_window_s: f64,
    priority: i64,
    cancel: bool,
    // batching (BatchQueue, MessageQueue and their receivers); milliseconds
    // are the core's to check (`millis`), block_timeout `check_timeout`'s
    max_batch_size: i64 => COUNT_RANGE,
    batch_max_queue as "max_queue": i64 => COUNT_RANGE,
    max_concurrency: i64 => COUNT_RANGE,
    max_pending_frames: i64 => COUNT_RANGE,
    max_batch_weight: Option<i64> => LIMIT_RANGE,
    max_batch_bytes: Option<i64> => LIMIT_RANGE,
    compress_threshold: i64 => BYTES_RANGE,
    max_frames: usize => "must be an integer >= 0",
    batch_priority as "priority": i32 => "must be an integer from -2**31 to 2**31 - 1",
    max_wait_ms: f64,
    aging_ms: f64,
    latency_target_ms: Option<f64>,
    deadline_ms: Option<f64>,
    block_timeout: Option<f64>,
    adaptive: bool,
    admission: bool,
    on_full: OnFull,
    // caches (MemoryTier)
    cache_max_bytes as "max_bytes": Option<u64> => "must be an integer >= 1, or None",
    max_entries: Option<u64> => "must be an integer from 1 to 4294967294, or None",
    ttl: Option<f64>,
    // pacing (Pacer); ranges are the core's to check
    rate: Option<f64>,
    duration: Option<f64>,
    poisson: bool,
    seed: u64 => "must be an integer from 0 to 2**64 - 1",
    spin_s: f64,
    tolerance_s: f64,
}

str_params! {
    strategy,
    name as "thread_name_prefix",
    hist_name as "name",
    cache_policy as "policy",
    tier_name as "name",
}
