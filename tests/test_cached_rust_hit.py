"""@cached over a MemoryTier takes its hit path in Rust (``_CachedHit``): it
returns exactly what the bare function returns (the very object on a hit),
typed or not, with keyword arguments, on methods, for envelope entries
(negative_ttl, stale_ttl) and for async functions; its keys are the keys the
Python path builds."""

from __future__ import annotations

import asyncio
import gc
import inspect
import pickle
import sys
import time
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_support import FakeClock
from overdrive._core import _CachedHit
from overdrive.cache import MemoryTier, TieredCache, cached

ARGS = st.one_of(
    st.integers(),
    st.text(max_size=8),
    st.none(),
    st.binary(max_size=8),
    st.tuples(st.integers(), st.text(max_size=3)),
)
TYPED_ARGS = st.one_of(ARGS, st.floats(allow_nan=False), st.booleans())
CALLS = st.tuples(
    st.lists(TYPED_ARGS, max_size=3),
    st.dictionaries(st.sampled_from(["x", "y", "z"]), TYPED_ARGS, max_size=2),
)


def _bare(*args: Any, **kw: Any) -> list[Any]:
    """A fresh object on every call: identity tells a hit from a compute."""
    return [[(type(a).__name__, repr(a)) for a in args], sorted(kw.items(), key=repr)]


def _entry(args: tuple[Any, ...], kw: dict[str, Any], typed: bool) -> Any:
    """What makes two calls one entry: equal arguments (and types, typed)."""
    items = tuple(sorted(kw.items()))
    if typed:
        return (args, items, tuple(map(type, args)), tuple(type(v) for _, v in items))
    return (args, items)


@settings(max_examples=80, deadline=None)
@given(calls=st.lists(CALLS, max_size=12), typed=st.booleans())
def test_sync_hits_return_the_computed_object(
    calls: list[tuple[list[Any], dict[str, Any]]], typed: bool
) -> None:
    f = cached(MemoryTier(max_entries=1000), typed=typed)(_bare)
    assert type(f) is _CachedHit
    first: dict[Any, Any] = {}
    for args, kw in calls + calls:
        got = f(*args, **kw)
        e = _entry(tuple(args), kw, typed)
        if e in first:
            assert got is first[e]  # a hit: the stored object itself
        else:
            assert got == _bare(*args, **kw)
            first[e] = got
        # The key the Rust path looked up is the one cache_key builds.
        assert f.cache.tiers[0].get(f.cache_key(*args, **kw)) is got
    s = f.stats()
    assert s["computes"] == s["misses"] == len(first)
    assert s["hits"] == 2 * len(calls) - len(first)


@settings(max_examples=40, deadline=None)
@given(calls=st.lists(CALLS, max_size=8), typed=st.booleans())
def test_async_hits_return_the_computed_object(
    calls: list[tuple[list[Any], dict[str, Any]]], typed: bool
) -> None:
    async def fn(*args: Any, **kw: Any) -> Any:
        return _bare(*args, **kw)

    f = cached(MemoryTier(max_entries=1000), typed=typed)(fn)
    assert inspect.iscoroutinefunction(f)

    async def main() -> None:
        first: dict[Any, Any] = {}
        for args, kw in calls + calls:
            got = await f(*args, **kw)
            e = _entry(tuple(args), kw, typed)
            if e in first:
                assert got is first[e]
            else:
                assert got == _bare(*args, **kw)
                first[e] = got
        assert f.stats()["computes"] == len(first)

    asyncio.run(main())


def test_typed_and_untyped_entries() -> None:
    typed = cached(MemoryTier())(lambda x: [x])
    assert typed(1) == [1] and typed(1.0) == [1.0] and typed(True) == [True]
    assert type(typed(1.0)[0]) is float
    assert typed.stats()["computes"] == 3
    untyped = cached(MemoryTier(), typed=False)(lambda x: [x])
    assert untyped(1) == [1]
    assert type(untyped(1.0)[0]) is int  # one entry for equal arguments
    assert untyped.stats()["computes"] == 1


def test_envelope_entries_negative_and_stale() -> None:
    clock = FakeClock()
    tc = TieredCache([MemoryTier(clock=clock)], clock=clock)
    calls: list[str] = []

    @cached(tc, ttl=10, negative_ttl=1, stale_ttl=5)
    def find(name: str) -> str | None:
        calls.append(name)
        return None if name == "nobody" else name.upper()

    assert type(find) is _CachedHit
    assert find("nobody") is None
    assert find("nobody") is None  # the negative entry, served by the envelope path
    assert calls == ["nobody"]
    clock.advance(2)
    assert find("nobody") is None
    assert calls == ["nobody", "nobody"]
    assert find("ann") == "ANN"
    clock.advance(11)  # stale: served, refreshed in the background
    assert find("ann") == "ANN"
    deadline = time.monotonic() + 10
    while find.stats()["refreshes"] < 1 or tc.stats()["in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert calls == ["nobody", "nobody", "ann", "ann"]
    tc.close()


def test_wrapper_attributes_methods_and_invalidate() -> None:
    class Greeter:
        def __init__(self, name: str) -> None:
            self.name = name

        @cached(MemoryTier())
        def greet(self, other: str) -> str:
            """Say hello."""
            return f"{self.name} greets {other}"

    g = Greeter("ann")
    assert g.greet("bob") == "ann greets bob"
    assert g.greet("bob") == "ann greets bob"
    assert Greeter.greet(g, "bob") == "ann greets bob"
    f = Greeter.__dict__["greet"]
    assert f.__name__ == "greet" and f.__doc__ == "Say hello."
    assert f.__wrapped__.__name__ == "greet"
    assert list(inspect.signature(f).parameters) == ["self", "other"]
    assert f.stats()["hits"] == 2 and f.stats()["computes"] == 1
    assert f.invalidate(g, "bob") is True
    assert g.greet("bob") == "ann greets bob"
    assert f.stats()["computes"] == 2


def test_unhashable_argument_still_names_it() -> None:
    @cached(MemoryTier())
    def f(a: Any) -> int:
        return 1

    with pytest.raises(TypeError, match="argument 'a'"):
        f([1])
    with pytest.raises(TypeError, match="argument 'a'"):
        f(a=[1])


def test_no_reference_leaks_and_collectable() -> None:
    value = object()
    f = cached(MemoryTier())(lambda x: value)
    f(1)
    before = sys.getrefcount(value)
    for _ in range(1000):
        assert f(1) is value
    assert sys.getrefcount(value) == before
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None


def test_a_cycle_through_the_wrapper_is_collected() -> None:
    def make() -> weakref.ref[Any]:
        holder: dict[str, Any] = {}

        @cached(MemoryTier())
        def f(x: int) -> Any:
            return holder["f"]  # f's function -> holder -> the wrapper

        holder["f"] = f
        assert f(1) is f and f(1) is f
        return weakref.ref(f)

    ref = make()
    gc.collect()
    assert ref() is None


@cached(MemoryTier())
def _module_level(x: int) -> int:
    return x + 1


def test_pickled_by_reference_as_a_function_is() -> None:
    assert type(_module_level) is _CachedHit
    assert pickle.loads(pickle.dumps(_module_level)) is _module_level
    assert _module_level(1) == 2
