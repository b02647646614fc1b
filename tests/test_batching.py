"""Batcher and @batched: equivalence, batch rules, errors, lifecycle, stress."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import subprocess
import sys
import threading
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import overdrive as od
from batching_support import WAIT, Recorder, f, held_batcher
from overdrive.exceptions import (
    BatcherClosed,
    BatchResultError,
    ConfigurationError,
    DeadlineExceeded,
    InputTypeError,
    OverdriveError,
    QueueFull,
)

# --- equivalence (hypothesis) ------------------------------------------------

ITEMS = st.lists(
    st.tuples(st.integers(-3, 3), st.sampled_from([None, "a", "b", 7]), st.integers(-1000, 1000)),
    min_size=1,
    max_size=120,
)


@settings(max_examples=40, deadline=None)
@given(
    items=ITEMS,
    max_batch_size=st.integers(1, 70),
    max_wait_ms=st.sampled_from([0.0, 0.5, 5.0]),
    threads=st.integers(1, 4),
    concurrency=st.integers(1, 3),
)
def test_threads_get_exactly_per_item_results(
    items: list[tuple[int, Any, int]],
    max_batch_size: int,
    max_wait_ms: float,
    threads: int,
    concurrency: int,
) -> None:
    rec = Recorder()
    b = od.Batcher(
        rec, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_concurrency=concurrency
    )
    results: dict[int, Any] = {}

    def produce(part: list[tuple[int, tuple[int, Any, int]]]) -> None:
        futs = [(i, b.submit(it, priority=it[0], key=it[1])) for i, it in part]
        for i, fut in futs:
            results[i] = fut.result(WAIT)

    indexed = list(enumerate(items))
    workers = [
        threading.Thread(target=produce, args=(indexed[t::threads],)) for t in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(WAIT)
    b.close()
    assert results == {i: rec([it])[0] for i, it in enumerate(items)}
    seen = rec.seen()
    assert sorted(map(repr, seen)) == sorted(map(repr, items + items))  # + the rec([it]) calls
    for batch in rec.batches[: -len(items)]:
        assert len(batch) <= max_batch_size
        assert len({it[1] for it in batch}) == 1, "keys never mix"
        prios = [it[0] for it in batch]
        assert prios == sorted(prios, reverse=True), "priority order within a batch"
    s = b.stats()
    assert (s["submitted"], s["completed"], s["failed"]) == (len(items), len(items), 0)


@settings(max_examples=25, deadline=None)
@given(items=st.lists(st.integers(), max_size=150), max_batch_size=st.integers(1, 64))
def test_asyncio_tasks_get_exactly_per_item_results(items: list[int], max_batch_size: int) -> None:
    batches: list[list[int]] = []

    async def handler(xs: list[int]) -> list[int]:
        batches.append(xs)
        await asyncio.sleep(0)
        return [f(x) for x in xs]

    async def main() -> list[int]:
        b = od.Batcher(handler, max_batch_size=max_batch_size)
        async with b:
            return list(await asyncio.gather(*(b.submit_async(x) for x in items)))

    assert asyncio.run(main()) == [f(x) for x in items]
    assert sorted(x for bt in batches for x in bt) == sorted(items)
    assert all(len(bt) <= max_batch_size for bt in batches)


@settings(max_examples=15, deadline=None)
@given(items=st.lists(st.integers(), min_size=1, max_size=80))
def test_mixed_threads_and_asyncio_with_sync_handler(items: list[int]) -> None:
    rec = Recorder()
    b = od.Batcher(rec, max_batch_size=16)
    half = len(items) // 2
    thread_results: list[Any] = []

    def produce() -> None:
        futs = [b.submit(x) for x in items[:half]]
        thread_results.extend(fu.result(WAIT) for fu in futs)

    t = threading.Thread(target=produce)
    t.start()

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(b.submit_async(x) for x in items[half:])))

    async_results = asyncio.run(main())
    t.join(WAIT)
    b.close()
    assert thread_results + async_results == [f(x) for x in items]


def test_nothing_lost_across_close() -> None:
    rec = Recorder()
    b = od.Batcher(rec, max_batch_size=7)
    futs = [b.submit(i) for i in range(2000)]
    b.close()
    assert all(fu.done() for fu in futs)
    assert [fu.result() for fu in futs] == [f(i) for i in range(2000)]
    assert sorted(rec.seen()) == list(range(2000))
    assert b.stats()["completed"] == 2000


# --- batch formation -----------------------------------------------------------


def test_batches_grow_while_the_handler_is_busy() -> None:
    b, rec, gate, _first = held_batcher(max_batch_size=64)
    futs = [b.submit(i) for i in range(50)]
    gate.set()
    assert [fu.result(WAIT) for fu in futs] == [f(i) for i in range(50)]
    b.close()
    assert rec.batches[0] == [-1]
    assert rec.batches[1] == list(range(50)), "everything queued while busy forms one batch"
    assert b.stats()["flush_reasons"]["idle"] >= 1


def test_oversize_item_runs_alone_and_weight_is_capped() -> None:
    b, rec, gate, _ = held_batcher(weigher=lambda s: len(str(s)), max_batch_weight=6)
    words = ["aa", "bb", "cc", "x" * 50, "dd", "e"]
    futs = [b.submit(w) for w in words]
    gate.set()
    for fu in futs:
        fu.result(WAIT)
    b.close()
    for batch in rec.batches[1:]:
        assert len(batch) == 1 or sum(len(str(w)) for w in batch) <= 6
    assert ["x" * 50] in rec.batches
    assert b.stats()["flush_reasons"]["weight"] >= 1


def test_flush_forces_a_batch() -> None:
    gate = threading.Event()
    batches: list[list[int]] = []

    def handler(xs: list[int]) -> list[int]:
        batches.append(xs)
        if -1 in xs:
            assert gate.wait(WAIT)
        return xs

    # Two slots, one held: a second batch waits for size (1000) or max_wait (60 s).
    b = od.Batcher(handler, max_batch_size=1000, max_wait_ms=60_000, max_concurrency=2)
    held = b.submit(-1)
    while not batches:
        threading.Event().wait(0.001)
    futs = [b.submit(i) for i in range(5)]
    b.flush()
    assert [fu.result(WAIT) for fu in futs] == list(range(5))
    assert batches[1] == list(range(5))
    gate.set()
    assert held.result(WAIT) == -1
    b.close()
    assert b.stats()["flush_reasons"]["flush"] == 1


def test_adaptive_model_is_exposed() -> None:
    b = od.Batcher(lambda xs: xs, adaptive=True, latency_target_ms=50.0, max_batch_size=32)
    for _ in range(5):
        futs = [b.submit(i) for i in range(40)]
        assert [fu.result(WAIT) for fu in futs] == list(range(40))
    model = b.stats()["model"]
    b.close()
    assert model["a_s"] >= 0
    assert model["b_s_per_item"] >= 0
    assert 1 <= model["batch_size"] <= 32


def test_adaptive_aimd_halves_on_failures() -> None:
    def boom(xs: list[int]) -> list[int]:
        raise RuntimeError("down")

    b = od.Batcher(boom, adaptive=True, max_batch_size=64)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            b.submit(1).result(WAIT)
    cap = b.stats()["model"]["aimd_cap"]
    b.close()
    assert cap == 8


class Key:
    """A hashable key object whose lifetime a test can watch."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return hash(self.n)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.n == self.n


def test_unique_keys_do_not_accumulate() -> None:
    """A key is remembered only while items with it are queued: rounds of
    fresh unique keys leave no lanes and no key objects behind."""
    b = od.Batcher(lambda xs: xs, max_batch_size=64)
    watched: list[weakref.ref[Key]] = []
    for rnd in range(3):
        keys = [Key(rnd * 100_000 + i) for i in range(3000)]
        watched += [weakref.ref(k) for k in keys[::100]]
        futs = [b.submit(i, key=k) for i, k in enumerate(keys)]
        assert [fu.result(WAIT) for fu in futs] == list(range(3000))
        del keys, futs
        assert all(r() is None for r in watched), "key objects are let go once their items ran"
        s = b.stats()
        assert (s["lanes"], s["keys"]) == (0, 0)
    # A key seen again after its lane emptied still never mixes with others.
    k1, k2 = Key(1), Key(2)
    futs = [b.submit(i, key=k1 if i % 2 else k2) for i in range(10)]
    assert [fu.result(WAIT) for fu in futs] == list(range(10))
    b.close()


# --- one test per failure, exact exception types ----------------------------------


def test_deadline_expiry_fails_with_deadline_exceeded() -> None:
    b, rec, gate, _ = held_batcher()
    fut = b.submit(5, deadline_ms=1.0)
    threading.Event().wait(0.05)  # let the deadline pass while the handler is busy
    gate.set()
    with pytest.raises(DeadlineExceeded) as ei:
        fut.result(WAIT)
    assert isinstance(ei.value, TimeoutError)
    b.close()
    assert 5 not in rec.seen()
    assert b.stats()["expired"] == 1


def test_admission_rejects_a_deadline_that_cannot_be_met() -> None:
    def slow(xs: list[int]) -> list[int]:
        threading.Event().wait(0.02)
        return xs

    b = od.Batcher(slow, admission=True, max_batch_size=2)
    for _ in range(3):
        futs = [b.submit(i) for i in range(4)]
        [fu.result(WAIT) for fu in futs]
    # The model has learnt ~20 ms per batch: a 5 ms deadline cannot be met.
    with pytest.raises(DeadlineExceeded, match="admission"):
        b.submit(0, deadline_ms=5.0)
    b.close()
    assert b.stats()["rejected"] >= 1


def test_cancelled_item_never_reaches_the_handler() -> None:
    b, rec, gate, _ = held_batcher()
    keep = b.submit(1)
    drop = b.submit(2)
    assert drop.cancel()
    gate.set()
    assert keep.result(WAIT) == f(1)
    with pytest.raises(cf.CancelledError):
        drop.result(WAIT)
    b.close()
    assert 2 not in rec.seen()
    assert b.stats()["cancelled"] == 1


def test_cancelled_async_item_never_reaches_the_handler() -> None:
    seen: list[int] = []

    async def handler(xs: list[int]) -> list[int]:
        seen.extend(xs)
        return xs

    async def main() -> None:
        b = od.Batcher(handler)
        a = b.submit_async(1)
        c = b.submit_async(2)
        c.cancel()
        assert await a == 1
        with pytest.raises(asyncio.CancelledError):
            await c
        await b.aclose()

    asyncio.run(main())
    assert seen == [1]


@pytest.mark.parametrize("poison", [ValueError, SystemExit, KeyboardInterrupt])
def test_poison_item_is_isolated_by_retry_individually(poison: type[BaseException]) -> None:
    def handler(xs: list[Any]) -> list[Any]:
        if "poison" in xs:
            raise (ValueError if len(xs) > 1 else poison)("poison in batch")
        return [str(x).upper() for x in xs]

    b, rec, gate, _ = held_batcher(retry_individually=True)
    rec.fn = handler
    futs = [b.submit(x) for x in ["a", "poison", "b"]]
    gate.set()
    assert futs[0].result(WAIT) == "A"
    assert futs[2].result(WAIT) == "B"
    with pytest.raises(poison, match="poison"):
        futs[1].result(WAIT)
    assert b.submit("c").result(WAIT) == "C", "the dispatcher carries on"
    b.close()
    assert b.stats()["failed"] == 1


def test_wrong_length_result_fails_the_batch_with_batch_result_error() -> None:
    b = od.Batcher(lambda xs: xs[:-1])
    fut = b.submit(1)
    with pytest.raises(BatchResultError, match="returned 0 results for a batch of 1"):
        fut.result(WAIT)
    b.close()
    assert b.stats()["failed"] == 1


def test_handler_exception_fails_every_item_of_the_batch() -> None:
    class Boom(Exception):
        pass

    def handler(xs: list[int]) -> list[int]:
        raise Boom("handler failed")

    b, rec, gate, _ = held_batcher()
    rec.fn = handler
    futs = [b.submit(i) for i in range(3)]
    gate.set()
    for fu in futs:
        with pytest.raises(Boom):
            fu.result(WAIT)
    b.close()


def test_exception_in_a_slot_fails_just_that_item() -> None:
    b = od.Batcher(lambda xs: [KeyError(x) if x == 2 else x for x in xs])
    futs = [b.submit(i) for i in range(4)]
    assert futs[0].result(WAIT) == 0
    with pytest.raises(KeyError):
        futs[2].result(WAIT)
    assert futs[3].result(WAIT) == 3
    b.close()


def test_queue_full_reject() -> None:
    b, _rec, gate, _ = held_batcher(max_queue=2, on_full="reject")
    ok = [b.submit(1), b.submit(2)]
    with pytest.raises(QueueFull, match="max_queue=2"):
        b.submit(3)
    gate.set()
    assert [fu.result(WAIT) for fu in ok] == [f(1), f(2)]
    b.close()
    assert b.stats()["rejected"] == 1


def test_queue_full_drop_oldest() -> None:
    b, rec, gate, _ = held_batcher(max_queue=2, on_full="drop_oldest")
    oldest = b.submit(1)
    rest = [b.submit(2), b.submit(3)]
    with pytest.raises(QueueFull, match="drop_oldest"):
        oldest.result(WAIT)
    gate.set()
    assert [fu.result(WAIT) for fu in rest] == [f(2), f(3)]
    b.close()
    assert 1 not in rec.seen()
    assert b.stats()["dropped"] == 1


def test_queue_full_block_times_out() -> None:
    b, _rec, gate, _ = held_batcher(max_queue=1, on_full="block", block_timeout=0.05)
    queued = b.submit(1)
    with pytest.raises(QueueFull, match="timeout"):
        b.submit(2)
    gate.set()
    assert queued.result(WAIT) == f(1)
    b.close()


def test_queue_full_block_waits_for_room() -> None:
    b, _rec, gate, _ = held_batcher(max_queue=1, on_full="block")
    b.submit(1)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(b.submit(2).result(WAIT)))
    t.start()
    threading.Event().wait(0.05)
    assert not out  # still blocked: the queue is full
    gate.set()
    t.join(WAIT)
    assert out == [f(2)]
    b.close()


def test_queue_full_block_async_never_blocks_the_loop() -> None:
    b, _rec, gate, _ = held_batcher(max_queue=1, on_full="block")

    async def main() -> list[Any]:
        a = b.submit_async(1)
        c = b.submit_async(2)  # full: waits asynchronously
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.001)
            ticks += 1
        gate.set()
        res = list(await asyncio.gather(a, c))
        return [*res, ticks]

    assert asyncio.run(main()) == [f(1), f(2), 5]
    b.close()


def test_submit_after_close_raises_batcher_closed() -> None:
    b = od.Batcher(lambda xs: xs)
    b.close()
    with pytest.raises(BatcherClosed) as ei:
        b.submit(1)
    assert isinstance(ei.value, RuntimeError)

    async def main() -> None:
        with pytest.raises(BatcherClosed):
            b.submit_async(1)

    asyncio.run(main())
    assert b.stats()["rejected"] == 2


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_wait_ms": -1.0}, "max_wait_ms"),
        ({"max_queue": 0}, "max_queue"),
        ({"on_full": "explode"}, "on_full"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_batch_weight": 10}, "max_batch_weight"),
        ({"latency_target_ms": 0.0}, "latency_target_ms"),
    ],
)
def test_bad_settings_name_the_parameter(kw: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigurationError, match=param):
        od.Batcher(lambda xs: xs, **kw)


def test_bad_arguments() -> None:
    with pytest.raises(InputTypeError):
        od.Batcher(42)  # type: ignore[arg-type]
    b = od.Batcher(lambda xs: xs, weigher=lambda x: "heavy")  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="weigher"):
        b.submit(1)
    with pytest.raises(ConfigurationError, match="deadline_ms"):
        b.submit(1, deadline_ms=-5.0)
    b.close()
    assert issubclass(QueueFull, OverdriveError)


# --- decorator, async handler, lifecycle --------------------------------------------


def test_batched_sync_function() -> None:
    calls: list[list[int]] = []

    @od.batched(max_batch_size=8)
    def square(xs: list[int]) -> list[int]:
        calls.append(xs)
        return [x * x for x in xs]

    with cf.ThreadPoolExecutor(8) as ex:
        out = list(ex.map(square, range(100)))
    square.close()
    assert out == [x * x for x in range(100)]
    assert all(len(c) <= 8 for c in calls)
    assert square.stats()["completed"] == 100


def test_batched_async_function() -> None:
    @od.batched(max_batch_size=16)
    async def double(xs: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return [2 * x for x in xs]

    async def main() -> list[int]:
        res = list(await asyncio.gather(*(double(i) for i in range(100))))
        await double.batcher.aclose()
        return res

    assert asyncio.run(main()) == [2 * i for i in range(100)]
    assert double.stats()["batches"] < 100


def test_async_handler_from_threads_uses_a_private_loop() -> None:
    async def handler(xs: list[int]) -> list[int]:
        return [f(x) for x in xs]

    b = od.Batcher(handler)
    with cf.ThreadPoolExecutor(4) as ex:
        futs = list(ex.map(b.submit, range(200)))
    assert [fu.result(WAIT) for fu in futs] == [f(i) for i in range(200)]
    b.close()
    assert b.stats()["completed"] == 200


def test_context_manager_closes_and_drains() -> None:
    rec = Recorder()
    with od.Batcher(rec, max_batch_size=3) as b:
        futs = [b.submit(i) for i in range(10)]
    assert b.closed
    assert [fu.result(0) for fu in futs] == [f(i) for i in range(10)]


def test_stats_has_every_counter() -> None:
    b = od.Batcher(lambda xs: xs)
    [fu.result(WAIT) for fu in [b.submit(i) for i in range(10)]]
    b.close()
    s = b.stats()
    for k in [
        "submitted",
        "completed",
        "failed",
        "expired",
        "rejected",
        "dropped",
        "cancelled",
        "batches",
        "batch_sizes",
        "queue_wait_s",
        "handler_time_s",
        "flush_reasons",
        "queue_depth",
        "model",
    ]:
        assert k in s
    assert set(s["flush_reasons"]) == {"size", "time", "weight", "idle", "flush", "close"}
    assert sum(s["batch_sizes"].values()) == s["batches"]
    assert s["queue_wait_s"]["count"] == 10


# --- stress ----------------------------------------------------------------------


STRESS = """
import asyncio, threading
import overdrive as od

n_threads, per_thread, per_task, n_tasks = 8, 100_000, 5_000, 8
total_calls = [0]

def handler(xs):
    total_calls[0] += len(xs)
    return xs

b = od.Batcher(handler, max_batch_size=256, max_queue=50_000)
errors, sums = [], []

def produce(t):
    try:
        base = t * 10_000_000
        done = 0
        for start in range(0, per_thread, 2_000):
            futs = [b.submit(base + i) for i in range(start, start + 2_000)]
            got = [fu.result(60) for fu in futs]
            assert got == [base + i for i in range(start, start + 2_000)]
            done += len(got)
        sums.append(done)
    except BaseException as e:
        errors.append(e)

async def async_producers():
    async def task(k):
        base = 900_000_000 + k * 100_000
        futs = [b.submit_async(base + i) for i in range(per_task)]
        got = await asyncio.gather(*futs)
        assert list(got) == [base + i for i in range(per_task)]
        return len(got)
    return sum(await asyncio.gather(*(task(k) for k in range(n_tasks))))

threads = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
for t in threads:
    t.start()
async_count = asyncio.run(async_producers())
for t in threads:
    t.join(100)
alive = sum(t.is_alive() for t in threads)
b.close()
s = b.stats()
print(alive, len(errors), sum(sums) + async_count, total_calls[0],
      s["submitted"], s["completed"], s["failed"])
"""


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_stress_threads_and_asyncio_producers() -> None:
    """8 producer threads x 100k items + 8 asyncio producers x 5k: counts add
    up exactly, nobody deadlocks. In a subprocess, so its memory and threads
    never touch other tests."""
    res = subprocess.run(
        [sys.executable, "-c", STRESS], capture_output=True, text=True, timeout=140, check=True
    )
    alive, errors, returned, handled, submitted, completed, failed = map(int, res.stdout.split())
    expected = 8 * 100_000 + 8 * 5_000
    assert (alive, errors) == (0, 0), res.stderr
    assert returned == handled == submitted == completed == expected
    assert failed == 0


def test_batching_module_re_exports_the_split_modules() -> None:
    from overdrive import batcher, batching, message_batcher

    assert sorted(batching.__all__) == sorted(
        ["BatchFuture", "Batcher", "MessageBatcher", "batched", "decode_batch", "encode_batch"]
    )
    assert batching.BatchFuture is batcher.BatchFuture is od.BatchFuture
    assert batching.Batcher is batcher.Batcher is od.Batcher
    assert batching.batched is batcher.batched is od.batched
    assert batching.MessageBatcher is message_batcher.MessageBatcher is od.MessageBatcher
    assert batching.encode_batch is message_batcher.encode_batch is od.encode_batch
    assert batching.decode_batch is message_batcher.decode_batch is od.decode_batch
