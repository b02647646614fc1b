"""CircuitBreaker: closed / open / half-open, never holding a lock across the call.

Closed: calls run; outcomes go into a sliding window, either the last
``window_size`` calls (``window="count"``) or the last ``window_size`` seconds
(``window="time"``, kept in ten buckets). Once the window holds ``min_calls``
calls (for a count window: ``min(min_calls, window_size)``), the breaker opens
when the failure rate reaches ``failure_rate`` or the slow-call rate (calls
taking ``slow_call_s`` or longer) reaches ``slow_call_rate``.

Open: calls are refused with :class:`~overdrive.exceptions.CircuitOpen`
carrying ``retry_after`` until ``open_s`` has passed; then the first call
turns the breaker half-open.

Half-open: at most ``half_open_probes`` probe calls are admitted (others are
refused with ``retry_after=0``); when that many have finished, the breaker
closes (fresh window) if their failure and slow rates are below the
thresholds, else it opens again.

Which exceptions count: an exception that is an instance of ``ignored`` is not
recorded at all; one of ``counted`` is a failure; any other exception counts as
a success (the dependency answered; the caller's own error). Exceptions that
are not ``Exception`` (KeyboardInterrupt, asyncio.CancelledError) are never
recorded.

The hot path (closed, count window, no ``slow_call_s``, no Redis) records a
success with one ``next()`` on an ``itertools.count`` (atomic under the GIL)
and no lock; a failure takes a short lock for the bookkeeping only. Slow-call
timing, time windows and Redis state take a slower (still lock-free across the
call) path.

Shared state (``redis=``): the state, the window and the half-open probes live
in one Redis hash changed by one Lua script using the server's clock; every
process sends failures and slow calls at once and successes in batches (at
least every ``sync_s`` seconds, when it also refreshes its view of the state).
If Redis fails, the breaker keeps working on its last view (counting
``redis_errors``) rather than failing calls.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from .._core import _BreakerCore
from ..exceptions import CircuitOpen, ConfigurationError, InputTypeError
from ..telemetry.registry import auto_register
from ._breaker_lua import BREAKER_LUA
from ._checks import check_callable, check_exc_types, check_int, check_name, check_real
from ._redis import RedisLink, resolve_redis

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "Listener"]

P = ParamSpec("P")
R = TypeVar("R")

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
_NAMES: Final = (CLOSED, OPEN, HALF_OPEN)
_C, _O, _H = 0, 1, 2
_BUCKETS: Final = 10

#: ``listener(breaker, old_state, new_state)``, called after each transition.
Listener = Callable[["CircuitBreaker", str, str], object]

_log = logging.getLogger("overdrive.resilience")

# outcome codes
_OK, _FAIL, _IGNORE = 0, 1, 2


class CircuitBreaker(_BreakerCore):
    """Stops calling a failing dependency for a while; see the module docstring.

    ``breaker.call(fn, *args, **kwargs)``; ``await breaker.acall(coro_fn, ...)``;
    ``@breaker`` on a sync or async function; ``with breaker:`` /
    ``async with breaker:`` around a block. ``clock`` (seconds, monotonic)
    can be injected for tests (local state only). ``listeners``: callables
    ``(breaker, old_state, new_state)`` run after each transition, outside
    every lock (an exception in one is logged, never raised). ``fallback``:
    when set, a refused ``call``/``acall`` (and decorated function) returns
    ``fallback(*args, **kwargs)`` (awaited if it returns an awaitable, under
    ``acall``) instead of raising CircuitOpen; context managers still raise.
    """

    __slots__ = (
        "_bucket_s",
        "_buckets",
        "_clock",
        "_cm",
        "_epoch",
        "_fails",
        "_fallback",
        "_listeners",
        "_lock",
        "_n_fail",
        "_n_ignored",
        "_n_locked_epoch",
        "_n_ok_slow",
        "_n_opened",
        "_n_redis_errors",
        "_n_slow",
        "_ok_done",
        "_open_until",
        "_p_done",
        "_p_fail",
        "_p_in",
        "_p_slow",
        "_pend_ok",
        "_pend_slow",
        "_probes_full_until",
        "_redis",
        "_rkey",
        "_slows",
        "_state",
        "_tcalls",
        "_tfails",
        "_timed",
        "_tslows",
        "_view_at",
        "counted",
        "failure_rate",
        "half_open_probes",
        "ignored",
        "min_calls",
        "name",
        "open_s",
        "slow_call_rate",
        "slow_call_s",
        "sync_s",
        "window",
        "window_size",
    )

    def __init__(
        self,
        name: str = "breaker",
        *,
        window: str = "count",
        window_size: float = 100,
        min_calls: int = 20,
        failure_rate: float = 0.5,
        slow_call_s: float | None = None,
        slow_call_rate: float = 1.0,
        open_s: float = 30.0,
        half_open_probes: int = 5,
        counted: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        ignored: type[BaseException] | tuple[type[BaseException], ...] = (),
        clock: Callable[[], float] = time.monotonic,
        redis: object = None,
        sync_s: float = 0.1,
        listeners: Iterable[Listener] = (),
        fallback: Callable[..., Any] | None = None,
    ) -> None:
        self.name = check_name(name)
        if not isinstance(window, str):
            raise InputTypeError(f"window must be a str, not {type(window).__name__}")
        if window not in ("count", "time"):
            raise ConfigurationError(f"invalid window={window!r}: must be 'count' or 'time'")
        self.window = window
        if window == "count":
            self.window_size: float = check_int("window_size", window_size, 1, 1_000_000)
        else:
            ws = check_real("window_size", window_size, lo=0.0, lo_open=True)
            assert ws is not None
            self.window_size = ws
        self.min_calls = check_int("min_calls", min_calls, 1)
        fr = check_real("failure_rate", failure_rate, lo=0.0, lo_open=True, hi=1.0)
        sr = check_real("slow_call_rate", slow_call_rate, lo=0.0, lo_open=True, hi=1.0)
        self.slow_call_s = check_real("slow_call_s", slow_call_s, allow_none=True)
        osec = check_real("open_s", open_s)
        assert fr is not None and sr is not None and osec is not None
        self.failure_rate, self.slow_call_rate, self.open_s = fr, sr, osec
        self.half_open_probes = check_int("half_open_probes", half_open_probes, 1, 1_000_000)
        self.counted = check_exc_types("counted", counted)
        self.ignored = check_exc_types("ignored", ignored)
        self._clock: Callable[[], float] = check_callable("clock", clock)
        sync = check_real("sync_s", sync_s)
        assert sync is not None
        self.sync_s = sync
        if isinstance(listeners, (str, bytes)) or not isinstance(listeners, Iterable):
            raise InputTypeError(
                f"listeners must be an iterable of callables, not {type(listeners).__name__}"
            )
        self._listeners = [check_callable("listeners[i]", f) for f in listeners]
        self._fallback = None if fallback is None else check_callable("fallback", fallback)
        # the per-call paths in Rust read these (time.monotonic is read natively there)
        self._core_init(self.name, None if clock is time.monotonic else clock, self._fallback)
        self._redis: RedisLink | None = resolve_redis(redis)
        if self._redis is not None:
            self._rkey = self._redis.key("{cb:" + self.name + "}")

        self._lock = threading.Lock()
        self._cm: contextvars.ContextVar[tuple[tuple[int, float], ...]] = contextvars.ContextVar(
            f"overdrive_breaker_{id(self)}", default=()
        )
        self._state = _C
        self._open_until = 0.0
        self._reject_until = -math.inf  # = _open_until while open, in-process state only
        self._epoch = 0
        # count window: seq numbers (1, 2, ...) of completed calls in this closed epoch
        self._ctr = itertools.count(1)
        self._check_at = (
            min(self.min_calls, int(self.window_size)) if window == "count" else self.min_calls
        )
        self._fails: deque[int] = deque()
        self._slows: deque[int] = deque()
        # time window: buckets [start_index, calls, fails, slows]
        self._bucket_s = self.window_size / _BUCKETS
        self._buckets: deque[list[int]] = deque()
        self._tcalls = self._tfails = self._tslows = 0
        # half-open probes
        self._p_in = self._p_done = self._p_fail = self._p_slow = 0
        # counters (successes of the lock-free path live in the itertools counters)
        self._ok_done = 0  # successes banked from earlier counters and the locked paths
        self._n_locked_epoch = 0  # seq numbers of the current counter taken under the lock
        self._n_fail = self._n_slow = self._n_rejected = self._n_ignored = 0
        self._n_ok_slow = 0  # successes recorded under the lock
        self._n_opened = 0
        self._n_redis_errors = 0
        # Redis view
        self._view_at = -math.inf
        self._probes_full_until = -math.inf
        self._pend_ok = self._pend_slow = 0
        self._fast = self._redis is None and window == "count" and self.slow_call_s is None
        self._timed = self.slow_call_s is not None
        auto_register(self, "circuit_breaker")

    # ------------------------------------------------------------------ public

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (an open breaker whose
        ``open_s`` has passed still says ``"open"`` until a call arrives)."""
        if self._redis is not None:
            self._refresh(force=True)
        return _NAMES[self._state]

    if TYPE_CHECKING:

        def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
            """``fn(*args, **kwargs)`` if the breaker admits it (else CircuitOpen, or
            the ``fallback``'s value), recording the outcome; the result or
            exception passes through. (In Rust: ``_BreakerCore.call``; the closed
            lock-free path and the open-period rejection run there, the rest in
            :meth:`_call_slow`.)"""
            ...

    def _call_slow(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """:meth:`call` when the breaker is neither closed on its lock-free path
        nor inside an open period: probes, Redis state, time windows, slow calls."""
        if kwargs is None:
            kwargs = {}
        try:  # an open period was refused in Rust already; _admit decides the rest
            ticket = self._admit()
        except CircuitOpen:
            if self._fallback is None:
                raise
            return self._fallback(*args, **kwargs)
        t0 = self._clock() if self._timed else 0.0
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record(ticket, self._classify(exc), t0)
            raise
        self._record(ticket, _OK, t0)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``await fn(*args, **kwargs)`` under the breaker (as :meth:`call`)."""
        if self._fast:
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._closed_error(exc)
                raise
            if next(self._ctr) == self._check_at:
                self._evaluate_at_min()
            return result
        try:
            ticket = self._admit()
        except CircuitOpen:
            if self._fallback is None:
                raise
            value = self._fallback(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            return value  # type: ignore[no-any-return]
        t0 = self._clock() if self._timed else 0.0
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._record(ticket, self._classify(exc), t0)
            raise
        self._record(ticket, _OK, t0)
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorator: every call of ``fn`` (sync or ``async def``) goes through the breaker."""
        check_callable("fn", fn)
        if inspect.iscoroutinefunction(fn):
            acall = self.acall

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await acall(fn, *args, **kwargs)

            return async_wrapper
        call = self.call

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call(fn, *args, **kwargs)

        return wrapper

    def __enter__(self) -> CircuitBreaker:
        ticket = self._admit()
        self._cm.set((*self._cm.get(), (ticket, self._clock() if self._timed else 0.0)))
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        stack = self._cm.get()
        ticket, t0 = stack[-1]
        self._cm.set(stack[:-1])
        self._record(ticket, _OK if exc is None else self._classify(exc), t0)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self.__exit__(et, exc, tb)

    def reset(self) -> None:
        """Close the breaker with an empty window (in Redis too, when shared)."""
        if self._redis is not None:
            self._remote("reset")
            return
        with self._lock:
            old = self._state
            self._to_closed()
        self._notify(old, _C)

    def force_open(self, seconds: float | None = None) -> None:
        """Open the breaker now: for ``seconds`` (then half-open as usual), or
        until :meth:`reset` when ``None`` (``retry_after`` is then ``inf``)."""
        sec = check_real("seconds", seconds, allow_none=True)
        if self._redis is not None:
            self._remote("force", -1 if sec is None else int(sec * 1e6))
            return
        with self._lock:
            old = self._state
            self._to_open(self._clock(), math.inf if sec is None else sec)
        self._notify(old, _O)

    def stats(self) -> dict[str, Any]:
        """Counters: ``successes``, ``failures``, ``slow_calls``, ``rejected``,
        ``ignored``, ``opened`` (transitions to open), ``state_code`` (0 closed,
        1 open, 2 half-open), the window's current ``window_calls`` /
        ``window_failure_rate`` / ``window_slow_rate``, ``redis_errors``; and
        ``name`` and ``state``. Counters are this process's; with ``redis=``
        the window lives in Redis and the ``window_*`` entries are 0."""
        with self._lock:
            if self.window == "count":
                peek = _peek(self._ctr)
                seq = peek if self._state == _C else 0
                n = min(seq, int(self.window_size))
                lo = seq - n
                f = sum(1 for s in self._fails if s > lo)
                sl = sum(1 for s in self._slows if s > lo)
                ok_now = max(peek - self._n_locked_epoch, 0)
                successes = self._ok_done + ok_now + self._n_ok_slow
            else:
                self._rotate(self._clock())
                n, f, sl = self._tcalls, self._tfails, self._tslows
                successes = self._ok_done + self._n_ok_slow
            return {
                "name": self.name,
                "state": _NAMES[self._state],
                "state_code": self._state,
                "successes": successes,
                "failures": self._n_fail,
                "slow_calls": self._n_slow,
                "rejected": self._n_rejected,
                "ignored": self._n_ignored,
                "opened": self._n_opened,
                "window_calls": n,
                "window_failure_rate": f / n if n else 0.0,
                "window_slow_rate": sl / n if n else 0.0,
                "redis_errors": self._n_redis_errors,
            }

    def close(self) -> None:
        """Close the Redis client this object created from a ``redis://`` URL
        (a RedisTier or client you passed stays open; so does in-process
        state, which needs no closing). Also done when the object is collected."""
        if self._redis is not None:
            self._redis.close()

    def __repr__(self) -> str:
        where = f", redis={self._redis.where}" if self._redis is not None else ""
        return f"CircuitBreaker(name={self.name!r}, state={_NAMES[self._state]!r}{where})"

    # ------------------------------------------------------------------ internals

    def _classify(self, exc: BaseException) -> int:
        if not isinstance(exc, Exception) or isinstance(exc, self.ignored):
            return _IGNORE
        return _FAIL if isinstance(exc, self.counted) else _OK

    def _closed_error(self, exc: BaseException) -> None:
        """The fast path's exception: record a failure (or success / nothing)."""
        outcome = self._classify(exc)
        if outcome == _OK:
            if next(self._ctr) == self._check_at:
                self._evaluate_at_min()
        elif outcome == _FAIL:
            self._record(0, _FAIL, 0.0)
        else:
            with self._lock:
                self._n_ignored += 1

    def _admit(self) -> int:
        """0 for a closed call, an epoch number (> 0) for a half-open probe; raises CircuitOpen."""
        if self._redis is not None:
            return self._admit_remote()
        st = self._state
        if st == _C:
            return 0
        now = self._clock()
        if st == _O and now < self._open_until:
            self._n_rejected += 1  # a racy count is fine: stats only
            raise CircuitOpen(self.name, self._open_until - now)
        with self._lock:
            old = self._state
            if old == _C:
                return 0
            if old == _O:
                if now < self._open_until:
                    self._n_rejected += 1
                    raise CircuitOpen(self.name, self._open_until - now)
                self._to_half_open()
            if self._p_in + self._p_done >= self.half_open_probes:
                self._n_rejected += 1
                raise CircuitOpen(self.name, 0.0)
            self._p_in += 1
            ticket = self._epoch
        if old != _H:
            self._notify(old, _H)
        return ticket

    def _record(self, ticket: int, outcome: int, t0: float) -> None:
        slow = False
        if self._timed:
            assert self.slow_call_s is not None
            slow = self._clock() - t0 >= self.slow_call_s
        if self._redis is not None:
            self._record_remote(ticket, outcome, slow)
            return
        if ticket:
            self._probe_done(ticket, outcome, slow)
            return
        if outcome == _OK and not slow and self.window == "count":
            if next(self._ctr) == self._check_at:
                self._evaluate_at_min()
            return
        with self._lock:
            if outcome == _IGNORE:
                self._n_ignored += 1
                return
            if outcome == _FAIL:
                self._n_fail += 1
            if slow:
                self._n_slow += 1
                if outcome == _OK:
                    self._n_ok_slow += 1
            if self.window == "time":
                if outcome == _OK and not slow:
                    self._ok_done += 1
                if self._state != _C:
                    return
                now = self._clock()
                self._rotate(now)
                b = self._buckets[-1]
                b[1] += 1
                self._tcalls += 1
                if outcome == _FAIL:
                    b[2] += 1
                    self._tfails += 1
                if slow:
                    b[3] += 1
                    self._tslows += 1
                trip = self._tcalls >= self.min_calls and (
                    self._tfails >= self.failure_rate * self._tcalls
                    or self._tslows >= self.slow_call_rate * self._tcalls
                )
            else:
                if self._state != _C:
                    return
                seq = next(self._ctr)
                self._n_locked_epoch += 1
                if outcome == _FAIL:
                    self._fails.append(seq)
                if slow:
                    self._slows.append(seq)
                trip = self._count_trip(seq)
            if trip:
                self._to_open(self._clock(), self.open_s)
        if trip:
            self._notify(_C, _O)

    def _count_trip(self, seq: int) -> bool:
        """Lock held: should the count window (ending at call ``seq``) open the breaker?"""
        n = min(seq, int(self.window_size))
        if n < self._check_at:
            return False
        lo = seq - n
        fails, slows = self._fails, self._slows
        while fails and fails[0] <= lo:
            fails.popleft()
        while slows and slows[0] <= lo:
            slows.popleft()
        return len(fails) >= self.failure_rate * n or len(slows) >= self.slow_call_rate * n

    def _evaluate_at_min(self) -> None:
        """The window just reached min_calls with a success: failures before it may trip it."""
        with self._lock:
            if self._state != _C or not (self._fails or self._slows):
                return
            trip = self._count_trip(self._check_at)
            if trip:
                self._to_open(self._clock(), self.open_s)
        if trip:
            self._notify(_C, _O)

    def _rotate(self, now: float) -> None:
        """Lock held: drop time-window buckets older than window_size."""
        idx = math.floor(now / self._bucket_s)
        bs = self._buckets
        while bs and bs[0][0] <= idx - _BUCKETS:
            _, c, f, s = bs.popleft()
            self._tcalls -= c
            self._tfails -= f
            self._tslows -= s
        if not bs or bs[-1][0] != idx:
            bs.append([idx, 0, 0, 0])

    def _probe_done(self, ticket: int, outcome: int, slow: bool) -> None:
        with self._lock:
            if outcome == _OK and not slow:
                self._ok_done += 1
            elif outcome == _FAIL:
                self._n_fail += 1
            elif outcome == _IGNORE:
                self._n_ignored += 1
                slow = False  # an ignored call is not recorded at all
            if slow:
                self._n_slow += 1
                if outcome == _OK:
                    self._n_ok_slow += 1
            if self._state != _H or ticket != self._epoch:
                return
            self._p_in -= 1
            if outcome == _IGNORE:
                return
            self._p_done += 1
            self._p_fail += outcome == _FAIL
            self._p_slow += slow
            if self._p_done < self.half_open_probes:
                return
            n = self._p_done
            reopen = self._p_fail >= self.failure_rate * n or self._p_slow >= (
                self.slow_call_rate * n
            )
            if reopen:
                self._to_open(self._clock(), self.open_s)
            else:
                self._to_closed()
        self._notify(_H, _O if reopen else _C)

    def _to_open(self, now: float, seconds: float) -> None:
        if self._state != _O:
            self._n_opened += 1
        self._bank_successes()
        self._fails.clear()
        self._slows.clear()
        self._state = _O
        self._open_until = now + seconds
        self._reject_until = self._open_until
        self._epoch += 1
        self._fast = False

    def _to_half_open(self) -> None:
        self._reject_until = -math.inf
        self._state = _H
        self._epoch += 1
        self._p_in = self._p_done = self._p_fail = self._p_slow = 0

    def _to_closed(self) -> None:
        self._reject_until = -math.inf
        self._bank_successes()
        self._fails.clear()
        self._slows.clear()
        self._buckets.clear()
        self._tcalls = self._tfails = self._tslows = 0
        self._epoch += 1
        self._state = _C
        self._fast = self._redis is None and self.window == "count" and not self._timed

    def _bank_successes(self) -> None:
        """Lock held: add the lock-free successes of the current counter to the
        totals and start a fresh counter (stale calls finishing later count there)."""
        self._ok_done += max(_peek(self._ctr) - self._n_locked_epoch, 0)
        self._n_locked_epoch = 0
        self._ctr = itertools.count(1)

    def _notify(self, old: int, new: int) -> None:
        if old == new:
            return
        for listener in self._listeners:
            try:
                listener(self, _NAMES[old], _NAMES[new])
            except Exception:
                _log.exception("circuit breaker %r: listener %r raised", self.name, listener)

    # ------------------------------------------------------------------ Redis

    def _args(self, op: str, *extra: int | float | str) -> list[Any]:
        count = self.window == "count"
        return [
            op,
            1 if count else 0,
            int(self.window_size) if count else int(self._bucket_s * 1e6),
            self.min_calls,
            repr(self.failure_rate),
            repr(self.slow_call_rate),
            int(self.open_s * 1e6),
            self.half_open_probes,
            *extra,
        ]

    def _remote(self, op: str, *extra: int | float | str) -> list[int] | None:
        assert self._redis is not None
        try:
            res = self._redis.script("breaker", BREAKER_LUA)(
                keys=[self._rkey], args=self._args(op, *extra)
            )
        except Exception as exc:  # Redis down: keep the last view
            with self._lock:
                self._n_redis_errors += 1
            _log.warning("circuit breaker %r: redis %s failed: %s", self.name, op, exc)
            return None
        out = [int(x) for x in res]
        self._apply_view(out)
        return out

    def _apply_view(self, res: list[int]) -> None:
        """``res = [state, remaining_us, epoch, opened_now, ...]`` from the script."""
        now = time.monotonic()
        with self._lock:
            old = self._state
            self._state = res[0]
            self._open_until = math.inf if res[1] < 0 else now + res[1] / 1e6
            self._view_at = now
            if res[0] != _H:
                self._probes_full_until = -math.inf
            if res[3]:
                self._n_opened += 1
        self._notify(old, res[0])

    def _refresh(self, force: bool = False) -> None:
        if force or time.monotonic() - self._view_at >= self.sync_s:
            with self._lock:
                ok, slow = self._pend_ok, self._pend_slow
                self._pend_ok = self._pend_slow = 0
            self._remote("record", ok, 0, slow, 0)

    def _admit_remote(self) -> int:
        self._refresh()
        st = self._state
        if st == _C:
            return 0
        now = time.monotonic()
        if st == _O and now < self._open_until:
            self._n_rejected += 1
            raise CircuitOpen(self.name, self._open_until - now)
        if st == _H and now < self._probes_full_until:  # every probe slot was taken just now
            self._n_rejected += 1
            raise CircuitOpen(self.name, 0.0)
        res = self._remote("admit")
        if res is None:  # Redis down: let the call through (fail open)
            return 0
        if res[0] == _C:
            return 0
        if res[0] == _H and res[4]:
            return res[2]
        self._n_rejected += 1
        if res[0] == _H:  # ask Redis again after sync_s, not on every refused call
            self._probes_full_until = now + self.sync_s
        raise CircuitOpen(self.name, math.inf if res[1] < 0 else res[1] / 1e6)

    def _record_remote(self, ticket: int, outcome: int, slow: bool) -> None:
        if outcome == _IGNORE:
            slow = False  # an ignored call is not recorded at all
        with self._lock:
            if outcome == _IGNORE:
                self._n_ignored += 1
            elif outcome == _FAIL:
                self._n_fail += 1
            elif not slow:
                self._ok_done += 1
            if slow:
                self._n_slow += 1
                if outcome == _OK:
                    self._n_ok_slow += 1
        if ticket:
            self._remote("probe", ticket, int(outcome == _FAIL), int(slow), int(outcome != _IGNORE))
            return
        if outcome == _IGNORE:
            return
        if outcome == _OK:
            with self._lock:
                if slow:
                    self._pend_slow += 1
                else:
                    self._pend_ok += 1
                flush = (
                    slow
                    or self._pend_ok + self._pend_slow >= 64
                    or time.monotonic() - self._view_at >= self.sync_s
                )
            if flush:
                self._refresh(force=True)
            return
        with self._lock:
            ok, sl = self._pend_ok, self._pend_slow
            self._pend_ok = self._pend_slow = 0
        self._remote("record", ok, 0 if slow else 1, sl, 1 if slow else 0)


def _peek(ctr: itertools.count[int]) -> int:
    """The last value ``next(ctr)`` returned (0 if none): count(n) reprs as ``count(n)``."""
    return int(repr(ctr)[6:-1]) - 1
