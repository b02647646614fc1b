"""overdrive: Rust-accelerated wrappers that make Python services faster
without changing what they compute.

See README.md for a tour. Public names are re-exported here; submodules
(``overdrive.compression``, ``overdrive.bench``, ...) hold the details.
"""

from __future__ import annotations

from typing import Any

from . import exceptions
from ._core import __version__
from ._core import build_info as _build_info
from .balancing import Balancer, ShardRouter
from .batcher import Batcher, batched
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
    CompressionError,
    ConfigurationError,
    DeadlineExceeded,
    DecompressionError,
    DictionaryError,
    FrameError,
    InputTypeError,
    NoBackendAvailable,
    OutputLimitExceeded,
    OverdriveError,
    QueueFull,
    WorkerPoolShutdown,
    WorkerQueueFull,
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
    "ShardRouter",
    "WorkerPool",
    "WorkerPoolShutdown",
    "WorkerQueueFull",
]
