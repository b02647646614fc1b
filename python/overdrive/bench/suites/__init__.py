"""Benchmark suites run by ``overdrive bench``.

A suite is a module with ``run(config: BenchConfig) -> SuiteResult``. It times
overdrive against the naive way and the best peer *side by side in one
process, interleaved*, and states each performance goal as a :class:`Check`.
Suites are imported lazily so a missing peer library only affects its suite.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = ["SUITES", "BenchConfig", "Check", "SuiteResult", "load_suite"]

#: suite name -> module path. Add a line here to register a suite.
SUITES: dict[str, str] = {
    "compression": "overdrive.bench.suites.compression",
    # pools (BufferPool, ObjectPool)
    "pools": "overdrive.bench.suites.pools",
    # balancing (Balancer, replica simulation, ShardRouter)
    "balancing": "overdrive.bench.suites.balancing",
    # WorkerPool vs ThreadPoolExecutor
    "worker_pool": "overdrive.bench.suites.worker_pool",
    # batcher
    "batching": "overdrive.bench.suites.batching",
    # LatencyHistogram vs prometheus_client and hdrhistogram
    "telemetry": "overdrive.bench.suites.telemetry",
    # CircuitBreaker, ConcurrencyLimiter, RateLimiter
    "resilience": "overdrive.bench.suites.resilience",
    # caches: the L1 store (MemoryTier) vs cachebox, cachetools, functools.lru_cache, dict
    "cache": "overdrive.bench.suites.cache",
    # AI: the example embedding service, per-request MLP vs InferencePool + embedding cache
    "ai": "overdrive.bench.suites.ai",
}


@dataclass(frozen=True)
class BenchConfig:
    """How hard to try: ``quick`` trades precision for a run of about a minute."""

    quick: bool = False
    repeats: int = 15

    @classmethod
    def make(cls, quick: bool) -> BenchConfig:
        return cls(quick=quick, repeats=7 if quick else 21)


@dataclass(frozen=True)
class Check:
    """One performance goal and whether this run met it."""

    name: str
    goal: str
    value: float
    met: bool
    unit: str = "x"
    detail: str = ""


@dataclass
class SuiteResult:
    """Rows for the table (same keys as ``columns``) and the goals checked."""

    suite: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "columns": self.columns,
            "rows": self.rows,
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes,
        }


class SuiteModule(Protocol):
    def run(self, config: BenchConfig) -> SuiteResult: ...


def load_suite(name: str) -> SuiteModule:
    """Import the module of suite ``name`` (KeyError naming the known suites)."""
    try:
        path = SUITES[name]
    except KeyError:
        known = ", ".join(sorted(SUITES))
        raise KeyError(f"unknown suite {name!r}; known suites: {known}") from None
    module: SuiteModule = importlib.import_module(path)
    return module
