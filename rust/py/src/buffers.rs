//! Reading any C-contiguous buffer (bytes, bytearray, memoryview, numpy).
//!
//! `bytes` is immutable, so its memory may be read with the GIL released.
//! Any other buffer can be written by Python code at any time, so work that
//! detaches copies it out first ([`Input::detachable`]).

use std::borrow::Cow;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::wrong_type;

/// A borrowed view of a Python buffer, valid while this value lives.
pub(crate) enum Input<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(PyUntypedBuffer),
}

impl<'py> Input<'py> {
    /// Accept `bytes` directly, anything else through the buffer protocol.
    pub(crate) fn extract(obj: &Bound<'py, PyAny>, param: &dyn Fn() -> String) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Input::Bytes(b.clone()));
        }
        let type_name = || {
            obj.get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string())
        };
        let buf = PyUntypedBuffer::get(obj).map_err(|_| {
            wrong_type(
                obj.py(),
                format!(
                    "{} must be a bytes-like object (bytes, bytearray, memoryview, numpy array), not {}",
                    param(),
                    type_name()
                ),
            )
        })?;
        if !buf.is_c_contiguous() {
            return Err(wrong_type(
                obj.py(),
                format!(
                    "{} must be a C-contiguous buffer; this {} is not (copy it first, e.g. numpy.ascontiguousarray)",
                    param(),
                    type_name()
                ),
            ));
        }
        Ok(Input::Buffer(buf))
    }

    /// The bytes, for use while attached to the interpreter.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Input::Bytes(b) => b.as_bytes(),
            Input::Buffer(buf) => {
                let len = buf.len_bytes();
                let ptr = buf.buf_ptr() as *const u8;
                if len == 0 || ptr.is_null() {
                    return &[];
                }
                // SAFETY: the exporter keeps `len` bytes at `ptr` alive (and
                // un-resizable) until `buf` is released, which happens when
                // this value drops; the slice borrows `self`.
                unsafe { std::slice::from_raw_parts(ptr, len) }
            }
        }
    }

    /// Bytes that may be read with the GIL released: borrowed for `bytes`,
    /// copied for mutable buffers.
    pub(crate) fn detachable(&self) -> Cow<'_, [u8]> {
        match self {
            Input::Bytes(b) => Cow::Borrowed(b.as_bytes()),
            Input::Buffer(_) => Cow::Owned(self.as_slice().to_vec()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Input::Bytes(b) => b.as_bytes().len(),
            Input::Buffer(buf) => buf.len_bytes(),
        }
    }
}

/// Most items reserved up front from an iterable's `len()`.
const MAX_LEN_HINT: usize = 4096;

/// Extract every item of an iterable as an [`Input`].
pub(crate) fn extract_all<'py>(
    items: &Bound<'py, PyAny>,
    param: &str,
) -> PyResult<Vec<Input<'py>>> {
    let iter = items.try_iter().map_err(|_| {
        let name = items
            .get_type()
            .name()
            .map_or_else(|_| "?".to_string(), |n| n.to_string());
        wrong_type(
            items.py(),
            format!("{param} must be an iterable of bytes-like objects, not {name}"),
        )
    })?;
    // `len()` is only a hint (a user `__len__` may say anything): capped, so
    // a lying one cannot make the reservation abort the process.
    let mut out = Vec::with_capacity(items.len().unwrap_or(0).min(MAX_LEN_HINT));
    for (i, item) in iter.enumerate() {
        let item = item?;
        out.push(Input::extract(&item, &|| format!("{param}[{i}]"))?);
    }
    Ok(out)
}
