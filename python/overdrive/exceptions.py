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
    # resilience (CircuitBreaker, ConcurrencyLimiter, RateLimiter)
    "CircuitOpen",
    "LimitExceeded",
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


# --- resilience (CircuitBreaker, ConcurrencyLimiter, RateLimiter) --------------


class CircuitOpen(OverdriveError, RuntimeError):
    """A circuit breaker refused the call: it is open (or half-open with every
    probe slot taken). ``name`` is the breaker's name and ``retry_after`` the
    seconds until it will admit a call again (``inf`` after ``force_open()``,
    ``0.0`` when half-open probes are all in flight).

    Built as ``CircuitOpen(name, retry_after)``; the message is formatted only
    when shown, so a rejection stays cheap.
    """

    @property
    def name(self) -> str:
        """The breaker's name."""
        return str(self.args[0]) if self.args else ""

    @property
    def retry_after(self) -> float:
        """Seconds until the breaker admits a call again."""
        return float(self.args[1]) if len(self.args) > 1 else 0.0

    def __str__(self) -> str:
        return f"circuit breaker {self.name!r} is open; retry after {self.retry_after:.3f} s"


class LimitExceeded(OverdriveError, RuntimeError):
    """A ConcurrencyLimiter or RateLimiter refused work: the queue is full, the
    wait timed out, queued work was shed (CoDel), or a rate limit leaves no
    room within the timeout. ``retry_after`` is the seconds until a retry can
    succeed when the limiter knows it (rate limits), else ``None``; ``name`` is
    the limiter's name.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, name: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.name = name

    def __reduce__(self) -> tuple[object, ...]:
        return (_limit_exceeded, (str(self), self.retry_after, self.name))


def _limit_exceeded(message: str, retry_after: float | None, name: str) -> LimitExceeded:
    return LimitExceeded(message, retry_after=retry_after, name=name)
