"""asv benchmarks for balancing: Balancer, ShardRouter (WorkerPool: benches/worker_pool.py)."""

from __future__ import annotations

from typing import ClassVar

import overdrive as od
from overdrive.bench.replica_sim import simulate


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


class ReplicaSimulation:
    """p99 response time (service-time units) of 16 replicas at rho=0.9."""

    params = (["load_score", "least_outstanding", "p2c", "round_robin"],)
    param_names: ClassVar[list[str]] = ["strategy"]
    timeout = 120

    def track_p99(self, strategy: str) -> float:
        return simulate(strategy, requests=200_000, warmup=20_000, seed=1).p99

    track_p99.unit = "service times"  # type: ignore[attr-defined]


class RouterRoute:
    """ShardRouter lookups and bounded routes over 10 nodes."""

    def setup(self) -> None:
        self.router = od.ShardRouter([f"10.0.0.{i}:6379" for i in range(10)])
        self.keys = [f"user:{i}" for i in range(1000)]

    def time_lookup(self) -> None:
        lookup = self.router.lookup
        for k in self.keys:
            lookup(k)

    def time_route_many(self) -> None:
        self.router.route_many(self.keys)
        self.router.reset_loads()

    def track_keys_moved_adding_one_of_ten(self) -> float:
        r = od.ShardRouter([f"10.0.0.{i}:6379" for i in range(10)])
        keys = [f"user:{i}" for i in range(20_000)]
        before = [r.lookup(k) for k in keys]
        r.add_node("10.0.0.10:6379")
        return sum(1 for k, b in zip(keys, before, strict=True) if r.lookup(k) != b) / len(keys)
