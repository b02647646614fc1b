"""@cached: returns exactly what the bare function returns (sync and async),
stable keys across processes, argument errors naming the argument, the
wrapper's attributes, single-flight and savings through the decorator."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_support import FakeClock, ModelTier, keyed_function
from overdrive.cache import (
    MISSING,
    DiskTier,
    MemoryTier,
    MsgpackSerializer,
    RedisTier,
    TieredCache,
    cached,
    stable_key,
)
from overdrive.exceptions import ConfigurationError, InputTypeError

ROOT = Path(__file__).resolve().parent.parent

# Values of different types here never compare equal, so the default key (which,
# like functools.lru_cache, lets 1, 1.0 and True share an entry) keeps them apart.
ARGS = st.one_of(
    st.integers(),
    st.text(max_size=8),
    st.none(),
    st.binary(max_size=8),
    st.tuples(st.integers(), st.text(max_size=3)),
)
# With typed=True, numbers that compare equal across types are fine too.
TYPED_ARGS = st.one_of(ARGS, st.floats(allow_nan=False), st.booleans())


def _stack(bytes_tier: bool = False, memory: bool = False) -> TieredCache:
    """A two-tier cache: a ModelTier or a real MemoryTier over a model tier that
    stores objects or bytes (stable keys, msgpack)."""
    clock = FakeClock()
    l1: Any = MemoryTier(clock=clock) if memory else ModelTier(clock, name="l1")
    l2 = ModelTier(clock, name="l2", serializer=MsgpackSerializer() if bytes_tier else None)
    return TieredCache([l1, l2], clock=clock)


def _bare(a: Any, b: Any = 0, *rest: Any, **kw: Any) -> Any:
    return [repr(a), repr(b), [repr(r) for r in rest], sorted((k, repr(v)) for k, v in kw.items())]


@st.composite
def _calls(draw: st.DrawFn, typed: bool) -> list[tuple[list[Any], dict[str, Any]]]:
    args = TYPED_ARGS if typed else ARGS
    call = st.tuples(
        st.lists(args, min_size=1, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y", "z"]), args, max_size=2),
    )
    out: list[tuple[list[Any], dict[str, Any]]] = draw(st.lists(call, max_size=12))
    return out


@settings(max_examples=80, deadline=None)
@given(data=st.data(), typed=st.booleans(), bytes_tier=st.booleans(), memory=st.booleans())
def test_sync_returns_what_the_function_returns(
    data: st.DataObject, typed: bool, bytes_tier: bool, memory: bool
) -> None:
    calls = data.draw(_calls(typed))
    counts: dict[Any, int] = {}

    def fn(*args: Any, **kw: Any) -> Any:
        k = (tuple(map(repr, args)), tuple(sorted((a, repr(b)) for a, b in kw.items())))
        counts[k] = counts.get(k, 0) + 1
        return _bare(*args, **kw)

    f = cached(_stack(bytes_tier, memory), ttl=60, typed=typed)(fn)
    for args, kw in calls + calls:  # every call twice: the second is a hit
        assert f(*args, **kw) == _bare(*args, **kw)
    s = f.stats()
    assert s["hits"] + s["misses"] == 2 * len(calls)
    assert s["computes"] == s["misses"]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), typed=st.booleans(), bytes_tier=st.booleans(), memory=st.booleans())
def test_async_returns_what_the_function_returns(
    data: st.DataObject, typed: bool, bytes_tier: bool, memory: bool
) -> None:
    calls = data.draw(_calls(typed))

    async def fn(*args: Any, **kw: Any) -> Any:
        await asyncio.sleep(0)
        return _bare(*args, **kw)

    f = cached(_stack(bytes_tier, memory), ttl=60, typed=typed)(fn)

    async def main() -> None:
        for args, kw in calls + calls:
            assert await f(*args, **kw) == await fn(*args, **kw)

    asyncio.run(main())


def test_equal_arguments_of_other_types_are_other_entries_unless_typed_is_off() -> None:
    def double(x: Any) -> Any:
        return x * 2

    untyped = cached(TieredCache([ModelTier(FakeClock())]), typed=False)(double)
    assert untyped(1) == 2
    assert type(untyped(1.0)) is int  # 1 == 1.0: one entry, as with functools.lru_cache
    typed = cached(TieredCache([ModelTier(FakeClock())]))(double)  # typed=True by default
    assert typed(1) == 2
    assert type(typed(1.0)) is float
    assert typed(True) == 2
    assert typed.stats()["computes"] == 3
    assert stable_key(typed.cache_key(1.0))  # typed keys still have a stable encoding


def test_default_cache_is_a_private_memory_tier() -> None:
    @cached
    def bare(x: int) -> int:
        return x + 1

    @cached(ttl=30)
    async def coro(x: int) -> int:
        return x + 2

    assert bare(1) == 2 and bare(1) == 2
    assert asyncio.run(coro(1)) == 3
    for f in (bare, coro):
        (tier,) = f.cache.tiers
        assert isinstance(tier, MemoryTier)
        assert tier.max_entries == 10_000
    assert bare.cache is not coro.cache
    assert bare.stats()["hits"] == 1
    hit = coro.cache.lookup(coro.cache_key(1))
    assert hit is not None and hit[0] == 3 and 0 < hit[1] <= 30


def test_hits_do_not_call_the_function() -> None:
    calls: list[int] = []

    @cached(_stack(), ttl=60)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(4), square(x=3), square(x=3)] == [9, 9, 16, 9, 9]
    assert calls == [3, 4, 3]  # square(3) and square(x=3) are different keys
    s = square.stats()
    assert (s["hits"], s["misses"], s["computes"]) == (2, 3, 3)


def test_key_is_stable_across_processes() -> None:
    tc = _stack(bytes_tier=True)
    f = cached(tc)(keyed_function)
    args = (1, "two", (3.5, b"4"), None)
    kw = {"flag": True, "name": "x"}
    key = f.cache_key(*args, **kw)
    items = (("flag", True), ("name", "x"))
    types = (int, str, tuple, type(None), bool, str)  # the arguments' types, kwargs sorted
    assert key == ("cache_support.keyed_function", args, items, types)
    script = (
        "from overdrive.cache import cached, stable_key, TieredCache\n"
        "from cache_support import FakeClock, ModelTier, keyed_function\n"
        "f = cached(TieredCache([ModelTier(FakeClock())]))(keyed_function)\n"
        "print(stable_key(f.cache_key(1, 'two', (3.5, b'4'), None, name='x', flag=True)))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "tests"),  # overdrive itself: the installed wheel
        "PYTHONHASHSEED": "12345",
    }
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.rstrip("\n") == stable_key(key)


def test_unhashable_argument_names_it() -> None:
    @cached(_stack())
    def f(a: int, items: Any = None, *rest: Any, **kw: Any) -> int:
        return 1

    with pytest.raises(
        InputTypeError, match=r"argument 'items' \(a builtins.list\) is not hashable"
    ):
        f(1, [1, 2])
    with pytest.raises(TypeError, match="argument 'opts'"):
        f(1, opts={"a": 1})
    with pytest.raises(TypeError, match=r"argument '\*args\[3\]'"):
        f(1, 2, 3, {4})
    assert f.stats()["computes"] == 0


def test_unencodable_argument_with_a_byte_tier_names_it() -> None:
    class Point:
        def __hash__(self) -> int:
            return 1

    calls: list[int] = []

    @cached(_stack(bytes_tier=True))
    def f(p: Any) -> int:
        calls.append(1)
        return 1

    with pytest.raises(InputTypeError, match=r"argument 'p' .* has no stable key encoding"):
        f(Point())
    assert calls == []  # refused before computing


def test_unhashable_argument_async() -> None:
    @cached(_stack())
    async def f(a: Any) -> int:
        return 1

    with pytest.raises(InputTypeError, match="argument 'a'"):
        asyncio.run(f([1]))


def test_wrapper_attributes() -> None:
    tc = _stack()

    def plain(x: int) -> int:
        """Doc of plain."""
        return x + 1

    async def coro(x: int) -> int:
        """Doc of coro."""
        return x + 1

    f = cached(tc, ttl=5)(plain)
    g = cached(tc, ttl=5)(coro)
    assert f.__name__ == "plain" and f.__doc__ == "Doc of plain." and f.__wrapped__ is plain
    assert g.__name__ == "coro" and g.__wrapped__ is coro
    assert inspect.iscoroutinefunction(g) and not inspect.iscoroutinefunction(f)
    assert f.cache is tc and g.cache is tc
    assert f(1) == 2
    assert tc.get(f.cache_key(1)) == 2
    assert f.invalidate(1) is True
    assert f.invalidate(1) is False
    assert tc.get(f.cache_key(1), MISSING) is MISSING
    assert set(tc.stats()["functions"]) == {
        f"{__name__}.{plain.__qualname__}",
        f"{__name__}.{coro.__qualname__}",
    }


def test_async_wrapper_works_with_asyncio_primitives() -> None:
    @cached(_stack(), ttl=5)
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def main() -> None:
        assert await double(2) == 4  # miss
        assert await double(2) == 4  # hit
        assert await asyncio.gather(double(2), double(3)) == [4, 6]
        assert await asyncio.wait_for(double(2), 1) == 4
        assert await asyncio.create_task(double(2)) == 4
        assert await asyncio.ensure_future(double(3)) == 6

    asyncio.run(main())


def test_custom_key_function() -> None:
    tc = _stack()

    @cached(tc, key=lambda user_id, **_: f"user:{user_id}")
    def load(user_id: int, verbose: bool = False) -> dict[str, int]:
        return {"id": user_id}

    assert load(7) == {"id": 7}
    assert load(7, verbose=True) == {"id": 7}  # the same key
    assert load.stats()["hits"] == 1
    assert tc.get("user:7") == {"id": 7}
    assert load.cache_key(7) == "user:7"


def test_tags_negative_ttl_and_stale_ttl_per_function() -> None:
    clock = FakeClock()
    tc = TieredCache([ModelTier(clock), ModelTier(clock)], clock=clock)
    calls: list[str] = []

    @cached(tc, ttl=10, tags=("users",), negative_ttl=1, stale_ttl=5)
    def find(name: str) -> str | None:
        calls.append(name)
        return None if name == "nobody" else name.upper()

    assert find("ann") == "ANN"
    assert find("nobody") is None
    assert find("nobody") is None
    assert calls == ["ann", "nobody"]
    clock.advance(11)  # ann is stale: served, refreshed in the background
    assert find("ann") == "ANN"
    deadline = time.monotonic() + 10
    while find.stats()["refreshes"] < 1 or tc.stats()["in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert calls == ["ann", "nobody", "ann"]
    assert tc.invalidate_tag("users") >= 1
    assert find("ann") == "ANN"
    assert calls == ["ann", "nobody", "ann", "ann"]
    assert find("nobody") is None  # its negative entry (1 s) expired long ago
    assert calls[-1] == "nobody"
    tc.close()


def test_tier_as_cache_argument() -> None:
    tier = ModelTier(FakeClock(), name="solo")

    @cached(tier, ttl=3)
    def f(x: int) -> int:
        return -x

    assert f(2) == -2
    assert tier.lookup(f.cache_key(2)) == (-2, 3.0)
    assert isinstance(f.cache, TieredCache) and f.cache.tiers == (tier,)


def test_single_flight_through_the_decorator() -> None:
    calls: list[int] = []
    release = threading.Event()

    @cached(_stack(), ttl=60)
    def slow(x: int) -> int:
        calls.append(x)
        release.wait(30)
        return x * 10

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(5))) for _ in range(50)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while not calls:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(30)
    assert results == [50] * 50
    assert calls == [5]


def test_savings_and_cost_through_the_decorator() -> None:
    tc = _stack()

    @cached(tc, cost_per_call=0.01)
    def work(x: int) -> int:
        time.sleep(0.005)
        return x

    for _ in range(5):
        for x in range(4):
            work(x)
    s = work.stats()
    assert (s["hits"], s["computes"]) == (16, 4)
    assert s["saved_seconds"] == pytest.approx(16 * s["compute_seconds"] / 4)
    assert s["saved_cost"] == pytest.approx(0.16)
    total = tc.stats()
    assert total["saved_cost"] == pytest.approx(0.16)
    assert total["hits"] == 16


def test_alert_fires_once_through_the_decorator() -> None:
    clock = FakeClock()
    seen: list[dict[str, Any]] = []
    tc = TieredCache(
        [ModelTier(clock)],
        clock=clock,
        alert_below=0.5,
        alert_min_requests=50,
        on_alert=seen.append,
    )

    @cached(tc)
    def ident(x: int) -> int:
        return x

    for x in range(500):  # every call a miss
        ident(x)
    assert len(seen) == 1
    assert seen[0]["hit_ratio"] == 0.0
    assert seen[0]["functions"][f"{__name__}.{ident.__qualname__}"]["misses"] >= 49


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"ttl": 0}, ConfigurationError, "ttl"),
        ({"ttl": "1"}, InputTypeError, "ttl"),
        ({"tags": "users"}, InputTypeError, "tags"),
        ({"key": 5}, InputTypeError, "key"),
        ({"negative_ttl": -1}, ConfigurationError, "negative_ttl"),
        ({"stale_ttl": float("nan")}, ConfigurationError, "stale_ttl"),
        ({"cost_per_call": -0.5}, ConfigurationError, "cost_per_call"),
        ({"typed": 1}, InputTypeError, "typed"),
    ],
)
def test_bad_decorator_arguments(kwargs: dict[str, Any], exc: type[Exception], word: str) -> None:
    with pytest.raises(exc, match=word):
        cached(_stack(), **kwargs)


def test_bad_cache_argument() -> None:
    with pytest.raises(InputTypeError, match="cache must be"):
        cached(5)  # type: ignore[call-overload]
    with pytest.raises(InputTypeError, match="decorates a function"):
        cached(_stack())(5)  # type: ignore[type-var]


# --- real tiers ------------------------------------------------------------------------

_prefixes = itertools.count()


@pytest.fixture(params=["redis", "redis+disk"])
def real_caches(
    request: pytest.FixtureRequest, redis_server: str, tmp_path: Path
) -> Iterator[Callable[[], TieredCache]]:
    """Makes TieredCaches that share one Redis prefix (and one disk file): like
    processes sharing the lower tiers, each with its own first tier."""
    prefix = f"od-cached-{os.getpid()}-{next(_prefixes)}:"
    made: list[TieredCache] = []

    def make() -> TieredCache:
        tiers: list[Any] = [MemoryTier(), RedisTier(redis_server, prefix=prefix)]
        if request.param == "redis+disk":
            tiers.append(DiskTier(tmp_path / "shared.db", flush_interval_ms=5))
        tc = TieredCache(tiers)
        made.append(tc)
        return tc

    yield make
    for tc in made:
        tc.close()


def test_cached_on_real_tiers(real_caches: Callable[[], TieredCache]) -> None:
    first, second = real_caches(), real_caches()
    calls: list[Any] = []

    def report(n: int, tags: tuple[str, ...] = ()) -> dict[str, Any]:
        calls.append(n)
        return {"n": n, "tags": tags, "big": 2**70, "set": {1, 2}}

    a = cached(first, ttl=60)(report)
    b = cached(second, ttl=60)(report)
    assert a(1, tags=("x",)) == report(1, tags=("x",))
    assert b(1, tags=("x",)) == report(1, tags=("x",))  # from the shared tiers
    assert len(calls) == 3  # one compute by a, two bare calls

    async def arun(n: int) -> list[int]:
        await asyncio.sleep(0)
        calls.append(n)
        return [n, n]

    fa = cached(first, ttl=60)(arun)
    fb = cached(second, ttl=60)(arun)

    async def main() -> None:
        assert await asyncio.gather(*[fa(7) for _ in range(20)]) == [[7, 7]] * 20
        assert await fb(7) == [7, 7]

    calls.clear()
    asyncio.run(main())
    assert calls == [7]
    assert fb.stats()["hits"] == 1
    assert first.stats()["functions"]


def test_bench_rows_run() -> None:
    """The hit-path benchmark runs and states both goals (no timing is asserted)."""
    from overdrive.bench.suites import BenchConfig, SuiteResult
    from overdrive.bench.suites._common import VALUE_COLUMNS
    from overdrive.bench.suites.cache_decorator import decorator_rows

    result = SuiteResult("cache", VALUE_COLUMNS)
    decorator_rows(BenchConfig(quick=True, repeats=1), result)
    impls = {(r["case"], r["impl"]) for r in result.rows}
    assert ("@cached sync", "functools.lru_cache") in impls
    assert ("@cached async", "overdrive @cached") in impls
    assert [c.goal for c in result.checks] == ["<= 400 ns", "<= 600 ns"]
    assert all(r["value"] > 0 for r in result.rows)


def test_key_function_errors_propagate_once() -> None:
    calls: list[int] = []

    def bad_key(x: int) -> str:
        calls.append(x)
        raise LookupError("no key")

    @cached(_stack(), key=bad_key)
    def f(x: int) -> int:
        return x

    @cached(_stack(), key=bad_key)
    async def g(x: int) -> int:
        return x

    with pytest.raises(LookupError, match="no key"):
        f(1)
    with pytest.raises(LookupError, match="no key"):
        asyncio.run(g(2))
    assert calls == [1, 2]
