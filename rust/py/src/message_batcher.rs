//! Binding for message batching: the queue's two handles, `MessageQueue`
//! (producers) and `MessageReceiver` (the sink's dispatcher), and
//! `encode_batch` / `decode_batch`.
//!
//! `put` copies each message straight into the body of the frame it will
//! travel in (`batcher::Window`, no allocation per message); framing threads
//! compress whole bodies without the GIL, one zstd call per batch.

use std::sync::Arc;
use std::time::Duration;

use overdrive_core::batcher::{
    declared_body_len, decode_frame, FrameEncoder, FramePipeline, OnFull, PushError, Received,
    Window,
};
use overdrive_core::compress::{DEFAULT_LEVEL, DEFAULT_MAX_OUTPUT_SIZE};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::args;
use crate::batch_common::{make_config, snapshot_dict};
use crate::buffers::{extract_all, Input};
use crate::compress::{check_cap, DETACH_MIN};
use crate::errors::{bad_value, to_py, IntoPy};
use crate::wait::{check_timeout, check_timeout_named, wait_detached};

// Message frames default to zstd level -1 (the fast strategy, literals left
// unentropy-coded): on frames of 50 x 200 B JSON messages it keeps a ratio of
// ~3.2 at ~380 ns/message of framing CPU, against ~4.3 at ~480 ns for level 1
// and ~4.3 at ~590 ns for level 3. Pass level=1 (or higher) for denser frames.
// Literal defaults (not consts) keep the text signature exact for stubtest
// (spelled out for `new`: the generated one cannot show a negative default).
const _: () = assert!(DEFAULT_MAX_OUTPUT_SIZE == 268_435_456 && DEFAULT_LEVEL == 3);

/// Most finished frames waiting for the sink (the frame channel is
/// allocated up front at this depth).
const MAX_PENDING_FRAMES: i64 = 1 << 16;

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

/// The queue and the framing threads, shared by both handles.
struct Shared {
    q: Arc<Window>,
    pipeline: FramePipeline,
}

/// The producers' handle of a `MessageBatcher`'s queue (see
/// overdrive.message_batcher); the sink's dispatcher takes frames through a
/// [`PyMessageReceiver`].
///
/// A Rust framing thread takes batches, frames and compresses them without
/// the GIL. When the last reference to this handle goes (the
/// `MessageBatcher` and its bound `put`), nothing can put any more: the
/// queue closes, as by `close()`, and what it holds is still delivered.
#[pyclass(frozen, module = "overdrive._core", name = "MessageQueue")]
pub(crate) struct PyMessageQueue {
    shared: Arc<Shared>,
    threshold: usize,
    /// How long `put` blocks on a full `block` queue when not told (None: forever).
    block_timeout: Option<Duration>,
}

#[pymethods]
impl PyMessageQueue {
    #[new]
    #[pyo3(signature = (max_batch_size = 50, max_wait_ms = 10.0, max_queue = 100_000, on_full = OnFull::Block, compress_threshold = 1024, level = -1, max_batch_bytes = None, max_pending_frames = 1024, block_timeout = None), text_signature = "(max_batch_size=50, max_wait_ms=10.0, max_queue=100000, on_full='block', compress_threshold=1024, level=-1, max_batch_bytes=None, max_pending_frames=1024, block_timeout=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::max_batch_size)] max_batch_size: i64,
        #[pyo3(from_py_with = args::max_wait_ms)] max_wait_ms: f64,
        #[pyo3(from_py_with = args::batch_max_queue)] max_queue: i64,
        #[pyo3(from_py_with = args::on_full)] on_full: OnFull,
        #[pyo3(from_py_with = args::compress_threshold)] compress_threshold: i64,
        #[pyo3(from_py_with = args::level)] level: i32,
        #[pyo3(from_py_with = args::max_batch_bytes)] max_batch_bytes: Option<i64>,
        #[pyo3(from_py_with = args::max_pending_frames)] max_pending_frames: i64,
        #[pyo3(from_py_with = args::block_timeout)] block_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let block_timeout = check_timeout_named(py, "block_timeout", block_timeout)?;
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
            .filter(|&n| n > 0 && n as i64 <= MAX_PENDING_FRAMES)
            .ok_or_else(|| {
                bad_value(
                    py,
                    "max_pending_frames",
                    max_pending_frames,
                    &format!("must be an integer between 1 and {MAX_PENDING_FRAMES}"),
                )
            })?;
        let threshold = threshold(py, compress_threshold)?;
        let enc = FrameEncoder::new(level, threshold).py(py)?;
        let q = Arc::new(Window::new(cfg).py(py)?);
        let pipeline = FramePipeline::start(Arc::clone(&q), enc, depth, framers()).py(py)?;
        Ok(PyMessageQueue {
            shared: Arc::new(Shared { q, pipeline }),
            threshold,
            block_timeout,
        })
    }

    /// Queue a copy of `message`; returns a message evicted by
    /// `on_full="drop_oldest"` (to hand to on_error), else None. Blocks
    /// (GIL released, Ctrl-C still gets through) while the queue is full
    /// under `on_full="block"`, up to `timeout` (None: the block_timeout
    /// given at construction).
    #[pyo3(signature = (message, timeout = None))]
    fn put<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let timeout = check_timeout(py, timeout)?;
        let input = Input::extract(message, &|| "message".into())?;
        let q = &self.shared.q;
        let dropped = match q.push(input.as_slice(), false, None) {
            Ok(dropped) => dropped,
            Err(PushError::Failed((), e)) => return Err(to_py(py, e)),
            // Full under on_full="block": wait for room without the GIL, in
            // slices, on a private copy (another thread may change a
            // mutable buffer meanwhile).
            Err(PushError::WouldBlock(())) => {
                let timeout = timeout.or(self.block_timeout);
                let copy = input.detachable().into_owned();
                let (done, _) =
                    wait_detached(py, timeout, |slice| match q.push_within(&copy, slice) {
                        Ok(dropped) => Ok(Some(dropped)),
                        Err(PushError::WouldBlock(())) => Ok(None),
                        Err(PushError::Failed((), e)) => Err(e),
                    })?;
                done.ok_or_else(|| to_py(py, q.blocked_too_long(timeout)))?
            }
        };
        Ok(dropped.map(|m| PyBytes::new(py, &m)))
    }

    /// The sink dispatcher's handle of this queue.
    fn receiver(&self) -> PyMessageReceiver {
        PyMessageReceiver {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Force out everything queued so far.
    fn flush(&self) {
        self.shared.q.flush();
    }

    /// Stop accepting; what is queued still drains through the receiver.
    fn close(&self) {
        self.shared.q.close();
    }

    /// True once `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.shared.q.is_closed()
    }

    /// Bodies longer than this many bytes are zstd-compressed.
    #[getter]
    fn compress_threshold(&self) -> usize {
        self.threshold
    }

    fn __len__(&self) -> usize {
        self.shared.q.len()
    }

    /// Counters (messages, frames as batches), percentiles and queue depth.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        snapshot_dict(py, self.shared.q.snapshot())
    }
}

impl Drop for PyMessageQueue {
    fn drop(&mut self) {
        // Nothing can put any more: the framers and the sink dispatcher
        // drain what is queued, then stop.
        self.shared.q.close();
    }
}

/// The sink dispatcher's handle of a `MessageBatcher`'s queue: finished
/// frames in order, and their outcome.
#[pyclass(frozen, module = "overdrive._core", name = "MessageReceiver")]
pub(crate) struct PyMessageReceiver {
    shared: Arc<Shared>,
}

#[pymethods]
impl PyMessageReceiver {
    /// Block (GIL released) until a frame is ready, then take up to
    /// `max_frames` ready frames: a list of (frame, count, reason) in order.
    /// [] on timeout; None once closed and every frame was handed out.
    #[pyo3(signature = (timeout = None, max_frames = 64))]
    fn next_frames<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        #[pyo3(from_py_with = args::max_frames)] max_frames: usize,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let timeout = check_timeout(py, timeout)?;
        let frames = match py.detach(|| self.shared.pipeline.recv(timeout, max_frames)) {
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
                    self.shared.q.count(0, f.count as u64);
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
            self.shared.q.count(n, 0);
        } else {
            self.shared.q.count(0, n);
        }
    }

    /// Stop accepting; what is queued still drains through `next_frames`.
    fn close(&self) {
        self.shared.q.close();
    }

    /// Messages accepted and not yet delivered or given up on.
    #[getter]
    fn outstanding(&self) -> u64 {
        self.shared.q.outstanding()
    }
}

/// encode_batch(messages, compress_threshold=1024, level=3) -> bytes
///
/// The frame `MessageBatcher` hands to its sink, for these messages. From
/// 16 KiB of messages on, framing and compression run with the GIL released
/// (on a copy of any mutable buffer).
#[pyfunction]
#[pyo3(signature = (messages, compress_threshold = 1024, level = 3))]
pub(crate) fn encode_batch<'py>(
    py: Python<'py>,
    messages: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::compress_threshold)] compress_threshold: i64,
    #[pyo3(from_py_with = args::level)] level: i32,
) -> PyResult<Bound<'py, PyBytes>> {
    let enc = FrameEncoder::new(level, threshold(py, compress_threshold)?).py(py)?;
    let inputs = extract_all(messages, "messages")?;
    let total: usize = inputs.iter().map(Input::len).sum();
    let frame = if total >= DETACH_MIN {
        let owned: Vec<_> = inputs.iter().map(Input::detachable).collect();
        let slices: Vec<&[u8]> = owned.iter().map(|m| &**m).collect();
        py.detach(|| enc.encode(&slices)).py(py)?
    } else {
        let slices: Vec<&[u8]> = inputs.iter().map(Input::as_slice).collect();
        enc.encode(&slices).py(py)?
    };
    Ok(PyBytes::new(py, &frame))
}

/// decode_batch(frame, max_output_size=268435456) -> list[bytes]
///
/// The messages of a frame made by `MessageBatcher` / `encode_batch`,
/// exactly. A large frame is read (and decompressed) with the GIL released.
#[pyfunction]
#[pyo3(signature = (frame, max_output_size = 268_435_456))]
pub(crate) fn decode_batch<'py>(
    py: Python<'py>,
    frame: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::max_output_size)] max_output_size: usize,
) -> PyResult<Bound<'py, PyList>> {
    let cap = check_cap(py, max_output_size)?;
    let input = Input::extract(frame, &|| "frame".into())?;
    let src = input.as_slice();
    let large = src.len() >= DETACH_MIN
        || declared_body_len(src).is_some_and(|n| n.min(cap) >= DETACH_MIN * 4);
    let owned;
    let (body, spans) = if large {
        owned = input.detachable();
        py.detach(|| decode_frame(&owned, cap)).py(py)?
    } else {
        decode_frame(src, cap).py(py)?
    };
    PyList::new(
        py,
        spans
            .iter()
            .map(|&(start, n)| PyBytes::new(py, &body[start..start + n])),
    )
}
