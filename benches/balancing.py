"""asv benchmarks for balancing: Balancer vs a Lock-guarded least-outstanding
picker in pure Python, ShardRouter vs a pure-Python md5 hash ring (WorkerPool:
benches/worker_pool.py)."""

from __future__ import annotations

from typing import ClassVar

import overdrive as od
from overdrive.bench.replica_sim import simulate

# The suite's naive baselines, so both measure the same code.
from overdrive.bench.suites.balancing import _PyLeastOutstanding, _PyRing


class BalancerPickRelease:
    """acquire() + release() on a Balancer, per strategy and backend count."""

    params = (["load_score", "least_outstanding", "p2c", "round_robin"], [4, 64])
    param_names: ClassVar[list[str]] = ["strategy", "backends"]

    def setup(self, strategy: str, backends: int) -> None:
        self.lb = od.Balancer(backends, strategy)

    def time_acquire_release(self, strategy: str, backends: int) -> None:
        acq, rel = self.lb.acquire, self.lb.release
        for _ in range(1000):
            rel(acq())

    def time_pick_context(self, strategy: str, backends: int) -> None:
        lb = self.lb
        for _ in range(1000):
            with lb.pick():
                pass


class NaivePickRelease:
    """The naive way: a Lock-guarded list of in-flight counts, min() per pick."""

    params = ([4, 64],)
    param_names: ClassVar[list[str]] = ["backends"]

    def setup(self, backends: int) -> None:
        self.lb = _PyLeastOutstanding(backends)

    def time_acquire_release(self, backends: int) -> None:
        acq, rel = self.lb.acquire, self.lb.release
        for _ in range(1000):
            rel(acq())


class ReplicaSimulation:
    """p99 response time (service-time units) of 16 replicas at rho=0.9."""

    params = (["load_score", "least_outstanding", "p2c", "round_robin"],)
    param_names: ClassVar[list[str]] = ["strategy"]
    timeout = 120

    def track_p99(self, strategy: str) -> float:
        return simulate(strategy, requests=200_000, warmup=20_000, seed=1).p99

    track_p99.unit = "service times"  # type: ignore[attr-defined]


class RouterRoute:
    """ShardRouter lookups and bounded routes over 10 nodes, and the same
    lookups on a pure-Python md5 ring (the naive way)."""

    def setup(self) -> None:
        nodes = [f"10.0.0.{i}:6379" for i in range(10)]
        self.router = od.ShardRouter(nodes)
        self.ring = _PyRing(nodes)
        self.keys = [f"user:{i}" for i in range(1000)]

    def time_lookup(self) -> None:
        lookup = self.router.lookup
        for k in self.keys:
            lookup(k)

    def time_python_md5_ring(self) -> None:
        route = self.ring.route
        for k in self.keys:
            route(k)

    def time_route_many(self) -> None:
        self.router.route_many(self.keys)
        self.router.reset_loads()

    def track_keys_moved_adding_one_of_ten(self) -> float:
        r = od.ShardRouter([f"10.0.0.{i}:6379" for i in range(10)])
        keys = [f"user:{i}" for i in range(20_000)]
        before = [r.lookup(k) for k in keys]
        r.add_node("10.0.0.10:6379")
        return sum(1 for k, b in zip(keys, before, strict=True) if r.lookup(k) != b) / len(keys)
