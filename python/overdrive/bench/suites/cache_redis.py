"""Redis (L2) rows of the cache suite: what a get costs per key.

Side by side, interleaved, on one redis-server on 127.0.0.1 (started on a free
port unless a URL is given):

* ``RedisTier.get`` from N threads at once (coalesced into MGETs) and
  ``RedisTier.aget`` from N asyncio tasks, per key served;
* redis-py ``GET`` + decoding, one call per key (the naive way), from one
  thread and from N threads;
* one redis-py ``MGET`` of N keys + decoding (the floor coalescing aims at);
* a lone ``RedisTier.get`` (nobody to coalesce with) against a lone redis-py GET;
* ``RedisTier.get_many`` of the same keys from one caller (batching done by the
  caller: the MGET cost plus the tier's key encoding and decoding);
* floors with no Redis at all: the same threads handed a lock each by a leader,
  the same tasks woken by ``asyncio.Future.set_result`` and by one
  ``_settle`` callback per batch of ``BatchFuture``s (what ``aget`` uses).

A coalesced get pays one wake-up of its caller per key (a futex wake for a
thread, a task step for a coroutine) on top of its share of the MGET, so its
cost per key is at least the wake floor plus the MGET row: the goal's checks
print that sum beside the measured value.

Values are 100-byte msgpack entries written by the tier; every implementation
decodes them, so the rows compare like with like. ``x_vs_od`` is an
implementation's time per key divided by coalesced ``RedisTier.get``'s.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
from collections.abc import Callable
from typing import Any

from ..._core import BatchFuture, _settle
from .. import redis_server
from ..compare import interleaved
from . import BenchConfig, Check, SuiteResult
from ._common import ratio_ci, value_row

__all__ = ["GOAL_US_PER_KEY", "redis_rows"]

GOAL_US_PER_KEY = 2.0  # DESIGN.md: concurrent gets coalesced, <= 2 us/key
LONE_GOAL = 1.25  # a lone RedisTier.get may cost at most 1.25x a lone redis-py GET
N_KEYS = 256


class _Crew:
    """``n`` threads that each run ``body(i)`` once per round; ``__call__`` runs a round."""

    def __init__(self, n: int, body: Callable[[int], None]) -> None:
        self.n = n
        self.body = body
        self.start = threading.Barrier(n + 1)
        self.end = threading.Barrier(n + 1)
        self.stop = False
        self.threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(n)
        ]
        for t in self.threads:
            t.start()

    def _loop(self, i: int) -> None:
        while True:
            self.start.wait()
            if self.stop:
                return
            try:
                self.body(i)
            finally:
                self.end.wait()

    def __call__(self) -> None:
        self.start.wait()
        self.end.wait()

    def close(self) -> None:
        self.stop = True
        self.start.wait()
        for t in self.threads:
            t.join(10)


def redis_rows(config: BenchConfig, result: SuiteResult, url: str | None = None) -> None:
    """Append the Redis rows and checks to ``result`` (the cache suite's table:
    ``case, impl, value, unit, x_vs_od``). Starts a redis-server when ``url``
    is None; adds a note and no rows when Redis cannot be reached or started."""
    try:
        import redis

        from ...cache import RedisTier
    except ImportError:
        result.notes.append("redis rows skipped: redis-py is not installed (overdrive[bench])")
        return
    server = None
    if url is None:
        if redis_server.redis_server_binary() is None:
            result.notes.append("redis rows skipped: redis-server is not installed")
            return
        server = redis_server.RedisServer().start()
        url = server.url
    try:
        _run(config, result, url, redis, RedisTier)
    finally:
        if server is not None:
            server.stop()


def _floor_detail(wake: str, wake_us: float, mget_us: float, many_us: float) -> str:
    """What the goal check of a coalescing pattern prints beside its value:
    the least that pattern can cost per key here, and whether the goal is
    reachable with one wake-up per key at all."""
    least = wake_us + mget_us
    verdict = (
        "unreachable for one call per key here: the wake-up alone exceeds the goal"
        if wake_us > GOAL_US_PER_KEY
        else "reachable in principle"
        if least <= GOAL_US_PER_KEY
        else "unreachable here: wake-up + MGET exceed the goal"
    )
    return (
        f"floor {least:.2f} us/key = {wake} {wake_us:.2f} + MGET {mget_us:.2f} "
        f"({verdict}); get_many from one caller {many_us:.2f} us/key"
    )


def _handoff_floor(n: int, per_thread: int) -> Callable[[], None]:
    """No Redis: ``n`` threads that each block ``per_thread`` times until a
    leader releases them in a batch -- the least any thread coalescer pays per key."""
    pending: list[threading.Lock] = []
    guard = threading.Lock()
    ready = threading.Condition(guard)
    stop = [False]

    def lead() -> None:
        while not stop[0]:
            with ready:
                while not pending and not stop[0]:
                    ready.wait(0.05)
                batch = pending[:]
                pending.clear()
            for w in batch:
                w.release()

    def body(i: int) -> None:
        for _ in range(per_thread):
            w = threading.Lock()
            w.acquire()
            with ready:
                pending.append(w)
                ready.notify()
            w.acquire()

    leader = threading.Thread(target=lead, daemon=True)
    leader.start()
    crew = _Crew(n, body)

    def call() -> None:
        crew()

    def close() -> None:
        crew.close()
        stop[0] = True
        leader.join(10)

    call.close = close  # type: ignore[attr-defined]
    return call


def _run(config: BenchConfig, result: SuiteResult, url: str, redis: Any, tier_cls: Any) -> None:
    import redis.asyncio as aredis

    n_threads = 16 if config.quick else 32
    n_tasks = 256
    per_thread = 16 if config.quick else 32  # gets per thread per timed call
    per_task = 4
    repeats = max(5, config.repeats // 2) if config.quick else config.repeats
    tier = tier_cls(url, prefix="odbench:", ttl=600.0)
    client = redis.Redis.from_url(url)
    loads = tier._ser.loads
    keys = [f"k{i}" for i in range(N_KEYS)]
    names = [f"odbench:{k}".encode() for k in keys]
    tier.set_many({k: b"v" * 100 for k in keys})
    total = n_threads * per_thread
    total_tasks = n_tasks * per_task

    def od_body(i: int) -> None:
        get = tier.get
        for j in range(per_thread):
            get(keys[(i * per_thread + j) % N_KEYS])

    def get_body(i: int) -> None:
        get = client.get
        for j in range(per_thread):
            loads(get(names[(i * per_thread + j) % N_KEYS]))

    od_crew = _Crew(n_threads, od_body)
    get_crew = _Crew(n_threads, get_body)
    floor = _handoff_floor(n_threads, per_thread)
    loop = asyncio.new_event_loop()
    aclient = aredis.Redis.from_url(url, max_connections=n_tasks)

    async def od_tasks() -> None:
        async def one(i: int) -> None:
            for j in range(per_task):
                await tier.aget(keys[(i + j) % N_KEYS])

        await asyncio.gather(*(one(i) for i in range(n_tasks)))

    async def aio_gets() -> None:  # the naive async way: redis.asyncio GET per key
        async def one(i: int) -> None:
            for j in range(per_task):
                loads(await aclient.get(names[(i + j) % N_KEYS]))

        await asyncio.gather(*(one(i) for i in range(n_tasks)))

    async def batch_floor() -> None:  # no Redis: BatchFutures settled by one callback
        waiting: list[BatchFuture[None]] = []

        async def one() -> None:
            for _ in range(per_task):
                f: BatchFuture[None] = BatchFuture(loop=loop)
                waiting.append(f)
                await f

        async def release() -> None:
            while True:
                await asyncio.sleep(0)
                if waiting:
                    batch = waiting[:]
                    waiting.clear()
                    loop.call_soon(_settle, batch, [None] * len(batch))

        rel = asyncio.ensure_future(release())
        await asyncio.gather(*(one() for _ in range(n_tasks)))
        rel.cancel()

    async def task_floor() -> None:  # no Redis: tasks woken in one batch per round
        waiting: list[asyncio.Future[None]] = []

        async def one() -> None:
            for _ in range(per_task):
                f = loop.create_future()
                waiting.append(f)
                await f

        async def release() -> None:
            while True:
                await asyncio.sleep(0)
                batch = waiting[:]
                waiting.clear()
                for f in batch:
                    f.set_result(None)

        rel = asyncio.ensure_future(release())
        await asyncio.gather(*(one() for _ in range(n_tasks)))
        rel.cancel()

    def od_many() -> None:  # one caller batching its own keys
        get_many = tier.get_many
        for _ in range(total // N_KEYS):
            get_many(keys)

    def single_gets() -> None:  # one thread, one GET per key
        get = client.get
        for j in range(total):
            loads(get(names[j % N_KEYS]))

    def mget() -> None:  # the same keys, N_KEYS per MGET
        for _ in range(total // N_KEYS):
            for raw in client.mget(names):
                loads(raw)

    lone_n = 256

    def od_lone() -> None:
        get = tier.get
        for j in range(lone_n):
            get(keys[j])

    def redis_lone() -> None:
        get = client.get
        for j in range(lone_n):
            loads(get(names[j]))

    od_name = f"RedisTier.get, {n_threads} threads (coalesced)"
    aget_name = f"RedisTier.aget, {n_tasks} asyncio tasks (coalesced)"
    bf_floor_name = f"BatchFuture wake floor, {n_tasks} tasks (no Redis)"
    try:
        before = tier.stats()
        threads = interleaved(
            {
                od_name: od_crew,
                f"redis-py GET, {n_threads} threads": get_crew,
                f"lock handoff floor, {n_threads} threads (no Redis)": floor,
                "redis-py GET, 1 thread": single_gets,
                f"redis-py MGET of {N_KEYS} keys": mget,
                f"RedisTier.get_many of {N_KEYS} keys, 1 caller": od_many,
            },
            repeats=repeats,
            number=1,
            warmup=2,
        )
        tasks = interleaved(
            {
                aget_name: lambda: loop.run_until_complete(od_tasks()),
                f"redis.asyncio GET, {n_tasks} tasks": lambda: loop.run_until_complete(aio_gets()),
                f"asyncio wake floor, {n_tasks} tasks (no Redis)": lambda: loop.run_until_complete(
                    task_floor()
                ),
                bf_floor_name: lambda: loop.run_until_complete(batch_floor()),
            },
            repeats=repeats,
            number=1,
            warmup=2,
        )
        after = tier.stats()
        lone = interleaved(
            {"RedisTier.get, lone caller": od_lone, "redis-py GET, lone caller": redis_lone},
            repeats=repeats,
            number=1,
            warmup=2,
        )
    finally:
        od_crew.close()
        get_crew.close()
        floor.close()  # type: ignore[attr-defined]
        loop.run_until_complete(aclient.aclose())
        loop.close()
        tier.clear()
        tier.close()
        client.close()

    od_us = statistics.median(threads[od_name]) / total * 1e6
    case = f"L2 get, 100 B values, {n_threads} threads"
    for impl, times in threads.items():
        us = statistics.median(times) / total * 1e6
        ci = ratio_ci(times, threads[od_name])
        result.rows.append(value_row(case, impl, us, "us/key", us / od_us, ci))
    async_us = statistics.median(tasks[aget_name]) / total_tasks * 1e6
    case = f"L2 get, 100 B values, {n_tasks} asyncio tasks"
    for impl, times in tasks.items():
        us = statistics.median(times) / total_tasks * 1e6
        ci = ratio_ci(times, tasks[aget_name])
        result.rows.append(value_row(case, impl, us, "us/key", us / async_us, ci))
    lone_od = statistics.median(lone["RedisTier.get, lone caller"]) / lone_n * 1e6
    lone_rp = statistics.median(lone["redis-py GET, lone caller"]) / lone_n * 1e6
    result.rows.append(value_row("L2 get, lone caller", "RedisTier.get", lone_od, "us/key", 1.0))
    result.rows.append(
        value_row(
            "L2 get, lone caller",
            "redis-py GET",
            lone_rp,
            "us/key",
            lone_rp / lone_od,
            ratio_ci(lone["redis-py GET, lone caller"], lone["RedisTier.get, lone caller"]),
        )
    )

    mget_us = statistics.median(threads[f"redis-py MGET of {N_KEYS} keys"]) / total * 1e6
    single_us = statistics.median(threads["redis-py GET, 1 thread"]) / total * 1e6
    many_us = (
        statistics.median(threads[f"RedisTier.get_many of {N_KEYS} keys, 1 caller"]) / total * 1e6
    )
    floor_us = (
        statistics.median(threads[f"lock handoff floor, {n_threads} threads (no Redis)"])
        / total
        * 1e6
    )
    bf_us = statistics.median(tasks[bf_floor_name]) / total_tasks * 1e6
    result.checks.append(
        Check(
            f"L2 coalesced aget per key ({n_tasks} asyncio tasks)",
            f"<= {GOAL_US_PER_KEY:.0f} us/key",
            async_us,
            async_us <= GOAL_US_PER_KEY,
            unit="us",
            detail=_floor_detail("task wake (BatchFuture)", bf_us, mget_us, many_us)
            + f"; redis-py GET {single_us:.1f} us",
        )
    )
    result.checks.append(
        Check(
            f"L2 coalesced get per key ({n_threads} threads)",
            f"<= {GOAL_US_PER_KEY:.0f} us/key",
            od_us,
            od_us <= GOAL_US_PER_KEY,
            unit="us",
            detail=_floor_detail("thread handoff", floor_us, mget_us, many_us),
        )
    )
    result.checks.append(
        Check(
            f"L2 get_many per key ({N_KEYS} keys, one MGET)",
            f"<= {GOAL_US_PER_KEY:.0f} us/key",
            many_us,
            many_us <= GOAL_US_PER_KEY,
            unit="us",
            detail=f"MGET + decoding by hand {mget_us:.2f} us/key; redis-py GET {single_us:.1f} us",
        )
    )
    result.checks.append(
        Check(
            "L2 lone get vs redis-py GET",
            f"<= {LONE_GOAL}x its time",
            lone_od / lone_rp,
            lone_od / lone_rp <= LONE_GOAL,
        )
    )
    batches = after["coalesced_batches"] - before["coalesced_batches"]
    served = after["coalesced_keys"] - before["coalesced_keys"]
    result.notes.append(
        f"redis: {served} coalesced gets took {batches} round trips "
        f"({served / max(batches, 1):.1f} keys each); medians of {repeats} interleaved "
        "repeats; x_vs_od = time per key / the coalesced RedisTier row's of the same case; "
        "the floor rows run the same threads/tasks with no Redis at all."
    )
