//! Binding for the request batcher: `BatchQueue` and the `Batch` handle.
//!
//! Items and their futures are Python objects held as owned references
//! (`Py<PyAny>`); the core only moves them around. While the GIL is released
//! (a blocking push, a dispatcher waiting for a batch) nothing touches them.
//!
//! The Python facade (`overdrive/batching.py`) calls the handler; this file
//! does the per-item work around it in Rust: dropping cancelled items,
//! failing expired and evicted ones, and resolving every future. asyncio
//! futures of another loop are settled with one `call_soon_threadsafe` per
//! loop per batch.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use overdrive_core::batcher::{millis, Batch, Meta, Next, Queue};
use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};

use crate::aio_future::{settle_batch, PyBatchFuture};
use crate::batch_common::{block_timeout, make_config, push_or_block, stats_dict, PushFail};
use crate::errors::{bad_value, batcher_closed, to_py, IntoPy};

/// An item, the future its caller waits on, and that future's event loop
/// (None for a `concurrent.futures.Future`).
pub(crate) struct Slot {
    item: Py<PyAny>,
    fut: Py<PyAny>,
    event_loop: Option<Py<PyAny>>,
}

fn cf_future_type(py: Python<'_>) -> Option<Bound<'_, PyType>> {
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
fn running_loop(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
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
    let r = if outcome.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        fut.call_method1(intern!(py, "set_exception"), (outcome,))
    } else {
        fut.call_method1(intern!(py, "set_result"), (outcome,))
    };
    // InvalidStateError: the caller cancelled it meanwhile. Nothing to do.
    drop(r);
}

/// _settle(futures, outcomes): resolve the futures of one event loop, as
/// one callback on that loop (see `resolve`): `BatchFuture`s all at once
/// (their callbacks run here, see `aio_future`), any other future by
/// `set_result`/`set_exception`.
#[pyfunction]
#[pyo3(name = "_settle")]
pub(crate) fn settle(futs: &Bound<'_, PyList>, outcomes: &Bound<'_, PyList>) -> PyResult<()> {
    settle_list(futs, outcomes, true)
}

fn settle_list(
    futs: &Bound<'_, PyList>,
    outcomes: &Bound<'_, PyList>,
    run_callbacks: bool,
) -> PyResult<()> {
    let mut batch = Vec::with_capacity(futs.len());
    for (f, o) in futs.iter().zip(outcomes.iter()) {
        match f.cast_into::<PyBatchFuture>() {
            Ok(bf) => batch.push((bf, o)),
            Err(e) => settle_one(&e.into_inner(), &o),
        }
    }
    settle_batch(&batch, run_callbacks)
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
fn resolve<'py>(
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
        if scheduled.is_err() {
            // The loop is closed: nobody can await these any more; record
            // the outcomes for whoever holds the futures.
            settle_list(&futs, &outs, false)?;
        }
    }
    Ok(())
}

/// The queue, timing and batch formation of a `Batcher` (see overdrive.batching).
#[pyclass(frozen, module = "overdrive._core", name = "BatchQueue")]
pub(crate) struct PyBatchQueue {
    q: Arc<Queue<Slot>>,
    /// Key object -> lane id (keys compare by Python equality).
    keys: Py<PyDict>,
    weigher: Option<Py<PyAny>>,
    block_timeout: Option<Duration>,
    hooks: Mutex<AsyncHooks>,
}

/// The asyncio-handler mode's wiring (see `set_hooks`). Held only briefly,
/// never while calling Python.
#[derive(Default)]
struct AsyncHooks {
    dispatch_loop: Option<Py<PyAny>>,
    wake: Option<Py<PyAny>>,
    foreign: Option<Py<PyAny>>,
    full: Option<Py<PyAny>>,
}

#[pymethods]
impl PyBatchQueue {
    #[new]
    #[pyo3(signature = (max_batch_size = 64, max_wait_ms = 5.0, max_queue = 10_000, on_full = "block", max_batch_weight = None, max_concurrency = 1, adaptive = false, latency_target_ms = None, aging_ms = 100.0, admission = false, weigher = None, block_timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_batch_size: i64,
        max_wait_ms: f64,
        max_queue: i64,
        on_full: &str,
        max_batch_weight: Option<i64>,
        max_concurrency: i64,
        adaptive: bool,
        latency_target_ms: Option<f64>,
        aging_ms: f64,
        admission: bool,
        weigher: Option<Py<PyAny>>,
        block_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let mut cfg = make_config(
            py,
            max_batch_size,
            max_wait_ms,
            max_queue,
            on_full,
            max_batch_weight,
            max_concurrency,
        )?;
        cfg.adaptive = adaptive;
        cfg.latency_target = latency_target_ms
            .map(|t| millis("latency_target_ms", t, false).py(py))
            .transpose()?;
        cfg.aging = millis("aging_ms", aging_ms, false).py(py)?;
        cfg.admission = admission;
        if weigher.is_none() && cfg.max_batch_weight.is_some() {
            return Err(bad_value(
                py,
                "max_batch_weight",
                max_batch_weight.unwrap_or_default(),
                "needs a weigher(item) -> int",
            ));
        }
        Ok(PyBatchQueue {
            q: Arc::new(Queue::new(cfg).py(py)?),
            keys: PyDict::new(py).unbind(),
            weigher,
            block_timeout: crate::batch_common::block_timeout(py, block_timeout)?,
            hooks: Mutex::new(AsyncHooks::default()),
        })
    }

    /// submit(item, priority=0, deadline_ms=None, key=None) -> concurrent.futures.Future
    ///
    /// Queue `item`; blocks (GIL released) while the queue is full under
    /// `on_full="block"`.
    #[pyo3(signature = (item, priority = 0, deadline_ms = None, key = None))]
    fn submit<'py>(
        &self,
        py: Python<'py>,
        item: Py<PyAny>,
        priority: i32,
        deadline_ms: Option<f64>,
        key: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cf = cf_future_type(py)
            .ok_or_else(|| PyRuntimeError::new_err("concurrent.futures is unavailable"))?;
        let fut = cf.call0()?;
        let meta = self.meta(py, item.bind(py), priority, deadline_ms, key)?;
        let slot = Slot {
            item,
            fut: fut.clone().unbind(),
            event_loop: None,
        };
        self.push_slot(py, slot, meta, self.block_timeout, true)?;
        self.after_push(py, None)?;
        Ok(fut)
    }

    /// submit_async(item, priority=0, deadline_ms=None, key=None) -> asyncio.Future
    ///
    /// Queue `item` from a coroutine and return a future of the running loop.
    /// Never blocks the loop: when the queue is full under `on_full="block"`
    /// the awaitable comes from the facade's waiting hook.
    #[pyo3(signature = (item, priority = 0, deadline_ms = None, key = None))]
    fn submit_async<'py>(
        &self,
        py: Python<'py>,
        item: Py<PyAny>,
        priority: i32,
        deadline_ms: Option<f64>,
        key: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lp = running_loop(py).ok_or_else(|| {
            PyRuntimeError::new_err("submit_async() must be called from a running event loop")
        })?;
        let fut = Bound::new(py, PyBatchFuture::new(lp.clone().unbind()))?.into_any();
        let meta = self.meta(py, item.bind(py), priority, deadline_ms, key)?;
        let slot = Slot {
            item,
            fut: fut.clone().unbind(),
            event_loop: Some(lp.clone().unbind()),
        };
        match push_or_block(py, &self.q, slot, meta, None, false) {
            Ok((dropped, _)) => self.fail_dropped(py, dropped)?,
            Err((slot, PushFail::WouldBlock)) => {
                let full = self.hooks.lock().full.as_ref().map(|f| f.clone_ref(py));
                if let Some(full) = full {
                    let key = key.map_or_else(|| py.None().into_bound(py), Bound::clone);
                    return full.bind(py).call1((slot.item, priority, deadline_ms, key));
                }
                return Err(to_py(py, self.q.full_error()));
            }
            Err((_slot, PushFail::Error(e))) => return Err(to_py(py, e)),
        }
        self.after_push(py, Some(&lp))?;
        Ok(fut)
    }

    /// Hooks of the asyncio-handler mode (all None in thread mode):
    /// `foreign(loop_or_None)` runs after a push from outside the dispatch
    /// loop; `full(item, priority, deadline_ms, key)` returns an awaitable
    /// for an async submit into a full queue under `on_full="block"`.
    #[pyo3(signature = (foreign = None, full = None))]
    fn set_hooks(&self, foreign: Option<Py<PyAny>>, full: Option<Py<PyAny>>) {
        let mut h = self.hooks.lock();
        h.foreign = foreign;
        h.full = full;
    }

    /// The event loop the async dispatcher runs on (None: unbound).
    fn set_dispatch_loop(&self, event_loop: Option<Py<PyAny>>) {
        let mut h = self.hooks.lock();
        h.dispatch_loop = event_loop;
        h.wake = None;
    }

    /// The async dispatcher is about to sleep on `waiter` (an asyncio
    /// future): the next push from its loop sets it.
    fn arm(&self, waiter: Py<PyAny>) {
        self.hooks.lock().wake = Some(waiter);
    }

    /// Set the armed waiter now, if any.
    fn wake(&self, py: Python<'_>) {
        let w = self.hooks.lock().wake.take();
        if let Some(w) = w {
            let _ = w
                .bind(py)
                .call_method1(intern!(py, "set_result"), (py.None(),));
        }
    }

    /// Block (GIL released) until a batch is due: (items, Batch, reason,
    /// None), or ([], None, "", None) when only expired items (failed here)
    /// or the timeout came back. None once closed and drained.
    #[pyo3(signature = (timeout = None))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let timeout = block_timeout(py, timeout)?;
        let next = py.detach(|| self.q.next(timeout));
        self.convert(py, next)
    }

    /// Non-blocking `next`: with nothing due, ([], None, "", wait) where wait
    /// is the seconds until something may be (-1.0: until woken).
    fn poll<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let next = self.q.poll();
        self.convert(py, next)
    }

    /// Force out everything queued so far.
    fn flush(&self) {
        self.q.flush();
    }

    /// Stop accepting; what is queued still drains through `next`/`poll`.
    fn close(&self) {
        self.q.close();
    }

    /// True once `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.q.is_closed()
    }

    /// Batches running now.
    #[getter]
    fn in_flight(&self) -> usize {
        self.q.in_flight()
    }

    fn __len__(&self) -> usize {
        self.q.len()
    }

    /// Counters, percentiles, flush reasons, queue depth and the model.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.q)
    }
}

impl PyBatchQueue {
    fn meta(
        &self,
        py: Python<'_>,
        item: &Bound<'_, PyAny>,
        priority: i32,
        deadline_ms: Option<f64>,
        key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Meta> {
        let mut meta = Meta {
            priority,
            ..Meta::default()
        };
        if let Some(ms) = deadline_ms {
            meta.deadline = Some(Instant::now() + millis("deadline_ms", ms, false).py(py)?);
        }
        if let Some(k) = key.filter(|k| !k.is_none()) {
            let keys = self.keys.bind(py);
            meta.key = match keys.get_item(k)? {
                Some(id) => id.extract()?,
                None => {
                    let id = keys.len() as u64 + 1;
                    keys.set_item(k, id)?;
                    id
                }
            };
        }
        if let Some(w) = &self.weigher {
            let v = w.bind(py).call1((item,))?;
            meta.weight = v.extract::<u64>().map_err(|_| {
                bad_value(
                    py,
                    "weigher",
                    v.repr().map_or_else(|_| "?".into(), |r| r.to_string()),
                    "weigher(item) must return an int >= 0",
                )
            })?;
        }
        Ok(meta)
    }

    /// After a push in asyncio-handler mode: wake the dispatcher if it sleeps
    /// on this loop, else let the facade bind or kick it across threads.
    fn after_push(&self, py: Python<'_>, here: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let (wake, foreign) = {
            let mut h = self.hooks.lock();
            let Some(foreign) = &h.foreign else {
                return Ok(());
            };
            let same =
                matches!((&h.dispatch_loop, here), (Some(d), Some(l)) if d.as_ptr() == l.as_ptr());
            if same {
                (h.wake.take(), None)
            } else {
                (None, Some(foreign.clone_ref(py)))
            }
        };
        if let Some(w) = wake {
            let _ = w
                .bind(py)
                .call_method1(intern!(py, "set_result"), (py.None(),));
        }
        if let Some(f) = foreign {
            f.bind(py).call1((here,))?;
        }
        Ok(())
    }

    fn fail_dropped(&self, py: Python<'_>, dropped: Option<Slot>) -> PyResult<()> {
        let Some(dropped) = dropped else {
            return Ok(());
        };
        let err = to_py(py, self.q.dropped_error()).into_value(py).into_any();
        let here = running_loop(py);
        resolve(py, vec![dropped], here.as_ref(), &|_| err.bind(py).clone())
    }

    fn push_slot(
        &self,
        py: Python<'_>,
        slot: Slot,
        meta: Meta,
        timeout: Option<Duration>,
        block: bool,
    ) -> PyResult<()> {
        match push_or_block(py, &self.q, slot, meta, timeout, block) {
            Ok((dropped, _)) => self.fail_dropped(py, dropped),
            Err((_slot, PushFail::WouldBlock)) => Err(to_py(py, self.q.full_error())),
            Err((_slot, PushFail::Error(e))) => Err(to_py(py, e)),
        }
    }

    fn fail_expired(&self, py: Python<'_>, expired: Vec<Slot>) -> PyResult<()> {
        if expired.is_empty() {
            return Ok(());
        }
        let err = to_py(py, self.q.expired_error()).into_value(py).into_any();
        let here = running_loop(py);
        resolve(py, expired, here.as_ref(), &|_| err.bind(py).clone())
    }

    fn convert<'py>(
        &self,
        py: Python<'py>,
        next: Next<Slot>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let nothing = |wait: Option<f64>| -> PyResult<Option<Bound<'py, PyTuple>>> {
            let t = (PyList::empty(py), py.None(), "", wait).into_pyobject(py)?;
            Ok(Some(t))
        };
        match next {
            Next::Batch(b, expired) => {
                self.fail_expired(py, expired)?;
                self.start_batch(py, b)
            }
            Next::Expired(expired) => {
                self.fail_expired(py, expired)?;
                nothing(None)
            }
            Next::Wait(when) => nothing(Some(when.map_or(-1.0, |w| {
                w.saturating_duration_since(Instant::now()).as_secs_f64()
            }))),
            Next::Timeout => nothing(None),
            Next::Closed => Ok(None),
        }
    }

    /// Drop cancelled items (claiming concurrent futures so they can no
    /// longer be cancelled) and hand the rest out as (items, Batch, reason).
    fn start_batch<'py>(
        &self,
        py: Python<'py>,
        b: Batch<Slot>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let cf = cf_future_type(py);
        let mut items = Vec::with_capacity(b.items.len());
        let mut slots = Vec::with_capacity(b.items.len());
        let mut cancelled = 0u64;
        for s in b.items {
            let fut = s.fut.bind(py);
            let alive = match (&s.event_loop, &cf) {
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
            };
            if alive {
                items.push(s.item.clone_ref(py));
                slots.push(s);
            } else {
                cancelled += 1;
            }
        }
        self.q.note_cancelled(cancelled);
        if slots.is_empty() {
            self.q.done(0, Duration::ZERO, true, 0, 0);
            let t = (PyList::empty(py), py.None(), "", Some(0.0)).into_pyobject(py)?;
            return Ok(Some(t));
        }
        let batch = PyBatch {
            q: Arc::clone(&self.q),
            slots: Mutex::new(Some(slots)),
            completed: Mutex::new(None),
        };
        let t = (
            PyList::new(py, items)?,
            Py::new(py, batch)?,
            b.reason.as_str(),
            py.None(),
        )
            .into_pyobject(py)?;
        Ok(Some(t))
    }
}

/// The futures of one running batch: resolve them with `finish` or `fail`.
///
/// A batch dropped without either fails its items with BatcherClosed, so
/// nothing is lost even if the dispatcher dies.
#[pyclass(frozen, module = "overdrive._core", name = "Batch")]
pub(crate) struct PyBatch {
    q: Arc<Queue<Slot>>,
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
    /// Let a waiting dispatcher thread start the next batch (it needs the
    /// GIL for that) before this one spends GIL time resolving futures.
    fn handoff(&self, py: Python<'_>) {
        if !self.q.is_empty() {
            py.detach(|| self.q.handoff(Duration::from_millis(1)));
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
            self.q.done(n, secs(elapsed), false, 0, n as u64);
            return Err(PyRuntimeError::new_err(msg));
        }
        let mut failed = 0usize;
        for o in outcomes.iter() {
            failed += usize::from(o.is_instance_of::<pyo3::exceptions::PyBaseException>());
        }
        self.q
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
        *self.completed.lock() = Some(Completed {
            slots,
            outcomes: outcomes.clone().unbind(),
        });
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
        self.q.done(n, secs(elapsed), false, 0, n as u64);
        self.handoff(py);
        resolve(py, slots, here, &|_| exc.clone())
    }

    fn __len__(&self) -> usize {
        self.slots.lock().as_ref().map_or(0, Vec::len)
    }
}

impl Drop for PyBatch {
    fn drop(&mut self) {
        if let Some(done) = self.completed.get_mut().take() {
            // Completed but never resolved: hand out the recorded outcomes.
            Python::attach(|py| {
                let _ = done.resolve(py, None);
            });
        }
        let Some(slots) = self.slots.get_mut().take() else {
            return;
        };
        let n = slots.len();
        Python::attach(|py| {
            let msg = "the batch was abandoned before its results were set".to_string();
            let err = match batcher_closed(py) {
                Some(t) => PyErr::from_type(t, msg),
                None => PyRuntimeError::new_err(msg),
            };
            let err = err.into_value(py).into_any();
            let _ = resolve(py, slots, None, &|_| err.bind(py).clone());
        });
        self.q.done(n, Duration::ZERO, false, 0, n as u64);
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}
