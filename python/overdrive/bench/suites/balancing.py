"""Balancing suite: Balancer, WorkerPool and ShardRouter against the naive way and peers.

- Balancer pick+release with 64 backends, per strategy, vs a Lock-guarded
  pure-Python least-outstanding picker.
- Replica simulation (16 replicas, exponential service, utilisation 0.9, in
  virtual time, driving the real Balancer): p99 per strategy.
- WorkerPool vs concurrent.futures.ThreadPoolExecutor: submit -> result of a
  no-op, and throughput of GIL-releasing work (zstd of 64 KiB, numpy matmul).
- ShardRouter: route() vs a pure-Python hash ring (bisect over md5 points),
  max/average load under Zipf keys, keys moved when a node is added.
"""

from __future__ import annotations

import bisect
import concurrent.futures as cf
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import overdrive as od

from ..compare import Comparison, interleaved
from ..corpus import json_blob
from ..replica_sim import simulate
from . import BenchConfig, Check, SuiteResult

__all__ = ["run"]

COLUMNS = ["case", "impl", "value", "unit", "x_vs_od"]


def _row(case: str, impl: str, value: float, unit: str, x: float | str = "") -> dict[str, Any]:
    return {"case": case, "impl": impl, "value": value, "unit": unit, "x_vs_od": x}


def _add_rows(
    result: SuiteResult,
    case: str,
    samples: dict[str, list[float]],
    od_key: str,
    value: Callable[[float], float],
    unit: str,
) -> None:
    """One row per implementation: ``value(median seconds)`` and the time ratio to ``od_key``."""
    od_med = statistics.median(samples[od_key])
    for impl, times in samples.items():
        med = statistics.median(times)
        result.rows.append(_row(case, impl, value(med), unit, med / od_med))


class _PyLeastOutstanding:
    """The naive way: a Lock-guarded list of in-flight counts, min() per pick."""

    def __init__(self, n: int) -> None:
        self.counts = [0] * n
        self.lock = threading.Lock()

    def acquire(self) -> int:
        with self.lock:
            c = self.counts
            i = c.index(min(c))
            c[i] += 1
            return i

    def release(self, i: int) -> None:
        with self.lock:
            self.counts[i] -= 1


class _PyRing:
    """A pure-Python consistent-hash ring: md5 points, bisect lookup."""

    def __init__(self, nodes: list[str], vnodes: int = 160) -> None:
        pts = []
        for n in nodes:
            for v in range(vnodes):
                h = int.from_bytes(hashlib.md5(f"{n}#{v}".encode()).digest()[:8], "little")
                pts.append((h, n))
        pts.sort()
        self.keys = [p[0] for p in pts]
        self.nodes = [p[1] for p in pts]

    def route(self, key: str) -> str:
        h = int.from_bytes(hashlib.md5(key.encode()).digest()[:8], "little")
        i = bisect.bisect(self.keys, h)
        return self.nodes[i % len(self.nodes)]


def _loop(n: int, body: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        for _ in range(n):
            body()

    return call


def _balancer(result: SuiteResult, repeats: int) -> None:
    ops = 1000
    cands: dict[str, Callable[[], None]] = {}
    for strategy in ("load_score", "least_outstanding", "p2c", "round_robin"):
        lb = od.Balancer(64, strategy)
        acq, rel = lb.acquire, lb.release

        def body(acq: Callable[[], int] = acq, rel: Callable[[int], None] = rel) -> None:
            rel(acq())

        cands[strategy] = _loop(ops, body)
    lb = od.Balancer(64)

    def with_pick() -> None:
        with lb.pick():
            pass

    cands["load_score (with pick())"] = _loop(ops, with_pick)
    naive = _PyLeastOutstanding(64)
    cands["python Lock + min()"] = _loop(ops, lambda: naive.release(naive.acquire()))
    s = interleaved(cands, repeats=repeats, number=1)
    _add_rows(
        result, "pick+release, 64 backends", s, "load_score", lambda m: m / ops * 1e9, "ns/op"
    )
    ns = statistics.median(s["load_score"]) / ops * 1e9
    naive_ns = statistics.median(s["python Lock + min()"]) / ops * 1e9
    result.checks.append(
        Check(
            "Balancer pick+release, 64 backends (load_score)",
            "<= 300 ns",
            ns,
            ns <= 300.0,
            unit="ns",
            detail=f"python Lock+min(): {naive_ns:.0f} ns",
        )
    )


def _simulation(result: SuiteResult, quick: bool) -> None:
    n = 200_000 if quick else 1_000_000
    p99 = {}
    for strategy in ("round_robin", "p2c", "least_outstanding", "load_score"):
        r = simulate(strategy, requests=n, warmup=n // 10, seed=1)
        p99[strategy] = r.p99
        result.rows.append(
            _row("replica sim p99 (16 x M/M/1, rho=0.9)", strategy, r.p99, "service times")
        )
    for s in ("load_score", "least_outstanding"):
        vs_p2c = p99[s] / p99["p2c"]
        vs_rr = p99[s] / p99["round_robin"]
        result.checks.append(
            Check(
                f"sim p99 {s} vs p2c",
                "<= 0.75x p2c's p99",
                vs_p2c,
                vs_p2c <= 0.75,
                detail=f"{p99[s]:.2f} vs {p99['p2c']:.2f} service times",
            )
        )
        result.checks.append(
            Check(
                f"sim p99 {s} vs round robin",
                "<= 0.35x round robin's p99",
                vs_rr,
                vs_rr <= 0.35,
                detail=f"{p99[s]:.2f} vs {p99['round_robin']:.2f} service times",
            )
        )
    result.checks.append(
        Check(
            "sim p99 load_score (absolute)",
            "<= 7 service times",
            p99["load_score"],
            p99["load_score"] <= 7.0,
            unit="",
        )
    )
    result.notes.append(
        f"replica sim: {n} requests after {n // 10} warm-up, virtual time, real Balancer"
    )


def _noop() -> None:
    return None


def _worker_pool_overhead(result: SuiteResult, repeats: int) -> None:
    calls = 200
    tpe = cf.ThreadPoolExecutor()
    wp = od.WorkerPool()
    wp_nohelp = od.WorkerPool(help_on_wait=False)
    try:
        cands = {
            "WorkerPool": _loop(calls, lambda: wp.submit(_noop).result()),
            "WorkerPool(help_on_wait=False)": _loop(
                calls, lambda: wp_nohelp.submit(_noop).result()
            ),
            "ThreadPoolExecutor": _loop(calls, lambda: tpe.submit(_noop).result()),
        }
        s = interleaved(cands, repeats=repeats, number=1)
    finally:
        tpe.shutdown()
        wp.shutdown()
        wp_nohelp.shutdown()
    _add_rows(result, "submit->result no-op", s, "WorkerPool", lambda m: m / calls * 1e6, "us/task")
    cmp = Comparison.from_samples(s["ThreadPoolExecutor"], s["WorkerPool"], 1)
    frac = 1.0 / cmp.ratio
    tpe_med = statistics.median(s["ThreadPoolExecutor"])
    nohelp = statistics.median(s["WorkerPool(help_on_wait=False)"]) / tpe_med
    result.checks.append(
        Check(
            "WorkerPool submit->result overhead vs ThreadPoolExecutor",
            "<= 0.5x ThreadPoolExecutor's time",
            frac,
            frac <= 0.5,
            detail=(
                f"CI of speed-up {cmp.ci_low:.2f}-{cmp.ci_high:.2f}; the waiter runs a "
                "not-yet-started task itself (help_on_wait); without it: "
                f"{nohelp:.2f}x"
            ),
        )
    )


TASKS = 64


def _pool_samples(fn: Callable[[], Any], repeats: int) -> dict[str, list[float]]:
    """Seconds to run ``TASKS`` calls of ``fn`` through each pool (submit all, then wait)."""
    tpe = cf.ThreadPoolExecutor()
    wp = od.WorkerPool()

    def batch(ex: cf.Executor) -> Callable[[], None]:
        def call() -> None:
            futs = [ex.submit(fn) for _ in range(TASKS)]
            for f in futs:
                f.result()

        return call

    try:
        return interleaved(
            {"WorkerPool": batch(wp), "ThreadPoolExecutor": batch(tpe)},
            repeats=repeats,
            number=1,
        )
    finally:
        tpe.shutdown()
        wp.shutdown()


def numpy_samples(repeats: int) -> dict[str, list[float]]:
    """The matmul case; run in a child process whose BLAS uses one thread."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((192, 192))
    return _pool_samples(lambda: a @ a, repeats)


_NUMPY_CHILD = (
    "import json, sys\n"
    "from overdrive.bench.suites.balancing import numpy_samples\n"
    "print(json.dumps(numpy_samples(int(sys.argv[1]))))\n"
)


def _throughput(result: SuiteResult, repeats: int) -> None:
    blob = json_blob(64 * 1024)
    cases = {"zstd 64 KiB": _pool_samples(lambda: od.compress(blob, 3), repeats)}
    # OpenBLAS threads would fight the pool threads for the 2 cores and make
    # the result chaotic; one BLAS thread per task lets the pools do the work.
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    child = subprocess.run(
        [sys.executable, "-c", _NUMPY_CHILD, str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    cases["numpy matmul 192x192 (1 BLAS thread)"] = json.loads(child.stdout)
    cores = os.cpu_count() or 1
    for label, s in cases.items():
        _add_rows(result, f"throughput: {label}", s, "WorkerPool", lambda m: TASKS / m, "tasks/s")
        cmp = Comparison.from_samples(s["ThreadPoolExecutor"], s["WorkerPool"], 1)
        result.checks.append(
            Check(
                f"WorkerPool throughput, {label}, {cores} cores",
                ">= 0.95x ThreadPoolExecutor's tasks/s",
                cmp.ratio,
                cmp.ratio >= 0.95,
                detail=f"CI {cmp.ci_low:.2f}-{cmp.ci_high:.2f}",
            )
        )


def _router(result: SuiteResult, repeats: int) -> None:
    nodes = [f"10.0.0.{i}:6379" for i in range(10)]
    keys = [f"user:{i}" for i in range(1000)]
    r = od.ShardRouter(nodes)
    ring = _PyRing(nodes)

    def od_route() -> None:
        for k in keys:
            r.lookup(k)

    def od_route_bounded() -> None:
        for k in keys:
            r.release(r.route(k))

    def py_route() -> None:
        for k in keys:
            ring.route(k)

    s = interleaved(
        {
            "ShardRouter.lookup": od_route,
            "ShardRouter.route+release": od_route_bounded,
            "ShardRouter.route_many (per key)": lambda: r.route_many(keys),
            "python md5 ring": py_route,
        },
        repeats=repeats,
        number=1,
    )
    r.reset_loads()
    _add_rows(
        result, "route 1 key", s, "ShardRouter.lookup", lambda m: m / len(keys) * 1e9, "ns/key"
    )

    # Zipf(1.0) over 10,000 keys, 200,000 requests.
    rng = random.Random(11)
    universe = 10_000
    weights = [1.0 / (i + 1) for i in range(universe)]
    zipf = [f"key:{k}" for k in rng.choices(range(universe), weights=weights, k=200_000)]
    bounded = od.ShardRouter(nodes, load_factor=1.25)
    bounded.route_many(zipf)
    loads = [n["load"] for n in bounded.stats()["nodes"]]
    ratio = max(loads) / (sum(loads) / len(loads))
    plain: dict[str, int] = {}
    for k in zipf:
        n = r.lookup(k)
        plain[n] = plain.get(n, 0) + 1
    plain_ratio = max(plain.values()) / (len(zipf) / len(nodes))
    result.rows.append(_row("Zipf 1.0 max/avg load", "ShardRouter(load_factor=1.25)", ratio, "x"))
    result.rows.append(_row("Zipf 1.0 max/avg load", "plain consistent hashing", plain_ratio, "x"))
    result.checks.append(
        Check(
            "ShardRouter max/avg load, Zipf keys",
            "<= 1.25",
            ratio,
            ratio <= 1.25 + 1e-9,
            detail=f"plain consistent hashing: {plain_ratio:.2f}; overflows "
            f"{bounded.stats()['overflows']} of {len(zipf)}",
        )
    )

    # Keys moved when one node joins ten.
    many = [f"user:{i}" for i in range(100_000)]
    before = [r.lookup(k) for k in many]
    r.add_node("10.0.0.10:6379")
    after = [r.lookup(k) for k in many]
    moved = sum(1 for x, y in zip(before, after, strict=True) if x != y) / len(many)
    result.rows.append(_row("keys moved adding 1 node to 10", "ShardRouter", moved, "fraction"))
    result.checks.append(
        Check(
            "ShardRouter keys moved when 1 node joins 10",
            "~0.1 (0.07..0.13; ideal 1/11 = 0.091)",
            moved,
            0.07 <= moved <= 0.13,
            unit="",
        )
    )


def run(config: BenchConfig) -> SuiteResult:
    result = SuiteResult("balancing", COLUMNS)
    repeats = config.repeats
    _balancer(result, repeats)
    _simulation(result, config.quick)
    _worker_pool_overhead(result, repeats)
    _throughput(result, 5 if config.quick else repeats)
    _router(result, repeats)
    result.notes.append(
        "x_vs_od = impl median time / overdrive median time (> 1: overdrive faster); "
        f"medians of {repeats} interleaved repeats; {os.cpu_count()} cores."
    )
    return result
