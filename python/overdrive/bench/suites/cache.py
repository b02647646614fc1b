"""Cache suite: the L1 store (:class:`overdrive.cache.MemoryTier`) against the
caches a Python user would reach for.

- (a) get hit, ns: MemoryTier (W-TinyLFU, with a TTL, counters and its lock
  on) vs ``cachebox.LRUCache``, ``cachebox.TTLCache``, ``cachetools.TTLCache``
  under a ``threading.Lock`` (how a thread-safe user must call it) and
  without, the hit path of ``functools.lru_cache`` around an identity
  function, and a plain ``dict``. Every side's ``get`` is bound once outside
  the loop; the keys are a slice of the Zipf trace, all cached beforehand.
- (b) hit ratio on a Zipf(s=1.0) trace over 100,000 keys (numpy, fixed seed),
  10,000 entries of capacity, a miss inserts the key: MemoryTier tinylfu and
  lru, cachebox LRU, cachetools LRU and TTL, functools.lru_cache.
- (c) memory per entry: resident memory (RSS) grown by inserting N entries,
  each cache in a fresh interpreter, keys created and measured out before
  and one shared value, so only the container's own cost is left (tracemalloc
  cannot see Rust allocations, RSS sees everything).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

from overdrive.cache import MemoryTier

from ..compare import Comparison, interleaved
from . import BenchConfig, Check, SuiteResult
from ._common import VALUE_COLUMNS, add_rows, value_row

__all__ = ["MEMORY_IMPLS", "bytes_per_entry", "run", "zipf_trace"]

N_KEYS = 100_000
ZIPF_S = 1.0
CAPACITY = 10_000
SEED = 0xCAC4E
TRACE_OPS = 1_000_000
QUICK_PEER_OPS = 200_000  # quick mode: the slow pure-Python peers replay this prefix
HIT_KEYS = 1000  # keys per timed call in (a)
TTL = 3600.0
GOAL_HIT_RATIO = 78.5
GOAL_BYTES_PER_ENTRY = 100.0

OD = "MemoryTier (tinylfu, ttl)"
CACHEBOX = "cachebox.LRUCache"


def _peers() -> tuple[Any, Any]:
    try:
        import cachebox
        import cachetools
    except ImportError as e:  # pragma: no cover - bench extra missing
        raise RuntimeError(
            "the cache suite needs cachebox and cachetools: pip install 'overdrive[bench]'"
        ) from e
    return cachebox, cachetools


def zipf_trace(n_ops: int, n_keys: int = N_KEYS, s: float = ZIPF_S, seed: int = SEED) -> list[int]:
    """``n_ops`` int keys in ``range(n_keys)`` drawn from Zipf(``s``): the key
    of popularity rank ``r`` has probability proportional to ``1 / r**s``.
    Ranks map to keys through a fixed random permutation (a key's value says
    nothing about its popularity)."""
    try:
        import numpy as np
    except ImportError as e:  # pragma: no cover - bench extra missing
        raise RuntimeError("the cache suite needs numpy: pip install 'overdrive[bench]'") from e
    rng = np.random.default_rng(seed)
    weights = np.arange(1, n_keys + 1, dtype=np.float64) ** -s
    ids = rng.permutation(n_keys)
    ranks = rng.choice(n_keys, size=n_ops, p=weights / weights.sum())
    trace: list[int] = ids[ranks].tolist()
    return trace


def _identity(x: Any) -> Any:
    return x


# --- (a) get hit ------------------------------------------------------------------


def _get_loop(get: Callable[[Any], Any], keys: list[int]) -> Callable[[], None]:
    def call() -> None:
        for k in keys:
            get(k)

    return call


def _locked_get_loop(get: Callable[[Any], Any], keys: list[int]) -> Callable[[], None]:
    lock = threading.Lock()

    def call() -> None:
        for k in keys:
            with lock:
                get(k)

    return call


def _get_hit(result: SuiteResult, trace: list[int], repeats: int) -> None:
    cachebox, cachetools = _peers()
    keys = trace[:HIT_KEYS]  # Zipf-distributed: hot keys repeat, as in use
    od = MemoryTier(max_entries=CAPACITY, ttl=TTL)
    od_lru = MemoryTier(max_entries=CAPACITY, policy="lru")
    cb = cachebox.LRUCache(CAPACITY)
    cb_ttl = cachebox.TTLCache(CAPACITY, TTL)
    ct_locked = cachetools.TTLCache(CAPACITY, TTL)
    ct = cachetools.TTLCache(CAPACITY, TTL)
    cached_identity = functools.lru_cache(maxsize=CAPACITY)(_identity)
    plain: dict[int, int] = {}
    for k in keys:
        od.set(k, k)
        od_lru.set(k, k)
        cb[k] = k
        cb_ttl[k] = k
        ct_locked[k] = k
        ct[k] = k
        cached_identity(k)
        plain[k] = k
    gets: dict[str, Callable[[Any], Any]] = {
        OD: od.get,
        CACHEBOX: cb.get,
        "cachebox.TTLCache": cb_ttl.get,
        "cachetools.TTLCache + Lock": ct_locked.get,
        "cachetools.TTLCache (no lock)": ct.get,
        "functools.lru_cache hit": cached_identity,
        "dict.get": plain.get,
        "MemoryTier (lru, no ttl)": od_lru.get,
    }
    for name, get in gets.items():
        missing = sum(1 for k in keys if get(k) is None)
        if missing:
            result.notes.append(f"get hit: {name} missed {missing} of {len(keys)} keys")
    impls = {
        name: (_locked_get_loop if "Lock" in name else _get_loop)(get, keys)
        for name, get in gets.items()
    }
    s = interleaved(impls, repeats=repeats)
    case = "get hit (Zipf keys, all cached)"
    add_rows(result, case, s, OD, lambda m: m / len(keys) * 1e9, "ns/get")
    cmp = Comparison.from_samples(s[CACHEBOX], s[OD], len(keys))
    od_ns = statistics.median(s[OD]) / len(keys) * 1e9
    result.checks.append(
        Check(
            f"get hit vs {CACHEBOX}",
            "MemoryTier (TTL, stats, thread-safe) no slower (ratio >= 1)",
            cmp.ratio,
            cmp.ratio >= 1.0,
            detail=f"{od_ns:.0f} ns/get incl. loop; CI {cmp.ci_low:.2f}-{cmp.ci_high:.2f}, "
            f"p={cmp.p_value:.3g}",
        )
    )


# --- (b) hit ratio ---------------------------------------------------------------


def _replay(get: Callable[[Any], Any], put: Callable[[Any, Any], Any], trace: list[int]) -> int:
    """Hits over ``trace``; a miss inserts the key (as a read-through cache does)."""
    hits = 0
    for k in trace:
        if get(k) is None:
            put(k, k)
        else:
            hits += 1
    return hits


def _hit_ratios(trace: list[int], with_fast: bool, with_slow: bool) -> dict[str, float]:
    """Percent hits per cache (fast: Rust caches and lru_cache; slow: cachetools)."""
    cachebox, cachetools = _peers()
    out: dict[str, float] = {}
    n = len(trace)
    if with_fast:
        for policy in ("tinylfu", "lru"):
            tier = MemoryTier(max_entries=CAPACITY, policy=policy)
            hits = _replay(tier.get, tier.set, trace)
            if tier.stats()["hits"] != hits:  # pragma: no cover - a counting bug
                raise AssertionError(f"MemoryTier({policy}) counted {tier.stats()['hits']} hits")
            out[f"MemoryTier ({policy})"] = 100.0 * hits / n
        cb = cachebox.LRUCache(CAPACITY)
        out[CACHEBOX] = 100.0 * _replay(cb.get, cb.insert, trace) / n
        cached_identity = functools.lru_cache(maxsize=CAPACITY)(_identity)
        for k in trace:
            cached_identity(k)
        out["functools.lru_cache"] = 100.0 * cached_identity.cache_info().hits / n
    if with_slow:
        lru = cachetools.LRUCache(CAPACITY)
        out["cachetools.LRUCache"] = 100.0 * _replay(lru.get, lru.__setitem__, trace) / n
        ttl = cachetools.TTLCache(CAPACITY, TTL)
        out["cachetools.TTLCache"] = 100.0 * _replay(ttl.get, ttl.__setitem__, trace) / n
    return out


def _hit_ratio(result: SuiteResult, trace: list[int], quick: bool) -> None:
    case = f"hit ratio, Zipf {ZIPF_S:g}, {N_KEYS:,} keys, {CAPACITY:,} entries, {len(trace):,} ops"
    ratios = _hit_ratios(trace, with_fast=True, with_slow=not quick)
    for impl, pct in ratios.items():
        result.rows.append(value_row(case, impl, pct, "% hits"))
    if quick:
        prefix = trace[:QUICK_PEER_OPS]
        short = f"hit ratio, same trace, first {len(prefix):,} ops"
        for impl, pct in _hit_ratios(prefix, with_fast=True, with_slow=True).items():
            result.rows.append(value_row(short, impl, pct, "% hits"))
    od = ratios["MemoryTier (tinylfu)"]
    result.checks.append(
        Check(
            f"hit ratio, Zipf {ZIPF_S:g}, capacity 10% of keys",
            f">= {GOAL_HIT_RATIO}%",
            od,
            od >= GOAL_HIT_RATIO,
            unit="%",
            detail=f"LRU on the same trace: {ratios[CACHEBOX]:.2f}%",
        )
    )


# --- (c) memory per entry ----------------------------------------------------------

_MEMORY_SCRIPT = textwrap.dedent(
    """
    import gc, json, os, sys

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    impl, n = sys.argv[1], int(sys.argv[2])
    keys = list(range(10**9, 10**9 + n))  # made before measuring: not the cache's cost
    value = "v"  # one shared value
    if impl.startswith("MemoryTier"):
        from overdrive.cache import MemoryTier
        policy = "lru" if "lru" in impl else "tinylfu"
    elif impl.startswith("cachebox"):
        import cachebox
    gc.collect()
    gc.disable()
    before = rss()
    if impl.startswith("MemoryTier"):
        c = MemoryTier(max_entries=n, policy=policy)
        put = c.set
    elif impl == "cachebox.LRUCache":
        c = cachebox.LRUCache(n)
        put = c.insert
    else:
        c = {}
        put = c.__setitem__
    for k in keys:
        put(k, value)
    grown = rss() - before
    assert len(c) == n, (impl, len(c))
    print(json.dumps({"bytes_per_entry": grown / n}))
    """
)

MEMORY_IMPLS = ["MemoryTier (tinylfu)", "MemoryTier (lru)", CACHEBOX, "dict"]


def bytes_per_entry(impl: str, n: int) -> float:
    """RSS grown per entry when ``impl`` (one of :data:`MEMORY_IMPLS`) takes
    ``n`` entries, measured in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, impl, str(n)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if out.returncode != 0:
        raise RuntimeError(f"measuring {impl} failed:\n{out.stderr[-2000:]}")
    data: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return data["bytes_per_entry"]


def _memory(result: SuiteResult, quick: bool) -> None:
    sizes = [200_000] if quick else [100_000, 1_000_000]
    runs = 1 if quick else 3
    worst = 0.0
    for n in sizes:
        case = f"memory per entry, {n:,} entries (RSS growth / N)"
        per = {
            impl: statistics.median(bytes_per_entry(impl, n) for _ in range(runs))
            for impl in MEMORY_IMPLS
        }
        od = per["MemoryTier (tinylfu)"]
        worst = max(worst, od)
        for impl, b in per.items():
            result.rows.append(value_row(case, impl, b, "B/entry", b / od if od > 0 else ""))
    result.checks.append(
        Check(
            "memory per entry (Rust side, keys and values not counted)",
            f"<= {GOAL_BYTES_PER_ENTRY:.0f} B at every size measured",
            worst,
            worst <= GOAL_BYTES_PER_ENTRY,
            unit="B",
            detail=f"sizes {', '.join(f'{n:,}' for n in sizes)}; median of {runs} fresh processes",
        )
    )


def run(config: BenchConfig) -> SuiteResult:
    result = SuiteResult("cache", VALUE_COLUMNS)
    trace = zipf_trace(TRACE_OPS)
    _get_hit(result, trace, config.repeats)
    _hit_ratio(result, trace, config.quick)
    _memory(result, config.quick)
    result.notes.append(
        "get hit: x_vs_od = impl median time / MemoryTier's (> 1: MemoryTier faster); ns/get "
        f"includes a Python for-loop iteration; medians of {config.repeats} interleaved "
        f"repeats; MemoryTier(max_entries={CAPACITY:,}, ttl={TTL:g}) holds its lock and "
        "counts hits on every get."
    )
    result.notes.append(
        f"hit ratio: Zipf(s={ZIPF_S:g}) over {N_KEYS:,} keys, numpy seed {SEED:#x}, counted "
        f"over the whole trace from a cold start; capacity {CAPACITY:,} entries"
        + (
            f"; quick mode runs cachetools on the first {QUICK_PEER_OPS:,} ops only"
            if config.quick
            else ""
        )
        + "."
    )
    result.notes.append(
        "memory: x_vs_od = impl bytes / MemoryTier (tinylfu)'s; int keys made before "
        "measuring and one shared str value, so the Python objects themselves are not "
        f"counted; each cache bounded to N entries; {os.cpu_count()} cores."
    )
    return result
