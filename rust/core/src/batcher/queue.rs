//! The thread-safe queue: [`State`] under a mutex, with condition variables
//! for dispatchers (work) and blocked producers (room).
//!
//! No method calls user code; the lock is held only for queue operations.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{
    closed_error, full_error, room_timeout_error, wait_for_room, Batch, Config, Formation, Meta,
    Model, OnFull, Room, State, Stats, StatsSnapshot,
};
use crate::error::{Error, Result};

struct Inner<T> {
    state: State<T>,
    stats: Stats,
    model: Model,
    in_flight: usize,
    dispatchers_waiting: usize,
    producers_waiting: usize,
}

/// A successful push.
#[derive(Debug)]
pub struct PushOk<T> {
    /// The item evicted to make room (`drop_oldest`): fail it with `QueueFull`.
    pub dropped: Option<T>,
    /// The queue was empty before this push.
    pub was_empty: bool,
    /// Items queued after this push.
    pub len: usize,
}

/// A refused push; the value comes back so the caller can dispose of it.
#[derive(Debug)]
pub enum PushError<T> {
    /// The queue is full and the policy is `block`: call again allowing it.
    WouldBlock(T),
    /// Refused for good.
    Failed(T, Error),
}

/// What a dispatcher gets from [`Queue::next`] or [`Queue::poll`].
#[derive(Debug)]
pub enum Next<T> {
    /// Run this batch (and fail the expired items with `DeadlineExceeded`).
    Batch(Batch<T>, Vec<T>),
    /// Only expired items: fail them.
    Expired(Vec<T>),
    /// Nothing now; poll again at this instant (None: when something happens).
    Wait(Option<Instant>),
    /// The timeout passed with nothing to do.
    Timeout,
    /// Closed and empty: the dispatcher may stop.
    Closed,
}

/// The batcher queue shared by producers and dispatchers.
pub struct Queue<T> {
    cfg: Config,
    inner: Mutex<Inner<T>>,
    work: Condvar,
    room: Condvar,
    formed: Condvar,
    /// Set when `State` holds emptied keys to hand out (`track_emptied_keys`),
    /// so checking costs no lock.
    emptied: AtomicBool,
}

impl<T> Queue<T> {
    /// A queue with checked settings.
    pub fn new(cfg: Config) -> Result<Self> {
        cfg.validate()?;
        let mut state = State::new();
        state.track_emptied_keys(cfg.track_emptied_keys);
        Ok(Queue {
            inner: Mutex::new(Inner {
                state,
                stats: Stats::default(),
                model: Model::new(cfg.max_batch_size),
                in_flight: 0,
                dispatchers_waiting: 0,
                producers_waiting: 0,
            }),
            cfg,
            work: Condvar::new(),
            room: Condvar::new(),
            formed: Condvar::new(),
            emptied: AtomicBool::new(false),
        })
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Queue `value`. With `on_full="block"` and a full queue this returns
    /// `WouldBlock` unless `block` is true; then it waits up to `timeout`
    /// (None: forever) for room. Call with `block` only where blocking is
    /// allowed (the binding releases the GIL first).
    pub fn push(
        &self,
        value: T,
        meta: Meta,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<PushOk<T>, PushError<T>> {
        let room = if block {
            Room::Until(timeout)
        } else {
            Room::Never
        };
        self.push_with(value, meta, room)
    }

    /// Like [`Queue::push`] with `block`, but wait at most `wait` for room
    /// and then return `WouldBlock` (nothing counted): a caller waiting in
    /// slices checks for signals between them, and gives up with
    /// [`Queue::blocked_too_long`].
    pub fn push_within(
        &self,
        value: T,
        meta: Meta,
        wait: Duration,
    ) -> Result<PushOk<T>, PushError<T>> {
        self.push_with(value, meta, Room::Within(wait))
    }

    /// Count a push that waited for room in slices (`push_within`) and gave
    /// up after `timeout`; the error to report.
    pub fn blocked_too_long(&self, timeout: Option<Duration>) -> Error {
        self.inner.lock().stats.rejected += 1;
        room_timeout_error(self.cfg.max_queue, timeout)
    }

    fn push_with(&self, value: T, meta: Meta, room: Room) -> Result<PushOk<T>, PushError<T>> {
        // One clock read per push (clock reads cost ~150 ns on some VMs),
        // taken before the lock so the critical section stays short.
        let mut now = Instant::now();
        let mut g = self.inner.lock();
        if g.state.is_closed() {
            g.stats.rejected += 1;
            return Err(PushError::Failed(value, closed_error()));
        }
        if let Some(d) = meta.deadline {
            if let Some(err) = self.admission(&g, now, d) {
                g.stats.rejected += 1;
                return Err(PushError::Failed(value, err));
            }
        }
        let mut dropped = None;
        if g.state.len() >= self.cfg.max_queue {
            match self.cfg.on_full {
                OnFull::Reject => {
                    g.stats.rejected += 1;
                    return Err(PushError::Failed(value, self.full_error_for("reject")));
                }
                OnFull::DropOldest => {
                    dropped = g.state.pop_oldest();
                    g.stats.dropped += u64::from(dropped.is_some());
                    self.note_emptied(&g);
                }
                OnFull::Block => {
                    let (wait, fail) = match room {
                        Room::Never => return Err(PushError::WouldBlock(value)),
                        Room::Until(t) => (t, true),
                        Room::Within(d) => (Some(d), false),
                    };
                    let max_queue = self.cfg.max_queue;
                    let got_room = wait_for_room(
                        &self.room,
                        &mut g,
                        wait.map(|t| now + t),
                        |i: &Inner<T>| i.state.len() >= max_queue && !i.state.is_closed(),
                        |i: &mut Inner<T>| &mut i.producers_waiting,
                    );
                    if !got_room {
                        if !fail {
                            return Err(PushError::WouldBlock(value));
                        }
                        g.stats.rejected += 1;
                        return Err(PushError::Failed(
                            value,
                            room_timeout_error(max_queue, wait),
                        ));
                    }
                    if g.state.is_closed() {
                        g.stats.rejected += 1;
                        return Err(PushError::Failed(value, closed_error()));
                    }
                    now = Instant::now();
                }
            }
        }
        let was_empty = g.state.is_empty();
        g.state.push(value, meta, now);
        g.stats.submitted += 1;
        // Wake a waiting dispatcher only when this push can make a batch due
        // (a wake-up per item costs a futex call and a context switch): the
        // queue was empty or nothing runs (dispatch at once), a batch may be
        // full, or a weight limit or deadline may change the decision.
        if g.dispatchers_waiting > 0
            && g.in_flight < self.cfg.max_concurrency
            && (self.cfg.max_batch_weight.is_some()
                || meta.deadline.is_some()
                || if self.cfg.idle_dispatch {
                    was_empty || g.in_flight == 0 || g.state.len() >= self.cap(&g)
                } else {
                    self.window_wake(&g, was_empty)
                })
        {
            self.work.notify_one();
        }
        let len = g.state.len();
        Ok(PushOk {
            dropped,
            was_empty,
            len,
        })
    }

    /// Without idle dispatch (message windows), whether a push must wake a
    /// waiting dispatcher. Running dispatchers form the next due batch
    /// themselves when they finish (`done_then_next`) and re-arm the
    /// `max_wait` timer, so a sleeper is woken only when nobody runs and the
    /// first item arrives (to arm its timer) or a batch fills, or when the
    /// queue holds one more full batch than there are running dispatchers.
    /// The length grows by one per push, so each threshold is crossed at
    /// exactly one push: one wake-up (a futex call) per threshold, not one
    /// per push past it.
    fn window_wake(&self, g: &Inner<T>, was_empty: bool) -> bool {
        let len = g.state.len();
        let cap = self.cap(g);
        (g.in_flight == 0 && was_empty) || len == cap.saturating_mul(g.in_flight + 1)
    }

    /// The error a non-blocking push into a full `block` queue reports.
    pub fn full_error(&self) -> Error {
        self.full_error_for(self.cfg.on_full.as_str())
    }

    fn full_error_for(&self, policy: &str) -> Error {
        full_error(self.cfg.max_queue, policy)
    }

    /// The error an item evicted by `drop_oldest` fails with.
    pub fn dropped_error(&self) -> Error {
        Error::QueueFull(format!(
            "dropped: the queue was full (max_queue={}, on_full=\"drop_oldest\") and a newer item took this one's place",
            self.cfg.max_queue
        ))
    }

    /// The error an expired item fails with.
    pub fn expired_error(&self) -> Error {
        Error::DeadlineExceeded(
            "deadline_ms passed before the item reached the handler".to_string(),
        )
    }

    fn admission(&self, g: &Inner<T>, now: Instant, deadline: Instant) -> Option<Error> {
        if deadline <= now {
            return Some(Error::DeadlineExceeded(
                "deadline_ms is already past at submit".to_string(),
            ));
        }
        if !self.cfg.admission || g.model.observations() < 2 {
            return None;
        }
        let cap = self.cap(g);
        let ahead = (g.state.len() + 1).div_ceil(cap) as f64;
        let predicted = ahead * g.model.predict(cap) / self.cfg.max_concurrency as f64;
        let left = deadline.saturating_duration_since(now).as_secs_f64();
        (predicted > left).then(|| {
            Error::DeadlineExceeded(format!(
                "admission: predicted completion in {:.3} ms is past deadline_ms={:.3}",
                predicted * 1e3,
                left * 1e3
            ))
        })
    }

    fn cap(&self, g: &Inner<T>) -> usize {
        if self.cfg.adaptive {
            g.model.choose(self.cfg.latency_target)
        } else {
            self.cfg.max_batch_size
        }
    }

    fn try_form(&self, g: &mut Inner<T>, now: Instant) -> Next<T> {
        let expired = g.state.take_expired(now);
        g.stats.expired += expired.len() as u64;
        let cap = self.cap(g);
        let formed = g
            .state
            .form(now, &self.cfg, cap, self.cfg.max_wait, g.in_flight);
        self.note_emptied(g);
        match formed {
            Formation::Batch(b) => {
                g.in_flight += 1;
                g.stats.batch(b.items.len(), b.reason);
                for &a in &b.arrivals {
                    g.stats.queue_wait.record(now.saturating_duration_since(a));
                }
                if g.producers_waiting > 0 {
                    self.room.notify_all();
                }
                // Another waiting dispatcher may have a batch to form too.
                // Without idle dispatch (message windows) only a full batch,
                // a weight limit or flush/close can make one due before the
                // timers the waiting dispatchers already sleep on; waking
                // one otherwise costs two context switches per batch.
                if g.dispatchers_waiting > 0
                    && !g.state.is_empty()
                    && (self.cfg.idle_dispatch
                        || g.state.len() >= cap
                        || self.cfg.max_batch_weight.is_some()
                        || g.state.forced())
                {
                    self.work.notify_one();
                }
                self.formed.notify_all();
                Next::Batch(b, expired)
            }
            Formation::Wait(when) => {
                if !expired.is_empty() {
                    if g.producers_waiting > 0 {
                        self.room.notify_all();
                    }
                    Next::Expired(expired)
                } else if g.state.is_closed() && g.state.is_empty() {
                    Next::Closed
                } else {
                    Next::Wait(when)
                }
            }
        }
    }

    fn note_emptied(&self, g: &Inner<T>) {
        if g.state.has_emptied_keys() {
            self.emptied.store(true, Ordering::Release);
        }
    }

    /// True when [`Queue::take_emptied_keys`] has keys to hand out (no lock).
    pub fn has_emptied_keys(&self) -> bool {
        self.emptied.load(Ordering::Acquire)
    }

    /// The keys whose lanes emptied since the last call (with
    /// `track_emptied_keys`): no item with them is queued now.
    pub fn take_emptied_keys(&self) -> Vec<u64> {
        let mut g = self.inner.lock();
        self.emptied.store(false, Ordering::Release);
        g.state.take_emptied_keys()
    }

    /// Non-blocking: a batch if one is due now, else when to ask again.
    pub fn poll(&self) -> Next<T> {
        let mut g = self.inner.lock();
        self.try_form(&mut g, Instant::now())
    }

    /// Sleep as a waiting dispatcher until woken or `until`.
    fn park(&self, g: &mut parking_lot::MutexGuard<'_, Inner<T>>, until: Option<Instant>) {
        g.dispatchers_waiting += 1;
        match until {
            Some(u) => {
                self.work.wait_until(g, u);
            }
            None => self.work.wait(g),
        }
        g.dispatchers_waiting -= 1;
    }

    /// Block until the queue holds something or is closed (true), or
    /// `until` passes (false). Forms nothing: a dispatcher that must take the
    /// interpreter before it can run the handler waits here detached, then
    /// forms the batch with `poll` once attached, so the items a producer
    /// holding the interpreter queued meanwhile (an event loop finishing a
    /// burst) join the same batch.
    pub fn wait_ready(&self, until: Option<Instant>) -> bool {
        let mut g = self.inner.lock();
        loop {
            if !g.state.is_empty() || g.state.is_closed() {
                return true;
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return false;
            }
            self.park(&mut g, until);
        }
    }

    /// Block until a batch is due (or expired items, closing, or `timeout`).
    pub fn next(&self, timeout: Option<Duration>) -> Next<T> {
        let until = timeout.map(|t| Instant::now() + t);
        let g = self.inner.lock();
        self.next_locked(g, until)
    }

    fn next_locked(
        &self,
        mut g: parking_lot::MutexGuard<'_, Inner<T>>,
        until: Option<Instant>,
    ) -> Next<T> {
        loop {
            let now = Instant::now();
            let wake = match self.try_form(&mut g, now) {
                Next::Wait(w) => w,
                other => return other,
            };
            let wake = match (wake, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if until.is_some_and(|u| now >= u) {
                return Next::Timeout;
            }
            self.park(&mut g, wake);
        }
    }

    /// Up to `max` more batches that are already due regardless of slots
    /// (full by size or weight, or forced by flush/close), each counted in
    /// flight. Lets one dispatcher wake-up prepare several frames while a
    /// busy producer holds the interpreter.
    pub fn take_due(&self, max: usize) -> Vec<Batch<T>> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        let mut g = self.inner.lock();
        let mut cfg = self.cfg.clone();
        cfg.max_concurrency = usize::MAX;
        let never = Duration::from_secs(86_400 * 365);
        while out.len() < max {
            let now = Instant::now();
            let cap = self.cap(&g);
            let formed = g.state.form(now, &cfg, cap, never, 1);
            self.note_emptied(&g);
            match formed {
                Formation::Batch(b) => {
                    g.in_flight += 1;
                    g.stats.batch(b.items.len(), b.reason);
                    for &a in &b.arrivals {
                        g.stats.queue_wait.record(now.saturating_duration_since(a));
                    }
                    out.push(b);
                }
                Formation::Wait(_) => break,
            }
        }
        if !out.is_empty() && g.producers_waiting > 0 {
            self.room.notify_all();
        }
        out
    }

    /// A batch of `n` items finished after `elapsed`: free its slot and
    /// count `completed` / `failed` items; `ok` is false if the handler failed.
    pub fn done(&self, n: usize, elapsed: Duration, ok: bool, completed: u64, failed: u64) {
        let mut g = self.inner.lock();
        self.record_done(&mut g, n, elapsed, ok, completed, failed);
    }

    fn record_done(
        &self,
        g: &mut Inner<T>,
        n: usize,
        elapsed: Duration,
        ok: bool,
        completed: u64,
        failed: u64,
    ) {
        g.in_flight = g.in_flight.saturating_sub(1);
        g.stats.completed += completed;
        g.stats.failed += failed;
        g.stats.handler_time.record(elapsed);
        if n > 0 {
            g.model.observe(n, elapsed, ok);
        }
        if g.dispatchers_waiting > 0 {
            self.work.notify_one();
        }
    }

    /// After `done`: if items wait and a slot is free, wait (up to
    /// `timeout`) until another dispatcher has formed its batch. Call with
    /// the GIL released before resolving results, so the next handler call
    /// starts first and the handler never idles while results are handed out.
    /// Returns true if a batch was formed meanwhile.
    pub fn handoff(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut g = self.inner.lock();
        if g.state.is_empty()
            || g.in_flight >= self.cfg.max_concurrency
            || g.dispatchers_waiting == 0
        {
            return false;
        }
        let seen = g.stats.batches;
        while g.stats.batches == seen {
            if self.formed.wait_until(&mut g, until).timed_out() {
                return g.stats.batches != seen;
            }
        }
        true
    }

    /// Count items delivered (`completed`) or given up on (`failed`) after
    /// their batch's slot was freed.
    pub fn count(&self, completed: u64, failed: u64) {
        let mut g = self.inner.lock();
        g.stats.completed += completed;
        g.stats.failed += failed;
    }

    /// Count items cancelled by their callers before running.
    pub fn note_cancelled(&self, n: u64) {
        if n > 0 {
            self.inner.lock().stats.cancelled += n;
        }
    }

    /// Force out everything queued so far.
    pub fn flush(&self) {
        let mut g = self.inner.lock();
        g.state.flush();
        self.work.notify_all();
    }

    /// Stop accepting; dispatchers drain what is queued, then get `Closed`.
    pub fn close(&self) {
        let mut g = self.inner.lock();
        g.state.close();
        self.work.notify_all();
        self.room.notify_all();
    }

    /// True once `close` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().state.is_closed()
    }

    /// Remove every queued item (arrival order), e.g. to fail them.
    pub fn drain_all(&self) -> Vec<T> {
        let mut g = self.inner.lock();
        let all = g.state.drain_all();
        self.note_emptied(&g);
        self.room.notify_all();
        all
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.inner.lock().state.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batches running now.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }

    /// Items accepted and not finished yet (see [`Stats::outstanding`]).
    pub fn outstanding(&self) -> u64 {
        self.inner.lock().stats.outstanding()
    }

    /// Counters and live values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = self.inner.lock();
        StatsSnapshot {
            stats: g.stats.clone(),
            queue_depth: g.state.len(),
            lanes: g.state.lanes(),
            in_flight: g.in_flight,
            model: (g.model.a(), g.model.b(), self.cap(&g), g.model.aimd_cap()),
        }
    }
}
