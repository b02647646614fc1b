"""Pools suite: BufferPool acquire+release vs allocating a fresh bytearray, a
threading.Lock-guarded free list and queue.Queue; ObjectPool vs a locked free
list; resident-memory growth over a million cycles.

Every case times the implementations interleaved in one process, each callable
running a loop of ``INNER`` operations (the loop's own cost is in every row
alike); rows give ns per acquire+release and each implementation's time
divided by overdrive's (``x_vs_od`` > 1 means overdrive is faster).
"""

from __future__ import annotations

import os
import queue
import statistics
import threading
from collections.abc import Callable
from typing import Any

import overdrive as od

from ..compare import Comparison, interleaved
from . import BenchConfig, Check, SuiteResult

__all__ = ["run"]

COLUMNS = ["case", "impl", "ns/op", "x_vs_od"]
INNER = 1000
GOAL_NS = 150.0
GOAL_SPEEDUP = 3.0


def _od_cycle(bp: od.BufferPool) -> Callable[[], None]:
    def call() -> None:
        acquire = bp.acquire
        for _ in range(INNER):
            b = acquire()
            b.release()

    return call


def _od_with(bp: od.BufferPool) -> Callable[[], None]:
    def call() -> None:
        acquire = bp.acquire
        for _ in range(INNER):
            with acquire():
                pass

    return call


def _fresh(size: int) -> Callable[[], None]:
    def call() -> None:
        for _ in range(INNER):
            b = bytearray(size)
            del b

    return call


def _locked_list(size: int, n: int = 8) -> Callable[[], None]:
    lock = threading.Lock()
    free = [bytearray(size) for _ in range(n)]

    def call() -> None:
        for _ in range(INNER):
            with lock:
                b = free.pop()
            with lock:
                free.append(b)

    return call


def _queue(size: int, n: int = 8) -> Callable[[], None]:
    q: queue.Queue[bytearray] = queue.Queue()
    for _ in range(n):
        q.put(bytearray(size))

    def call() -> None:
        for _ in range(INNER):
            b = q.get()
            q.put(b)

    return call


def _rows(case: str, samples: dict[str, list[float]]) -> list[dict[str, Any]]:
    od_med = statistics.median(samples["overdrive"])
    return [
        {
            "case": case,
            "impl": impl,
            "ns/op": statistics.median(times) / INNER * 1e9,
            "x_vs_od": statistics.median(times) / od_med,
        }
        for impl, times in samples.items()
    ]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _buffer_case(result: SuiteResult, size: int, label: str, repeats: int) -> None:
    bp = od.BufferPool(buffer_size=size, min_size=8, max_size=64)
    impls = {
        "overdrive": _od_cycle(bp),
        "overdrive (with)": _od_with(bp),
        f"bytearray({label})": _fresh(size),
        "Lock + list free list": _locked_list(size),
        "queue.Queue": _queue(size),
    }
    s = interleaved(impls, repeats=repeats)
    result.rows += _rows(f"{label} acquire+release", s)
    od_ns = statistics.median(s["overdrive"]) / INNER * 1e9
    result.checks.append(
        Check(
            f"{label} acquire+release",
            f"<= {GOAL_NS:.0f} ns (aim 100)",
            od_ns,
            od_ns <= GOAL_NS,
            unit="ns",
        )
    )
    cmp = Comparison.from_samples(s[f"bytearray({label})"], s["overdrive"], INNER)
    result.checks.append(
        Check(
            f"{label} vs bytearray({label})",
            f">= {GOAL_SPEEDUP:.0f}x faster",
            cmp.ratio,
            cmp.ratio >= GOAL_SPEEDUP,
            detail=f"CI {cmp.ci_low:.2f}-{cmp.ci_high:.2f}, p={cmp.p_value:.3g}",
        )
    )
    stats = bp.stats()
    result.notes.append(
        f"{label}: hit_ratio={stats['hit_ratio']:.6f}, misses={stats['misses']}, "
        f"high_water={stats['high_water']}"
    )


def run(config: BenchConfig) -> SuiteResult:
    result = SuiteResult("pools", COLUMNS)
    repeats = config.repeats

    _buffer_case(result, 64 * 1024, "64 KiB", repeats)
    _buffer_case(result, 1024 * 1024, "1 MiB", repeats)

    # ObjectPool: a pooled Python object vs a Lock-guarded list of the same objects.
    op: od.ObjectPool[dict[str, Any]] = od.ObjectPool(dict, max_size=8)

    def od_obj() -> None:
        acquire = op.acquire
        for _ in range(INNER):
            lease = acquire()
            lease.release()

    lock = threading.Lock()
    objs: list[dict[str, Any]] = [{} for _ in range(8)]

    def locked_obj() -> None:
        for _ in range(INNER):
            with lock:
                o = objs.pop()
            with lock:
                objs.append(o)

    s = interleaved({"overdrive": od_obj, "Lock + list free list": locked_obj}, repeats=repeats)
    result.rows += _rows("ObjectPool acquire+release", s)

    # Resident memory over a million cycles (after a warm-up): the "0 MB growth" goal.
    bp = od.BufferPool(buffer_size=64 * 1024, min_size=8, max_size=64)
    cycle = _od_cycle(bp)
    for _ in range(100):
        cycle()
    before = _rss()
    for _ in range(1_000_000 // INNER):
        cycle()
    growth = (_rss() - before) / 1024
    result.checks.append(
        Check(
            "RSS growth over 1,000,000 acquire+release (64 KiB)",
            "< 1024 KiB",
            growth,
            growth < 1024,
            unit="KiB",
        )
    )
    result.notes.append(
        "x_vs_od = impl median time / overdrive median time (> 1: overdrive faster); "
        f"ns/op includes a Python for-loop iteration; medians of {repeats} interleaved "
        "repeats; free lists hold 8 pre-allocated buffers, like the pool's min_size."
    )
    return result
