//! The futures of batched items: the asyncio running-loop cache, and
//! resolving futures (directly for `concurrent.futures`; for each event
//! loop, one `_settle` callback per batch that settles its `BatchFuture`s
//! at once, see `aio_future`).

use std::cell::RefCell;

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::aio_future::{settle_batch, Delivery, PyBatchFuture};
use crate::errors::batcher_closed;

/// An item, the future its caller waits on, and that future's event loop
/// (None for a `concurrent.futures.Future`).
pub(crate) struct Slot {
    item: Py<PyAny>,
    fut: Py<PyAny>,
    event_loop: Option<Py<PyAny>>,
}

impl Slot {
    /// A slot for `item` whose caller waits on `fut` (of `event_loop`, if asyncio).
    pub(crate) fn new(item: Py<PyAny>, fut: Py<PyAny>, event_loop: Option<Py<PyAny>>) -> Self {
        Slot {
            item,
            fut,
            event_loop,
        }
    }

    /// The item, for the handler.
    pub(crate) fn item(&self) -> &Py<PyAny> {
        &self.item
    }

    /// Take the item back (a submit that could not queue it).
    pub(crate) fn into_item(self) -> Py<PyAny> {
        self.item
    }

    /// Whether the caller still wants the result: a concurrent future is
    /// claimed (it can no longer be cancelled), an asyncio one checked.
    pub(crate) fn wanted(&self, py: Python<'_>, cf: Option<&Bound<'_, PyType>>) -> bool {
        let fut = self.fut.bind(py);
        match (&self.event_loop, cf) {
            (None, Some(cf)) if fut.is_exact_instance(cf) => fut
                .call_method0(intern!(py, "set_running_or_notify_cancel"))
                .and_then(|r| r.is_truthy())
                .unwrap_or(false),
            _ => match fut.cast::<PyBatchFuture>() {
                Ok(bf) => !bf.get().cancelled(),
                Err(_) => !fut
                    .call_method0(intern!(py, "cancelled"))
                    .and_then(|r| r.is_truthy())
                    .unwrap_or(false),
            },
        }
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.item)?;
        visit.call(&self.fut)?;
        if let Some(l) = &self.event_loop {
            visit.call(l)?;
        }
        Ok(())
    }
}

pub(crate) fn cf_future_type(py: Python<'_>) -> Option<Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CELL.import(py, "concurrent.futures", "Future")
        .ok()
        .cloned()
}

fn stdlib_running_loop(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let get = CELL.import(py, "asyncio", "_get_running_loop").ok()?;
    get.call0().ok().filter(|l| !l.is_none())
}

thread_local! {
    /// (running-loop holder, its loop) last seen on this thread; see `running_loop`.
    static LOOP_CACHE: RefCell<Option<(Py<PyAny>, Py<PyAny>)>> = const { RefCell::new(None) };
}

/// What C asyncio keeps in the thread-state dict for the running loop: on
/// CPython 3.11 a new, immutable holder object each time the running loop
/// changes, on 3.12 the loop itself (or None); absent on later versions,
/// which keep it on the thread state.
fn running_loop_holder(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    // SAFETY: we are attached (`py`); PyThreadState_GetDict returns a borrowed
    // reference to this thread's state dict, or NULL without setting an error.
    let d = unsafe { pyo3::ffi::PyThreadState_GetDict() };
    if d.is_null() {
        return None;
    }
    // SAFETY: `d` is a valid borrowed reference (see above); we take a new one.
    let d = unsafe { Bound::from_borrowed_ptr(py, d) };
    let d = d.cast_into::<PyDict>().ok()?;
    d.get_item(intern!(py, "__asyncio_running_event_loop__"))
        .ok()
        .flatten()
}

/// asyncio's running loop on this thread (`asyncio._get_running_loop()`).
///
/// On CPython 3.11 that call makes a getpid() syscall every time (its fork
/// check), ~150-300 ns on a VM and the largest single cost of an async
/// submit. The answer only changes when asyncio stores a different object
/// in the thread-state dict (3.11: a new holder for every change of the
/// running loop; 3.12: the loop), or in a forked child (the facade clears
/// the cache there with `os.register_at_fork`), so it is cached per thread
/// against that object's identity; the cache keeps the object alive, so
/// its address cannot be reused by another one. Without the dict entry
/// (3.13+), asyncio's own function is called every time.
pub(crate) fn running_loop(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    let holder = running_loop_holder(py);
    if let Some(h) = &holder {
        let hit = LOOP_CACHE
            .try_with(|c| {
                c.try_borrow().ok().and_then(|c| {
                    c.as_ref()
                        .filter(|(ch, _)| ch.as_ptr() == h.as_ptr())
                        .map(|(_, l)| l.clone_ref(py))
                })
            })
            .ok()
            .flatten();
        if let Some(l) = hit {
            return Some(l.into_bound(py));
        }
    }
    let lp = stdlib_running_loop(py)?;
    if let Some(h) = holder {
        let entry = (h.unbind(), lp.clone().unbind());
        let _ = LOOP_CACHE.try_with(|c| c.try_borrow_mut().map(|mut c| *c = Some(entry)));
    }
    Some(lp)
}

/// _forget_running_loop(): clear this thread's running-loop cache (called in
/// a forked child, where asyncio reports no running loop).
#[pyfunction]
#[pyo3(name = "_forget_running_loop")]
pub(crate) fn forget_running_loop() {
    let old = LOOP_CACHE
        .try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.take()))
        .ok()
        .flatten();
    drop(old);
}

/// Set one future's outcome; a future already done (cancelled by its
/// caller) is left alone.
fn settle_one(fut: &Bound<'_, PyAny>, outcome: &Bound<'_, PyAny>) {
    let py = fut.py();
    if !outcome.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        // InvalidStateError: the caller cancelled it meanwhile. Nothing to do.
        let _ = fut.call_method1(intern!(py, "set_result"), (outcome,));
        return;
    }
    if fut
        .call_method1(intern!(py, "set_exception"), (outcome,))
        .is_err()
    {
        // An asyncio future refuses StopIteration (TypeError): hand it over
        // as asyncio does for a coroutine, a RuntimeError caused by it,
        // rather than leave the caller waiting for ever.
        let done = fut
            .call_method0(intern!(py, "done"))
            .and_then(|d| d.is_truthy())
            .unwrap_or(true);
        if !done {
            let err = handler_raised(outcome);
            let _ = fut.call_method1(intern!(py, "set_exception"), (err,));
        }
    }
}

/// A RuntimeError caused by `outcome`: what an item gets for an exception
/// no future may hold (StopIteration would end the awaiting coroutine's
/// `await` as if it returned), as asyncio does for a coroutine.
pub(crate) fn handler_raised<'py>(outcome: &Bound<'py, PyAny>) -> Bound<'py, PyAny> {
    let py = outcome.py();
    let err = PyRuntimeError::new_err(format!(
        "the batch handler raised {}",
        outcome
            .repr()
            .map_or_else(|_| "?".into(), |r| r.to_string())
    ));
    err.set_cause(py, Some(PyErr::from_value(outcome.clone())));
    err.into_value(py).into_bound(py).into_any()
}

/// _settle(futures, outcomes): resolve the futures of one event loop, as
/// one callback on that loop (see `resolve`): `BatchFuture`s all at once
/// (see `aio_future`), any other future by `set_result`/`set_exception`.
/// Callbacks run right here only from a plain callback on the futures' own
/// running loop; called inside a task, or off the loop, they are scheduled
/// with `call_soon` instead; on a closed loop outcomes are only recorded.
#[pyfunction]
#[pyo3(name = "_settle")]
pub(crate) fn settle(futs: &Bound<'_, PyList>, outcomes: &Bound<'_, PyList>) -> PyResult<()> {
    let delivery = match futs.iter().next() {
        Some(f) => match f.cast::<PyBatchFuture>() {
            Ok(bf) => delivery_for(&bf.call_method0(intern!(f.py(), "get_loop"))?)?,
            Err(_) => Delivery::Run,
        },
        None => return Ok(()),
    };
    settle_list(futs, outcomes, delivery)
}

/// Whether a `_settle` may run callbacks inline for futures of `lp`.
fn delivery_for(lp: &Bound<'_, PyAny>) -> PyResult<Delivery> {
    let py = lp.py();
    if lp.call_method0(intern!(py, "is_closed"))?.is_truthy()? {
        return Ok(Delivery::RecordOnly);
    }
    let on_loop = running_loop(py).is_some_and(|r| r.is(lp));
    if !on_loop {
        return Ok(Delivery::Schedule);
    }
    static CURRENT_TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let in_task = !CURRENT_TASK
        .import(py, "asyncio", "current_task")?
        .call1((lp,))?
        .is_none();
    Ok(if in_task {
        Delivery::Schedule
    } else {
        Delivery::Run
    })
}

fn settle_list(
    futs: &Bound<'_, PyList>,
    outcomes: &Bound<'_, PyList>,
    delivery: Delivery,
) -> PyResult<()> {
    if futs.len() != outcomes.len() {
        return Err(PyRuntimeError::new_err(format!(
            "_settle needs one outcome per future: {} futures, {} outcomes",
            futs.len(),
            outcomes.len()
        )));
    }
    let mut batch = Vec::with_capacity(futs.len());
    for (f, o) in futs.iter().zip(outcomes.iter()) {
        match f.cast_into::<PyBatchFuture>() {
            Ok(bf) => batch.push((bf, o)),
            Err(e) => settle_one(&e.into_inner(), &o),
        }
    }
    settle_batch(&batch, delivery)
}

fn settle_fn(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CELL.import(py, "overdrive._core", "_settle").cloned()
}

/// The futures of one event loop and their outcomes.
type LoopGroup<'py> = (Py<PyAny>, Vec<Py<PyAny>>, Vec<Bound<'py, PyAny>>);

/// Resolve `slots` with `outcome(i)`: concurrent futures directly; the
/// futures of each event loop with one `_settle` callback on that loop per
/// batch (`call_soon` on `here`, the running loop, else
/// `call_soon_threadsafe`). Always a callback, never inline: `_settle` runs
/// the awaiting tasks' wake-ups itself, which must not happen inside a task.
pub(crate) fn resolve<'py>(
    py: Python<'py>,
    slots: Vec<Slot>,
    here: Option<&Bound<'py, PyAny>>,
    outcome: &dyn Fn(usize) -> Bound<'py, PyAny>,
) -> PyResult<()> {
    let mut groups: Vec<LoopGroup<'py>> = Vec::new();
    for (i, s) in slots.into_iter().enumerate() {
        let o = outcome(i);
        match s.event_loop {
            None => settle_one(s.fut.bind(py), &o),
            Some(l) => match groups.iter_mut().find(|g| g.0.as_ptr() == l.as_ptr()) {
                Some(g) => {
                    g.1.push(s.fut);
                    g.2.push(o);
                }
                None => groups.push((l, vec![s.fut], vec![o])),
            },
        }
    }
    let mut failed: Option<PyErr> = None;
    for (l, futs, outs) in groups {
        let futs = PyList::new(py, futs)?;
        let outs = PyList::new(py, outs)?;
        let method = if here.is_some_and(|h| h.as_ptr() == l.as_ptr()) {
            intern!(py, "call_soon")
        } else {
            intern!(py, "call_soon_threadsafe")
        };
        let scheduled = l
            .bind(py)
            .call_method1(method, (settle_fn(py)?, &futs, &outs));
        if let Err(e) = scheduled {
            let closed = l
                .bind(py)
                .call_method0(intern!(py, "is_closed"))
                .and_then(|c| c.is_truthy())
                .unwrap_or(true);
            if closed {
                // Nobody can await these any more: record the outcomes for
                // whoever holds the futures.
                settle_list(&futs, &outs, Delivery::RecordOnly)?;
            } else {
                // call_soon itself failed (an interrupt, no memory): settle
                // with the callbacks scheduled one by one, then report it.
                let _ = settle_list(&futs, &outs, Delivery::Schedule);
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub(crate) fn abandoned_error(py: Python<'_>, msg: &str) -> Py<PyAny> {
    let err = match batcher_closed(py) {
        Some(t) => PyErr::from_type(t, msg.to_string()),
        None => PyRuntimeError::new_err(msg.to_string()),
    };
    err.into_value(py).into_any()
}
