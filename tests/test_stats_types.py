"""The stats() TypedDicts of ``_core.pyi`` match the dicts the binding builds.

The TypedDicts exist only in the stub (for type checkers), so this test reads
the shipped ``_core.pyi`` with :mod:`ast`: for every class whose ``stats()``
is annotated with a TypedDict, the real dict must have exactly its keys, and
each value the annotated type (nested TypedDicts, lists and dicts included).
"""

from __future__ import annotations

import ast
import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import overdrive as od
from overdrive import _core
from overdrive.telemetry import LatencyHistogram

STUB = Path(_core.__file__).with_name("_core.pyi")
TREE = ast.parse(STUB.read_text(encoding="utf-8"))
CLASSES = [n for n in TREE.body if isinstance(n, ast.ClassDef)]
TYPED_DICTS: dict[str, dict[str, ast.expr]] = {}  # name -> fields, inherited ones too
for c in CLASSES:
    bases = [ast.unparse(b) for b in c.bases]
    if "TypedDict" in bases or any(b in TYPED_DICTS for b in bases):
        fields = {k: v for b in bases for k, v in TYPED_DICTS.get(b, {}).items()}
        for s in c.body:
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
                fields[s.target.id] = s.annotation
        TYPED_DICTS[c.name] = fields
ALIASES: dict[str, ast.expr] = {
    t.id: n.value
    for n in TREE.body
    if isinstance(n, ast.Assign)
    for t in n.targets
    if isinstance(t, ast.Name)
}
STATS_TYPE: dict[str, str] = {
    c.name: ast.unparse(f.returns)
    for c in CLASSES
    for f in c.body
    if isinstance(f, ast.FunctionDef) and f.name == "stats" and f.returns is not None
}
SCALARS: dict[str, type | tuple[type, ...]] = {"int": int, "float": float, "str": str, "bool": bool}


def check(value: Any, ann: ast.expr, where: str) -> None:
    """Assert ``value`` has the stub type ``ann`` (the subset of typing the stub uses)."""
    if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):  # X | None
        if isinstance(ann.right, ast.Constant) and ann.right.value is None and value is None:
            return
        check(value, ann.left, where)
        return
    if isinstance(ann, ast.Subscript):
        origin = ast.unparse(ann.value)
        if origin == "Literal":
            allowed = ast.literal_eval(ann.slice)
            allowed = allowed if isinstance(allowed, tuple) else (allowed,)
            assert value in allowed, f"{where}: {value!r} not in {allowed}"
        elif origin == "list":
            assert isinstance(value, list), f"{where}: {type(value).__name__}, not list"
            for i, v in enumerate(value):
                check(v, ann.slice, f"{where}[{i}]")
        elif origin == "dict":
            assert isinstance(ann.slice, ast.Tuple)
            key_ann, value_ann = ann.slice.elts
            assert isinstance(value, dict), f"{where}: {type(value).__name__}, not dict"
            for k, v in value.items():
                check(k, key_ann, f"{where} key")
                check(v, value_ann, f"{where}[{k!r}]")
        else:
            raise AssertionError(f"{where}: the test does not know {ast.unparse(ann)}")
        return
    name = ast.unparse(ann)
    if name == "Any":
        return
    if name in ALIASES:
        check(value, ALIASES[name], where)
    elif name in TYPED_DICTS:
        fields = TYPED_DICTS[name]
        assert isinstance(value, dict), f"{where}: {type(value).__name__}, not {name}"
        assert sorted(value) == sorted(fields), (
            f"{where}: keys differ from {name}: "
            f"missing in the stub {sorted(value.keys() - fields.keys())}, "
            f"missing at run time {sorted(fields.keys() - value.keys())}"
        )
        for key, field_ann in fields.items():
            check(value[key], field_ann, f"{where}[{key!r}]")
    elif name in SCALARS:
        ok = isinstance(value, SCALARS[name]) and (name == "bool" or not isinstance(value, bool))
        assert ok, f"{where}: {value!r} is not {name}"
    else:
        raise AssertionError(f"{where}: the test does not know {name}")


# --- one live, exercised object per class with stats() --------------------------------


def compressor() -> Iterator[Any]:
    c = od.Compressor(threshold=16)
    c.unpack(c.pack(b"abc" * 100))
    yield c


def buffer_pool() -> Iterator[Any]:
    pool = od.BufferPool(buffer_size=1024, min_size=1, max_size=4)
    pool.acquire().release()
    yield pool


def object_pool() -> Iterator[Any]:
    pool = od.ObjectPool(list, min_size=1, max_size=4)
    pool.acquire().release()
    yield pool


def balancer() -> Iterator[Any]:
    lb = od.Balancer(3)
    lb.release(lb.acquire(), latency_s=0.01)  # an EWMA latency, not None
    lb.report_queue(1, 0.5)
    lb.mark_down(2)
    yield lb


def worker_pool_core() -> Iterator[Any]:
    pool = od.WorkerPool(min_workers=1, max_workers=2)
    assert pool.submit(time.sleep, 0.01).result() is None  # starts a worker: a scaling event
    yield pool._core
    pool.shutdown()


def shard_router() -> Iterator[Any]:
    router = od.ShardRouter(["a", "b", "c"])
    router.route_many([f"k{i}" for i in range(50)])
    router.remove_node("c")
    yield router


def batch_queue() -> Iterator[Any]:
    q = _core.BatchQueue(max_batch_size=4)
    futures = [q.submit(i) for i in range(6)]
    rx = q.receiver()
    while any(not f.done() for f in futures):
        step = rx.next(timeout=5.0)
        assert step is not None
        items, batch, _reason, _ = step
        assert batch is not None
        batch.finish(items, 0.001)
    yield q
    q.close()


def message_queue() -> Iterator[Any]:
    q = _core.MessageQueue(max_batch_size=4)
    for i in range(10):
        q.put(b"message %d" % i)
    q.flush()
    rx = q.receiver()
    frames = rx.next_frames(timeout=5.0)
    assert frames
    for _frame, n, _reason in frames:
        rx.done(n, True)
    yield q
    q.close()


def latency_histogram() -> Iterator[Any]:
    h = LatencyHistogram("api")
    h.record_many([0.001, 0.002, 0.5])
    yield h


def memory_tier() -> Iterator[Any]:
    tier = _core.MemoryTier(max_entries=4)
    tier.set("a", 1)
    tier.get("a")
    tier.get("b")
    yield tier


def pacer() -> Iterator[Any]:
    p = _core.Pacer(1000.0, 0.005)
    list(p)
    yield p


FACTORIES: dict[str, Callable[[], Iterator[Any]]] = {
    "Compressor": compressor,
    "BufferPool": buffer_pool,
    "ObjectPool": object_pool,
    "Balancer": balancer,
    "WorkerPoolCore": worker_pool_core,
    "ShardRouter": shard_router,
    "BatchQueue": batch_queue,
    "MessageQueue": message_queue,
    "LatencyHistogram": latency_histogram,
    "MemoryTier": memory_tier,
    "Pacer": pacer,
}
#: The list each factory must fill, so its elements get checked too.
NON_EMPTY = {"Balancer": "backends", "WorkerPoolCore": "scaling_events", "ShardRouter": "nodes"}


def test_every_class_with_stats_is_checked() -> None:
    assert sorted(STATS_TYPE) == sorted(FACTORIES)
    untyped = {c: t for c, t in STATS_TYPE.items() if t not in TYPED_DICTS}
    assert untyped == {}, "stats() should return a TypedDict of the stub"


@pytest.mark.parametrize("cls", sorted(FACTORIES))
def test_stats_match_the_stub(cls: str) -> None:
    gen = FACTORIES[cls]()
    obj = next(gen)
    assert type(obj).__name__ == cls
    stats = obj.stats()
    check(stats, ast.Name(STATS_TYPE[cls]), f"{cls}.stats()")
    if cls in NON_EMPTY:  # the element checks only bite on a non-empty list
        assert stats[NON_EMPTY[cls]], f"{cls}: exercise it so {NON_EMPTY[cls]} has entries"
    for _ in gen:  # clean-up after the yield
        pass


# --- the facades add only the keys the stub's docstrings name -------------------------

QUEUE_KEYS = set(TYPED_DICTS["QueueStats"])


def test_batcher_stats_keys() -> None:
    with od.Batcher(lambda xs: xs) as b:
        assert b.submit(1).result() == 1
    assert set(b.stats()) == set(TYPED_DICTS["BatchQueueStats"]) | {"name", "closed", "handler"}


def test_message_batcher_stats_keys() -> None:
    frames: list[bytes] = []
    with od.MessageBatcher(frames.append) as mb:
        mb.put(b"hello")
    extra = {"frames", "bytes_out", "retries", "given_up", "name", "closed"}
    assert set(mb.stats()) == QUEUE_KEYS | extra


def test_worker_pool_stats_keys() -> None:
    with od.WorkerPool(min_workers=1, max_workers=1) as pool:
        assert asyncio.run(pool.submit_async(sum, [1, 2])) == 3
        assert set(pool.stats()) == set(TYPED_DICTS["WorkerPoolStats"])
