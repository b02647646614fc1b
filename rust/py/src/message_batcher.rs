//! Binding for message batching: `MessageQueue`, `encode_batch`, `decode_batch`.
//!
//! Messages are copied into Rust on `put` (so they may be read with the GIL
//! released); framing and zstd compression of a whole batch run detached,
//! in the dispatcher thread, one zstd call per batch.

use std::time::Duration;

use overdrive_core::batcher::{decode_frame, FrameEncoder, Meta, Next, Queue};
use overdrive_core::compress::{DEFAULT_LEVEL, DEFAULT_MAX_OUTPUT_SIZE};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::batch_common::{block_timeout, make_config, push_or_block, stats_dict, PushFail};
use crate::buffers::{extract_all, Input};
use crate::errors::{bad_value, to_py, IntoPy};

// Message frames default to zstd level 1: on batches of small JSON messages
// it compresses as well as level 3 (ratio ~4.2 at 50 x 200 B), ~25% faster.
// Literal defaults (not consts) keep the text signature exact for stubtest.
const _: () = assert!(DEFAULT_MAX_OUTPUT_SIZE == 268_435_456 && DEFAULT_LEVEL == 3);

/// CPUs to frame on (cached: `available_parallelism` reads cgroup files).
fn threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn threshold(py: Python<'_>, compress_threshold: i64) -> PyResult<usize> {
    usize::try_from(compress_threshold).map_err(|_| {
        bad_value(
            py,
            "compress_threshold",
            compress_threshold,
            "must be >= 0 bytes",
        )
    })
}

/// The queue and framing of a `MessageBatcher` (see overdrive.batching).
#[pyclass(frozen, module = "overdrive._core", name = "MessageQueue")]
pub(crate) struct PyMessageQueue {
    q: Queue<Vec<u8>>,
    enc: FrameEncoder,
}

#[pymethods]
impl PyMessageQueue {
    #[new]
    #[pyo3(signature = (max_batch_size = 50, max_wait_ms = 10.0, max_queue = 100_000, on_full = "block", compress_threshold = 1024, level = 1, max_batch_bytes = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_batch_size: i64,
        max_wait_ms: f64,
        max_queue: i64,
        on_full: &str,
        compress_threshold: i64,
        level: i32,
        max_batch_bytes: Option<i64>,
    ) -> PyResult<Self> {
        let cfg = make_config(
            py,
            max_batch_size,
            max_wait_ms,
            max_queue,
            on_full,
            max_batch_bytes,
            1,
        )
        .map_err(|e| {
            // The weight limit is spelled max_batch_bytes here.
            let msg = e.to_string().replace("max_batch_weight", "max_batch_bytes");
            PyErr::from_type(e.get_type(py), msg)
        })?;
        let enc = FrameEncoder::new(level, threshold(py, compress_threshold)?).py(py)?;
        Ok(PyMessageQueue {
            q: Queue::new(cfg).py(py)?,
            enc,
        })
    }

    /// Queue a copy of `message`; returns a message evicted by
    /// `on_full="drop_oldest"` (to hand to on_error), else None.
    #[pyo3(signature = (message, timeout = None))]
    fn put<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let input = Input::extract(message, &|| "message".into())?;
        let bytes = input.as_slice().to_vec();
        let meta = Meta {
            weight: bytes.len() as u64,
            ..Meta::default()
        };
        let timeout = if timeout.is_some() {
            block_timeout(py, timeout)?
        } else {
            None
        };
        match push_or_block(py, &self.q, bytes, meta, timeout, true) {
            Ok((dropped, _)) => Ok(dropped.map(|m| PyBytes::new(py, &m))),
            Err((_m, PushFail::Error(e))) => Err(to_py(py, e)),
            Err((_m, PushFail::WouldBlock)) => Err(to_py(py, self.q.full_error())),
        }
    }

    /// Block (GIL released) until a batch is due, then frame it and up to
    /// `max_frames - 1` more batches that are already full (compressing
    /// detached): a list of (frame, count, reason) in order. [] on timeout;
    /// None once closed and drained.
    #[pyo3(signature = (timeout = None, max_frames = 64))]
    fn next_frames<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        max_frames: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let timeout = block_timeout(py, timeout)?;
        let out = py.detach(|| match self.q.next(timeout) {
            Next::Batch(b, _) => {
                let mut batches = vec![b];
                batches.extend(self.q.take_due(max_frames.saturating_sub(1)));
                let meta: Vec<(usize, &'static str)> = batches
                    .iter()
                    .map(|b| (b.items.len(), b.reason.as_str()))
                    .collect();
                let items: Vec<Vec<Vec<u8>>> = batches.into_iter().map(|b| b.items).collect();
                let frames = self.enc.encode_many(&items, threads());
                Some(
                    frames
                        .into_iter()
                        .zip(meta)
                        .map(|(f, (n, r))| (f, n, r))
                        .collect::<Vec<_>>(),
                )
            }
            Next::Closed => None,
            _ => Some(Vec::new()),
        });
        let Some(frames) = out else {
            return Ok(None);
        };
        let list = PyList::empty(py);
        let mut first_err = None;
        for (frame, n, reason) in frames {
            match frame {
                Ok(f) => list.append((PyBytes::new(py, &f), n, reason))?,
                Err(e) => {
                    self.q.done(n, Duration::ZERO, false, 0, n as u64);
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if list.is_empty() => Err(to_py(py, e)),
            _ => Ok(Some(list)),
        }
    }

    /// A frame of `n` messages was delivered (`ok`) or given up on.
    fn done(&self, n: usize, elapsed: f64, ok: bool) {
        let elapsed = Duration::try_from_secs_f64(elapsed.max(0.0)).unwrap_or_default();
        let n64 = n as u64;
        let (completed, failed) = if ok { (n64, 0) } else { (0, n64) };
        self.q.done(n, elapsed, ok, completed, failed);
    }

    /// Force out everything queued so far.
    fn flush(&self) {
        self.q.flush();
    }

    /// Stop accepting; what is queued still drains through `next_frame`.
    fn close(&self) {
        self.q.close();
    }

    /// True once `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.q.is_closed()
    }

    /// Bodies longer than this many bytes are zstd-compressed.
    #[getter]
    fn compress_threshold(&self) -> usize {
        self.enc.threshold()
    }

    fn __len__(&self) -> usize {
        self.q.len()
    }

    /// Counters (messages, frames as batches), percentiles and queue depth.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.q)
    }
}

/// encode_batch(messages, compress_threshold=1024, level=3) -> bytes
///
/// The frame `MessageBatcher` hands to its sink, for these messages.
#[pyfunction]
#[pyo3(signature = (messages, compress_threshold = 1024, level = 3))]
pub(crate) fn encode_batch<'py>(
    py: Python<'py>,
    messages: &Bound<'py, PyAny>,
    compress_threshold: i64,
    level: i32,
) -> PyResult<Bound<'py, PyBytes>> {
    let enc = FrameEncoder::new(level, threshold(py, compress_threshold)?).py(py)?;
    let inputs = extract_all(messages, "messages")?;
    let slices: Vec<&[u8]> = inputs.iter().map(Input::as_slice).collect();
    let frame = enc.encode(&slices).py(py)?;
    Ok(PyBytes::new(py, &frame))
}

/// decode_batch(frame, max_output_size=268435456) -> list[bytes]
///
/// The messages of a frame made by `MessageBatcher` / `encode_batch`, exactly.
#[pyfunction]
#[pyo3(signature = (frame, max_output_size = 268_435_456))]
pub(crate) fn decode_batch<'py>(
    py: Python<'py>,
    frame: &Bound<'py, PyAny>,
    max_output_size: i64,
) -> PyResult<Bound<'py, PyList>> {
    let cap = usize::try_from(max_output_size)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            bad_value(
                py,
                "max_output_size",
                max_output_size,
                "must be a positive number of bytes",
            )
        })?;
    let input = Input::extract(frame, &|| "frame".into())?;
    let (body, spans) = decode_frame(input.as_slice(), cap).py(py)?;
    PyList::new(
        py,
        spans
            .iter()
            .map(|&(start, n)| PyBytes::new(py, &body[start..start + n])),
    )
}
