//! Bindings for zstd compression: module functions and `Compressor`.

use overdrive_core::compress::{self as core, Codec, Compressor, Unpacked};
use pyo3::exceptions::PyMemoryError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::args;
use crate::buffers::{extract_all, Input};
use crate::errors::{at_item, bad_value, to_py, IntoPy};

/// Inputs at least this large are processed with the GIL released.
pub(crate) const DETACH_MIN: usize = 16 * 1024;

fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(available_threads)
}

/// Cores available to this process (reads cgroup limits: cached by `threads`).
fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Compress one input with `codec` at `level`, detaching for large inputs.
fn compress_one<'py>(
    py: Python<'py>,
    codec: &Codec,
    input: &Input<'py>,
) -> PyResult<Bound<'py, PyBytes>> {
    if input.len() >= DETACH_MIN {
        let src = input.detachable();
        let mut out = Vec::new();
        py.detach(|| codec.compress_into(&src, &mut out)).py(py)?;
        return Ok(PyBytes::new(py, &out));
    }
    codec
        .compress_with(input.as_slice(), |frame| PyBytes::new(py, frame))
        .py(py)
}

/// Decompress one frame sequence under `cap`, straight into a `bytes` when
/// the size is declared, by streaming otherwise.
fn decompress_one<'py, 's>(
    py: Python<'py>,
    codec: &Codec,
    src: &[u8],
    owned: &dyn Fn() -> std::borrow::Cow<'s, [u8]>,
    cap: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    match Codec::declared_size(src, cap).py(py)? {
        Some(n) if n >= DETACH_MIN * 4 || src.len() >= DETACH_MIN => output_bytes(py, n, |out| {
            let src = owned();
            py.detach(|| codec.decompress_exact(&src, out)).py(py)
        }),
        Some(n) => output_bytes(py, n, |out| codec.decompress_exact(src, out).py(py)),
        None => {
            let src = owned();
            let chunks = py
                .detach(|| codec.decompress_streaming_chunks(&src, cap))
                .py(py)?;
            let total = chunks.iter().map(Vec::len).sum();
            PyBytes::new_with(py, total, |out| {
                let mut at = 0;
                for c in &chunks {
                    out[at..at + c.len()].copy_from_slice(c);
                    at += c.len();
                }
                Ok(())
            })
        }
    }
}

/// Largest `max_output_size`: the largest Python `bytes`.
const MAX_OUTPUT_CAP: usize = isize::MAX as usize;

/// A new `bytes` of the `size` a frame declares, filled by `fill`; a size
/// the allocator refuses is a `DecompressionError`, not a `MemoryError`.
fn output_bytes<'py>(
    py: Python<'py>,
    size: usize,
    fill: impl FnOnce(&mut [u8]) -> PyResult<()>,
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, size, fill).map_err(|e| {
        if e.is_instance_of::<PyMemoryError>(py) {
            to_py(py, core::output_alloc_error(size))
        } else {
            e
        }
    })
}

/// What a valid `max_output_size` is, for error messages.
pub(crate) fn cap_expected() -> String {
    format!("must be between 1 and {MAX_OUTPUT_CAP} bytes")
}

/// `max_output_size` checked against [`MAX_OUTPUT_CAP`].
pub(crate) fn check_cap(py: Python<'_>, max_output_size: usize) -> PyResult<usize> {
    if (1..=MAX_OUTPUT_CAP).contains(&max_output_size) {
        Ok(max_output_size)
    } else {
        Err(bad_value(
            py,
            "max_output_size",
            max_output_size,
            &cap_expected(),
        ))
    }
}

/// compress(data, level=3) -> bytes
///
/// One standard zstd frame (content size in the header, no checksum).
#[pyfunction]
#[pyo3(signature = (data, level = 3))]
pub(crate) fn compress<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::level)] level: i32,
) -> PyResult<Bound<'py, PyBytes>> {
    let codec = Codec::plain(level).py(py)?;
    let input = Input::extract(data, &|| "data".into())?;
    compress_one(py, &codec, &input)
}

/// decompress(data, max_output_size=268435456) -> bytes
#[pyfunction]
#[pyo3(signature = (data, max_output_size = 268435456))]
pub(crate) fn decompress<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::max_output_size)] max_output_size: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let cap = check_cap(py, max_output_size)?;
    let codec = Codec::plain(core::DEFAULT_LEVEL).py(py)?;
    let input = Input::extract(data, &|| "data".into())?;
    decompress_one(py, &codec, input.as_slice(), &|| input.detachable(), cap)
}

/// train_dictionary(samples, size=16384) -> bytes
#[pyfunction]
#[pyo3(signature = (samples, size = 16384))]
pub(crate) fn train_dictionary<'py>(
    py: Python<'py>,
    samples: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::size)] size: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let inputs = extract_all(samples, "samples")?;
    let owned: Vec<_> = inputs.iter().map(Input::detachable).collect();
    let refs: Vec<&[u8]> = owned.iter().map(|c| c.as_ref()).collect();
    let dict = py.detach(|| core::train_dictionary(&refs, size)).py(py)?;
    Ok(PyBytes::new(py, &dict))
}

/// zstd with a fixed level, an optional dictionary, an envelope and counters.
#[pyclass(frozen, weakref, module = "overdrive._core", name = "Compressor")]
pub(crate) struct PyCompressor {
    inner: Compressor,
}

#[pymethods]
impl PyCompressor {
    /// Registers the new object with `overdrive.telemetry` (construction only).
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) {
        crate::telemetry_hook::announce(slf.as_any(), "compressor");
    }

    #[new]
    #[pyo3(signature = (level = 3, threshold = 1024, dictionary = None, max_output_size = 268435456))]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::level)] level: i32,
        #[pyo3(from_py_with = args::threshold)] threshold: usize,
        dictionary: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::max_output_size)] max_output_size: usize,
    ) -> PyResult<Self> {
        let cap = check_cap(py, max_output_size)?;
        let dict = dictionary
            .map(|d| Input::extract(d, &|| "dictionary".into()))
            .transpose()?;
        let inner =
            Compressor::new(level, threshold, dict.as_ref().map(Input::as_slice), cap).py(py)?;
        Ok(PyCompressor { inner })
    }

    /// The zstd level.
    #[getter]
    fn level(&self) -> i32 {
        self.inner.codec().level()
    }

    /// Inputs shorter than this many bytes are packed raw.
    #[getter]
    fn threshold(&self) -> usize {
        self.inner.threshold()
    }

    /// The cap on decompressed output, in bytes.
    #[getter]
    fn max_output_size(&self) -> usize {
        self.inner.max_output_size()
    }

    /// The dictionary id written into envelopes, or None.
    #[getter]
    fn dictionary_id(&self) -> Option<u32> {
        self.inner.codec().dictionary().map(|d| d.id())
    }

    /// One zstd frame (with the dictionary, if any).
    fn compress<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let input = Input::extract(data, &|| "data".into())?;
        let out = compress_one(py, self.inner.codec(), &input)?;
        self.inner
            .counters()
            .compressed(1, input.len(), out.as_bytes().len());
        Ok(out)
    }

    /// The bytes of zstd frames made by `compress` (or any zstd encoder).
    fn decompress<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let input = Input::extract(data, &|| "data".into())?;
        let out = decompress_one(
            py,
            self.inner.codec(),
            input.as_slice(),
            &|| input.detachable(),
            self.inner.max_output_size(),
        );
        match &out {
            Ok(_) => self.inner.counters().decompressed(1),
            Err(_) => self.inner.counters().failed(),
        }
        out
    }

    /// Wrap data in the envelope: raw below `threshold`, zstd above.
    fn pack<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let input = Input::extract(data, &|| "data".into())?;
        let mut out = Vec::new();
        if input.len() >= DETACH_MIN {
            let src = input.detachable();
            py.detach(|| self.inner.pack_into(&src, &mut out)).py(py)?;
        } else {
            self.inner.pack_into(input.as_slice(), &mut out).py(py)?;
        }
        Ok(PyBytes::new(py, &out))
    }

    /// The original bytes of a blob made by `pack`.
    fn unpack<'py>(
        &self,
        py: Python<'py>,
        blob: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let input = Input::extract(blob, &|| "blob".into())?;
        let whole = input.as_slice();
        let (codec, payload) = match self.inner.unpack_plan(whole).py(py)? {
            Unpacked::Raw(payload) => return Ok(PyBytes::new(py, payload)),
            Unpacked::Frame(codec, payload) => (codec, payload),
        };
        let header = whole.len() - payload.len();
        let owned = || match input.detachable() {
            std::borrow::Cow::Borrowed(b) => std::borrow::Cow::Borrowed(&b[header..]),
            std::borrow::Cow::Owned(v) => std::borrow::Cow::Owned(v[header..].to_vec()),
        };
        decompress_one(py, codec, payload, &owned, self.inner.max_output_size())
    }

    /// Compress every item (one zstd frame each), in parallel when large.
    fn compress_many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let inputs = extract_all(items, "items")?;
        let codec = self.inner.codec();
        let total: usize = inputs.iter().map(Input::len).sum();
        let frames: Vec<Bound<'py, PyBytes>> =
            if total >= core::PARALLEL_MIN_BYTES && inputs.len() > 1 {
                let owned: Vec<_> = inputs.iter().map(Input::detachable).collect();
                let refs: Vec<&[u8]> = owned.iter().map(|c| c.as_ref()).collect();
                let out = py.detach(|| codec.compress_many(&refs, threads())).py(py)?;
                out.iter().map(|f| PyBytes::new(py, f)).collect()
            } else {
                inputs
                    .iter()
                    .enumerate()
                    .map(|(n, i)| compress_one(py, codec, i).map_err(|e| at_item(py, e, n)))
                    .collect::<PyResult<_>>()?
            };
        let out_bytes: usize = frames.iter().map(|f| f.as_bytes().len()).sum();
        self.inner
            .counters()
            .compressed(inputs.len(), total, out_bytes);
        PyList::new(py, frames)
    }

    /// Decompress every frame, in parallel when large.
    fn decompress_many<'py>(
        &self,
        py: Python<'py>,
        blobs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let inputs = extract_all(blobs, "blobs")?;
        let codec = self.inner.codec();
        let cap = self.inner.max_output_size();
        let total: usize = inputs.iter().map(Input::len).sum();
        let out: Vec<Bound<'py, PyBytes>> =
            if total >= core::PARALLEL_MIN_BYTES / 4 && inputs.len() > 1 {
                let owned: Vec<_> = inputs.iter().map(Input::detachable).collect();
                let refs: Vec<&[u8]> = owned.iter().map(|c| c.as_ref()).collect();
                let out = py
                    .detach(|| codec.decompress_many(&refs, cap, threads()))
                    .py(py)?;
                out.iter().map(|f| PyBytes::new(py, f)).collect()
            } else {
                inputs
                    .iter()
                    .enumerate()
                    .map(|(n, i)| {
                        decompress_one(py, codec, i.as_slice(), &|| i.detachable(), cap)
                            .map_err(|e| at_item(py, e, n))
                    })
                    .collect::<PyResult<_>>()?
            };
        self.inner.counters().decompressed(inputs.len());
        PyList::new(py, out)
    }

    /// Counters: calls, bytes in/out, ratio, raw packs, errors.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("compress_calls", s.compress_calls)?;
        d.set_item("decompress_calls", s.decompress_calls)?;
        d.set_item("bytes_in", s.bytes_in)?;
        d.set_item("bytes_out", s.bytes_out)?;
        d.set_item(
            "ratio",
            overdrive_core::stats::ratio(s.bytes_in, s.bytes_out),
        )?;
        d.set_item("raw_packed", s.raw_packed)?;
        d.set_item("errors", s.errors)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Compressor(level={}, threshold={}, dictionary_id={}, max_output_size={})",
            self.inner.codec().level(),
            self.inner.threshold(),
            self.dictionary_id()
                .map_or_else(|| "None".to_string(), |i| i.to_string()),
            self.inner.max_output_size()
        )
    }
}

/// The zstd library version, e.g. "1.5.7".
pub(crate) fn zstd_version() -> String {
    core::zstd_version()
}
