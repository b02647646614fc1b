//! overdrive._core: the PyO3 binding over overdrive-core.
//!
//! Thin by design: argument conversion, GIL release and error mapping. One
//! file per class family; the logic lives in `rust/core`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

mod aio_future;
mod args;
mod balancer;
mod batch;
mod batch_common;
mod batch_futures;
mod batcher;
mod breaker;
mod buffer_pool;
mod buffers;
mod cached_hit;
mod compress;
mod errors;
mod gil_lock;
mod histogram;
mod memory_tier;
mod message_batcher;
mod object_pool;
mod pacer;
mod router;
mod telemetry_hook;
mod wait;
mod worker_pool;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Facts about this build, so a benchmark report can prove what it ran.
#[pyfunction]
fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", env!("CARGO_PKG_VERSION"))?;
    d.set_item("profile", env!("OVERDRIVE_PROFILE"))?;
    d.set_item("debug_assertions", cfg!(debug_assertions))?;
    d.set_item("opt_level", env!("OVERDRIVE_OPT_LEVEL"))?;
    d.set_item("rustc", env!("OVERDRIVE_RUSTC_VERSION"))?;
    let mut features: Vec<&str> = Vec::new();
    if cfg!(feature = "mimalloc") {
        features.push("mimalloc");
    }
    d.set_item("features", features)?;
    d.set_item("zstd", compress::zstd_version())?;
    d.set_item(
        "target",
        format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
    )?;
    Ok(d)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry_hook::_set_telemetry_hook, m)?)?;
    m.add_function(wrap_pyfunction!(compress::compress, m)?)?;
    m.add_function(wrap_pyfunction!(compress::decompress, m)?)?;
    m.add_function(wrap_pyfunction!(compress::train_dictionary, m)?)?;
    m.add_class::<compress::PyCompressor>()?;
    m.add(
        "DEFAULT_MAX_OUTPUT_SIZE",
        overdrive_core::compress::DEFAULT_MAX_OUTPUT_SIZE,
    )?;
    // pools (BufferPool, ObjectPool)
    m.add_class::<buffer_pool::PyBufferPool>()?;
    m.add_class::<buffer_pool::PyPooledBuffer>()?;
    m.add_class::<object_pool::PyObjectPool>()?;
    m.add_class::<object_pool::PyPooledObject>()?;
    // balancing
    m.add_class::<balancer::PyBalancer>()?;
    m.add_class::<balancer::PyPick>()?;
    m.add_class::<worker_pool::PyWorkerPool>()?;
    m.add_class::<worker_pool::PyTaskHandle>()?;
    m.add_class::<router::PyShardRouter>()?;
    // open-loop pacing (LoadRunner)
    m.add_class::<pacer::PyPacer>()?;
    // batcher
    m.add_class::<aio_future::PyBatchFuture>()?;
    m.add_class::<batcher::PyBatchQueue>()?;
    m.add_class::<batcher::PyBatchReceiver>()?;
    m.add_class::<batch::PyBatch>()?;
    m.add_function(wrap_pyfunction!(batch_futures::settle, m)?)?;
    m.add_function(wrap_pyfunction!(batch_futures::forget_running_loop, m)?)?;
    m.add_class::<message_batcher::PyMessageQueue>()?;
    m.add_class::<message_batcher::PyMessageReceiver>()?;
    m.add_function(wrap_pyfunction!(message_batcher::encode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(message_batcher::decode_batch, m)?)?;
    // telemetry (LatencyHistogram)
    m.add_class::<histogram::PyLatencyHistogram>()?;
    m.add_class::<histogram::PyTimer>()?;
    // caches
    m.add_class::<memory_tier::PyMemoryTier>()?;
    memory_tier::install_fast_get(m.py())?;
    gil_lock::install_fork_handler();
    m.add_class::<cached_hit::PyCachedHit>()?;
    m.add_class::<breaker::PyBreakerCore>()?;
    Ok(())
}
