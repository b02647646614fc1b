"""Balancing suite: Balancer and ShardRouter against the naive way and peers
(WorkerPool has its own suite, ``worker_pool``).

- Balancer pick+release with 64 backends, per strategy, vs a Lock-guarded
  pure-Python least-outstanding picker (both sides' methods bound once).
- Replica simulation (16 replicas, exponential service, utilisation 0.9, in
  virtual time, driving the real Balancer): p99 per strategy.
- ShardRouter: route() vs a pure-Python hash ring (bisect over md5 points),
  max/average load under Zipf keys, keys moved when a node is added.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import random
import statistics
import threading
from collections.abc import Callable

import overdrive as od

from ..compare import interleaved
from ..replica_sim import simulate
from . import BenchConfig, Check, SuiteResult
from ._common import VALUE_COLUMNS, add_rows, repeat, value_row

__all__ = ["run"]


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


def _pick_release(
    acquire: Callable[[], int], release: Callable[..., None], ops: int
) -> Callable[[], None]:
    """``ops`` acquire+release pairs through methods bound once (same for every side)."""

    def call() -> None:
        for _ in range(ops):
            release(acquire())

    return call


def _balancer(result: SuiteResult, repeats: int) -> None:
    ops = 1000
    cands: dict[str, Callable[[], None]] = {}
    for strategy in ("load_score", "least_outstanding", "p2c", "round_robin"):
        lb = od.Balancer(64, strategy)
        cands[strategy] = _pick_release(lb.acquire, lb.release, ops)
    lb = od.Balancer(64)

    def with_pick() -> None:
        with lb.pick():
            pass

    cands["load_score (with pick())"] = repeat(ops, with_pick)
    naive = _PyLeastOutstanding(64)
    cands["python Lock + min()"] = _pick_release(naive.acquire, naive.release, ops)
    s = interleaved(cands, repeats=repeats, number=1)
    add_rows(result, "pick+release, 64 backends", s, "load_score", lambda m: m / ops * 1e9, "ns/op")
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
            value_row("replica sim p99 (16 x M/M/1, rho=0.9)", strategy, r.p99, "service times")
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


def _router(result: SuiteResult, repeats: int) -> None:
    nodes = [f"10.0.0.{i}:6379" for i in range(10)]
    keys = [f"user:{i}" for i in range(1000)]
    r = od.ShardRouter(nodes)
    ring = _PyRing(nodes)

    # Every side's methods are bound once, outside its loop.
    def od_route() -> None:
        lookup = r.lookup
        for k in keys:
            lookup(k)

    def od_route_bounded() -> None:
        route, release = r.route, r.release
        for k in keys:
            release(route(k))

    def py_route() -> None:
        route = ring.route
        for k in keys:
            route(k)

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
    add_rows(
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
    zipf_case = "Zipf 1.0 max/avg load"
    result.rows.append(value_row(zipf_case, "ShardRouter(load_factor=1.25)", ratio, "x"))
    result.rows.append(value_row(zipf_case, "plain consistent hashing", plain_ratio, "x"))
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
    moved_case = "keys moved adding 1 node to 10"
    result.rows.append(value_row(moved_case, "ShardRouter", moved, "fraction"))
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
    result = SuiteResult("balancing", VALUE_COLUMNS)
    repeats = config.repeats
    _balancer(result, repeats)
    _simulation(result, config.quick)
    _router(result, repeats)
    result.notes.append(
        "x_vs_od = impl median time / overdrive median time (> 1: overdrive faster); "
        f"medians of {repeats} interleaved repeats; {os.cpu_count()} cores."
    )
    return result
