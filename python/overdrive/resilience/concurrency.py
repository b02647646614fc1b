"""ConcurrencyLimiter: a bounded in-flight count whose bound adapts to the service.

At most ``limit`` calls run at once; more wait in a FIFO queue (at most
``max_queue`` waiters, each for at most ``queue_timeout_s``) and then fail
with :class:`~overdrive.exceptions.LimitExceeded`. Freed slots go to the
oldest waiter directly (no barging). The limit moves after each release:

- ``"aimd"`` (default): a failed call (``ok=False``, an exception, or latency
  over ``drop_latency_s``) multiplies the limit by ``backoff`` (0.9); a good
  one while the limiter is at least half used adds 1.
- ``"gradient2"`` (Netflix's Gradient2): compares a short-term latency with a
  long-term average; the limit shrinks as latency grows past
  ``1.5 x`` the long-term average and grows by a small queue allowance
  otherwise; no change while less than half the limit is used.
- ``"fixed"``: the limit stays where it was set.

The limit stays within ``[min_limit, max_limit]``. ``codel_target_s`` turns on
CoDel-style shedding: once waiters have been queuing longer than the target
for a whole ``codel_interval_s``, each waiter that waited longer than the
target is failed with LimitExceeded instead of being served (the caller sheds
stale work rather than doing it late).

No lock is held while the guarded work runs: the limiter's lock guards only
its counters and queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar, overload

from ..exceptions import ConfigurationError, InputTypeError, LimitExceeded, ReleasedError
from ..telemetry.registry import auto_register
from ._checks import check_callable, check_int, check_name, check_real

__all__ = ["ConcurrencyLimiter", "Permit"]

P = ParamSpec("P")
R = TypeVar("R")

_WAITING, _GRANTED, _SHED, _GONE = 0, 1, 2, 3
_ALGORITHMS: Final = ("aimd", "gradient2", "fixed")


class Permit:
    """One admitted unit of work: ``release(ok=True)`` once (or use ``with``)."""

    __slots__ = ("_done", "_limiter", "start")

    #: when the permit was granted (the limiter's clock; 0.0 when the limit
    #: algorithm needs no latencies)
    start: float

    def __init__(self, limiter: ConcurrencyLimiter, start: float) -> None:
        self._limiter = limiter
        self.start = start
        self._done = False

    def release(self, ok: bool = True) -> None:
        """Give the slot back; ``ok=False`` tells the limit algorithm the call failed."""
        self._limiter._release(self, ok)

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._limiter._release(self, not isinstance(exc, Exception))


class _Waiter:
    __slots__ = ("enqueued", "fut", "lock", "loop", "state")

    def __init__(self, enqueued: float, loop: asyncio.AbstractEventLoop | None) -> None:
        self.enqueued = enqueued
        self.state = _WAITING
        self.loop = loop
        if loop is None:
            self.lock: threading.Lock | None = threading.Lock()
            self.lock.acquire()
            self.fut: asyncio.Future[None] | None = None
        else:
            self.lock = None
            self.fut = loop.create_future()

    def wake(self) -> bool:
        """Wake the waiter; False if it cannot be woken (its event loop is closed)."""
        if self.lock is not None:
            self.lock.release()
            return True
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(_set_done, self.fut)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            return False
        return True


def _set_done(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


class ConcurrencyLimiter:
    """Adaptive bound on work in flight; see the module docstring.

    ``permit = limiter.acquire(timeout=None)`` (``None``: ``queue_timeout_s``;
    ``0``: do not queue) then ``permit.release(ok=True)``, or ``with
    limiter.acquire():``, or ``with limiter:``; ``await limiter.aacquire()`` /
    ``async with limiter:``; ``@limiter`` on a sync or async function.
    """

    __slots__ = (
        "__weakref__",
        "_acquired",
        "_cap",
        "_clock",
        "_cm",
        "_failed",
        "_first_above",
        "_inflight",
        "_limit",
        "_lock",
        "_long_rtt",
        "_peak",
        "_rejected",
        "_samples",
        "_shed",
        "_timed",
        "_timeouts",
        "_waiters",
        "algorithm",
        "backoff",
        "codel_interval_s",
        "codel_target_s",
        "drop_latency_s",
        "max_limit",
        "max_queue",
        "min_limit",
        "name",
        "queue_timeout_s",
    )

    def __init__(
        self,
        limit: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 1000,
        algorithm: str = "aimd",
        queue_timeout_s: float = 1.0,
        max_queue: int = 1000,
        codel_target_s: float | None = None,
        codel_interval_s: float = 0.1,
        backoff: float = 0.9,
        drop_latency_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "concurrency",
    ) -> None:
        self.min_limit = check_int("min_limit", min_limit, 1)
        self.max_limit = check_int("max_limit", max_limit, 1)
        if self.max_limit < self.min_limit:
            raise ConfigurationError(
                f"invalid max_limit={max_limit!r}: must be >= min_limit={min_limit!r}"
            )
        lim = check_int("limit", limit, 1)
        if not self.min_limit <= lim <= self.max_limit:
            raise ConfigurationError(
                f"invalid limit={limit!r}: must be in min_limit..max_limit "
                f"({self.min_limit}..{self.max_limit})"
            )
        if not isinstance(algorithm, str):
            raise InputTypeError(f"algorithm must be a str, not {type(algorithm).__name__}")
        if algorithm not in _ALGORITHMS:
            raise ConfigurationError(
                f"invalid algorithm={algorithm!r}: must be one of {', '.join(_ALGORITHMS)}"
            )
        self.algorithm = algorithm
        qt = check_real("queue_timeout_s", queue_timeout_s)
        assert qt is not None
        self.queue_timeout_s = qt
        self.max_queue = check_int("max_queue", max_queue, 0)
        self.codel_target_s = check_real(
            "codel_target_s", codel_target_s, lo=0.0, lo_open=True, allow_none=True
        )
        ci = check_real("codel_interval_s", codel_interval_s, lo=0.0, lo_open=True)
        bo = check_real("backoff", backoff, lo=0.0, lo_open=True, hi=1.0, hi_open=True)
        assert ci is not None and bo is not None
        self.codel_interval_s, self.backoff = ci, bo
        self.drop_latency_s = check_real(
            "drop_latency_s", drop_latency_s, lo=0.0, lo_open=True, allow_none=True
        )
        self._clock: Callable[[], float] = check_callable("clock", clock)
        self.name = check_name(name)
        # only Gradient2 and drop_latency_s need each call's latency (a clock read costs)
        self._timed = algorithm == "gradient2" or self.drop_latency_s is not None

        self._lock = threading.Lock()
        self._limit = float(lim)
        self._cap = lim  # int(limit): the in-flight bound
        self._inflight = 0
        self._waiters: deque[_Waiter] = deque()
        self._first_above = 0.0
        self._cm: contextvars.ContextVar[tuple[Permit, ...]] = contextvars.ContextVar(
            f"overdrive_limiter_{id(self)}", default=()
        )
        # gradient2
        self._long_rtt = 0.0
        self._samples = 0
        # counters
        self._acquired = self._rejected = self._timeouts = self._shed = 0
        self._failed = self._peak = 0
        auto_register(self, "concurrency_limiter")

    # ------------------------------------------------------------------ public

    @property
    def limit(self) -> int:
        """The current in-flight bound."""
        return self._cap

    @property
    def inflight(self) -> int:
        """Permits out now."""
        return self._inflight

    def acquire(self, timeout: float | None = None) -> Permit:
        """A permit, waiting in the FIFO queue up to ``timeout`` (``None``:
        ``queue_timeout_s``; ``0``: no wait); LimitExceeded if the queue is
        full, the wait times out or CoDel sheds the waiter."""
        t = self.queue_timeout_s if timeout is None else self._timeout(timeout)
        with self._lock:
            if self._inflight < self._cap and not self._waiters:
                self._inflight += 1
                self._acquired += 1
                if self._inflight > self._peak:
                    self._peak = self._inflight
                return Permit(self, self._clock() if self._timed else 0.0)
            w = self._enqueue(t, None)
        assert w.lock is not None
        w.lock.acquire(timeout=min(t, threading.TIMEOUT_MAX))
        return self._after_wait(w)

    async def aacquire(self, timeout: float | None = None) -> Permit:
        """:meth:`acquire` for asyncio: the task waits, the loop runs on."""
        t = self.queue_timeout_s if timeout is None else self._timeout(timeout)
        with self._lock:
            if self._inflight < self._cap and not self._waiters:
                self._inflight += 1
                self._acquired += 1
                if self._inflight > self._peak:
                    self._peak = self._inflight
                return Permit(self, self._clock() if self._timed else 0.0)
            w = self._enqueue(t, asyncio.get_running_loop())
        assert w.fut is not None
        try:
            await asyncio.wait_for(asyncio.shield(w.fut), t)
        except TimeoutError:
            pass
        except BaseException:  # cancelled: give back a slot granted meanwhile
            with self._lock:
                if w.state == _GRANTED:
                    self._inflight -= 1
                    self._dispatch()
                else:
                    self._discard(w)
            raise
        return self._after_wait(w)

    def __enter__(self) -> Permit:
        permit = self.acquire()
        cm = self._cm
        cm.set((*cm.get(), permit))
        return permit

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        stack = self._cm.get()
        self._cm.set(stack[:-1])
        self._release(stack[-1], not isinstance(exc, Exception))

    async def __aenter__(self) -> Permit:
        permit = None
        with self._lock:  # aacquire's fast path, inlined (no second coroutine)
            if self._inflight < self._cap and not self._waiters:
                self._inflight += 1
                self._acquired += 1
                if self._inflight > self._peak:
                    self._peak = self._inflight
                permit = Permit(self, self._clock() if self._timed else 0.0)
        if permit is None:
            permit = await self.aacquire()
        cm = self._cm
        cm.set((*cm.get(), permit))
        return permit

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self.__exit__(et, exc, tb)

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorator: every call of ``fn`` (sync or ``async def``) holds a permit."""
        check_callable("fn", fn)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                permit = await self.aacquire()
                try:
                    result = await fn(*args, **kwargs)
                except Exception:
                    self._release(permit, False)
                    raise
                except BaseException:
                    self._release(permit, True)
                    raise
                self._release(permit, True)
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with self.acquire():
                return fn(*args, **kwargs)

        return wrapper

    def stats(self) -> dict[str, Any]:
        """``name``, ``algorithm``, ``limit``, ``inflight``, ``queued``,
        ``peak_inflight``, ``acquired``, ``rejected`` (queue full or no wait),
        ``timeouts``, ``shed`` (CoDel), ``failed`` (releases with ok=False)."""
        with self._lock:
            return {
                "name": self.name,
                "algorithm": self.algorithm,
                "limit": self._cap,
                "inflight": self._inflight,
                "queued": len(self._waiters),
                "peak_inflight": self._peak,
                "acquired": self._acquired,
                "rejected": self._rejected,
                "timeouts": self._timeouts,
                "shed": self._shed,
                "failed": self._failed,
            }

    def __repr__(self) -> str:
        return (
            f"ConcurrencyLimiter(name={self.name!r}, algorithm={self.algorithm!r}, "
            f"limit={self._cap}, inflight={self._inflight})"
        )

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _timeout(timeout: object) -> float:
        t = check_real("timeout", timeout, allow_none=False)
        assert t is not None
        return t

    def _enqueue(self, t: float, loop: asyncio.AbstractEventLoop | None) -> _Waiter:
        """Lock held: queue a waiter or raise LimitExceeded."""
        if t <= 0 or len(self._waiters) >= self.max_queue:
            self._rejected += 1
            why = "no wait allowed" if t <= 0 else f"queue full ({self.max_queue} waiting)"
            raise LimitExceeded(
                f"concurrency limiter {self.name!r}: {self._inflight} in flight "
                f"(limit {self._cap}); {why}",
                name=self.name,
            )
        w = _Waiter(self._clock(), loop)
        self._waiters.append(w)
        return w

    def _after_wait(self, w: _Waiter) -> Permit:
        with self._lock:
            if w.state == _GRANTED:
                self._acquired += 1
                return Permit(self, self._clock() if self._timed else 0.0)
            if w.state == _SHED:
                self._shed += 1
                why = f"shed by CoDel (queued over {self.codel_target_s} s)"
            else:
                self._discard(w)
                self._timeouts += 1
                why = "timed out in the queue"
        raise LimitExceeded(f"concurrency limiter {self.name!r}: {why}", name=self.name)

    def _discard(self, w: _Waiter) -> None:
        w.state = _GONE
        with contextlib.suppress(ValueError):
            self._waiters.remove(w)

    def _release(self, permit: Permit, ok: bool) -> None:
        now = self._clock() if self._timed else 0.0
        with self._lock:
            if permit._done:
                raise ReleasedError("the permit was already released")
            permit._done = True
            busy = self._inflight
            self._inflight -= 1
            rtt = now - permit.start
            if self.drop_latency_s is not None and rtt > self.drop_latency_s:
                ok = False
            if not ok:
                self._failed += 1
            if self.algorithm == "aimd":
                self._aimd(ok, busy)
            elif self.algorithm == "gradient2":
                self._gradient2(rtt, busy)
            if self._waiters:
                self._dispatch()

    def _aimd(self, ok: bool, busy: int) -> None:
        lim = self._limit
        if not ok:
            self._set_limit(lim * self.backoff)
        elif busy * 2 >= lim and lim < self.max_limit:
            self._set_limit(lim + 1.0)
        # else app-limited: the sample says nothing about capacity

    def _gradient2(self, rtt: float, busy: int) -> None:
        rtt = max(rtt, 1e-9)
        self._samples += 1
        if self._samples <= 10:  # warm-up: a plain average
            self._long_rtt += (rtt - self._long_rtt) / self._samples
        else:
            self._long_rtt += (rtt - self._long_rtt) * (2.0 / 601.0)
        if self._long_rtt / rtt > 2.0:  # latency fell far below the average: adapt faster
            self._long_rtt *= 0.95
        if busy < self._limit / 2:  # app-limited: the sample says nothing about capacity
            return
        gradient = max(0.5, min(1.0, 1.5 * self._long_rtt / rtt))
        new = self._limit * gradient + 4.0
        self._set_limit(self._limit * 0.8 + new * 0.2)

    def _set_limit(self, lim: float) -> None:
        lim = min(max(lim, float(self.min_limit)), float(self.max_limit))
        self._limit = lim
        self._cap = max(self.min_limit, math.floor(lim))

    def _dispatch(self) -> None:
        """Lock held: hand free slots to waiters in FIFO order (CoDel may shed some)."""
        target = self.codel_target_s
        now = self._clock() if target is not None else 0.0
        waiters = self._waiters
        while waiters and self._inflight < self._cap:
            w = waiters.popleft()
            if target is not None:
                if now - w.enqueued < target:
                    self._first_above = 0.0
                elif self._first_above == 0.0:
                    self._first_above = now + self.codel_interval_s
                elif now >= self._first_above:
                    w.state = _SHED
                    w.wake()
                    continue
            w.state = _GRANTED
            if not w.wake():
                w.state = _GONE
                continue
            self._inflight += 1
            if self._inflight > self._peak:
                self._peak = self._inflight
