//! `BatchFuture`: the awaitable `Batcher.submit_async` returns.
//!
//! It speaks asyncio's future protocol (`_asyncio_future_blocking`,
//! `get_loop`, `add_done_callback(fn, context=)`, `result`, `exception`,
//! `cancel(msg)`, ...), so a `Task` awaits it, and `gather`, `wait`,
//! `wait_for`, `shield` and `as_completed` accept it like an
//! `asyncio.Future`.
//!
//! What it changes is how a *batch* of futures is settled. An
//! `asyncio.Future` schedules each done callback with `loop.call_soon`: per
//! item, a Python-level `call_soon`, a `Handle` object and one trip through
//! the loop's ready queue before the awaiting task even resumes. A batch of
//! `BatchFuture`s is settled by one loop callback ([`settle_batch`]) that
//! first sets every outcome (so, as with asyncio, each woken task sees the
//! whole batch done) and then runs each future's callbacks, in order and in
//! their own `contextvars` context, right there: one loop wake-up per batch,
//! no per-item scheduling. That callback is always a plain loop callback
//! (never inside a task), so running a task's wake-up from it is what the
//! loop itself would do a moment later.
//!
//! Everything else (`cancel`, `set_result`, `set_exception`, a callback
//! added after the future is done) schedules callbacks with `call_soon`,
//! exactly like `asyncio.Future`. All state is touched only with the GIL
//! held; the mutex is never held while Python code runs.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use parking_lot::Mutex;
use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use pyo3::PyTraverseError;

fn asyncio_attr<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyAny>> {
    static CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static INVALID: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let cell = if name == "CancelledError" {
        &CANCELLED
    } else {
        &INVALID
    };
    Ok(cell
        .get_or_try_init(py, || {
            py.import("asyncio")?.getattr(name).map(Bound::unbind)
        })?
        .bind(py)
        .clone())
}

fn copy_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CELL.import(py, "contextvars", "copy_context")?.call0()
}

fn invalid_state(py: Python<'_>, msg: &'static str) -> PyErr {
    match asyncio_attr(py, "InvalidStateError").and_then(|t| t.call1((msg,))) {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending,
    Finished,
    Cancelled,
}

/// (callback, its contextvars.Context)
type Callback = (Py<PyAny>, Py<PyAny>);

struct State {
    phase: Phase,
    event_loop: Option<Py<PyAny>>,
    result: Option<Py<PyAny>>,
    exception: Option<Py<PyAny>>,
    cancel_message: Option<Py<PyAny>>,
    callbacks: Vec<Callback>,
}

/// The outcome of one batch item, awaitable on the event loop that made it.
#[pyclass(
    frozen,
    weakref,
    generic,
    module = "overdrive._core",
    name = "BatchFuture"
)]
pub(crate) struct PyBatchFuture {
    state: Mutex<State>,
    blocking: AtomicBool,
}

impl PyBatchFuture {
    /// A pending future of `event_loop`.
    pub(crate) fn new(event_loop: Py<PyAny>) -> Self {
        PyBatchFuture {
            state: Mutex::new(State {
                phase: Phase::Pending,
                event_loop: Some(event_loop),
                result: None,
                exception: None,
                cancel_message: None,
                callbacks: Vec::new(),
            }),
            blocking: AtomicBool::new(false),
        }
    }

    /// Record `outcome` (an exception instance fails the item) if still
    /// pending; returns the callbacks to run (none if it was already done).
    fn set_outcome(&self, outcome: &Bound<'_, PyAny>) -> Vec<Callback> {
        // Made before locking: the wrapper's message runs the outcome's repr.
        let wrapped = outcome
            .is_instance_of::<pyo3::exceptions::PyStopIteration>()
            .then(|| crate::batch_futures::handler_raised(outcome));
        let outcome = wrapped.as_ref().unwrap_or(outcome);
        let failed = outcome.is_instance_of::<pyo3::exceptions::PyBaseException>();
        let mut s = self.state.lock();
        if s.phase != Phase::Pending {
            return Vec::new();
        }
        s.phase = Phase::Finished;
        if failed {
            s.exception = Some(outcome.clone().unbind());
        } else {
            s.result = Some(outcome.clone().unbind());
        }
        std::mem::take(&mut s.callbacks)
    }

    fn event_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.state
            .lock()
            .event_loop
            .as_ref()
            .map(|l| l.bind(py).clone())
            .ok_or_else(|| invalid_state(py, "the future was cleared"))
    }

    /// Schedule `callbacks` with `loop.call_soon`, as asyncio.Future does.
    fn schedule(slf: &Bound<'_, Self>, callbacks: Vec<Callback>) -> PyResult<()> {
        if callbacks.is_empty() {
            return Ok(());
        }
        let py = slf.py();
        let lp = slf.get().event_loop(py)?;
        let call_soon = lp.getattr(intern!(py, "call_soon"))?;
        for (cb, ctx) in callbacks {
            let kw = PyDict::new(py);
            kw.set_item(intern!(py, "context"), ctx)?;
            call_soon.call((cb, slf), Some(&kw))?;
        }
        Ok(())
    }

    fn cancelled_error<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let msg = self
            .state
            .lock()
            .cancel_message
            .as_ref()
            .map(|m| m.clone_ref(py));
        let t = asyncio_attr(py, "CancelledError")?;
        match msg {
            Some(m) => t.call1((m,)),
            None => t.call0(),
        }
    }
}

/// Settle a batch of futures (all of one event loop) from a plain loop
/// callback: set every outcome first, then run each future's callbacks in
/// order in their own context. A callback that raises is reported to the
/// loop's exception handler, like a failing `Handle`; `SystemExit` and
/// `KeyboardInterrupt` schedule what is left with `call_soon` and propagate.
///
/// With `run_callbacks` false (the loop is closed: nothing can run on it
/// any more) the outcomes are only recorded.
pub(crate) fn settle_batch(
    pairs: &[(Bound<'_, PyBatchFuture>, Bound<'_, PyAny>)],
    run_callbacks: bool,
) -> PyResult<()> {
    let Some((first, _)) = pairs.first() else {
        return Ok(());
    };
    let py = first.py();
    let pending: Vec<(usize, Vec<Callback>)> = pairs
        .iter()
        .enumerate()
        .map(|(i, (f, o))| (i, f.get().set_outcome(o)))
        .filter(|(_, cbs)| run_callbacks && !cbs.is_empty())
        .collect();
    let mut rest = pending.into_iter();
    while let Some((i, cbs)) = rest.next() {
        let fut = &pairs[i].0;
        let mut cbs = cbs.into_iter();
        while let Some((cb, ctx)) = cbs.next() {
            let run = ctx.bind(py).call_method1(intern!(py, "run"), (&cb, fut));
            let Err(err) = run else { continue };
            if err.is_instance_of::<PySystemExit>(py)
                || err.is_instance_of::<PyKeyboardInterrupt>(py)
            {
                // Leave the loop's own machinery to run what is left.
                PyBatchFuture::schedule(fut, cbs.collect())?;
                for (j, later) in rest {
                    PyBatchFuture::schedule(&pairs[j].0, later)?;
                }
                return Err(err);
            }
            report(py, fut, &cb, err);
        }
    }
    Ok(())
}

/// Hand a callback's exception to the loop's exception handler.
fn report(py: Python<'_>, fut: &Bound<'_, PyBatchFuture>, cb: &Py<PyAny>, err: PyErr) {
    let reported = (|| -> PyResult<()> {
        let lp = fut.get().event_loop(py)?;
        let ctx = PyDict::new(py);
        let what = cb
            .bind(py)
            .repr()
            .map_or_else(|_| "?".into(), |r| r.to_string());
        ctx.set_item("message", format!("Exception in callback {what}"))?;
        ctx.set_item("exception", err.value(py))?;
        ctx.set_item("future", fut)?;
        lp.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        Ok(())
    })();
    if let Err(e) = reported {
        e.write_unraisable(py, Some(fut.as_any()));
    }
}

#[pymethods]
impl PyBatchFuture {
    /// A pending future of `loop` (default: the running loop). The batcher
    /// makes these; constructing one is for tests and adapters.
    #[new]
    #[pyo3(signature = (*, r#loop = None))]
    fn py_new(py: Python<'_>, r#loop: Option<Bound<'_, PyAny>>) -> PyResult<Self> {
        let lp = match r#loop {
            Some(l) if !l.is_none() => l,
            _ => crate::batch_futures::running_loop(py).ok_or_else(|| {
                let msg = "BatchFuture() needs loop= outside a running event loop";
                match crate::errors::no_running_event_loop(py) {
                    Some(t) => PyErr::from_type(t, msg),
                    None => pyo3::exceptions::PyRuntimeError::new_err(msg),
                }
            })?,
        };
        Ok(Self::new(lp.unbind()))
    }

    /// asyncio's duck-typing flag: True while a task is about to wait on it.
    #[getter(_asyncio_future_blocking)]
    fn blocking(&self) -> bool {
        self.blocking.load(Relaxed)
    }

    #[setter(_asyncio_future_blocking)]
    fn set_blocking(&self, value: bool) {
        self.blocking.store(value, Relaxed);
    }

    /// The event loop this future belongs to.
    fn get_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.event_loop(py)
    }

    /// True once a result or an exception is set, or it was cancelled.
    fn done(&self) -> bool {
        self.state.lock().phase != Phase::Pending
    }

    /// True if it was cancelled.
    pub(crate) fn cancelled(&self) -> bool {
        self.state.lock().phase == Phase::Cancelled
    }

    /// The result; raises the item's exception, `CancelledError`, or
    /// `InvalidStateError` while pending.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let (phase, result, exc) = {
            let s = self.state.lock();
            (
                s.phase,
                s.result.as_ref().map(|r| r.clone_ref(py)),
                s.exception.as_ref().map(|e| e.clone_ref(py)),
            )
        };
        match phase {
            Phase::Pending => Err(invalid_state(py, "Result is not set.")),
            Phase::Cancelled => Err(PyErr::from_value(self.cancelled_error(py)?)),
            Phase::Finished => match exc {
                Some(e) => Err(PyErr::from_value(e.into_bound(py))),
                None => Ok(result.unwrap_or_else(|| py.None())),
            },
        }
    }

    /// The item's exception (None on success); raises `CancelledError`, or
    /// `InvalidStateError` while pending.
    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let (phase, exc) = {
            let s = self.state.lock();
            (s.phase, s.exception.as_ref().map(|e| e.clone_ref(py)))
        };
        match phase {
            Phase::Pending => Err(invalid_state(py, "Exception is not set.")),
            Phase::Cancelled => Err(PyErr::from_value(self.cancelled_error(py)?)),
            Phase::Finished => Ok(exc),
        }
    }

    /// Call `fn(future)` when done (in `context`, default: a copy of the
    /// current one); scheduled with `call_soon` if already done.
    #[pyo3(signature = (r#fn, *, context = None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        r#fn: Bound<'_, PyAny>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let ctx = match context {
            Some(c) if !c.is_none() => c,
            _ => copy_context(py)?,
        };
        let entry = (r#fn.unbind(), ctx.unbind());
        let done = {
            let mut s = slf.get().state.lock();
            if s.phase == Phase::Pending {
                s.callbacks.push(entry);
                return Ok(());
            }
            entry
        };
        Self::schedule(slf, vec![done])
    }

    /// Remove every registration of `fn`; returns how many were removed.
    fn remove_done_callback(&self, py: Python<'_>, r#fn: Bound<'_, PyAny>) -> PyResult<usize> {
        let cbs = std::mem::take(&mut self.state.lock().callbacks);
        let mut keep = Vec::with_capacity(cbs.len());
        let mut removed = 0usize;
        for (cb, ctx) in cbs {
            // Equality may run Python code: compare outside the lock.
            if cb.bind(py).eq(&r#fn)? {
                removed += 1;
            } else {
                keep.push((cb, ctx));
            }
        }
        let mut s = self.state.lock();
        // Callbacks added meanwhile (by __eq__) go after the kept ones.
        keep.append(&mut s.callbacks);
        s.callbacks = keep;
        Ok(removed)
    }

    /// Cancel it (False if already done) and schedule its callbacks.
    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let cbs = {
            let mut s = slf.get().state.lock();
            if s.phase != Phase::Pending {
                return Ok(false);
            }
            s.phase = Phase::Cancelled;
            s.cancel_message = msg;
            std::mem::take(&mut s.callbacks)
        };
        Self::schedule(slf, cbs)?;
        Ok(true)
    }

    /// Set the result (the batcher does this; `InvalidStateError` if done).
    fn set_result(slf: &Bound<'_, Self>, result: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let cbs = {
            let mut s = slf.get().state.lock();
            if s.phase != Phase::Pending {
                return Err(invalid_state(py, "invalid state"));
            }
            s.phase = Phase::Finished;
            s.result = Some(result.unbind());
            std::mem::take(&mut s.callbacks)
        };
        Self::schedule(slf, cbs)
    }

    /// Set an exception (a class is instantiated; `InvalidStateError` if done).
    fn set_exception(slf: &Bound<'_, Self>, exception: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let exc = match exception.cast::<PyType>() {
            Ok(t) => t.call0()?,
            Err(_) => exception,
        };
        if !exc.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            return Err(PyTypeError::new_err(format!(
                "invalid exception object {}",
                exc.repr()?
            )));
        }
        if exc.is_instance_of::<pyo3::exceptions::PyStopIteration>() {
            return Err(PyTypeError::new_err(
                "StopIteration interacts badly with generators and cannot be raised into a Future",
            ));
        }
        let cbs = {
            let mut s = slf.get().state.lock();
            if s.phase != Phase::Pending {
                return Err(invalid_state(py, "invalid state"));
            }
            s.phase = Phase::Finished;
            s.exception = Some(exc.unbind());
            std::mem::take(&mut s.callbacks)
        };
        Self::schedule(slf, cbs)
    }

    /// The message `cancel(msg)` was given (asyncio.gather reads it).
    #[getter]
    fn _cancel_message(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .lock()
            .cancel_message
            .as_ref()
            .map(|m| m.clone_ref(py))
    }

    /// The CancelledError a cancelled future raises (asyncio.gather calls it).
    fn _make_cancelled_error<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.cancelled_error(py)
    }

    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Yield itself while pending (the task then waits on it), else finish
    /// with the result (StopIteration) or raise the exception.
    fn __next__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        if slf.get().state.lock().phase == Phase::Pending {
            slf.get().blocking.store(true, Relaxed);
            return Ok(slf.clone());
        }
        let value = slf.get().result(py)?;
        // The instance made here directly: a lazy PyErr would box the
        // arguments and build the same object when raised.
        let stop = py
            .get_type::<pyo3::exceptions::PyStopIteration>()
            .call1((value,))?;
        Err(PyErr::from_value(stop))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        // References are copied out: repr() runs Python code, never under the lock.
        let (phase, exc, result) = {
            let s = self.state.lock();
            (
                s.phase,
                s.exception.as_ref().map(|e| e.clone_ref(py)),
                s.result.as_ref().map(|r| r.clone_ref(py)),
            )
        };
        let shown = |o: Py<PyAny>| {
            o.bind(py)
                .repr()
                .map_or_else(|_| "?".into(), |r| r.to_string())
        };
        match (phase, exc, result) {
            (Phase::Pending, _, _) => "<BatchFuture pending>".to_string(),
            (Phase::Cancelled, _, _) => "<BatchFuture cancelled>".to_string(),
            (Phase::Finished, Some(e), _) => {
                format!("<BatchFuture finished exception={}>", shown(e))
            }
            (Phase::Finished, None, r) => format!(
                "<BatchFuture finished result={}>",
                r.map_or_else(|| "None".into(), shown)
            ),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(s) = self.state.try_lock() {
            for o in [&s.event_loop, &s.result, &s.exception, &s.cancel_message]
                .into_iter()
                .flatten()
            {
                visit.call(o)?;
            }
            for (cb, ctx) in &s.callbacks {
                visit.call(cb)?;
                visit.call(ctx)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let mut s = self.state.lock();
        let taken = (
            s.event_loop.take(),
            s.result.take(),
            s.exception.take(),
            s.cancel_message.take(),
            std::mem::take(&mut s.callbacks),
        );
        drop(s);
        drop(taken);
    }
}
