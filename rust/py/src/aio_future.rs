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
//! no per-item scheduling. That callback is a plain loop callback (never
//! inside a task; `_settle` checks and falls back to `call_soon`), so running
//! a task's wake-up from it is what the loop would do later, except that it
//! runs before handles already queued behind `_settle`.
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
    /// The exception's `__traceback__` when it was set, restored before each
    /// raise (as asyncio does) so raising it in N awaiting tasks does not
    /// chain their frames onto one traceback.
    exception_tb: Option<Py<PyAny>>,
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
                exception_tb: None,
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
        if outcome.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            self.finish(Err(outcome))
        } else {
            self.finish(Ok(outcome))
        }
        .unwrap_or_default()
    }

    /// Finish with a result or an exception instance if still pending:
    /// the callbacks to run, or None if it was already done.
    fn finish(
        &self,
        outcome: Result<&Bound<'_, PyAny>, &Bound<'_, PyAny>>,
    ) -> Option<Vec<Callback>> {
        // Read before locking (a C-level attribute, no Python code runs).
        let tb = match outcome {
            Err(e) => e
                .getattr(intern!(e.py(), "__traceback__"))
                .ok()
                .filter(|t| !t.is_none())
                .map(Bound::unbind),
            Ok(_) => None,
        };
        let mut s = self.state.lock();
        if s.phase != Phase::Pending {
            return None;
        }
        s.phase = Phase::Finished;
        match outcome {
            Ok(r) => s.result = Some(r.clone().unbind()),
            Err(e) => {
                s.exception = Some(e.clone().unbind());
                s.exception_tb = tb;
            }
        }
        Some(std::mem::take(&mut s.callbacks))
    }

    /// The stored exception as an error to raise, its traceback reset to
    /// the one it had when it was set.
    fn raise_exception(py: Python<'_>, exc: Py<PyAny>, tb: Option<Py<PyAny>>) -> PyErr {
        let exc = exc.into_bound(py);
        let tb = tb.unwrap_or_else(|| py.None());
        if let Err(e) = exc.setattr(intern!(py, "__traceback__"), tb) {
            return e;
        }
        PyErr::from_value(exc)
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

/// How `settle_batch` hands out callbacks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Run them here: a plain loop callback on the futures' loop, with no
    /// task running (what `_settle` checks).
    Run,
    /// Schedule each with `call_soon`, as `asyncio.Future` does (called
    /// from inside a task, or off the loop).
    Schedule,
    /// Only record the outcomes: the loop is closed, nothing runs on it.
    RecordOnly,
}

/// Settle a batch of futures (all of one event loop): set every outcome
/// first, then deliver each future's callbacks in order (see `Delivery`),
/// each in its own context. Run here, a callback that raises is reported to
/// the loop's exception handler, like a failing `Handle`; `SystemExit` and
/// `KeyboardInterrupt` (from a callback or from that handler) schedule what
/// is left with `call_soon` and propagate.
pub(crate) fn settle_batch(
    pairs: &[(Bound<'_, PyBatchFuture>, Bound<'_, PyAny>)],
    delivery: Delivery,
) -> PyResult<()> {
    let Some((first, _)) = pairs.first() else {
        return Ok(());
    };
    let py = first.py();
    let pending: Vec<(usize, Vec<Callback>)> = pairs
        .iter()
        .enumerate()
        .map(|(i, (f, o))| (i, f.get().set_outcome(o)))
        .filter(|(_, cbs)| delivery != Delivery::RecordOnly && !cbs.is_empty())
        .collect();
    if delivery == Delivery::Schedule {
        for (i, cbs) in pending {
            PyBatchFuture::schedule(&pairs[i].0, cbs)?;
        }
        return Ok(());
    }
    let mut rest = pending.into_iter();
    while let Some((i, cbs)) = rest.next() {
        let fut = &pairs[i].0;
        let mut cbs = cbs.into_iter();
        while let Some((cb, ctx)) = cbs.next() {
            let run = ctx.bind(py).call_method1(intern!(py, "run"), (&cb, fut));
            let Err(err) = run else { continue };
            let Err(fatal) = report(py, fut, &cb, err) else {
                continue;
            };
            // Leave the loop's own machinery to run what is left; the
            // interrupt wins over an error scheduling it.
            let mut later = vec![(fut, cbs.collect::<Vec<_>>())];
            later.extend(rest.map(|(j, c)| (&pairs[j].0, c)));
            for (f, c) in later {
                let _ = PyBatchFuture::schedule(f, c);
            }
            return Err(fatal);
        }
    }
    Ok(())
}

fn is_interrupt(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py)
}

/// Hand a callback's exception to the loop's exception handler, as a
/// failing `Handle` does. `Err`: an interrupt (`SystemExit`,
/// `KeyboardInterrupt`) from the callback or from the handler, to propagate.
fn report(
    py: Python<'_>,
    fut: &Bound<'_, PyBatchFuture>,
    cb: &Py<PyAny>,
    err: PyErr,
) -> PyResult<()> {
    if is_interrupt(py, &err) {
        return Err(err);
    }
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
    match reported {
        Err(e) if is_interrupt(py, &e) => Err(e),
        Err(e) => {
            e.write_unraisable(py, Some(fut.as_any()));
            Ok(())
        }
        Ok(()) => Ok(()),
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
        let (phase, result, exc, tb) = {
            let s = self.state.lock();
            (
                s.phase,
                s.result.as_ref().map(|r| r.clone_ref(py)),
                s.exception.as_ref().map(|e| e.clone_ref(py)),
                s.exception_tb.as_ref().map(|t| t.clone_ref(py)),
            )
        };
        match phase {
            Phase::Pending => Err(invalid_state(py, "Result is not set.")),
            Phase::Cancelled => Err(PyErr::from_value(self.cancelled_error(py)?)),
            Phase::Finished => match exc {
                Some(e) => Err(Self::raise_exception(py, e, tb)),
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
    fn remove_done_callback(slf: &Bound<'_, Self>, r#fn: Bound<'_, PyAny>) -> PyResult<usize> {
        let py = slf.py();
        let cbs = std::mem::take(&mut slf.get().state.lock().callbacks);
        let mut keep = Vec::with_capacity(cbs.len());
        let mut removed = 0usize;
        let mut failed = None;
        for (cb, ctx) in cbs {
            if failed.is_some() {
                keep.push((cb, ctx));
                continue;
            }
            // Identity first, as asyncio does; equality may run Python code,
            // so it is compared outside the lock.
            let same = cb.is(&r#fn) || {
                match cb.bind(py).eq(&r#fn) {
                    Ok(eq) => eq,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            };
            if same {
                removed += 1;
            } else {
                keep.push((cb, ctx));
            }
        }
        // Put the rest back, after anything added meanwhile (by __eq__);
        // if __eq__ finished the future meanwhile, hand them out now.
        let done = {
            let mut s = slf.get().state.lock();
            keep.append(&mut s.callbacks);
            if s.phase == Phase::Pending {
                s.callbacks = keep;
                Vec::new()
            } else {
                keep
            }
        };
        Self::schedule(slf, done)?;
        match failed {
            Some(e) => Err(e),
            None => Ok(removed),
        }
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
        match slf.get().finish(Ok(&result)) {
            Some(cbs) => Self::schedule(slf, cbs),
            None => Err(invalid_state(slf.py(), "invalid state")),
        }
    }

    /// Set an exception (a class is instantiated; `InvalidStateError` if done).
    fn set_exception(slf: &Bound<'_, Self>, exception: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().done() {
            return Err(invalid_state(py, "invalid state"));
        }
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
        // asyncio refuses StopIteration itself (not its subclasses).
        if exc
            .get_type()
            .is(py.get_type::<pyo3::exceptions::PyStopIteration>())
        {
            return Err(PyTypeError::new_err(
                "StopIteration interacts badly with generators and cannot be raised into a Future",
            ));
        }
        match slf.get().finish(Err(&exc)) {
            Some(cbs) => Self::schedule(slf, cbs),
            // Finished by someone else while the class was instantiated.
            None => Err(invalid_state(py, "invalid state")),
        }
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
