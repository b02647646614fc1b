"""MemoryTier basics: construction errors, get/set/delete, TTL on an injected
clock, tags, bounds, GC of cycles through values, re-entrant keys, threads.

The full property suite lives in ``test_memory_tier.py``; this file is the
binding author's own check of each promise in the API spec.
"""

from __future__ import annotations

import gc
import math
import threading
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overdrive.cache import MISSING, MemoryTier, Tier
from overdrive.exceptions import (
    ConfigurationError,
    InputTypeError,
    OverdriveError,
    ReentrantCallError,
)


class Clock:
    """A settable clock (seconds)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- construction ----------------------------------------------------------------


def test_defaults() -> None:
    c = MemoryTier()
    assert (c.max_bytes, c.max_entries, c.ttl, c.policy, c.name) == (
        1 << 30,
        None,
        None,
        "tinylfu",
        "memory",
    )
    assert isinstance(c, Tier)
    assert "MemoryTier(" in repr(c) and "tinylfu" in repr(c)
    c2 = MemoryTier(max_entries=5, ttl=2.5, policy="lru", name="l1")
    assert (c2.max_bytes, c2.max_entries, c2.ttl, c2.policy, c2.name) == (None, 5, 2.5, "lru", "l1")


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"max_bytes": 0}, ConfigurationError, "max_bytes=0"),
        ({"max_bytes": -1}, ConfigurationError, "max_bytes=-1"),
        ({"max_entries": 0}, ConfigurationError, "max_entries=0"),
        ({"max_entries": 2**40}, ConfigurationError, "max_entries"),
        ({"max_bytes": "1"}, InputTypeError, "max_bytes"),
        ({"max_bytes": 1.5}, InputTypeError, "max_bytes"),
        ({"ttl": 0}, ConfigurationError, "ttl=0"),
        ({"ttl": -1.0}, ConfigurationError, "ttl=-1.0"),
        ({"ttl": math.nan}, ConfigurationError, "ttl=nan"),
        ({"ttl": math.inf}, ConfigurationError, "ttl=inf"),
        ({"ttl": "5"}, InputTypeError, "ttl"),
        ({"policy": "fifo"}, ConfigurationError, "policy"),
        ({"policy": 1}, InputTypeError, "policy"),
        ({"weigher": 3}, InputTypeError, "weigher"),
        ({"clock": "now"}, InputTypeError, "clock"),
        ({"name": 3}, InputTypeError, "name"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], words: str) -> None:
    with pytest.raises(exc, match=words):
        MemoryTier(**kwargs)


def test_bad_call_arguments() -> None:
    c = MemoryTier(max_entries=10)
    with pytest.raises(InputTypeError, match="hashable"):
        c.set([1], 1)
    with pytest.raises(InputTypeError, match="hashable"):
        c.get({})
    with pytest.raises(ConfigurationError, match="ttl=0"):
        c.set("k", 1, ttl=0)
    with pytest.raises(ConfigurationError, match="ttl=nan"):
        c.set("k", 1, ttl=math.nan)
    with pytest.raises(InputTypeError, match="tags"):
        c.set("k", 1, tags="abc")
    with pytest.raises(InputTypeError, match="tags"):
        c.set("k", 1, tags=[1])
    with pytest.raises(InputTypeError, match="tag"):
        c.invalidate_tag(1)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="items"):
        c.set_many([1, 2])  # type: ignore[arg-type]
    assert len(c) == 0
    bad = MemoryTier(max_bytes=100, weigher=lambda v: -1)
    with pytest.raises(ConfigurationError, match="weigher"):
        bad.set("k", 1)
    bad2 = MemoryTier(max_bytes=100, weigher=lambda v: "big")
    with pytest.raises(InputTypeError, match="weigher"):
        bad2.set("k", 1)


# --- get / set / delete ------------------------------------------------------------


def test_get_set_delete_and_mapping_protocol() -> None:
    c = MemoryTier(max_entries=100)
    assert c.get("a") is None
    assert c.get("a", MISSING) is MISSING
    c.set("a", 1)
    c["b"] = None
    assert c.get("a") == 1
    assert c.lookup("b") == (None, None)
    assert c["a"] == 1 and "a" in c and "zz" not in c
    with pytest.raises(KeyError):
        c["zz"]
    assert sorted(c) == ["a", "b"]
    assert len(c) == 2
    assert c.delete("a") is True and c.delete("a") is False
    del c["b"]
    with pytest.raises(KeyError):
        del c["b"]
    c.set_many({"x": 1, "y": 2})
    assert c.get_many(["x", "y", "z"]) == {"x": 1, "y": 2}
    s = c.stats()
    assert s["sets"] == 4 and s["deletes"] == 2 and s["errors"] == 0
    assert s["entries"] == 2 and s["policy"] == "tinylfu"


def test_dict_key_semantics_and_identity() -> None:
    c = MemoryTier(max_entries=100)
    c.set(1, "one")
    assert c.get(1.0) == "one" and c.get(True) == "one"
    c.set((1, "a"), "t")
    assert c.get((1, "a")) == "t"
    value = object()
    c.set("obj", value)
    assert c.get("obj") is value  # stored by reference


def test_values_equal_what_was_stored_lru_model() -> None:
    c = MemoryTier(max_entries=3, policy="lru")
    for k in "abc":
        c.set(k, k.upper())
    c.get("a")  # b is now the least recent
    c.set("d", "D")
    assert "b" not in c
    assert [c.get(k) for k in "acd"] == ["A", "C", "D"]
    assert c.stats()["evictions"] == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["set", "get", "delete"]), st.integers(0, 20), st.integers()),
        max_size=80,
    )
)
def test_matches_a_dict_when_nothing_is_evicted(ops: list[tuple[str, int, int]]) -> None:
    c = MemoryTier(max_entries=1000)
    model: dict[int, int] = {}
    for op, k, v in ops:
        if op == "set":
            c.set(k, v)
            model[k] = v
        elif op == "get":
            assert c.get(k, MISSING) == model.get(k, MISSING)
        else:
            assert c.delete(k) == (model.pop(k, MISSING) is not MISSING)
    assert len(c) == len(model)
    assert dict(c.get_many(list(model))) == model


# --- TTL --------------------------------------------------------------------------


def test_ttl_with_injected_clock() -> None:
    clock = Clock()
    c = MemoryTier(max_entries=100, ttl=10.0, clock=clock)
    c.set("a", 1)
    c.set("b", 2, ttl=100.0)
    c.set("c", 3, ttl=1.0)
    hit = c.lookup("a")
    assert hit is not None and hit[0] == 1 and hit[1] == pytest.approx(10.0)
    clock.t += 1.0
    assert c.get("c") is None  # expiry is exclusive: at ttl it is gone
    clock.t += 8.5
    hit = c.lookup("a")
    assert hit is not None and hit[1] == pytest.approx(0.5)
    clock.t += 0.5
    assert c.get("a") is None and c.lookup("a") is None and "a" not in c
    assert c.get("b") == 2
    assert list(c) == ["b"]
    clock.t += 100
    assert c.expire() == 1
    s = c.stats()
    assert s["expirations"] == 3 and s["entries"] == 0


def test_expire_counts_and_periodic_cleanup() -> None:
    clock = Clock()
    c = MemoryTier(max_entries=1000, clock=clock)
    for i in range(100):
        c.set(i, i, ttl=1.0)
    clock.t += 2
    for i in range(100, 400):
        c.set(i, i)  # each write sweeps a few slots
    assert c.stats()["expirations"] > 0
    c.expire()
    assert c.stats()["expirations"] == 100 and len(c) == 300


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.floats(0.1, 5.0), st.floats(0.0, 3.0)), max_size=40)
)
def test_expired_entries_are_never_returned(ops: list[tuple[int, float, float]]) -> None:
    clock = Clock(0.0)
    c = MemoryTier(max_entries=100, clock=clock)
    expiry: dict[int, tuple[int, float]] = {}
    for n, (k, ttl, step) in enumerate(ops):
        c.set(k, n, ttl=ttl)
        expiry[k] = (n, clock.t + ttl)
        clock.t += step
        for key, (value, at) in expiry.items():
            got = c.lookup(key)
            if clock.t >= at:
                assert got is None
            else:
                assert got is not None and got[0] == value
                assert got[1] is not None and got[1] <= at - clock.t + 1e-6


def test_real_clock_ttl() -> None:
    c = MemoryTier(max_entries=10)
    c.set("k", 1, ttl=1e-9)
    assert c.get("k") is None
    c.set("k", 2, ttl=3600)
    hit = c.lookup("k")
    assert hit is not None and 3599 < (hit[1] or 0) <= 3600


# --- bounds, weights, tags ------------------------------------------------------------


def test_bytes_bound_and_rejection() -> None:
    c = MemoryTier(max_bytes=100)
    c.set("k", b"x" * 99)  # 99 + len("k")
    assert c.stats()["bytes"] == 100
    c.set("j", b"x" * 200)
    assert "j" not in c and c.stats()["rejected"] == 1
    for i in range(50):
        c.set(f"{i:02}", b"yyyyyyy")
        assert c.stats()["bytes"] <= 100
    w = MemoryTier(max_bytes=10, weigher=lambda v: 4)
    for i in range(10):
        w.set(str(i), i)  # 4 + 1 each
    assert len(w) == 2


def test_tags() -> None:
    c = MemoryTier(max_entries=100)
    c.set("a", 1, tags=["user:1", "all"])
    c.set("b", 2, tags=("user:2", "all"))
    c.set_many({"c": 3, "d": 4}, tags=["user:1"])
    c.set("e", 5)
    assert c.invalidate_tag("user:1") == 3
    assert c.invalidate_tag("user:1") == 0
    assert sorted(c) == ["b", "e"]
    c.set("b", 20)  # rewritten without tags: no longer in "all"
    assert c.invalidate_tag("all") == 0
    assert c.get("b") == 20


def test_clear_and_close_keep_working() -> None:
    c = MemoryTier(max_entries=10)
    c.set("a", 1)
    c.clear()
    assert len(c) == 0 and c.get("a") is None
    c.set("a", 1)
    c.close()
    c.close()
    assert len(c) == 0
    c.set("b", 2)
    assert c.get("b") == 2


# --- GC and re-entrance ----------------------------------------------------------------


class Node:
    """A value that can point back at the cache."""

    cache: Any = None

    def weigh(self, value: object) -> int:
        return 1


def test_gc_collects_a_cycle_through_a_value() -> None:
    c = MemoryTier(max_entries=10)
    node = Node()
    node.cache = c
    c.set("self", node)
    ref = weakref.ref(c)
    node_ref = weakref.ref(node)
    del c, node
    gc.collect()
    assert ref() is None and node_ref() is None


def test_gc_collects_a_cycle_through_the_weigher() -> None:
    node = Node()
    c = MemoryTier(max_bytes=1000, weigher=node.weigh)
    node.cache = c  # c -> weigher (a bound method) -> node -> c
    ref = weakref.ref(c)
    del c, node
    gc.collect()
    assert ref() is None


class Reentrant:
    """A key whose __eq__ calls back into the tier it is stored in."""

    def __init__(self, cache: MemoryTier) -> None:
        self.cache = cache

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        self.cache.get("anything")
        return self is other


def test_reentrant_key_gets_a_typed_error() -> None:
    c = MemoryTier(max_entries=10)
    a, b = Reentrant(c), Reentrant(c)
    c.set(a, 1)
    with pytest.raises(ReentrantCallError) as info:
        c.get(b)  # same hash: compares b == a under the lock
    assert isinstance(info.value, OverdriveError)
    assert c.get(a) == 1  # identity: no __eq__ call
    c.set(a, None)  # break the cycle a -> c -> a for the test's own tidiness
    c.clear()


class BadEq:
    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        raise ValueError("no comparing")


def test_key_eq_errors_propagate() -> None:
    c = MemoryTier(max_entries=10)
    k1 = BadEq()
    c.set(k1, 1)
    with pytest.raises(ValueError, match="no comparing"):
        c.get(BadEq())
    assert c.get(k1) == 1


# --- threads ---------------------------------------------------------------------------


def test_many_threads() -> None:
    c = MemoryTier(max_entries=500, ttl=60)
    errors: list[BaseException] = []
    n_threads, n_ops = 4, 5000

    def work(t: int) -> None:
        try:
            for i in range(n_ops):
                k = (t * 7 + i) % 700
                if i % 3 == 0:
                    c.set(k, k * 2)
                else:
                    v = c.get(k)
                    assert v is None or v == k * 2
                if i % 97 == 0:
                    c.delete(k)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert errors == []
    s = c.stats()
    gets = n_threads * n_ops - n_threads * len(range(0, n_ops, 3))
    assert s["hits"] + s["misses"] == gets
    assert s["entries"] <= 500 and len(c) == s["entries"]


class SlowEq:
    """A key whose __eq__ lets other threads run (releases the GIL) mid-compare."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        threading.Event().wait(0.0005)
        return isinstance(other, SlowEq) and other.n == self.n


def test_threads_with_keys_that_release_the_gil() -> None:
    c = MemoryTier(max_entries=100)
    keys = [SlowEq(i) for i in range(5)]
    for k in keys:
        c.set(k, k.n)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(30):
                for k in keys:
                    assert c.get(SlowEq(k.n)) == k.n
                c.set("plain", 1)
                assert c.get("plain") == 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert errors == []
