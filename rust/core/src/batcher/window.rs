//! The message queue of `MessageBatcher`: messages are appended straight
//! into the body of the frame they will travel in.
//!
//! A message batch needs no priorities, keys or deadlines, so instead of one
//! queue entry (an allocation, a clock read, a later copy) per message, a
//! `put` copies the message's length and bytes onto the end of the *open*
//! batch's body, already in the frame's body layout. A batch is sealed when
//! it holds `max_batch_size` messages (or would pass `max_batch_weight`
//! bytes), or by `max_wait` after its first message, `flush` or `close`;
//! framing threads take sealed batches whole (one short lock per batch) and
//! compress the body as it is. Ordering, `max_queue` with `on_full`, flush,
//! close and the counters behave as with [`Queue`](super::Queue).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::{
    closed_error, full_error, room_timeout_error, wait_for_room, Config, OnFull, PushError, Reason,
    Room, Stats, StatsSnapshot,
};
use crate::error::{Error, Result};

/// A batch of messages in frame-body layout: `count` records of
/// `[u32 little-endian length][bytes]`.
#[derive(Debug)]
pub struct Body {
    /// The records.
    pub bytes: Vec<u8>,
    /// Messages in it.
    pub count: usize,
    /// Sum of the message lengths (the weight).
    pub weight: u64,
    /// When its first message arrived.
    pub first: Instant,
}

impl Body {
    fn new(first: Instant, reserve: usize) -> Self {
        Body {
            bytes: Vec::with_capacity(reserve),
            count: 0,
            weight: 0,
            first,
        }
    }

    /// Append one record (`n` is `m.len()`, checked by the caller).
    fn append(&mut self, m: &[u8], n: u32) {
        self.bytes.extend_from_slice(&n.to_le_bytes());
        self.bytes.extend_from_slice(m);
        self.count += 1;
        self.weight += m.len() as u64;
    }

    /// Remove and return the first message.
    fn pop_front(&mut self) -> Option<Vec<u8>> {
        let head = self.bytes.get(..4)?;
        let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let m = self.bytes.get(4..4 + n)?.to_vec();
        self.bytes.drain(..4 + n);
        self.count -= 1;
        self.weight -= n as u64;
        Some(m)
    }
}

/// A batch handed to a framing thread.
#[derive(Debug)]
pub struct WindowBatch {
    /// The messages, in frame-body layout.
    pub body: Body,
    /// Why it was dispatched.
    pub reason: Reason,
    /// 1, 2, 3, ... in dispatch order.
    pub seq: u64,
}

/// What [`Window::next`] returns.
#[derive(Debug)]
pub enum WindowNext {
    /// Frame this batch.
    Batch(WindowBatch),
    /// Closed and empty: the framing thread may stop.
    Closed,
}

struct Inner {
    open: Option<Body>,
    sealed: VecDeque<(Body, Reason)>,
    len: usize,
    closed: bool,
    seq: u64,
    in_flight: usize,
    stats: Stats,
    dispatchers_waiting: usize,
    producers_waiting: usize,
    /// Body capacity to reserve for a new batch (what the last ones needed,
    /// at most `Window::reserve_cap`).
    reserve: usize,
}

/// Most body capacity reserved ahead for a batch when no weight limit says
/// what a batch needs (a larger body grows as messages arrive).
const MAX_RESERVE: usize = 1 << 20;

/// The message queue shared by producers and framing threads.
pub struct Window {
    cfg: Config,
    /// Most body capacity reserved ahead for a new batch.
    reserve_cap: usize,
    inner: Mutex<Inner>,
    work: Condvar,
    room: Condvar,
}

impl Window {
    /// A queue with checked settings (`max_concurrency` = framing threads).
    pub fn new(cfg: Config) -> Result<Self> {
        cfg.validate()?;
        // A batch of the configured size: max_batch_size records of at most
        // max_batch_weight bytes in all (each record has a 4-byte length).
        let reserve_cap = cfg.max_batch_weight.map_or(MAX_RESERVE, |w| {
            usize::try_from(w)
                .unwrap_or(usize::MAX)
                .saturating_add(cfg.max_batch_size.saturating_mul(4))
                .min(MAX_RESERVE)
        });
        Ok(Window {
            reserve_cap,
            cfg,
            inner: Mutex::new(Inner {
                open: None,
                sealed: VecDeque::new(),
                len: 0,
                closed: false,
                seq: 0,
                in_flight: 0,
                stats: Stats::default(),
                dispatchers_waiting: 0,
                producers_waiting: 0,
                reserve: 0,
            }),
            work: Condvar::new(),
            room: Condvar::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Seal the open batch (if any) with `reason`.
    fn seal(&self, g: &mut Inner, reason: Reason) {
        if let Some(b) = g.open.take() {
            // Reserve what the last batch needed (decaying, so one large
            // batch is not reserved for ever), never more than a batch of
            // the configured size needs: after an oversize message the
            // next bodies are back to their usual size.
            g.reserve = b.bytes.len().max(g.reserve / 2).min(self.reserve_cap);
            g.sealed.push_back((b, reason));
        }
    }

    /// Body capacity reserved for the next batch (tests and diagnostics).
    pub fn reserve(&self) -> usize {
        self.inner.lock().reserve
    }

    /// Queue a copy of `m`. With `on_full="block"` and a full queue this
    /// returns `WouldBlock` unless `block`; then it waits up to `timeout`
    /// (None: forever). Returns the message evicted by `drop_oldest`.
    pub fn push(
        &self,
        m: &[u8],
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, PushError<()>> {
        let room = if block {
            Room::Until(timeout)
        } else {
            Room::Never
        };
        self.push_with(m, room)
    }

    /// Like [`Window::push`] with `block`, but wait at most `wait` for room
    /// and then return `WouldBlock` (nothing counted); give up with
    /// [`Window::blocked_too_long`].
    pub fn push_within(&self, m: &[u8], wait: Duration) -> Result<Option<Vec<u8>>, PushError<()>> {
        self.push_with(m, Room::Within(wait))
    }

    /// Count a push that waited for room in slices and gave up after
    /// `timeout`; the error to report.
    pub fn blocked_too_long(&self, timeout: Option<Duration>) -> Error {
        self.inner.lock().stats.rejected += 1;
        room_timeout_error(self.cfg.max_queue, timeout)
    }

    fn push_with(&self, m: &[u8], room: Room) -> Result<Option<Vec<u8>>, PushError<()>> {
        let Ok(n) = u32::try_from(m.len()) else {
            let msg = format!(
                "a message of {} bytes exceeds the frame format's 4 GiB limit",
                m.len()
            );
            return Err(PushError::Failed((), Error::Frame(msg)));
        };
        let now = Instant::now();
        let mut g = self.inner.lock();
        if g.closed {
            g.stats.rejected += 1;
            return Err(PushError::Failed((), closed_error()));
        }
        let mut dropped = None;
        if g.len >= self.cfg.max_queue {
            match self.cfg.on_full {
                OnFull::Reject => {
                    g.stats.rejected += 1;
                    return Err(PushError::Failed((), self.full_error_for("reject")));
                }
                OnFull::DropOldest => {
                    dropped = Self::pop_oldest(&mut g);
                    g.stats.dropped += u64::from(dropped.is_some());
                }
                OnFull::Block => self.wait_for_room(&mut g, now, room)?,
            }
        }
        let cap = self.cfg.max_batch_size;
        let limit = self.cfg.max_batch_weight;
        let len = m.len() as u64;
        // A weight limit seals the open batch before a message that would
        // pass it; a message heavier than the limit travels alone.
        if let (Some(w), Some(open)) = (limit, g.open.as_ref()) {
            if open.count > 0 && open.weight.saturating_add(len) > w {
                self.seal(&mut g, Reason::Weight);
            }
        }
        let reserve = g.reserve;
        let open = g.open.get_or_insert_with(|| Body::new(now, reserve));
        open.append(m, n);
        let (count, weight) = (open.count, open.weight);
        g.len += 1;
        g.stats.submitted += 1;
        let was_sealed = if count >= cap {
            self.seal(&mut g, Reason::Size);
            true
        } else if limit.is_some_and(|w| weight >= w) {
            self.seal(&mut g, Reason::Weight);
            true
        } else {
            false
        };
        // Running framers take the next sealed batch themselves when they
        // finish and re-arm the max_wait timer, so a sleeper is woken only
        // when a batch is sealed and there are more sealed batches than
        // running framers, or when nothing runs and a new batch opens (to
        // arm its timer).
        if g.dispatchers_waiting > 0
            && g.in_flight < self.cfg.max_concurrency
            && ((was_sealed && g.sealed.len() > g.in_flight) || (count == 1 && g.in_flight == 0))
        {
            self.work.notify_one();
        }
        Ok(dropped)
    }

    /// A full `block` queue: wait for room as `room` allows.
    fn wait_for_room(
        &self,
        g: &mut MutexGuard<'_, Inner>,
        now: Instant,
        room: Room,
    ) -> Result<(), PushError<()>> {
        let (wait, fail) = match room {
            Room::Never => return Err(PushError::WouldBlock(())),
            Room::Until(t) => (t, true),
            Room::Within(d) => (Some(d), false),
        };
        let max_queue = self.cfg.max_queue;
        let got_room = wait_for_room(
            &self.room,
            g,
            wait.map(|t| now + t),
            |i: &Inner| i.len >= max_queue && !i.closed,
            |i: &mut Inner| &mut i.producers_waiting,
        );
        if !got_room {
            if !fail {
                return Err(PushError::WouldBlock(()));
            }
            g.stats.rejected += 1;
            return Err(PushError::Failed((), room_timeout_error(max_queue, wait)));
        }
        if g.closed {
            g.stats.rejected += 1;
            return Err(PushError::Failed((), closed_error()));
        }
        Ok(())
    }

    fn pop_oldest(g: &mut Inner) -> Option<Vec<u8>> {
        let m = match g.sealed.front_mut() {
            Some((b, _)) => {
                let m = b.pop_front();
                if b.count == 0 {
                    g.sealed.pop_front();
                }
                m
            }
            None => {
                let b = g.open.as_mut()?;
                let m = b.pop_front();
                if b.count == 0 {
                    g.open = None;
                }
                m
            }
        };
        g.len -= usize::from(m.is_some());
        m
    }

    /// The error a non-blocking push into a full `block` queue reports.
    pub fn full_error(&self) -> Error {
        self.full_error_for(self.cfg.on_full.as_str())
    }

    fn full_error_for(&self, policy: &str) -> Error {
        full_error(self.cfg.max_queue, policy)
    }

    /// Take a batch that is due now, if a framing slot is free.
    fn try_take(&self, g: &mut Inner, now: Instant) -> Option<WindowBatch> {
        if g.in_flight >= self.cfg.max_concurrency {
            return None;
        }
        if g.sealed.is_empty() {
            let due = g
                .open
                .as_ref()
                .is_some_and(|b| g.closed || now >= b.first + self.cfg.max_wait);
            if !due {
                return None;
            }
            let reason = if g.closed {
                Reason::Close
            } else {
                Reason::Time
            };
            self.seal(g, reason);
        }
        let (body, reason) = g.sealed.pop_front()?;
        g.len -= body.count;
        g.in_flight += 1;
        g.seq += 1;
        g.stats.batch(body.count, reason);
        g.stats
            .queue_wait
            .record_n(now.saturating_duration_since(body.first), body.count as u64);
        if g.producers_waiting > 0 {
            self.room.notify_all();
        }
        Some(WindowBatch {
            body,
            reason,
            seq: g.seq,
        })
    }

    /// Block until a batch is due (or the queue is closed and empty).
    pub fn next(&self) -> WindowNext {
        let g = self.inner.lock();
        self.next_locked(g)
    }

    /// Free the slot of a framed batch, then [`Window::next`], under one lock.
    pub fn done_then_next(&self, elapsed: Duration) -> WindowNext {
        let mut g = self.inner.lock();
        g.in_flight = g.in_flight.saturating_sub(1);
        g.stats.handler_time.record(elapsed);
        self.next_locked(g)
    }

    /// Free the slot of a framed batch.
    pub fn done(&self, elapsed: Duration) {
        let mut g = self.inner.lock();
        g.in_flight = g.in_flight.saturating_sub(1);
        g.stats.handler_time.record(elapsed);
        if g.dispatchers_waiting > 0 {
            self.work.notify_one();
        }
    }

    fn next_locked(&self, mut g: MutexGuard<'_, Inner>) -> WindowNext {
        loop {
            let now = Instant::now();
            if let Some(b) = self.try_take(&mut g, now) {
                // Another sleeping framer can take the next sealed batch.
                if g.dispatchers_waiting > 0 && !g.sealed.is_empty() {
                    self.work.notify_one();
                }
                return WindowNext::Batch(b);
            }
            if g.closed && g.len == 0 {
                return WindowNext::Closed;
            }
            let wake = match (&g.open, g.in_flight < self.cfg.max_concurrency) {
                (Some(b), true) => Some(b.first + self.cfg.max_wait),
                _ => None,
            };
            g.dispatchers_waiting += 1;
            match wake {
                Some(w) => {
                    self.work.wait_until(&mut g, w);
                }
                None => self.work.wait(&mut g),
            }
            g.dispatchers_waiting -= 1;
        }
    }

    /// Count messages delivered (`completed`) or given up on (`failed`).
    pub fn count(&self, completed: u64, failed: u64) {
        let mut g = self.inner.lock();
        g.stats.completed += completed;
        g.stats.failed += failed;
    }

    /// Force out everything queued so far.
    pub fn flush(&self) {
        let mut g = self.inner.lock();
        self.seal(&mut g, Reason::Flush);
        self.work.notify_all();
    }

    /// Stop accepting; framing threads drain what is queued, then stop.
    pub fn close(&self) {
        let mut g = self.inner.lock();
        g.closed = true;
        self.seal(&mut g, Reason::Close);
        self.work.notify_all();
        self.room.notify_all();
    }

    /// True once `close` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.inner.lock().len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items accepted and not finished yet (see [`Stats::outstanding`]).
    pub fn outstanding(&self) -> u64 {
        self.inner.lock().stats.outstanding()
    }

    /// Counters and live values (`model` is unused here: zeros).
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = self.inner.lock();
        StatsSnapshot {
            stats: g.stats.clone(),
            queue_depth: g.len,
            lanes: usize::from(g.len > 0),
            in_flight: g.in_flight,
            model: (0.0, 0.0, self.cfg.max_batch_size, self.cfg.max_batch_size),
        }
    }
}
