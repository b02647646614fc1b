"""Resilience suite: CircuitBreaker closed-call overhead vs pybreaker and a bare
call, open-circuit rejection, concurrent calls (pybreaker holds its lock across
the call); ConcurrencyLimiter acquire+release vs a bare semaphore and
aiolimiter (asyncio); RateLimiter.try_acquire (GCRA) vs a Lock-guarded token
bucket written by hand, and the Redis GCRA round trip (vs a redis-py fixed
window by hand) when redis-server is installed.

Every case times the implementations interleaved in one process, each callable
running a loop of ``INNER`` operations with methods bound once outside the
loop; rows give ns per operation and each implementation's time divided by
overdrive's (``x_vs_od`` > 1 means overdrive is faster). Overheads are the
difference of medians against the bare call in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from ...exceptions import CircuitOpen
from ...resilience import CircuitBreaker, ConcurrencyLimiter, RateLimiter
from ..compare import interleaved
from . import BenchConfig, Check, SuiteResult
from ._common import ratio_ci

__all__ = ["TokenBucket", "run"]

COLUMNS = ["case", "impl", "ns/op", "x_vs_od", "ci_low", "ci_high"]
INNER = 1000
GOAL_CLOSED_NS = 300.0
GOAL_REJECT_NS = 500.0
GOAL_RATE_VS_BUCKET = 1.25
THREADS = 8
SLEEP_S = 0.02


def _target() -> int:
    return 1


class TokenBucket:
    """What a user writes by hand: a Lock-guarded token bucket (the honest peer)."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


def _loop(fn: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        for _ in range(INNER):
            fn()

    return call


def _calls(call: Callable[..., Any]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(INNER):
            call(_target)

    return run


def _rejections(call: Callable[..., Any], exc: type[BaseException]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(INNER):
            try:  # noqa: SIM105 - the try/except is what is timed (suppress() costs more)
                call(_target)
            except exc:
                pass

    return run


def _raise_floor() -> Callable[[], None]:
    """Raising and catching an exception one frame down: CPython's floor for any rejection."""

    def refuse() -> None:
        raise RuntimeError("refused", 1.0)

    def run() -> None:
        for _ in range(INNER):
            try:  # noqa: SIM105 - the try/except is what is timed (suppress() costs more)
                refuse()
            except RuntimeError:
                pass

    return run


def _rows(case: str, samples: dict[str, list[float]], per: int = INNER) -> list[dict[str, Any]]:
    od_med = statistics.median(samples["overdrive"])
    return [
        {
            "case": case,
            "impl": impl,
            "ns/op": statistics.median(times) / per * 1e9,
            "x_vs_od": statistics.median(times) / od_med,
            **ratio_ci(times, samples["overdrive"]),
        }
        for impl, times in samples.items()
    ]


def _ns(samples: dict[str, list[float]], key: str) -> float:
    return statistics.median(samples[key]) / INNER * 1e9


def _breaker_cases(result: SuiteResult, repeats: int) -> None:
    import pybreaker

    cb = CircuitBreaker("bench")
    pb = pybreaker.CircuitBreaker(name="bench")
    od_deco = cb(_target)
    pb_deco = pb(_target)
    s = interleaved(
        {
            "overdrive": _calls(cb.call),
            "bare call": _loop(_target),
            "overdrive (decorator)": _loop(od_deco),
            "pybreaker": _calls(pb.call),
            "pybreaker (decorator)": _loop(pb_deco),
        },
        repeats=repeats,
    )
    result.rows += _rows("closed call", s)
    bare = _ns(s, "bare call")
    over = _ns(s, "overdrive") - bare
    over_deco = _ns(s, "overdrive (decorator)") - bare
    over_pb = _ns(s, "pybreaker") - bare
    result.checks.append(
        Check(
            "breaker closed-call overhead (call)",
            f"<= {GOAL_CLOSED_NS:.0f} ns",
            over,
            over <= GOAL_CLOSED_NS,
            unit="ns",
            detail=f"decorator {over_deco:.0f} ns, pybreaker {over_pb:.0f} ns over a bare call",
        )
    )

    ob = CircuitBreaker("open")
    ob.force_open()
    pbo = pybreaker.CircuitBreaker(name="open")
    pbo.open()
    fb = CircuitBreaker("open-fallback", fallback=_target)
    fb.force_open()
    s = interleaved(
        {
            "overdrive": _rejections(ob.call, CircuitOpen),
            "overdrive (fallback=, no raise)": _calls(fb.call),
            "raise+catch RuntimeError (floor)": _raise_floor(),
            "pybreaker": _rejections(pbo.call, pybreaker.CircuitBreakerError),
        },
        repeats=repeats,
    )
    result.rows += _rows("open rejection", s)
    rej = _ns(s, "overdrive")
    floor = _ns(s, "raise+catch RuntimeError (floor)")
    result.checks.append(
        Check(
            "breaker open rejection (CircuitOpen raised and caught)",
            f"<= {GOAL_REJECT_NS:.0f} ns",
            rej,
            rej <= GOAL_REJECT_NS,
            unit="ns",
            detail=f"CPython floor (raise+catch a RuntimeError one frame down): {floor:.0f} ns",
        )
    )
    fb_ns = _ns(s, "overdrive (fallback=, no raise)")
    result.checks.append(
        Check(
            "breaker open rejection answered by fallback=",
            f"<= {GOAL_REJECT_NS:.0f} ns",
            fb_ns,
            fb_ns <= GOAL_REJECT_NS,
            unit="ns",
            detail="the fallback is a bare function returning 1",
        )
    )


def _parallel_wall(call: Callable[..., Any] | None) -> float:
    """Wall time of THREADS threads each making one SLEEP_S call at once."""
    barrier = threading.Barrier(THREADS + 1)

    def worker() -> None:
        barrier.wait()
        if call is None:
            time.sleep(SLEEP_S)
        else:
            call(time.sleep, SLEEP_S)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _concurrency_case(result: SuiteResult, repeats: int) -> None:
    import pybreaker

    cb = CircuitBreaker("par")
    pb = pybreaker.CircuitBreaker(name="par")
    samples: dict[str, list[float]] = {"overdrive": [], "bare call": [], "pybreaker": []}
    for _ in range(max(3, repeats // 3)):
        samples["overdrive"].append(_parallel_wall(cb.call))
        samples["bare call"].append(_parallel_wall(None))
        samples["pybreaker"].append(_parallel_wall(pb.call))
    for impl, times in samples.items():
        med = statistics.median(times)
        result.rows.append(
            {
                "case": f"{THREADS} threads x one {SLEEP_S * 1000:.0f} ms call (wall ms)",
                "impl": impl,
                "ns/op": med * 1e9,
                "x_vs_od": med / statistics.median(samples["overdrive"]),
                **ratio_ci(times, samples["overdrive"]),
            }
        )
    wall = statistics.median(samples["overdrive"])
    result.checks.append(
        Check(
            f"{THREADS} concurrent {SLEEP_S * 1000:.0f} ms calls through a closed breaker",
            "< 2 calls' time (never serialises)",
            wall / SLEEP_S,
            wall < 2 * SLEEP_S,
            unit="x call",
            detail=f"pybreaker {statistics.median(samples['pybreaker']) / SLEEP_S:.1f}x",
        )
    )


def _limiter_cases(result: SuiteResult, repeats: int) -> None:
    import aiolimiter

    lim = ConcurrencyLimiter(64, algorithm="fixed")
    aimd = ConcurrencyLimiter(64, algorithm="aimd", max_limit=1000)
    sem = threading.Semaphore(64)

    def od_sync() -> None:
        acquire = lim.acquire
        for _ in range(INNER):
            acquire().release()

    def od_aimd() -> None:
        acquire = aimd.acquire
        for _ in range(INNER):
            acquire().release()

    def bare_sem() -> None:
        acquire, release = sem.acquire, sem.release
        for _ in range(INNER):
            acquire()
            release()

    s = interleaved(
        {
            "overdrive": od_sync,
            "overdrive (aimd)": od_aimd,
            "threading.Semaphore": bare_sem,
        },
        repeats=repeats,
    )
    result.rows += _rows("limiter acquire+release (sync)", s)

    loop = asyncio.new_event_loop()
    alim = ConcurrencyLimiter(64, algorithm="fixed")
    asem = asyncio.Semaphore(64)
    al = aiolimiter.AsyncLimiter(1e12, 1.0)

    async def od_async() -> None:
        for _ in range(INNER):
            async with alim:
                pass

    async def od_async_permit() -> None:
        aacquire = alim.aacquire
        for _ in range(INNER):
            (await aacquire()).release()

    async def asem_loop() -> None:
        for _ in range(INNER):
            async with asem:
                pass

    async def al_loop() -> None:
        for _ in range(INNER):
            async with al:
                pass

    def on_loop(coro_fn: Callable[[], Any]) -> Callable[[], None]:
        return lambda: loop.run_until_complete(coro_fn())

    try:
        s = interleaved(
            {
                "overdrive": on_loop(od_async_permit),
                "overdrive (async with)": on_loop(od_async),
                "asyncio.Semaphore": on_loop(asem_loop),
                "aiolimiter.AsyncLimiter": on_loop(al_loop),
            },
            repeats=repeats,
        )
    finally:
        loop.close()
    result.rows += _rows("limiter acquire+release (asyncio)", s)
    od_ns, al_ns = _ns(s, "overdrive"), _ns(s, "aiolimiter.AsyncLimiter")
    result.checks.append(
        Check(
            "async limiter acquire+release vs aiolimiter",
            "<= 1.0x aiolimiter's time",
            al_ns / od_ns,
            od_ns <= al_ns,
            unit="x",
            detail=f"overdrive {od_ns:.0f} ns, aiolimiter {al_ns:.0f} ns",
        )
    )


def _rate_cases(result: SuiteResult, repeats: int) -> None:
    rl = RateLimiter(1e12, 1.0, burst=10**9)
    tb = TokenBucket(1e12, 1e9)
    keyed = RateLimiter(1e12, 1.0, burst=10**9)
    s = interleaved(
        {
            "overdrive": _loop(rl.try_acquire),
            "token bucket (Lock, by hand)": _loop(tb.try_acquire),
            "overdrive (key='user-1')": _loop(lambda: keyed.try_acquire("user-1")),
        },
        repeats=repeats,
    )
    result.rows += _rows("rate try_acquire (admitted)", s)
    od_ns, tb_ns = _ns(s, "overdrive"), _ns(s, "token bucket (Lock, by hand)")
    # The hand-written bucket has one key and no counters; GCRA per key with
    # stats should cost about the same.
    result.checks.append(
        Check(
            "RateLimiter.try_acquire vs a hand-written token bucket",
            f"<= {GOAL_RATE_VS_BUCKET}x its time",
            od_ns / tb_ns,
            od_ns <= GOAL_RATE_VS_BUCKET * tb_ns,
            unit="x time",
            detail=f"overdrive {od_ns:.0f} ns, token bucket {tb_ns:.0f} ns",
        )
    )


def _redis_cases(result: SuiteResult, repeats: int) -> None:
    from ..redis_server import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        result.notes.append("redis-server not installed: Redis rows skipped")
        return
    n = 200
    with RedisServer() as srv:
        rl = RateLimiter(1e9, 1.0, burst=10**8, redis=srv.url, name="bench")
        cb = CircuitBreaker("bench", redis=srv.url)
        try:
            local = CircuitBreaker("bench-local")

            def rl_loop() -> None:
                for _ in range(n):
                    rl.try_acquire("k")

            def cb_loop() -> None:
                call = cb.call
                for _ in range(n):
                    call(_target)

            def local_loop() -> None:
                call = local.call
                for _ in range(n):
                    call(_target)

            # What a user writes by hand with redis-py: a fixed-window counter,
            # INCR + EXPIRE in one pipelined round trip (cruder than GCRA: it
            # admits up to twice the rate across a window's edge).
            import redis

            client = redis.Redis.from_url(srv.url)

            def fixed_window_loop() -> None:
                pipeline = client.pipeline
                for _ in range(n):
                    pipe = pipeline(transaction=False)
                    pipe.incr("bench-window")
                    pipe.expire("bench-window", 1, nx=True)
                    pipe.execute()

            try:
                s = interleaved(
                    {
                        "overdrive": rl_loop,
                        "redis-py INCR+EXPIRE fixed window (by hand)": fixed_window_loop,
                        "breaker, Redis-shared (sync_s=0.1)": cb_loop,
                        "breaker, local": local_loop,
                    },
                    repeats=max(5, repeats // 2),
                )
            finally:
                client.close()
            for row in _rows("Redis GCRA try_acquire (one Lua round trip)", s, per=n):
                result.rows.append(row)
        finally:  # their Redis connections, before the server stops
            rl.close()
            cb.close()


def run(config: BenchConfig) -> SuiteResult:
    result = SuiteResult("resilience", COLUMNS)
    repeats = config.repeats
    _breaker_cases(result, repeats)
    _concurrency_case(result, repeats)
    _limiter_cases(result, repeats)
    _rate_cases(result, repeats)
    _redis_cases(result, repeats)
    result.notes.append(
        "x_vs_od = impl median time / overdrive median time (> 1: overdrive faster); "
        f"ns/op includes a Python for-loop iteration; medians of {repeats} interleaved "
        "repeats; overheads are differences of medians against the bare call in the same "
        "run. CircuitBreaker.call's closed lock-free path and its open-period rejection "
        "run in Rust (_BreakerCore); the rest of the breaker is Python."
    )
    return result
