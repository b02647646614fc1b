"""TieredCache: dict-model equivalence, promotion within TTL, write policies,
single-flight (threads, tasks, both), negative caching, stale-while-revalidate,
savings, alerts, errors and lifecycle.

Stacks are built by the factories in STACKS (each takes the injected clock),
so the model-based tests run on every stack whose tiers accept a clock.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_support import FakeClock, ModelTier
from overdrive.cache import (
    MISSING,
    DiskTier,
    MemoryTier,
    MsgpackSerializer,
    RedisTier,
    TieredCache,
)
from overdrive.cache._savings import read_count
from overdrive.exceptions import CacheUnavailable, ConfigurationError, InputTypeError

ROOT = Path(__file__).resolve().parent.parent
StackFactory = Callable[[FakeClock, "float | None"], list[Any]]


def _model_pair(clock: FakeClock, l1_ttl: float | None) -> list[Any]:
    return [ModelTier(clock, ttl=l1_ttl, name="l1"), ModelTier(clock, name="l2")]


def _model_bytes(clock: FakeClock, l1_ttl: float | None) -> list[Any]:
    """An in-memory model over a model that stores bytes (stable keys, msgpack)."""
    return [
        ModelTier(clock, ttl=l1_ttl, name="l1"),
        ModelTier(clock, name="l2", serializer=MsgpackSerializer()),
    ]


def _model_three(clock: FakeClock, l1_ttl: float | None) -> list[Any]:
    return [
        ModelTier(clock, ttl=l1_ttl, name="l1"),
        ModelTier(clock, ttl=None if l1_ttl is None else l1_ttl * 2, name="l2"),
        ModelTier(clock, name="l3", serializer=MsgpackSerializer()),
    ]


_DISK_DIR = tempfile.mkdtemp(prefix="od-tiered-")
atexit.register(shutil.rmtree, _DISK_DIR, True)
_disk_files = itertools.count()
_open_tiers: list[Any] = []  # closed after each test (and after each hypothesis example)


def _disk(clock: Callable[[], float], ttl: float | None = None) -> DiskTier:
    path = os.path.join(_DISK_DIR, f"c{next(_disk_files)}.db")
    tier = DiskTier(path, clock=clock, ttl=ttl, flush_interval_ms=5)
    _open_tiers.append(tier)
    return tier


def _close_all() -> None:
    while _open_tiers:
        _open_tiers.pop().close()


@pytest.fixture(autouse=True)
def _close_tiers() -> Iterator[None]:
    yield
    _close_all()


def _model_disk(clock: FakeClock, l1_ttl: float | None) -> list[Any]:
    return [ModelTier(clock, ttl=l1_ttl, name="l1"), _disk(clock)]


def _memory(clock: Callable[[], float], ttl: float | None) -> MemoryTier:
    return MemoryTier(max_entries=10_000, ttl=ttl, clock=clock, name="memory")


def _memory_model(clock: FakeClock, l1_ttl: float | None) -> list[Any]:
    return [_memory(clock, l1_ttl), ModelTier(clock, name="l2")]


def _memory_disk(clock: FakeClock, l1_ttl: float | None) -> list[Any]:
    return [_memory(clock, l1_ttl), _disk(clock)]


STACKS: dict[str, StackFactory] = {
    "model+model": _model_pair,
    "model+bytes": _model_bytes,
    "model x3": _model_three,
    "model+disk": _model_disk,
    "memory+model": _memory_model,
    "memory+disk": _memory_disk,
}


def over_stacks(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a test once per stack in STACKS (a parameter, not a fixture: hypothesis)."""
    names = sorted(STACKS)
    return pytest.mark.parametrize("stack", [STACKS[n] for n in names], ids=names)(fn)


def _wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


# --- the dict model ---------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", 1, (2, "x")])
VALUES = st.one_of(
    st.integers(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=3)
)
# multiples of 0.25: the clock arithmetic is exact, so the model and the tiers agree on boundaries
QUARTERS = st.integers(1, 40).map(lambda q: q / 4)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, VALUES, st.none() | QUARTERS),
        st.tuples(st.just("get"), KEYS),
        st.tuples(st.just("lookup"), KEYS),
        st.tuples(st.just("delete"), KEYS),
        st.tuples(st.just("advance"), QUARTERS),
        st.tuples(st.just("get_or_set"), KEYS, VALUES, st.none() | QUARTERS),
    ),
    max_size=40,
)


def _run_model(factory: StackFactory, l1_ttl: float | None, ops: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    tc = TieredCache(factory(clock, l1_ttl), clock=clock, negative_ttl=5.0)
    model: dict[Any, tuple[Any, float | None]] = {}

    def alive(key: Any) -> tuple[Any, float | None] | None:
        entry = model.get(key)
        if entry is None or (entry[1] is not None and clock() >= entry[1]):
            model.pop(key, None)
            return None
        return entry

    for op in ops:
        kind = op[0]
        if kind == "set":
            _, key, value, ttl = op
            tc.set(key, value, ttl=ttl)
            # ttl=None: the longest-lived tier (no default TTL) keeps it forever
            model[key] = (value, None if ttl is None else clock() + ttl)
        elif kind == "get":
            entry = alive(op[1])
            assert tc.get(op[1], MISSING) == (MISSING if entry is None else entry[0])
        elif kind == "lookup":
            entry = alive(op[1])
            got = tc.lookup(op[1])
            if entry is None:
                assert got is None
            else:
                assert got is not None
                assert got[0] == entry[0]
                # the copy that answered may expire sooner than a lower tier's, never later
                left = None if entry[1] is None else entry[1] - clock()
                if left is None:
                    assert got[1] is None or got[1] > 0
                else:
                    assert got[1] is not None
                    assert 0 < got[1] <= left
        elif kind == "delete":
            assert tc.delete(op[1]) == (alive(op[1]) is not None)
            model.pop(op[1], None)
        elif kind == "advance":
            clock.advance(op[1])
        else:
            _, key, value, ttl = op
            entry = alive(key)
            got = tc.get_or_set(key, lambda v=value: v, ttl=ttl)
            if entry is not None:
                assert got == entry[0]
            else:
                assert got == value
                if value is None:
                    model[key] = (None, clock() + 5.0)  # negative_ttl
                else:
                    model[key] = (value, None if ttl is None else clock() + ttl)


@over_stacks
@settings(max_examples=60, deadline=None)
@given(ops=OPS, l1_ttl=st.none() | QUARTERS)
def test_behaves_like_a_dict_with_expiry(stack: StackFactory, ops: list[Any], l1_ttl: Any) -> None:
    try:
        _run_model(stack, l1_ttl, ops)
    finally:
        _close_all()


# --- promotion ----------------------------------------------------------------------


@over_stacks
@settings(max_examples=40, deadline=None)
@given(ttl=QUARTERS, elapsed=QUARTERS, l1_ttl=st.none() | QUARTERS)
def test_promotion_never_outlives_the_original(
    stack: StackFactory, ttl: float, elapsed: float, l1_ttl: float | None
) -> None:
    try:
        _promotion_case(stack, ttl, elapsed, l1_ttl)
    finally:
        _close_all()


def _promotion_case(stack: StackFactory, ttl: float, elapsed: float, l1_ttl: float | None) -> None:
    clock = FakeClock()
    tiers = stack(clock, l1_ttl)
    tc = TieredCache(tiers, clock=clock)
    tiers[-1].set("k", "v", ttl=ttl)  # only in the bottom tier
    clock.advance(elapsed)
    got = tc.lookup("k")
    if elapsed >= ttl:
        assert got is None
        return
    assert got == ("v", ttl - elapsed)
    expires = 1000.0 + ttl
    for tier in tiers[:-1]:  # promoted everywhere above, never past the original's expiry
        hit = tier.lookup("k")
        assert hit is not None
        assert clock() + hit[1] <= expires
    clock.advance(ttl - elapsed)  # exactly at the original's expiry
    assert tc.get("k", MISSING) is MISSING
    assert all(t.lookup("k") is None for t in tiers)


@over_stacks
def test_promotion_keeps_tags_so_invalidation_reaches_copies(stack: StackFactory) -> None:
    clock = FakeClock()
    tiers = stack(clock, None)
    tc = TieredCache(tiers, clock=clock)
    tc.set("k", {"a": 1}, ttl=10, tags=("user:1",))
    tiers[0].clear()
    assert tc.get("k") == {"a": 1}  # promoted back into l1, with its tag
    assert tiers[0].lookup("k") is not None
    assert tc.invalidate_tag("user:1") >= 2
    assert tc.get("k", MISSING) is MISSING
    assert all(t.lookup("k") is None for t in tiers)


def test_no_promotion_when_disabled() -> None:
    clock = FakeClock()
    l1, l2 = ModelTier(clock, name="l1"), ModelTier(clock, name="l2")
    tc = TieredCache([l1, l2], promote=False, clock=clock)
    l2.set("k", 1)
    assert tc.get("k") == 1
    assert l1.lookup("k") is None


def test_write_policies() -> None:
    clock = FakeClock()
    l1, l2, l3 = (ModelTier(clock, name=n) for n in ("l1", "l2", "l3"))
    tc = TieredCache([l1, l2, l3], write=["promote-only", "through", "none"], clock=clock)
    assert tc.write == ("promote-only", "through", "none")
    tc.set("a", 1)
    assert l1.lookup("a") is None
    assert l2.lookup("a") == (1, None)
    assert l3.lookup("a") is None
    assert tc.get("a") == 1
    assert l1.lookup("a") == (1, None)  # filled by promotion
    l3.set("b", 2, ttl=4)
    assert tc.get("b") == 2
    assert l1.lookup("b") == (2, 4.0)
    assert l2.lookup("b") == (2, 4.0)
    assert tc.delete("b")
    assert all(t.lookup("b") is None for t in (l1, l2, l3))  # delete reaches every tier


# --- get_or_set: single-flight -----------------------------------------------------------


class _Gate:
    """A compute that blocks until released, counting its calls."""

    def __init__(self, result: Any = "value", error: Exception | None = None) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.result = result
        self.error = error

    def __call__(self) -> Any:
        with self.lock:
            self.calls += 1
        assert self.release.wait(30)
        if self.error is not None:
            raise self.error
        return self.result

    async def acall(self) -> Any:
        with self.lock:
            self.calls += 1
        while not self.release.is_set():
            await asyncio.sleep(0.001)
        if self.error is not None:
            raise self.error
        return self.result


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(30)
        assert not t.is_alive()


def _start_threads(
    n: int, target: Callable[[], Any]
) -> tuple[list[threading.Thread], list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            r = target()
        except Exception as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(r)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, results, errors


@over_stacks
def test_single_flight_threads(stack: StackFactory) -> None:
    clock = FakeClock()
    tc = TieredCache(stack(clock, None), clock=clock)
    gate = _Gate(result=[1, 2, 3])
    threads, results, errors = _start_threads(50, lambda: tc.get_or_set("k", gate, ttl=60))
    _wait_until(lambda: gate.calls == 1)
    time.sleep(0.2)  # let every thread reach the flight
    gate.release.set()
    _join(threads)
    assert errors == []
    assert gate.calls == 1
    assert results == [[1, 2, 3]] * 50
    s = tc.stats()
    assert s["computes"] == 1
    assert s["coalesced"] + s["hits"] == 49


def test_single_flight_exception_reaches_every_waiter() -> None:
    clock = FakeClock()
    tc = TieredCache(_model_pair(clock, None), clock=clock)
    gate = _Gate(error=KeyError("boom"))
    threads, results, errors = _start_threads(50, lambda: tc.get_or_set("k", gate))
    _wait_until(lambda: gate.calls == 1)
    time.sleep(0.2)
    gate.release.set()
    _join(threads)
    assert results == []
    assert len(errors) == 50
    assert all(isinstance(e, KeyError) and e.args == ("boom",) for e in errors)
    assert gate.calls == 1
    assert tc.get("k", MISSING) is MISSING  # the exception is not cached
    assert tc.stats()["compute_errors"] == 1
    assert tc.get_or_set("k", lambda: 5) == 5


@over_stacks
def test_single_flight_asyncio_tasks(stack: StackFactory) -> None:
    clock = FakeClock()
    tc = TieredCache(stack(clock, None), clock=clock)
    gate = _Gate(result=("t", 1))

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(tc.aget_or_set("k", gate.acall)) for _ in range(50)]
        while gate.calls == 0:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        gate.release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == [("t", 1)] * 50
    assert gate.calls == 1


def test_single_flight_asyncio_exception_reaches_every_task() -> None:
    clock = FakeClock()
    tc = TieredCache(_model_pair(clock, None), clock=clock)
    gate = _Gate(error=ValueError("bad"))

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(tc.aget_or_set("k", gate.acall)) for _ in range(50)]
        while gate.calls == 0:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        gate.release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(main())
    assert len(out) == 50
    assert all(isinstance(e, ValueError) and e.args == ("bad",) for e in out)
    assert gate.calls == 1
    assert tc.get("k", MISSING) is MISSING


@pytest.mark.parametrize("leader", ["thread", "task"])
def test_single_flight_threads_and_tasks_mixed(leader: str) -> None:
    clock = FakeClock()
    tc = TieredCache(_model_pair(clock, None), clock=clock)
    gate = _Gate(result=42)

    async def main() -> tuple[list[Any], list[Any]]:
        threads: list[threading.Thread] = []
        results: list[Any] = []
        if leader == "thread":
            threads, results, _ = _start_threads(25, lambda: tc.get_or_set("k", gate))
            while gate.calls == 0:
                await asyncio.sleep(0.001)
        tasks = [asyncio.create_task(tc.aget_or_set("k", gate.acall)) for _ in range(25)]
        if leader == "task":
            while gate.calls == 0:
                await asyncio.sleep(0.001)
            threads, results, _ = _start_threads(25, lambda: tc.get_or_set("k", gate))
        await asyncio.sleep(0.2)
        gate.release.set()
        out = await asyncio.gather(*tasks)
        await asyncio.to_thread(_join, threads)
        return out, results

    out, results = asyncio.run(main())
    assert out == [42] * 25
    assert results == [42] * 25
    assert gate.calls == 1


def test_cancelled_async_leader_hands_over_to_a_waiter() -> None:
    clock = FakeClock()
    tc = TieredCache(_model_pair(clock, None), clock=clock)
    calls = []

    async def slow() -> str:
        calls.append(1)
        await asyncio.sleep(0.05 if len(calls) > 1 else 30)
        return "done"

    async def main() -> Any:
        first = asyncio.create_task(tc.aget_or_set("k", slow))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(tc.aget_or_set("k", slow))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(main()) == "done"
    assert len(calls) == 2


def test_sync_compute_returning_awaitable_is_refused() -> None:
    tc = TieredCache(_model_pair(FakeClock(), None))

    async def coro() -> int:
        return 1

    with pytest.raises(InputTypeError, match="aget_or_set"):
        tc.get_or_set("k", coro)
    assert tc.get("k", MISSING) is MISSING


# --- negative caching, stale-while-revalidate --------------------------------------------


@over_stacks
def test_negative_caching(stack: StackFactory) -> None:
    clock = FakeClock()
    tc = TieredCache(stack(clock, None), clock=clock, negative_ttl=2.0)
    calls: list[int] = []

    def lookup_user() -> None:
        calls.append(1)

    assert tc.get_or_set("u", lookup_user, ttl=100) is None
    assert tc.get_or_set("u", lookup_user, ttl=100) is None
    assert len(calls) == 1
    assert tc.lookup("u") == (None, 2.0)  # a cached None, not a miss
    assert tc.get("u", MISSING) is None
    clock.advance(2.0)
    assert tc.get("u", MISSING) is MISSING
    assert tc.get_or_set("u", lookup_user) is None
    assert len(calls) == 2


def test_none_is_not_cached_without_negative_ttl() -> None:
    clock = FakeClock()
    tc = TieredCache(_model_pair(clock, None), clock=clock)
    calls: list[int] = []
    for _ in range(3):
        assert tc.get_or_set("u", lambda: calls.append(1)) is None
    assert len(calls) == 3
    tc.set("u", None)  # an explicit set of None is stored
    assert tc.lookup("u") == (None, None)


@over_stacks
def test_stale_while_revalidate_sync(stack: StackFactory) -> None:
    clock = FakeClock()
    tc = TieredCache(stack(clock, None), clock=clock, stale_ttl=5.0)
    version = [0]

    def compute() -> str:
        version[0] += 1
        return f"v{version[0]}"

    assert tc.get_or_set("k", compute, ttl=10) == "v1"
    assert tc.lookup("k") == ("v1", 15.0)  # stored for ttl + stale_ttl, envelope not visible
    clock.advance(9.75)
    assert tc.get_or_set("k", compute, ttl=10) == "v1"  # fresh
    clock.advance(0.25)
    assert tc.get_or_set("k", compute, ttl=10) == "v1"  # stale: served, refresh starts
    _wait_until(lambda: version[0] == 2 and tc.stats()["in_flight"] == 0)
    assert tc.get_or_set("k", compute, ttl=10) == "v2"  # refreshed
    s = tc.stats()
    assert s["stale_hits"] == 1
    assert s["refreshes"] == 1
    # never served past ttl + stale_ttl
    clock.advance(15.0)
    assert tc.get("k", MISSING) is MISSING
    assert tc.get_or_set("k", compute, ttl=10) == "v3"
    assert version[0] == 3
    tc.close()


def test_stale_refresh_failure_keeps_serving_stale(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    tc = TieredCache(_model_pair(clock, None), clock=clock, stale_ttl=5.0)
    tc.get_or_set("k", lambda: "old", ttl=1)
    clock.advance(2)

    def broken() -> str:
        raise RuntimeError("backend down")

    with caplog.at_level(logging.WARNING, logger="overdrive.cache"):
        assert tc.get_or_set("k", broken, ttl=1) == "old"
        _wait_until(lambda: "background refresh" in caplog.text)
    assert tc.get_or_set("k", broken, ttl=1) == "old"
    tc.close()


def test_stale_while_revalidate_async() -> None:
    clock = FakeClock()
    tc = TieredCache(_model_bytes(clock, None), clock=clock, stale_ttl=5.0)
    version = [0]

    async def compute() -> dict[str, int]:
        version[0] += 1
        await asyncio.sleep(0)
        return {"v": version[0]}

    async def main() -> None:
        assert await tc.aget_or_set("k", compute, ttl=10) == {"v": 1}
        clock.advance(12)
        assert await tc.aget_or_set("k", compute, ttl=10) == {"v": 1}
        while tc.stats()["in_flight"]:
            await asyncio.sleep(0.001)
        assert await tc.aget_or_set("k", compute, ttl=10) == {"v": 2}
        clock.advance(16)
        assert await tc.aget("k", MISSING) is MISSING
        await tc.aclose()

    asyncio.run(main())
    assert version[0] == 2


# --- savings, alerts --------------------------------------------------------------------


def test_savings_accounting() -> None:
    clock = FakeClock()
    tc = TieredCache(_model_pair(clock, None), clock=clock, cost_per_call=0.002)

    def compute() -> int:
        time.sleep(0.01)
        return 1

    for i in range(5):
        tc.get_or_set(i, compute)
    for _ in range(4):
        for i in range(5):
            tc.get_or_set(i, compute)
    s = tc.stats()
    assert s["computes"] == 5
    assert s["compute_seconds"] >= 0.05
    assert s["hits"] == 20
    assert s["misses"] == 5
    assert s["hit_ratio"] == pytest.approx(0.8)
    mean = s["compute_seconds"] / s["computes"]
    assert s["saved_seconds"] == pytest.approx(20 * mean)
    assert s["saved_cost"] == pytest.approx(20 * 0.002)
    assert s["tiers"][0]["hits"] == 20
    assert s["tiers"][0]["misses"] == 5
    assert s["tiers"][1]["misses"] == 5
    assert s["tiers"][0]["stats"]["sets"] == 5  # each tier's own stats


def test_per_tier_hits() -> None:
    clock = FakeClock()
    l1, l2 = ModelTier(clock, name="l1"), ModelTier(clock, name="l2")
    tc = TieredCache([l1, l2], clock=clock, promote=False)
    l2.set("b", 2)
    l1.set("a", 1)
    for k in ("a", "b", "b", "c"):
        tc.get(k)
    s = tc.stats()
    assert (s["requests"], s["hits"], s["misses"]) == (4, 3, 1)
    assert [(t["hits"], t["misses"]) for t in s["tiers"]] == [(1, 3), (2, 1)]
    assert s["tiers"][1]["hit_ratio"] == pytest.approx(2 / 3)


def test_alert_fires_once_then_rate_limited() -> None:
    clock = FakeClock()
    seen: list[dict[str, Any]] = []
    tc = TieredCache(
        _model_pair(clock, None),
        clock=clock,
        alert_below=0.5,
        alert_min_requests=20,
        on_alert=seen.append,
    )
    for i in range(19):
        tc.get(i)
    assert seen == []  # fewer than alert_min_requests
    for i in range(100):
        tc.get(i)
    assert len(seen) == 1
    assert seen[0]["requests"] == 20
    assert seen[0]["hit_ratio"] == 0.0
    clock.advance(299)
    tc.get("x")
    assert len(seen) == 1
    clock.advance(1)
    tc.get("x")
    assert len(seen) == 2
    assert tc.stats()["alerts"] == 2


def test_no_alert_when_hit_ratio_is_fine() -> None:
    clock = FakeClock()
    seen: list[dict[str, Any]] = []
    tc = TieredCache(
        _model_pair(clock, None),
        clock=clock,
        alert_below=0.5,
        alert_min_requests=10,
        on_alert=seen.append,
    )
    tc.set("k", 1)
    for _ in range(100):
        tc.get("k")
    tc.get("missing")
    assert seen == []


def test_default_alert_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    tc = TieredCache(
        _model_pair(FakeClock(), None), alert_below=0.9, alert_min_requests=5, name="api"
    )
    with caplog.at_level(logging.WARNING, logger="overdrive.cache"):
        for i in range(10):
            tc.get(i)
    assert [r.getMessage() for r in caplog.records] == [
        "cache api: hit ratio 0.0% over 5 requests is below alert_below=90.0%"
    ]


# --- failing tiers, arguments, lifecycle ------------------------------------------------


class _FlakyTier(ModelTier):
    """A tier whose backend is down while ``down`` is set (as RedisTier raises)."""

    down = False

    def lookup(self, key: Any) -> Any:
        if self.down:
            raise CacheUnavailable("backend down")
        return super().lookup(key)

    def set(self, key: Any, value: Any, ttl: Any = None, tags: Any = ()) -> None:
        if self.down:
            raise CacheUnavailable("backend down")
        super().set(key, value, ttl, tags)


def test_unavailable_tier_is_skipped_and_counted() -> None:
    clock = FakeClock()
    l1, l2, l3 = (
        ModelTier(clock, name="l1"),
        _FlakyTier(clock, name="l2"),
        ModelTier(clock, name="l3"),
    )
    tc = TieredCache([l1, l2, l3], clock=clock)
    l2.down = True
    assert tc.get_or_set("k", lambda: 7) == 7
    assert l3.lookup("k") == (7, None)
    l1.clear()
    assert tc.get("k") == 7
    s = tc.stats()
    assert s["tiers"][1]["errors"] >= 3
    l2.down = False
    tc.set("j", 1)
    assert l2.lookup("j") == (1, None)


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"write": "sometimes"}, ConfigurationError, "write policy"),
        ({"write": ["through"]}, ConfigurationError, "write"),
        ({"write": 3}, InputTypeError, "write"),
        ({"promote": 1}, InputTypeError, "promote"),
        ({"negative_ttl": 0}, ConfigurationError, "negative_ttl"),
        ({"negative_ttl": "1"}, InputTypeError, "negative_ttl"),
        ({"stale_ttl": float("nan")}, ConfigurationError, "stale_ttl"),
        ({"stale_ttl": float("inf")}, ConfigurationError, "stale_ttl"),
        ({"cost_per_call": -1}, ConfigurationError, "cost_per_call"),
        ({"alert_below": 1.5}, ConfigurationError, "alert_below"),
        ({"alert_below": "low"}, InputTypeError, "alert_below"),
        ({"alert_min_requests": 0}, ConfigurationError, "alert_min_requests"),
        ({"alert_min_requests": 1.0}, InputTypeError, "alert_min_requests"),
        ({"on_alert": 5}, InputTypeError, "on_alert"),
        ({"lock_timeout_s": -1}, ConfigurationError, "lock_timeout_s"),
        ({"lock_timeout_s": None}, ConfigurationError, "lock_timeout_s"),
        ({"distributed_lock": "yes"}, InputTypeError, "distributed_lock"),
        ({"name": 5}, InputTypeError, "name"),
        ({"clock": 5}, InputTypeError, "clock"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], word: str) -> None:
    with pytest.raises(exc, match=word):
        TieredCache(_model_pair(FakeClock(), None), **kwargs)


def test_bad_tiers_and_call_arguments() -> None:
    with pytest.raises(ConfigurationError, match="tiers"):
        TieredCache([])
    with pytest.raises(InputTypeError, match=r"tiers\[1\]"):
        TieredCache([ModelTier(FakeClock()), object()])  # type: ignore[list-item]
    with pytest.raises(InputTypeError, match="tiers"):
        TieredCache(ModelTier(FakeClock()))  # type: ignore[arg-type]
    tc = TieredCache(_model_pair(FakeClock(), None))
    with pytest.raises(ConfigurationError, match="ttl"):
        tc.set("k", 1, ttl=-1)
    with pytest.raises(InputTypeError, match="tags"):
        tc.set("k", 1, tags="abc")
    with pytest.raises(InputTypeError, match="tags"):
        tc.set("k", 1, tags=[1])
    with pytest.raises(InputTypeError, match="compute"):
        tc.get_or_set("k", 5)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="tag"):
        tc.invalidate_tag(5)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError):
        tc.get(["unhashable"])


def test_async_api() -> None:
    clock = FakeClock()
    tiers = _model_bytes(clock, None)
    tc = TieredCache(tiers, clock=clock)

    async def main() -> None:
        await tc.aset("k", (1, 2), ttl=5, tags=("t",))
        assert await tc.aget("k") == (1, 2)
        assert await tc.alookup("k") == ((1, 2), 5.0)
        assert await tc.aget_or_set("k", lambda: 0) == (1, 2)
        assert await tc.aget_or_set("n", lambda: 3) == 3  # a sync compute is fine too
        assert await tc.adelete("k")
        assert not await tc.adelete("k")
        assert await tc.aget("k", MISSING) is MISSING
        async with tc as same:
            assert same is tc

    asyncio.run(main())
    assert all(t.closed for t in tiers)


def test_close_and_context_manager_close_every_tier() -> None:
    clock = FakeClock()
    tiers = _model_three(clock, None)
    with TieredCache(tiers, clock=clock) as tc:
        tc.set("k", 1)
        assert repr(tc).startswith("TieredCache(name='cache'")
    assert all(t.closed for t in tiers)
    tc.close()  # idempotent


def test_clear_flush_contains() -> None:
    clock = FakeClock()
    tiers = _model_pair(clock, None)
    tc = TieredCache(tiers, clock=clock)
    tc.set("a", 1)
    assert "a" in tc
    tc.flush()  # tiers without flush are skipped
    tc.clear()
    assert "a" not in tc
    assert all(t.stats()["entries"] == 0 for t in tiers)


# --- distributed lock (a model of RedisTier's lock shared by two caches) ---------------------


class _LockingTier(ModelTier):
    """A shared tier with acquire_lock/release_lock, as RedisTier offers."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock, name="shared", serializer=MsgpackSerializer())
        self._locks: dict[Any, int] = {}
        self._tokens = 0
        self._lock_guard = threading.Lock()

    def acquire_lock(self, key: Any, ttl_s: float) -> int | None:
        with self._lock_guard:
            if key in self._locks:
                return None
            self._tokens += 1
            self._locks[key] = self._tokens
            return self._tokens

    def release_lock(self, key: Any, token: int) -> bool:
        with self._lock_guard:
            if self._locks.get(key) == token:
                del self._locks[key]
                return True
            return False


def test_distributed_lock_one_compute_across_caches() -> None:
    clock = FakeClock()
    shared = _LockingTier(clock)
    # two "processes": each its own l1 and TieredCache, one shared tier
    caches = [
        TieredCache([ModelTier(clock, name=f"l1-{i}"), shared], clock=clock, distributed_lock=True)
        for i in range(2)
    ]
    gate = _Gate(result="once")
    threads, results, errors = _start_threads(
        10, lambda: caches[threading.get_ident() % 2].get_or_set("k", gate)
    )
    _wait_until(lambda: gate.calls >= 1)
    time.sleep(0.1)
    gate.release.set()
    _join(threads)
    assert errors == []
    assert results == ["once"] * 10
    assert gate.calls == 1
    assert shared._locks == {}


def test_distributed_lock_holder_that_stores_nothing_frees_the_waiters() -> None:
    clock = FakeClock()
    shared = _LockingTier(clock)
    tc = TieredCache(
        [ModelTier(clock), shared], clock=clock, distributed_lock=True, lock_timeout_s=30
    )
    token = shared.acquire_lock("k", 30)  # another process holds the lock
    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(tc.get_or_set("k", lambda: "mine")))
    t.start()
    time.sleep(0.05)
    assert done == []  # waiting for the holder
    shared.release_lock("k", token)  # the holder finished without storing a value
    t.join(10)
    assert done == ["mine"]


def test_distributed_lock_async() -> None:
    clock = FakeClock()
    shared = _LockingTier(clock)
    tc = TieredCache([ModelTier(clock), shared], clock=clock, distributed_lock=True)
    token = shared.acquire_lock("k", 30)

    async def main() -> Any:
        task = asyncio.create_task(tc.aget_or_set("k", lambda: "computed"))
        await asyncio.sleep(0.02)
        assert not task.done()
        shared.set("k", "from the holder")
        shared.release_lock("k", token)
        return await task

    assert asyncio.run(main()) == "from the holder"


# --- real tiers ------------------------------------------------------------------------
# The stacks below use the real tiers merged into this branch; TTLs run on real
# time (Redis keeps its own clock), so these tests use short real TTLs.

RealFactory = Callable[[str, str], list[Any]]


def _real_model_redis(redis_url: str, prefix: str) -> list[Any]:
    return [ModelTier(time.time, name="l1"), RedisTier(redis_url, prefix=prefix, ttl=None)]


def _real_model_redis_disk(redis_url: str, prefix: str) -> list[Any]:
    return [
        ModelTier(time.time, name="l1"),
        RedisTier(redis_url, prefix=prefix, ttl=None),
        _disk(time.time),
    ]


def _real_memory_redis(redis_url: str, prefix: str) -> list[Any]:
    return [MemoryTier(max_entries=10_000), RedisTier(redis_url, prefix=prefix, ttl=None)]


def _real_memory_redis_disk(redis_url: str, prefix: str) -> list[Any]:
    return [
        MemoryTier(max_entries=10_000),
        RedisTier(redis_url, prefix=prefix, ttl=None),
        _disk(time.time),
    ]


REAL_STACKS: dict[str, RealFactory] = {
    "model+redis": _real_model_redis,
    "memory+redis": _real_memory_redis,
    "memory+redis+disk": _real_memory_redis_disk,
}


def over_real_stacks(fn: Callable[..., Any]) -> Callable[..., Any]:
    names = sorted(REAL_STACKS)
    return pytest.mark.parametrize("real", [REAL_STACKS[n] for n in names], ids=names)(fn)


_prefixes = itertools.count()


def _real(real: RealFactory, redis_url: str, **kwargs: Any) -> TieredCache:
    prefix = f"od-tiered-{os.getpid()}-{next(_prefixes)}:"
    return TieredCache(real(redis_url, prefix), **kwargs)


@over_real_stacks
def test_real_round_trip_promotion_and_tags(real: RealFactory, redis_server: str) -> None:
    with _real(real, redis_server) as tc:
        top = tc.tiers[0]
        value = {"ids": [1, 2], "t": (1, "x")}
        tc.set("k", value, ttl=30, tags=("grp",))
        assert tc.get("k") == value
        assert tc.lookup("k")[0] == value  # the tags' envelope never shows through tc
        top.clear()
        got = tc.lookup("k")
        assert got is not None and got[0] == value and 0 < got[1] <= 30
        promoted = top.lookup("k")
        assert promoted is not None and promoted[1] <= got[1]
        assert tc.invalidate_tag("grp") >= 2
        assert tc.get("k", MISSING) is MISSING
        tc.set("d", 1)
        assert tc.delete("d") and not tc.delete("d")


@over_real_stacks
def test_real_promotion_expires_with_the_original(real: RealFactory, redis_server: str) -> None:
    with _real(real, redis_server) as tc:
        top, bottom = tc.tiers[0], tc.tiers[-1]
        bottom.set("k", "v", ttl=0.6)
        time.sleep(0.2)
        assert tc.get("k") == "v"
        hit = top.lookup("k")
        assert hit is not None and hit[1] <= 0.41
        time.sleep(0.45)
        assert tc.get("k", MISSING) is MISSING
        assert top.lookup("k") is None


@over_real_stacks
def test_real_single_flight_threads_and_tasks(real: RealFactory, redis_server: str) -> None:
    with _real(real, redis_server) as tc:
        gate = _Gate(result=[1, "x"])
        threads, results, errors = _start_threads(25, lambda: tc.get_or_set("k", gate, ttl=30))
        _wait_until(lambda: gate.calls == 1)

        async def tasks() -> list[Any]:
            ts = [asyncio.create_task(tc.aget_or_set("k", gate.acall, ttl=30)) for _ in range(25)]
            await asyncio.sleep(0.2)
            gate.release.set()
            return await asyncio.gather(*ts)

        assert asyncio.run(tasks()) == [[1, "x"]] * 25
        _join(threads)
        assert errors == []
        assert results == [[1, "x"]] * 25
        assert gate.calls == 1
        assert tc.tiers[-1].lookup("k")[0] == [1, "x"]


@over_real_stacks
def test_real_negative_and_stale(real: RealFactory, redis_server: str) -> None:
    with _real(real, redis_server, negative_ttl=30, stale_ttl=30) as tc:
        calls: list[int] = []

        def nothing() -> None:
            calls.append(1)

        assert tc.get_or_set("none", nothing) is None
        assert tc.get_or_set("none", nothing) is None
        assert calls == [1]
        versions = iter(["v1", "v2", "v3"])
        assert tc.get_or_set("s", lambda: next(versions), ttl=0.2) == "v1"
        time.sleep(0.25)
        assert tc.get_or_set("s", lambda: next(versions), ttl=0.2) == "v1"  # stale
        _wait_until(lambda: tc.stats()["refreshes"] == 1 and tc.stats()["in_flight"] == 0)
        tc.tiers[0].clear()
        assert tc.get_or_set("s", lambda: next(versions), ttl=0.2) == "v2"


@over_real_stacks
def test_real_distributed_lock_across_caches(real: RealFactory, redis_server: str) -> None:
    prefix = f"od-tiered-lock-{os.getpid()}-{next(_prefixes)}:"
    caches = [TieredCache(real(redis_server, prefix), distributed_lock=True) for _ in range(3)]
    gate = _Gate(result="once")
    threads, results, errors = _start_threads(
        12, lambda: caches[threading.get_ident() % 3].get_or_set("k", gate, ttl=30)
    )
    _wait_until(lambda: gate.calls >= 1)
    time.sleep(0.2)
    gate.release.set()
    _join(threads)
    assert errors == []
    assert results == ["once"] * 12
    assert gate.calls == 1
    for c in caches:
        c.close()


_PROCESS_SCRIPT = """
import sys, time
import redis
from overdrive.cache import RedisTier, TieredCache
url, prefix = sys.argv[1], sys.argv[2]
r = redis.Redis.from_url(url)
tc = TieredCache([RedisTier(url, prefix=prefix)], distributed_lock=True, lock_timeout_s=20)
while not r.exists(prefix + "go"):
    time.sleep(0.001)

def compute():
    r.incr(prefix + "computes")
    time.sleep(0.3)
    return "shared"

print(tc.get_or_set("job", compute, ttl=60))
tc.close()
"""


def test_real_distributed_lock_across_processes(redis_server: str) -> None:
    import redis

    prefix = f"od-tiered-proc-{os.getpid()}-{next(_prefixes)}:"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}  # overdrive: the installed wheel
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_SCRIPT, redis_server, prefix],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    r = redis.Redis.from_url(redis_server)
    time.sleep(1.0)  # let every process start and wait
    r.set(prefix + "go", 1)
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert outs == ["shared"] * 4
    assert int(r.get(prefix + "computes")) == 1
    r.close()


def test_compute_asking_for_its_own_key_does_not_deadlock() -> None:
    tc = TieredCache(_model_pair(FakeClock(), None))
    depth = [0]

    def compute() -> int:
        depth[0] += 1
        if depth[0] < 3:
            return tc.get_or_set("k", compute) + 1
        return 0

    assert tc.get_or_set("k", compute) == 2

    adepth = [0]

    async def acompute() -> int:
        adepth[0] += 1
        if adepth[0] < 3:
            return await tc.aget_or_set("a", acompute) + 1
        return 0

    assert asyncio.run(asyncio.wait_for(tc.aget_or_set("a", acompute), 10)) == 2


def test_close_and_flush_lose_nothing_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    tc = TieredCache([MemoryTier(), DiskTier(path, flush_interval_ms=60_000)])
    tc.set("a", {"x": 1})
    tc.flush()  # the write-behind queue is committed now
    other = DiskTier(path)
    assert other.get("a") == {"x": 1}
    tc.set("b", [2])
    tc.close()  # flushes the queue
    assert other.get("b") == [2]
    other.close()
    with TieredCache([MemoryTier(), DiskTier(path)]) as again:
        assert again.get("a") == {"x": 1}
        assert again.get("b") == [2]


@pytest.mark.parametrize(
    "factory", [_memory_model, _memory_disk], ids=["memory+model", "memory+disk"]
)
def test_threads_and_tasks_hammering_one_cache_see_only_right_values(
    factory: StackFactory,
) -> None:
    """8 threads and 50 tasks mix get/set/delete/get_or_set/invalidate_tag on 20 keys;
    every value read is the one its key always gets (or a miss), counts add up."""
    tc = TieredCache(factory(FakeClock(), None), stale_ttl=1.0)
    want = {k: ("v", k, [k] * 3) for k in range(20)}
    computes = itertools.count()

    def compute(k: int) -> Callable[[], Any]:
        def run() -> Any:
            next(computes)
            return want[k]

        return run

    problems: list[str] = []

    def check(k: int, got: Any) -> None:
        if got is not MISSING and got != want[k]:
            problems.append(f"{k}: {got!r}")

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(400):
            k = rnd.randrange(20)
            op = rnd.random()
            if op < 0.4:
                check(k, tc.get(k, MISSING))
            elif op < 0.6:
                check(k, tc.get_or_set(k, compute(k), ttl=5, tags=(f"t{k % 3}",)))
            elif op < 0.8:
                tc.set(k, want[k], ttl=5, tags=(f"t{k % 3}",))
            elif op < 0.95:
                tc.delete(k)
            else:
                tc.invalidate_tag(f"t{k % 3}")

    async def tasks() -> None:
        async def one(seed: int) -> None:
            rnd = random.Random(seed)
            for _ in range(40):
                k = rnd.randrange(20)
                check(k, await tc.aget_or_set(k, compute(k), ttl=5))
                if rnd.random() < 0.3:
                    await tc.adelete(k)

        await asyncio.gather(*(one(1000 + i) for i in range(50)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    _join(threads)
    tc.close()
    assert problems == []
    s = tc.stats()
    assert s["requests"] == s["hits"] + s["misses"]
    assert s["computes"] == read_count(computes)
    assert s["in_flight"] == 0


@pytest.mark.parametrize("how", ["delete", "invalidate_tag", "clear"])
def test_invalidation_during_a_compute_keeps_its_result_out(how: str) -> None:
    clock = FakeClock()
    tc = TieredCache(_model_pair(clock, None), clock=clock)
    gate = _Gate(result="old data")
    threads, results, _ = _start_threads(3, lambda: tc.get_or_set("k", gate, tags=("t",)))
    _wait_until(lambda: gate.calls == 1)
    time.sleep(0.05)
    if how == "delete":
        tc.delete("k")
    elif how == "invalidate_tag":
        tc.invalidate_tag("t")
    else:
        tc.clear()
    gate.release.set()
    _join(threads)
    assert results == ["old data"] * 3  # the callers that asked get it
    assert tc.get("k", MISSING) is MISSING  # but it may predate the change: not stored
    assert tc.get_or_set("k", lambda: "new data") == "new data"
    assert tc.get("k") == "new data"


def test_invalidation_during_an_async_compute() -> None:
    tc = TieredCache(_model_pair(FakeClock(), None))

    async def main() -> Any:
        started = asyncio.Event()

        async def compute() -> str:
            started.set()
            await asyncio.sleep(0.05)
            return "old"

        task = asyncio.create_task(tc.aget_or_set("k", compute))
        await started.wait()
        await tc.adelete("k")
        return await task

    assert asyncio.run(main()) == "old"
    assert tc.get("k", MISSING) is MISSING


def test_promotion_into_redis_is_capped_by_its_own_ttl(redis_server: str, tmp_path: Any) -> None:
    """A disk hit with a day left is copied into a Redis tier of ttl=5 for at most 5 s."""
    prefix = f"od-tiered-cap-{os.getpid()}:"
    disk = DiskTier(str(tmp_path / "cap.sqlite"), ttl=None)
    redis = RedisTier(redis_server, prefix=prefix, ttl=5.0)
    assert redis.ttl == 5.0
    with TieredCache([MemoryTier(max_entries=100, ttl=2.0), redis, disk]) as tc:
        disk.set("k", "v", ttl=86_400.0)
        assert tc.get("k") == "v"
        in_redis = redis.lookup("k")
        assert in_redis is not None and in_redis[0] == "v"
        assert in_redis[1] is not None and 0 < in_redis[1] <= 5.0
        in_memory = tc.tiers[0].lookup("k")
        assert in_memory is not None and in_memory[1] is not None and in_memory[1] <= 2.0
        redis.clear()
