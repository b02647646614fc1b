"""RedisTier against a real redis-server (started by the conftest fixtures)."""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
import threading
import time
import uuid
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from overdrive.bench.redis_server import RedisServer
from overdrive.cache import (
    MISSING,
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    RedisTier,
    Tier,
    stable_key,
)
from overdrive.cache.redis_tier import mask_url
from overdrive.exceptions import (
    CacheUnavailable,
    ConfigurationError,
    InputTypeError,
    SerializationError,
)

HANG = 10.0  # a call that takes longer than this hangs (never a speed check)


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def tier(redis_server: str) -> Iterator[RedisTier]:
    t = RedisTier(redis_server, prefix=_prefix(), coalesce_window_ms=1.0)
    try:
        yield t
    finally:
        t.clear()
        t.close()


@pytest.fixture
def raw(redis_server: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_server)
    try:
        yield r
    finally:
        r.close()


# --- the Tier contract ---------------------------------------------------------------


def test_is_a_tier_and_round_trips(tier: RedisTier) -> None:
    assert isinstance(tier, Tier)
    values: list[tuple[Hashable, Any]] = [  # a list: 1 and True are one dict key
        ("s", "text"),
        (1, [1, 2, (3, 4)]),
        ((1, "a"), {"k": {1, 2}}),
        (b"b", b"\x00\xff"),
        (2.5, None),
        (True, 10**40),
    ]
    for k, v in values:
        tier.set(k, v)
    for k, v in values:
        assert tier.get(k, MISSING) == v
        hit = tier.lookup(k)
        assert hit is not None and hit[0] == v
    assert tier.get("absent", MISSING) is MISSING
    assert tier.lookup("absent") is None
    # 1, "1", 1.0 and True are different entries
    tier.set("1", "str")
    assert tier.get(1) == [1, 2, (3, 4)] and tier.get("1") == "str"
    s = tier.stats()
    assert s["sets"] == len(values) + 1
    assert s["errors"] == 0


def test_lookup_seconds_left(tier: RedisTier) -> None:
    tier.set("a", 1, ttl=100.0)
    tier.set("b", 2)  # the tier default: 3600 s
    a, b = tier.lookup("a"), tier.lookup("b")
    assert a is not None and a[0] == 1 and a[1] is not None and 95.0 < a[1] <= 100.0
    assert b is not None and b[1] is not None and 3590.0 < b[1] <= 3600.0
    forever = RedisTier(tier._url, prefix=tier.prefix, ttl=None)
    try:
        forever.set("c", 3)
        assert forever.lookup("c") == (3, None)
    finally:
        forever.close()


def test_ttl_expires(tier: RedisTier) -> None:
    tier.set("short", "v", ttl=0.05)
    deadline = time.monotonic() + HANG
    while tier.get("short", MISSING) is not MISSING:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert tier.lookup("short") is None


def test_delete(tier: RedisTier) -> None:
    tier.set("k", 1)
    assert tier.delete("k") is True
    assert tier.delete("k") is False
    assert tier.get("k") is None
    assert tier.stats()["deletes"] == 1


def test_get_many_set_many(tier: RedisTier) -> None:
    items = {i: {"n": i} for i in range(300)}
    tier.set_many(items, ttl=500.0)
    keys = [*range(0, 400, 3), "nope"]
    got = tier.get_many(keys)
    assert got == {k: items[k] for k in keys if k in items}
    assert tier.get_many([]) == {}
    hit = tier.lookup(3)
    assert hit is not None and hit[1] is not None and 490.0 < hit[1] <= 500.0
    assert tier.stats()["sets"] == 300


def test_tags(tier: RedisTier) -> None:
    tier.set("a", 1, tags=["red"])
    tier.set("b", 2, tags=["red", "blue"])
    tier.set_many({"c": 3, "d": 4}, tags=["blue"])
    tier.set("e", 5)
    assert tier.invalidate_tag("red") == 2
    assert tier.get_many(["a", "b", "c", "d", "e"]) == {"c": 3, "d": 4, "e": 5}
    assert tier.invalidate_tag("blue") == 2  # b is already gone
    assert tier.get_many(["c", "d", "e"]) == {"e": 5}
    assert tier.invalidate_tag("red") == 0
    assert tier.invalidate_tag("never-used") == 0


def test_tag_set_lives_as_long_as_its_longest_entry(tier: RedisTier, raw: redis.Redis) -> None:
    tk = tier.prefix.encode() + b"\x1f~tag:t"
    tier.set("x", 1, ttl=100.0, tags=["t"])
    assert 95_000 < raw.pttl(tk) <= 100_000
    tier.set("y", 1, ttl=50.0, tags=["t"])  # shorter: the set keeps 100 s
    assert 95_000 < raw.pttl(tk) <= 100_000
    tier.set("z", 1, ttl=1000.0, tags=["t"])
    assert 995_000 < raw.pttl(tk) <= 1_000_000
    forever = RedisTier(tier._url, prefix=tier.prefix, ttl=None)
    try:
        forever.set("w", 1, tags=["t"])
        assert raw.pttl(tk) == -1
        forever.set("v", 1, ttl=10.0, tags=["t"])  # a no-expiry member keeps it forever
        assert raw.pttl(tk) == -1
    finally:
        forever.close()


def test_clear_touches_only_the_prefix(redis_server: str, raw: redis.Redis) -> None:
    base = _prefix()
    glob_prefix = base + "a*[b]?\\"  # glob characters are escaped, not matched
    t = RedisTier(redis_server, prefix=glob_prefix)
    other = RedisTier(redis_server, prefix=base + "a")
    try:
        t.set("k1", 1, tags=["x"])
        t.set(("k", 2), 2)
        other.set("k1", "other")
        raw.set(base + "aXbZ\\k1", b"lookalike")
        raw.set(base + "plain", b"keep")
        t.clear()
        assert t.get("k1") is None and t.get(("k", 2)) is None
        assert other.get("k1") == "other"
        assert raw.get(base + "aXbZ\\k1") == b"lookalike"
        assert raw.get(base + "plain") == b"keep"
        assert (
            list(
                raw.scan_iter(
                    match=glob_prefix.replace("*", "\\*")
                    .replace("[", "\\[")
                    .replace("]", "\\]")
                    .replace("?", "\\?")
                    + "*"
                )
            )
            == []
        )
    finally:
        other.clear()
        raw.delete(base + "aXbZ\\k1", base + "plain")
        t.close()
        other.close()


def test_keys_are_prefix_plus_stable_key(tier: RedisTier, raw: redis.Redis) -> None:
    tier.set(("user", 7), "v")
    name = (tier.prefix + stable_key(("user", 7))).encode()
    assert raw.exists(name) == 1
    tier.set("plain", "v")
    assert raw.exists((tier.prefix + "plain").encode()) == 1


def test_other_serializers(redis_server: str) -> None:
    js = RedisTier(redis_server, prefix=_prefix(), serializer=JsonSerializer())
    pk = RedisTier(redis_server, prefix=_prefix(), serializer=PickleSerializer(b"k" * 32))
    try:
        js.set("a", {"x": [1, 2.5, None]})
        assert js.get("a") == {"x": [1, 2.5, None]}
        with pytest.raises(SerializationError):
            js.set("t", (1, 2))
        pk.set("c", complex(1, 2))
        assert pk.get("c") == complex(1, 2)
    finally:
        for t in (js, pk):
            t.clear()
            t.close()


def test_unserializable_value_raises(tier: RedisTier) -> None:
    with pytest.raises(SerializationError):
        tier.set("k", object())
    assert tier.get("k") is None


# --- model-based: a state machine against a dict -------------------------------------

KEYS = st.sampled_from(["a", "b", 1, 2, (1, "x"), b"k", 2.5, None, "\x1fodd"])
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
TTLS = st.sampled_from([None, 1000.0, 5000.5])
TAGS = st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=2)


class RedisTierMachine(RuleBasedStateMachine):
    """Every operation's result equals a dict model's (long TTLs: nothing expires)."""

    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.tier = RedisTier(self.url, prefix=_prefix(), ttl=None)
        self.data: dict[Hashable, Any] = {}
        self.ttl: dict[Hashable, float | None] = {}
        self.tagged: dict[str, set[Hashable]] = {}

    @initialize()
    def start(self) -> None:
        self.tier.clear()

    @rule(key=KEYS, value=VALUES, ttl=TTLS, tags=TAGS)
    def set(self, key: Hashable, value: Any, ttl: float | None, tags: list[str]) -> None:
        self.tier.set(key, value, ttl=ttl, tags=tags)
        self.data[key] = value
        self.ttl[key] = ttl
        for t in tags:
            self.tagged.setdefault(t, set()).add(key)

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=4), ttl=TTLS, tags=TAGS)
    def set_many(self, items: dict[Hashable, Any], ttl: float | None, tags: list[str]) -> None:
        self.tier.set_many(items, ttl=ttl, tags=tags)
        for k, v in items.items():
            self.data[k] = v
            self.ttl[k] = ttl
            for t in tags:
                self.tagged.setdefault(t, set()).add(k)

    @rule(key=KEYS)
    def get(self, key: Hashable) -> None:
        assert self.tier.get(key, MISSING) == self.data.get(key, MISSING)

    @rule(key=KEYS)
    def lookup(self, key: Hashable) -> None:
        got = self.tier.lookup(key)
        if key not in self.data:
            assert got is None
            return
        assert got is not None
        value, left = got
        assert value == self.data[key]
        ttl = self.ttl[key]
        if ttl is None:
            assert left is None
        else:
            assert left is not None and ttl - 60.0 < left <= ttl

    @rule(keys=st.lists(KEYS, max_size=6))
    def get_many(self, keys: list[Hashable]) -> None:
        assert self.tier.get_many(keys) == {k: self.data[k] for k in keys if k in self.data}

    @rule(key=KEYS)
    def delete(self, key: Hashable) -> None:
        assert self.tier.delete(key) is (key in self.data)
        self.data.pop(key, None)

    @rule(tag=st.sampled_from(["t1", "t2", "t3"]))
    def invalidate(self, tag: str) -> None:
        members = self.tagged.pop(tag, set())
        expected = sum(1 for k in members if k in self.data)
        assert self.tier.invalidate_tag(tag) == expected
        for k in members:
            self.data.pop(k, None)

    @precondition(lambda self: len(self.data) > 3)
    @rule()
    def clear(self) -> None:
        self.tier.clear()
        self.data.clear()
        self.tagged.clear()

    @invariant()
    def no_errors(self) -> None:
        assert self.tier.stats()["errors"] == 0

    def teardown(self) -> None:
        self.tier.clear()
        self.tier.close()


def test_state_machine(redis_server: str) -> None:
    RedisTierMachine.url = redis_server
    run = RedisTierMachine.TestCase
    run.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
    run().runTest()


# --- coalescing ----------------------------------------------------------------------


@pytest.mark.parametrize("window_ms", [0.0, 2.0])
def test_concurrent_gets_are_coalesced(redis_server: str, window_ms: float) -> None:
    t = RedisTier(redis_server, prefix=_prefix(), coalesce_window_ms=window_ms)
    n_threads, per_thread = 32, 40
    try:
        t.set_many({(i, j): f"{i}/{j}" for i in range(n_threads) for j in range(per_thread)})
        barrier = threading.Barrier(n_threads)
        wrong: list[Any] = []

        def worker(i: int) -> None:
            barrier.wait()
            for j in range(per_thread):
                got = t.get((i, j)) if j % 2 else t.lookup((i, j))
                if j % 2 == 0:
                    assert got is not None
                    got = got[0]
                if got != f"{i}/{j}":
                    wrong.append(((i, j), got))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(HANG * 3)
        assert wrong == []
        s = t.stats()
        total = n_threads * per_thread
        assert s["hits"] == total and s["misses"] == 0 and s["errors"] == 0
        assert s["coalesced_keys"] == total
        assert s["coalesced_batches"] < total / 2  # most round trips served several callers
    finally:
        t.clear()
        t.close()


def test_max_coalesce_bounds_batches(redis_server: str) -> None:
    t = RedisTier(redis_server, prefix=_prefix(), coalesce_window_ms=5.0, max_coalesce=3)
    try:
        t.set_many({i: i for i in range(16)})
        results: dict[int, Any] = {}

        def worker(i: int) -> None:
            results[i] = t.get(i)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(HANG)
        assert results == {i: i for i in range(16)}
        s = t.stats()
        assert s["coalesced_keys"] == 16 and s["coalesced_batches"] >= 16 / 3
    finally:
        t.clear()
        t.close()


def test_asyncio_tasks_are_coalesced(redis_server: str) -> None:
    t = RedisTier(redis_server, prefix=_prefix(), coalesce_window_ms=2.0)
    try:
        t.set_many({i: [i, str(i)] for i in range(300)}, ttl=900.0)

        async def main() -> None:
            gets = await asyncio.gather(*(t.aget(i) for i in range(300)))
            assert gets == [[i, str(i)] for i in range(300)]
            looks = await asyncio.gather(*(t.alookup(i) for i in range(0, 300, 7)))
            for i, hit in zip(range(0, 300, 7), looks, strict=True):
                assert hit is not None and hit[0] == [i, str(i)]
                assert hit[1] is not None and 850.0 < hit[1] <= 900.0
            assert await t.aget("nope", MISSING) is MISSING
            assert await t.alookup("nope") is None
            await t.aset("x", {"a": 1}, ttl=50.0, tags=["g"])
            await t.aset_many({"y": 1, "z": 2}, tags=["g"])
            assert await t.aget_many(["x", "y", "z", "w"]) == {"x": {"a": 1}, "y": 1, "z": 2}
            assert await t.adelete("y") is True
            assert await t.adelete("y") is False
            assert t.invalidate_tag("g") == 2

        asyncio.run(main())
        s = t.stats()
        assert s["coalesced_keys"] == 300 + len(range(0, 300, 7)) + 2
        assert s["coalesced_batches"] < 300 / 2
    finally:
        t.clear()
        t.close()


def test_threads_and_tasks_share_batches(redis_server: str) -> None:
    t = RedisTier(redis_server, prefix=_prefix(), coalesce_window_ms=2.0)
    try:
        t.set_many({i: i * 3 for i in range(200)})
        wrong: list[Any] = []
        stop = threading.Event()

        def thread_worker(off: int) -> None:
            while not stop.is_set():
                for i in range(off, 200, 8):
                    if t.get(i) != i * 3:
                        wrong.append(i)

        async def main() -> None:
            for _ in range(5):
                got = await asyncio.gather(*(t.aget(i) for i in range(200)))
                if got != [i * 3 for i in range(200)]:
                    wrong.append("async")

        threads = [threading.Thread(target=thread_worker, args=(k,)) for k in range(8)]
        for th in threads:
            th.start()
        try:
            asyncio.run(main())
        finally:
            stop.set()
            for th in threads:
                th.join(HANG)
        assert wrong == []
        assert t.stats()["errors"] == 0
    finally:
        t.clear()
        t.close()


def test_async_calls_do_not_block_the_loop(private_redis: RedisServer) -> None:
    t = RedisTier(private_redis.url, prefix=_prefix(), timeout_s=0.5, retry_after_s=0.0)
    t.set("k", 1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def main() -> Any:
        task = asyncio.create_task(ticker())
        private_redis.pause()
        try:
            got = await t.aget("k", "fallback")
            await t.aset("k2", 2)
        finally:
            private_redis.resume()
            task.cancel()
        return got

    try:
        assert asyncio.run(main()) == "fallback"
        assert ticks >= 5  # the loop kept running while Redis hung
        assert t.stats()["errors"] >= 2
    finally:
        t.close()


# --- data read back is never trusted -------------------------------------------------


class _Boom:
    """Unpickling this creates a marker file (the attack a forged entry attempts)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path(self.path), "pwned"))


@given(junk=st.binary(max_size=64))
@settings(max_examples=60, deadline=None)
def test_random_bytes_are_a_counted_miss(redis_server: str, junk: bytes) -> None:
    with RedisTier(redis_server, prefix="junk:") as t, redis.Redis.from_url(redis_server) as r:
        before = t.stats()["errors"]
        r.set("junk:k", junk)
        try:
            got = t.get("k", MISSING)
            looked = t.lookup("k")
        finally:
            r.delete("junk:k")
        try:
            expected = t._ser.loads(junk)
        except Exception:
            assert got is MISSING and looked is None
            assert t.stats()["errors"] == before + 2
        else:  # a few short byte strings are valid msgpack frames
            assert got == expected


def test_forged_pickle_runs_no_code(redis_server: str, raw: redis.Redis, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Boom(str(marker)))
    secret = b"s" * 32
    msgpack_tier = RedisTier(redis_server, prefix=_prefix())
    pickle_tier = RedisTier(redis_server, prefix=_prefix(), serializer=PickleSerializer(secret))
    try:
        for t in (msgpack_tier, pickle_tier):
            forged = [
                payload,  # a bare pickle
                b"\x30" + payload,  # with the pickle codec's header byte
                b"\x30" + b"\x00" * 32 + payload,  # and a made-up signature
                b"\x10" + payload,  # claiming to be msgpack
            ]
            for i, blob in enumerate(forged):
                raw.set(f"{t.prefix}f{i}", blob)
                assert t.get(f"f{i}", MISSING) is MISSING
                assert t.lookup(f"f{i}") is None
                assert t.get_many([f"f{i}"]) == {}
            assert t.stats()["errors"] == 3 * len(forged)
        assert not marker.exists()
        # the genuine article still works for the signed tier
        pickle_tier.set("ok", {"a": complex(0, 1)})
        assert pickle_tier.get("ok") == {"a": complex(0, 1)}
    finally:
        for t in (msgpack_tier, pickle_tier):
            t.clear()
            t.close()


def test_get_many_drops_only_the_unreadable_entries(tier: RedisTier, raw: redis.Redis) -> None:
    tier.set_many({"a": 1, "c": (1, "x")})
    raw.set(f"{tier.prefix}b", b"\x10\xc1")  # claims msgpack; 0xc1 is never valid msgpack
    before = tier.stats()
    assert tier.get_many(["a", "b", "c", "d"]) == {"a": 1, "c": (1, "x")}
    after = tier.stats()
    assert after["errors"] - before["errors"] == 1
    assert after["hits"] - before["hits"] == 2  # the forged entry is a miss, not a hit
    assert after["misses"] - before["misses"] == 2


@settings(max_examples=60, deadline=None)
@given(values=st.lists(VALUES, max_size=8))
def test_loads_many_is_loads_of_each(values: list[Any]) -> None:
    ser = MsgpackSerializer()
    blobs = [ser.dumps(v) for v in values]
    assert ser.loads_many(blobs) == [ser.loads(b) for b in blobs] == values


def test_value_of_another_type_reads_as_absent(tier: RedisTier, raw: redis.Redis) -> None:
    raw.rpush(f"{tier.prefix}lst", b"x")
    assert tier.get("lst", MISSING) is MISSING
    assert tier.lookup("lst") is None
    assert tier.get_many(["lst"]) == {}


# --- Redis failing -------------------------------------------------------------------


def test_redis_killed_mid_run(redis_restart: RedisServer) -> None:
    srv = redis_restart
    t = RedisTier(srv.url, prefix=_prefix(), timeout_s=0.25, retry_after_s=0.3)
    try:
        t.set("k", "v")
        assert t.get("k") == "v"
        srv.kill()
        start = time.monotonic()
        assert t.get("k", "default") == "default"
        assert t.lookup("k") is None
        t.set("k2", "v2")  # skipped, no exception
        t.set_many({"a": 1, "b": 2}, tags=["x"])
        assert t.get_many(["k", "a"]) == {}
        assert t.delete("k") is False
        assert t.invalidate_tag("x") == 0
        t.clear()
        assert t.acquire_lock("L", 1.0) is None
        assert t.release_lock("L", "token") is False
        assert t.ping() is False
        assert time.monotonic() - start < HANG
        s = t.stats()
        assert s["errors"] >= 1 and s["available"] is False
        assert s["skipped_while_down"] >= 1  # no connection attempt for every call
        # concurrent callers while down: all misses, no exception
        res: list[Any] = []
        ths = [threading.Thread(target=lambda: res.append(t.get("k", 0))) for _ in range(16)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(HANG)
        assert res == [0] * 16
        srv.start()  # same port, empty (no persistence)
        deadline = time.monotonic() + HANG
        while True:
            t.set("back", 1)
            if t.get("back") == 1:
                break
            assert time.monotonic() < deadline, t.stats()
            time.sleep(0.05)
        assert t.stats()["available"] is True
        # the restarted server has no scripts cached: they load again
        t.set("x", 1, tags=["tag"])
        hit = t.lookup("x")
        assert hit is not None and hit[0] == 1
        assert t.invalidate_tag("tag") == 1
        tok = t.acquire_lock("L", 5.0)
        assert tok is not None and t.release_lock("L", tok) is True
    finally:
        t.close()


def test_hung_redis_is_a_miss_within_the_timeout(private_redis: RedisServer) -> None:
    t = RedisTier(private_redis.url, prefix=_prefix(), timeout_s=0.2, retry_after_s=0.2)
    try:
        t.set("k", "v")
        private_redis.pause()
        try:
            start = time.monotonic()
            assert t.get("k", "d") == "d"
            t.set("k", "new")
            assert time.monotonic() - start < HANG
        finally:
            private_redis.resume()
        deadline = time.monotonic() + HANG
        while t.get("k", MISSING) != "v":  # recovers; the skipped set left "v"
            assert time.monotonic() < deadline, t.stats()
            time.sleep(0.05)
        assert t.stats()["errors"] >= 1
    finally:
        t.close()


def test_strict_raises_cache_unavailable(private_redis: RedisServer) -> None:
    t = RedisTier(private_redis.url, prefix=_prefix(), strict=True, retry_after_s=30.0)
    try:
        t.set("k", 1)
        assert t.get("k") == 1
        private_redis.kill()
        with pytest.raises(CacheUnavailable):
            t.get("k")
        for call in (
            lambda: t.get("k"),  # skipped while down: raises at once
            lambda: t.lookup("k"),
            lambda: t.set("k", 2),
            lambda: t.get_many(["k"]),
            lambda: t.delete("k"),
            lambda: t.invalidate_tag("x"),
            lambda: t.clear(),
            lambda: t.acquire_lock("k", 1.0),
        ):
            with pytest.raises(CacheUnavailable) as info:
                call()
            assert isinstance(info.value, ConnectionError)

        async def main() -> None:
            with pytest.raises(CacheUnavailable):
                await t.aget("k")
            with pytest.raises(CacheUnavailable):
                await t.aset("k", 1)

        asyncio.run(main())
        assert t.ping() is False
    finally:
        t.close()


def test_unreachable_host_at_start_is_not_fatal() -> None:
    from overdrive.bench.redis_server import free_port

    t = RedisTier(f"redis://127.0.0.1:{free_port()}/0", prefix=_prefix(), retry_after_s=60.0)
    try:
        assert t.get("k", "d") == "d"
        t.set("k", 1)
        assert t.get("k", "d") == "d"
        s = t.stats()
        assert s["errors"] == 1 and s["skipped_while_down"] == 2
    finally:
        t.close()
    # a cluster URL nobody answers: the cluster client fails on creation, lazily
    c = RedisTier(f"redis+cluster://127.0.0.1:{free_port()}", prefix=_prefix(), retry_after_s=0)
    try:
        assert c.get("k", "d") == "d"
        c.set("k", 1)
        assert c.get_many(["k"]) == {}
        assert c.stats()["errors"] == 3
    finally:
        c.close()
    with pytest.raises(ConfigurationError, match="url") as info:
        RedisTier(f"redis://u:{PASSWORD}@127.0.0.1:notaport/0")
    assert PASSWORD not in str(info.value)


# --- passwords -----------------------------------------------------------------------

PASSWORD = "pw-Very-Secret-8x7"


def test_password_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    srv = RedisServer(password=PASSWORD).start()
    caplog.set_level(logging.DEBUG, logger="overdrive")
    try:
        url = f"redis://default:{PASSWORD}@127.0.0.1:{srv.port}/0"
        good = RedisTier(url, prefix=_prefix())
        good.set("k", 1)
        assert good.get("k") == 1
        assert PASSWORD not in repr(good) and PASSWORD not in str(good)
        assert repr(good).count("***") == 1 and "default:***@127.0.0.1" in repr(good)
        assert PASSWORD not in str(good.stats())
        good.close()

        bad_pw = PASSWORD + "-wrong"
        bad = RedisTier(
            f"redis://default:{bad_pw}@127.0.0.1:{srv.port}/0", prefix="x:", strict=True
        )
        with pytest.raises(CacheUnavailable) as info:
            bad.get("k")
        assert bad_pw not in str(info.value) and bad_pw not in repr(info.value)
        assert info.value.__cause__ is None and bad_pw not in str(info.value.__context__)
        bad.close()
        lenient = RedisTier(f"redis://:{bad_pw}@127.0.0.1:{srv.port}/0", prefix="x:")
        assert lenient.get("k", "d") == "d"
        assert bad_pw not in repr(lenient)
        lenient.close()
        for rec in caplog.records:
            assert PASSWORD not in rec.getMessage()
        assert any("failed" in rec.getMessage() for rec in caplog.records)
        # a client passed in: its password is scrubbed from messages too
        client = redis.Redis(port=srv.port, password=bad_pw, socket_timeout=0.5)
        given_client = RedisTier(client=client, strict=True)
        with pytest.raises(CacheUnavailable) as info2:
            given_client.get("k")
        assert bad_pw not in str(info2.value) and bad_pw not in repr(given_client)
        given_client.close()
        client.close()
    finally:
        srv.stop()


def test_mask_url() -> None:
    assert mask_url("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert mask_url("redis://:pw@host") == "redis://:***@host"
    assert mask_url("rediss://host:1/2?password=pw&db=3") == "rediss://host:1/2?password=***&db=3"
    assert mask_url("redis://host:6379") == "redis://host:6379"
    bad = RedisTier(f"redis://u:{PASSWORD}@127.0.0.1:1/0")
    assert PASSWORD not in repr(bad)
    bad.close()
    with pytest.raises(ConfigurationError) as info:
        RedisTier(f"http://u:{PASSWORD}@host/")
    assert PASSWORD not in str(info.value)


# --- locks, ping, close, client= -----------------------------------------------------


def test_cross_process_lock(redis_server: str) -> None:
    a = RedisTier(redis_server, prefix="locks:")
    b = RedisTier(redis_server, prefix="locks:")  # another process, same prefix
    key = ("job", uuid.uuid4().hex)
    try:
        tok = a.acquire_lock(key, 30.0)
        assert isinstance(tok, str) and len(tok) >= 16
        assert b.acquire_lock(key, 30.0) is None
        assert b.release_lock(key, "not-the-token") is False
        assert a.release_lock(key, tok) is True
        assert a.release_lock(key, tok) is False
        tok2 = b.acquire_lock(key, 0.05)
        assert tok2 is not None and tok2 != tok
        deadline = time.monotonic() + HANG
        while (tok3 := a.acquire_lock(key, 30.0)) is None:  # b's lock expires
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert b.release_lock(key, tok2) is False  # expired: not b's any more
        assert a.release_lock(key, tok3) is True
        assert a.get(key) is None  # locks live apart from entries
    finally:
        a.close()
        b.close()


def test_ping(tier: RedisTier) -> None:
    assert tier.ping() is True


def test_close_waits_and_later_calls_miss(redis_server: str) -> None:
    t = RedisTier(redis_server, prefix=_prefix(), coalesce_window_ms=5.0)
    t.set_many({i: i for i in range(50)})
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(21)

    def worker() -> None:
        start.wait()
        try:
            for i in range(50):
                results.append((i, t.get(i, MISSING)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for th in threads:
        th.start()
    start.wait()
    t.close()
    for th in threads:
        th.join(HANG)
    assert errors == []
    assert len(results) == 20 * 50
    assert all(v == i or v is MISSING for i, v in results)
    assert t.get(1, "closed") == "closed"
    t.set(1, 2)  # skipped
    t.close()  # idempotent
    s = t.stats()
    assert s["closed"] is True
    strict = RedisTier(redis_server, prefix=_prefix(), strict=True)
    strict.close()
    with pytest.raises(CacheUnavailable, match="closed"):
        strict.get("k")


def test_client_passed_in_is_used_and_left_open(redis_server: str) -> None:
    client = redis.Redis.from_url(redis_server)
    t = RedisTier(client=client, prefix=_prefix())
    t.set("k", "v")
    assert t.get("k") == "v"
    t.clear()
    t.close()
    assert client.ping() is True
    client.close()
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisTier(client=redis.Redis.from_url(redis_server, decode_responses=True))


# --- bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"ttl": 0}, ConfigurationError, "ttl"),
        ({"ttl": -1.0}, ConfigurationError, "ttl"),
        ({"ttl": math.nan}, ConfigurationError, "ttl"),
        ({"ttl": math.inf}, ConfigurationError, "ttl"),
        ({"ttl": "60"}, InputTypeError, "ttl"),
        ({"timeout_s": 0}, ConfigurationError, "timeout_s"),
        ({"timeout_s": None}, InputTypeError, "timeout_s"),
        ({"coalesce_window_ms": -1}, ConfigurationError, "coalesce_window_ms"),
        ({"max_coalesce": 0}, ConfigurationError, "max_coalesce"),
        ({"max_coalesce": 2.5}, InputTypeError, "max_coalesce"),
        ({"retry_after_s": -0.5}, ConfigurationError, "retry_after_s"),
        ({"prefix": b"od:"}, InputTypeError, "prefix"),
        ({"strict": 1}, InputTypeError, "strict"),
        ({"name": 3}, InputTypeError, "name"),
        ({"serializer": "msgpack"}, InputTypeError, "serializer"),
        ({"client": object()}, InputTypeError, "client"),
        ({"url": 5}, InputTypeError, "url"),
        ({"url": None}, InputTypeError, "url"),
        ({"url": "localhost:6379"}, ConfigurationError, "url"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any], exc: type, name: str) -> None:
    with pytest.raises(exc, match=name):
        RedisTier(**kwargs)


def test_bad_call_arguments(tier: RedisTier) -> None:
    with pytest.raises(InputTypeError, match="cache key"):
        tier.get(object())  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="cache key"):
        tier.set(["list"], 1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl"):
        tier.set("k", 1, ttl=0)
    with pytest.raises(InputTypeError, match="ttl"):
        tier.set("k", 1, ttl="5")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="tags"):
        tier.set("k", 1, tags="red")
    with pytest.raises(InputTypeError, match="tag"):
        tier.set("k", 1, tags=[1])  # type: ignore[list-item]
    with pytest.raises(InputTypeError, match="tag"):
        tier.invalidate_tag(b"red")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="keys"):
        tier.get_many("abc")
    with pytest.raises(InputTypeError, match="items"):
        tier.set_many([("k", 1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl_s"):
        tier.acquire_lock("k", 0)
    with pytest.raises(InputTypeError, match="token"):
        tier.release_lock("k", None)  # type: ignore[arg-type]
    assert tier.get("k") is None  # nothing was written by the refused calls


# --- Redis Cluster (3 masters) -------------------------------------------------------


def test_cluster_tier(redis_cluster: str) -> None:
    from redis.cluster import RedisCluster

    t = RedisTier(redis_cluster, prefix=_prefix(), coalesce_window_ms=2.0)
    try:
        items = {i: [i, "v"] for i in range(200)}  # spread over every slot range
        t.set_many(items, ttl=900.0, tags=["all"])
        t.set("solo", "x", tags=["other"])
        assert t.get_many(list(range(250))) == items
        hit = t.lookup(7)
        assert hit is not None and hit[0] == [7, "v"] and hit[1] is not None
        assert 850.0 < hit[1] <= 900.0
        wrong: list[Any] = []

        def worker(off: int) -> None:
            for i in range(off, 200, 16):
                got = t.get(i) if i % 2 else t.lookup(i)
                value = got if i % 2 else (got[0] if got else None)
                if value != [i, "v"]:
                    wrong.append(i)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(HANG)
        assert wrong == []
        s = t.stats()
        assert s["errors"] == 0 and s["coalesced_keys"] > s["coalesced_batches"]

        async def main() -> list[Any]:
            return list(await asyncio.gather(*(t.aget(i) for i in range(200))))

        assert asyncio.run(main()) == [[i, "v"] for i in range(200)]
        tok = t.acquire_lock("job", 10.0)
        assert tok is not None and t.acquire_lock("job", 10.0) is None
        assert t.release_lock("job", tok) is True
        assert t.invalidate_tag("all") == 200
        assert t.get_many(list(range(200))) == {}
        assert t.get("solo") == "x"
        t.clear()
        assert t.get("solo") is None
        # a client passed in
        host, port = redis_cluster.rpartition("/")[2].split(":")
        client = RedisCluster(host=host, port=int(port))
        given = RedisTier(client=client, prefix=_prefix())
        given.set_many({i: i for i in range(50)})
        assert given.get_many(list(range(50))) == {i: i for i in range(50)}
        assert "redis+cluster://" in repr(given)
        given.clear()
        given.close()
        client.close()
    finally:
        t.clear()
        t.close()


def test_cancelled_async_leader_and_close_from_the_loop(redis_server: str) -> None:
    t = RedisTier(redis_server, prefix=_prefix())
    t.set_many({i: -i for i in range(50)})

    async def cancel_leader() -> None:
        tasks = [asyncio.create_task(t.aget(i, MISSING)) for i in range(50)]
        await asyncio.sleep(0)  # every task joined; the leader has not sent the batch yet
        tasks[0].cancel()
        got = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(got[0], asyncio.CancelledError)
        assert got[1:] == [-i for i in range(1, 50)]

    async def close_inside() -> None:
        tasks = [asyncio.create_task(t.aget(i, MISSING)) for i in range(50)]
        await asyncio.sleep(0)
        t.close()  # blocks this loop: close() must run the pending batch itself
        assert await asyncio.gather(*tasks) == [-i for i in range(50)]
        assert await t.aget(1, "closed") == "closed"

    try:
        asyncio.run(cancel_leader())
        t.clear()
        t.set_many({i: -i for i in range(50)})
        asyncio.run(close_inside())
    finally:
        t.close()
        with RedisTier(redis_server, prefix=t.prefix) as cleaner:
            cleaner.clear()


def test_bench_rows_run(redis_server: str) -> None:
    """The benchmark's Redis rows run end to end (numbers are the harness's business)."""
    from overdrive.bench.suites import BenchConfig, SuiteResult
    from overdrive.bench.suites._common import VALUE_COLUMNS
    from overdrive.bench.suites.cache_redis import redis_rows

    result = SuiteResult("cache", VALUE_COLUMNS)
    redis_rows(BenchConfig(quick=True, repeats=3), result, url=redis_server)
    impls = {r["impl"] for r in result.rows}
    assert any(i.startswith("RedisTier.get, ") for i in impls)
    assert any(i.startswith("RedisTier.aget, ") for i in impls)
    assert all(r["value"] > 0 and r["unit"] == "us/key" for r in result.rows)
    assert {c.name.split(" (")[0] for c in result.checks} >= {
        "L2 coalesced get per key",
        "L2 coalesced aget per key",
        "L2 lone get vs redis-py GET",
    }
    assert set(result.rows[0]) == set(VALUE_COLUMNS)


def test_import_without_redis_py() -> None:
    """``import overdrive.cache`` works without redis-py; RedisTier says what to install."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import overdrive.cache as c\n"
        "try:\n"
        "    c.RedisTier()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install overdrive[redis]" in out.stdout


def test_down_redis_is_skipped_then_probed_once(private_redis: RedisServer) -> None:
    t = RedisTier(private_redis.url, prefix=_prefix(), timeout_s=0.2, retry_after_s=60.0)
    try:
        t.set("k", 1)
        private_redis.pause()  # hung: the first call pays the timeout...
        try:
            assert t.get("k", "d") == "d"
            for _ in range(20):  # ...the next ones do not even try
                assert t.get("k", "d") == "d"
                t.set("k", 2)
        finally:
            private_redis.resume()
        s = t.stats()
        assert s["errors"] == 1 and s["skipped_while_down"] == 40
    finally:
        t.close()

    t = RedisTier(private_redis.url, prefix=_prefix(), retry_after_s=1.0)
    try:
        private_redis.kill()
        assert t.get("k", "d") == "d"
        assert t.stats()["errors"] == 1
        time.sleep(1.05)  # the skip window is over: exactly one caller probes
        barrier = threading.Barrier(16)

        def call() -> None:
            barrier.wait()
            t.get("k")

        threads = [threading.Thread(target=call) for _ in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(HANG)
        s = t.stats()
        assert s["errors"] == 2 and s["skipped_while_down"] == 15
    finally:
        t.close()


def test_blocking_get_inside_a_coroutine_does_not_stall(redis_server: str) -> None:
    t = RedisTier(redis_server, prefix=_prefix(), timeout_s=5.0)
    t.set_many({i: i for i in range(10)})

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(t.aget(i)) for i in range(10)]
        await asyncio.sleep(0)  # an asyncio batch is open, not yet sent
        start = time.monotonic()
        assert t.get(3) == 3  # a blocking call on the loop's own thread
        assert time.monotonic() - start < 5.0  # did not wait for the blocked loop
        return list(await asyncio.gather(*tasks))

    try:
        assert asyncio.run(main()) == list(range(10))
        assert t.stats()["errors"] == 0
    finally:
        t.clear()
        t.close()


def test_cancelled_async_callers_while_their_batch_is_in_flight(
    private_redis: RedisServer,
) -> None:
    """Tasks cancelled while their MGET is in flight raise CancelledError; the
    others of the same batch still get their values."""
    t = RedisTier(private_redis.url, prefix=_prefix(), timeout_s=HANG / 2)
    t.set_many({i: i * 10 for i in range(40)})
    cancel = {0, 3, 4, 17, 39}  # 0 leads the batch

    async def main() -> list[Any]:
        private_redis.pause()
        try:
            tasks = [asyncio.create_task(t.aget(i, MISSING)) for i in range(40)]
            for _ in range(100):  # until the batch is in the I/O thread
                await asyncio.sleep(0.005)
                if t._active and not t._unstarted:
                    break
            for i in cancel:
                tasks[i].cancel()
            await asyncio.sleep(0.02)
        finally:
            private_redis.resume()
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        got = asyncio.run(main())
        for i, g in enumerate(got):
            if i in cancel:
                assert isinstance(g, asyncio.CancelledError)
            else:
                assert g == i * 10
        s = t.stats()
        assert s["errors"] == 0 and s["hits"] == 40 and s["coalesced_batches"] == 1
        assert asyncio.run(t.aget(5)) == 50  # the tier goes on serving
    finally:
        t.close()


def test_batch_whose_event_loop_closed(private_redis: RedisServer) -> None:
    """A batch finishing after its tasks' loop closed does not fail (nobody
    awaits there any more) and the tier keeps serving other loops and threads."""
    t = RedisTier(private_redis.url, prefix=_prefix(), timeout_s=HANG / 2)
    t.set_many({i: str(i) for i in range(20)})
    loop = asyncio.new_event_loop()
    private_redis.pause()
    try:
        tasks = [loop.create_task(t.aget(i)) for i in range(20)]
        loop.run_until_complete(asyncio.sleep(0.05))  # the batch is in flight
        assert not any(task.done() for task in tasks)
        loop.close()
    finally:
        private_redis.resume()
    try:
        deadline = time.monotonic() + HANG
        while t.stats()["coalesced_batches"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        s = t.stats()
        assert s["coalesced_batches"] == 1 and s["hits"] == 20 and s["errors"] == 0
        assert t.get(3) == "3"
        assert asyncio.run(t.aget(4)) == "4"
    finally:
        t.close()
        del tasks  # abandoned with their loop


def test_async_callers_of_two_loops_share_batches(redis_server: str) -> None:
    """Tasks of two event loops (two threads) in the same batches each get
    their own values; each loop is woken by its own callback."""
    t = RedisTier(redis_server, prefix=_prefix(), coalesce_window_ms=2.0)
    t.set_many({i: [i] for i in range(100)})
    wrong: list[Any] = []

    async def main(off: int) -> None:
        for _ in range(20):
            got = await asyncio.gather(*(t.aget(i) for i in range(off, 100, 2)))
            if got != [[i] for i in range(off, 100, 2)]:
                wrong.append(off)
            looks = await asyncio.gather(*(t.alookup(i) for i in range(off, 10, 2)))
            if [lk[0] if lk else None for lk in looks] != [[i] for i in range(off, 10, 2)]:
                wrong.append(-off)

    try:
        threads = [threading.Thread(target=asyncio.run, args=(main(k),)) for k in (0, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(HANG)
        assert wrong == []
        assert t.stats()["errors"] == 0
    finally:
        t.clear()
        t.close()


def test_cached_exception_values_are_returned_not_raised(redis_server: str) -> None:
    """A cached value that is an exception instance (a pickle tier) comes back
    as the value from aget/alookup: batch outcomes never mistake it for a failure."""
    t = RedisTier(redis_server, prefix=_prefix(), serializer=PickleSerializer(b"s" * 32))
    try:
        t.set("e", ValueError("cached"))

        async def main() -> tuple[Any, ...]:
            return tuple(await asyncio.gather(t.aget("e"), t.alookup("e"), t.aget("e")))

        got, looked, again = asyncio.run(main())
        assert isinstance(got, ValueError) and got.args == ("cached",)
        assert looked is not None and isinstance(looked[0], ValueError)
        assert isinstance(again, ValueError)
    finally:
        t.clear()
        t.close()
