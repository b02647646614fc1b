//! An autoscaling pool of worker threads over a bounded priority queue.
//!
//! Generic over the task type: the binding's tasks are Python callables and
//! its runner attaches to the interpreter only to run one, so idle workers
//! wait here, in Rust, with no interpreter lock held.
//!
//! - Priority: higher first, FIFO within a level. With `aging`, a task gains
//!   one priority level per `aging` of waiting; since every waiting task ages
//!   at the same rate, the heap key `priority * aging - enqueued_at` is fixed
//!   at push time and the heap never needs re-sorting.
//! - Backpressure: with `max_queue > 0`, a push waits (or fails) when full.
//! - Autoscaling: a worker is added when the queue is deeper than
//!   `scale_up_depth` or more than `scale_up_util` of the workers are busy
//!   (up to `max_workers`); one is retired when the *peak* utilisation stayed
//!   below `scale_down_util` for a whole `scale_down_window` (down to
//!   `min_workers`). Each sample is the peak since the previous one, so short
//!   bursts keep the workers and the pool does not thrash.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// Tunables of a [`WorkerPool`].
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Workers kept even when idle (started lazily, on demand).
    pub min_workers: usize,
    /// Workers at most.
    pub max_workers: usize,
    /// Tasks waiting at most; 0 = unbounded.
    pub max_queue: usize,
    /// Waiting this long raises a task's priority by one level; None = no aging.
    pub aging: Option<Duration>,
    /// Add a worker when more tasks than this wait.
    pub scale_up_depth: usize,
    /// Add a worker when more than this fraction of workers is busy.
    pub scale_up_util: f64,
    /// Retire a worker when utilisation stays below this fraction...
    pub scale_down_util: f64,
    /// ...for this long.
    pub scale_down_window: Duration,
    /// Thread name prefix.
    pub name: String,
}

impl PoolConfig {
    /// Defaults: `2 x cores` .. `4 x cores` workers, unbounded queue, 1 s aging.
    pub fn with_cores(cores: usize) -> Self {
        let cores = cores.max(1);
        PoolConfig {
            min_workers: 2 * cores,
            max_workers: 4 * cores,
            max_queue: 0,
            aging: Some(Duration::from_secs(1)),
            scale_up_depth: 10,
            scale_up_util: 0.8,
            scale_down_util: 0.3,
            scale_down_window: Duration::from_secs(10),
            name: "overdrive-worker".into(),
        }
    }

    /// Check the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.max_workers == 0 || self.max_workers > 4096 {
            return Err(Error::invalid(
                "max_workers",
                self.max_workers,
                "must be between 1 and 4096",
            ));
        }
        if self.min_workers > self.max_workers {
            return Err(Error::invalid(
                "min_workers",
                self.min_workers,
                format!("must be <= max_workers={}", self.max_workers),
            ));
        }
        for (p, v) in [
            ("scale_up_util", self.scale_up_util),
            ("scale_down_util", self.scale_down_util),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(Error::invalid(p, v, "must be between 0.0 and 1.0"));
            }
        }
        if self.aging.is_some_and(|a| a.is_zero()) {
            return Err(Error::invalid("aging_s", 0, "must be > 0 or None"));
        }
        Ok(())
    }
}

struct Entry<T> {
    key: i128,
    seq: u64,
    task: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.seq == other.seq
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Max-heap: larger key first, then the earlier seq.
        self.key
            .cmp(&other.key)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

struct Queue<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
    closed: bool,
    /// Workers waiting for a task.
    idle: usize,
}

/// One scaling decision, for `stats()`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleEvent {
    /// Seconds since the pool was made.
    pub at_s: f64,
    /// +1 (a worker added) or -1 (one retired).
    pub delta: i32,
    /// Workers after the event.
    pub workers: usize,
    /// Why.
    pub reason: &'static str,
}

/// A point-in-time copy of the pool's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStats {
    /// Live worker threads.
    pub workers: usize,
    /// Workers running a task.
    pub busy: usize,
    /// Workers waiting for a task.
    pub idle: usize,
    /// Tasks waiting.
    pub queued: usize,
    /// Most tasks ever waiting at once.
    pub queue_high_water: usize,
    /// Tasks accepted.
    pub submitted: u64,
    /// Tasks run to the end (whatever they returned or raised).
    pub completed: u64,
    /// Tasks taken out unrun by `shutdown(cancel=true)`.
    pub cancelled: u64,
    /// Pushes refused because the queue was full.
    pub rejected: u64,
    /// Workers added.
    pub scale_ups: u64,
    /// Workers retired.
    pub scale_downs: u64,
    /// The last scaling events (at most 64).
    pub events: Vec<ScaleEvent>,
    /// Whether shutdown has begun.
    pub shutdown: bool,
}

/// What a worker thread does around the queue: run a task, wrap the whole
/// thread, and wrap each blocking wait. The binding attaches a worker to the
/// interpreter once for its lifetime (`thread`), releases it around every
/// wait for work (`blocking`), and runs Python callables in `run`.
pub trait Hooks<T>: Send + Sync + 'static {
    /// Run one task.
    fn run(&self, task: T);
    /// Run the worker thread's body (which must be called at most once).
    fn thread(&self, body: &mut dyn FnMut()) {
        body();
    }
    /// Run one blocking wait for work.
    fn blocking(&self, wait: &mut (dyn FnMut() + Send)) {
        wait();
    }
    /// Whether a task still needs a worker (false: someone else ran it, so a
    /// waiting worker drops it without leaving its wait). Called while blocking.
    fn is_live(&self, _task: &T) -> bool {
        true
    }
}

impl<T, F: Fn(T) + Send + Sync + 'static> Hooks<T> for F {
    fn run(&self, task: T) {
        self(task);
    }
}

/// The hooks a pool runs its tasks with.
pub type Runner<T> = Arc<dyn Hooks<T>>;

struct Shared<T> {
    config: PoolConfig,
    queue: Mutex<Queue<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    workers: AtomicUsize,
    busy: AtomicUsize,
    peak_busy: AtomicUsize,
    submitted: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    rejected: AtomicU64,
    scale_ups: AtomicU64,
    scale_downs: AtomicU64,
    high_water: AtomicUsize,
    low_since: Mutex<Option<Instant>>,
    events: Mutex<VecDeque<ScaleEvent>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shutdown: AtomicBool,
    /// The process that made the pool (a forked child must not touch its locks).
    pid: u32,
    epoch: Instant,
    runner: Runner<T>,
}

/// Why a push did not enqueue; the task is handed back.
#[derive(Debug)]
pub struct Rejected<T> {
    /// The task, unrun.
    pub task: T,
    /// `WorkerQueueFull` or `PoolShutdown`.
    pub error: Error,
}

/// The pool. Dropping it shuts it down (without waiting).
pub struct WorkerPool<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> WorkerPool<T> {
    /// A pool that runs each task with `runner`.
    pub fn new(config: PoolConfig, runner: Runner<T>) -> Result<Self> {
        config.validate()?;
        Ok(WorkerPool {
            shared: Arc::new(Shared {
                config,
                queue: Mutex::new(Queue {
                    heap: BinaryHeap::new(),
                    seq: 0,
                    closed: false,
                    idle: 0,
                }),
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                workers: AtomicUsize::new(0),
                busy: AtomicUsize::new(0),
                peak_busy: AtomicUsize::new(0),
                submitted: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                scale_ups: AtomicU64::new(0),
                scale_downs: AtomicU64::new(0),
                high_water: AtomicUsize::new(0),
                low_since: Mutex::new(None),
                events: Mutex::new(VecDeque::new()),
                threads: Mutex::new(Vec::new()),
                shutdown: AtomicBool::new(false),
                pid: std::process::id(),
                epoch: Instant::now(),
                runner,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Enqueue without waiting: `WorkerQueueFull` when the queue is full.
    pub fn try_push(&self, task: T, priority: i64) -> std::result::Result<(), Rejected<T>> {
        self.push(task, priority, Some(Duration::ZERO))
    }

    /// Enqueue, waiting up to `timeout` (None: forever) for room.
    pub fn push(
        &self,
        task: T,
        priority: i64,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), Rejected<T>> {
        let s = &self.shared;
        let cap = s.config.max_queue;
        let mut q = s.queue.lock();
        if cap > 0 && q.heap.len() >= cap && !q.closed {
            match timeout {
                Some(t) if t.is_zero() => {}
                // A timeout too large for the clock waits forever.
                Some(t) if Instant::now().checked_add(t).is_some() => {
                    let deadline = Instant::now() + t;
                    while q.heap.len() >= cap && !q.closed {
                        if s.not_full.wait_until(&mut q, deadline).timed_out() {
                            break;
                        }
                    }
                }
                _ => {
                    while q.heap.len() >= cap && !q.closed {
                        s.not_full.wait(&mut q);
                    }
                }
            }
        }
        if q.closed {
            return Err(Rejected {
                task,
                error: Error::PoolShutdown,
            });
        }
        if cap > 0 && q.heap.len() >= cap {
            drop(q);
            s.rejected.fetch_add(1, Relaxed);
            return Err(Rejected {
                task,
                error: Error::WorkerQueueFull { capacity: cap },
            });
        }
        let key = match s.config.aging {
            Some(a) => {
                let waited = i128::try_from(s.epoch.elapsed().as_nanos()).unwrap_or(i128::MAX);
                i128::from(priority)
                    .saturating_mul(i128::try_from(a.as_nanos()).unwrap_or(i128::MAX))
                    .saturating_sub(waited)
            }
            None => i128::from(priority),
        };
        let seq = q.seq;
        q.seq += 1;
        q.heap.push(Entry { key, seq, task });
        let depth = q.heap.len();
        let idle = q.idle;
        drop(q);
        s.high_water.fetch_max(depth, Relaxed);
        if idle > 0 {
            s.not_empty.notify_one();
        }
        let spawn_error = self.maybe_scale_up(depth, idle);
        if s.workers.load(Acquire) == 0 {
            // No worker runs and none could be started (the system refused a
            // thread): the task would wait forever, so hand it back.
            if let Some(task) = self.retract(seq) {
                return Err(Rejected {
                    task,
                    error: Error::WorkerStart(spawn_error.unwrap_or_else(|| {
                        "no worker thread is running and none could be started".into()
                    })),
                });
            }
        }
        s.submitted.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Take the task pushed as `seq` back out of the queue, if no worker took it.
    fn retract(&self, seq: u64) -> Option<T> {
        let mut q = self.shared.queue.lock();
        let mut entries = std::mem::take(&mut q.heap).into_vec();
        let task = entries
            .iter()
            .position(|e| e.seq == seq)
            .map(|i| entries.swap_remove(i).task);
        q.heap = BinaryHeap::from(entries);
        task
    }

    /// Start a worker if the queue or the utilisation asks for one; the
    /// error text when the system refused the thread.
    fn maybe_scale_up(&self, depth: usize, idle: usize) -> Option<String> {
        let s = &self.shared;
        let workers = s.workers.load(Acquire);
        if workers >= s.config.max_workers {
            return None;
        }
        let reason = if workers == 0 || (idle == 0 && workers < s.config.min_workers) {
            "demand"
        } else if depth > s.config.scale_up_depth {
            "queue depth"
        } else if idle == 0 && s.busy.load(Relaxed) as f64 > s.config.scale_up_util * workers as f64
        {
            "utilisation"
        } else {
            return None;
        };
        // Reserve the slot so concurrent submitters do not overshoot.
        if s.workers
            .compare_exchange(workers, workers + 1, AcqRel, Relaxed)
            .is_err()
        {
            return None;
        }
        let shared = Arc::clone(s);
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{}", s.config.name, workers))
            .spawn(move || worker_main(&shared));
        match spawned {
            Ok(h) => {
                s.scale_ups.fetch_add(1, Relaxed);
                s.event(1, workers + 1, reason);
                let mut threads = s.threads.lock();
                threads.retain(|t| !t.is_finished());
                threads.push(h);
                None
            }
            Err(e) => {
                s.workers.fetch_sub(1, AcqRel);
                Some(format!("could not start a worker thread: {e}"))
            }
        }
    }

    /// Stop accepting tasks. With `cancel`, return the tasks still waiting
    /// (the caller fails them); otherwise the workers run them all first.
    pub fn close(&self, cancel: bool) -> Vec<T> {
        let s = &self.shared;
        s.shutdown.store(true, Release);
        let drained: Vec<T> = {
            let mut q = s.queue.lock();
            q.closed = true;
            if cancel {
                let mut entries: Vec<Entry<T>> = std::mem::take(&mut q.heap).into_vec();
                entries.sort_unstable_by(|a, b| b.cmp(a));
                entries.into_iter().map(|e| e.task).collect()
            } else {
                Vec::new()
            }
        };
        s.cancelled.fetch_add(drained.len() as u64, Relaxed);
        s.not_empty.notify_all();
        s.not_full.notify_all();
        // Tasks already queued still need a worker when none is alive.
        if !cancel && s.workers.load(Acquire) == 0 && !s.queue.lock().heap.is_empty() {
            self.force_spawn();
        }
        drained
    }

    fn force_spawn(&self) {
        let s = &self.shared;
        s.workers.fetch_add(1, AcqRel);
        let shared = Arc::clone(s);
        match std::thread::Builder::new()
            .name(format!("{}-drain", s.config.name))
            .spawn(move || worker_main(&shared))
        {
            Ok(h) => s.threads.lock().push(h),
            Err(_) => {
                s.workers.fetch_sub(1, AcqRel);
            }
        }
    }

    /// Wait for every worker thread to exit (call after [`Self::close`]).
    /// Returns false when `timeout` passed first.
    pub fn join(&self, timeout: Option<Duration>) -> bool {
        // None (or a timeout too large for the clock): wait forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let me = std::thread::current().id();
        let mut own = None;
        loop {
            let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *self.shared.threads.lock());
            if handles.is_empty() {
                // A worker joining its own pool (shutdown from inside a task)
                // cannot wait for itself: it exits when its task returns.
                if let Some(h) = own {
                    self.shared.threads.lock().push(h);
                }
                return true;
            }
            let mut pending = Vec::new();
            for h in handles {
                if h.thread().id() == me {
                    own = Some(h);
                } else if deadline.is_none() || h.is_finished() {
                    let _ = h.join();
                } else {
                    pending.push(h);
                }
            }
            if pending.is_empty() {
                continue;
            }
            self.shared.threads.lock().extend(pending);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether `close` was called.
    pub fn is_shutdown(&self) -> bool {
        self.shared.shutdown.load(Acquire)
    }

    /// Read every counter.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        let (queued, idle) = {
            let q = s.queue.lock();
            (q.heap.len(), q.idle)
        };
        PoolStats {
            workers: s.workers.load(Relaxed),
            busy: s.busy.load(Relaxed),
            idle,
            queued,
            queue_high_water: s.high_water.load(Relaxed),
            submitted: s.submitted.load(Relaxed),
            completed: s.completed.load(Relaxed),
            cancelled: s.cancelled.load(Relaxed),
            rejected: s.rejected.load(Relaxed),
            scale_ups: s.scale_ups.load(Relaxed),
            scale_downs: s.scale_downs.load(Relaxed),
            events: s.events.lock().iter().cloned().collect(),
            shutdown: s.shutdown.load(Relaxed),
        }
    }
}

impl<T: Send + 'static> Drop for WorkerPool<T> {
    fn drop(&mut self) {
        // In a forked child the workers do not exist and a lock may have been
        // held by one of them at the fork: touch nothing.
        if std::process::id() != self.shared.pid {
            return;
        }
        // Workers hold their own Arc and exit once the queue is closed and empty.
        let _ = self.close(false);
    }
}

impl<T> Shared<T> {
    fn event(&self, delta: i32, workers: usize, reason: &'static str) {
        let mut ev = self.events.lock();
        if ev.len() == 64 {
            ev.pop_front();
        }
        ev.push_back(ScaleEvent {
            at_s: self.epoch.elapsed().as_secs_f64(),
            delta,
            workers,
            reason,
        });
    }

    /// The idle tick: sample utilisation; true when this worker should retire.
    fn should_retire(&self) -> bool {
        let workers = self.workers.load(Acquire);
        let busy_now = self.busy.load(Relaxed);
        let peak = self.peak_busy.swap(busy_now, Relaxed).max(busy_now);
        let util = if workers == 0 {
            0.0
        } else {
            peak as f64 / workers as f64
        };
        let mut low = self.low_since.lock();
        if util >= self.config.scale_down_util || workers <= self.config.min_workers {
            *low = None;
            return false;
        }
        let now = Instant::now();
        let since = *low.get_or_insert(now);
        if now.duration_since(since) < self.config.scale_down_window {
            return false;
        }
        if self
            .workers
            .compare_exchange(workers, workers - 1, AcqRel, Relaxed)
            .is_err()
        {
            return false;
        }
        // A new window starts for the next retirement.
        *low = Some(now);
        drop(low);
        self.scale_downs.fetch_add(1, Relaxed);
        self.event(-1, workers - 1, "low utilisation");
        true
    }
}

fn tick(config: &PoolConfig) -> Duration {
    (config.scale_down_window / 10).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// A worker thread: the hooks' `thread` wraps the loop.
fn worker_main<T: Send + 'static>(s: &Shared<T>) {
    let mut ran = false;
    s.runner.thread(&mut || {
        ran = true;
        worker_loop(s);
    });
    if !ran {
        // The hooks could not start the thread (e.g. the interpreter is gone).
        s.workers.fetch_sub(1, AcqRel);
    }
}

/// Wait for the next task; None when this worker exits (its slot in
/// `workers` already given back).
fn next_task<T: Send + 'static>(s: &Shared<T>, tick: Duration) -> Option<T> {
    let mut q = s.queue.lock();
    loop {
        if let Some(e) = q.heap.pop() {
            if s.runner.is_live(&e.task) {
                return Some(e.task);
            }
            s.completed.fetch_add(1, Release);
            continue;
        }
        if q.closed {
            drop(q);
            s.workers.fetch_sub(1, AcqRel);
            return None;
        }
        q.idle += 1;
        // Only a worker that could retire needs the idle tick; the others
        // wait without a timer (a timed futex wait costs a timer per sleep).
        let timed_out = if s.workers.load(Acquire) > s.config.min_workers {
            s.not_empty.wait_for(&mut q, tick).timed_out()
        } else {
            s.not_empty.wait(&mut q);
            false
        };
        q.idle -= 1;
        // Decide with the queue still locked: a task pushed between the
        // check and the retirement would see this worker as alive, start no
        // other, and sit in the queue with nobody to run it.
        if timed_out && q.heap.is_empty() && !q.closed && s.should_retire() {
            return None;
        }
    }
}

fn worker_loop<T: Send + 'static>(s: &Shared<T>) {
    let tick = tick(&s.config);
    loop {
        // Fast path: take queued work without a blocking wait.
        let ready = s.queue.lock().heap.pop().map(|e| e.task);
        let task = match ready {
            Some(t) => Some(t),
            None => {
                let mut next = None;
                s.runner.blocking(&mut || next = next_task(s, tick));
                next
            }
        };
        let Some(task) = task else {
            return;
        };
        if s.config.max_queue > 0 {
            s.not_full.notify_one();
        }
        let b = s.busy.fetch_add(1, Relaxed) + 1;
        s.peak_busy.fetch_max(b, Relaxed);
        let runner = &s.runner;
        let _ = catch_unwind(AssertUnwindSafe(|| runner.run(task)));
        s.busy.fetch_sub(1, Relaxed);
        s.completed.fetch_add(1, Release);
    }
}

#[cfg(test)]
mod tests;
