"""RateLimiter: GCRA (the generic cell rate algorithm), one timestamp per key.

``rate`` requests per ``per`` seconds, with bursts of up to ``burst`` requests
(default: ``rate``, so an idle limiter admits ``rate`` at once, as a token
bucket of that capacity would). Each key keeps only its theoretical arrival
time (TAT): a request of ``cost`` at time ``now`` is admitted when
``max(TAT, now) + cost * T - burst * T <= now`` (``T = per / rate``), and then
``TAT = max(TAT, now) + cost * T``. Over any interval of length ``W`` starting
idle, exactly ``burst + floor(W / T)`` unit requests get through.

With ``redis=`` the TATs live in Redis (``prefix + "rl:" + name + ":" + key``,
expiring when they no longer matter) and each decision is one Lua script using
the server's clock, so many processes share one limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Final

from ..exceptions import ConfigurationError, InputTypeError, LimitExceeded
from ..telemetry.registry import auto_register
from ._checks import check_callable, check_int, check_name, check_real
from ._redis import RedisLink, resolve_redis

__all__ = ["RateLimiter"]

_log = logging.getLogger("overdrive.resilience")
_EPS: Final = 1e-9  # float slack when comparing times (seconds)
_PRUNE_AT: Final = 10_000  # sweep idle keys when the table holds this many

# KEYS[1]: the key; ARGV: interval_us, burst_us (burst * interval), cost.
# Returns {allowed (0/1), retry_after_us}.
_GCRA_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst
if now < allow_at then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX',
           math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"""


class RateLimiter:
    """GCRA rate limiter; see the module docstring.

    ``try_acquire(key=None, cost=1) -> bool`` never waits;
    ``acquire(key=None, timeout=None, cost=1)`` waits (``time.sleep``) until
    admitted and raises :class:`~overdrive.exceptions.LimitExceeded` when the
    wait would exceed ``timeout``; ``await aacquire(...)`` waits with
    ``asyncio.sleep``. ``key`` is any hashable (str for Redis); ``None`` means
    the limiter's default ``key``. ``clock`` (seconds) can be injected for
    tests (in-process state only; Redis uses the server's clock). When Redis
    fails, requests are refused (counted in ``redis_errors``) unless
    ``fail_open=True`` admits them.
    """

    __slots__ = (
        "__weakref__",
        "_admitted",
        "_burst_us",
        "_clock",
        "_interval_us",
        "_limit_ahead",
        "_lock",
        "_prefix",
        "_redis",
        "_redis_errors",
        "_rejected",
        "_tat",
        "_tolerance",
        "burst",
        "fail_open",
        "interval",
        "key",
        "name",
        "per",
        "rate",
    )

    def __init__(
        self,
        rate: float = 200,
        per: float = 1.0,
        *,
        burst: int | None = None,
        key: Hashable = None,
        redis: object = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "rate",
        fail_open: bool = False,
    ) -> None:
        r = check_real("rate", rate, lo=0.0, lo_open=True)
        p = check_real("per", per, lo=0.0, lo_open=True)
        assert r is not None and p is not None
        self.rate, self.per = r, p
        self.interval = p / r
        if not self.interval > 0 or not math.isfinite(self.interval):
            raise ConfigurationError(
                f"invalid rate={rate!r} per={per!r}: the interval per/rate must be > 0"
            )
        if burst is None:
            burst = max(1, math.floor(r))
        self.burst = check_int("burst", burst, 1)
        self.name = check_name(name)
        self.key = key
        self._clock: Callable[[], float] = check_callable("clock", clock)
        if not isinstance(fail_open, bool):
            raise InputTypeError(f"fail_open must be a bool, not {type(fail_open).__name__}")
        self.fail_open = fail_open
        self._redis: RedisLink | None = resolve_redis(redis)
        if self._redis is not None:
            self._prefix = self._redis.key("rl", self.name, "")
            self._interval_us = self.interval * 1e6
            self._burst_us = self.burst * self._interval_us
        self._tolerance = self.burst * self.interval
        # admitted while the new TAT is at most this far ahead of now
        self._limit_ahead = self._tolerance + _EPS
        self._tat: dict[Hashable, float] = {}
        self._lock = threading.Lock()
        self._admitted = self._rejected = self._redis_errors = 0
        auto_register(self, "rate_limiter")

    # ------------------------------------------------------------------ public

    def try_acquire(self, key: Hashable = None, cost: int = 1) -> bool:
        """Admit ``cost`` units for ``key`` now if the rate allows (True), else False."""
        if cost != 1 or self._redis is not None:
            return self._decide(key, cost) == 0.0
        # _decide's in-process path, inlined (one Python frame less)
        if key is None:
            key = self.key
        now = self._clock()
        with self._lock:
            try:
                tat = self._tat.get(key)
            except TypeError:
                raise _unhashable(key) from None
            if tat is None:
                if len(self._tat) >= _PRUNE_AT:
                    self._prune(now)
                tat = now
            elif tat < now:
                tat = now
            tat += self.interval
            if tat - now > self._limit_ahead:
                self._rejected += 1
                return False
            self._tat[key] = tat
            self._admitted += 1
            return True

    def retry_after(self, key: Hashable = None, cost: int = 1) -> float:
        """Try to admit like :meth:`try_acquire`: 0.0 if admitted, else the seconds to wait."""
        return self._decide(key, cost)

    def acquire(self, key: Hashable = None, timeout: float | None = None, cost: int = 1) -> None:
        """Wait until ``cost`` units for ``key`` are admitted; LimitExceeded when
        that would take longer than ``timeout`` seconds (``None``: no bound)."""
        deadline = self._deadline(timeout)
        while True:
            wait = self._decide(key, cost)
            if wait == 0.0:
                return
            self._check_wait(wait, deadline, key)
            time.sleep(wait)

    async def aacquire(
        self, key: Hashable = None, timeout: float | None = None, cost: int = 1
    ) -> None:
        """:meth:`acquire` for asyncio (waits with ``asyncio.sleep``)."""
        deadline = self._deadline(timeout)
        while True:
            wait = self._decide(key, cost)
            if wait == 0.0:
                return
            self._check_wait(wait, deadline, key)
            await asyncio.sleep(wait)

    def stats(self) -> dict[str, Any]:
        """``name``, ``admitted``, ``rejected`` (try_acquire refusals and waits),
        ``keys`` (tracked in process), ``rate_per_s``, ``burst``, ``redis_errors``."""
        with self._lock:
            return {
                "name": self.name,
                "admitted": self._admitted,
                "rejected": self._rejected,
                "keys": len(self._tat),
                "rate_per_s": self.rate / self.per,
                "burst": self.burst,
                "redis_errors": self._redis_errors,
            }

    def reset(self, key: Hashable = None) -> None:
        """Forget ``key``'s history (it is idle again)."""
        k = self.key if key is None else key
        if self._redis is not None:
            self._redis.client.delete(self._prefix + self._redis_key(k))
            return
        try:
            hash(k)  # dict.pop skips hashing when the table is empty
        except TypeError:
            raise _unhashable(k) from None
        with self._lock:
            self._tat.pop(k, None)

    def close(self) -> None:
        """Close the Redis client this object created from a ``redis://`` URL
        (a RedisTier or client you passed stays open; so does in-process
        state, which needs no closing). Also done when the object is collected."""
        if self._redis is not None:
            self._redis.close()

    def __repr__(self) -> str:
        where = f", redis={self._redis.where}" if self._redis is not None else ""
        return (
            f"RateLimiter(rate={self.rate!r}, per={self.per!r}, burst={self.burst}, "
            f"name={self.name!r}{where})"
        )

    # ------------------------------------------------------------------ internals

    def _decide(self, key: Hashable, cost: int) -> float:
        """0.0 when admitted (state updated), else seconds until it could be."""
        if cost != 1:
            cost = self._check_cost(cost)
        if key is None:
            key = self.key
        if self._redis is not None:
            return self._decide_remote(key, cost)
        now = self._clock()
        with self._lock:
            try:
                tat = self._tat.get(key)
            except TypeError:
                raise _unhashable(key) from None
            if tat is None:
                if len(self._tat) >= _PRUNE_AT:
                    self._prune(now)
                tat = now
            elif tat < now:
                tat = now
            tat += cost * self.interval
            if tat - now > self._limit_ahead:
                self._rejected += 1
                return tat - self._tolerance - now
            self._tat[key] = tat
            self._admitted += 1
            return 0.0

    def _prune(self, now: float) -> None:
        """Lock held: drop keys whose TAT has passed (they behave as absent)."""
        for k in [k for k, t in self._tat.items() if t <= now]:
            del self._tat[k]

    def _check_cost(self, cost: object) -> int:
        c = check_int("cost", cost, 1)
        if c > self.burst:
            raise ConfigurationError(
                f"invalid cost={c}: more than burst={self.burst}, it could never be admitted"
            )
        return c

    @staticmethod
    def _redis_key(key: Hashable) -> str:
        if key is None:
            return ""
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise InputTypeError(f"key must be a str or int with redis=, not {type(key).__name__}")
        return str(key)

    def _decide_remote(self, key: Hashable, cost: int) -> float:
        assert self._redis is not None
        rkey = self._prefix + self._redis_key(key)
        try:
            ok, wait_us = self._redis.script("gcra", _GCRA_LUA)(
                keys=[rkey], args=[repr(self._interval_us), repr(self._burst_us), cost]
            )
        except Exception as exc:
            with self._lock:
                self._redis_errors += 1
            _log.warning("rate limiter %r: redis failed: %s", self.name, exc)
            if self.fail_open:
                return 0.0
            return self.interval
        with self._lock:
            if ok:
                self._admitted += 1
                return 0.0
            self._rejected += 1
        return max(int(wait_us) / 1e6, 1e-6)

    def _deadline(self, timeout: float | None) -> float:
        t = check_real("timeout", timeout, allow_none=True)
        return math.inf if t is None else time.monotonic() + t

    def _check_wait(self, wait: float, deadline: float, key: Hashable) -> None:
        if time.monotonic() + wait > deadline:
            raise LimitExceeded(
                f"rate limiter {self.name!r}: key {key!r} needs {wait:.3f} s more than the timeout",
                retry_after=wait,
                name=self.name,
            )


def _unhashable(key: object) -> InputTypeError:
    return InputTypeError(f"key must be hashable, got {type(key).__name__} {key!r:.60}")
