"""overdrive: Rust-accelerated wrappers that make Python services faster
without changing what they compute.

Every public name is re-exported here (``import overdrive as od``); the
submodules named hold the details:

- compression: :func:`compress`, :func:`decompress`, :class:`Compressor`,
  :func:`train_dictionary` (``overdrive.compression``);
- batching: :class:`Batcher`, :func:`batched` (``overdrive.batcher``) and
  :class:`MessageBatcher`, :func:`encode_batch`, :func:`decode_batch`
  (``overdrive.message_batcher``); ``overdrive.batching`` re-exports both;
- pools: :class:`BufferPool`, :class:`ObjectPool`, :func:`acquire_async`
  (``overdrive.pools``);
- balancing: :class:`Balancer`, :class:`ShardRouter` (``overdrive.balancing``)
  and :class:`WorkerPool` (``overdrive.worker_pool``);
- resilience: ``CircuitBreaker``, ``ConcurrencyLimiter``, ``RateLimiter``
  (import them from ``overdrive.resilience``);
- errors: every exception class, in ``overdrive.exceptions`` and here.

Every component has ``stats()`` and registers itself (weakly) with
``overdrive.telemetry``, which exports them all to Prometheus.
``overdrive.bench`` and the ``overdrive`` command are the benchmark harness.
README.md has a quick start per component; docs/architecture.md says how
each one works inside.
"""

from __future__ import annotations

from typing import Any

from . import exceptions, telemetry
from ._core import __version__
from ._core import build_info as _build_info
from .balancing import Balancer, ShardRouter
from .batcher import Batcher, BatchFuture, batched
from .compression import (
    DEFAULT_MAX_OUTPUT_SIZE,
    Compressor,
    compress,
    decompress,
    train_dictionary,
)
from .exceptions import (
    BatcherClosed,
    BatchResultError,
    CacheDataError,
    CacheUnavailable,
    CircuitOpen,
    CompressionError,
    ConfigurationError,
    DeadlineExceeded,
    DecompressionError,
    DictionaryError,
    FrameError,
    InputTypeError,
    LimitExceeded,
    NoBackendAvailable,
    NoRunningEventLoop,
    OutputLimitExceeded,
    OverdriveError,
    QueueFull,
    ReentrantCallError,
    SerializationError,
    WorkerPoolShutdown,
    WorkerQueueFull,
    WorkerStartError,
)
from .message_batcher import MessageBatcher, decode_batch, encode_batch
from .pools import (
    BufferExportedError,
    BufferPool,
    ObjectPool,
    PooledBuffer,
    PooledObject,
    PoolExhausted,
    ReleasedError,
    acquire_async,
)
from .worker_pool import WorkerPool


def build_info() -> dict[str, Any]:
    """Facts about the native build: version, profile (release/debug), rustc,
    features and the zstd version, so a benchmark report can prove what it ran.
    """
    return dict(_build_info())


__all__ = [
    # batcher
    "BatchResultError",
    "BatchFuture",
    "Batcher",
    "BatcherClosed",
    "DeadlineExceeded",
    "FrameError",
    "MessageBatcher",
    "QueueFull",
    "batched",
    "decode_batch",
    "encode_batch",
    "DEFAULT_MAX_OUTPUT_SIZE",
    "CompressionError",
    "Compressor",
    "ConfigurationError",
    "DecompressionError",
    "DictionaryError",
    "InputTypeError",
    "OutputLimitExceeded",
    "OverdriveError",
    "__version__",
    "build_info",
    "compress",
    "decompress",
    "exceptions",
    "telemetry",
    "train_dictionary",
    # pools (BufferPool, ObjectPool)
    "BufferExportedError",
    "BufferPool",
    "ObjectPool",
    "PoolExhausted",
    "PooledBuffer",
    "PooledObject",
    "ReleasedError",
    "acquire_async",
    # balancing
    "Balancer",
    "NoBackendAvailable",
    "NoRunningEventLoop",
    "ShardRouter",
    "WorkerPool",
    "WorkerPoolShutdown",
    "WorkerQueueFull",
    "WorkerStartError",
    # resilience (overdrive.resilience)
    "CacheDataError",
    "CacheUnavailable",
    "CircuitOpen",
    "ReentrantCallError",
    "SerializationError",
    "LimitExceeded",
]
