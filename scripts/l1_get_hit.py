"""Focused L1 get-hit probe: MemoryTier.get against cachebox, cachetools,
functools.lru_cache and dict.get on the cache suite's Zipf keys, in one
process, interleaved, medians of repeats (ns per get, loop included).

    python scripts/l1_get_hit.py [repeats] [--only NAME ...]

The same setup as ``overdrive bench --suite cache`` row (a): 1000 keys from
the suite's Zipf(1.0) trace over 100,000 keys, all cached beforehand, each
side's ``get`` bound once outside the loop. ``--loop NAME`` spins one side
for perf (``perf record -g python scripts/l1_get_hit.py --loop od``).
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import cachebox

from overdrive.bench.compare import interleaved
from overdrive.bench.suites.cache import CAPACITY, HIT_KEYS, TRACE_OPS, TTL, zipf_trace
from overdrive.cache import MemoryTier


def _identity(x: Any) -> Any:
    return x


def _loop(get: Callable[[Any], Any], keys: list[int]) -> Callable[[], None]:
    def call() -> None:
        for k in keys:
            get(k)

    return call


def _old_tier() -> Any:
    """MemoryTier from another build of ``_core`` (``OLD_CORE=path/to/_core.abi3.so``),
    loaded beside the installed one for an A/B in one process; None without it."""
    path = os.environ.get("OLD_CORE")
    if not path:
        return None
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("_core", path)
    spec = importlib.util.spec_from_file_location("_core", path, loader=loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod.MemoryTier


def sides() -> tuple[dict[str, Callable[[Any], Any]], list[int]]:
    """Each side's bound get, filled with the probe keys."""
    keys = zipf_trace(TRACE_OPS)[:HIT_KEYS]
    old = _old_tier()
    od = MemoryTier(max_entries=CAPACITY, ttl=TTL)
    od_lru = MemoryTier(max_entries=CAPACITY, policy="lru")
    cb = cachebox.LRUCache(CAPACITY)
    cb_ttl = cachebox.TTLCache(CAPACITY, TTL)
    cached = functools.lru_cache(maxsize=CAPACITY)(_identity)
    plain: dict[int, int] = {}
    for k in keys:
        od.set(k, k)
        od_lru.set(k, k)
        cb[k] = k
        cb_ttl[k] = k
        cached(k)
        plain[k] = k
    gets: dict[str, Callable[[Any], Any]] = {
        "od": od.get,
        "od_lru": od_lru.get,
        "cachebox.LRU": cb.get,
        "cachebox.TTL": cb_ttl.get,
        "lru_cache": cached,
        "dict.get": plain.get,
    }
    if old is not None:
        od_old = old(max_entries=CAPACITY, ttl=TTL)
        for k in keys:
            od_old.set(k, k)
        gets["od (OLD_CORE)"] = od_old.get
    for name, get in gets.items():
        assert all(get(k) is not None for k in keys), name
    return gets, keys


def main() -> None:
    argv = sys.argv[1:]
    gets, keys = sides()
    if argv and argv[0] == "--loop":
        fn = _loop(gets[argv[1]], keys)
        for _ in range(int(argv[2]) if len(argv) > 2 else 20000):
            fn()
        return
    repeats = int(argv[0]) if argv else 31
    s = interleaved({n: _loop(g, keys) for n, g in gets.items()}, repeats=repeats)
    med = {n: statistics.median(v) / len(keys) * 1e9 for n, v in s.items()}
    base = med["cachebox.LRU"]
    for n, m in med.items():
        print(f"{n:14s} {m:7.1f} ns/get  x{base / m:.2f} vs cachebox.LRU")
    od_stats = gets["od"].__self__.stats()  # type: ignore[attr-defined]
    print("od hits", od_stats["hits"])


if __name__ == "__main__":
    main()
