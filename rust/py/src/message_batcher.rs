//! Binding for message batching: `MessageQueue`, `encode_batch`, `decode_batch`.
//!
//! `put` copies each message straight into the body of the frame it will
//! travel in (`batcher::Window`, no allocation per message); framing threads
//! compress whole bodies without the GIL, one zstd call per batch.

use std::sync::Arc;

use overdrive_core::batcher::{
    decode_frame, FrameEncoder, FramePipeline, PushError, Received, Window,
};
use overdrive_core::compress::{DEFAULT_LEVEL, DEFAULT_MAX_OUTPUT_SIZE};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::batch_common::{block_timeout, make_config, snapshot_dict};
use crate::buffers::{extract_all, Input};
use crate::errors::{bad_value, to_py, IntoPy};

// Message frames default to zstd level -1 (the fast strategy, literals left
// unentropy-coded): on frames of 50 x 200 B JSON messages it keeps a ratio of
// ~3.2 at ~380 ns/message of framing CPU, against ~4.3 at ~480 ns for level 1
// and ~4.3 at ~590 ns for level 3. Pass level=1 (or higher) for denser frames.
// Literal defaults (not consts) keep the text signature exact for stubtest
// (spelled out for `new`: the generated one cannot show a negative default).
const _: () = assert!(DEFAULT_MAX_OUTPUT_SIZE == 268_435_456 && DEFAULT_LEVEL == 3);

/// Framing threads: two where there are two cores (frames still leave in
/// order), so a burst is compressed on every core once producers pause.
fn framers() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 2)))
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
///
/// A Rust framing thread takes batches, frames and compresses them without
/// the GIL; the Python dispatcher receives finished frames and calls the sink.
#[pyclass(frozen, module = "overdrive._core", name = "MessageQueue")]
pub(crate) struct PyMessageQueue {
    q: Arc<Window>,
    pipeline: FramePipeline,
    threshold: usize,
    /// How long `put` blocks on a full `block` queue when not told (None: forever).
    block_timeout: Option<std::time::Duration>,
}

#[pymethods]
impl PyMessageQueue {
    #[new]
    #[pyo3(signature = (max_batch_size = 50, max_wait_ms = 10.0, max_queue = 100_000, on_full = "block", compress_threshold = 1024, level = -1, max_batch_bytes = None, max_pending_frames = 1024, block_timeout = None), text_signature = "(max_batch_size=50, max_wait_ms=10.0, max_queue=100000, on_full='block', compress_threshold=1024, level=-1, max_batch_bytes=None, max_pending_frames=1024, block_timeout=None)")]
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
        max_pending_frames: i64,
        block_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let block_timeout = crate::batch_common::block_timeout(py, block_timeout)?;
        let cfg = make_config(
            py,
            max_batch_size,
            max_wait_ms,
            max_queue,
            on_full,
            max_batch_bytes,
            framers() as i64,
        )
        .map_err(|e| {
            // The weight limit is spelled max_batch_bytes here.
            let msg = e.to_string().replace("max_batch_weight", "max_batch_bytes");
            PyErr::from_type(e.get_type(py), msg)
        })?;
        // The Window sends a frame when it is full or when its first message
        // waited max_wait_ms (never one frame per message when idle).
        let depth = usize::try_from(max_pending_frames)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                bad_value(
                    py,
                    "max_pending_frames",
                    max_pending_frames,
                    "must be an integer >= 1",
                )
            })?;
        let threshold = threshold(py, compress_threshold)?;
        let enc = FrameEncoder::new(level, threshold).py(py)?;
        let q = Arc::new(Window::new(cfg).py(py)?);
        let pipeline = FramePipeline::start(Arc::clone(&q), enc, depth, framers()).py(py)?;
        Ok(PyMessageQueue {
            q,
            pipeline,
            threshold,
            block_timeout,
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
        let timeout = if timeout.is_some() {
            block_timeout(py, timeout)?
        } else {
            self.block_timeout
        };
        let r = match self.q.push(input.as_slice(), false, timeout) {
            // Full under on_full="block": wait for room without the GIL,
            // on a private copy (another thread may change a mutable buffer).
            Err(PushError::WouldBlock(())) => {
                let copy = input.detachable().into_owned();
                py.detach(|| self.q.push(&copy, true, timeout))
            }
            other => other,
        };
        match r {
            Ok(dropped) => Ok(dropped.map(|m| PyBytes::new(py, &m))),
            Err(PushError::Failed((), e)) => Err(to_py(py, e)),
            Err(PushError::WouldBlock(())) => Err(to_py(py, self.q.full_error())),
        }
    }

    /// Block (GIL released) until a frame is ready, then take up to
    /// `max_frames` ready frames: a list of (frame, count, reason) in order.
    /// [] on timeout; None once closed and every frame was handed out.
    #[pyo3(signature = (timeout = None, max_frames = 64))]
    fn next_frames<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        max_frames: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let timeout = block_timeout(py, timeout)?;
        let frames = match py.detach(|| self.pipeline.recv(timeout, max_frames)) {
            Received::Finished => return Ok(None),
            Received::Timeout => Vec::new(),
            Received::Frames(f) => f,
        };
        let list = PyList::empty(py);
        let mut first_err = None;
        for f in frames {
            match f.frame {
                Ok(bytes) => list.append((PyBytes::new(py, &bytes), f.count, f.reason.as_str()))?,
                Err(e) => {
                    self.q.count(0, f.count as u64);
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
    fn done(&self, n: u64, ok: bool) {
        if ok {
            self.q.count(n, 0);
        } else {
            self.q.count(0, n);
        }
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
        self.threshold
    }

    fn __len__(&self) -> usize {
        self.q.len()
    }

    /// Counters (messages, frames as batches), percentiles and queue depth.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        snapshot_dict(py, self.q.snapshot())
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
