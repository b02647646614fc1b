"""BufferPool and ObjectPool: buffer protocol, safety, exhaustion, auto-sizing,
callbacks, counters, threads, leaks."""

from __future__ import annotations

import asyncio
import gc
import io
import math
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import overdrive as od
from overdrive.exceptions import (
    BufferExportedError,
    ConfigurationError,
    InputTypeError,
    OverdriveError,
    PoolExhausted,
    ReleasedError,
)


def wait_until(pred: Any, timeout: float = 10.0) -> None:
    """Poll ``pred`` until true (a liveness helper, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the test's patience")
        time.sleep(0.001)


# --- BufferPool: the buffer protocol -------------------------------------------


def test_defaults_and_properties() -> None:
    bp = od.BufferPool()
    assert (bp.buffer_size, bp.min_size, bp.max_size) == (65536, 8, 1024)
    assert bp.zero_on_release is False
    assert bp.window_s == 1.0
    s = bp.stats()
    assert s["idle"] == 8 and s["in_use"] == 0
    assert s["bytes_allocated"] == 8 * 65536
    assert "BufferPool(buffer_size=65536" in repr(bp)


def test_memoryview_is_writable_and_sized() -> None:
    bp = od.BufferPool(buffer_size=4096, min_size=1, max_size=4)
    with bp.acquire() as buf:
        assert len(buf) == buf.nbytes == 4096
        mv = memoryview(buf)
        assert (mv.nbytes, mv.readonly, mv.format, mv.ndim) == (4096, False, "B", 1)
        mv[:5] = b"hello"
        assert bytes(buf)[:5] == b"hello"
        assert buf.exports == 1
        mv.release()
        assert buf.exports == 0
    assert buf.released


def test_numpy_frombuffer_is_zero_copy_and_aligned() -> None:
    bp = od.BufferPool(buffer_size=8 * 1024, min_size=1, max_size=2)
    buf = bp.acquire()
    arr = np.frombuffer(buf, dtype=np.float64)
    assert arr.shape == (1024,)
    assert arr.ctypes.data % 64 == 0
    arr[:] = np.arange(1024)
    again = np.frombuffer(buf, dtype=np.float64)
    assert again.ctypes.data == arr.ctypes.data  # the same memory, no copy
    assert again[1023] == 1023.0
    with pytest.raises(BufferExportedError):
        buf.release()
    del arr, again
    buf.release()


def test_readinto_and_recv_into(tmp_path: Path) -> None:
    bp = od.BufferPool(buffer_size=1024, min_size=1, max_size=2)
    payload = bytes(range(256)) * 3
    with bp.acquire() as buf:
        assert io.BytesIO(payload).readinto(buf) == len(payload)
        assert bytes(buf)[: len(payload)] == payload
    f = tmp_path / "data.bin"
    f.write_bytes(payload[::-1])
    with bp.acquire() as buf, f.open("rb") as fh:
        n = fh.readinto(buf)
        assert bytes(memoryview(buf)[:n]) == payload[::-1]
    a, b = socket.socketpair()
    with a, b, bp.acquire() as buf:
        a.sendall(b"ping over a socket")
        n = b.recv_into(buf)
        assert bytes(memoryview(buf)[:n]) == b"ping over a socket"


# --- BufferPool: safety --------------------------------------------------------


def test_release_with_live_export_raises_buffer_error() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=1, max_size=1)
    buf = bp.acquire()
    mv = memoryview(buf)
    with pytest.raises(BufferError, match="export"):
        buf.release()
    with pytest.raises(BufferExportedError), buf:
        pass
    assert not buf.released
    mv.release()
    buf.release()
    assert buf.released
    assert bp.stats()["in_use"] == 0


def test_double_release_and_use_after_release() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=1, max_size=2)
    buf = bp.acquire()
    buf.release()
    with pytest.raises(ReleasedError, match="already released"):
        buf.release()
    with pytest.raises(ValueError, match="already released"):
        memoryview(buf)
    with pytest.raises(ReleasedError):
        np.frombuffer(buf, dtype=np.uint8)
    with pytest.raises(ReleasedError), buf:
        pass
    assert isinstance(ReleasedError("x"), OverdriveError)


def test_exit_after_manual_release_is_a_no_op() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=1, max_size=1)
    with bp.acquire() as buf:
        buf.release()
    assert bp.stats()["in_use"] == 0


def test_stale_reference_never_sees_a_later_holder() -> None:
    # Wrapper objects are recycled; a stale reference must stay released.
    bp = od.BufferPool(buffer_size=64, min_size=2, max_size=4)
    old = bp.acquire()
    old.release()
    for i in range(200):
        b = bp.acquire()
        memoryview(b)[0] = i % 256
        assert b is not old
        assert old.released
        b.release()
    with pytest.raises(ReleasedError):
        memoryview(old)


def test_zero_on_release_wipes_contents() -> None:
    for zero in (False, True):
        bp = od.BufferPool(buffer_size=256, min_size=1, max_size=1, zero_on_release=zero)
        with bp.acquire() as buf:
            memoryview(buf)[:] = b"\xab" * 256
        with bp.acquire() as buf:
            data = bytes(buf)
        assert (data == bytes(256)) is zero


def test_unreleased_buffer_returns_when_collected() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=1)
    buf = bp.acquire()
    assert bp.stats()["in_use"] == 1
    del buf
    gc.collect()
    assert bp.stats()["in_use"] == 0
    bp.acquire(block=False).release()


def test_buffers_outlive_their_pool() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=1, max_size=2)
    buf = bp.acquire()
    del bp
    gc.collect()
    memoryview(buf)[0] = 1
    buf.release()


# --- BufferPool: exhaustion ----------------------------------------------------


def test_exhaustion_non_blocking_and_timeout() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=2)
    held = [bp.acquire(), bp.acquire()]
    with pytest.raises(PoolExhausted, match="max_size=2"):
        bp.acquire(block=False)
    with pytest.raises(TimeoutError, match="waited"):
        bp.acquire(timeout=0.02)
    assert bp.stats()["exhausted"] == 2
    for b in held:
        b.release()
    bp.acquire(block=False).release()


def test_waiter_gets_a_released_buffer() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=1)
    held = bp.acquire()
    got: list[object] = []

    def waiter() -> None:
        b = bp.acquire(timeout=30)
        got.append(bytes(b)[:1])
        b.release()

    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: bp.stats()["waiters"] == 1)
    memoryview(held)[0] = 7
    held.release()
    t.join(30)
    assert got == [b"\x07"]
    assert bp.stats()["in_use"] == 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"buffer_size": 0}, "buffer_size"),
        ({"buffer_size": -1}, "buffer_size"),
        ({"min_size": 5, "max_size": 4}, "min_size"),
        ({"max_size": 0, "min_size": 0}, "max_size"),
        ({"min_size": -1}, "min_size"),
        ({"window_s": 0.0}, "window_s"),
        ({"window_s": math.nan}, "window_s"),
        ({"buffer_size": 2**30 + 1}, "buffer_size"),
        ({"buffer_size": 2**30, "min_size": 0, "max_size": 2**40}, "max_size"),
    ],
)
def test_bad_pool_arguments_name_the_parameter(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigurationError, match=param):
        od.BufferPool(**kwargs)


def test_huge_max_size_costs_nothing_up_front() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=10**12)
    assert bp.stats()["bytes_allocated"] == 0
    bp.acquire().release()


@pytest.mark.parametrize("timeout", [-1.0, math.nan, math.inf])
def test_bad_timeout_is_refused(timeout: float) -> None:
    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=1)
    held = bp.acquire()
    with pytest.raises(ConfigurationError, match="timeout"):
        bp.acquire(timeout=timeout)
    held.release()


# --- BufferPool: auto-sizing and trim ------------------------------------------


def test_grows_under_load_shrinks_when_quiet_and_trims() -> None:
    bp = od.BufferPool(buffer_size=1024, min_size=4, max_size=100, window_s=0.01)
    held = [bp.acquire() for _ in range(40)]
    s = bp.stats()
    assert s["grows"] > 0
    assert 40 <= s["capacity"] <= 100
    assert s["idle"] + s["in_use"] == s["capacity"]  # grown capacity is pre-allocated
    for b in held:
        b.release()
    peak = bp.stats()["capacity"]

    def quiet_window() -> bool:
        time.sleep(0.012)
        for _ in range(64):  # the window is checked every 64 releases
            bp.acquire().release()
        return bool(bp.stats()["shrinks"] >= 2)

    wait_until(quiet_window)
    s = bp.stats()
    assert 4 <= s["capacity"] < peak
    freed = bp.trim(keep=0)
    assert freed == s["idle"] * 1024
    assert bp.stats()["bytes_allocated"] == 0
    bp.acquire().release()  # still usable after a full trim
    assert bp.stats()["misses"] > 0


def test_never_more_than_max_size() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=10)
    held = [bp.acquire() for _ in range(10)]
    s = bp.stats()
    assert s["in_use"] == 10 and s["high_water"] == 10
    assert s["bytes_allocated"] == 10 * 64
    for b in held:
        b.release()


# --- BufferPool: properties ----------------------------------------------------


class BufferPoolMachine(RuleBasedStateMachine):
    """A pool never hands one buffer to two holders; counts add up; a live
    export blocks release."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = od.BufferPool(buffer_size=32, min_size=1, max_size=6, window_s=0.001)
        self.held: list[tuple[od.PooledBuffer, int, list[memoryview]]] = []
        self.next_token = 0
        self.acquired = 0

    @rule()
    def acquire(self) -> None:
        try:
            b = self.pool.acquire(block=False)
        except PoolExhausted:
            assert len(self.held) == 6
            return
        self.acquired += 1
        self.next_token += 1
        memoryview(b)[:8] = self.next_token.to_bytes(8, "little")
        self.held.append((b, self.next_token, []))

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 100))
    def release(self, i: int) -> None:
        b, _, views = self.held[i % len(self.held)]
        if views:
            with pytest.raises(BufferExportedError):
                b.release()
            return
        self.held.pop(i % len(self.held))
        b.release()
        with pytest.raises(ReleasedError):
            b.release()

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 100))
    def export(self, i: int) -> None:
        b, _, views = self.held[i % len(self.held)]
        views.append(memoryview(b))

    @precondition(lambda self: any(v for _, _, v in self.held))
    @rule(i=st.integers(0, 100))
    def drop_export(self, i: int) -> None:
        with_views = [v for _, _, v in self.held if v]
        with_views[i % len(with_views)].pop().release()

    @invariant()
    def tokens_intact_and_counts_add_up(self) -> None:
        for b, token, _ in self.held:
            assert int.from_bytes(bytes(b)[:8], "little") == token, "buffer shared"
        s = self.pool.stats()
        assert s["in_use"] == len(self.held)
        assert s["hits"] + s["misses"] == self.acquired
        assert s["idle"] + s["in_use"] <= 6

    def teardown(self) -> None:
        for b, _, views in self.held:
            for v in views:
                v.release()
            b.release()


TestBufferPoolMachine = BufferPoolMachine.TestCase
TestBufferPoolMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


@given(data=st.binary(min_size=1, max_size=512))
def test_pooled_buffer_holds_what_a_bytearray_holds(data: bytes) -> None:
    bp = od.BufferPool(buffer_size=512, min_size=1, max_size=1, zero_on_release=True)
    fresh = bytearray(512)
    with bp.acquire() as buf:
        assert bytes(buf) == bytes(fresh)  # zero_on_release: like a fresh buffer
        memoryview(buf)[: len(data)] = data
        fresh[: len(data)] = data
        assert bytes(buf) == bytes(fresh)


# --- BufferPool: threads and memory --------------------------------------------


def test_eight_threads_stress_counts_add_up() -> None:
    bp = od.BufferPool(buffer_size=256, min_size=2, max_size=5)
    per_thread = 5_000
    errors: list[str] = []
    done = [0] * 8

    def worker(t: int) -> None:
        token = bytes([t + 1]) * 256
        for _ in range(per_thread):
            with bp.acquire(timeout=30) as b:
                mv = memoryview(b)
                mv[:] = token
                if bytes(mv) != token:
                    errors.append(f"thread {t}: another holder wrote into my buffer")
                mv.release()
            done[t] += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(done) == 8 * per_thread
    s = bp.stats()
    assert s["in_use"] == 0
    assert s["hits"] + s["misses"] == 8 * per_thread
    assert s["high_water"] <= 5


RSS_SCRIPT = textwrap.dedent(
    """
    import os, overdrive as od
    page = os.sysconf("SC_PAGE_SIZE")
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page
    bp = od.BufferPool(buffer_size=65536, min_size=8, max_size=64)
    def cycles(n):
        for _ in range(n):
            b = bp.acquire()
            b.release()
        for _ in range(n // 10):
            with bp.acquire() as b:
                memoryview(b)[0] = 1
    cycles(100_000)  # warm-up: wrapper caches, allocator arenas
    before = rss()
    cycles(1_000_000)
    print(rss() - before)
    op = od.ObjectPool(dict, reset=dict.clear, max_size=8)
    def borrow(n):
        for i in range(n):
            with op.acquire() as d:
                d[i] = i
    borrow(100_000)
    before = rss()
    borrow(1_000_000)
    print(rss() - before)
    """
)


def test_rss_growth_under_one_mib_over_a_million_cycles() -> None:
    out = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT], capture_output=True, text=True, timeout=100, check=True
    )
    buffer_growth, object_growth = map(int, out.stdout.split())
    assert buffer_growth < 1024 * 1024, f"BufferPool: RSS grew by {buffer_growth} bytes"
    assert object_growth < 1024 * 1024, f"ObjectPool: RSS grew by {object_growth} bytes"


# --- ObjectPool ----------------------------------------------------------------


class Conn:
    made = 0

    def __init__(self) -> None:
        Conn.made += 1
        self.id = Conn.made
        self.dirty = False
        self.alive = True
        self.owner: int | None = None


def test_object_pool_reuses_resets_and_counts() -> None:
    made: list[Conn] = []
    resets: list[int] = []

    def factory() -> Conn:
        made.append(Conn())
        return made[-1]

    def reset(c: Conn) -> None:
        resets.append(c.id)
        c.dirty = False

    op = od.ObjectPool(factory, reset=reset, max_size=4)
    with op.acquire() as c1:
        c1.dirty = True
    with op.acquire() as c2:
        assert c2 is c1 and not c2.dirty  # reused (LIFO) and reset
    assert len(made) == 1 and resets == [c1.id, c1.id]
    s = op.stats()
    assert (s["hits"], s["misses"], s["created"], s["in_use"], s["idle"]) == (1, 1, 1, 0, 1)
    assert s["hit_ratio"] == 0.5
    lease = op.acquire()
    assert lease.value is c1 and not lease.released
    lease.release()
    assert lease.released
    with pytest.raises(ReleasedError):
        lease.release()
    with pytest.raises(ReleasedError):
        _ = lease.value
    assert "ObjectPool(min_size=0, max_size=4" in repr(op)


def test_validate_discards_and_replaces_invalid_objects() -> None:
    op = od.ObjectPool(Conn, validate=lambda c: c.alive, max_size=2)
    with op.acquire() as c:
        c.alive = False
    with op.acquire() as d:
        assert d is not c and d.alive
    s = op.stats()
    assert (s["discarded"], s["created"], s["in_use"]) == (1, 2, 0)


def test_raising_callbacks_discard_and_propagate() -> None:
    def bad_validate(c: Conn) -> bool:
        raise ConnectionError("ping failed")

    op = od.ObjectPool(Conn, validate=bad_validate, max_size=1)
    op.acquire().release()
    with pytest.raises(ConnectionError):
        op.acquire()
    assert op.stats()["in_use"] == 0
    op2 = od.ObjectPool(Conn, reset=lambda c: 1 / 0, max_size=1)
    with pytest.raises(ZeroDivisionError):
        op2.acquire().release()
    s = op2.stats()
    assert (s["in_use"], s["idle"], s["discarded"]) == (0, 0, 1)
    op2.acquire(block=False)  # the slot was freed

    def broken() -> Conn:
        raise OSError("cannot connect")

    op3 = od.ObjectPool(broken, max_size=1)
    with pytest.raises(OSError, match="cannot connect"):
        op3.acquire()
    assert op3.stats()["in_use"] == 0
    with pytest.raises(OSError, match="cannot connect"):
        op3.acquire(block=False)  # the slot was freed, not leaked


def test_min_size_prefills_and_idle_eviction_keeps_it() -> None:
    made: list[Conn] = []
    op = od.ObjectPool(
        lambda: made.append(Conn()) or made[-1], min_size=2, max_size=5, max_idle_s=0.02
    )
    assert len(made) == 2 and op.stats()["idle"] == 2
    leases = [op.acquire() for _ in range(4)]
    for lease in leases:
        lease.release()
    assert op.stats()["idle"] == 4
    wait_until(lambda: op.stats()["evicted"] >= 2)
    s = op.stats()
    assert s["idle"] == 2 and s["evicted"] == 2
    assert op.trim(keep=0) == 2 and op.stats()["idle"] == 0


def test_object_pool_exhaustion_and_wake_up() -> None:
    op = od.ObjectPool(Conn, max_size=1)
    held = op.acquire()
    with pytest.raises(PoolExhausted, match="ObjectPool exhausted"):
        op.acquire(block=False)
    with pytest.raises(TimeoutError):
        op.acquire(timeout=0.02)
    got: list[Conn] = []

    def waiter() -> None:
        with op.acquire(timeout=30) as c:
            got.append(c)

    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: op.stats()["waiters"] == 1)
    first = held.value
    held.release()
    t.join(30)
    assert got == [first]
    assert op.stats()["exhausted"] == 2


def test_object_pool_bad_arguments() -> None:
    with pytest.raises(InputTypeError, match="factory must be callable"):
        od.ObjectPool(42)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="reset must be callable"):
        od.ObjectPool(Conn, reset="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_size"):
        od.ObjectPool(Conn, max_size=0)
    with pytest.raises(ConfigurationError, match="min_size"):
        od.ObjectPool(Conn, min_size=3, max_size=2)
    with pytest.raises(ConfigurationError, match="max_idle_s"):
        od.ObjectPool(Conn, max_idle_s=-1.0)
    with pytest.raises(ConfigurationError, match="timeout"):
        od.ObjectPool(Conn).acquire(timeout=-0.5)


def test_callbacks_may_reenter_the_pool() -> None:
    # No Rust lock is held while factory/reset/validate run: re-entering the
    # same pool from them must not deadlock.
    holder: list[od.ObjectPool[Conn]] = []

    def factory() -> Conn:
        holder[0].stats()
        return Conn()

    def reset(c: Conn) -> None:
        holder[0].trim()
        holder[0].stats()

    def validate(c: Conn) -> bool:
        holder[0].stats()
        return True

    op = od.ObjectPool(factory, reset=reset, validate=validate, max_size=2)
    holder.append(op)
    for _ in range(5):
        with op.acquire() as c, op.acquire() as d:
            assert c is not d
    assert op.stats()["in_use"] == 0


def test_reference_cycle_through_the_factory_is_collected() -> None:
    class Owner:
        def __init__(self) -> None:
            self.pool = od.ObjectPool(self.make, max_size=2)

        def make(self) -> Conn:
            return Conn()

    owner = Owner()
    owner.pool.acquire().release()
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    assert gone() is None


@given(ops=st.lists(st.sampled_from(["acquire", "release", "invalidate"]), max_size=60))
def test_object_pool_hands_out_factory_objects_never_twice(ops: list[str]) -> None:
    made: list[object] = []

    def factory() -> object:
        made.append(object())
        return made[-1]

    invalid: set[int] = set()
    op = od.ObjectPool(factory, validate=lambda o: id(o) not in invalid, max_size=4)
    held: list[od.PooledObject[object]] = []
    for step in ops:
        if step == "acquire":
            try:
                held.append(op.acquire(block=False))
            except PoolExhausted:
                assert len(held) == 4
        elif held:
            lease = held.pop(0)
            if step == "invalidate":
                invalid.add(id(lease.value))
            lease.release()
        values = [lease.value for lease in held]
        assert len({id(v) for v in values}) == len(values)
        assert all(any(v is m for m in made) for v in values)
        s = op.stats()
        assert s["in_use"] == len(held)
        assert s["idle"] + s["in_use"] <= 4
        assert s["created"] == len(made)
    for lease in held:
        lease.release()


def test_object_pool_eight_threads_stress() -> None:
    op = od.ObjectPool(Conn, max_size=3)
    per_thread = 3_000
    errors: list[str] = []

    def worker(t: int) -> None:
        for _ in range(per_thread):
            with op.acquire(timeout=30) as c:
                if c.owner is not None:
                    errors.append(f"object {c.id} held by {c.owner} and {t}")
                c.owner = t
                c.owner = None

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    s = op.stats()
    assert s["hits"] + s["misses"] == 8 * per_thread
    assert s["in_use"] == 0 and s["created"] <= 3 and s["high_water"] <= 3


# --- try_acquire and asyncio ----------------------------------------------------


def test_try_acquire_returns_none_when_exhausted_without_counting() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=1)
    b = bp.try_acquire()
    assert b is not None
    assert bp.try_acquire() is None
    b.release()
    op = od.ObjectPool(Conn, max_size=1)
    lease = op.try_acquire()
    assert lease is not None
    assert op.try_acquire() is None
    lease.release()
    assert bp.stats()["exhausted"] == 0 and op.stats()["exhausted"] == 0


def test_validate_whose_verdict_raises_frees_the_slot() -> None:
    class Bad:
        def __bool__(self) -> bool:
            raise RuntimeError("no verdict")

    op = od.ObjectPool(Conn, validate=lambda c: Bad(), max_size=1)
    op.acquire().release()
    with pytest.raises(RuntimeError, match="no verdict"):
        op.acquire()
    assert op.stats()["in_use"] == 0


def test_acquire_async_waits_without_blocking_the_loop() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=1)
    op = od.ObjectPool(Conn, max_size=1)

    async def main() -> list[str]:
        events: list[str] = []
        held = await od.acquire_async(bp)
        lease = await od.acquire_async(op, timeout=1.0)

        async def holder() -> None:
            await asyncio.sleep(0.01)  # the loop keeps running while the others wait
            events.append("release")
            held.release()
            lease.release()

        async def waiter() -> None:
            b = await od.acquire_async(bp, timeout=30)
            o = await od.acquire_async(op, timeout=30)
            events.append("acquired")
            b.release()
            o.release()

        await asyncio.gather(waiter(), holder())
        held2 = await od.acquire_async(bp)
        with pytest.raises(PoolExhausted):
            await od.acquire_async(bp, timeout=0.01)
        held2.release()
        with pytest.raises(ConfigurationError, match="timeout"):
            await od.acquire_async(bp, timeout=-1)
        return events

    assert asyncio.run(main()) == ["release", "acquired"]
    assert bp.stats()["exhausted"] == 1 and bp.stats()["in_use"] == 0
    assert op.stats()["in_use"] == 0


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("timeout", [None, 3600.0])
def test_a_blocked_acquire_is_interruptible_by_signals(timeout: float | None) -> None:
    # acquire() on an exhausted pool waits in slices and checks signals
    # between them, so Ctrl-C (here: SIGALRM) gets through, whether it would
    # wait forever or for an hour.
    def on_alarm(signum: int, frame: object) -> None:
        raise _Interrupted

    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=1)
    op = od.ObjectPool(Conn, max_size=1)
    held, lease = bp.acquire(), op.acquire()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        for pool in (bp, op):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(_Interrupted):
                pool.acquire(timeout=timeout)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    held.release()
    lease.release()
    assert bp.stats()["waiters"] == 0 and op.stats()["waiters"] == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("-inf")])
def test_bad_timeout_is_refused_even_when_a_buffer_is_free(bad: float) -> None:
    bp = od.BufferPool(buffer_size=64, min_size=1, max_size=2)
    with pytest.raises(ConfigurationError, match="timeout"):
        bp.acquire(timeout=bad)
    assert bp.stats()["in_use"] == 0
    with bp.acquire(timeout=1e30) as buf:  # too large for a clock: waits forever, fine here
        assert len(memoryview(buf)) == 64


# --- arguments: every bad number or type is an overdrive error ----------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: od.BufferPool(buffer_size=2**70), "buffer_size=1180591620717411303424"),
        (lambda: od.BufferPool(min_size=-(2**64)), "min_size=-18446744073709551616"),
        (lambda: od.BufferPool(max_size=2**64), "max_size=18446744073709551616"),
        (lambda: od.BufferPool(window_s=10**400), "window_s="),
        (lambda: od.ObjectPool(object, max_size=2**64), "max_size=18446744073709551616"),
        (lambda: od.ObjectPool(object, min_size=-(2**70)), "min_size=-1180591620717411303424"),
        (lambda: od.ObjectPool(object, max_idle_s=10**400), "max_idle_s="),
        (lambda: od.BufferPool(buffer_size=64).trim(keep=2**64), "keep=18446744073709551616"),
        (lambda: od.ObjectPool(object).trim(keep=-(2**64)), "keep=-18446744073709551616"),
        (lambda: od.BufferPool(buffer_size=64).acquire(timeout=10**400), "timeout="),
    ],
)
def test_huge_numbers_are_configuration_errors(call: Any, match: str) -> None:
    # pyo3's own conversion raised OverflowError.
    with pytest.raises(ConfigurationError, match=match):
        call()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: od.BufferPool(buffer_size="64"), "buffer_size must be an int, not str"),
        (lambda: od.BufferPool(zero_on_release=None), "zero_on_release must be a bool"),
        (lambda: od.BufferPool(window_s="1"), "window_s must be a number, not str"),
        (lambda: od.ObjectPool(object, max_size=None), "max_size must be an int"),
        (lambda: od.ObjectPool(object, max_idle_s=[]), "max_idle_s must be a number or None"),
        (lambda: od.BufferPool(buffer_size=64).acquire(timeout="1"), "timeout must be a number"),
        (lambda: od.BufferPool(buffer_size=64).acquire(block=None), "block must be a bool"),
        (lambda: od.ObjectPool(object).acquire(timeout=object()), "timeout must be a number"),
        (lambda: od.ObjectPool(object).trim(keep=1.5), "keep must be an int or None"),
    ],
)
def test_wrong_types_are_input_type_errors(call: Any, match: str) -> None:
    # pyo3's own conversion raised a bare TypeError.
    with pytest.raises(InputTypeError, match=match):
        call()


def test_a_huge_min_size_is_refused_before_any_factory_call() -> None:
    # min_size objects are made up front: 2**40 meant 2**40 factory calls
    # (a hang, then memory exhaustion) when max_size allowed it.
    calls: list[int] = []

    def factory() -> object:
        calls.append(1)
        if len(calls) > 70_000:  # the old behaviour, stopped early
            raise RuntimeError("factory called for every one of min_size objects")
        return object()

    with pytest.raises(ConfigurationError, match="min_size=1099511627776: at most 65536"):
        od.ObjectPool(factory, min_size=2**40, max_size=2**41)
    assert calls == []
    assert od.ObjectPool(factory, min_size=3, max_size=4).stats()["idle"] == 3


def test_acquire_async_checks_its_arguments() -> None:
    bp = od.BufferPool(buffer_size=64, min_size=0, max_size=1)

    async def main() -> None:
        with pytest.raises(InputTypeError, match="timeout must be a number"):
            await od.acquire_async(bp, timeout="1")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="timeout="):
            await od.acquire_async(bp, timeout=10**400)
        with pytest.raises(InputTypeError, match="pool must be a BufferPool or an ObjectPool"):
            await od.acquire_async(None)  # type: ignore[arg-type]

    asyncio.run(main())
    assert bp.stats()["in_use"] == 0


# --- garbage collection --------------------------------------------------------


def test_a_held_object_in_a_cycle_with_its_lease_is_collected_and_its_slot_freed() -> None:
    op = od.ObjectPool(Conn, max_size=1)
    lease = op.acquire()
    lease.value.lease = lease  # value -> lease -> value
    ref = weakref.ref(lease.value)
    del lease
    gc.collect()
    assert ref() is None
    assert op.stats()["in_use"] == 0
    with op.acquire(block=False) as conn:  # the slot is free again
        assert isinstance(conn, Conn)
