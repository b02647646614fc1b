"""Bad numbers and wrong types thrown at every public constructor and method.

The contract (DESIGN.md, "Bad input gets a clear error"): whatever a caller
passes, the only exceptions that come out are ``overdrive.exceptions``
classes (``OverdriveError`` subclasses: ``ConfigurationError`` for a value out
of range, ``InputTypeError`` for a wrong type, ...), never ``OverflowError``,
a bare ``TypeError``, a ``PanicException`` or a crash. A value that happens to
be valid may also just work.

Each target names its parameters and valid defaults; hypothesis replaces one
or two of them with huge, negative, NaN or infinite numbers, or a value of
the wrong type. Values that are valid *and* expensive (a million objects made
up front) are kept out of the pools below, so every example is cheap.
Allocation sizes that used to abort the process are covered in a child
process by the component tests (``run_isolated``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import overdrive as od
from overdrive.cache import DiskTier, MemoryTier, TieredCache, cached
from overdrive.exceptions import OverdriveError
from overdrive.resilience import CircuitBreaker, ConcurrencyLimiter, RateLimiter
from overdrive.telemetry import LatencyHistogram

# --- bad values --------------------------------------------------------------

BAD_INTS = [-1, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 2**70, -(2**70), 10**100, -(10**400)]
BAD_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 1e308, -1e308, 5e-324, -5e-324]
WRONG_TYPES: list[object] = [None, "x", "", b"x", [], [1], {}, (), object(), 1.5, True, 1j]

BAD = st.one_of(
    st.sampled_from(BAD_INTS + BAD_FLOATS + WRONG_TYPES),
    st.integers(max_value=-1),
    st.integers(min_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(-3, 3), max_size=2),
)

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass(frozen=True)
class Target:
    """A public callable: ``call(**kwargs)`` with valid ``defaults``."""

    name: str
    defaults: dict[str, Any]
    call: Callable[..., Any]
    marks: tuple[Any, ...] = field(default=())

    def param(self) -> Any:
        return pytest.param(self, id=self.name, marks=self.marks)


def outcome(target: Target, kwargs: dict[str, Any]) -> BaseException | None:
    """What calling ``target`` with ``kwargs`` raised (anything), or None."""
    try:
        cleanup(target.call(**kwargs))
    except BaseException as e:  # PanicException is a BaseException
        if isinstance(e, KeyboardInterrupt):
            raise
        return e
    return None


def cleanup(result: Any) -> None:
    """Give back what a successful call handed out (threads, pooled items)."""
    if isinstance(result, od.PooledBuffer | od.PooledObject) and not result.released:
        result.release()
    elif isinstance(result, od.WorkerPool):
        result.shutdown(wait=True)
    elif isinstance(result, od.Batcher | od.MessageBatcher):
        result.close()


def check(target: Target, data: st.DataObject) -> None:
    names = sorted(target.defaults)
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    kwargs = {**target.defaults, **{p: data.draw(BAD, label=p) for p in chosen}}
    err = outcome(target, kwargs)
    assert err is None or isinstance(err, OverdriveError), (
        f"{target.name}({kwargs!r}) raised {type(err).__module__}.{type(err).__qualname__}: {err}"
    )


# --- the objects methods are called on (fresh for every example) ---------------

SAMPLES = [b"sample %d: " % i + b"abcdefgh" * (i % 7 + 1) for i in range(64)]
FRAME = od.compress(b"payload " * 32)


def compressor() -> od.Compressor:
    return od.Compressor(threshold=16, max_output_size=10_000)


def balancer() -> tuple[od.Balancer, int]:
    lb = od.Balancer(4)
    return lb, lb.acquire()


def router() -> od.ShardRouter:
    return od.ShardRouter(["a", "b", "c"])


def hist() -> LatencyHistogram:
    h = LatencyHistogram()
    h.record_many([0.001, 0.5])
    return h


def worker_pool() -> od.WorkerPool:
    return od.WorkerPool(min_workers=1, max_workers=2)


def anything(*args: Any) -> tuple[Any, ...]:
    """A task that accepts whatever it is given (its own errors are not the API's)."""
    return args


def with_pool(use: Callable[[od.WorkerPool], Any]) -> Any:
    pool = worker_pool()
    try:
        out = use(pool)
        if isinstance(out, Iterator):
            out = list(out)
        return out.result(10) if hasattr(out, "result") else out
    finally:
        pool.shutdown(wait=True)


def run_async(make: Callable[[], Any]) -> Any:
    async def main() -> Any:
        return await make()

    return asyncio.run(main())


# --- compression, pools, balancing, worker pool, router --------------------------

TARGETS = [
    # compression
    Target("compress", {"data": b"hello" * 20, "level": 3}, od.compress),
    Target("decompress", {"data": FRAME, "max_output_size": 10_000}, od.decompress),
    Target("train_dictionary", {"samples": SAMPLES, "size": 1024}, od.train_dictionary),
    Target(
        "Compressor",
        {"level": 3, "threshold": 16, "dictionary": None, "max_output_size": 10_000},
        od.Compressor,
    ),
    Target("Compressor.compress", {"data": b"x" * 100}, lambda **kw: compressor().compress(**kw)),
    Target("Compressor.decompress", {"data": FRAME}, lambda **kw: compressor().decompress(**kw)),
    Target("Compressor.pack", {"data": b"x" * 100}, lambda **kw: compressor().pack(**kw)),
    Target(
        "Compressor.unpack",
        {"blob": compressor().pack(b"y" * 100)},
        lambda **kw: compressor().unpack(**kw),
    ),
    Target(
        "Compressor.compress_many",
        {"items": [b"a" * 50, b"b"]},
        lambda **kw: compressor().compress_many(**kw),
    ),
    Target(
        "Compressor.decompress_many",
        {"blobs": [FRAME, FRAME]},
        lambda **kw: compressor().decompress_many(**kw),
    ),
    # pools
    Target(
        "BufferPool",
        {
            "buffer_size": 64,
            "min_size": 1,
            "max_size": 4,
            "zero_on_release": False,
            "window_s": 1.0,
        },
        od.BufferPool,
    ),
    Target(
        "BufferPool.acquire",
        {"timeout": None, "block": True},
        lambda **kw: od.BufferPool(buffer_size=64, max_size=2).acquire(**kw),
    ),
    Target(
        "BufferPool.trim",
        {"keep": None},
        lambda **kw: od.BufferPool(buffer_size=64, max_size=2).trim(**kw),
    ),
    Target(
        "PooledBuffer.__exit__",
        {"_exc_type": None, "_exc": None, "_tb": None},
        lambda **kw: od.BufferPool(buffer_size=64, max_size=2).acquire().__exit__(**kw),
    ),
    Target(
        "ObjectPool",
        {
            "factory": list,
            "reset": None,
            "validate": None,
            "min_size": 0,
            "max_size": 4,
            "max_idle_s": None,
        },
        od.ObjectPool,
    ),
    Target(
        "ObjectPool.acquire",
        {"timeout": None, "block": True},
        lambda **kw: od.ObjectPool(list, max_size=2).acquire(**kw),
    ),
    Target(
        "ObjectPool.trim",
        {"keep": None},
        lambda **kw: od.ObjectPool(list, min_size=1, max_size=2).trim(**kw),
    ),
    Target(
        "acquire_async",
        {"pool": None, "timeout": None},
        lambda pool, timeout: run_async(
            lambda: od.acquire_async(
                od.BufferPool(buffer_size=64, max_size=2) if pool is None else pool, timeout
            )
        ),
    ),
    # balancing
    Target(
        "Balancer",
        {
            "backends": 4,
            "strategy": "load_score",
            "load_weight": 0.7,
            "queue_weight": 0.3,
            "max_in_flight": 100,
            "active_request_bias": 1.0,
            "ewma_alpha": 0.2,
            "eject_error_rate": 0.5,
            "eject_min_requests": 5,
            "cooldown_s": 10.0,
            "max_ejected_fraction": 0.5,
        },
        od.Balancer,
    ),
    Target("Balancer(n_backends=)", {"n_backends": 4}, od.Balancer),
    Target("Balancer(weights=)", {"weights": [1.0, 2.0]}, od.Balancer),
    Target(
        "Balancer.release",
        {"latency_s": 0.01, "ok": True},
        lambda **kw: (lambda lb, i: lb.release(i, **kw))(*balancer()),
    ),
    Target(
        "Balancer.release(index)",
        {"index": 0},
        lambda **kw: balancer()[0].release(**kw),
    ),
    Target("Balancer.add", {"weight": 1.0}, lambda **kw: balancer()[0].add(**kw)),
    Target("Balancer.remove", {"index": 1}, lambda **kw: balancer()[0].remove(**kw)),
    Target("Balancer.mark_down", {"index": 1}, lambda **kw: balancer()[0].mark_down(**kw)),
    Target("Balancer.mark_up", {"index": 1}, lambda **kw: balancer()[0].mark_up(**kw)),
    Target(
        "Balancer.set_weight",
        {"index": 1, "weight": 2.0},
        lambda **kw: balancer()[0].set_weight(**kw),
    ),
    Target(
        "Balancer.report_queue",
        {"index": 1, "utilisation": 0.5},
        lambda **kw: balancer()[0].report_queue(**kw),
    ),
    Target("Balancer.in_flight", {"index": 1}, lambda **kw: balancer()[0].in_flight(**kw)),
    Target("Balancer.state", {"index": 1}, lambda **kw: balancer()[0].state(**kw)),
    Target(
        "Pick.__exit__",
        {"exc_type": None, "_exc": None, "_tb": None},
        lambda **kw: (lambda p: (p.__enter__(), p.__exit__(**kw)))(balancer()[0].pick()),
    ),
    # router
    Target(
        "ShardRouter",
        {"nodes": ["a", "b"], "load_factor": 1.25, "vnodes": 160},
        od.ShardRouter,
    ),
    Target("ShardRouter(dict)", {"nodes": {"a": 1.0, "b": 2.0}}, od.ShardRouter),
    Target("ShardRouter.route", {"key": "k"}, lambda **kw: router().route(**kw)),
    Target("ShardRouter.route_many", {"keys": ["k", 1]}, lambda **kw: router().route_many(**kw)),
    Target("ShardRouter.lookup", {"key": b"k"}, lambda **kw: router().lookup(**kw)),
    Target(
        "ShardRouter.release",
        {"node": "a"},
        lambda **kw: (lambda r: (r.route("k"), r.release(**kw)))(router()),
    ),
    Target(
        "ShardRouter.add_node",
        {"node": "d", "weight": 1.0},
        lambda **kw: router().add_node(**kw),
    ),
    Target("ShardRouter.remove_node", {"node": "a"}, lambda **kw: router().remove_node(**kw)),
    # worker pool
    Target(
        "WorkerPool",
        {
            "min_workers": 1,
            "max_workers": 2,
            "max_queue": 0,
            "on_full": "block",
            "full_timeout_s": None,
            "aging_s": 1.0,
            "scale_up_depth": 10,
            "scale_up_util": 0.8,
            "scale_down_util": 0.3,
            "scale_down_window_s": 10.0,
            "thread_name_prefix": "fuzz",
            "help_on_wait": True,
        },
        od.WorkerPool,
    ),
    Target(
        "WorkerPool.submit",
        {"fn": anything, "priority": 0},
        lambda fn, priority: with_pool(lambda p: p.submit(fn, -1, priority=priority)),
    ),
    Target(
        "WorkerPool.map",
        {"fn": anything, "iterables": [-1, -2], "timeout": None, "chunksize": 1},
        lambda fn, iterables, **kw: with_pool(lambda p: p.map(fn, iterables, **kw)),
    ),
    Target(
        "WorkerPool.shutdown",
        {"wait": True, "cancel_futures": False},
        lambda **kw: worker_pool().shutdown(**kw),
    ),
    # telemetry (LatencyHistogram)
    Target("LatencyHistogram", {"name": "fuzz", "max_seconds": 60.0}, LatencyHistogram),
    Target("LatencyHistogram.record", {"seconds": 0.01}, lambda **kw: hist().record(**kw)),
    Target("LatencyHistogram.record_ns", {"ns": 10_000}, lambda **kw: hist().record_ns(**kw)),
    Target(
        "LatencyHistogram.record_many",
        {"values": [0.01, 0.02]},
        lambda **kw: hist().record_many(**kw),
    ),
    Target("LatencyHistogram.percentile", {"p": 99.0}, lambda **kw: hist().percentile(**kw)),
    Target(
        "LatencyHistogram.percentiles", {"ps": [50.0, 99.0]}, lambda **kw: hist().percentiles(**kw)
    ),
    Target("LatencyHistogram.buckets", {"bounds": [0.01, 1.0]}, lambda **kw: hist().buckets(**kw)),
    Target(
        "LatencyHistogram.merge", {"other": LatencyHistogram()}, lambda **kw: hist().merge(**kw)
    ),
]


# --- caches and resilience (pure-Python facades over the Rust L1 store) ------------

_DISK_DIR = tempfile.mkdtemp(prefix="od-fuzz-")
_disk_paths = itertools.count()


def memory() -> MemoryTier:
    tier = MemoryTier(max_entries=100, ttl=60.0)
    tier.set("k", 1)
    return tier


def disk(**kw: Any) -> DiskTier:
    return DiskTier(os.path.join(_DISK_DIR, f"fuzz-{next(_disk_paths)}.db"), **kw)


def tiered(**kw: Any) -> TieredCache:
    return TieredCache([MemoryTier(max_entries=100)], **kw)


def closing(make: Callable[[], Any], use: Callable[[Any], Any]) -> Any:
    obj = make()
    try:
        return use(obj)
    finally:
        obj.close()


CACHE_TARGETS = [
    Target(
        "MemoryTier",
        {
            "max_bytes": None,
            "max_entries": 100,
            "ttl": 60.0,
            "policy": "tinylfu",
            "weigher": None,
            "clock": None,
            "name": "fuzz",
        },
        MemoryTier,
    ),
    Target(
        "MemoryTier.set",
        {"key": "k", "value": 1, "ttl": 1.0, "tags": ("t",)},
        lambda **kw: memory().set(**kw),
    ),
    Target("MemoryTier.get", {"key": "k"}, lambda **kw: memory().get(**kw)),
    Target("MemoryTier.get_many", {"keys": ["k", 1]}, lambda **kw: memory().get_many(**kw)),
    Target(
        "MemoryTier.set_many",
        {"items": {"k": 1}, "ttl": 1.0, "tags": ()},
        lambda **kw: memory().set_many(**kw),
    ),
    Target("MemoryTier.invalidate_tag", {"tag": "t"}, lambda **kw: memory().invalidate_tag(**kw)),
    Target(
        "DiskTier",
        {
            "max_bytes": None,
            "ttl": 60.0,
            "max_pending": 100,
            "flush_interval_ms": 50.0,
            "write_behind": True,
        },
        lambda **kw: closing(lambda: disk(**kw), lambda d: d.get("k")),
    ),
    Target(
        "DiskTier.set",
        {"key": "k", "value": 1, "ttl": 1.0, "tags": ()},
        lambda **kw: closing(disk, lambda d: d.set(**kw)),
    ),
    Target(
        "TieredCache",
        {
            "write": "through",
            "promote": True,
            "negative_ttl": None,
            "stale_ttl": None,
            "cost_per_call": None,
            "alert_below": None,
            "lock_timeout_s": 30.0,
            "name": "fuzz",
        },
        lambda **kw: closing(lambda: tiered(**kw), lambda c: c.get("k")),
    ),
    Target(
        "TieredCache.set",
        {"key": "k", "value": 1, "ttl": 1.0, "tags": ()},
        lambda **kw: closing(tiered, lambda c: c.set(**kw)),
    ),
    Target(
        "TieredCache.get_or_set",
        {"key": "k", "compute": lambda: 1, "ttl": 1.0},
        lambda **kw: closing(tiered, lambda c: c.get_or_set(**kw)),
    ),
    Target(
        "cached",
        {"ttl": 1.0, "tags": (), "negative_ttl": None, "stale_ttl": None, "typed": True},
        lambda **kw: cached(**kw)(lambda x: x)(1),
    ),
    Target(
        "CircuitBreaker",
        {
            "window_size": 10,
            "min_calls": 5,
            "failure_rate": 0.5,
            "open_s": 1.0,
            "half_open_probes": 2,
            "slow_call_s": None,
        },
        lambda **kw: CircuitBreaker(**kw).call(lambda: 1),
    ),
    Target(
        "ConcurrencyLimiter",
        {"limit": 4, "min_limit": 1, "max_limit": 8, "queue_timeout_s": 0.01},
        lambda **kw: ConcurrencyLimiter(**kw).acquire().release(),
    ),
    Target(
        "RateLimiter",
        {"rate": 10.0, "per": 1.0, "burst": None},
        lambda **kw: RateLimiter(**kw).try_acquire(),
    ),
    Target(
        "RateLimiter.try_acquire",
        {"key": None, "cost": 1},
        lambda **kw: RateLimiter(10.0).try_acquire(**kw),
    ),
]


@pytest.mark.parametrize("target", [t.param() for t in CACHE_TARGETS])
@FUZZ
@given(data=st.data())
def test_caches_and_guards_only_overdrive_errors_come_out(
    target: Target, data: st.DataObject
) -> None:
    check(target, data)


@pytest.mark.parametrize("target", [t.param() for t in TARGETS])
@FUZZ
@given(data=st.data())
def test_only_overdrive_errors_come_out(target: Target, data: st.DataObject) -> None:
    check(target, data)


def test_the_fuzz_covers_every_public_class() -> None:
    names = {t.name.split(".")[0].split("(")[0] for t in TARGETS}
    for public in (
        "Compressor",
        "BufferPool",
        "PooledBuffer",
        "ObjectPool",
        "Balancer",
        "Pick",
        "ShardRouter",
        "WorkerPool",
        "LatencyHistogram",
    ):
        assert public in names, public


# =============================================================================
# Batcher, MessageBatcher, encode_batch, decode_batch.
# =============================================================================


def batcher() -> od.Batcher[Any, Any]:
    return od.Batcher(lambda items: items, max_batch_size=4, max_wait_ms=1.0)


def with_batcher(use: Callable[[od.Batcher[Any, Any]], Any]) -> Any:
    b = batcher()
    try:
        out = use(b)
        return out.result(10) if hasattr(out, "result") else out
    finally:
        b.close()


def message_batcher() -> od.MessageBatcher:
    return od.MessageBatcher(lambda frame: None, max_batch_size=4, max_wait_ms=1.0)


def with_message_batcher(use: Callable[[od.MessageBatcher], Any]) -> Any:
    mb = message_batcher()
    try:
        return use(mb)
    finally:
        mb.close()


BATCH_TARGETS = [
    Target(
        "Batcher",
        {
            "handler": lambda items: items,
            "max_batch_size": 4,
            "max_wait_ms": 1.0,
            "max_queue": 100,
            "on_full": "block",
            "weigher": None,
            "max_batch_weight": None,
            "max_concurrency": 1,
            "adaptive": False,
            "latency_target_ms": None,
            "aging_ms": 100.0,
            "admission": False,
            "retry_individually": False,
            "block_timeout": None,
            "name": None,
        },
        od.Batcher,
    ),
    Target(
        "Batcher.submit",
        {"item": 1, "priority": 0, "deadline_ms": None, "key": None},
        lambda item, **kw: with_batcher(lambda b: b.submit(item, **kw)),
    ),
    Target(
        "MessageBatcher",
        {
            "sink": lambda frame: None,
            "max_batch_size": 4,
            "max_wait_ms": 1.0,
            "max_queue": 100,
            "on_full": "block",
            "compress_threshold": 1024,
            "level": -1,
            "max_batch_bytes": None,
            "max_pending_frames": 16,
            "max_retries": 3,
            "retry_backoff_ms": 10.0,
            "on_error": None,
            "block_timeout": None,
        },
        od.MessageBatcher,
    ),
    Target(
        "MessageBatcher.put",
        {"message": b"m"},
        lambda **kw: with_message_batcher(lambda mb: mb.put(**kw)),
    ),
    Target(
        "encode_batch",
        {"messages": [b"a", b"bb"], "compress_threshold": 1024, "level": 3},
        od.encode_batch,
    ),
    Target(
        "decode_batch",
        {"frame": od.encode_batch([b"a", b"bb"]), "max_output_size": 10_000},
        od.decode_batch,
    ),
]


@pytest.mark.parametrize("target", [t.param() for t in BATCH_TARGETS])
@FUZZ
@given(data=st.data())
def test_batcher_only_overdrive_errors_come_out(target: Target, data: st.DataObject) -> None:
    check(target, data)
