"""asv benchmarks for the caches.

L1 (MemoryTier): get hit and set vs cachebox, cachetools (with and without a
Lock), functools.lru_cache and a dict; hit ratio on a Zipf(1.0) trace over
100,000 keys at 10,000 entries; memory per entry (RSS growth in a fresh
process) and peak memory of 100,000 entries. ``@cached`` hit path (sync and
async) vs functools.lru_cache, cachetools and cachebox decorators and a dict
memo. L3 (DiskTier) get hit and set vs diskcache. TieredCache (memory over
disk) get and get_or_set hits. Every side binds its methods once, outside the
loop; keys come from the same fixed-seed Zipf trace as ``overdrive bench
--suite cache``. The Redis tier needs a server: ``overdrive bench --suite
cache`` starts one and measures it; asv does not.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar

import cachebox
import cachetools
import diskcache

from overdrive.bench.suites.cache import CAPACITY, TTL, bytes_per_entry, zipf_trace
from overdrive.cache import DiskTier, MemoryTier, TieredCache, cached

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


def _double(x: int) -> int:
    return x * 2


async def _adouble(x: int) -> int:
    return x * 2


class DecoratorHit:
    """1000 calls of a decorated function whose result is cached (sync)."""

    def setup(self) -> None:
        self.impls = {
            "overdrive": cached(ttl=3600)(_double),
            "lru_cache": functools.lru_cache(maxsize=10_000)(_double),
            "cachetools": cachetools.cached(cachetools.TTLCache(10_000, 3600))(_double),
            "cachebox": cachebox.cached(cachebox.LRUCache(10_000))(_double),
        }
        for f in self.impls.values():
            f(7)

    def _calls(self, impl: str) -> None:
        f = self.impls[impl]
        for _ in range(1000):
            f(7)

    def time_overdrive_cached(self) -> None:
        self._calls("overdrive")

    def time_lru_cache(self) -> None:
        self._calls("lru_cache")

    def time_cachetools_cached_ttl(self) -> None:
        self._calls("cachetools")

    def time_cachebox_cached(self) -> None:
        self._calls("cachebox")


def _dict_memo() -> Any:
    memo: dict[int, int] = {}

    async def wrapper(x: int) -> int:
        try:
            return memo[x]
        except KeyError:
            memo[x] = value = await _adouble(x)
            return value

    return wrapper


class DecoratorHitAsync:
    """1000 awaited calls of a cached ``async def`` inside one coroutine."""

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.impls = {
            "overdrive": cached(ttl=3600)(_adouble),
            "dict_memo": _dict_memo(),
            "cachebox": cachebox.cached(cachebox.LRUCache(10_000))(_adouble),
        }
        for f in self.impls.values():
            self.loop.run_until_complete(f(7))

    def teardown(self) -> None:
        self.loop.close()

    def _calls(self, impl: str) -> None:
        f = self.impls[impl]

        async def body() -> None:
            for _ in range(1000):
                await f(7)

        self.loop.run_until_complete(body())

    def time_overdrive_cached(self) -> None:
        self._calls("overdrive")

    def time_dict_memo(self) -> None:
        self._calls("dict_memo")

    def time_cachebox_cached(self) -> None:
        self._calls("cachebox")


DISK_KEYS = [f"user:{i:06d}:profile" for i in range(500)]
DISK_VALUE = bytes(range(256)) * 4  # 1 KiB


class Disk:
    """L3: 500 get hits / 500 sets of 1 KiB values, DiskTier vs diskcache
    (DiskTier's sets end with flush(), so its write-behind commit is timed)."""

    def setup(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="overdrive-asv-disk-")
        self.tier = DiskTier(Path(self.tmp) / "od.db")
        self.dc = diskcache.Cache(str(Path(self.tmp) / "dc"))
        for k in DISK_KEYS:
            self.tier.set(k, DISK_VALUE)
            self.dc.set(k, DISK_VALUE)
        self.tier.flush()

    def teardown(self) -> None:
        self.tier.close()
        self.dc.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_disk_tier_get(self) -> None:
        get = self.tier.get
        for k in DISK_KEYS:
            get(k)

    def time_diskcache_get(self) -> None:
        get = self.dc.get
        for k in DISK_KEYS:
            get(k)

    def time_disk_tier_set_flushed(self) -> None:
        put = self.tier.set
        for k in DISK_KEYS:
            put(k, DISK_VALUE)
        self.tier.flush()

    def time_diskcache_set(self) -> None:
        put = self.dc.set
        for k in DISK_KEYS:
            put(k, DISK_VALUE)


class Tiered:
    """TieredCache(MemoryTier over DiskTier): 500 get hits from L1, 500
    get_or_set hits, and 500 reads that hit only the disk tier (no promotion)."""

    def setup(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="overdrive-asv-tiered-")
        self.cache = TieredCache(
            [MemoryTier(max_entries=CAPACITY), DiskTier(Path(self.tmp) / "l2.db")]
        )
        self.disk_only = TieredCache(
            [MemoryTier(max_entries=CAPACITY), DiskTier(Path(self.tmp) / "l3.db")],
            write=["none", "through"],
            promote=False,
        )
        for k in DISK_KEYS:
            self.cache.set(k, DISK_VALUE)
            self.disk_only.set(k, DISK_VALUE)
        self.cache.flush()
        self.disk_only.flush()

    def teardown(self) -> None:
        self.cache.close()
        self.disk_only.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_get_l1_hit(self) -> None:
        get = self.cache.get
        for k in DISK_KEYS:
            get(k)

    def time_get_or_set_hit(self) -> None:
        get_or_set = self.cache.get_or_set
        for k in DISK_KEYS:
            get_or_set(k, bytes)

    def time_get_disk_hit(self) -> None:
        get = self.disk_only.get
        for k in DISK_KEYS:
            get(k)
