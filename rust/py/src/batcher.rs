//! Binding for the request batcher's queue: its two handles, `BatchQueue`
//! (producers) and `BatchReceiver` (the dispatcher).
//!
//! Items and their futures are Python objects held as owned references
//! (`Py<PyAny>`, in a [`Slot`]); the core only moves them around. While the
//! GIL is released (a blocking push, a dispatcher waiting for a batch)
//! nothing touches them.
//!
//! The Python facade (`overdrive/batcher.py`) calls the handler; this file
//! and `batch.rs` do the per-item work around it in Rust: dropping
//! cancelled items, failing expired and evicted ones, and resolving every
//! future (`batch_futures.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use overdrive_core::batcher::{millis, Meta, Next, OnFull, Queue};
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::aio_future::PyBatchFuture;
use crate::args::{self, show, type_name};
use crate::batch::PyBatch;
use crate::batch_common::{make_config, push_or_block, snapshot_dict, Pushed};
use crate::batch_futures::{abandoned_error, cf_future_type, resolve, running_loop, Slot};
use crate::errors::{bad_value, no_running_event_loop, to_py, wrong_type, IntoPy};
use crate::wait::{check_timeout, check_timeout_named};

/// What the two handles of a batcher queue share.
pub(crate) struct Shared {
    pub(crate) q: Queue<Slot>,
    /// Key object -> lane id, and lane id -> key object (keys compare by
    /// Python equality). A key is forgotten once its lane empties, so many
    /// distinct keys over time cost nothing once their items ran.
    keys: Py<PyDict>,
    key_objects: Py<PyDict>,
    next_key: AtomicU64,
    /// The asyncio dispatcher's loop and the waiter it sleeps on. Held only
    /// briefly, never while calling Python.
    waker: Mutex<Waker>,
}

#[derive(Default)]
struct Waker {
    dispatch_loop: Option<Py<PyAny>>,
    wake: Option<Py<PyAny>>,
}

impl Shared {
    /// Set the armed waiter now, if any.
    fn wake(&self, py: Python<'_>) {
        let w = self.waker.lock().wake.take();
        if let Some(w) = w {
            let _ = w
                .bind(py)
                .call_method1(intern!(py, "set_result"), (py.None(),));
        }
    }

    /// The lane id of `key` (a new one for a key not queued now).
    fn lane(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<u64> {
        let keys = self.keys.bind(py);
        let known = keys.get_item(key).map_err(|e| {
            if e.is_instance_of::<PyTypeError>(py) {
                let name = type_name(key);
                wrong_type(py, format!("key must be hashable, not {name}: {e}"))
            } else {
                e
            }
        })?;
        if let Some(id) = known {
            return id.extract();
        }
        let id = self.next_key.fetch_add(1, Ordering::Relaxed);
        keys.set_item(key, id)?;
        self.key_objects.bind(py).set_item(id, key)?;
        Ok(id)
    }

    /// Forget the keys whose lanes emptied (no lock unless there are some).
    fn forget_emptied_keys(&self, py: Python<'_>) {
        if !self.q.has_emptied_keys() {
            return;
        }
        let keys = self.keys.bind(py);
        let objects = self.key_objects.bind(py);
        for id in self.q.take_emptied_keys() {
            let Ok(Some(key)) = objects.get_item(id) else {
                continue;
            };
            let _ = objects.del_item(id);
            // A submit may have given the key a new lane meanwhile: keep that.
            let current = keys.get_item(&key).ok().flatten();
            if current.is_some_and(|c| c.extract::<u64>().is_ok_and(|c| c == id)) {
                let _ = keys.del_item(&key);
            }
        }
    }

    /// Keys remembered now.
    fn keys_len(&self, py: Python<'_>) -> usize {
        self.keys.bind(py).len()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Every handle is gone with items still queued (their dispatcher
        // died with its event loop): fail them, nothing is lost silently.
        let left = self.q.drain_all();
        if left.is_empty() {
            return;
        }
        Python::attach(|py| {
            let err = abandoned_error(py, "the batcher was dropped before this item ran");
            let _ = resolve(py, left, None, &|_| err.bind(py).clone());
        });
    }
}

/// The producers' handle of a `Batcher`'s queue (see overdrive.batcher):
/// submitting, flushing, closing and stats. The dispatcher takes batches
/// through a [`PyBatchReceiver`] of the same queue.
///
/// When the last reference to this handle goes (the `Batcher` and its
/// bound `submit`/`submit_async`), nothing can submit any more: the queue
/// closes, as by `close()`, and the dispatcher drains it and stops.
#[pyclass(frozen, module = "overdrive._core", name = "BatchQueue")]
pub(crate) struct PyBatchQueue {
    shared: Arc<Shared>,
    weigher: Option<Py<PyAny>>,
    block_timeout: Option<Duration>,
    hooks: Mutex<Hooks>,
}

/// The facade's callbacks (all None in thread mode). Held only briefly,
/// never while calling Python.
#[derive(Default)]
struct Hooks {
    foreign: Option<Py<PyAny>>,
    full: Option<Py<PyAny>>,
    dropped: Option<Py<PyAny>>,
}

#[pymethods]
impl PyBatchQueue {
    #[new]
    #[pyo3(signature = (max_batch_size = 64, max_wait_ms = 5.0, max_queue = 10_000, on_full = OnFull::Block, max_batch_weight = None, max_concurrency = 1, adaptive = false, latency_target_ms = None, aging_ms = 100.0, admission = false, weigher = None, block_timeout = None), text_signature = "(max_batch_size=64, max_wait_ms=5.0, max_queue=10000, on_full='block', max_batch_weight=None, max_concurrency=1, adaptive=False, latency_target_ms=None, aging_ms=100.0, admission=False, weigher=None, block_timeout=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::max_batch_size)] max_batch_size: i64,
        #[pyo3(from_py_with = args::max_wait_ms)] max_wait_ms: f64,
        #[pyo3(from_py_with = args::batch_max_queue)] max_queue: i64,
        #[pyo3(from_py_with = args::on_full)] on_full: OnFull,
        #[pyo3(from_py_with = args::max_batch_weight)] max_batch_weight: Option<i64>,
        #[pyo3(from_py_with = args::max_concurrency)] max_concurrency: i64,
        #[pyo3(from_py_with = args::adaptive)] adaptive: bool,
        #[pyo3(from_py_with = args::latency_target_ms)] latency_target_ms: Option<f64>,
        #[pyo3(from_py_with = args::aging_ms)] aging_ms: f64,
        #[pyo3(from_py_with = args::admission)] admission: bool,
        weigher: Option<Py<PyAny>>,
        #[pyo3(from_py_with = args::block_timeout)] block_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let block_timeout = check_timeout_named(py, "block_timeout", block_timeout)?;
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
        cfg.track_emptied_keys = true;
        if weigher.is_none() && cfg.max_batch_weight.is_some() {
            return Err(bad_value(
                py,
                "max_batch_weight",
                max_batch_weight.unwrap_or_default(),
                "needs a weigher(item) -> int",
            ));
        }
        Ok(PyBatchQueue {
            shared: Arc::new(Shared {
                q: Queue::new(cfg).py(py)?,
                keys: PyDict::new(py).unbind(),
                key_objects: PyDict::new(py).unbind(),
                next_key: AtomicU64::new(1),
                waker: Mutex::new(Waker::default()),
            }),
            weigher,
            block_timeout,
            hooks: Mutex::new(Hooks::default()),
        })
    }

    /// submit(item, priority=0, deadline_ms=None, key=None) -> concurrent.futures.Future
    ///
    /// Queue `item`; blocks (GIL released, Ctrl-C still gets through) while
    /// the queue is full under `on_full="block"`.
    #[pyo3(signature = (item, priority = 0, deadline_ms = None, key = None))]
    fn submit<'py>(
        &self,
        py: Python<'py>,
        item: Py<PyAny>,
        #[pyo3(from_py_with = args::batch_priority)] priority: i32,
        #[pyo3(from_py_with = args::deadline_ms)] deadline_ms: Option<f64>,
        key: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cf = cf_future_type(py)
            .ok_or_else(|| PyRuntimeError::new_err("concurrent.futures is unavailable"))?;
        let fut = cf.call0()?;
        let meta = self.meta(py, item.bind(py), priority, deadline_ms, key)?;
        let slot = Slot::new(item, fut.clone().unbind(), None);
        match push_or_block(py, &self.shared.q, slot, meta, self.block_timeout, true)? {
            Pushed::Queued(dropped) => self.fail_dropped(py, dropped)?,
            Pushed::WouldBlock(_) => return Err(to_py(py, self.shared.q.full_error())),
        }
        self.after_push(py, None)?;
        Ok(fut)
    }

    /// submit_async(item, priority=0, deadline_ms=None, key=None) -> asyncio.Future
    ///
    /// Queue `item` from a coroutine and return a future of the running loop.
    /// Never blocks the loop: when the queue is full under `on_full="block"`
    /// the awaitable comes from the facade's waiting hook.
    ///
    /// `wait=False` (the facade's waiting hook retries this way) raises
    /// `QueueFull` for a full queue instead of handing over to the hook.
    #[pyo3(signature = (item, priority = 0, deadline_ms = None, key = None, *, wait = true))]
    fn submit_async<'py>(
        slf: &Bound<'py, Self>,
        item: Py<PyAny>,
        #[pyo3(from_py_with = args::batch_priority)] priority: i32,
        #[pyo3(from_py_with = args::deadline_ms)] deadline_ms: Option<f64>,
        key: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::wait)] wait: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let lp = running_loop(py).ok_or_else(|| {
            let msg = "submit_async() must be called from a running event loop";
            match no_running_event_loop(py) {
                Some(t) => PyErr::from_type(t, msg),
                None => PyRuntimeError::new_err(msg),
            }
        })?;
        let fut = Bound::new(py, PyBatchFuture::new(lp.clone().unbind()))?.into_any();
        let meta = this.meta(py, item.bind(py), priority, deadline_ms, key)?;
        let slot = Slot::new(item, fut.clone().unbind(), Some(lp.clone().unbind()));
        match push_or_block(py, &this.shared.q, slot, meta, None, false)? {
            Pushed::Queued(dropped) => this.fail_dropped(py, dropped)?,
            Pushed::WouldBlock(slot) => {
                let full = wait
                    .then(|| this.hooks.lock().full.as_ref().map(|f| f.clone_ref(py)))
                    .flatten();
                if let Some(full) = full {
                    let key = key.map_or_else(|| py.None().into_bound(py), Bound::clone);
                    return full.bind(py).call1((
                        slf,
                        slot.into_item(),
                        priority,
                        deadline_ms,
                        key,
                    ));
                }
                return Err(to_py(py, this.shared.q.full_error()));
            }
        }
        this.after_push(py, Some(&lp))?;
        Ok(fut)
    }

    /// The facade's callbacks (None in thread mode): `foreign(loop_or_None)`
    /// runs after a push from outside the dispatch loop; `full(queue, item,
    /// priority, deadline_ms, key)` returns an awaitable for an async submit
    /// into a full queue under `on_full="block"`; `dropped()` runs when this
    /// handle goes away with the queue still open (the queue is closed
    /// then; the facade lets its dispatcher drain it).
    #[pyo3(signature = (foreign = None, full = None, dropped = None))]
    fn set_hooks(
        &self,
        foreign: Option<Py<PyAny>>,
        full: Option<Py<PyAny>>,
        dropped: Option<Py<PyAny>>,
    ) {
        let old = std::mem::replace(
            &mut *self.hooks.lock(),
            Hooks {
                foreign,
                full,
                dropped,
            },
        );
        drop(old);
    }

    /// The dispatcher's handle of this queue.
    fn receiver(&self) -> PyBatchReceiver {
        PyBatchReceiver {
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

    /// Batches running now.
    #[getter]
    fn in_flight(&self) -> usize {
        self.shared.q.in_flight()
    }

    fn __len__(&self) -> usize {
        self.shared.q.len()
    }

    /// Counters, percentiles, flush reasons, queue depth, lanes and keys
    /// (key objects remembered), and the model.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = snapshot_dict(py, self.shared.q.snapshot())?;
        d.set_item("keys", self.shared.keys_len(py))?;
        Ok(d)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(w) = &self.weigher {
            visit.call(w)?;
        }
        if let Some(h) = self.hooks.try_lock() {
            for f in [&h.foreign, &h.full, &h.dropped].into_iter().flatten() {
                visit.call(f)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // The weigher stays (it is read without a lock); a cycle through it
        // is broken at the function or the object it is bound to.
        let hooks = std::mem::take(&mut *self.hooks.lock());
        drop(hooks);
    }
}

impl Drop for PyBatchQueue {
    fn drop(&mut self) {
        if self.shared.q.is_closed() {
            return;
        }
        // Nothing can submit any more: close, and let the facade make its
        // dispatcher drain what is queued (an asyncio one needs a kick).
        self.shared.q.close();
        if let Some(dropped) = self.hooks.get_mut().dropped.take() {
            Python::attach(|py| {
                if let Err(e) = dropped.bind(py).call0() {
                    e.write_unraisable(py, None);
                }
            });
        }
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
            meta.key = self.shared.lane(py, k)?;
        }
        if let Some(w) = &self.weigher {
            let v = w.bind(py).call1((item,))?;
            meta.weight = v.extract::<u64>().map_err(|_| {
                bad_value(
                    py,
                    "weigher",
                    show(&v),
                    "weigher(item) must return an int >= 0",
                )
            })?;
        }
        Ok(meta)
    }

    /// After a push in asyncio-handler mode: wake the dispatcher if it sleeps
    /// on this loop, else let the facade bind or kick it across threads.
    fn after_push(&self, py: Python<'_>, here: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let foreign = match &self.hooks.lock().foreign {
            None => return Ok(()),
            Some(f) => f.clone_ref(py),
        };
        let wake = {
            let mut w = self.shared.waker.lock();
            let same =
                matches!((&w.dispatch_loop, here), (Some(d), Some(l)) if d.as_ptr() == l.as_ptr());
            same.then(|| w.wake.take())
        };
        match wake {
            Some(w) => {
                if let Some(w) = w {
                    let _ = w
                        .bind(py)
                        .call_method1(intern!(py, "set_result"), (py.None(),));
                }
            }
            None => {
                foreign.bind(py).call1((here,))?;
            }
        }
        Ok(())
    }

    fn fail_dropped(&self, py: Python<'_>, dropped: Option<Slot>) -> PyResult<()> {
        let Some(dropped) = dropped else {
            return Ok(());
        };
        let err = to_py(py, self.shared.q.dropped_error())
            .into_value(py)
            .into_any();
        let here = running_loop(py);
        resolve(py, vec![dropped], here.as_ref(), &|_| err.bind(py).clone())
    }
}

/// The dispatcher's handle of a `Batcher`'s queue: takes batches (failing
/// expired items and dropping cancelled ones), and wires the asyncio
/// dispatcher's sleeping. Closing it closes the queue.
#[pyclass(frozen, module = "overdrive._core", name = "BatchReceiver")]
pub(crate) struct PyBatchReceiver {
    shared: Arc<Shared>,
}

#[pymethods]
impl PyBatchReceiver {
    /// The event loop the async dispatcher runs on (None: unbound).
    fn set_dispatch_loop(&self, event_loop: Option<Py<PyAny>>) {
        let old = {
            let mut w = self.shared.waker.lock();
            let old = (w.dispatch_loop.take(), w.wake.take());
            w.dispatch_loop = event_loop;
            old
        };
        drop(old);
    }

    /// The async dispatcher is about to sleep on `waiter` (an asyncio
    /// future): the next push from its loop sets it.
    fn arm(&self, waiter: Py<PyAny>) {
        let old = self.shared.waker.lock().wake.replace(waiter);
        drop(old);
    }

    /// Set the armed waiter now, if any.
    fn wake(&self, py: Python<'_>) {
        self.shared.wake(py);
    }

    /// Block (GIL released) until a batch is due: (items, Batch, reason,
    /// None), or ([], None, "", None) when only expired items (failed here)
    /// or the timeout came back. None once closed and drained.
    #[pyo3(signature = (timeout = None))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let timeout = check_timeout(py, timeout)?;
        let until = timeout.and_then(|t| Instant::now().checked_add(t));
        let q = &self.shared.q;
        // Wait detached for something to look at, but form the batch once
        // attached: the handler needs the interpreter anyway, and a producer
        // holding it (an event loop finishing a burst) queues the rest of
        // its burst meanwhile, so a burst becomes one batch, not two.
        if !py.detach(|| q.wait_ready(until)) {
            return self.convert(py, Next::Timeout);
        }
        let next = match q.poll() {
            Next::Wait(_) => {
                let left = until.map(|u| u.saturating_duration_since(Instant::now()));
                py.detach(|| q.next(left))
            }
            other => other,
        };
        self.convert(py, next)
    }

    /// Non-blocking `next`: with nothing due, ([], None, "", wait) where wait
    /// is the seconds until something may be (-1.0: until woken).
    fn poll<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let next = self.shared.q.poll();
        self.convert(py, next)
    }

    /// Stop accepting; what is queued still drains through `next`/`poll`.
    fn close(&self) {
        self.shared.q.close();
    }

    /// Items queued or in a running batch (neither finished nor failed).
    #[getter]
    fn outstanding(&self) -> u64 {
        self.shared.q.outstanding()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The asyncio wiring is visited here only (the queue handle and the
        // batches share it too): the dispatch task sleeping on the waiter
        // references its dispatcher, which holds this receiver.
        if let Some(w) = self.shared.waker.try_lock() {
            for o in [&w.dispatch_loop, &w.wake].into_iter().flatten() {
                visit.call(o)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = std::mem::take(&mut *self.shared.waker.lock());
        drop(old);
    }
}

impl PyBatchReceiver {
    fn fail_expired(&self, py: Python<'_>, expired: Vec<Slot>) -> PyResult<()> {
        if expired.is_empty() {
            return Ok(());
        }
        let err = to_py(py, self.shared.q.expired_error())
            .into_value(py)
            .into_any();
        let here = running_loop(py);
        resolve(py, expired, here.as_ref(), &|_| err.bind(py).clone())
    }

    fn convert<'py>(
        &self,
        py: Python<'py>,
        next: Next<Slot>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.shared.forget_emptied_keys(py);
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
        b: overdrive_core::batcher::Batch<Slot>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let cf = cf_future_type(py);
        let mut items = Vec::with_capacity(b.items.len());
        let mut slots = Vec::with_capacity(b.items.len());
        let mut cancelled = 0u64;
        for s in b.items {
            if s.wanted(py, cf.as_ref()) {
                items.push(s.item().clone_ref(py));
                slots.push(s);
            } else {
                cancelled += 1;
            }
        }
        self.shared.q.note_cancelled(cancelled);
        if slots.is_empty() {
            self.shared.q.done(0, Duration::ZERO, true, 0, 0);
            let t = (PyList::empty(py), py.None(), "", Some(0.0)).into_pyobject(py)?;
            return Ok(Some(t));
        }
        let batch = PyBatch::new(Arc::clone(&self.shared), slots);
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
