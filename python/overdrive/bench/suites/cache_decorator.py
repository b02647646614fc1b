"""The ``@cached`` hit path against the decorators users reach for.

Sync: overdrive's ``@cached`` (a private ``MemoryTier``: TTL-capable, counted,
thread-safe, single-flight on a miss) vs :func:`functools.lru_cache` (C,
no TTL, no stats beyond hits/misses), ``cachetools.cached`` over an
``LRUCache`` and a ``TTLCache`` (pure Python) and ``cachebox.cached`` over a
``LRUCache`` (Rust). Async: ``@cached`` on an ``async def`` vs
``cachebox.cached`` on the same and a hand-written dict memo (the naive way).

Every case times a loop of ``INNER`` calls with one argument whose result is
already cached (a pure hit path), the implementations interleaved in one
process. Rows give ns per call, loop included (the same for every row), and
each implementation's time divided by overdrive's (``x_vs_od`` > 1: overdrive
is faster). The goals: a sync hit <= 400 ns, an async hit (awaited inside a
running coroutine) <= 600 ns.

Not registered in ``SUITES``: the cache suite calls :func:`decorator_rows`.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

from ..compare import interleaved
from . import BenchConfig, Check, SuiteResult
from ._common import ratio_ci, value_row

__all__ = ["ASYNC_GOAL_NS", "SYNC_GOAL_NS", "decorator_rows"]

SYNC_GOAL_NS = 400.0
ASYNC_GOAL_NS = 600.0
INNER = 2000
ASYNC_INNER = 20_000  # amortizes run_until_complete's own cost (~50 us) to a few ns
ARG = 12345


def _fn(x: int) -> int:
    return x * 2


async def _afn(x: int) -> int:
    return x * 2


def _sync_loop(f: Callable[[int], Any]) -> Callable[[], None]:
    f(ARG)  # warm: the loop below only hits

    def call() -> None:
        for _ in range(INNER):
            f(ARG)

    return call


def _async_loop(
    loop: asyncio.AbstractEventLoop, f: Callable[[int], Awaitable[Any]]
) -> Callable[[], None]:
    async def warm() -> None:
        await f(ARG)

    async def body() -> None:
        for _ in range(ASYNC_INNER):
            await f(ARG)

    loop.run_until_complete(warm())

    def call() -> None:
        loop.run_until_complete(body())

    return call


def _dict_memo(fn: Callable[[int], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """The naive async memo: a dict, no TTL, no bound, no single-flight."""
    memo: dict[Any, int] = {}

    async def wrapper(*args: Any) -> int:
        try:
            return memo[args]
        except KeyError:
            value = await fn(*args)
            memo[args] = value
            return value

    return wrapper


def _sync_impls() -> dict[str, Callable[[], None]]:
    from ...cache import cached

    impls = {"overdrive @cached": _sync_loop(cached(ttl=3600)(_fn))}
    impls["functools.lru_cache"] = _sync_loop(functools.lru_cache(maxsize=10_000)(_fn))
    try:
        import cachetools

        impls["cachetools.cached(LRUCache)"] = _sync_loop(
            cachetools.cached(cachetools.LRUCache(maxsize=10_000))(_fn)
        )
        impls["cachetools.cached(TTLCache)"] = _sync_loop(
            cachetools.cached(cachetools.TTLCache(maxsize=10_000, ttl=3600))(_fn)
        )
    except ImportError:
        pass
    try:
        import cachebox

        impls["cachebox.cached(LRUCache)"] = _sync_loop(
            cachebox.cached(cachebox.LRUCache(10_000))(_fn)
        )
    except ImportError:
        pass
    return impls


def _async_impls(loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[], None]]:
    from ...cache import cached

    impls = {"overdrive @cached": _async_loop(loop, cached(ttl=3600)(_afn))}
    impls["dict memo (naive)"] = _async_loop(loop, _dict_memo(_afn))
    try:
        import cachebox

        impls["cachebox.cached(LRUCache)"] = _async_loop(
            loop, cachebox.cached(cachebox.LRUCache(10_000))(_afn)
        )
    except ImportError:
        pass
    return impls


def _add(
    result: SuiteResult, case: str, samples: dict[str, list[float]], inner: int, goal: float
) -> float:
    od = statistics.median(samples["overdrive @cached"])
    for impl, times in samples.items():
        med = statistics.median(times)
        ci = ratio_ci(times, samples["overdrive @cached"])
        result.rows.append(value_row(case, impl, med / inner * 1e9, "ns/call", med / od, ci))
    od_ns = od / inner * 1e9
    result.checks.append(Check(f"{case} hit", f"<= {goal:.0f} ns", od_ns, od_ns <= goal, unit="ns"))
    return od_ns


def decorator_rows(config: BenchConfig, result: SuiteResult) -> None:
    """Append the sync and async hit-path rows and their Checks to ``result``
    (whose columns are ``_common.VALUE_COLUMNS``)."""
    repeats = config.repeats
    s = interleaved(_sync_impls(), repeats=repeats, number=1 if config.quick else 3)
    _add(result, "@cached sync", s, INNER, SYNC_GOAL_NS)

    loop = asyncio.new_event_loop()
    try:
        a = interleaved(_async_impls(loop), repeats=repeats, number=1)
        _add(result, "@cached async", a, ASYNC_INNER, ASYNC_GOAL_NS)
    finally:
        loop.close()
    result.notes.append(
        "@cached rows: ns per hit in a loop of calls with one cached argument "
        "(loop overhead included alike); async rows await inside one running coroutine"
    )


def run(config: BenchConfig) -> SuiteResult:
    """Standalone run (``python -m overdrive.bench.suites.cache_decorator``)."""
    from ._common import VALUE_COLUMNS

    result = SuiteResult("cache_decorator", VALUE_COLUMNS)
    decorator_rows(config, result)
    return result


if __name__ == "__main__":  # pragma: no cover - manual runs
    import sys

    res = run(BenchConfig.make(quick="--quick" in sys.argv))
    for row in res.rows:
        print(f"{row['case']:<16} {row['impl']:<30} {row['value']:8.1f} ns  x{row['x_vs_od']:.2f}")
    for c in res.checks:
        verdict = "met" if c.met else "MISSED"
        print(f"CHECK {c.name}: {c.value:.1f} {c.unit} goal {c.goal} -> {verdict}")
