//! Request batching: the queue, its timing and batch formation.
//!
//! Items are opaque values (`T`) with metadata ([`Meta`]): the binding stores
//! Python objects here and never touches them while detached. The formation
//! policy ([`State::form`]) is pure (time is an argument), so it is tested
//! without threads; [`Queue`] wraps it in a mutex and condition variables for
//! dispatcher threads and blocked producers.
//!
//! Formation is *pull*: a batch is formed when an execution slot is free
//! (`max_concurrency`). When nothing runs, whatever waits is dispatched at
//! once (reason `idle`); while some batches run, the queue grows until a
//! trigger fires: `size`, `weight`, or `time` (`max_wait` after the OLDEST
//! queued item's arrival). `flush` and `close` force batches out.

mod frame;
mod model;
mod pipeline;
mod queue;
mod state;
mod stats;
mod window;

pub use frame::{
    declared_body_len, decode_frame, encode_frame, FrameEncoder, FRAME_MAGIC, FRAME_VERSION,
};
pub use model::Model;
pub use pipeline::{FramePipeline, Framed, Received};
pub use queue::{Next, PushError, PushOk, Queue};
pub use state::{Batch, Formation, State};
pub use stats::{Histogram, Stats, StatsSnapshot};
pub use window::{Body, Window, WindowBatch, WindowNext};

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What `push` does when the queue holds `max_queue` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for room (up to a timeout), then fail with `QueueFull`.
    Block,
    /// Fail at once with `QueueFull`.
    Reject,
    /// Evict the oldest queued item (it fails with `QueueFull`) and accept.
    DropOldest,
}

impl OnFull {
    /// Parse the Python spelling.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "block" => Ok(OnFull::Block),
            "reject" => Ok(OnFull::Reject),
            "drop_oldest" => Ok(OnFull::DropOldest),
            other => Err(Error::invalid(
                "on_full",
                format!("{other:?}"),
                "one of 'block', 'reject', 'drop_oldest'",
            )),
        }
    }

    /// The Python spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFull::Block => "block",
            OnFull::Reject => "reject",
            OnFull::DropOldest => "drop_oldest",
        }
    }
}

/// Why a batch was dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `max_batch_size` items were waiting.
    Size,
    /// The oldest item waited `max_wait`.
    Time,
    /// The next item would exceed `max_batch_weight` (or is oversize alone).
    Weight,
    /// Nothing was running: dispatched at once.
    Idle,
    /// `flush()` forced it.
    Flush,
    /// `close()` is draining the queue.
    Close,
}

impl Reason {
    /// All reasons, in the order `stats()` lists them.
    pub const ALL: [Reason; 6] = [
        Reason::Size,
        Reason::Time,
        Reason::Weight,
        Reason::Idle,
        Reason::Flush,
        Reason::Close,
    ];

    /// The name used in `stats()`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Size => "size",
            Reason::Time => "time",
            Reason::Weight => "weight",
            Reason::Idle => "idle",
            Reason::Flush => "flush",
            Reason::Close => "close",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Batcher settings, checked by [`Config::validate`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Most items in one batch.
    pub max_batch_size: usize,
    /// Longest time the oldest item waits while a slot is free.
    pub max_wait: Duration,
    /// Most items queued (not counting running batches).
    pub max_queue: usize,
    /// What a push into a full queue does.
    pub on_full: OnFull,
    /// Most total weight in one batch (an item heavier than this runs alone).
    pub max_batch_weight: Option<u64>,
    /// Batches that may run at once.
    pub max_concurrency: usize,
    /// Learn handler latency and pick the batch size from it.
    pub adaptive: bool,
    /// With `adaptive`: keep a batch's predicted handler time under this.
    pub latency_target: Option<Duration>,
    /// One priority level is gained per `aging` waited (so nothing starves).
    pub aging: Duration,
    /// Reject at `push` an item whose predicted completion is past its deadline.
    pub admission: bool,
    /// Dispatch at once when nothing runs (pull formation). Off: batches go
    /// out when full or when the oldest waited `max_wait` (a window, as the
    /// message queue [`Window`] always does), so a fast consumer does not
    /// take one-item batches.
    pub idle_dispatch: bool,
    /// Remember the keys whose lanes emptied, for [`Queue::take_emptied_keys`]
    /// (a binding that maps its own key objects to lane ids forgets them then).
    pub track_emptied_keys: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_batch_size: 64,
            max_wait: Duration::from_millis(5),
            max_queue: 10_000,
            on_full: OnFull::Block,
            max_batch_weight: None,
            max_concurrency: 1,
            adaptive: false,
            latency_target: None,
            aging: Duration::from_millis(100),
            admission: false,
            idle_dispatch: true,
            track_emptied_keys: false,
        }
    }
}

/// Milliseconds (from Python) to a duration, naming the parameter on error.
pub fn millis(param: &'static str, ms: f64, allow_zero: bool) -> Result<Duration> {
    let ok = ms.is_finite() && (ms > 0.0 || (allow_zero && ms == 0.0)) && ms < 1e12;
    if !ok {
        let expected = if allow_zero {
            "must be a finite number of milliseconds >= 0"
        } else {
            "must be a finite number of milliseconds > 0"
        };
        return Err(Error::invalid(param, ms, expected));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

impl Config {
    /// Check every field; the error names the parameter and its value.
    pub fn validate(&self) -> Result<()> {
        if self.max_batch_size == 0 {
            return Err(Error::invalid("max_batch_size", 0, "must be >= 1"));
        }
        if self.max_queue == 0 {
            return Err(Error::invalid("max_queue", 0, "must be >= 1"));
        }
        if self.max_concurrency == 0 || self.max_concurrency > 1024 {
            return Err(Error::invalid(
                "max_concurrency",
                self.max_concurrency,
                "must be between 1 and 1024",
            ));
        }
        if self.max_batch_weight == Some(0) {
            return Err(Error::invalid(
                "max_batch_weight",
                0,
                "must be >= 1 or None",
            ));
        }
        if self.aging.is_zero() {
            return Err(Error::invalid("aging_ms", 0, "must be > 0"));
        }
        Ok(())
    }
}

/// The error of a push into a closed queue.
fn closed_error() -> Error {
    Error::Closed("the batcher is closed: it accepts no more items".to_string())
}

/// The error of a push refused by a full queue under `policy`.
fn full_error(max_queue: usize, policy: &str) -> Error {
    Error::QueueFull(format!(
        "queue full: max_queue={max_queue} items are waiting (on_full={policy:?})"
    ))
}

/// The error of a push that found no room within `timeout` (None: forever).
fn room_timeout_error(max_queue: usize, timeout: Option<Duration>) -> Error {
    let secs = timeout.map_or(0.0, |t| t.as_secs_f64());
    Error::QueueFull(format!(
        "queue full (max_queue={max_queue}): no room within timeout={secs}s"
    ))
}

/// How a push into a full `block` queue waits for room.
#[derive(Debug, Clone, Copy)]
enum Room {
    /// Not at all: `WouldBlock`.
    Never,
    /// Up to this long (None: forever), then fail with `QueueFull`.
    Until(Option<Duration>),
    /// Up to this long, then `WouldBlock` (the caller waits again or gives up).
    Within(Duration),
}

/// Wait on `room` while `blocked(g)` (full and open), as `how` allows.
/// Returns false when the wait ended with the queue still blocked (time out).
/// `waiting(g)` is the producers-waiting counter the queue keeps.
fn wait_for_room<I>(
    room: &parking_lot::Condvar,
    g: &mut parking_lot::MutexGuard<'_, I>,
    until: Option<Instant>,
    blocked: impl Fn(&I) -> bool,
    waiting: impl Fn(&mut I) -> &mut usize,
) -> bool {
    while blocked(g) {
        *waiting(g) += 1;
        let timed_out = match until {
            Some(u) => room.wait_until(g, u).timed_out(),
            None => {
                room.wait(g);
                false
            }
        };
        *waiting(g) -= 1;
        if timed_out {
            return !blocked(g);
        }
    }
    true
}

/// Per-item metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Higher runs first (with aging).
    pub priority: i32,
    /// Fails with `DeadlineExceeded` instead of running after this.
    pub deadline: Option<Instant>,
    /// Items with different keys never share a batch.
    pub key: u64,
    /// Counted against `max_batch_weight`.
    pub weight: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            priority: 0,
            deadline: None,
            key: 0,
            weight: 1,
        }
    }
}

#[cfg(test)]
mod tests;
