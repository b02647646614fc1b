"""ConcurrencyLimiter (never over its limit, queueing, CoDel, AIMD/Gradient2) and
the in-process RateLimiter (GCRA checked against exact arithmetic)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overdrive.exceptions import (
    ConfigurationError,
    InputTypeError,
    LimitExceeded,
    ReleasedError,
)
from overdrive.resilience import ConcurrencyLimiter, RateLimiter


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("algorithm", ["fixed", "aimd", "gradient2"])
def test_never_exceeds_limit_under_16_threads(algorithm: str) -> None:
    lim = ConcurrencyLimiter(4, max_limit=6, algorithm=algorithm, queue_timeout_s=10.0)
    lock = threading.Lock()
    now = [0]
    peak = [0]
    errors: list[BaseException] = []

    @lim
    def work(i: int) -> int:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
            assert now[0] <= lim.limit + 1  # the limit may have just shrunk by one
        time.sleep(0.001)
        with lock:
            now[0] -= 1
        if i % 7 == 0:
            raise ValueError("fails sometimes")  # AIMD backs off
        return i

    def thread() -> None:
        for i in range(40):
            try:
                work(i)
            except ValueError:
                pass
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

    threads = [threading.Thread(target=thread) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    s = lim.stats()
    assert peak[0] <= 6 and s["peak_inflight"] <= 6  # max_limit
    assert s["inflight"] == 0 and s["queued"] == 0
    assert s["acquired"] == 16 * 40
    if algorithm == "fixed":
        assert peak[0] <= 4 and s["limit"] == 4


def test_fixed_limit_exact_under_threads() -> None:
    lim = ConcurrencyLimiter(3, algorithm="fixed", queue_timeout_s=10.0)
    inside = [0]
    peak = [0]
    lock = threading.Lock()

    def thread() -> None:
        for _ in range(30):
            with lim:
                with lock:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                time.sleep(0.0005)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=thread) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert peak[0] == 3
    assert lim.stats()["acquired"] == 16 * 30


def test_never_exceeds_limit_with_async_tasks() -> None:
    lim = ConcurrencyLimiter(5, algorithm="fixed", queue_timeout_s=10.0)
    inside = [0]
    peak = [0]

    @lim
    async def work() -> None:
        inside[0] += 1
        peak[0] = max(peak[0], inside[0])
        await asyncio.sleep(0.001)
        inside[0] -= 1

    async def task() -> None:
        for _ in range(10):
            await work()
            async with lim:
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(task() for _ in range(32)))

    asyncio.run(main())
    assert peak[0] == 5
    s = lim.stats()
    assert s["acquired"] == 32 * 20 and s["inflight"] == 0


def test_queue_timeout_queue_full_and_no_wait() -> None:
    lim = ConcurrencyLimiter(1, algorithm="fixed", queue_timeout_s=0.05, max_queue=1)
    held = lim.acquire()
    with pytest.raises(LimitExceeded, match="no wait"):
        lim.acquire(timeout=0)
    t0 = time.monotonic()
    with pytest.raises(LimitExceeded, match="timed out"):
        lim.acquire()
    assert time.monotonic() - t0 >= 0.04
    # one waiter fills the queue: the next caller is refused at once
    started = threading.Event()
    got: list[Any] = []

    def waiter() -> None:
        started.set()
        got.append(lim.acquire(timeout=5))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait()
    while lim.stats()["queued"] == 0:
        time.sleep(0.001)
    with pytest.raises(LimitExceeded, match="queue full"):
        lim.acquire(timeout=1)
    held.release()  # handed straight to the waiter
    t.join(5)
    assert len(got) == 1
    got[0].release()
    with pytest.raises(ReleasedError):
        got[0].release()
    s = lim.stats()
    assert (s["rejected"], s["timeouts"], s["acquired"], s["inflight"]) == (2, 1, 2, 0)


def test_async_waiters_are_served_fifo_and_time_out() -> None:
    lim = ConcurrencyLimiter(1, algorithm="fixed", queue_timeout_s=5.0)
    order: list[int] = []

    async def main() -> None:
        held = await lim.aacquire()

        async def waiter(i: int) -> None:
            p = await lim.aacquire()
            order.append(i)
            p.release()

        tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
        await asyncio.sleep(0.01)
        with pytest.raises(LimitExceeded, match="timed out"):
            await lim.aacquire(timeout=0.01)
        held.release()
        await asyncio.gather(*tasks)
        # a cancelled waiter leaves no slot behind
        held = await lim.aacquire()
        t = asyncio.create_task(lim.aacquire())
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        held.release()
        p = await lim.aacquire(timeout=1)
        p.release()

    asyncio.run(main())
    assert order == [0, 1, 2, 3, 4]
    assert lim.stats()["inflight"] == 0 and lim.stats()["queued"] == 0


def test_codel_sheds_stale_waiters() -> None:
    lim = ConcurrencyLimiter(
        1, algorithm="fixed", queue_timeout_s=5.0, codel_target_s=0.005, codel_interval_s=0.01
    )
    outcomes: list[str] = []

    async def main() -> None:
        held = await lim.aacquire()

        async def waiter() -> None:
            try:
                async with lim:
                    outcomes.append("served")
                    await asyncio.sleep(0.03)
            except LimitExceeded as e:
                outcomes.append("shed" if "shed" in str(e) else str(e))

        tasks = [asyncio.create_task(waiter()) for _ in range(5)]
        await asyncio.sleep(0.05)  # every waiter is now far over the 5 ms target
        held.release()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert outcomes[0] == "served"
    assert "shed" in outcomes
    assert lim.stats()["shed"] == outcomes.count("shed")


def test_aimd_grows_when_saturated_and_backs_off_on_failure() -> None:
    lim = ConcurrencyLimiter(2, min_limit=1, max_limit=10, algorithm="aimd")
    for _ in range(5):
        permits = [lim.acquire(timeout=0) for _ in range(lim.limit)]
        for p in permits:
            p.release()
    assert lim.limit == 10  # saturated successes: +1 each
    for _ in range(3):
        p = lim.acquire(timeout=0)
        p.release(ok=False)
    assert lim.limit == math.floor(10 * 0.9**3)
    app_limited = ConcurrencyLimiter(10, algorithm="aimd")
    for _ in range(20):
        with app_limited.acquire():
            pass
    assert app_limited.limit == 10  # one at a time says nothing about capacity


def test_gradient2_shrinks_when_latency_grows() -> None:
    clock = Clock()
    lim = ConcurrencyLimiter(20, min_limit=2, max_limit=100, algorithm="gradient2", clock=clock)

    def round_(rtt: float) -> None:
        permits = [lim.acquire(timeout=0) for _ in range(lim.limit)]
        clock.t += rtt
        for p in permits:
            p.release()

    for _ in range(30):
        round_(0.01)
    before = lim.limit
    assert before >= 20  # steady latency: grows by the queue allowance
    for _ in range(3):
        round_(0.1)
    assert lim.limit < before / 2  # then, as the long-term average catches up, it regrows


def test_drop_latency_counts_as_failure() -> None:
    clock = Clock()
    lim = ConcurrencyLimiter(10, algorithm="aimd", drop_latency_s=1.0, clock=clock)
    p = lim.acquire()
    clock.t += 2.0
    p.release()
    assert lim.limit == 9 and lim.stats()["failed"] == 1


@pytest.mark.parametrize(
    ("kwargs", "exc", "names"),
    [
        ({"limit": 0}, ConfigurationError, "limit"),
        ({"limit": 2000}, ConfigurationError, "limit"),
        ({"limit": 1.5}, InputTypeError, "limit"),
        ({"min_limit": 5, "limit": 2}, ConfigurationError, "limit"),
        ({"max_limit": 0}, ConfigurationError, "max_limit"),
        ({"algorithm": "vegas"}, ConfigurationError, "algorithm"),
        ({"algorithm": None}, InputTypeError, "algorithm"),
        ({"queue_timeout_s": -1}, ConfigurationError, "queue_timeout_s"),
        ({"max_queue": -1}, ConfigurationError, "max_queue"),
        ({"codel_target_s": 0}, ConfigurationError, "codel_target_s"),
        ({"backoff": 1.0}, ConfigurationError, "backoff"),
        ({"clock": "now"}, InputTypeError, "clock"),
    ],
)
def test_limiter_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], names: str) -> None:
    with pytest.raises(exc, match=names):
        ConcurrencyLimiter(**kwargs)


def test_limiter_bad_timeout() -> None:
    lim = ConcurrencyLimiter(1)
    with pytest.raises(ConfigurationError, match="timeout"):
        lim.acquire(timeout=-1)
    with pytest.raises(InputTypeError, match="timeout"):
        lim.acquire(timeout="1")  # type: ignore[arg-type]


# --------------------------------------------------------------------- rate


def _gcra_exact(
    events: list[tuple[Fraction, str, int]], interval: Fraction, burst: int
) -> list[bool]:
    """GCRA in exact arithmetic: the specification."""
    tat: dict[str, Fraction] = {}
    out = []
    for now, key, cost in events:
        t = max(tat.get(key, now), now)
        new = t + cost * interval
        if new - burst * interval <= now:
            tat[key] = new
            out.append(True)
        else:
            out.append(False)
    return out


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(1, 50),
    per=st.sampled_from([Fraction(1), Fraction(2), Fraction(1, 2)]),
    burst=st.integers(1, 10),
    steps=st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(["a", "b"]), st.integers(1, 3)),
        max_size=80,
    ),
)
def test_gcra_matches_exact_arithmetic(
    rate: int, per: Fraction, burst: int, steps: list[tuple[int, str, int]]
) -> None:
    interval = per / rate
    # times on a grid of interval/8 (exact in binary) plus a third of it (inexact)
    events = []
    now = Fraction(0)
    for dt, key, cost in steps:
        now += dt * interval / 8 + (interval / 3 if dt % 5 == 4 else 0)
        events.append((now, key, min(cost, burst)))
    expected = _gcra_exact(events, interval, burst)
    clock = Clock()
    rl = RateLimiter(rate, float(per), burst=burst, clock=clock)
    got = []
    for t, key, cost in events:
        clock.t = float(t)
        got.append(rl.try_acquire(key, cost=cost))
    assert got == expected
    s = rl.stats()
    assert s["admitted"] == sum(expected) and s["rejected"] == len(expected) - sum(expected)


@settings(max_examples=100, deadline=None)
@given(
    rate=st.integers(1, 1000),
    per=st.sampled_from([1.0, 0.5, 10.0]),
    burst=st.integers(1, 20),
    m=st.integers(0, 200),
    probes=st.lists(st.floats(0.0, 1.0), max_size=30),
)
def test_gcra_admits_exactly_the_rate_over_a_window(
    rate: int, per: float, burst: int, m: int, probes: list[float]
) -> None:
    """Greedy demand (at least once per interval T) from idle over a window
    W = (m + 1/2) * T gets exactly burst + m."""
    interval = per / rate
    window = (m + 0.5) * interval
    clock = Clock(50.0)
    rl = RateLimiter(rate, per, burst=burst, clock=clock)
    admitted = 0
    times = [k * interval for k in range(m + 1)] + [f * window for f in probes] + [window]
    for t in sorted(times):
        clock.t = 50.0 + t
        while rl.try_acquire():
            admitted += 1
    assert admitted == burst + m


def test_acquire_waits_and_times_out() -> None:
    rl = RateLimiter(5, 1.0, burst=1)
    t0 = time.monotonic()
    assert rl.try_acquire()
    rl.acquire(timeout=2.0)  # waits for the next slot, 200 ms after the first
    assert time.monotonic() - t0 >= 0.19
    with pytest.raises(LimitExceeded) as ei:
        rl.acquire(timeout=0.001)
    assert ei.value.retry_after is not None and ei.value.retry_after > 0.001

    async def main() -> None:
        await rl.aacquire(timeout=2.0)
        with pytest.raises(LimitExceeded):
            await rl.aacquire(timeout=0.0)

    asyncio.run(main())


def test_rate_keys_are_independent_and_reset() -> None:
    clock = Clock()
    rl = RateLimiter(2, 1.0, clock=clock)
    assert [rl.try_acquire("a") for _ in range(3)] == [True, True, False]
    assert rl.try_acquire("b")
    assert rl.retry_after("a") == pytest.approx(0.5)
    rl.reset("a")
    assert rl.try_acquire("a")
    assert rl.stats()["keys"] == 2


def test_rate_limiter_threads_admit_exactly_burst() -> None:
    clock = Clock()
    rl = RateLimiter(100, 1.0, burst=100, clock=clock)
    got = []
    lock = threading.Lock()

    def worker() -> None:
        n = sum(rl.try_acquire() for _ in range(50))
        with lock:
            got.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(got) == 100


@pytest.mark.parametrize(
    ("kwargs", "exc", "names"),
    [
        ({"rate": 0}, ConfigurationError, "rate"),
        ({"rate": -5}, ConfigurationError, "rate"),
        ({"rate": "fast"}, InputTypeError, "rate"),
        ({"per": 0}, ConfigurationError, "per"),
        ({"per": float("inf")}, ConfigurationError, "per"),
        ({"burst": 0}, ConfigurationError, "burst"),
        ({"burst": 1.5}, InputTypeError, "burst"),
        ({"clock": 1}, InputTypeError, "clock"),
        ({"fail_open": 1}, InputTypeError, "fail_open"),
        ({"redis": 3.0}, InputTypeError, "redis"),
    ],
)
def test_rate_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], names: str) -> None:
    with pytest.raises(exc, match=names):
        RateLimiter(**kwargs)


def test_rate_bad_cost_and_timeout() -> None:
    rl = RateLimiter(10, burst=5)
    with pytest.raises(ConfigurationError, match="cost"):
        rl.try_acquire(cost=6)  # more than burst: never admissible
    with pytest.raises(ConfigurationError, match="cost"):
        rl.try_acquire(cost=0)
    with pytest.raises(InputTypeError, match="cost"):
        rl.try_acquire(cost="2")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout"):
        rl.acquire(timeout=-1)


def test_counts_add_up_under_contention_with_timeouts() -> None:
    lim = ConcurrencyLimiter(2, algorithm="aimd", max_limit=3, queue_timeout_s=0.002, max_queue=4)
    attempts = 16 * 50
    done = [0]
    refused = [0]
    lock = threading.Lock()

    def thread() -> None:
        for _ in range(50):
            try:
                with lim.acquire():
                    time.sleep(0.0002)
                with lock:
                    done[0] += 1
            except LimitExceeded:
                with lock:
                    refused[0] += 1

    threads = [threading.Thread(target=thread) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    s = lim.stats()
    assert done[0] + refused[0] == attempts
    assert s["acquired"] == done[0]
    assert s["rejected"] + s["timeouts"] + s["shed"] == refused[0]
    assert s["inflight"] == 0 and s["queued"] == 0 and s["peak_inflight"] <= 3


def test_waiter_on_a_closed_loop_gives_its_slot_back() -> None:
    lim = ConcurrencyLimiter(1, algorithm="fixed", queue_timeout_s=5.0)
    held = lim.acquire()
    loop = asyncio.new_event_loop()
    task = loop.create_task(lim.aacquire())
    loop.run_until_complete(asyncio.sleep(0.01))  # the task is queued
    assert lim.stats()["queued"] == 1
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    assert lim.stats()["queued"] == 0
    # a waiter whose loop closed without cancelling it
    loop2 = asyncio.new_event_loop()
    orphan = loop2.create_task(lim.aacquire())
    loop2.run_until_complete(asyncio.sleep(0.01))
    loop2.close()
    loop.close()
    assert not orphan.done()
    orphan.get_coro().close()  # what collecting it would do: nothing is left queued
    orphan._log_destroy_pending = False  # type: ignore[attr-defined]  # its loop is gone
    assert lim.stats()["queued"] == 0
    held.release()  # the dead waiter is skipped, the slot stays free
    assert lim.stats()["inflight"] == 0
    lim.acquire(timeout=0).release()


def test_limiter_and_rate_stats_are_numbers_with_a_name() -> None:
    for s in (ConcurrencyLimiter(name="c").stats(), RateLimiter(name="r").stats()):
        assert isinstance(s["name"], str) and s["name"] in ("c", "r")
        for k, v in s.items():
            if k not in ("name", "algorithm"):
                assert isinstance(v, int | float) and not isinstance(v, bool), k


def test_permit_context_manager_reports_failure() -> None:
    lim = ConcurrencyLimiter(10, algorithm="aimd")
    with pytest.raises(KeyError), lim.acquire():
        raise KeyError("x")
    assert lim.limit == 9 and lim.stats()["failed"] == 1


def test_an_unhashable_key_is_an_input_type_error_naming_it() -> None:
    from overdrive.exceptions import InputTypeError

    rl = RateLimiter(10.0)
    for call in (rl.try_acquire, rl.retry_after, rl.reset):
        with pytest.raises(InputTypeError, match="key must be hashable, got list"):
            call([1])
    assert rl.try_acquire("ok")  # the limiter is still usable
