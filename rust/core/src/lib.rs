//! overdrive-core: the pure-Rust hot paths behind the `overdrive` Python package.
//!
//! This crate has no pyo3 dependency: everything here is plain Rust, tested by
//! `cargo test` and proptest without libpython. The binding crate (`rust/py`)
//! converts arguments, releases the GIL and maps [`Error`] to Python exceptions.

// balancing: Balancer, WorkerPool scheduling, ShardRouter
pub mod balance;
// batcher
pub mod batcher;
// L1 cache store (MemoryTier)
pub mod cache;
pub mod compress;
pub mod error;
pub mod stats;
// open-loop pacing (LoadRunner)
pub mod pacing;
// latency histogram (telemetry)
pub mod hist;
// pools (BufferPool, ObjectPool)
pub mod pool;
pub mod worker_pool;

pub use error::{Error, Result};
