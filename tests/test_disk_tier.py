"""DiskTier: the L3 tier on a real SQLite file.

A hypothesis state machine checks the tier against a dict model (injected
clock for TTL, queued writes, flushes, close/reopen); the other tests cover
what a model cannot: other processes, threads, bad files and forged rows,
eviction by access time, argument errors and nothing lost on close.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import multiprocessing
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from overdrive.cache import (
    DiskTier,
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Tier,
    stable_key,
)
from overdrive.exceptions import (
    CacheDataError,
    CacheUnavailable,
    ConfigurationError,
    InputTypeError,
    SerializationError,
)

TESTS_DIR = str(Path(__file__).resolve().parent)  # overdrive itself: the installed wheel


class FakeClock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., DiskTier]]:
    """DiskTier factory: every tier it made is closed at teardown."""
    made: list[DiskTier] = []

    def factory(name: str = "cache.db", **kwargs: Any) -> DiskTier:
        tier = DiskTier(tmp_path / name, **kwargs)
        made.append(tier)
        return tier

    yield factory
    for tier in made:
        tier.close()


def run_python(code: str, timeout: float = 60.0) -> str:
    """Run ``code`` in a fresh interpreter that imports this checkout's overdrive."""
    env = dict(os.environ)
    env["PYTHONPATH"] = TESTS_DIR + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert res.returncode == 0, f"child failed ({res.returncode}):\n{res.stderr[-3000:]}"
    return res.stdout


def raw_rows(path: Path) -> dict[str, bytes]:
    """key -> value column, read with plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM entries").fetchall())
    finally:
        conn.close()


def plant(path: Path, key: str, blob: bytes) -> None:
    """Overwrite a row's value column behind the tier's back (a forged entry)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("UPDATE entries SET value = ? WHERE key = ?", (blob, key))
    finally:
        conn.close()


# --- the model ---------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", 1, 2, (1, "x"), b"k", None, 2.5, "\x1fodd"])
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner),
    max_leaves=8,
)
TTLS = st.none() | st.floats(min_value=0.5, max_value=100.0) | st.just(math.inf)
TAGS = st.lists(st.sampled_from(["red", "blue", "green"]), max_size=2, unique=True)
DEFAULT_TTL = 30.0


class DiskTierMachine(RuleBasedStateMachine):
    """The tier behaves as a dict of (value, expires_at, tags) read through a clock."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="disktier-")
        self.path = os.path.join(self.dir, "m.db")
        self.clock = FakeClock()
        self.model: dict[str, tuple[Any, Any, float | None, tuple[str, ...]]] = {}
        self.tier: DiskTier | None = None

    @initialize(write_behind=st.booleans(), interval=st.sampled_from([0.0, 5.0, 60_000.0]))
    def open(self, write_behind: bool, interval: float) -> None:
        self.write_behind, self.interval = write_behind, interval
        self.tier = self._new()

    def _new(self) -> DiskTier:
        return DiskTier(
            self.path,
            ttl=DEFAULT_TTL,
            clock=self.clock,
            write_behind=self.write_behind,
            flush_interval_ms=self.interval,
            max_pending=7,
        )

    def teardown(self) -> None:
        if self.tier is not None:
            self.tier.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _live(self, key: Any) -> tuple[Any, float | None] | None:
        entry = self.model.get(stable_key(key))
        if entry is None:
            return None
        _, value, expires_at, _ = entry
        if expires_at is not None and expires_at <= self.clock.now:
            return None
        return value, expires_at

    def _expires(self, ttl: float | None) -> float | None:
        if ttl is None:
            return self.clock.now + DEFAULT_TTL
        return None if ttl == math.inf else self.clock.now + ttl

    @rule(key=KEYS, value=VALUES, ttl=TTLS, tags=TAGS)
    def set(self, key: Any, value: Any, ttl: float | None, tags: list[str]) -> None:
        assert self.tier is not None
        self.tier.set(key, value, ttl=ttl, tags=tags)
        self.model[stable_key(key)] = (key, value, self._expires(ttl), tuple(tags))

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=4), ttl=TTLS, tags=TAGS)
    def set_many(self, items: dict[Any, Any], ttl: float | None, tags: list[str]) -> None:
        assert self.tier is not None
        self.tier.set_many(items, ttl=ttl, tags=tags)
        for key, value in items.items():
            self.model[stable_key(key)] = (key, value, self._expires(ttl), tuple(tags))

    @rule(key=KEYS)
    def get(self, key: Any) -> None:
        assert self.tier is not None
        live = self._live(key)
        sentinel = object()
        got = self.tier.get(key, sentinel)
        if live is None:
            assert got is sentinel
        else:
            assert got == live[0]
            assert type(got) is type(live[0])

    @rule(key=KEYS)
    def lookup(self, key: Any) -> None:
        assert self.tier is not None
        live = self._live(key)
        found = self.tier.lookup(key)
        if live is None:
            assert found is None
        else:
            assert found is not None
            assert found[0] == live[0]
            if live[1] is None:
                assert found[1] is None
            else:
                assert found[1] == pytest.approx(live[1] - self.clock.now)
                assert found[1] > 0

    @rule(key=KEYS)
    def contains(self, key: Any) -> None:
        assert self.tier is not None
        assert (key in self.tier) == (self._live(key) is not None)

    @rule(keys=st.lists(KEYS, max_size=5))
    def get_many(self, keys: list[Any]) -> None:
        assert self.tier is not None
        got = self.tier.get_many(keys)
        want = {}
        for key in keys:
            live = self._live(key)
            if live is not None:
                want[key] = live[0]
        assert got == want

    @rule(key=KEYS)
    def delete(self, key: Any) -> None:
        assert self.tier is not None
        present = self._live(key) is not None
        assert self.tier.delete(key) is present
        self.model.pop(stable_key(key), None)

    @rule(tag=st.sampled_from(["red", "blue", "green"]))
    def invalidate_tag(self, tag: str) -> None:
        assert self.tier is not None
        tagged = [k for k, (_, _, _, tags) in self.model.items() if tag in tags]
        live = sum(1 for k in tagged if self._live(self.model[k][0]) is not None)
        assert self.tier.invalidate_tag(tag) == live
        for k in tagged:
            del self.model[k]

    @rule(seconds=st.floats(min_value=0.0, max_value=40.0))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def flush(self) -> None:
        assert self.tier is not None
        self.tier.flush()
        assert self.tier.stats()["pending"] == 0

    @rule()
    def expire(self) -> None:
        assert self.tier is not None
        self.tier.expire()
        for k in [k for k in self.model if self._live(self.model[k][0]) is None]:
            del self.model[k]
        assert self.tier.stats()["entries"] == len(self.model) or self.write_behind

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def clear(self) -> None:
        assert self.tier is not None
        self.tier.clear()
        self.model.clear()

    @rule()
    def reopen(self) -> None:
        assert self.tier is not None
        self.tier.close()
        self.tier = self._new()

    @rule()
    def length(self) -> None:
        assert self.tier is not None
        live = sum(1 for _, (key, *_rest) in self.model.items() if self._live(key) is not None)
        assert len(self.tier) == live

    @invariant()
    def stats_are_counts(self) -> None:
        if self.tier is not None:
            s = self.tier.stats()
            assert all(isinstance(v, int) and v >= 0 for v in s.values()), s


TestDiskTierModel = DiskTierMachine.TestCase
TestDiskTierModel.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


# --- basics ------------------------------------------------------------------------------


def test_is_a_tier_and_round_trips(make: Callable[..., DiskTier]) -> None:
    tier = make()
    assert isinstance(tier, Tier)
    value = {"a": [1, 2.5, None], "b": (1, "x"), "c": {1, 2}, "d": b"\x00" * 10, "e": 10**40}
    tier.set(("user", 42), value)
    assert tier.get(("user", 42)) == value
    tier.flush()
    assert tier.get(("user", 42)) == value
    assert tier.get("absent") is None
    assert tier.get("absent", "dflt") == "dflt"
    tier.set("none", None)
    assert tier.lookup("none") == (None, pytest.approx(86400.0, abs=5))
    assert "none" in tier
    assert "absent" not in tier
    s = tier.stats()
    assert set(s) == {
        "hits",
        "misses",
        "sets",
        "deletes",
        "errors",
        "evictions",
        "expirations",
        "pending",
        "entries",
        "bytes",
    }
    assert s["sets"] == 2
    assert s["hits"] == 3
    assert s["misses"] == 2
    assert (tier.ttl, tier.max_bytes) == (86400.0, None)
    assert "DiskTier(name='disk'" in repr(tier)
    assert str(tier.path) in repr(tier)


def test_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with DiskTier(path, flush_interval_ms=60_000) as tier:
        for i in range(100):
            tier.set(f"k{i}", [i, str(i)], tags=["even" if i % 2 == 0 else "odd"])
        tier.set("forever", 1, ttl=math.inf)
    with DiskTier(path) as tier:
        assert len(tier) == 101
        assert [tier.get(f"k{i}") for i in range(100)] == [[i, str(i)] for i in range(100)]
        assert tier.lookup("forever") == (1, None)
        assert tier.invalidate_tag("even") == 50
        assert tier.get("k0") is None
        assert tier.get("k1") == [1, "1"]
        assert tier.stats()["entries"] == 51


def test_pending_writes_are_read_back(make: Callable[..., DiskTier]) -> None:
    clock = FakeClock()
    tier = make(flush_interval_ms=60_000, clock=clock, ttl=10.0)
    tier.set("k", "v1")
    assert tier.stats()["pending"] >= 0  # the writer may already have committed it
    assert tier.get("k") == "v1"
    tier.set("k", "v2", ttl=5.0)
    assert tier.lookup("k") == ("v2", 5.0)
    assert tier.delete("k") is True
    assert tier.get("k") is None
    assert tier.delete("k") is False
    tier.set("e", 1, ttl=1.0)
    clock.now += 1.0
    assert tier.get("e") is None  # expired while still queued
    assert tier.delete("e") is False
    tier.flush()
    assert tier.stats()["pending"] == 0
    assert len(tier) == 0


def test_write_behind_false_commits_before_returning(make: Callable[..., DiskTier]) -> None:
    tier = make(write_behind=False)
    tier.set("k", b"v")
    assert tier.stats()["pending"] == 0
    assert raw_rows(tier_path(tier)) == {"k": MsgpackSerializer().dumps(b"v")}
    assert tier.delete("k") is True
    assert raw_rows(tier_path(tier)) == {}


def tier_path(tier: DiskTier) -> Path:
    return Path(tier.path)


def test_ttl_expiry_and_sweep(make: Callable[..., DiskTier]) -> None:
    clock = FakeClock()
    tier = make(clock=clock, ttl=10.0, write_behind=False)
    tier.set("short", 1, ttl=1.0)
    tier.set("default", 2)
    tier.set("never", 3, ttl=math.inf)
    clock.now += 1.0
    assert tier.get("short") is None  # expires_at <= now: gone
    assert tier.lookup("default") == (2, 9.0)
    clock.now += 9.0
    assert tier.get("default") is None
    assert tier.get("never") == 3
    assert tier.expire() == 2
    assert tier.stats()["expirations"] == 2
    assert set(raw_rows(tier_path(tier))) == {"never"}


def test_lazy_delete_of_an_expired_row(make: Callable[..., DiskTier]) -> None:
    clock = FakeClock()
    tier = make(clock=clock, write_behind=False)
    tier.set("k", 1, ttl=2.0)
    clock.now += 3.0
    assert tier.get("k") is None
    tier.flush()  # commits the lazy delete the get queued
    assert raw_rows(tier_path(tier)) == {}
    assert tier.stats()["expirations"] == 1


def test_ttl_none_tier_keeps_entries(make: Callable[..., DiskTier]) -> None:
    clock = FakeClock()
    tier = make(ttl=None, clock=clock)
    tier.set("k", 1)
    clock.now += 1e9
    assert tier.lookup("k") == (1, None)


def test_other_serializers(make: Callable[..., DiskTier]) -> None:
    js = make("j.db", serializer=JsonSerializer())
    js.set("k", {"a": [1, 2]})
    assert js.get("k") == {"a": [1, 2]}
    with pytest.raises(SerializationError):
        js.set("t", (1, 2))
    pk = make("p.db", serializer=PickleSerializer(secret=b"s" * 16))
    pk.set("k", complex(1, 2))
    pk.flush()
    assert pk.get("k") == complex(1, 2)


# --- processes -----------------------------------------------------------------------------


def test_another_process_reads_what_this_one_wrote(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    tier = DiskTier(path)
    try:
        tier.set("from-parent", {"n": 1}, tags=["t"])
        tier.set(("tuple", 2), (1, 2))
        tier.flush()
        out = run_python(
            f"""
            from overdrive.cache import DiskTier
            with DiskTier({str(path)!r}) as t:
                print(t.get("from-parent"), t.get(("tuple", 2)))
                t.set("from-child", [3, 4])
            """
        )
        assert out.split("\n")[0] == "{'n': 1} (1, 2)"
        assert tier.get("from-child") == [3, 4]  # the child closed: flushed
    finally:
        tier.close()


def test_exit_without_close_flushes(tmp_path: Path) -> None:
    path = tmp_path / "atexit.db"
    run_python(
        f"""
        from overdrive.cache import DiskTier
        t = DiskTier({str(path)!r}, flush_interval_ms=60_000)
        for i in range(500):
            t.set(i, "v" * i)
        # no close(): the atexit hook flushes
        """
    )
    with DiskTier(path) as tier:
        assert len(tier) == 500
        assert tier.get(499) == "v" * 499


def test_concurrent_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "writers.db"
    DiskTier(path).close()  # create the schema once, as a deployment would
    code = f"""
        import sys
        from overdrive.cache import DiskTier
        w = int(sys.argv[1])
        with DiskTier({str(path)!r}, max_pending=64, flush_interval_ms=1) as t:
            for i in range(400):
                t.set(f"w{{w}}-{{i}}", [w, i])
                t.set("shared", w)
                if i % 50 == 0:
                    t.flush()
        """
    env = dict(os.environ)
    env["PYTHONPATH"] = TESTS_DIR + os.pathsep + env.get("PYTHONPATH", "")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(w)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    with DiskTier(path) as tier:
        assert len(tier) == 3 * 400 + 1
        for w in range(3):
            got = tier.get_many([f"w{w}-{i}" for i in range(400)])
            assert got == {f"w{w}-{i}": [w, i] for i in range(400)}
        assert tier.get("shared") in (0, 1, 2)
        assert tier.stats()["entries"] == 1201


def _forked_child(path: str, q: Any) -> None:
    tier = DiskTier(path) if not _INHERITED else _INHERITED[0]
    q.put(tier.get("parent"))
    tier.set("child", "hello")  # not closed: multiprocessing's exit hooks flush it


_INHERITED: list[DiskTier] = []


def test_forked_child_uses_its_own_connections(tmp_path: Path) -> None:
    path = str(tmp_path / "fork.db")
    tier = DiskTier(path)
    _INHERITED.append(tier)
    try:
        tier.set("parent", 1)
        tier.get("parent")  # this thread has a connection and a snapshot
        tier.flush()
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_forked_child, args=(path, q))
        with warnings.catch_warnings():  # 3.12+: "multi-threaded, fork() may deadlock"
            warnings.simplefilter("ignore", DeprecationWarning)
            p.start()
        assert q.get(timeout=30) == 1
        p.join(30)
        assert p.exitcode == 0
        assert tier.get("child") == "hello"
    finally:
        _INHERITED.clear()
        tier.close()


# --- threads ---------------------------------------------------------------------------


def test_threads_stress_counts_add_up(make: Callable[..., DiskTier]) -> None:
    tier = make(max_pending=100, flush_interval_ms=1)
    n_threads, n_ops = 6, 400
    errors: list[BaseException] = []
    gets = [0] * n_threads

    def worker(w: int) -> None:
        try:
            for i in range(n_ops):
                tier.set(f"{w}:{i % 50}", (w, i))
                got = tier.get(f"{w}:{i % 50}")
                gets[w] += 1
                assert got == (w, i), got  # read-your-writes in the thread
                if i % 7 == 0:
                    tier.get(f"{(w + 1) % n_threads}:{i % 50}")
                    gets[w] += 1
                if i % 97 == 0:
                    tier.flush()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    s = tier.stats()
    assert s["sets"] == n_threads * n_ops
    assert s["hits"] + s["misses"] == sum(gets)
    assert s["errors"] == 0
    assert len(tier) == n_threads * 50
    for w in range(n_threads):
        for j in range(50):
            last = max(i for i in range(n_ops) if i % 50 == j)
            assert tier.get(f"{w}:{j}") == (w, last)


def test_counts_of_finished_threads_are_kept(make: Callable[..., DiskTier]) -> None:
    tier = make()
    tier.set("k", 1)

    def reader() -> None:
        for _ in range(10):
            tier.get("k")
            tier.get("nope")

    for _ in range(5):
        t = threading.Thread(target=reader)
        t.start()
        t.join()
    gc.collect()
    s = tier.stats()
    assert (s["hits"], s["misses"]) == (50, 50)


def test_nothing_lost_on_close_with_a_full_queue(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    tier = DiskTier(path, max_pending=16, flush_interval_ms=60_000)
    barrier = threading.Barrier(4)

    def writer(w: int) -> None:
        barrier.wait()
        for i in range(250):
            tier.set((w, i), i)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tier.stats()["pending"] < 16  # a full queue was flushed by the caller
    tier.close()
    tier.close()  # idempotent
    with DiskTier(path) as again:
        assert len(again) == 1000
        assert again.get_many([(w, i) for w in range(4) for i in range(250)]) == {
            (w, i): i for w in range(4) for i in range(250)
        }


def test_garbage_collected_tier_is_flushed(tmp_path: Path) -> None:
    path = tmp_path / "gc.db"
    tier = DiskTier(path, flush_interval_ms=60_000)
    tier.set("k", "v")
    del tier
    gc.collect()
    with DiskTier(path) as again:
        assert again.get("k") == "v"


def test_asyncio_callers(make: Callable[..., DiskTier]) -> None:
    tier = make()

    async def main() -> list[Any]:
        tier.set("a", 1)  # queues: does not block the loop
        direct = tier.get("a")
        threaded = await asyncio.gather(*(asyncio.to_thread(tier.get, "a") for _ in range(8)))
        return [direct, *threaded]

    assert asyncio.run(main()) == [1] * 9


def test_closed_tier_raises(make: Callable[..., DiskTier]) -> None:
    tier = make()
    tier.set("k", 1)
    tier.close()
    assert tier.closed
    for call in (
        lambda: tier.get("k"),
        lambda: tier.lookup("k"),
        lambda: tier.set("k", 2),
        lambda: tier.delete("k"),
        lambda: tier.get_many(["k"]),
        lambda: tier.flush(),
        lambda: len(tier),
    ):
        with pytest.raises(CacheUnavailable, match="closed"):
            call()
    assert tier.stats()["entries"] == -1
    assert "closed" in repr(tier)


# --- bad files and forged rows -------------------------------------------------------------


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(CacheDataError, match=r"junk\.db.*rebuild_on_corrupt"):
        DiskTier(path)
    assert path.exists()  # left alone


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(CacheDataError, match="other tables: users"):
        DiskTier(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(CacheDataError, match="schema version 99"):
        DiskTier(path)


def test_rebuild_on_corrupt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "junk.db"
    junk = os.urandom(8192)
    path.write_bytes(junk)
    with caplog.at_level(logging.WARNING, logger="overdrive.cache.disk"):
        tier = DiskTier(path, rebuild_on_corrupt=True)
    try:
        assert "not a usable cache file" in caplog.text
        assert str(path) in caplog.text
        aside = [p for p in tmp_path.iterdir() if p.name.startswith("junk.db.corrupt-")]
        assert len(aside) == 1
        assert aside[0].read_bytes() == junk
        tier.set("k", 1)
        tier.flush()
        assert tier.get("k") == 1
    finally:
        tier.close()


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CacheUnavailable, match="directory does not exist"):
        DiskTier(tmp_path / "no" / "such" / "c.db")


class _Boom:
    """Unpickling this would create ``marker``: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize(
    "serializer",
    [MsgpackSerializer(), JsonSerializer(), PickleSerializer(secret=b"0123456789abcdef")],
    ids=["msgpack", "json", "pickle-signed"],
)
def test_forged_rows_are_refused_and_run_no_code(
    make: Callable[..., DiskTier],
    tmp_path: Path,
    serializer: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tier = make(serializer=serializer, write_behind=False)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(str(marker)))
    forged = {
        "random": os.urandom(64),
        "pickle": payload,
        "pickle-framed": bytes((0x30,)) + b"\x00" * 32 + payload,  # a signature of zeros
        "empty": b"",
    }
    for key in forged:
        tier.set(key, "honest")
    tier.set("fine", "still here")
    for key, blob in forged.items():
        plant(tier_path(tier), key, blob)
    with caplog.at_level(logging.WARNING, logger="overdrive.cache.disk"):
        assert tier.get("random") is None
        assert tier.get("pickle", "dflt") == "dflt"
        assert tier.lookup("pickle-framed") is None
        assert tier.get_many(["empty", "fine"]) == {"fine": "still here"}
    assert not marker.exists()
    s = tier.stats()
    assert s["errors"] == 4
    assert s["misses"] == 4
    assert "refused by the serializer" in caplog.text
    assert set(raw_rows(tier_path(tier))) == {"fine"}  # the forged rows were deleted


def test_a_row_rewritten_meanwhile_is_not_deleted(make: Callable[..., DiskTier]) -> None:
    # the bad-row delete is conditional on the bytes it refused
    tier = make(write_behind=False)
    tier.set("k", 1)
    plant(tier_path(tier), "k", b"\xff")
    other = make(write_behind=False)
    assert tier.get("k") is None
    other.set("k", 2)
    assert tier.get("k") == 2


# --- eviction ------------------------------------------------------------------------------


def test_max_bytes_evicts_least_recently_accessed(make: Callable[..., DiskTier]) -> None:
    clock = FakeClock()
    value = b"x" * 1000
    entry = len(MsgpackSerializer().dumps(value)) + len("k0")
    tier = make(max_bytes=5 * entry + 10, clock=clock, flush_interval_ms=60_000)
    for i in range(5):
        clock.now += 1
        tier.set(f"k{i}", value)
    tier.flush()
    assert tier.stats()["evictions"] == 0
    for key in ("k0", "k1"):  # the oldest sets, read recently
        clock.now += 1
        assert tier.get(key) == value
    clock.now += 1
    tier.set("k5", value)
    tier.set("k6", value)
    tier.flush()
    s = tier.stats()
    assert s["evictions"] == 2
    assert s["bytes"] <= 5 * entry + 10
    assert set(raw_rows(tier_path(tier))) == {"k0", "k1", "k4", "k5", "k6"}


def test_max_bytes_drops_expired_rows_first(make: Callable[..., DiskTier]) -> None:
    clock = FakeClock()
    value = b"y" * 500
    entry = len(MsgpackSerializer().dumps(value)) + 2
    tier = make(max_bytes=3 * entry, clock=clock, write_behind=False)
    tier.set("e0", value, ttl=1.0)
    tier.set("k1", value)
    tier.set("k2", value)
    clock.now += 2
    tier.set("k3", value)
    assert set(raw_rows(tier_path(tier))) == {"k1", "k2", "k3"}
    s = tier.stats()
    assert (s["evictions"], s["expirations"]) == (0, 1)


def test_a_value_larger_than_max_bytes_is_not_stored(make: Callable[..., DiskTier]) -> None:
    tier = make(max_bytes=100, write_behind=False)
    tier.set("big", b"z" * 50)
    tier.set("big", b"z" * 500)
    assert tier.get("big") is None  # the old value is gone too
    assert tier.stats()["evictions"] == 1


# --- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"path": 3}, InputTypeError, "path"),
        ({"path": ":memory:"}, ConfigurationError, "path"),
        ({"path": ""}, ConfigurationError, "path"),
        ({"max_bytes": 0}, ConfigurationError, "max_bytes"),
        ({"max_bytes": 1.5}, InputTypeError, "max_bytes"),
        ({"max_bytes": True}, InputTypeError, "max_bytes"),
        ({"ttl": 0}, ConfigurationError, "ttl"),
        ({"ttl": -1.0}, ConfigurationError, "ttl"),
        ({"ttl": math.nan}, ConfigurationError, "ttl"),
        ({"ttl": "60"}, InputTypeError, "ttl"),
        ({"serializer": object()}, InputTypeError, "serializer"),
        ({"write_behind": 1}, InputTypeError, "write_behind"),
        ({"max_pending": 0}, ConfigurationError, "max_pending"),
        ({"max_pending": "10"}, InputTypeError, "max_pending"),
        ({"flush_interval_ms": -1}, ConfigurationError, "flush_interval_ms"),
        ({"flush_interval_ms": None}, InputTypeError, "flush_interval_ms"),
        ({"rebuild_on_corrupt": "yes"}, InputTypeError, "rebuild_on_corrupt"),
        ({"clock": 5}, InputTypeError, "clock"),
        ({"name": ""}, InputTypeError, "name"),
        ({"read_snapshot_ms": -1}, ConfigurationError, "read_snapshot_ms"),
        ({"busy_timeout_s": 0}, ConfigurationError, "busy_timeout_s"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, Any], exc: type, name: str) -> None:
    kwargs.setdefault("path", tmp_path / "c.db")
    with pytest.raises(exc, match=name):
        DiskTier(**kwargs)


def test_invalid_call_arguments(make: Callable[..., DiskTier]) -> None:
    tier = make()
    with pytest.raises(InputTypeError, match="cache key"):
        tier.set(["a", "list"], 1)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="cache key"):
        tier.get(object())
    with pytest.raises(ConfigurationError, match="ttl"):
        tier.set("k", 1, ttl=0)
    with pytest.raises(InputTypeError, match="ttl"):
        tier.set("k", 1, ttl="1")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="tags"):
        tier.set("k", 1, tags="red")
    with pytest.raises(InputTypeError, match="tags"):
        tier.set("k", 1, tags=[1])  # type: ignore[list-item]
    with pytest.raises(InputTypeError, match="tags"):
        tier.set("k", 1, tags=1.5)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="tag"):
        tier.invalidate_tag(3)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="keys"):
        tier.get_many("abc")
    with pytest.raises(InputTypeError, match="keys"):
        tier.get_many(5)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="items"):
        tier.set_many([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(SerializationError):
        tier.set("k", object())
    with pytest.raises(SerializationError):
        tier.set_many({"ok": 1, "bad": object()})
    assert tier.get("ok") is None  # set_many stores nothing when a value is refused
    assert tier.stats()["sets"] == 0


# --- the benchmark rows (shape only: speed is the harness's business) ----------------------


def test_bench_disk_rows_shape() -> None:
    from overdrive.bench.suites import BenchConfig, SuiteResult
    from overdrive.bench.suites._common import VALUE_COLUMNS
    from overdrive.bench.suites.cache_disk import disk_rows

    result = SuiteResult("cache", VALUE_COLUMNS)
    disk_rows(BenchConfig(quick=True, repeats=2), result)
    assert {r["impl"] for r in result.rows} >= {"overdrive DiskTier", "diskcache.Cache"}
    assert all(set(r) == set(VALUE_COLUMNS) and r["value"] > 0 for r in result.rows)
    assert [c.name for c in result.checks] == [
        "L3 get vs diskcache",
        "L3 set (amortised) vs diskcache",
    ]
    assert all(c.value > 0 for c in result.checks)


def test_a_locked_file_is_unavailable_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    DiskTier(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA user_version = 0")  # so opening must write the schema again
    conn.execute("BEGIN EXCLUSIVE")  # holds the write lock
    try:
        with pytest.raises(CacheUnavailable, match="locked"):
            DiskTier(path, rebuild_on_corrupt=True, busy_timeout_s=0.05)
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]  # not moved aside


def test_a_failed_commit_keeps_the_entries_queued(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    tier = DiskTier(path, busy_timeout_s=0.05, flush_interval_ms=0)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        tier.set("k", "queued")
        with pytest.raises(CacheUnavailable, match=r"flush.*locked"):
            tier.flush()
        assert tier.get("k") == "queued"  # still queued, still readable
        assert tier.stats()["pending"] == 1
        conn.execute("ROLLBACK")
        conn.close()
        tier.flush()
        assert raw_rows(path) == {"k": MsgpackSerializer().dumps("queued")}
        assert tier.stats()["pending"] == 0
    finally:
        tier.close()


def test_background_commit_errors_are_counted_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "retry.db"
    tier = DiskTier(path, busy_timeout_s=0.05, flush_interval_ms=0)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        tier.set("k", 1)
        deadline = time.monotonic() + 30
        while tier.stats()["errors"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tier.stats()["errors"] >= 1  # the writer's commit failed...
        conn.execute("ROLLBACK")
        conn.close()
        while tier.stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(raw_rows(path)) == {"k"}  # ...and the next round committed it
    finally:
        tier.close()


@pytest.mark.parametrize("snapshot_ms", [0.0, 1.0])
def test_reads_see_another_process_commit(tmp_path: Path, snapshot_ms: float) -> None:
    path = tmp_path / "fresh.db"
    with DiskTier(path, read_snapshot_ms=snapshot_ms) as tier:
        tier.set("k", "old")
        tier.flush()
        assert tier.get("k") == "old"  # this thread now holds a read snapshot
        run_python(
            f"""
            from overdrive.cache import DiskTier
            with DiskTier({str(path)!r}) as t:
                t.set("k", "new")
            """
        )
        if snapshot_ms:
            time.sleep(snapshot_ms / 1000 * 2)  # at most read_snapshot_ms late
        assert tier.get("k") == "new"
