//! The one error enum of the core crate.
//!
//! The binding maps each variant to one Python exception class (see
//! `rust/py/src/errors.rs`); every message names the parameter or the input at
//! fault, so the Python user sees what to fix.

use std::fmt;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the core can report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A constructor or call argument is out of its valid range.
    #[error("invalid {param}={value}: {expected}")]
    InvalidParameter {
        /// The parameter's name as the Python user spells it.
        param: &'static str,
        /// The offending value, rendered for the message.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// zstd refused to compress (out of memory, bad context state).
    #[error("compression failed: {0}")]
    Compression(String),
    /// The input is not a valid, complete zstd frame (or envelope).
    #[error("{0}")]
    Decompression(String),
    /// The decompressed output would exceed the caller's cap.
    #[error("decompressed size {size} exceeds max_output_size={limit}")]
    OutputTooLarge {
        /// The size the frame declares or the size reached before stopping.
        size: SizeHint,
        /// The cap in force.
        limit: usize,
    },
    /// Dictionary training failed (too few or too uniform samples).
    #[error("dictionary training failed: {0}")]
    Dictionary(String),
    /// One item of a batch failed; `source` says how.
    #[error("item {index}: {source}")]
    Item {
        /// Position of the item in the batch.
        index: usize,
        /// What went wrong with it.
        source: Box<Error>,
    },

    // --- pools (BufferPool, ObjectPool) ---
    /// Every one of a pool's `max_size` items is out and none came back in time.
    #[error("{pool} exhausted: all max_size={max_size} items are in use{waited}")]
    PoolExhausted {
        /// "BufferPool" or "ObjectPool".
        pool: &'static str,
        /// The pool's cap.
        max_size: usize,
        /// How long the caller waited, rendered (empty for `block=False`).
        waited: String,
    },
    /// `release()` while a memoryview / numpy array of the buffer is alive.
    #[error("cannot release the buffer: {exports} export(s) (memoryview, numpy array, ...) still alive; release them first")]
    BufferExported {
        /// Live exports at the time of the call.
        exports: usize,
    },
    /// The pooled item was already released (double release or use after release).
    #[error("{what} was already released{hint}")]
    Released {
        /// What was released ("the PooledBuffer", "the PooledObject").
        what: &'static str,
        /// Extra advice for the message.
        hint: &'static str,
    },
    // --- balancing (Balancer, WorkerPool, ShardRouter) ---
    /// Every backend (or node) is down, ejected or removed.
    #[error("no backend available: {0}")]
    NoBackendAvailable(String),
    /// A bounded task queue is full and the caller asked not to wait.
    #[error("worker pool queue is full (max_queue={capacity})")]
    WorkerQueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The worker pool is shut down and accepts no new work.
    #[error("cannot schedule new tasks after shutdown")]
    PoolShutdown,
    /// No worker runs and the system refused to start one (thread limits,
    /// memory): the task was not queued.
    #[error("{0}")]
    WorkerStart(String),
    // --- batcher ---
    /// The batcher's queue is full (`on_full="reject"`, a block that timed
    /// out, or an item dropped by `on_full="drop_oldest"`).
    #[error("{0}")]
    QueueFull(String),
    /// The batcher is closed: it accepts no more items.
    #[error("{0}")]
    Closed(String),
    /// An item's deadline passed (or would pass) before it could run.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A message batch frame is malformed.
    #[error("{0}")]
    Frame(String),
    // --- caches ---
    /// A call re-entered a store from inside that store's own key
    /// comparison (a key's `__eq__` calling back into the cache).
    #[error("{0}")]
    Reentrant(String),
}

/// A size that is either exact (declared in a frame header) or a lower bound
/// (reached while streaming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeHint {
    /// The frame header declares this size.
    Exact(u64),
    /// Decoding had produced more than this many bytes when it was stopped.
    AtLeast(u64),
}

impl fmt::Display for SizeHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeHint::Exact(n) => write!(f, "{n}"),
            SizeHint::AtLeast(n) => write!(f, "> {n}"),
        }
    }
}

impl Error {
    /// Say which item of a batch this error is about.
    pub fn at_item(self, index: usize) -> Self {
        Error::Item {
            index,
            source: Box::new(self),
        }
    }

    /// The error without batch-position wrappers (decides the exception class).
    pub fn root(&self) -> &Error {
        match self {
            Error::Item { source, .. } => source.root(),
            other => other,
        }
    }

    /// Shorthand for [`Error::InvalidParameter`].
    pub fn invalid(
        param: &'static str,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Error::InvalidParameter {
            param,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
