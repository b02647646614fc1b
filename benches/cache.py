"""asv benchmarks for the L1 cache (MemoryTier): get hit and set vs cachebox,
cachetools (with and without a Lock), functools.lru_cache and a dict; hit
ratio on a Zipf(1.0) trace over 100,000 keys at 10,000 entries; memory per
entry (RSS growth in a fresh process) and peak memory of 100,000 entries.
Every side binds its methods once, outside the loop; keys come from the
same fixed-seed Zipf trace as ``overdrive bench --suite cache``.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, ClassVar

import cachebox
import cachetools

from overdrive.bench.suites.cache import CAPACITY, TTL, bytes_per_entry, zipf_trace
from overdrive.cache import MemoryTier

KEYS = 1000


def _identity(x: Any) -> Any:
    return x


class GetHit:
    """Each method runs 1000 cache hits (divide by 1000 for ns/get)."""

    def setup(self) -> None:
        self.keys = zipf_trace(KEYS)
        self.od = MemoryTier(max_entries=CAPACITY, ttl=TTL)
        self.cb = cachebox.LRUCache(CAPACITY)
        self.ct = cachetools.TTLCache(CAPACITY, TTL)
        self.lock = threading.Lock()
        self.lru = functools.lru_cache(maxsize=CAPACITY)(_identity)
        self.dict: dict[int, int] = {}
        for k in self.keys:
            self.od[k] = k
            self.cb[k] = k
            self.ct[k] = k
            self.lru(k)
            self.dict[k] = k

    def time_memory_tier(self) -> None:
        get = self.od.get
        for k in self.keys:
            get(k)

    def time_cachebox_lru(self) -> None:
        get = self.cb.get
        for k in self.keys:
            get(k)

    def time_cachetools_ttl_locked(self) -> None:
        get, lock = self.ct.get, self.lock
        for k in self.keys:
            with lock:
                get(k)

    def time_cachetools_ttl(self) -> None:
        get = self.ct.get
        for k in self.keys:
            get(k)

    def time_lru_cache(self) -> None:
        f = self.lru
        for k in self.keys:
            f(k)

    def time_dict(self) -> None:
        get = self.dict.get
        for k in self.keys:
            get(k)


class SetFull:
    """1000 sets of trace keys into a cache already at capacity (evicting)."""

    params = (["tinylfu", "lru"],)
    param_names: ClassVar[list[str]] = ["policy"]

    def setup(self, policy: str) -> None:
        trace = zipf_trace(3 * CAPACITY)
        self.keys = trace[-KEYS:]
        self.od = MemoryTier(max_entries=CAPACITY, ttl=TTL, policy=policy)
        self.cb = cachebox.LRUCache(CAPACITY)
        for k in range(10**6, 10**6 + CAPACITY):
            self.od[k] = k
            self.cb[k] = k

    def time_memory_tier(self, policy: str) -> None:
        put = self.od.set
        for k in self.keys:
            put(k, k)

    def time_cachebox_lru(self, policy: str) -> None:
        put = self.cb.insert
        for k in self.keys:
            put(k, k)


class HitRatio:
    """Percent hits replaying 1,000,000 Zipf(1.0) requests over 100,000 keys
    with 10,000 entries; a miss inserts the key (goal: >= 78.5% for tinylfu)."""

    params = (["tinylfu", "lru"],)
    param_names: ClassVar[list[str]] = ["policy"]
    timeout = 120

    def setup(self, policy: str) -> None:
        self.trace = zipf_trace(1_000_000)

    def track_hit_ratio(self, policy: str) -> float:
        tier = MemoryTier(max_entries=CAPACITY, policy=policy)
        get, put = tier.get, tier.set
        hits = 0
        for k in self.trace:
            if get(k) is None:
                put(k, k)
            else:
                hits += 1
        return 100.0 * hits / len(self.trace)

    track_hit_ratio.unit = "%"  # type: ignore[attr-defined]


class MemoryPerEntry:
    """RSS grown per entry for 100,000 entries, in a fresh process (the Python
    keys and the shared value are not counted; goal: <= 100 B)."""

    params = (["MemoryTier (tinylfu)", "cachebox.LRUCache", "dict"],)
    param_names: ClassVar[list[str]] = ["impl"]
    timeout = 120

    def track_bytes_per_entry(self, impl: str) -> float:
        return bytes_per_entry(impl, 100_000)

    track_bytes_per_entry.unit = "bytes"  # type: ignore[attr-defined]


class PeakMemory:
    def setup(self) -> None:
        self.keys = list(range(10**9, 10**9 + 100_000))

    def peakmem_memory_tier_100k_entries(self) -> None:
        tier = MemoryTier(max_entries=100_000)
        put = tier.set
        for k in self.keys:
            put(k, None)
