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
