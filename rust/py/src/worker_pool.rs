//! Bindings for the worker pool: Rust threads that run Python callables.
//!
//! Workers wait for tasks in the Rust core with no interpreter attached; a
//! worker attaches only to run one callable and resolve its
//! `concurrent.futures.Future`, then detaches again.

use std::sync::Arc;
use std::time::Duration;

use overdrive_core::worker_pool::{Hooks, PoolConfig, Rejected, WorkerPool};
use parking_lot::Mutex;
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::PyTraverseError;

use crate::args;
use crate::errors::{bad_value, IntoPy};
use crate::wait::wait_detached;

/// One queued call and the future it resolves.
struct Payload {
    future: Py<PyAny>,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
}

/// A queued call. The queue holds a reference to the handle (a Python
/// object) and so does the future (`_od_task`); whoever takes the payload
/// first runs it (a worker, or a thread waiting on the result), so it runs
/// exactly once. Taking it also breaks the reference cycle future -> handle
/// -> payload -> future.
///
/// The payload belongs to the handle alone, so the handle reports it to the
/// garbage collector: a handle that is neither queued nor running (the pool
/// is gone) is collected with its future and callable. While queued it is
/// reachable from the queue, which the pool's worker threads hold.
#[pyclass(frozen, module = "overdrive._core", name = "TaskHandle")]
pub(crate) struct PyTaskHandle {
    payload: Mutex<Option<Payload>>,
}

type Task = Py<PyTaskHandle>;

impl PyTaskHandle {
    fn take(&self) -> Option<Payload> {
        self.payload.lock().take()
    }
}

#[pymethods]
impl PyTaskHandle {
    /// Run the task on this thread unless a worker took it; True if it ran here.
    fn run_inline(&self, py: Python<'_>) -> bool {
        match self.take() {
            Some(p) => {
                run(py, p);
                true
            }
            None => false,
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Held only for a moment by a thread taking the payload; skipping a
        // busy payload just keeps it alive until the next collection.
        if let Some(p) = self.payload.try_lock() {
            if let Some(p) = &*p {
                visit.call(&p.future)?;
                visit.call(&p.func)?;
                visit.call(&p.args)?;
                if let Some(k) = &p.kwargs {
                    visit.call(k)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        drop(self.take());
    }
}

/// Run a task on the current thread, attached.
fn run(py: Python<'_>, task: Payload) {
    let fut = task.future.bind(py);
    match fut.call_method0(intern!(py, "set_running_or_notify_cancel")) {
        Ok(v) if v.is_truthy().unwrap_or(false) => {}
        // Cancelled before it started: nothing to run.
        Ok(_) => return,
        // The future was resolved by someone else (InvalidStateError): the
        // task is not run, and the error is reported, never swallowed.
        Err(e) => {
            e.write_unraisable(py, Some(fut));
            return;
        }
    }
    let out = task
        .func
        .bind(py)
        .call(task.args.bind(py), task.kwargs.as_ref().map(|k| k.bind(py)));
    let set = match out {
        Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,)),
        Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.value(py),)),
    };
    if let Err(e) = set {
        // Only if the future was resolved by someone else; never lose it silently.
        e.write_unraisable(py, Some(fut));
    }
}

/// Worker threads attach once for their lifetime (one thread state, no
/// set-up per task) and release the interpreter around every wait for work.
struct PyHooks;

impl Hooks<Task> for PyHooks {
    fn run(&self, task: Task) {
        // Re-entrant: the thread is already attached by `thread`.
        Python::attach(|py| {
            if let Some(p) = task.get().take() {
                run(py, p);
            }
            drop(task);
        });
    }

    fn thread(&self, body: &mut dyn FnMut()) {
        // None only while the interpreter shuts down: the worker exits.
        let _ = Python::try_attach(|_py| body());
    }

    fn is_live(&self, task: &Task) -> bool {
        // Detached: `get()` on a frozen class touches no Python state. A dead
        // task is then dropped detached, its reference released at the next
        // attach (pyo3's deferred decref).
        task.get().payload.lock().is_some()
    }

    fn blocking(&self, wait: &mut (dyn FnMut() + Send)) {
        Python::attach(|py| py.detach(wait));
    }
}

fn seconds(py: Python<'_>, param: &'static str, v: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| bad_value(py, param, v, "must be a number of seconds >= 0"))
}

/// The native half of `overdrive.WorkerPool` (use that class instead).
#[pyclass(frozen, module = "overdrive._core", name = "WorkerPoolCore")]
pub(crate) struct PyWorkerPool {
    inner: WorkerPool<Task>,
}

#[pymethods]
impl PyWorkerPool {
    #[new]
    #[pyo3(signature = (min_workers, max_workers, *, max_queue = 0, aging_s = None,
        scale_up_depth = 10, scale_up_util = 0.8, scale_down_util = 0.3,
        scale_down_window_s = 10.0, name = "overdrive-worker"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::min_workers)] min_workers: usize,
        #[pyo3(from_py_with = args::max_workers)] max_workers: usize,
        #[pyo3(from_py_with = args::max_queue)] max_queue: usize,
        #[pyo3(from_py_with = args::aging_s)] aging_s: Option<f64>,
        #[pyo3(from_py_with = args::scale_up_depth)] scale_up_depth: usize,
        #[pyo3(from_py_with = args::scale_up_util)] scale_up_util: f64,
        #[pyo3(from_py_with = args::scale_down_util)] scale_down_util: f64,
        #[pyo3(from_py_with = args::scale_down_window_s)] scale_down_window_s: f64,
        #[pyo3(from_py_with = args::name)] name: &str,
    ) -> PyResult<Self> {
        if name.contains('\0') {
            return Err(bad_value(
                py,
                "thread_name_prefix",
                name.escape_debug(),
                "must not contain NUL characters",
            ));
        }
        let config = PoolConfig {
            min_workers,
            max_workers,
            max_queue,
            aging: aging_s.map(|a| seconds(py, "aging_s", a)).transpose()?,
            scale_up_depth,
            scale_up_util,
            scale_down_util,
            scale_down_window: seconds(py, "scale_down_window_s", scale_down_window_s)?,
            name: name.to_owned(),
        };
        Ok(PyWorkerPool {
            inner: WorkerPool::new(config, Arc::new(PyHooks)).py(py)?,
        })
    }

    /// Queue `func(*args, **kwargs)` to resolve `future`. When the queue is
    /// full: wait up to `timeout` (None: forever) if `block`, else raise at once.
    #[pyo3(signature = (future, func, args, kwargs = None, priority = 0, block = true, timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        future: Py<PyAny>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        kwargs: Option<Py<PyDict>>,
        #[pyo3(from_py_with = args::priority)] priority: i64,
        #[pyo3(from_py_with = args::block)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
    ) -> PyResult<Task> {
        let handle = Py::new(
            py,
            PyTaskHandle {
                payload: Mutex::new(Some(Payload {
                    future,
                    func,
                    args,
                    kwargs,
                })),
            },
        )?;
        let task = match self.inner.try_push(handle.clone_ref(py), priority) {
            Ok(()) => return Ok(handle),
            Err(Rejected {
                task,
                error: overdrive_core::Error::WorkerQueueFull { .. },
            }) if block => task,
            Err(r) => return Err(r.error).py(py),
        };
        let timeout = timeout.map(|t| seconds(py, "timeout", t)).transpose()?;
        // Wait for room with the interpreter released, in slices so Ctrl-C
        // (and other signals) get through; the task's objects are only
        // moved, never touched, while detached.
        let mut pending = Some(task);
        let pushed = wait_detached(py, timeout, |slice| match pending.take() {
            None => Ok(Some(())),
            Some(task) => match self.inner.push(task, priority, Some(slice)) {
                Ok(()) => Ok(Some(())),
                Err(Rejected {
                    task: back,
                    error: overdrive_core::Error::WorkerQueueFull { .. },
                }) => {
                    pending = Some(back);
                    Ok(None)
                }
                Err(r) => {
                    // Dropped below, attached: the task holds Python objects.
                    pending = Some(r.task);
                    Err(r.error)
                }
            },
        });
        match pushed {
            Ok((Some(()), _)) => Ok(handle),
            Ok((None, _)) => {
                drop(pending);
                Err(overdrive_core::Error::WorkerQueueFull {
                    capacity: self.inner.config().max_queue,
                })
                .py(py)
            }
            Err(e) => {
                drop(pending);
                Err(e)
            }
        }
    }

    /// Stop accepting tasks; with `cancel`, return the futures of tasks that
    /// never started (the caller cancels them), highest priority first.
    fn shutdown<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::cancel)] cancel: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let drained = self.inner.close(cancel);
        let futures: Vec<Py<PyAny>> = drained
            .into_iter()
            .filter_map(|t| t.get().take().map(|p| p.future))
            .collect();
        PyList::new(py, futures)
    }

    /// Wait (interpreter released) for every worker to exit; False on timeout.
    #[pyo3(signature = (timeout = None))]
    fn join(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
    ) -> PyResult<bool> {
        let timeout = timeout.map(|t| seconds(py, "timeout", t)).transpose()?;
        // In slices, so a signal (Ctrl-C) interrupts a long join.
        let (joined, _) = wait_detached(py, timeout, |slice| {
            Ok(self.inner.join(Some(slice)).then_some(()))
        })?;
        Ok(joined.is_some())
    }

    /// Whether shutdown has begun.
    #[getter]
    fn is_shutdown(&self) -> bool {
        self.inner.is_shutdown()
    }

    /// The worker bounds as (min_workers, max_workers).
    #[getter]
    fn bounds(&self) -> (usize, usize) {
        let c = self.inner.config();
        (c.min_workers, c.max_workers)
    }

    /// Counters: workers, busy, queue, tasks, scaling events.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let c = self.inner.config();
        let d = PyDict::new(py);
        d.set_item("workers", s.workers)?;
        d.set_item("min_workers", c.min_workers)?;
        d.set_item("max_workers", c.max_workers)?;
        d.set_item("busy", s.busy)?;
        d.set_item("idle", s.idle)?;
        d.set_item("queued", s.queued)?;
        d.set_item("queue_high_water", s.queue_high_water)?;
        d.set_item("max_queue", c.max_queue)?;
        d.set_item("submitted", s.submitted)?;
        d.set_item("completed", s.completed)?;
        d.set_item("cancelled", s.cancelled)?;
        d.set_item("rejected", s.rejected)?;
        d.set_item("scale_ups", s.scale_ups)?;
        d.set_item("scale_downs", s.scale_downs)?;
        let events = PyList::empty(py);
        for e in s.events {
            let ev = PyDict::new(py);
            ev.set_item("at_s", e.at_s)?;
            ev.set_item("delta", e.delta)?;
            ev.set_item("workers", e.workers)?;
            ev.set_item("reason", e.reason)?;
            events.append(ev)?;
        }
        d.set_item("scaling_events", events)?;
        d.set_item("shutdown", s.shutdown)?;
        Ok(d)
    }
}
