"""asv benchmarks for overdrive.resilience: CircuitBreaker closed call vs
pybreaker and a bare call, open rejection; ConcurrencyLimiter acquire+release
vs threading.Semaphore (sync) and aiolimiter / asyncio.Semaphore (asyncio);
RateLimiter.try_acquire vs a hand-written token bucket. Each method runs CALLS
operations (divide by 1000 for ns/op); methods are bound once outside the loop.
"""

from __future__ import annotations

import asyncio
import threading

import aiolimiter
import pybreaker

from overdrive.bench.suites.resilience import TokenBucket
from overdrive.exceptions import CircuitOpen
from overdrive.resilience import CircuitBreaker, ConcurrencyLimiter, RateLimiter

CALLS = 1000


def _target() -> int:
    return 1


class BreakerClosedCall:
    """Closed-call cost: overdrive, pybreaker and the bare call."""

    def setup(self) -> None:
        self.cb = CircuitBreaker("asv")
        self.pb = pybreaker.CircuitBreaker(name="asv")
        self.deco = self.cb(_target)

    def time_bare(self) -> None:
        for _ in range(CALLS):
            _target()

    def time_overdrive(self) -> None:
        call = self.cb.call
        for _ in range(CALLS):
            call(_target)

    def time_overdrive_decorator(self) -> None:
        deco = self.deco
        for _ in range(CALLS):
            deco()

    def time_pybreaker(self) -> None:
        call = self.pb.call
        for _ in range(CALLS):
            call(_target)


class BreakerOpenRejection:
    """Refusing a call while open (CircuitOpen raised and caught)."""

    def setup(self) -> None:
        self.cb = CircuitBreaker("asv-open")
        self.cb.force_open()
        self.pb = pybreaker.CircuitBreaker(name="asv-open")
        self.pb.open()
        self.fb = CircuitBreaker("asv-fallback", fallback=_target)
        self.fb.force_open()

    def time_overdrive_fallback(self) -> None:
        call = self.fb.call
        for _ in range(CALLS):
            call(_target)

    def time_overdrive(self) -> None:
        call = self.cb.call
        for _ in range(CALLS):
            try:  # noqa: SIM105 - the try/except is what is timed (suppress() costs more)
                call(_target)
            except CircuitOpen:
                pass

    def time_pybreaker(self) -> None:
        call = self.pb.call
        for _ in range(CALLS):
            try:  # noqa: SIM105 - the try/except is what is timed (suppress() costs more)
                call(_target)
            except pybreaker.CircuitBreakerError:
                pass


class LimiterSync:
    """acquire+release with free slots: overdrive vs threading.Semaphore."""

    def setup(self) -> None:
        self.lim = ConcurrencyLimiter(64, algorithm="fixed")
        self.aimd = ConcurrencyLimiter(64, algorithm="aimd")
        self.sem = threading.Semaphore(64)

    def time_overdrive_fixed(self) -> None:
        acquire = self.lim.acquire
        for _ in range(CALLS):
            acquire().release()

    def time_overdrive_aimd(self) -> None:
        acquire = self.aimd.acquire
        for _ in range(CALLS):
            acquire().release()

    def time_semaphore(self) -> None:
        acquire, release = self.sem.acquire, self.sem.release
        for _ in range(CALLS):
            acquire()
            release()


class LimiterAsync:
    """acquire+release in one task: overdrive vs aiolimiter and asyncio.Semaphore."""

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.lim = ConcurrencyLimiter(64, algorithm="fixed")
        self.al = aiolimiter.AsyncLimiter(1e12, 1.0)
        self.sem = asyncio.Semaphore(64)

    def teardown(self) -> None:
        self.loop.close()

    def time_overdrive(self) -> None:
        async def body() -> None:
            aacquire = self.lim.aacquire
            for _ in range(CALLS):
                (await aacquire()).release()

        self.loop.run_until_complete(body())

    def time_overdrive_async_with(self) -> None:
        async def body() -> None:
            lim = self.lim
            for _ in range(CALLS):
                async with lim:
                    pass

        self.loop.run_until_complete(body())

    def time_aiolimiter(self) -> None:
        async def body() -> None:
            al = self.al
            for _ in range(CALLS):
                async with al:
                    pass

        self.loop.run_until_complete(body())

    def time_asyncio_semaphore(self) -> None:
        async def body() -> None:
            sem = self.sem
            for _ in range(CALLS):
                async with sem:
                    pass

        self.loop.run_until_complete(body())


class RateTryAcquire:
    """Admitted try_acquire: GCRA vs a Lock-guarded token bucket by hand."""

    def setup(self) -> None:
        self.rl = RateLimiter(1e12, 1.0, burst=10**9)
        self.tb = TokenBucket(1e12, 1e9)

    def time_overdrive(self) -> None:
        try_acquire = self.rl.try_acquire
        for _ in range(CALLS):
            try_acquire()

    def time_overdrive_keyed(self) -> None:
        try_acquire = self.rl.try_acquire
        for _ in range(CALLS):
            try_acquire("user-1")

    def time_token_bucket(self) -> None:
        try_acquire = self.tb.try_acquire
        for _ in range(CALLS):
            try_acquire()
