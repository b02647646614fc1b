"""Type stubs for the native module ``overdrive._core`` (kept honest by stubtest)."""

import asyncio
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextvars import Context
from typing import Any, Generic, Literal, ParamSpec, TypedDict, TypeVar, final, overload

from typing_extensions import Buffer, disjoint_base

__version__: str
DEFAULT_MAX_OUTPUT_SIZE: int

def build_info() -> dict[str, Any]:
    """Version, build profile, rustc, features and zstd version of this build."""

# --- stats() return types ----------------------------------------------------
# For type checkers only: these TypedDicts do not exist at run time (stats()
# returns a plain dict), so import them under ``if TYPE_CHECKING:``.
# tests/test_stats_types.py checks every key against what the binding returns.

_Strategy = Literal["load_score", "least_outstanding", "p2c", "round_robin"]
_BackendState = Literal["up", "down", "ejected", "probing", "removed"]

class CompressorStats(TypedDict):
    """``Compressor.stats()``: counters since the Compressor was made."""

    compress_calls: int
    decompress_calls: int
    bytes_in: int
    bytes_out: int
    ratio: float  # bytes_in / bytes_out (0.0 before any output)
    raw_packed: int  # pack() calls stored raw (below threshold or incompressible)
    errors: int

class PoolStats(TypedDict):
    """What ``BufferPoolStats`` and ``ObjectPoolStats`` share."""

    hits: int
    misses: int
    hit_ratio: float
    in_use: int
    idle: int
    high_water: int
    exhausted: int
    waiters: int

class BufferPoolStats(PoolStats):
    """``BufferPool.stats()``."""

    bytes_allocated: int
    capacity: int  # the auto-sizing target, between min_size and max_size
    grows: int
    shrinks: int
    freed: int
    buffer_size: int

class ObjectPoolStats(PoolStats):
    """``ObjectPool.stats()`` (idle objects past ``max_idle_s`` are evicted first)."""

    created: int
    discarded: int
    evicted: int

class BackendStats(TypedDict):
    """One entry of ``BalancerStats["backends"]``."""

    index: int
    state: _BackendState
    weight: float
    in_flight: int
    picks: int
    completed: int
    errors: int
    ejections: int
    ewma_latency_s: float | None  # None until a latency was reported
    error_rate: float
    queue_utilisation: float | None  # None until report_queue()

class BalancerStats(TypedDict):
    """``Balancer.stats()``: totals, and every backend ever added (removed ones too)."""

    strategy: _Strategy
    picks: int
    in_flight: int
    errors: int
    no_backend: int  # picks that found no backend (NoBackendAvailable)
    backends: list[BackendStats]

class ScalingEvent(TypedDict):
    """One entry of ``WorkerPoolStats["scaling_events"]`` (the last 64 are kept)."""

    at_s: float  # seconds since the pool was made
    delta: int  # +1 a worker added, -1 one retired
    workers: int  # workers after the event
    reason: str  # "demand", "queue depth", "utilisation" or "low utilisation"

class WorkerPoolStats(TypedDict):
    """``WorkerPoolCore.stats()``, which ``WorkerPool.stats()`` returns."""

    workers: int
    min_workers: int
    max_workers: int
    busy: int
    idle: int
    queued: int
    queue_high_water: int
    max_queue: int  # 0: unbounded
    submitted: int
    completed: int
    cancelled: int
    rejected: int
    scale_ups: int
    scale_downs: int
    scaling_events: list[ScalingEvent]
    shutdown: bool

class NodeStats(TypedDict):
    """One entry of ``ShardRouterStats["nodes"]``."""

    node: Any  # the node object as given
    weight: float
    alive: bool
    load: int
    routes: int
    cap: int  # the current load bound

class ShardRouterStats(TypedDict):
    """``ShardRouter.stats()``."""

    routes: int
    overflows: int  # routes that skipped a full node
    load: int  # requests routed and not yet released, over all nodes
    load_factor: float
    nodes: list[NodeStats]  # every node ever added (removed ones: alive False)

class LatencyPercentiles(TypedDict):
    """Seconds, from a small histogram; 0.0 while ``count`` is 0."""

    p50: float
    p90: float
    p99: float
    count: int

class FlushReasons(TypedDict):
    """Batches formed, by what triggered them."""

    size: int
    time: int
    weight: int
    idle: int
    flush: int
    close: int

class BatchModel(TypedDict):
    """The adaptive model: handler time ~ ``a_s + b_s_per_item * n``."""

    a_s: float
    b_s_per_item: float
    batch_size: int
    aimd_cap: int

class QueueStats(TypedDict):
    """``BatchQueue.stats()`` and ``MessageQueue.stats()`` (one builder serves both).

    ``Batcher.stats()`` adds ``name``, ``closed`` and ``handler``;
    ``MessageBatcher.stats()`` adds ``frames``, ``bytes_out``, ``retries``,
    ``given_up``, ``name`` and ``closed``.
    """

    submitted: int
    completed: int
    failed: int
    expired: int
    rejected: int
    dropped: int
    cancelled: int
    batches: int
    mean_batch_size: float
    batch_sizes: dict[str, int]  # batches per size bucket ("1", "2-3", "4-7", ...)
    flush_reasons: FlushReasons
    queue_wait_s: LatencyPercentiles
    handler_time_s: LatencyPercentiles
    queue_depth: int
    in_flight: int
    lanes: int  # per-key lanes holding items now
    model: BatchModel

class BatchQueueStats(QueueStats):
    """``BatchQueue.stats()``: QueueStats and ``keys``, the key objects held now."""

    keys: int

class LatencyHistogramStats(TypedDict):
    """``LatencyHistogram.stats()`` (and ``snapshot()``): seconds, 0.0 while ``count`` is 0."""

    name: str
    count: int
    sum: float
    mean: float
    min: float
    max: float
    overflow: int  # values above max_seconds (kept in the top bucket)
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float

class MemoryTierStats(TypedDict):
    """``MemoryTier.stats()``: counters since the tier was made (``clear()`` keeps them)."""

    hits: int
    misses: int  # absent or expired
    sets: int  # writes, rejected ones included
    deletes: int  # delete(), del, invalidate_tag()
    evictions: int  # removed by the max_bytes / max_entries bound
    expirations: int  # removed because their TTL passed
    rejected: int  # writes heavier than max_bytes, not stored
    entries: int  # held now (expired ones not yet cleaned up included)
    bytes: int  # total weight held now
    max_bytes: int | None
    max_entries: int | None
    policy: Literal["tinylfu", "lru"]
    errors: int  # always 0: a memory tier has no backend to fail

# --- compression -----------------------------------------------------------

def compress(data: Buffer, level: int = 3) -> bytes:
    """Compress ``data`` into one standard zstd frame.

    Raises ConfigurationError (a ValueError) for a level outside zstd's range,
    InputTypeError (a TypeError) for a non-buffer or non-contiguous input.
    """

def decompress(data: Buffer, max_output_size: int = 268435456) -> bytes:
    """Decompress one or more zstd frames.

    Raises OutputLimitExceeded (a DecompressionError) when the output would
    exceed ``max_output_size``, before allocating it; DecompressionError for
    corrupt or truncated input.
    """

def _set_telemetry_hook(hook: Callable[[object, str], object]) -> None:
    """Install ``hook(obj, component)``, called by each new Compressor,
    BufferPool, ObjectPool, Balancer and ShardRouter (the first call wins)."""

def train_dictionary(samples: Iterable[Buffer], size: int = 16384) -> bytes:
    """Train a zstd dictionary of at most ``size`` bytes from sample messages."""

@final
class Compressor:
    """zstd at a fixed level with an optional dictionary, an envelope and counters.

    Thread-safe: each thread uses its own zstd contexts; a dictionary is digested once.
    """

    def __new__(
        cls,
        level: int = 3,
        threshold: int = 1024,
        dictionary: Buffer | None = None,
        max_output_size: int = 268435456,
    ) -> Compressor: ...
    @property
    def level(self) -> int:
        """The zstd level."""
    @property
    def threshold(self) -> int:
        """Inputs shorter than this many bytes are packed raw."""
    @property
    def max_output_size(self) -> int:
        """The cap on decompressed output, in bytes."""
    @property
    def dictionary_id(self) -> int | None:
        """The dictionary id written into envelopes, or None."""
    def compress(self, data: Buffer) -> bytes:
        """One zstd frame (made with the dictionary, if any)."""
    def decompress(self, data: Buffer) -> bytes:
        """The bytes of zstd frames, under ``max_output_size``."""
    def pack(self, data: Buffer) -> bytes:
        """Wrap ``data`` in the envelope: raw below ``threshold``, zstd above."""
    def unpack(self, blob: Buffer) -> bytes:
        """The original bytes of a blob made by ``pack``."""
    def compress_many(self, items: Iterable[Buffer]) -> list[bytes]:
        """One zstd frame per item; releases the GIL and uses every core for large batches."""
    def decompress_many(self, blobs: Iterable[Buffer]) -> list[bytes]:
        """The bytes of every frame; parallel for large batches."""
    def stats(self) -> CompressorStats:
        """Counters: calls, bytes in/out, ratio, raw packs, errors."""

# --- pools (BufferPool, ObjectPool) -----------------------------------------

@final
class BufferPool:
    """Fixed-size, 64-byte aligned buffers recycled through a lock-free free list.

    Thread-safe. Keeps between ``min_size`` and ``max_size`` buffers (grows 25%
    above 80% utilisation, shrinks 12% after a ``window_s`` window below 25%).
    """

    def __new__(
        cls,
        buffer_size: int = 65536,
        min_size: int = 8,
        max_size: int = 1024,
        zero_on_release: bool = False,
        window_s: float = 1.0,
    ) -> BufferPool: ...
    def acquire(self, timeout: float | None = None, block: bool = True) -> PooledBuffer:
        """A buffer; waits up to ``timeout`` s (None: forever) when all are out,
        or raises at once with ``block=False``: PoolExhausted (a TimeoutError)."""
    def try_acquire(self) -> PooledBuffer | None:
        """A buffer now, or None when all are out (never waits, not counted as exhausted)."""
    def trim(self, keep: int | None = None) -> int:
        """Free idle buffers now, keeping ``keep`` (default ``min_size``); bytes freed."""
    @property
    def buffer_size(self) -> int:
        """Bytes per buffer."""
    @property
    def min_size(self) -> int:
        """Buffers kept even when idle."""
    @property
    def max_size(self) -> int:
        """Most buffers in existence; acquire waits when all are out."""
    @property
    def zero_on_release(self) -> bool:
        """Whether buffers are wiped when released."""
    @property
    def window_s(self) -> float:
        """Length of the auto-sizing window in seconds."""
    def stats(self) -> BufferPoolStats:
        """hits, misses, hit_ratio, in_use, idle, high_water, bytes_allocated,
        capacity, grows, shrinks, freed, exhausted, waiters, buffer_size."""

@final
class PooledBuffer:
    """One buffer lent by a BufferPool: a writable buffer (memoryview, numpy,
    readinto, recv_into) and a context manager that releases it."""

    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def release(self) -> None:
        """Give the buffer back. BufferExportedError (a BufferError) while an
        export is alive; ReleasedError (a ValueError) if already released."""
    @property
    def released(self) -> bool:
        """True once released."""
    @property
    def exports(self) -> int:
        """Live exports (memoryviews, numpy arrays) of this buffer."""
    @property
    def nbytes(self) -> int:
        """Size in bytes."""
    def __len__(self) -> int: ...
    def __enter__(self) -> PooledBuffer: ...
    def __exit__(
        self, _exc_type: object = None, _exc: object = None, _tb: object = None
    ) -> bool: ...

@final
class ObjectPool(Generic[_T]):
    """Expensive Python objects from ``factory()``, reset on release, validated
    on borrow, evicted after ``max_idle_s`` idle. Thread-safe; no callback runs
    under a pool lock."""

    def __new__(
        cls,
        factory: Callable[[], _T],
        reset: Callable[[_T], object] | None = None,
        validate: Callable[[_T], object] | None = None,
        min_size: int = 0,
        max_size: int = 64,
        max_idle_s: float | None = None,
    ) -> ObjectPool[_T]: ...
    def acquire(self, timeout: float | None = None, block: bool = True) -> PooledObject[_T]:
        """Borrow an object (validated idle one, or a new one); PoolExhausted
        (a TimeoutError) when all are out past ``timeout`` or with ``block=False``."""
    def try_acquire(self) -> PooledObject[_T] | None:
        """An object now, or None when all are out (never waits, not counted as exhausted)."""
    def trim(self, keep: int | None = None) -> int:
        """Drop idle objects beyond ``keep`` (default ``min_size``); how many."""
    @property
    def min_size(self) -> int:
        """Objects kept even when idle."""
    @property
    def max_size(self) -> int:
        """Most objects in existence; acquire waits when all are out."""
    @property
    def max_idle_s(self) -> float | None:
        """Idle objects older than this are evicted (None: never)."""
    def stats(self) -> ObjectPoolStats:
        """hits, misses, hit_ratio, in_use, idle, high_water, created, discarded,
        evicted, exhausted, waiters."""

@final
class PooledObject(Generic[_T]):
    """One object lent by an ObjectPool; ``with`` yields the object itself."""

    @property
    def value(self) -> _T:
        """The borrowed object (ReleasedError once released)."""
    @property
    def released(self) -> bool:
        """True once released."""
    def release(self) -> None:
        """Give the object back (``reset`` runs first); ReleasedError if already released."""
    def __enter__(self) -> _T: ...
    def __exit__(
        self, _exc_type: object = None, _exc: object = None, _tb: object = None
    ) -> bool: ...

# --- balancing (Balancer, Pick) ----------------------------------------------

@final
class Balancer:
    """Chooses among N backends (returns indices) and counts requests in flight.

    Strategies: "load_score" (lowest ``load_weight * in_flight/weight +
    queue_weight * queue utilisation``; ties go to the lower EWMA latency),
    "least_outstanding" (exact join-the-shortest-queue), "p2c" (power of two
    choices) and "round_robin". With unequal weights, least_outstanding and p2c
    compare Envoy's ``(active + 1) ** active_request_bias / weight``.
    Thread-safe and lock-free: acquire/release are atomics.
    """

    def __new__(
        cls,
        backends: int | Iterable[float] | None = None,
        strategy: str = "load_score",
        *,
        n_backends: int | None = None,
        weights: Iterable[float] | None = None,
        load_weight: float = 0.7,
        queue_weight: float = 0.3,
        max_in_flight: int = 100,
        active_request_bias: float = 1.0,
        ewma_alpha: float = 0.2,
        eject_error_rate: float = 0.5,
        eject_min_requests: int = 5,
        cooldown_s: float = 10.0,
        max_ejected_fraction: float = 0.5,
    ) -> Balancer: ...
    @property
    def strategy(self) -> str:
        """The strategy's name."""
    def acquire(self) -> int:
        """Pick a backend and count one request in flight on it (NoBackendAvailable if none)."""
    def release(self, index: int, latency_s: float | None = None, ok: bool = True) -> None:
        """End a request on ``index``: update its latency and error-rate EWMAs."""
    def pick(self) -> Pick:
        """``with lb.pick() as i:`` acquires on entry, releases on exit with the latency."""
    def add(self, weight: float = 1.0) -> int:
        """Add a backend; returns its index."""
    def remove(self, index: int) -> None:
        """Remove a backend for good (indices are never reused)."""
    def mark_down(self, index: int) -> None:
        """Stop picking a backend until ``mark_up``."""
    def mark_up(self, index: int) -> None:
        """Pick a backend again (also ends an ejection early)."""
    def set_weight(self, index: int, weight: float) -> None:
        """Change a backend's weight."""
    def report_queue(self, index: int, utilisation: float) -> None:
        """Record a backend's own queue utilisation (0..1), used by load_score."""
    def in_flight(self, index: int) -> int:
        """Requests in flight on ``index``."""
    def state(self, index: int) -> str:
        """The backend's state: up, down, ejected, probing or removed."""
    def __len__(self) -> int: ...
    def stats(self) -> BalancerStats:
        """Totals, and per backend: in_flight, picks, EWMA latency, errors, state."""

@final
class Pick:
    """The context manager returned by ``Balancer.pick()``."""

    def __enter__(self) -> int: ...
    def __exit__(
        self, exc_type: object = None, _exc: object = None, _tb: object = None
    ) -> bool: ...
    @property
    def index(self) -> int | None:
        """The backend index while entered, else None."""

# --- worker pool (facade: overdrive.worker_pool.WorkerPool) ------------------

@final
class WorkerPoolCore:
    """The native half of ``overdrive.WorkerPool`` (use that class)."""

    def __new__(
        cls,
        min_workers: int,
        max_workers: int,
        *,
        max_queue: int = 0,
        aging_s: float | None = None,
        scale_up_depth: int = 10,
        scale_up_util: float = 0.8,
        scale_down_util: float = 0.3,
        scale_down_window_s: float = 10.0,
        name: str = "overdrive-worker",
    ) -> WorkerPoolCore: ...
    def submit(
        self,
        future: Any,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
        priority: int = 0,
        block: bool = True,
        timeout: float | None = None,
    ) -> TaskHandle:
        """Queue ``func(*args, **kwargs)`` to resolve ``future``; the handle can run it inline."""
    def shutdown(self, cancel: bool) -> list[Any]:
        """Stop accepting tasks; with ``cancel`` return the unstarted tasks' futures."""
    def join(self, timeout: float | None = None) -> bool:
        """Wait (GIL released) for every worker to exit; False on timeout."""
    @property
    def is_shutdown(self) -> bool:
        """Whether shutdown has begun."""
    @property
    def bounds(self) -> tuple[int, int]:
        """(min_workers, max_workers)."""
    def stats(self) -> WorkerPoolStats:
        """Workers, busy/idle, queue depth, task counts, scaling events."""

@final
class TaskHandle:
    """A queued WorkerPool task, so a thread waiting on its future can run it itself."""

    def run_inline(self) -> bool:
        """Run the task on this thread unless a worker took it; True if it ran here."""

# --- shard router --------------------------------------------------------------

@final
class ShardRouter:
    """Consistent hashing with bounded loads (fixed hash: same routes in every process)."""

    def __new__(
        cls,
        nodes: Iterable[str | bytes | int] | dict[Any, float],
        load_factor: float = 1.25,
        *,
        vnodes: int = 160,
    ) -> ShardRouter: ...
    @property
    def load_factor(self) -> float:
        """No node carries more than this times its fair share."""
    @property
    def nodes(self) -> list[Any]:
        """The live nodes, in the order they were added."""
    def route(self, key: str | bytes | int) -> Any:
        """The node for ``key`` under the load bound (counted until ``release``)."""
    def route_many(self, keys: Iterable[str | bytes | int]) -> list[Any]:
        """``route`` for every key, in one call."""
    def lookup(self, key: str | bytes | int) -> Any:
        """The node ``key`` hashes to, ignoring loads."""
    def release(self, node: str | bytes | int) -> None:
        """A request routed to ``node`` finished: lower its load by one."""
    def add_node(self, node: str | bytes | int, weight: float = 1.0) -> None:
        """Add a node; about 1/N of keys move to it."""
    def remove_node(self, node: str | bytes | int) -> None:
        """Take a node off the ring; its keys move to their next nodes."""
    def reset_loads(self) -> None:
        """Forget all loads."""
    def stats(self) -> ShardRouterStats:
        """Totals and per-node load, routes, weight and bound."""
    def __len__(self) -> int: ...

# --- batcher ---------------------------------------------------------------

_T = TypeVar("_T")

@final
class BatchFuture(Generic[_T]):
    """The outcome of one batch item (what ``Batcher.submit_async`` returns).

    Speaks asyncio's future protocol, so tasks await it and gather, wait,
    wait_for, shield and as_completed take it like an ``asyncio.Future``. A
    batch's futures are settled by one loop callback that runs the awaiting
    tasks' wake-ups directly (no per-item ``call_soon``).
    """

    def __new__(cls, *, loop: asyncio.AbstractEventLoop | None = None) -> BatchFuture[_T]: ...
    @property
    def _asyncio_future_blocking(self) -> bool: ...
    @_asyncio_future_blocking.setter
    def _asyncio_future_blocking(self, value: bool) -> None: ...
    @property
    def _cancel_message(self) -> Any: ...
    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this future belongs to."""
    def done(self) -> bool:
        """True once settled or cancelled."""
    def cancelled(self) -> bool:
        """True if cancelled."""
    def result(self) -> _T:
        """The result; raises the item's exception, CancelledError or InvalidStateError."""
    def exception(self) -> BaseException | None:
        """The item's exception or None; raises CancelledError or InvalidStateError."""
    def add_done_callback(
        self, fn: Callable[[BatchFuture[_T]], object], *, context: Context | None = None
    ) -> None:
        """Call ``fn(future)`` once done, in ``context`` (default: a copy of the current)."""
    def remove_done_callback(self, fn: Callable[[BatchFuture[_T]], object]) -> int:
        """Remove every registration of ``fn``; the number removed."""
    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel (False if already done); callbacks are scheduled."""
    def set_result(self, result: _T) -> None:
        """Set the result (InvalidStateError if done)."""
    def set_exception(self, exception: type[BaseException] | BaseException) -> None:
        """Set an exception (InvalidStateError if done)."""
    def _make_cancelled_error(self) -> asyncio.CancelledError: ...
    def __await__(self) -> Generator[Any, None, _T]: ...
    def __iter__(self) -> Generator[Any, None, _T]: ...
    def __next__(self) -> BatchFuture[_T]: ...

_Next = tuple[list[Any], Batch | None, str, float | None]

@final
class BatchQueue:
    """The producers' handle of a Batcher's queue (thread-safe): submitting,
    flushing, closing, stats. The dispatcher takes batches through a
    :class:`BatchReceiver` of the same queue.

    Items and futures are opaque Python objects; overdrive.batcher calls the
    handler and resolves the futures. When the last reference to this handle
    goes, the queue closes (as by close()); what it holds still drains.
    """

    def __new__(
        cls,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 10000,
        on_full: str = "block",
        max_batch_weight: int | None = None,
        max_concurrency: int = 1,
        adaptive: bool = False,
        latency_target_ms: float | None = None,
        aging_ms: float = 100.0,
        admission: bool = False,
        weigher: Any | None = None,
        block_timeout: float | None = None,
    ) -> BatchQueue: ...
    def submit(
        self, item: Any, priority: int = 0, deadline_ms: float | None = None, key: Any = None
    ) -> Any:
        """Queue ``item``; a concurrent.futures.Future (blocks, GIL released, when full)."""
    def submit_async(
        self,
        item: Any,
        priority: int = 0,
        deadline_ms: float | None = None,
        key: Any = None,
        *,
        wait: bool = True,
    ) -> Any:
        """Queue ``item`` from a coroutine; a BatchFuture of the running loop (or, for a
        full ``block`` queue, the facade's task that waits for room; ``wait=False``: QueueFull)."""
    def set_hooks(
        self, foreign: Any | None = None, full: Any | None = None, dropped: Any | None = None
    ) -> None:
        """The facade's callbacks (see overdrive.batcher)."""
    def receiver(self) -> BatchReceiver:
        """The dispatcher's handle of this queue."""
    def flush(self) -> None:
        """Force out everything queued so far."""
    def close(self) -> None:
        """Stop accepting; queued items still drain."""
    @property
    def closed(self) -> bool:
        """True once close() was called."""
    @property
    def in_flight(self) -> int:
        """Batches running now."""
    def __len__(self) -> int: ...
    def stats(self) -> BatchQueueStats:
        """Counters, percentiles, flush reasons, queue depth, lanes, keys, adaptive model."""

@final
class BatchReceiver:
    """The dispatcher's handle of a Batcher's queue (from BatchQueue.receiver())."""

    def set_dispatch_loop(self, event_loop: Any | None) -> None:
        """The event loop the async dispatcher runs on."""
    def arm(self, waiter: Any) -> None:
        """The async dispatcher sleeps on ``waiter``; the next push sets it."""
    def wake(self) -> None:
        """Set the armed waiter now, if any."""
    def next(self, timeout: float | None = None) -> _Next | None:
        """Block (GIL released) for (items, Batch, reason, None); None once closed and drained."""
    def poll(self) -> _Next | None:
        """Non-blocking; with nothing due the last field is seconds to wait (-1: until woken)."""
    def close(self) -> None:
        """Stop accepting; queued items still drain."""
    @property
    def outstanding(self) -> int:
        """Items queued or in a running batch (neither finished nor failed)."""

@final
class MessageQueue:
    """The producers' handle of a MessageBatcher's queue and framing (thread-safe).
    When the last reference to it goes, the queue closes; what it holds is
    still delivered through the :class:`MessageReceiver`."""

    def __new__(
        cls,
        max_batch_size: int = 50,
        max_wait_ms: float = 10.0,
        max_queue: int = 100000,
        on_full: str = "block",
        compress_threshold: int = 1024,
        level: int = -1,
        max_batch_bytes: int | None = None,
        max_pending_frames: int = 1024,
        block_timeout: float | None = None,
    ) -> MessageQueue: ...
    def put(self, message: Buffer, timeout: float | None = None) -> bytes | None:
        """Queue a copy (timeout None: the block_timeout given at construction);
        returns a message evicted by drop_oldest, or None."""
    def receiver(self) -> MessageReceiver:
        """The sink dispatcher's handle of this queue."""
    def flush(self) -> None:
        """Force out everything queued so far."""
    def close(self) -> None:
        """Stop accepting; queued messages still drain."""
    @property
    def closed(self) -> bool:
        """True once close() was called."""
    @property
    def compress_threshold(self) -> int:
        """Bodies longer than this many bytes are zstd-compressed."""
    def __len__(self) -> int: ...
    def stats(self) -> QueueStats:
        """Counters, percentiles, flush reasons, queue depth (``model`` is unused here)."""

@final
class MessageReceiver:
    """The sink dispatcher's handle of a MessageBatcher's queue."""

    def next_frames(
        self, timeout: float | None = None, max_frames: int = 64
    ) -> list[tuple[bytes, int, str]] | None:
        """Block (GIL released) for [(frame, count, reason)]; None once closed and drained."""
    def done(self, n: int, ok: bool) -> None:
        """A frame of ``n`` messages was delivered (ok) or given up on."""
    def close(self) -> None:
        """Stop accepting; queued messages still drain."""
    @property
    def outstanding(self) -> int:
        """Messages accepted and not yet delivered or given up on."""

def encode_batch(
    messages: Iterable[Buffer], compress_threshold: int = 1024, level: int = 3
) -> bytes:
    """The frame MessageBatcher hands its sink, for these messages."""

def decode_batch(frame: Buffer, max_output_size: int = 268435456) -> list[bytes]:
    """The messages of a frame, exactly. Raises FrameError for a malformed frame."""

@final
class Batch:
    """The futures of one running batch; resolve them with finish() or fail()."""

    def finish(
        self, outcomes: list[Any], elapsed: float, ok: bool = True, here: Any | None = None
    ) -> int:
        """Give each item its outcome (an Exception instance fails that item); returns failures."""
    def complete(self, outcomes: list[Any], elapsed: float, ok: bool = True) -> int:
        """Record the outcomes and free the slot; resolve() hands them out later."""
    def resolve(self) -> None:
        """Resolve the futures of a complete()d batch (no-op otherwise)."""
    def fail(self, exc: BaseException, elapsed: float, here: Any | None = None) -> None:
        """Fail every item with ``exc``."""
    def __len__(self) -> int: ...

def _forget_running_loop() -> None:
    """Clear this thread's cached running event loop (after fork, in the child)."""

def _settle(futs: list[Any], outcomes: list[Any]) -> None:
    """Resolve asyncio futures on their loop (scheduled once per batch)."""

# --- telemetry (LatencyHistogram, Timer) --------------------------------------

_P = ParamSpec("_P")
_R = TypeVar("_R")

@final
class LatencyHistogram:
    """A lock-free log-linear latency histogram; values in seconds.

    Buckets split each power of two into 128, so every percentile is within
    0.4% of the exact nearest-rank value (exact below 128 ns; values are kept
    in integer nanoseconds). Values above ``max_seconds`` land in the top
    bucket and are counted as ``overflow``. Thread-safe without locks:
    ``record`` is one bucket increment plus the count/sum/min/max atomics.
    """

    def __new__(cls, name: str = "latency", max_seconds: float = 3600.0) -> LatencyHistogram: ...
    @property
    def name(self) -> str:
        """The name given at construction (the ``name`` label in Prometheus)."""
    @property
    def max_seconds(self) -> float:
        """The highest value (seconds) with its own bucket; larger ones are overflow."""
    def record(self, seconds: float) -> None:
        """Record one duration in seconds (ConfigurationError if negative or NaN)."""
    def record_ns(self, ns: int) -> None:
        """Record one duration in integer nanoseconds (>= 0)."""
    def record_many(self, values: Iterable[float] | Buffer) -> None:
        """Record every duration of an iterable or a float64/float32 buffer (numpy).

        All or nothing: an invalid value records none. Large inputs are
        recorded with the GIL released.
        """
    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0..100, nearest rank) in seconds; 0.0 when empty."""
    def percentiles(self, ps: Iterable[float]) -> list[float]:
        """Several percentiles in one pass (seconds, in the order given)."""
    @property
    def count(self) -> int:
        """Values recorded."""
    @property
    def sum(self) -> float:
        """Their sum in seconds."""
    @property
    def mean(self) -> float:
        """Mean in seconds; 0.0 when empty."""
    @property
    def min(self) -> float:
        """Smallest value in seconds; 0.0 when empty."""
    @property
    def max(self) -> float:
        """Largest value in seconds; 0.0 when empty."""
    @property
    def overflow(self) -> int:
        """Values above ``max_seconds`` (kept in the top bucket)."""
    def merge(self, other: LatencyHistogram) -> None:
        """Add everything ``other`` recorded (its range may differ)."""
    def reset(self) -> None:
        """Forget every value."""
    def snapshot(self) -> LatencyHistogramStats:
        """name, count, sum, mean, min, max, overflow and p50/p90/p95/p99/p999."""
    def stats(self) -> LatencyHistogramStats:
        """The same as ``snapshot()``."""
    def buckets(self, bounds: Iterable[float] | None = None) -> list[tuple[float, int]]:
        """Cumulative ``(upper bound in seconds, values <= it)`` pairs for Prometheus.

        Without ``bounds``, one pair per non-empty bucket; with ``bounds``
        (ascending seconds, ``inf`` allowed), one pair per bound. Overflow
        values count only toward ``inf``.
        """
    @overload
    def time(self, func: None = None) -> Timer:
        """A context manager and decorator recording elapsed time (sync and async).

        ``with h.time():``, ``@h.time()`` or ``@h.time`` (given ``func``, the
        decorated function).
        """
    @overload
    def time(self, func: Callable[_P, _R]) -> Callable[_P, _R]: ...
    @overload
    def timer(self, func: None = None) -> Timer:
        """The same as ``time()``."""
    @overload
    def timer(self, func: Callable[_P, _R]) -> Callable[_P, _R]: ...
    def __reduce__(
        self,
    ) -> tuple[type[LatencyHistogram], tuple[str, float], tuple[Any, ...]]:
        """Pickle support: the class, ``(name, max_seconds)`` and the bucket state."""
    def __setstate__(self, state: tuple[Any, ...]) -> None:
        """Add a pickled state (from ``__reduce__``) to this histogram."""

@final
class Timer:
    """Returned by ``LatencyHistogram.time()``: ``with h.time():`` or ``@h.time()``."""

    def __enter__(self) -> Timer: ...
    def __exit__(
        self, _exc_type: object = None, _exc: object = None, _tb: object = None
    ) -> bool: ...
    @property
    def elapsed(self) -> float | None:
        """Seconds the last ``with`` block took; None before it ends."""
    def __call__(self, func: Callable[_P, _R]) -> Callable[_P, _R]:
        """Decorate a sync or async function: each call records its duration."""

# --- caches (MemoryTier) --------------------------------------------------------

@final
class MemoryTier:
    """An in-process cache tier: a bounded, thread-safe map from hashable keys
    to Python objects (stored by reference), with W-TinyLFU (or LRU) eviction,
    per-entry TTL and tags.

    Bounds: ``max_bytes`` (weights from ``weigher(value)`` plus the key's
    default weight; default: ``len()`` of bytes/bytearray/str,
    ``sys.getsizeof`` otherwise) and/or ``max_entries``; neither given means
    ``max_bytes=1 GiB``. An entry heavier than ``max_bytes`` is not stored
    (counted as ``rejected``). ``ttl`` is the default time to live in seconds
    (None: no expiry); ``clock`` (seconds, monotonic) replaces the built-in
    monotonic clock, for tests. Expired entries are never returned; they are
    dropped when met, a few at each write, and all by ``expire()``.
    """

    def __new__(
        cls,
        max_bytes: int | None = None,
        max_entries: int | None = None,
        ttl: float | None = None,
        policy: Literal["tinylfu", "lru"] = "tinylfu",
        weigher: Callable[[Any], int] | None = None,
        clock: Callable[[], float] | None = None,
        name: str = "memory",
    ) -> MemoryTier: ...
    @property
    def name(self) -> str:
        """The tier's name (in reprs and metrics)."""
    @property
    def max_bytes(self) -> int | None:
        """The byte bound (None: bounded by max_entries only)."""
    @property
    def max_entries(self) -> int | None:
        """The entry-count bound (None: bounded by max_bytes only)."""
    @property
    def ttl(self) -> float | None:
        """The default time to live in seconds (None: no expiry)."""
    @property
    def policy(self) -> Literal["tinylfu", "lru"]:
        """The eviction policy."""
    def lookup(self, key: object) -> tuple[Any, float | None] | None:
        """``(value, seconds left or None)`` for a live entry, else None."""
    def get(self, key: object, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` when absent or expired."""
    def set(
        self, key: object, value: Any, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (None: the tier's
        default), tagged with ``tags``."""
    def delete(self, key: object) -> bool:
        """Remove ``key``; True when a live entry was removed."""
    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The present, unexpired keys among ``keys`` with their values."""
    def set_many(
        self, items: Mapping[Any, Any], ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Store every item of ``items`` (same ``ttl`` and ``tags``)."""
    def invalidate_tag(self, tag: str) -> int:
        """Remove every entry tagged ``tag``; how many."""
    def expire(self) -> int:
        """Drop every expired entry now; how many."""
    def clear(self) -> None:
        """Remove every entry (the counters stay)."""
    def close(self) -> None:
        """Clear the tier. A memory tier has nothing to flush: it stays usable
        (later calls work on an empty cache)."""
    def stats(self) -> MemoryTierStats:
        """hits, misses, sets, deletes, evictions, expirations, rejected,
        entries, bytes, max_bytes, max_entries, policy, errors."""
    def __getitem__(self, key: object, /) -> Any: ...
    def __setitem__(self, key: object, value: Any, /) -> None: ...
    def __delitem__(self, key: object, /) -> None: ...
    def __contains__(self, key: object, /) -> bool:
        """True for a live entry (counts no hit or miss)."""
    def __len__(self) -> int:
        """Entries held; expired entries not yet cleaned up are counted."""
    def __iter__(self) -> Iterator[Any]:
        """A snapshot of the live keys."""

@final
class _CachedHit:
    """The hit path of one ``@cached`` function over a MemoryTier (private to
    ``overdrive.cache.decorator``): builds the default key, looks it up in
    tier 0 and returns a plain hit; hands everything else to ``rest`` (no
    keyword arguments) or ``with_kwargs``."""

    def __new__(
        cls,
        qualname: str,
        tier: MemoryTier,
        typed: bool,
        no: object,
        env: object,
        hits: Iterator[int],
        rest: Callable[[Any, tuple[Any, ...], Any, int], Any],
        with_kwargs: Callable[..., Any],
    ) -> _CachedHit: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def probe(self, args: tuple[Any, ...]) -> Any:
        """A plain tier-0 hit for positional ``args`` (counted), else ``no``."""
    def __get__(self, obj: object, objtype: type | None = None, /) -> Any:
        """Bind to an instance, as a function does."""
    def __reduce__(self) -> str:
        """Pickled by reference (its qualified name), as a function is."""

@disjoint_base
class _BreakerCore:
    """Base class of ``overdrive.resilience.CircuitBreaker`` (private): its
    per-call paths in Rust (the closed lock-free path and the rejection inside
    an open period); everything else goes to the subclass's ``_call_slow``."""

    _fast: bool
    _reject_until: float
    _n_rejected: int
    _check_at: int
    _ctr: Any
    def __new__(cls, *_args: Any, **_kwargs: Any) -> _BreakerCore: ...
    def _core_init(
        self, name: str, clock: Callable[[], float] | None, fallback: Callable[..., Any] | None
    ) -> None:
        """Set the name, the clock (``None``: ``time.monotonic``) and the fallback, once."""
    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` if the breaker admits it (else CircuitOpen, or
        the fallback's value), recording the outcome."""

# --- open-loop pacing (LoadRunner) ------------------------------------------

class PacerStats(TypedDict):
    """``Pacer.stats()``: counters since the Pacer was made."""

    issued: int
    late: int  # handed out more than tolerance_s after the intended time
    waiting_s: float  # time spent inside wait_next (sleeping or spinning)
    max_lag_s: float
    elapsed_s: float

@final
class Pacer:
    """The intended send times of an open-loop run, handed out on time.

    Either ``rate`` (arrivals per second) for ``duration`` seconds, or a
    ``schedule`` of ``(duration, rate)`` steps and ``(duration, start_rate,
    end_rate)`` ramps; ``poisson=True`` draws exponential gaps seeded by
    ``seed``. Time zero is the construction. ``wait_next`` sleeps most of the
    way and spins the last ``spin_s`` (at most a quarter of the gap between
    arrivals) with the GIL released; the waiting thread's timer slack is set
    to 1 ns (Linux) so sleeps end on time.
    """

    def __new__(
        cls,
        rate: float | None = None,
        duration: float | None = None,
        *,
        schedule: Iterable[tuple[float, float] | tuple[float, float, float]] | None = None,
        poisson: bool = False,
        seed: int = 0,
        spin_s: float = 50e-6,
        tolerance_s: float = 0.001,
    ) -> Pacer: ...
    def wait_next(self) -> tuple[int, float, float] | None:
        """Block until the next arrival is due: ``(index, intended_s, lag_s)``; None at the end."""
    def __iter__(self) -> Pacer: ...
    def __next__(self) -> tuple[int, float, float]: ...
    def elapsed(self) -> float:
        """Seconds since time zero, on the clock of the intended times."""
    def stop(self) -> None:
        """End the schedule early: ``wait_next`` returns None from now on."""
    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called."""
    @property
    def duration(self) -> float:
        """Length of the schedule, seconds."""
    @property
    def expected_count(self) -> float:
        """Expected number of arrivals over the schedule."""
    def stats(self) -> PacerStats:
        """issued, late, waiting_s, max_lag_s, elapsed_s."""
