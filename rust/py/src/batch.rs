//! Binding for one running batch of a `Batcher`: `Batch`, the futures its
//! handler call resolves.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3::{PyTraverseError, PyVisit};

use crate::batch_futures::{abandoned_error, resolve, Slot};
use crate::batcher::Shared;

/// The futures of one running batch: resolve them with `finish` or `fail`.
///
/// A batch dropped without either fails its items with BatcherClosed, so
/// nothing is lost even if the dispatcher dies.
#[pyclass(frozen, module = "overdrive._core", name = "Batch")]
pub(crate) struct PyBatch {
    shared: Arc<Shared>,
    slots: Mutex<Option<Vec<Slot>>>,
    /// Outcomes recorded by `complete`, waiting for `resolve`.
    completed: Mutex<Option<Completed>>,
}

/// A batch's futures and their outcomes, not yet resolved.
struct Completed {
    slots: Vec<Slot>,
    outcomes: Py<PyList>,
}

impl Completed {
    fn resolve(self, py: Python<'_>, here: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let outcomes = self.outcomes.bind(py);
        resolve(py, self.slots, here, &|i| {
            outcomes
                .get_item(i)
                .unwrap_or_else(|_| py.None().into_bound(py))
        })
    }
}

impl PyBatch {
    /// The batch of `slots`, taken from the queue of `shared`.
    pub(crate) fn new(shared: Arc<Shared>, slots: Vec<Slot>) -> Self {
        PyBatch {
            shared,
            slots: Mutex::new(Some(slots)),
            completed: Mutex::new(None),
        }
    }

    /// Let a waiting dispatcher thread start the next batch (it needs the
    /// GIL for that) before this one spends GIL time resolving futures.
    fn handoff(&self, py: Python<'_>) {
        if !self.shared.q.is_empty() {
            py.detach(|| self.shared.q.handoff(Duration::from_millis(1)));
        }
    }

    fn take(&self) -> PyResult<Vec<Slot>> {
        self.slots
            .lock()
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this batch was already finished"))
    }

    /// Check the outcomes' count (failing the batch if wrong) and free the
    /// slot; returns the slots and the number of failed items.
    fn record(
        &self,
        py: Python<'_>,
        outcomes: &Bound<'_, PyList>,
        elapsed: f64,
        ok: bool,
        here: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(Vec<Slot>, usize)> {
        let slots = self.take()?;
        let n = slots.len();
        if outcomes.len() != n {
            let msg = format!(
                "finish() needs {n} outcomes, got {} (the batch is failed instead)",
                outcomes.len()
            );
            let err = PyRuntimeError::new_err(msg.clone())
                .into_value(py)
                .into_any();
            resolve(py, slots, here, &|_| err.bind(py).clone())?;
            self.shared.q.done(n, secs(elapsed), false, 0, n as u64);
            return Err(PyRuntimeError::new_err(msg));
        }
        let mut failed = 0usize;
        for o in outcomes.iter() {
            failed += usize::from(o.is_instance_of::<pyo3::exceptions::PyBaseException>());
        }
        self.shared
            .q
            .done(n, secs(elapsed), ok, (n - failed) as u64, failed as u64);
        Ok((slots, failed))
    }
}

#[pymethods]
impl PyBatch {
    /// Give each item its outcome (an Exception instance fails just that
    /// item), free the slot and record `elapsed` seconds. `ok`: the handler
    /// call succeeded. `here`: the running event loop, if any. Returns the
    /// number of failed items.
    #[pyo3(signature = (outcomes, elapsed, ok = true, here = None))]
    fn finish(
        &self,
        py: Python<'_>,
        outcomes: &Bound<'_, PyList>,
        elapsed: f64,
        ok: bool,
        here: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        // Free the slot first: a second dispatcher can start the next batch
        // while this one resolves futures (the device never idles for that).
        let (slots, failed) = self.record(py, outcomes, elapsed, ok, here)?;
        self.handoff(py);
        let done = Completed {
            slots,
            outcomes: outcomes.clone().unbind(),
        };
        done.resolve(py, here).map(|()| failed)
    }

    /// Like `finish`, but only record the outcomes and free the slot: the
    /// futures are resolved by `resolve()` (from any thread; if it is never
    /// called, when the batch is dropped). Lets the dispatcher start the next
    /// batch at once and leave resolving to another thread.
    #[pyo3(signature = (outcomes, elapsed, ok = true))]
    fn complete(
        &self,
        py: Python<'_>,
        outcomes: &Bound<'_, PyList>,
        elapsed: f64,
        ok: bool,
    ) -> PyResult<usize> {
        let (slots, failed) = self.record(py, outcomes, elapsed, ok, None)?;
        // A copy: the handler may reuse the list it returned while another
        // thread resolves these futures later.
        let outcomes = PyList::new(py, outcomes.iter())?.unbind();
        *self.completed.lock() = Some(Completed { slots, outcomes });
        Ok(failed)
    }

    /// Resolve the futures of a `complete`d batch (no-op otherwise).
    fn resolve(&self, py: Python<'_>) -> PyResult<()> {
        let done = self.completed.lock().take();
        match done {
            Some(done) => done.resolve(py, None),
            None => Ok(()),
        }
    }

    /// Fail every item with `exc`.
    #[pyo3(signature = (exc, elapsed, here = None))]
    fn fail(
        &self,
        py: Python<'_>,
        exc: &Bound<'_, PyAny>,
        elapsed: f64,
        here: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let slots = self.take()?;
        let n = slots.len();
        self.shared.q.done(n, secs(elapsed), false, 0, n as u64);
        self.handoff(py);
        resolve(py, slots, here, &|_| exc.clone())
    }

    fn __len__(&self) -> usize {
        self.slots.lock().as_ref().map_or(0, Vec::len)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(slots) = self.slots.try_lock() {
            for s in slots.iter().flatten() {
                s.traverse(&visit)?;
            }
        }
        if let Some(done) = self.completed.try_lock() {
            if let Some(done) = &*done {
                for s in &done.slots {
                    s.traverse(&visit)?;
                }
                visit.call(&done.outcomes)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // Collected unfinished: resolve or fail the futures, as when dropped.
        let completed = self.completed.lock().take();
        let slots = self.slots.lock().take();
        self.abandon(completed, slots);
    }
}

impl PyBatch {
    /// Hand out recorded outcomes, and fail items that never got one with
    /// BatcherClosed (the batch was dropped or collected unfinished).
    fn abandon(&self, completed: Option<Completed>, slots: Option<Vec<Slot>>) {
        if completed.is_none() && slots.is_none() {
            return;
        }
        let n = slots.as_ref().map_or(0, Vec::len);
        Python::attach(|py| {
            if let Some(done) = completed {
                let _ = done.resolve(py, None);
            }
            if let Some(slots) = slots {
                let err =
                    abandoned_error(py, "the batch was abandoned before its results were set");
                let _ = resolve(py, slots, None, &|_| err.bind(py).clone());
            }
        });
        if n > 0 {
            self.shared.q.done(n, Duration::ZERO, false, 0, n as u64);
        }
    }
}

impl Drop for PyBatch {
    fn drop(&mut self) {
        let completed = self.completed.get_mut().take();
        let slots = self.slots.get_mut().take();
        self.abandon(completed, slots);
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}
