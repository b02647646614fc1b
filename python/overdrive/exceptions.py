"""Exceptions raised by overdrive.

Every class subclasses :class:`OverdriveError` *and* the builtin that fits, so
``except ValueError`` (or ``TypeError``, ``TimeoutError``) keeps working.
Messages name the parameter and the bad value.
"""

from __future__ import annotations

__all__ = [
    # batcher
    "BatchResultError",
    "BatcherClosed",
    "DeadlineExceeded",
    "FrameError",
    "NoRunningEventLoop",
    "QueueFull",
    "CompressionError",
    "ConfigurationError",
    "DecompressionError",
    "DictionaryError",
    "InputTypeError",
    "NoBackendAvailable",
    "OutputLimitExceeded",
    "OverdriveError",
    # pools (BufferPool, ObjectPool)
    "BufferExportedError",
    "PoolExhausted",
    "ReleasedError",
    # caches
    "CacheDataError",
    "CacheUnavailable",
    "ReentrantCallError",
    "SerializationError",
    "WorkerPoolShutdown",
    "WorkerQueueFull",
    "WorkerStartError",
]


class OverdriveError(Exception):
    """Base class of every overdrive exception."""


class ConfigurationError(OverdriveError, ValueError):
    """A parameter is out of its valid range; the message names it and its value."""


class InputTypeError(OverdriveError, TypeError):
    """An argument has the wrong type (e.g. ``str`` where a buffer is needed)."""


class CompressionError(OverdriveError, ValueError):
    """zstd could not compress the input."""


class DecompressionError(CompressionError):
    """The input is not a valid, complete zstd frame or envelope."""


class OutputLimitExceeded(DecompressionError):
    """Decompressing would produce more than ``max_output_size`` bytes (bomb guard)."""


class DictionaryError(CompressionError):
    """Dictionary training failed (too few or too uniform samples)."""


# --- pools (BufferPool, ObjectPool) -------------------------------------------


class PoolExhausted(OverdriveError, TimeoutError):
    """Every one of a pool's ``max_size`` items is out and none came back within
    ``timeout`` (or at once with ``block=False``)."""


class BufferExportedError(OverdriveError, BufferError):
    """``release()`` while a memoryview / numpy array of the pooled buffer is
    alive; release those exports first (no use-after-release, ever)."""


class ReleasedError(OverdriveError, ValueError):
    """The pooled buffer or object was already released (double release, or
    use after release)."""


# --- balancing (Balancer, WorkerPool, ShardRouter) ---


class NoBackendAvailable(OverdriveError, RuntimeError):
    """Every backend of a Balancer is down, ejected or removed."""


class WorkerQueueFull(OverdriveError, RuntimeError):
    """A WorkerPool's bounded queue is full and the caller chose not to wait (longer)."""


class WorkerPoolShutdown(OverdriveError, RuntimeError):
    """The WorkerPool is shut down: no new tasks (a RuntimeError, as ThreadPoolExecutor's)."""


class WorkerStartError(OverdriveError, RuntimeError):
    """No worker thread runs and the system refused to start one (thread or
    memory limits): the task was not queued (a RuntimeError, as
    ThreadPoolExecutor's "can't start new thread")."""


# --- batcher -----------------------------------------------------------------


class QueueFull(OverdriveError, RuntimeError):
    """A batcher's queue is full: ``on_full="reject"``, a ``block`` that timed
    out, or the item was evicted by ``on_full="drop_oldest"``."""


class BatcherClosed(OverdriveError, RuntimeError):
    """The batcher is closed: ``submit``/``put`` after ``close()``."""


class DeadlineExceeded(OverdriveError, TimeoutError):
    """The item's ``deadline_ms`` passed (or was predicted to pass) before it ran;
    it never reached the handler."""


class BatchResultError(OverdriveError, ValueError):
    """The batch handler returned a result that does not match its input
    (not a list, or the wrong number of results)."""


class FrameError(OverdriveError, ValueError):
    """Bytes given to ``decode_batch`` are not a valid message batch frame."""


class NoRunningEventLoop(OverdriveError, RuntimeError):
    """``submit_async`` was called outside a running asyncio event loop (a
    RuntimeError, as asyncio's own "no running event loop")."""


# --- caches ------------------------------------------------------------------


class SerializationError(OverdriveError, TypeError):
    """A cache value (or key) cannot be serialised by the tier's serializer:
    its type is not one the serializer supports (the message names it)."""


class CacheDataError(OverdriveError, ValueError):
    """Bytes read from a shared store (Redis, the disk file) are not a valid
    entry: corrupt, truncated, from another serializer, or a pickle whose HMAC
    signature does not verify. Nothing in them was executed."""


class CacheUnavailable(OverdriveError, ConnectionError):
    """A cache backend (Redis, the disk file) failed or timed out and the tier
    was created with ``strict=True``; non-strict tiers count the error and
    treat the call as a miss (get) or skip it (set)."""


class ReentrantCallError(OverdriveError, RuntimeError):
    """A key's ``__eq__`` called back into the same :class:`MemoryTier` while
    the tier was comparing keys under its lock (the call would deadlock)."""
