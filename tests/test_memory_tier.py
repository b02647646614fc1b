"""MemoryTier, the Rust L1 cache: a dict-with-expiry model, invariants under
eviction, errors, threads, asyncio, the garbage collector, hostile keys,
the weigher and the policies.

The clock is injected (``clock=``) wherever expiry matters, so TTLs are exact
and no test sleeps. TTLs are ``n + 0.5`` seconds and the clock moves in whole
seconds, so no check ever lands on an expiry instant (whether an entry is
still alive at exactly its expiry time is not part of the contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from overdrive.cache import MISSING, MemoryTier, Tier
from overdrive.exceptions import ConfigurationError, InputTypeError, OverdriveError

GIB = 1 << 30
STATS_KEYS = {
    "hits",
    "misses",
    "sets",
    "deletes",
    "evictions",
    "expirations",
    "rejected",
    "entries",
    "bytes",
    "max_bytes",
    "max_entries",
    "policy",
    "errors",
}


class Clock:
    """A clock the test moves by hand (seconds, monotonic)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Val:
    """A value compared by identity (every instance is a distinct value)."""

    count = 0

    def __init__(self, key: Any = None, size: int = 1) -> None:
        Val.count += 1
        self.n = Val.count
        self.key = key
        self.size = size

    def __repr__(self) -> str:
        return f"Val#{self.n}"


class Boom(Exception):
    """Raised by hostile keys and weighers."""


# Keys of mixed types: 1 == 1.0 == True and 0 == 0.0 == -0.0 == False, as in a dict.
SCALARS = st.one_of(
    st.integers(-2, 3),
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 0.5, True, False]),
    st.sampled_from(["a", "b", "", "1", b"a", frozenset({1})]),
)
KEYS = st.one_of(SCALARS, st.tuples(SCALARS, SCALARS))
VALUES = st.one_of(st.builds(Val), st.none())
TTLS = st.sampled_from([None, 0.5, 1.5, 3.5, 100.5])
TAGS = st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=2, unique=True)


def _assert_same(got: Any, want: Any) -> None:
    assert got is want, f"got {got!r}, want {want!r} (values are stored by reference)"


# --- the exact model: no eviction ----------------------------------------------


class Entry:
    __slots__ = ("expires", "tags", "value")

    def __init__(self, value: Any, expires: float | None, tags: frozenset[str]) -> None:
        self.value = value
        self.expires = expires
        self.tags = tags


class ExactModel(RuleBasedStateMachine):
    """MemoryTier with a capacity nothing reaches behaves as a dict whose
    entries expire: every read, count and the seconds left match the model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.model: dict[Hashable, Entry] = {}
        self.hits = 0
        self.misses = 0
        self.sets = 0
        self.deletes_min = 0  # successful deletes of live entries
        self.deletes_max = 0  # delete calls + entries invalidated or cleared
        self.expired_max = 0  # expired entries the tier may have dropped so far
        self.tier: MemoryTier

    @initialize(ttl=st.sampled_from([None, 2.5]), policy=st.sampled_from(["tinylfu", "lru"]))
    def make(self, ttl: float | None, policy: str) -> None:
        self.default_ttl = ttl
        self.tier = MemoryTier(ttl=ttl, policy=policy, clock=self.clock, name="exact")
        assert self.tier.ttl == ttl
        assert self.tier.policy == policy

    # -- model helpers

    def _live(self, e: Entry) -> bool:
        return e.expires is None or e.expires > self.clock.now

    def _entry(self, key: Hashable) -> Entry | None:
        e = self.model.get(key)
        return e if e is not None and self._live(e) else None

    def _drop(self, key: Hashable) -> Entry | None:
        e = self.model.pop(key, None)
        if e is not None and not self._live(e):
            self.expired_max += 1
        return e

    def _count(self, e: Entry | None) -> None:
        if e is None:
            self.misses += 1
        else:
            self.hits += 1

    def _expires(self, ttl: float | None) -> float | None:
        ttl = self.default_ttl if ttl is None else ttl
        return None if ttl is None else self.clock.now + ttl

    def _store(self, key: Hashable, value: Any, ttl: float | None, tags: list[str]) -> None:
        self._drop(key)
        self.model[key] = Entry(value, self._expires(ttl), frozenset(tags))
        self.sets += 1

    # -- writes

    @rule(key=KEYS, value=VALUES, ttl=TTLS, tags=TAGS)
    def set(self, key: Hashable, value: Any, ttl: float | None, tags: list[str]) -> None:
        if ttl is None and not tags:
            self.tier.set(key, value)
        else:
            self.tier.set(key, value, ttl=ttl, tags=tags)
        self._store(key, value, ttl, tags)

    @rule(key=KEYS, value=VALUES)
    def setitem(self, key: Hashable, value: Any) -> None:
        self.tier[key] = value
        self._store(key, value, None, [])

    @rule(
        items=st.dictionaries(KEYS, VALUES, max_size=4),
        ttl=TTLS,
        tags=TAGS,
    )
    def set_many(self, items: dict[Hashable, Any], ttl: float | None, tags: list[str]) -> None:
        self.tier.set_many(items, ttl=ttl, tags=tags)
        for k, v in items.items():
            self._store(k, v, ttl, tags)

    @rule(key=KEYS)
    def delete(self, key: Hashable) -> None:
        live = self._entry(key) is not None
        present = key in self.model
        got = self.tier.delete(key)
        self.deletes_max += 1
        if live:
            assert got is True
            self.deletes_min += 1
        elif not present:
            assert got is False
        # an expired entry not yet cleaned up may answer either way
        self._drop(key)

    @rule(key=KEYS)
    def delitem(self, key: Hashable) -> None:
        live = self._entry(key) is not None
        present = key in self.model
        self.deletes_max += 1
        if live:
            del self.tier[key]
            self.deletes_min += 1
        elif not present:
            with pytest.raises(KeyError):
                del self.tier[key]
        else:
            with contextlib.suppress(KeyError):
                del self.tier[key]
        self._drop(key)

    @rule(tag=st.sampled_from(["t1", "t2", "t3", "none"]))
    def invalidate_tag(self, tag: str) -> None:
        tagged = [k for k, e in self.model.items() if tag in e.tags]
        live = sum(1 for k in tagged if self._live(self.model[k]))
        n = self.tier.invalidate_tag(tag)
        assert live <= n <= len(tagged), (tag, n, live, len(tagged))
        self.deletes_max += len(tagged)
        for k in tagged:
            self._drop(k)

    @rule()
    def clear(self) -> None:
        self.tier.clear()
        self.deletes_max += len(self.model)
        for k in list(self.model):
            self._drop(k)

    @rule(seconds=st.sampled_from([1.0, 2.0, 5.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire(self) -> None:
        expired = [k for k, e in self.model.items() if not self._live(e)]
        n = self.tier.expire()
        assert 0 <= n <= len(expired)
        for k in expired:
            self._drop(k)
        live = len(self.model)
        assert len(self.tier) == live, "after expire() len counts exactly the live entries"
        assert self.tier.stats()["entries"] == live

    # -- reads

    @rule(key=KEYS)
    def get(self, key: Hashable) -> None:
        e = self._entry(key)
        got = self.tier.get(key, MISSING)
        self._count(e)
        _assert_same(got, MISSING if e is None else e.value)

    @rule(key=KEYS)
    def get_default_none(self, key: Hashable) -> None:
        e = self._entry(key)
        got = self.tier.get(key)
        self._count(e)
        _assert_same(got, None if e is None else e.value)

    @rule(key=KEYS)
    def getitem(self, key: Hashable) -> None:
        e = self._entry(key)
        if e is None:
            with pytest.raises(KeyError):
                self.tier[key]
        else:
            _assert_same(self.tier[key], e.value)
        self._count(e)

    @rule(key=KEYS)
    def lookup(self, key: Hashable) -> None:
        e = self._entry(key)
        got = self.tier.lookup(key)
        self._count(e)
        if e is None:
            assert got is None
            return
        assert got is not None
        value, left = got
        _assert_same(value, e.value)
        if e.expires is None:
            assert left is None
        else:
            assert left is not None
            assert left == pytest.approx(e.expires - self.clock.now, abs=1e-3)
            assert left > 0

    @rule(key=KEYS)
    def contains(self, key: Hashable) -> None:
        e = self._entry(key)
        before = self.tier.stats()
        assert (key in self.tier) is (e is not None)
        after = self.tier.stats()
        # membership may or may not count as a lookup; if it does, correctly
        dh, dm = after["hits"] - before["hits"], after["misses"] - before["misses"]
        assert (dh, dm) in {(0, 0), (1, 0) if e is not None else (0, 1)}
        self.hits += dh
        self.misses += dm

    @rule(keys=st.lists(KEYS, max_size=5, unique=True))
    def get_many(self, keys: list[Hashable]) -> None:
        got = self.tier.get_many(keys)
        assert isinstance(got, dict)
        want = {}
        for k in keys:
            e = self._entry(k)
            self._count(e)
            if e is not None:
                want[k] = e.value
        assert got.keys() == want.keys()
        for k, v in want.items():
            _assert_same(got[k], v)

    @rule()
    def iterate(self) -> None:
        keys = list(self.tier)
        assert len(keys) == len(set(keys)), "a key listed twice"
        live = {k for k, e in self.model.items() if self._live(e)}
        assert live <= set(keys) <= set(self.model)

    # -- invariants

    @invariant()
    def counts_match(self) -> None:
        if not hasattr(self, "tier"):
            return
        s = self.tier.stats()
        assert s.keys() >= STATS_KEYS
        live = sum(1 for e in self.model.values() if self._live(e))
        n = len(self.tier)
        assert live <= n <= len(self.model), "len counts every live entry, and no ghost"
        assert s["entries"] == n
        assert (s["hits"], s["misses"]) == (self.hits, self.misses)
        assert s["sets"] == self.sets
        assert self.deletes_min <= s["deletes"] <= self.deletes_max
        assert s["evictions"] == 0
        assert s["rejected"] == 0
        assert s["errors"] == 0
        assert 0 <= s["expirations"] <= self.expired_max + (len(self.model) - live)
        assert s["max_bytes"] == GIB
        assert s["max_entries"] is None
        assert (s["bytes"] > 0) is (n > 0)
        assert s["bytes"] <= GIB


TestExactModel = ExactModel.TestCase
TestExactModel.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)


# --- invariants under eviction -------------------------------------------------


class EvictionInvariants(RuleBasedStateMachine):
    """With a tiny capacity any entry may be evicted at any time, but a read
    only ever returns the value last set for that key, unexpired; the
    capacity is never exceeded and the counters add up."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        # key -> (value, expires, tags) of the last set; absent after delete/invalidate/clear
        self.last: dict[Hashable, tuple[Any, float | None, frozenset[str]]] = {}
        self.reads = 0
        self.sets = 0
        self.tier: MemoryTier

    @initialize(
        policy=st.sampled_from(["tinylfu", "lru"]),
        max_entries=st.sampled_from([None, 1, 2, 3, 8, 20]),
        max_bytes=st.sampled_from([None, 64, 300, 1000]),
        ttl=st.sampled_from([None, 2.5]),
        weigh=st.booleans(),
    )
    def make(
        self,
        policy: str,
        max_entries: int | None,
        max_bytes: int | None,
        ttl: float | None,
        weigh: bool,
    ) -> None:
        if max_entries is None and max_bytes is None:
            max_bytes = 200
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        weigher = (lambda v: v.size if isinstance(v, Val) else 0) if weigh else None
        self.tier = MemoryTier(
            max_bytes=max_bytes,
            max_entries=max_entries,
            ttl=ttl,
            policy=policy,
            weigher=weigher,
            clock=self.clock,
        )
        self.default_ttl = ttl
        assert (self.tier.max_entries, self.tier.max_bytes) == (max_entries, max_bytes)

    def _check(self, key: Hashable, got: Any, present: bool) -> None:
        """``got`` (present or not) is consistent with the last set of ``key``."""
        if not present:
            return
        assert key in self.last, f"{key!r} returned {got!r} after delete/clear/invalidate"
        value, expires, _ = self.last[key]
        _assert_same(got, value)
        assert expires is None or expires > self.clock.now, "an expired entry was returned"

    @rule(
        key=st.integers(0, 30),
        size=st.sampled_from([1, 10, 50, 100, 5000]),
        ttl=TTLS,
        tags=TAGS,
        none=st.booleans(),
    )
    def set(self, key: int, size: int, ttl: float | None, tags: list[str], none: bool) -> None:
        value = None if none and size == 1 else Val(key, size)
        self.tier.set(key, value, ttl=ttl, tags=tags)
        ttl = self.default_ttl if ttl is None else ttl
        expires = None if ttl is None else self.clock.now + ttl
        self.last[key] = (value, expires, frozenset(tags))
        self.sets += 1

    @rule(keys=st.lists(st.integers(0, 30), max_size=4, unique=True), size=st.sampled_from([1, 10]))
    def set_many(self, keys: list[int], size: int) -> None:
        items = {k: Val(k, size) for k in keys}
        self.tier.set_many(items)
        for k, v in items.items():
            ttl = self.default_ttl
            self.last[k] = (v, None if ttl is None else self.clock.now + ttl, frozenset())
        self.sets += len(items)

    @rule(key=st.integers(0, 30))
    def get(self, key: int) -> None:
        got = self.tier.get(key, MISSING)
        self.reads += 1
        self._check(key, got, got is not MISSING)

    @rule(key=st.integers(0, 30))
    def lookup(self, key: int) -> None:
        got = self.tier.lookup(key)
        self.reads += 1
        if got is not None:
            self._check(key, got[0], True)
            assert got[1] is None or got[1] > 0

    @rule(keys=st.lists(st.integers(0, 30), max_size=6, unique=True))
    def get_many(self, keys: list[int]) -> None:
        got = self.tier.get_many(keys)
        self.reads += len(keys)
        assert set(got) <= set(keys)
        for k, v in got.items():
            self._check(k, v, True)

    @rule(key=st.integers(0, 30))
    def delete(self, key: int) -> None:
        self.tier.delete(key)
        self.last.pop(key, None)
        assert self.tier.get(key, MISSING) is MISSING
        self.reads += 1

    @rule(tag=st.sampled_from(["t1", "t2", "t3"]))
    def invalidate_tag(self, tag: str) -> None:
        self.tier.invalidate_tag(tag)
        for k in [k for k, (_, _, tags) in self.last.items() if tag in tags]:
            del self.last[k]

    @rule()
    def clear(self) -> None:
        self.tier.clear()
        self.last.clear()
        assert len(self.tier) == 0

    @rule(seconds=st.sampled_from([1.0, 3.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire(self) -> None:
        self.tier.expire()
        for k in list(self.tier):
            assert self.tier.lookup(k) is not None, "expire() kept an expired entry"
            self.reads += 1

    @invariant()
    def within_capacity_and_counts_add_up(self) -> None:
        if not hasattr(self, "tier"):
            return
        s = self.tier.stats()
        n = len(self.tier)
        assert s["entries"] == n
        if self.max_entries is not None:
            assert n <= self.max_entries
        if self.max_bytes is not None:
            assert 0 <= s["bytes"] <= self.max_bytes
        assert s["hits"] + s["misses"] == self.reads
        assert s["sets"] == self.sets
        assert s["errors"] == 0
        for k in self.tier:
            assert k in self.last, f"{k!r} stored after delete/clear/invalidate"


TestEvictionInvariants = EvictionInvariants.TestCase
TestEvictionInvariants.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


# --- the LRU policy: an exact model with a tiny capacity ---------------------------

LRU_OPS = st.lists(
    st.tuples(st.sampled_from(["get", "set", "lookup", "getitem"]), st.integers(0, 7)),
    max_size=80,
)


@given(capacity=st.integers(1, 5), ops=LRU_OPS)
@settings(max_examples=300, deadline=None)
def test_lru_evicts_the_least_recently_used(capacity: int, ops: list[tuple[str, int]]) -> None:
    tier = MemoryTier(max_entries=capacity, policy="lru")
    model: OrderedDict[int, Val] = OrderedDict()
    evictions = 0
    for op, k in ops:
        if op == "set":
            v = Val(k)
            tier.set(k, v)
            model[k] = v
            model.move_to_end(k)
            if len(model) > capacity:
                model.popitem(last=False)
                evictions += 1
            continue
        want = model.get(k)
        if want is not None:
            model.move_to_end(k)
        if op == "get":
            _assert_same(tier.get(k), want)
        elif op == "lookup":
            got = tier.lookup(k)
            assert (got is None) is (want is None)
            if got is not None:
                _assert_same(got[0], want)
        elif want is None:
            with pytest.raises(KeyError):
                tier[k]
        else:
            _assert_same(tier[k], want)
    assert set(tier) == set(model)
    assert tier.stats()["evictions"] == evictions
    assert len(tier) == len(model)


def test_tinylfu_keeps_frequent_keys_through_a_scan_and_lru_does_not() -> None:
    survivors = {}
    for policy in ("tinylfu", "lru"):
        tier = MemoryTier(max_entries=100, policy=policy)
        hot = list(range(50))
        for _ in range(20):
            for k in hot:
                if tier.get(k) is None:
                    tier.set(k, k)
        for k in range(1000, 1300):  # a one-off scan of 300 cold keys
            if tier.get(k) is None:
                tier.set(k, k)
        survivors[policy] = sum(1 for k in hot if tier.get(k) == k)
        assert len(tier) <= 100
    assert survivors["tinylfu"] >= 45, survivors
    assert survivors["lru"] == 0, survivors


# --- the API: defaults, keys, values, properties ------------------------------------


def test_defaults_properties_and_repr() -> None:
    tier = MemoryTier()
    assert tier.max_bytes == GIB and tier.max_entries is None
    assert tier.ttl is None and tier.policy == "tinylfu" and tier.name == "memory"
    s = tier.stats()
    assert s.keys() >= STATS_KEYS
    assert (s["max_bytes"], s["max_entries"], s["policy"]) == (GIB, None, "tinylfu")
    assert all(s[k] == 0 for k in ("hits", "misses", "sets", "entries", "bytes", "errors"))
    assert "MemoryTier" in repr(tier)
    both = MemoryTier(max_bytes=4096, max_entries=10, ttl=1.5, policy="lru", name="l1")
    assert (both.max_bytes, both.max_entries, both.ttl, both.policy, both.name) == (
        4096,
        10,
        1.5,
        "lru",
        "l1",
    )
    only_entries = MemoryTier(max_entries=10)
    assert (only_entries.max_bytes, only_entries.max_entries) == (None, 10)
    assert "l1" in repr(both)


def test_is_a_tier() -> None:
    assert isinstance(MemoryTier(), Tier)


def test_properties_are_read_only() -> None:
    tier = MemoryTier(max_entries=3)
    for attr, value in [("max_entries", 5), ("ttl", 1.0), ("policy", "lru"), ("name", "x")]:
        with pytest.raises(AttributeError):
            setattr(tier, attr, value)
    assert tier.max_entries == 3


def test_equal_keys_of_different_types_are_one_key() -> None:
    tier = MemoryTier()
    a, b = Val(), Val()
    tier[1] = a
    _assert_same(tier[1.0], a)
    _assert_same(tier[True], a)
    tier.set(True, b)
    assert len(tier) == 1
    _assert_same(tier.get(1), b)
    tier[(1, "x")] = a
    _assert_same(tier.get((True, "x")), a)
    _assert_same(tier.get((1.0, "x")), a)
    tier[0.0] = a
    _assert_same(tier.get(-0.0), a)
    _assert_same(tier.get(False), a)
    assert tier.get("1") is None and tier.get(b"1") is None
    assert tier.delete(1.0) is True
    assert 1 not in tier and True not in tier


def test_keys_compare_by_identity_first_as_in_a_dict() -> None:
    nan = float("nan")
    tier = MemoryTier()
    v = Val()
    tier[nan] = v
    _assert_same(tier[nan], v)  # nan != nan, but a dict finds the same object
    assert float("nan") not in tier

    class NeverEqual:
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            return False

    k = NeverEqual()
    tier[k] = v
    _assert_same(tier.get(k), v)
    assert NeverEqual() not in tier


def test_none_is_a_value() -> None:
    tier = MemoryTier()
    tier.set("k", None)
    assert "k" in tier
    assert tier.get("k", "default") is None
    assert tier.lookup("k") == (None, None)
    assert tier["k"] is None
    assert tier.get_many(["k", "absent"]) == {"k": None}
    assert tier.lookup("absent") is None


def test_values_are_stored_by_reference() -> None:
    tier = MemoryTier()
    v: list[int] = []
    tier["k"] = v
    v.append(1)
    assert tier["k"] is v
    assert tier["k"] == [1]


def test_hash_collisions_keep_keys_apart() -> None:
    class Colliding:
        def __init__(self, n: int) -> None:
            self.n = n

        def __hash__(self) -> int:
            return 42

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Colliding) and other.n == self.n

    tier = MemoryTier()
    values = [Val() for _ in range(100)]
    for i, v in enumerate(values):
        tier[Colliding(i)] = v
    tier[42] = "int"  # same hash, another type
    assert len(tier) == 101
    for i, v in enumerate(values):
        _assert_same(tier[Colliding(i)], v)
    assert tier[42] == "int"
    for i in range(0, 100, 2):
        del tier[Colliding(i)]
    assert len(tier) == 51
    assert all((Colliding(i) in tier) is (i % 2 == 1) for i in range(100))


def test_expiry_default_and_per_entry_ttl() -> None:
    clock = Clock()
    tier = MemoryTier(ttl=10.5, clock=clock)
    tier.set("default", 1)
    tier.set("short", 2, ttl=1.5)
    tier.set("long", 3, ttl=100.5)
    assert tier.lookup("default") == (1, pytest.approx(10.5))
    clock.advance(2)
    assert "short" not in tier and tier.get("short") is None and tier.lookup("short") is None
    with pytest.raises(KeyError):
        tier["short"]
    assert tier.get_many(["default", "short", "long"]) == {"default": 1, "long": 3}
    clock.advance(10)
    assert tier.get("default") is None
    assert tier.lookup("long") == (3, pytest.approx(88.5))
    assert tier.expire() <= 2
    assert len(tier) == 1 and list(tier) == ["long"]
    assert tier.stats()["expirations"] == 2


def test_the_real_clock_never_returns_an_expired_entry() -> None:
    """The default clock (the store's own monotonic clock, the one
    ``time.monotonic`` reads): once ``ttl`` has passed after ``set``
    returned, no read returns the entry; before that, every read does."""
    tier = MemoryTier(max_entries=10_000)
    for i in range(300):
        ttl = 0.0005 + (i % 7) * 0.0003
        before = time.monotonic()
        tier.set(i, i, ttl=ttl)
        done = time.monotonic()
        # alive until at least ``before + ttl`` (the store read its clock after ``before``)
        assert tier.get(i) == i or time.monotonic() - before >= ttl
        while time.monotonic() - done <= ttl:
            pass
        assert tier.get(i) is None
        assert tier.lookup(i) is None
        assert i not in tier
        assert tier.get_many([i]) == {}
    tier.set("long", 1, ttl=60.0)
    got = tier.lookup("long")
    assert got is not None and 59.0 < got[1] <= 60.0


def test_expire_drops_everything_expired_and_counts_it() -> None:
    clock = Clock()
    tier = MemoryTier(clock=clock)
    for i in range(50):
        tier.set(i, i, ttl=0.5 if i % 2 else 100.5)
    clock.advance(1)
    assert len(tier) <= 50
    dropped = tier.expire()
    assert len(tier) == 25
    assert tier.stats()["expirations"] == 25
    assert dropped <= 25
    assert tier.expire() == 0


def test_expired_entries_are_cleaned_up_by_writes() -> None:
    """Clean-up is lazy plus periodic: writes drop some expired entries, so a
    tier that only ever writes short-lived entries does not grow forever."""
    clock = Clock()
    tier = MemoryTier(clock=clock)
    for i in range(20_000):
        tier.set(i, i, ttl=0.5)
        clock.advance(1)
    assert len(tier) < 20_000
    assert tier.stats()["expirations"] > 0


def test_iteration_is_a_snapshot() -> None:
    tier = MemoryTier()
    for i in range(100):
        tier[i] = i
    seen = []
    for k in tier:  # mutating while iterating is fine: the keys were copied
        seen.append(k)
        tier.delete(k)
        tier[k + 1000] = k
    assert sorted(seen) == list(range(100))
    assert len(tier) == 100


def test_close_clears_and_the_tier_still_works() -> None:
    tier = MemoryTier()
    tier.set_many({i: i for i in range(10)})
    tier.close()
    assert len(tier) == 0
    tier.close()  # idempotent
    tier["k"] = 1
    assert tier["k"] == 1


def test_set_many_and_get_many_take_any_iterables() -> None:
    tier = MemoryTier()
    tier.set_many({("a", 1): 1, "b": 2}, ttl=5.0, tags=iter(["t"]))
    assert tier.get_many(iter(["b", ("a", 1), "c"])) == {("a", 1): 1, "b": 2}
    assert tier.get_many(k for k in ["b"]) == {"b": 2}
    assert tier.get_many([]) == {}
    assert tier.invalidate_tag("t") == 2
    assert len(tier) == 0


def test_tags_belong_to_the_latest_set() -> None:
    tier = MemoryTier()
    tier.set("a", 1, tags=["user:1", "page"])
    tier.set("b", 2, tags=("user:1",))
    tier.set("c", 3, tags={"page"})
    tier.set("a", 4)  # re-set without tags: no longer in user:1 or page
    assert tier.invalidate_tag("user:1") == 1
    assert tier.get_many(["a", "b", "c"]) == {"a": 4, "c": 3}
    assert tier.invalidate_tag("page") == 1
    assert tier.invalidate_tag("page") == 0
    assert tier.invalidate_tag("never used") == 0
    assert list(tier) == ["a"]


def test_refcounts_return_to_where_they_were() -> None:
    tier = MemoryTier(max_entries=4)
    key, value = ("a", 12345), Val()
    k0, v0 = sys.getrefcount(key), sys.getrefcount(value)
    for _ in range(1000):
        tier.set(key, value, tags=["t"])
        tier.get(key)
        tier.lookup(key)
        tier.get_many([key])
        assert key in tier
        tier.delete(key)
        tier[key] = value
        tier.invalidate_tag("t")
        tier.set_many({key: value})
        list(tier)
        for i in range(6):  # evicts key (or rejects the newcomers)
            tier.set(i, value)
        tier.clear()
    gc.collect()
    assert (sys.getrefcount(key), sys.getrefcount(value)) == (k0, v0)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_hot_loop_with_evictions_and_tags_does_not_grow_memory() -> None:
    """Evicted entries leave nothing behind: not in the map, not in the tag
    index (every key has its own tag here, never invalidated), not in the
    frequency sketch."""
    tier = MemoryTier(max_entries=1000, ttl=60.0)

    def cycle(base: int) -> None:
        set_, get = tier.set, tier.get
        for i in range(base, base + 100_000):
            set_(i, b"x", tags=[f"user:{i}"])
            get(i - 500)

    cycle(0)
    gc.collect()
    before = _rss()
    for r in range(1, 6):
        cycle(r * 1_000_000)
    gc.collect()
    assert _rss() - before < 8 << 20
    assert len(tier) <= 1000
    assert tier.invalidate_tag("user:5099999") == 1
    assert tier.invalidate_tag("user:1") == 0


# --- bad arguments -------------------------------------------------------------------

BAD_CONSTRUCTOR = [
    ({"max_bytes": 0}, ConfigurationError),
    ({"max_bytes": -1}, ConfigurationError),
    ({"max_bytes": 2**70}, ConfigurationError),
    ({"max_bytes": 1.5}, InputTypeError),
    ({"max_bytes": "1"}, InputTypeError),
    ({"max_entries": 0}, ConfigurationError),
    ({"max_entries": -5}, ConfigurationError),
    ({"max_entries": 2**70}, ConfigurationError),
    ({"max_entries": 10.0}, InputTypeError),
    ({"max_entries": [1]}, InputTypeError),
    ({"ttl": 0}, ConfigurationError),
    ({"ttl": -1.0}, ConfigurationError),
    ({"ttl": math.nan}, ConfigurationError),
    ({"ttl": math.inf}, ConfigurationError),
    ({"ttl": "60"}, InputTypeError),
    ({"policy": "fifo"}, ConfigurationError),
    ({"policy": ""}, ConfigurationError),
    ({"policy": 1}, InputTypeError),
    ({"weigher": 1}, InputTypeError),
    ({"weigher": "len"}, InputTypeError),
    ({"clock": 1.0}, InputTypeError),
    ({"name": 1}, InputTypeError),
]


@pytest.mark.parametrize(
    ("kwargs", "exc"), BAD_CONSTRUCTOR, ids=[repr(kw)[1:-1] for kw, _ in BAD_CONSTRUCTOR]
)
def test_bad_constructor_arguments_name_the_parameter(
    kwargs: dict[str, Any], exc: type[Exception]
) -> None:
    ((param, value),) = kwargs.items()
    with pytest.raises(exc, match=param) as info:
        MemoryTier(**kwargs)
    if exc is ConfigurationError:
        shown = {repr(value), str(value)}
        if isinstance(value, float):
            shown.add(f"{value:g}")  # Rust prints -1.0 as -1
        assert any(v.lower() in str(info.value).lower() for v in shown), info.value


def _tier_with_entry() -> MemoryTier:
    tier = MemoryTier()
    tier["k"] = 1
    return tier


BAD_CALLS: list[tuple[str, Any, type[Exception], str]] = [
    ("set ttl=0", lambda t: t.set("x", 1, ttl=0), ConfigurationError, "ttl"),
    ("set ttl<0", lambda t: t.set("x", 1, ttl=-2.5), ConfigurationError, "ttl"),
    ("set ttl=nan", lambda t: t.set("x", 1, ttl=math.nan), ConfigurationError, "ttl"),
    ("set ttl=str", lambda t: t.set("x", 1, ttl="1"), InputTypeError, "ttl"),
    ("set tags=int", lambda t: t.set("x", 1, tags=5), InputTypeError, "tags"),
    ("set tags=[int]", lambda t: t.set("x", 1, tags=[1]), InputTypeError, "tag"),
    ("set_many ttl=0", lambda t: t.set_many({"x": 1}, ttl=0), ConfigurationError, "ttl"),
    ("set_many list", lambda t: t.set_many([("x", 1)]), InputTypeError, "items"),
    ("set_many int", lambda t: t.set_many(5), InputTypeError, "items"),
    ("set_many tags", lambda t: t.set_many({"x": 1}, tags=[None]), InputTypeError, "tag"),
    ("get_many int", lambda t: t.get_many(5), InputTypeError, "keys"),
    ("invalidate_tag int", lambda t: t.invalidate_tag(5), InputTypeError, "tag"),
]


@pytest.mark.parametrize(
    ("call", "exc", "param"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_bad_method_arguments_name_the_parameter(
    call: Any, exc: type[Exception], param: str
) -> None:
    tier = _tier_with_entry()
    with pytest.raises(exc, match=param):
        call(tier)
    # nothing half-done: the failed call stored nothing, the tier works on
    assert "x" not in tier
    assert tier["k"] == 1
    assert tier.stats()["sets"] == 1
    assert len(tier) == 1


UNHASHABLE: list[tuple[str, Any]] = [
    ("get", lambda t: t.get([])),
    ("get default", lambda t: t.get({}, 1)),
    ("lookup", lambda t: t.lookup([1])),
    ("set", lambda t: t.set([], 1)),
    ("delete", lambda t: t.delete({})),
    ("contains", lambda t: [] in t),
    ("getitem", lambda t: t[[]]),
    ("setitem", lambda t: t.__setitem__([], 1)),
    ("delitem", lambda t: t.__delitem__([])),
    ("get_many", lambda t: t.get_many(["k", []])),
    ("tuple with a list", lambda t: t.get(("a", []))),
]


@pytest.mark.parametrize("call", [c[1] for c in UNHASHABLE], ids=[c[0] for c in UNHASHABLE])
def test_unhashable_keys_are_input_type_errors(call: Any) -> None:
    tier = _tier_with_entry()
    with pytest.raises(InputTypeError):
        call(tier)
    assert tier["k"] == 1 and len(tier) == 1


# --- the weigher and max_bytes -----------------------------------------------------


def test_default_weights_are_len_or_getsizeof_of_key_and_value() -> None:
    tier = MemoryTier()
    tier.set(b"key", b"0123456789")
    assert tier.stats()["bytes"] == 3 + 10
    tier.set("k", 5)
    assert tier.stats()["bytes"] == 13 + 1 + sys.getsizeof(5)
    tier.set("k", bytearray(100))  # a replaced entry's weight is given back
    assert tier.stats()["bytes"] == 13 + 1 + 100
    tier.set((1, 2), "ab")
    assert tier.stats()["bytes"] == 13 + 101 + sys.getsizeof((1, 2)) + 2
    tier.delete(b"key")
    tier.delete("k")
    assert tier.stats()["bytes"] == sys.getsizeof((1, 2)) + 2
    tier.clear()
    assert tier.stats()["bytes"] == 0


class Sized:
    def __init__(self, size: int) -> None:
        self.size = size


def test_weigher_and_max_bytes() -> None:
    calls: list[Any] = []

    def weigher(v: Any) -> int:
        calls.append(v)
        return int(v.size)

    tier = MemoryTier(max_bytes=1000, weigher=weigher, policy="lru")
    a = Sized(100)
    tier.set("a", a)
    assert calls == [a], "the weigher is given the value"
    assert tier.stats()["bytes"] == 100 + len("a")
    for i in range(30):
        tier.set(f"k{i:02d}", Sized(97))
        assert tier.stats()["bytes"] <= 1000
    s = tier.stats()
    assert s["evictions"] > 0
    assert s["bytes"] == 100 * len(tier)  # 97 + len("kNN") each: "a" was evicted first
    assert "a" not in tier
    assert "k29" in tier


def test_an_entry_heavier_than_max_bytes_is_rejected_and_replaces_nothing() -> None:
    tier = MemoryTier(max_bytes=500, weigher=lambda v: v.size)
    old = Sized(10)
    tier.set("k", old)
    tier.set("other", Sized(10))
    tier.set("k", Sized(10_000))
    s = tier.stats()
    assert s["rejected"] == 1
    assert "k" not in tier, "a rejected set must not leave the older value readable"
    assert tier.get("other") is not None
    tier.set_many({"x": Sized(501), "y": Sized(1)})
    assert tier.stats()["rejected"] == 2
    assert "x" not in tier and "y" in tier
    assert tier.stats()["bytes"] <= 500


@pytest.mark.parametrize(
    ("result", "exc"),
    [
        (-1, ConfigurationError),
        (-(2**70), ConfigurationError),
        (1.5, InputTypeError),
        ("8", InputTypeError),
        (None, InputTypeError),
    ],
)
def test_a_weigher_returning_a_bad_weight_is_named(result: Any, exc: type[Exception]) -> None:
    tier = MemoryTier(max_bytes=1000, weigher=lambda v: result)
    with pytest.raises(exc, match="weigher"):
        tier.set("k", 1)
    assert "k" not in tier
    assert tier.stats()["sets"] == 0


def test_a_weight_beyond_64_bits_is_heavier_than_any_max_bytes() -> None:
    tier = MemoryTier(max_bytes=2**63, weigher=lambda v: v)
    tier.set("k", 2**70)
    assert "k" not in tier
    assert tier.stats()["rejected"] == 1
    tier.set("k", 10)
    assert tier["k"] == 10


def test_a_huge_ttl_never_expires_in_practice() -> None:
    clock = Clock()
    tier = MemoryTier(clock=clock, ttl=1e300)
    tier.set("default", 1)
    tier.set("own", 2, ttl=1e300)
    clock.advance(1e9)
    for key, value in (("default", 1), ("own", 2)):
        got = tier.lookup(key)
        assert got is not None and got[0] == value
        assert got[1] is not None and got[1] > 1e9


def test_a_weigher_that_raises_propagates_and_stores_nothing() -> None:
    def weigher(v: Any) -> int:
        if v == "bad":
            raise Boom("weigher")
        return 1

    tier = MemoryTier(max_bytes=1000, weigher=weigher)
    tier.set("k", "old")
    with pytest.raises(Boom):
        tier.set("k", "bad")
    with pytest.raises(Boom):
        tier.set_many({"a": "ok", "b": "bad"})
    tier.set("k2", "fine")
    assert tier.get("k2") == "fine"
    assert tier.get("k") in ("old", None)
    assert len(tier) == len(list(tier))


# --- hostile keys --------------------------------------------------------------------


class RaisingEq:
    """Hashes like the int 5 and refuses to be compared."""

    def __hash__(self) -> int:
        return hash(5)

    def __eq__(self, other: object) -> bool:
        raise Boom("__eq__")


class RaisingHash:
    def __hash__(self) -> int:
        raise Boom("__hash__")


def test_a_key_whose_eq_raises_propagates_and_leaves_the_tier_usable() -> None:
    tier = MemoryTier(max_entries=100)
    five = Val()
    tier[5] = five
    for call in (
        lambda: tier.get(RaisingEq()),
        lambda: tier.lookup(RaisingEq()),
        lambda: tier.set(RaisingEq(), 1),
        lambda: tier.delete(RaisingEq()),
        lambda: RaisingEq() in tier,
        lambda: tier.get_many(["x", RaisingEq()]),
        lambda: tier.set_many({RaisingEq(): 1}),
    ):
        with pytest.raises(Boom):
            call()
    _assert_same(tier[5], five)
    assert len(tier) == 1
    tier["x"] = 1
    assert tier.get_many([5, "x"]) == {5: five, "x": 1}
    s = tier.stats()
    assert s["entries"] == 2
    assert s["hits"] + s["misses"] >= 3


def test_a_key_whose_hash_raises_propagates() -> None:
    tier = _tier_with_entry()
    for call in (
        lambda: tier.get(RaisingHash()),
        lambda: tier.set(RaisingHash(), 1),
        lambda: tier.delete(RaisingHash()),
        lambda: RaisingHash() in tier,
        lambda: tier.get_many([RaisingHash()]),
    ):
        with pytest.raises(Boom):
            call()
    assert tier["k"] == 1 and len(tier) == 1


@pytest.mark.timeout(20)
def test_a_key_whose_eq_reenters_the_tier_gets_an_error_not_a_deadlock() -> None:
    tier = MemoryTier()
    caught: list[BaseException] = []

    class Reentrant:
        def __init__(self, catch: bool) -> None:
            self.catch = catch

        def __hash__(self) -> int:
            return hash(7)

        def __eq__(self, other: object) -> bool:
            if not self.catch:
                tier.get("other")
                return False
            try:
                tier.set("other", 1)
            except OverdriveError as e:
                caught.append(e)
            return False

    tier[7] = "seven"
    with pytest.raises(OverdriveError):
        tier.get(Reentrant(catch=False))
    assert tier.get(Reentrant(catch=True)) is None
    assert len(caught) == 1 and isinstance(caught[0], OverdriveError)
    assert "other" not in tier
    assert tier[7] == "seven"
    tier["after"] = 1
    assert tier["after"] == 1


@pytest.mark.timeout(20)
def test_values_leaving_the_store_are_dropped_outside_its_lock() -> None:
    """A value whose ``__del__`` uses the tier: replaced, deleted, evicted,
    cleared, invalidated — the finaliser runs after the lock is released."""
    tier = MemoryTier(max_entries=2, policy="lru")
    seen: list[Any] = []

    class Finalised:
        def __del__(self) -> None:
            try:
                tier.set("from __del__", 1)
                seen.append(tier.get("from __del__"))
            except BaseException as e:
                seen.append(e)

    tier["a"] = Finalised()
    tier["a"] = "replaced"
    tier["b"] = Finalised()
    del tier["b"]
    tier["c"] = Finalised()
    tier.set("d", Finalised(), tags=["t"])
    tier.invalidate_tag("t")
    tier.set_many({"e": 1, "f": 2, "g": 3})  # evicts what is left
    tier["h"] = Finalised()
    tier.clear()
    gc.collect()
    assert seen == [1] * 5, seen


# --- threads and asyncio ---------------------------------------------------------------


@pytest.mark.timeout(120)
def test_eight_threads_mixed_operations() -> None:
    tier = MemoryTier(max_entries=32, ttl=0.05, policy="tinylfu")
    n_threads, per_thread = 8, 3000
    errors: list[str] = []
    reads = [0] * n_threads
    sets = [0] * n_threads
    barrier = threading.Barrier(n_threads)

    def check(key: int, value: Any) -> None:
        if value is not None and value.key != key:
            errors.append(f"key {key} returned a value set for {value.key}")

    def worker(t: int) -> None:
        import random

        rng = random.Random(t)
        barrier.wait()
        try:
            for i in range(per_thread):
                k = rng.randrange(64)
                op = rng.randrange(12)
                if op < 4:
                    check(k, tier.get(k))
                    reads[t] += 1
                elif op < 7:
                    tier.set(k, Val(k), tags=[f"t{k % 4}"], ttl=None if i % 3 else 1e-4)
                    sets[t] += 1
                elif op == 7:
                    got = tier.lookup(k)
                    reads[t] += 1
                    if got is not None:
                        check(k, got[0])
                elif op == 8:
                    keys = [k, (k + 1) % 64, (k + 7) % 64]
                    for kk, v in tier.get_many(keys).items():
                        check(kk, v)
                    reads[t] += 3
                elif op == 9:
                    items = {kk: Val(kk) for kk in (k, (k + 3) % 64)}
                    tier.set_many(items)
                    sets[t] += 2
                elif op == 10:
                    tier.delete(k)
                elif i % 50 == 0:
                    tier.invalidate_tag(f"t{k % 4}")
                elif i % 97 == 0:
                    tier.expire()
                else:
                    list(tier)
                    tier.stats()
                    len(tier)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(100)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert errors == []
    s = tier.stats()
    assert s["hits"] + s["misses"] == sum(reads)
    assert s["sets"] == sum(sets)
    assert s["entries"] == len(tier) <= 32
    assert s["errors"] == 0
    for k in list(tier):
        check(k, tier.get(k))
    assert errors == []


@pytest.mark.timeout(60)
def test_threads_while_key_comparisons_release_the_gil() -> None:
    """Keys whose ``__eq__`` releases the GIL (a sleep): other threads run
    Python code meanwhile and must neither deadlock nor see wrong values."""

    class SlowKey:
        def __init__(self, n: int) -> None:
            self.n = n

        def __hash__(self) -> int:
            return self.n % 3

        def __eq__(self, other: object) -> bool:
            time.sleep(0)
            return isinstance(other, SlowKey) and other.n == self.n

    tier = MemoryTier(max_entries=16)
    errors: list[str] = []

    def worker(t: int) -> None:
        for i in range(300):
            n = (i * 7 + t) % 24
            tier.set(SlowKey(n), Val(n))
            v = tier.get(SlowKey((n + 5) % 24))
            if v is not None and v.key != (n + 5) % 24:
                errors.append(f"{v.key} for {(n + 5) % 24}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(50)
    assert not any(th.is_alive() for th in threads), "deadlock"
    assert errors == []
    assert len(tier) <= 16


def test_asyncio_tasks_share_a_tier() -> None:
    tier = MemoryTier(max_entries=10_000)

    async def task(i: int) -> list[Any]:
        out = []
        for j in range(20):
            key = ("task", i, j)
            v = Val(key)
            tier.set(key, v)
            await asyncio.sleep(0)
            out.append(tier.get(key) is v)
            got = await asyncio.to_thread(tier.get, key)
            out.append(got is v)
        return out

    async def main() -> list[list[Any]]:
        return await asyncio.gather(*(task(i) for i in range(50)))

    results = asyncio.run(main())
    assert all(all(r) for r in results)
    assert len(tier) == 50 * 20
    assert tier.stats()["hits"] == 50 * 20 * 2


# --- the garbage collector -----------------------------------------------------------


def _cycles() -> Iterator[tuple[str, Any]]:
    yield "value", lambda tier, obj: tier.set("k", obj)
    yield "key", lambda tier, obj: tier.set(obj, 1)
    yield "tagged", lambda tier, obj: tier.set("k", obj, tags=["t"], ttl=60.0)


class Holder:
    """Refers back to the tier that stores it; hashable by identity."""

    tier: Any = None


@pytest.mark.parametrize("store", [c[1] for c in _cycles()], ids=[c[0] for c in _cycles()])
def test_a_cycle_through_the_tier_is_collected(store: Any) -> None:
    tier = MemoryTier()
    obj = Holder()
    obj.tier = tier
    store(tier, obj)
    ref = weakref.ref(obj)
    del tier, obj
    gc.collect()
    assert ref() is None, "the tier does not let the garbage collector see its entries"


def test_a_cycle_through_a_weigher_and_clock_is_collected() -> None:
    holder = Holder()

    def weigher(v: Any, holder: Holder = holder) -> int:
        return 1

    clock = Clock()
    clock.holder = holder  # type: ignore[attr-defined]
    tier = MemoryTier(max_bytes=100, weigher=weigher, clock=clock)
    holder.tier = tier
    tier.set("k", 1)
    ref = weakref.ref(holder)
    del tier, holder, weigher, clock
    gc.collect()
    assert ref() is None
