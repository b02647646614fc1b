//! `_CachedHit`: the hit path of `@cached` over a `MemoryTier`, in Rust.
//!
//! Built by `overdrive.cache.decorator` when tier 0 is a `MemoryTier` and no
//! `key=` is given. A call without keyword arguments builds the same key the
//! Python wrapper builds (`(qualname, args, (), types)`, or
//! `(qualname, args, ())` untyped), looks it up in the tier with no Python
//! method call, and returns a plain hit after counting it. Everything else
//! (keyword arguments, misses, envelope entries, lookup errors) goes to the
//! Python callables it holds, which own the semantics.

use pyo3::exceptions::PyException;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::memory_tier::PyMemoryTier;

/// The hit path of one `@cached` function (private to the decorator).
#[pyclass(frozen, dict, weakref, module = "overdrive._core", name = "_CachedHit")]
pub(crate) struct PyCachedHit {
    qualname: Py<PyAny>,
    tier: Py<PyMemoryTier>,
    typed: bool,
    no: Py<PyAny>,
    env: Py<PyAny>,
    hits: Py<PyAny>,
    /// `rest(key, args, value_or_no, start)`: everything but a plain hit.
    rest: Py<PyAny>,
    /// `with_kwargs(*args, **kwargs)`: the Python wrapper, for keyword calls.
    with_kwargs: Py<PyAny>,
}

impl PyCachedHit {
    /// Is `v` an entry envelope (a dict holding the envelope marker)?
    #[inline]
    fn is_envelope(&self, v: &Bound<'_, PyAny>) -> PyResult<bool> {
        match v.cast_exact::<PyDict>() {
            Ok(d) => d.contains(self.env.bind(v.py())),
            Err(_) => Ok(false),
        }
    }

    /// `next(hits)`: this function's hit counter.
    #[inline]
    fn count_hit(&self, py: Python<'_>) -> PyResult<()> {
        // SAFETY: hits is a live object; PyIter_Next returns a new reference
        // (released at once) or NULL, with an exception set on error.
        unsafe {
            let r = ffi::PyIter_Next(self.hits.as_ptr());
            if r.is_null() {
                if let Some(e) = PyErr::take(py) {
                    return Err(e);
                }
            } else {
                ffi::Py_DECREF(r);
            }
        }
        Ok(())
    }

    fn key<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let q = self.qualname.bind(py);
        let empty = PyTuple::empty(py);
        if !self.typed {
            return PyTuple::new(py, [q.clone(), args.clone().into_any(), empty.into_any()]);
        }
        let n = args.len();
        let types: Bound<'py, PyAny> = if n == 1 {
            args.get_item(0)?.get_type().into_any()
        } else {
            let ts: Vec<Bound<'py, PyType>> = args.iter().map(|a| a.get_type()).collect();
            PyTuple::new(py, ts)?.into_any()
        };
        PyTuple::new(
            py,
            [q.clone(), args.clone().into_any(), empty.into_any(), types],
        )
    }
}

#[pymethods]
impl PyCachedHit {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        qualname: Py<PyAny>,
        tier: Py<PyMemoryTier>,
        typed: bool,
        no: Py<PyAny>,
        env: Py<PyAny>,
        hits: Py<PyAny>,
        rest: Py<PyAny>,
        with_kwargs: Py<PyAny>,
    ) -> Self {
        Self {
            qualname,
            tier,
            typed,
            no,
            env,
            hits,
            rest,
            with_kwargs,
        }
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = args.py();
        if let Some(kw) = kwargs {
            if !kw.is_empty() {
                return self.with_kwargs.bind(py).call(args, Some(kw));
            }
        }
        let key = self.key(py, args)?;
        let no = self.no.bind(py);
        let rest = self.rest.bind(py);
        let v = match self.tier.get().get_value(key.as_any(), no.as_borrowed()) {
            Ok(v) => v,
            // As the Python path: an Exception (an unhashable argument, a
            // failing __eq__) goes to `rest`, which names the argument.
            Err(e) if e.is_instance_of::<PyException>(py) => {
                return rest.call1((key, args, no, 0));
            }
            Err(e) => return Err(e),
        };
        if v.is(no) || self.is_envelope(&v)? {
            return rest.call1((key, args, v, 1));
        }
        self.count_hit(py)?;
        Ok(v)
    }

    /// A plain tier-0 hit for positional `args` (counted), else the "not
    /// found" sentinel: a miss, an envelope entry or a failed lookup, which
    /// the caller redoes on its own path (the async wrapper's fast check).
    fn probe<'py>(&self, args: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        let py = args.py();
        let no = self.no.bind(py);
        let Ok(key) = self.key(py, args) else {
            return Ok(no.clone());
        };
        let v = match self.tier.get().get_value(key.as_any(), no.as_borrowed()) {
            Ok(v) => v,
            Err(e) if e.is_instance_of::<PyException>(py) => return Ok(no.clone()),
            Err(e) => return Err(e),
        };
        if v.is(no) || self.is_envelope(&v)? {
            return Ok(no.clone());
        }
        self.count_hit(py)?;
        Ok(v)
    }

    /// Bind to an instance, as a function does (so it works as a method).
    fn __get__<'py>(
        slf: &Bound<'py, Self>,
        obj: Option<&Bound<'py, PyAny>>,
        _objtype: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        match obj {
            Some(o) if !o.is_none() => {
                static METHOD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
                METHOD.import(py, "types", "MethodType")?.call1((slf, o))
            }
            _ => Ok(slf.clone().into_any()),
        }
    }

    /// Pickled by reference, as a function is: its `__qualname__`, looked
    /// up in its `__module__` (both set by `functools.update_wrapper`).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.getattr("__qualname__")
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.qualname)?;
        visit.call(&self.tier)?;
        visit.call(&self.no)?;
        visit.call(&self.env)?;
        visit.call(&self.hits)?;
        visit.call(&self.rest)?;
        visit.call(&self.with_kwargs)?;
        Ok(())
    }
}
