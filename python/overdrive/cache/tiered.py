"""TieredCache: a stack of tiers (memory -> Redis -> disk) used as one cache.

* ``get``: the tiers in order, first hit wins; the hit is promoted to the tiers
  above it with their own TTL but never longer than the seconds it had left,
  so a promoted copy never outlives the original.
* ``set``: written to every tier whose ``write`` policy is ``"through"``;
  ``"promote-only"`` tiers are filled only by promotion, ``"none"`` tiers are
  only read (``delete``, ``invalidate_tag`` and ``clear`` reach every tier).
* ``get_or_set``: single-flight. Concurrent callers for one missing key —
  threads, asyncio tasks, or both — run ``compute`` once; the others wait for
  its value or its exception (which is not cached). With
  ``distributed_lock=True`` and a tier that has ``acquire_lock`` (RedisTier),
  processes coordinate too: the lock holder computes, the others poll the
  tiers until the value appears (or the lock frees, or ``lock_timeout_s``
  passes; then they compute themselves).
  A ``delete``/``invalidate_tag``/``clear`` while a compute runs keeps that
  compute's result out of the tiers (its callers still get it).
* ``negative_ttl``: a compute that returns ``None`` is cached for that many
  seconds. Without it, ``None`` results are not cached.
* ``stale_ttl``: stale-while-revalidate. An entry set with a ``ttl`` is kept
  ``ttl + stale_ttl`` seconds; in the last ``stale_ttl`` seconds it is stale:
  ``get_or_set`` serves it at once and one caller refreshes it in the
  background (a thread for sync calls, a task for async ones). It is never
  served after ``ttl + stale_ttl``. The fresh-until time (wall clock, the
  same for every process sharing a tier) travels with the value in a small
  envelope that callers never see.
* Savings: each compute is timed; each ``get_or_set`` hit saved the mean
  compute time (and ``cost_per_call``). ``stats()`` reports them with per-tier
  hit ratios. A hit ratio below ``alert_below`` after ``alert_min_requests``
  requests calls ``on_alert(stats)`` at most once per ``alert_interval_s``
  (default 5 minutes; default handler: a warning on the ``overdrive.cache``
  logger).

A tier that raises :class:`~overdrive.exceptions.CacheUnavailable` (Redis
down) or :class:`~overdrive.exceptions.CacheDataError` (an unreadable entry)
on a read or a write is skipped for that call and counted in ``errors``: the
cache degrades to the tiers that work. Other errors (a key that is not
hashable or has no stable encoding, a value the serializer refuses) propagate.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import math
import numbers
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any, Final, TypeVar

from ..exceptions import CacheDataError, CacheUnavailable, ConfigurationError, InputTypeError
from ..telemetry.registry import auto_register
from ._savings import Account, read_count
from ._singleflight import ERROR, RETRY, VALUE, Flight, Flights
from ._tier import MISSING, Tier

__all__ = ["TieredCache"]

V = TypeVar("V")

logger = logging.getLogger("overdrive.cache")

_WRITE_POLICIES: Final = ("through", "promote-only", "none")
_SOFT_ERRORS: Final = (CacheUnavailable, CacheDataError)
# The envelope of an entry that carries a fresh-until time or tags:
# {_ENV: [fresh_until | None, [tags...], value]} -- plain data, so every
# serializer (msgpack, JSON, pickle) stores it.
_ENV: Final = "\x1foverdrive.cache.entry"
DEFAULT_ALERT_INTERVAL_S: Final = 300.0


def _open(raw: Any) -> tuple[Any, float | None, list[str]]:
    """``(value, fresh_until, tags)`` of a stored value, envelope or not."""
    if type(raw) is dict and len(raw) == 1:
        body = raw.get(_ENV)
        if type(body) is list and len(body) == 3:
            return body[2], body[0], body[1]
    return raw, None, []


def _unwrap(raw: Any) -> Any:
    if type(raw) is dict and len(raw) == 1:
        body = raw.get(_ENV)
        if type(body) is list and len(body) == 3:
            return body[2]
    return raw


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _seconds(name: str, value: object, *, zero_ok: bool = False) -> float | None:
    """None, or a finite number of seconds > 0 (>= 0 with ``zero_ok``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(
            f"{name} must be a number of seconds or None, not {type(value).__name__}"
        )
    try:
        seconds = float(value)
    except OverflowError:
        raise ConfigurationError(f"invalid {name}={value!r}: must be finite") from None
    ok = seconds >= 0 if zero_ok else seconds > 0
    if not (ok and math.isfinite(seconds)):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigurationError(
            f"invalid {name}={value!r}: must be a finite number {bound}, or None"
        )
    return seconds


def _tags(value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise InputTypeError(
            f"tags must be an iterable of str (e.g. a tuple), not a single {type(value).__name__}"
        )
    try:
        tags: tuple[Any, ...] = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise InputTypeError(
            f"tags must be an iterable of str, not {type(value).__name__}"
        ) from None
    for tag in tags:
        if type(tag) is not str:
            raise InputTypeError(f"tags must hold str values, got {tag!r} ({type(tag).__name__})")
    return tags


def _tier_default_ttl(tier: Tier) -> float | None:
    ttl = getattr(tier, "ttl", None)
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0:
        return float(ttl)
    return None


def takes_any_key(tier: Tier) -> bool:
    """Whether the tier keys entries by any hashable object (an in-process store)
    rather than by :func:`~overdrive.cache.keys.stable_key`."""
    if getattr(tier, "any_hashable_key", False):
        return True
    cls = type(tier)
    return cls.__name__ == "MemoryTier" and cls.__module__.startswith("overdrive")


class Policy:
    """How ``get_or_set`` stores what it computes (per cache, or per ``@cached`` function)."""

    __slots__ = ("account", "negative_ttl", "stale_ttl", "tags", "ttl")

    def __init__(
        self,
        ttl: float | None,
        tags: tuple[str, ...],
        negative_ttl: float | None,
        stale_ttl: float | None,
        account: Account,
    ) -> None:
        self.ttl = ttl
        self.tags = tags
        self.negative_ttl = negative_ttl
        self.stale_ttl = stale_ttl
        self.account = account


class TieredCache:
    """Tiers stacked into one cache: read top-down, written through, single-flight.

    ``tiers``: at least one :class:`~overdrive.cache.Tier` (fastest first).
    ``write``: one policy for all tiers or one per tier: ``"through"``
    (``set`` writes it), ``"promote-only"`` (filled only by promotion of hits
    from below) or ``"none"`` (read only). ``promote``: copy hits up.
    ``negative_ttl``, ``stale_ttl``: see the module docs. ``cost_per_call``:
    money one compute costs (for ``saved_cost``). ``alert_below`` (0..1),
    ``alert_min_requests``, ``on_alert``, ``alert_interval_s``: the low
    hit-ratio alert. ``distributed_lock``, ``lock_timeout_s``: cross-process
    single-flight through the first tier with ``acquire_lock``. ``clock``:
    wall-clock seconds for fresh-until times and the alert rate limit (tests
    inject one). ``name``: for stats and logs.

    Thread-safe and asyncio-safe; no lock is held while ``compute`` or a tier
    runs. ``close()`` waits for background refreshes, then closes every tier.
    """

    def __init__(
        self,
        tiers: Sequence[Tier],
        *,
        write: str | Sequence[str] = "through",
        promote: bool = True,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
        cost_per_call: float | None = None,
        alert_below: float | None = None,
        alert_min_requests: int = 1000,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        alert_interval_s: float = DEFAULT_ALERT_INTERVAL_S,
        distributed_lock: bool = False,
        lock_timeout_s: float = 30.0,
        clock: Callable[[], float] | None = None,
        name: str = "cache",
    ) -> None:
        if isinstance(tiers, (str, bytes)) or not isinstance(tiers, Sequence):
            raise InputTypeError(
                f"tiers must be a sequence of cache tiers, not {type(tiers).__name__}"
            )
        tiers = tuple(tiers)
        if not tiers:
            raise ConfigurationError("tiers must hold at least one tier, got an empty sequence")
        for i, tier in enumerate(tiers):
            if not isinstance(tier, Tier):
                raise InputTypeError(
                    f"tiers[{i}] is a {type(tier).__name__}, which is not a cache tier "
                    "(needs name, lookup, get, set, delete, invalidate_tag, clear, close, stats)"
                )
        if isinstance(write, str):
            policies: tuple[str, ...] = (write,) * len(tiers)
        elif isinstance(write, Sequence):
            policies = tuple(write)
            if len(policies) != len(tiers):
                raise ConfigurationError(
                    f"write has {len(policies)} policies for {len(tiers)} tiers: "
                    "give one for all or one per tier"
                )
        else:
            raise InputTypeError(
                f"write must be a str or a sequence of str, not {type(write).__name__}"
            )
        for p in policies:
            if p not in _WRITE_POLICIES:
                raise ConfigurationError(
                    f"invalid write policy {p!r}: use one of {_WRITE_POLICIES}"
                )
        if not isinstance(promote, bool):
            raise InputTypeError(f"promote must be a bool, not {type(promote).__name__}")
        if not isinstance(distributed_lock, bool):
            raise InputTypeError(
                f"distributed_lock must be a bool, not {type(distributed_lock).__name__}"
            )
        if not isinstance(name, str):
            raise InputTypeError(f"name must be a str, not {type(name).__name__}")
        if alert_below is not None:
            if isinstance(alert_below, bool) or not isinstance(alert_below, numbers.Real):
                raise InputTypeError(
                    f"alert_below must be a number or None, not {type(alert_below).__name__}"
                )
            if not 0.0 < float(alert_below) <= 1.0:
                raise ConfigurationError(f"invalid alert_below={alert_below!r}: must be in (0, 1]")
        if isinstance(alert_min_requests, bool) or not isinstance(alert_min_requests, int):
            raise InputTypeError(
                f"alert_min_requests must be an int, not {type(alert_min_requests).__name__}"
            )
        if alert_min_requests < 1:
            raise ConfigurationError(
                f"invalid alert_min_requests={alert_min_requests!r}: must be >= 1"
            )
        if on_alert is not None and not callable(on_alert):
            raise InputTypeError(
                f"on_alert must be callable or None, not {type(on_alert).__name__}"
            )
        if clock is not None and not callable(clock):
            raise InputTypeError(f"clock must be callable or None, not {type(clock).__name__}")
        self._negative_ttl = _seconds("negative_ttl", negative_ttl)
        self._stale_ttl = _seconds("stale_ttl", stale_ttl)
        cost = _seconds("cost_per_call", cost_per_call, zero_ok=True)
        lock_timeout = _seconds("lock_timeout_s", lock_timeout_s)
        if lock_timeout is None:
            raise ConfigurationError("invalid lock_timeout_s=None: must be a finite number > 0")
        interval = _seconds("alert_interval_s", alert_interval_s, zero_ok=True)

        self.name = name
        self._tiers = tiers
        self._n = len(tiers)
        self._write_policies = policies
        self._promote = promote
        self._lookups = tuple(t.lookup for t in tiers)
        self._async_tier = tuple(callable(getattr(t, "alookup", None)) for t in tiers)
        self._any_async = any(self._async_tier)
        self._through = tuple(i for i, p in enumerate(policies) if p == "through")
        self._tier_ttls = tuple(_tier_default_ttl(t) for t in tiers)
        self._promote_to = tuple(
            tuple(j for j in range(i) if policies[j] != "none") if promote else ()
            for i in range(self._n)
        )
        # Tags ride in the envelope only when a promoted copy must keep them.
        self._tags_in_envelope = any(self._promote_to)
        self._hits = tuple(itertools.count() for _ in tiers)
        self._errors = tuple(itertools.count() for _ in tiers)
        self._misses = itertools.count()
        self._clock = clock if clock is not None else time.time
        self._alert_below = float(alert_below) if alert_below is not None else None
        self._alert_min = alert_min_requests
        self._on_alert = on_alert if on_alert is not None else self._log_alert
        self._alert_interval = interval if interval is not None else 0.0
        self._alert_lock = threading.Lock()
        self._last_alert: float | None = None
        self._alerts = 0
        self._lock_tier: Any = None
        if distributed_lock:
            for t in tiers:
                if callable(getattr(t, "acquire_lock", None)):
                    self._lock_tier = t
                    break
        self._lock_timeout = lock_timeout
        self._flights = Flights()
        self._account = Account(name, cost)
        self._accounts: weakref.WeakSet[Account] = weakref.WeakSet()
        self._policy = Policy(None, (), self._negative_ttl, self._stale_ttl, self._account)
        self._bg_lock = threading.Lock()
        self._bg_threads: set[threading.Thread] = set()
        self._bg_tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        auto_register(self, "tiered_cache")

    # --- properties -------------------------------------------------------------

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """The tiers, fastest first."""
        return self._tiers

    @property
    def write(self) -> tuple[str, ...]:
        """The write policy of each tier."""
        return self._write_policies

    @property
    def negative_ttl(self) -> float | None:
        """Seconds a computed ``None`` is cached (None: not cached)."""
        return self._negative_ttl

    @property
    def stale_ttl(self) -> float | None:
        """Seconds an entry is served stale while it is refreshed (None: off)."""
        return self._stale_ttl

    @property
    def cost_per_call(self) -> float | None:
        """Money one compute of ``get_or_set`` costs (for ``saved_cost``)."""
        return self._account.cost_per_call

    def __repr__(self) -> str:
        names = ", ".join(repr(t.name) for t in self._tiers)
        return (
            f"TieredCache(name={self.name!r}, tiers=[{names}], write={list(self._write_policies)})"
        )

    # --- policies (also used by @cached) -------------------------------------------

    def _make_policy(
        self,
        ttl: object,
        tags: object,
        *,
        negative_ttl: object = MISSING,
        stale_ttl: object = MISSING,
        account: Account | None = None,
    ) -> Policy:
        """A checked :class:`Policy`; MISSING options take the cache's own."""
        neg = (
            self._negative_ttl
            if negative_ttl is MISSING
            else _seconds("negative_ttl", negative_ttl)
        )
        stale = self._stale_ttl if stale_ttl is MISSING else _seconds("stale_ttl", stale_ttl)
        return Policy(_seconds("ttl", ttl), _tags(tags), neg, stale, account or self._account)

    def _new_account(self, name: str, cost_per_call: object = MISSING) -> Account:
        """Counters for one cached function, included in this cache's ``stats()``."""
        cost = (
            self._account.cost_per_call
            if cost_per_call is MISSING
            else _seconds("cost_per_call", cost_per_call, zero_ok=True)
        )
        account = Account(name, cost)
        self._accounts.add(account)
        return account

    def _policy_for(self, ttl: object, tags: object) -> Policy:
        if ttl is None and (tags == () or tags is None):
            return self._policy
        return self._make_policy(ttl, () if tags is None else tags)

    # --- reads ----------------------------------------------------------------------

    def _lookup(self, key: Hashable, start: int = 0, count: bool = True) -> Any:
        """``(raw, seconds_left)`` from the first tier holding the key (promoted
        up), or None. ``raw`` may be an envelope."""
        lookups = self._lookups
        for i in range(start, self._n):
            try:
                hit = lookups[i](key)
            except _SOFT_ERRORS:
                next(self._errors[i])
                continue
            if hit is not None:
                if count:
                    next(self._hits[i])
                if self._promote_to[i]:
                    self._promote_hit(i, key, hit)
                return hit
        if count:
            next(self._misses)
            if self._alert_below is not None:
                self._check_alert()
        return None

    async def _alookup(self, key: Hashable, start: int = 0, count: bool = True) -> Any:
        for i in range(start, self._n):
            tier: Any = self._tiers[i]
            try:
                hit = await tier.alookup(key) if self._async_tier[i] else self._lookups[i](key)
            except _SOFT_ERRORS:
                next(self._errors[i])
                continue
            if hit is not None:
                if count:
                    next(self._hits[i])
                if self._promote_to[i]:
                    await self._apromote_hit(i, key, hit)
                return hit
        if count:
            next(self._misses)
            if self._alert_below is not None:
                self._check_alert()
        return None

    def _promote_ttl(self, j: int, seconds_left: float | None) -> float | None:
        default = self._tier_ttls[j]
        if seconds_left is None:
            return default
        return seconds_left if default is None or default > seconds_left else default

    def _promote_hit(self, i: int, key: Hashable, hit: tuple[Any, float | None]) -> None:
        raw, seconds_left = hit
        if seconds_left is not None and seconds_left <= 0:
            return
        tags = _open(raw)[2]
        for j in self._promote_to[i]:
            try:
                self._tiers[j].set(key, raw, self._promote_ttl(j, seconds_left), tags)
            except _SOFT_ERRORS:
                next(self._errors[j])

    async def _apromote_hit(self, i: int, key: Hashable, hit: tuple[Any, float | None]) -> None:
        raw, seconds_left = hit
        if seconds_left is not None and seconds_left <= 0:
            return
        tags = _open(raw)[2]
        for j in self._promote_to[i]:
            tier: Any = self._tiers[j]
            ttl = self._promote_ttl(j, seconds_left)
            try:
                if self._async_tier[j]:
                    await tier.aset(key, raw, ttl, tags)
                else:
                    tier.set(key, raw, ttl, tags)
            except _SOFT_ERRORS:
                next(self._errors[j])

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value from the first tier holding ``key``, or ``default``."""
        hit = self._lookup(key)
        return default if hit is None else _unwrap(hit[0])

    def lookup(self, key: Hashable) -> tuple[Any, float | None] | None:
        """``(value, seconds_left)`` or None. ``seconds_left`` (None: no expiry) is
        that of the copy that answered, stale grace included; a lower tier may
        keep the entry longer, never beyond the TTL it was set with."""
        hit = self._lookup(key)
        return None if hit is None else (_unwrap(hit[0]), hit[1])

    async def aget(self, key: Hashable, default: Any = None) -> Any:
        """``get`` for asyncio (async tiers such as RedisTier are awaited)."""
        hit = await self._alookup(key)
        return default if hit is None else _unwrap(hit[0])

    async def alookup(self, key: Hashable) -> tuple[Any, float | None] | None:
        """``lookup`` for asyncio."""
        hit = await self._alookup(key)
        return None if hit is None else (_unwrap(hit[0]), hit[1])

    def __contains__(self, key: Hashable) -> bool:
        return self._lookup(key, count=False) is not None

    # --- writes ---------------------------------------------------------------------

    def _pack(self, value: Any, tags: tuple[str, ...], fresh_until: float | None) -> Any:
        if fresh_until is not None or (tags and self._tags_in_envelope):
            return {_ENV: [fresh_until, list(tags), value]}
        return value

    def _plan(
        self, value: Any, ttl: float | None, tags: tuple[str, ...], stale_ttl: float | None
    ) -> tuple[Any, float | None]:
        fresh_until = None
        if stale_ttl is not None and ttl is not None:
            fresh_until = self._clock() + ttl
            ttl += stale_ttl
        return self._pack(value, tags, fresh_until), ttl

    def _write(self, key: Hashable, raw: Any, ttl: float | None, tags: tuple[str, ...]) -> None:
        for i in self._through:
            try:
                self._tiers[i].set(key, raw, ttl, tags)
            except _SOFT_ERRORS:
                next(self._errors[i])

    async def _awrite(
        self, key: Hashable, raw: Any, ttl: float | None, tags: tuple[str, ...]
    ) -> None:
        for i in self._through:
            tier: Any = self._tiers[i]
            try:
                if self._async_tier[i]:
                    await tier.aset(key, raw, ttl, tags)
                else:
                    tier.set(key, raw, ttl, tags)
            except _SOFT_ERRORS:
                next(self._errors[i])

    def set(
        self, key: Hashable, value: Any, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Write ``value`` to every ``"through"`` tier (``ttl`` None: each tier's default)."""
        policy = self._policy_for(ttl, tags)
        raw, store_ttl = self._plan(value, policy.ttl, policy.tags, self._stale_ttl)
        self._write(key, raw, store_ttl, policy.tags)

    async def aset(
        self, key: Hashable, value: Any, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """``set`` for asyncio."""
        policy = self._policy_for(ttl, tags)
        raw, store_ttl = self._plan(value, policy.ttl, policy.tags, self._stale_ttl)
        await self._awrite(key, raw, store_ttl, policy.tags)

    def _store(self, key: Hashable, value: Any, policy: Policy) -> None:
        if value is None:
            if policy.negative_ttl is None:
                return
            raw: Any = self._pack(None, policy.tags, None)
            ttl: float | None = policy.negative_ttl
        else:
            raw, ttl = self._plan(value, policy.ttl, policy.tags, policy.stale_ttl)
        self._write(key, raw, ttl, policy.tags)

    async def _astore(self, key: Hashable, value: Any, policy: Policy) -> None:
        if value is None:
            if policy.negative_ttl is None:
                return
            raw: Any = self._pack(None, policy.tags, None)
            ttl: float | None = policy.negative_ttl
        else:
            raw, ttl = self._plan(value, policy.ttl, policy.tags, policy.stale_ttl)
        await self._awrite(key, raw, ttl, policy.tags)

    def _each_tier(self, op: Callable[[Any], Any]) -> list[Any]:
        """``op(tier)`` on every tier; the first error is raised after all ran."""
        results: list[Any] = []
        first: BaseException | None = None
        for tier in self._tiers:
            try:
                results.append(op(tier))
            except Exception as exc:
                if first is None:
                    first = exc
        if first is not None:
            raise first
        return results

    def _invalidate_flight(self, key: Hashable | None) -> None:
        """A compute running for ``key`` (None: any) must not store its result."""
        with contextlib.suppress(TypeError):  # an unhashable key: the tiers say so
            self._flights.invalidate(key)

    def delete(self, key: Hashable) -> bool:
        """Remove ``key`` from every tier; True when any tier held it. A compute
        of the key running meanwhile returns its value but does not store it."""
        self._invalidate_flight(key)
        return any(self._each_tier(lambda t: t.delete(key)))

    async def adelete(self, key: Hashable) -> bool:
        """``delete`` for asyncio."""
        self._invalidate_flight(key)
        found = False
        first: BaseException | None = None
        for i, t in enumerate(self._tiers):
            tier: Any = t
            try:
                if self._async_tier[i] and callable(getattr(tier, "adelete", None)):
                    found = bool(await tier.adelete(key)) or found
                else:
                    found = bool(tier.delete(key)) or found
            except Exception as exc:
                if first is None:
                    first = exc
        if first is not None:
            raise first
        return found

    def invalidate_tag(self, tag: str) -> int:
        """Remove every entry set with ``tag`` from every tier; the total removed
        (an entry held by two tiers counts twice)."""
        if type(tag) is not str:
            raise InputTypeError(f"tag must be a str, not {type(tag).__name__}")
        self._invalidate_flight(None)  # running computes may carry the tag
        return sum(int(n) for n in self._each_tier(lambda t: t.invalidate_tag(tag)))

    def clear(self) -> None:
        """Remove every entry of every tier."""
        self._invalidate_flight(None)
        self._each_tier(lambda t: t.clear())

    def flush(self) -> None:
        """Flush every tier that buffers writes (tiers without ``flush`` are skipped)."""
        self._each_tier(lambda t: t.flush() if callable(getattr(t, "flush", None)) else None)

    # --- get_or_set -----------------------------------------------------------------

    def get_or_set(
        self,
        key: Hashable,
        compute: Callable[[], V],
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> V:
        """The cached value, or ``compute()`` stored and returned (single-flight:
        concurrent callers for the key share one compute and its exception)."""
        if not callable(compute):
            raise InputTypeError(f"compute must be callable, not {type(compute).__name__}")
        policy = self._policy_for(ttl, tags)
        hit = self._lookup(key)
        if hit is not None:
            value: V = self._on_hit(key, hit[0], compute, policy)
            return value
        computed: V = self._on_miss(key, compute, policy)
        return computed

    def _on_hit(self, key: Hashable, raw: Any, compute: Callable[[], Any], policy: Policy) -> Any:
        """Count the hit; a stale entry starts a background refresh."""
        next(policy.account.hits)
        if type(raw) is not dict:
            return raw
        value, fresh_until, _ = _open(raw)
        if fresh_until is not None and self._clock() >= fresh_until:
            next(policy.account.stale_hits)
            self._refresh_in_thread(key, compute, policy)
        return value

    def _on_miss(self, key: Hashable, compute: Callable[[], Any], policy: Policy) -> Any:
        """Single-flight compute of a missing key (this caller leads or waits)."""
        account = policy.account
        next(account.misses)
        while True:
            flight, leader = self._flights.join(key, None)
            if leader:
                return self._lead(key, flight, compute, policy, refresh=False)
            if (flight.loop is not None and flight.loop is _running_loop()) or (
                flight.leader == threading.get_ident()
            ):
                # The leader is a task of the loop this thread runs, or this very
                # thread (a compute asking for its own key): waiting would never end.
                return self._compute_store(key, compute, policy)
            kind, outcome = flight.wait()
            if kind == VALUE:
                next(account.coalesced)
                return outcome
            if kind == ERROR:
                raise outcome
            # RETRY: the leader was interrupted; start over (maybe as the leader).
            hit = self._lookup(key, count=False)
            if hit is not None:
                return _unwrap(hit[0])

    def _lead(
        self,
        key: Hashable,
        flight: Flight,
        compute: Callable[[], Any],
        policy: Policy,
        refresh: bool,
    ) -> Any:
        try:
            value = self._lead_compute(key, compute, policy, refresh)
        except Exception as exc:
            self._flights.land(key, flight, ERROR, exc)
            raise
        except BaseException:
            self._flights.land(key, flight, RETRY, None)
            raise
        if value is MISSING:
            self._flights.land(key, flight, RETRY, None)
        else:
            self._flights.land(key, flight, VALUE, value)
        return value

    def _lead_compute(
        self, key: Hashable, compute: Callable[[], Any], policy: Policy, refresh: bool
    ) -> Any:
        if not refresh:
            # Another leader may have stored the value between our miss and now.
            hit = self._lookup(key, count=False)
            if hit is not None:
                return _unwrap(hit[0])
        lock_tier = self._lock_tier
        if lock_tier is None:
            return self._compute_store(key, compute, policy)
        token = self._try_lock(key)
        if token is None:
            if refresh:  # another process refreshes it
                return MISSING
            return self._wait_for_holder(key, compute, policy)
        return self._compute_locked(key, compute, policy, token, recheck=not refresh)

    def _lock_service_down(self) -> bool:
        """The lock tier says its backend is unreachable (a tier that cannot
        lock right now returns None from acquire_lock, like a held lock)."""
        try:
            return self._lock_tier.stats().get("available", True) is False
        except Exception:
            return True

    def _try_lock(self, key: Hashable) -> Any:
        """A token, None (held elsewhere), or True (no lock service: go without)."""
        try:
            token = self._lock_tier.acquire_lock(key, self._lock_timeout)
        except CacheUnavailable:
            return True
        if token is None and self._lock_service_down():
            return True
        return token

    def _unlock(self, key: Hashable, token: Any) -> None:
        if token is True:
            return
        with contextlib.suppress(CacheUnavailable):  # else the lock expires by itself
            self._lock_tier.release_lock(key, token)

    def _compute_locked(
        self, key: Hashable, compute: Callable[[], Any], policy: Policy, token: Any, recheck: bool
    ) -> Any:
        try:
            if recheck:
                hit = self._lookup(key, count=False)
                if hit is not None:
                    return _unwrap(hit[0])
            return self._compute_store(key, compute, policy)
        finally:
            self._unlock(key, token)

    def _wait_for_holder(self, key: Hashable, compute: Callable[[], Any], policy: Policy) -> Any:
        """Another process holds the key's lock: poll for its value."""
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.002
        while True:
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            hit = self._lookup(key, count=False)
            if hit is not None:
                next(policy.account.coalesced)
                return _unwrap(hit[0])
            token = self._try_lock(key)
            if token is not None:  # the holder finished without storing, or died
                return self._compute_locked(key, compute, policy, token, recheck=True)
            if time.monotonic() >= deadline:
                return self._compute_store(key, compute, policy)
            delay = min(delay * 2, 0.1)

    def _compute_store(self, key: Hashable, compute: Callable[[], Any], policy: Policy) -> Any:
        account = policy.account
        flight = self._flights.current(key)
        start = time.perf_counter()
        try:
            value = compute()
        except Exception:
            next(account.compute_errors)
            raise
        if inspect.isawaitable(value):
            close = getattr(value, "close", None)
            if callable(close):
                close()  # no "never awaited" warning
            raise InputTypeError(
                "compute returned an awaitable: use aget_or_set (or an async @cached function)"
            )
        account.record_compute(time.perf_counter() - start)
        if flight is None or not flight.invalidated:
            self._store(key, value, policy)
        return value

    def _refresh_in_thread(self, key: Hashable, compute: Callable[[], Any], policy: Policy) -> None:
        flight, leader = self._flights.join(key, None)
        if not leader:
            return  # a refresh (or a compute) of this key is already running
        flight.leader = None  # led by the refresh thread, not by this caller
        thread = threading.Thread(
            target=self._refresh_run,
            args=(key, flight, compute, policy),
            name=f"overdrive-cache-refresh[{self.name}]",
            daemon=True,
        )
        with self._bg_lock:
            if self._closed:
                self._flights.land(key, flight, RETRY, None)
                return
            self._bg_threads.add(thread)
        try:
            thread.start()
        except RuntimeError:  # no thread available: the stale value keeps being served
            with self._bg_lock:
                self._bg_threads.discard(thread)
            self._flights.land(key, flight, RETRY, None)

    def _refresh_run(
        self, key: Hashable, flight: Flight, compute: Callable[[], Any], policy: Policy
    ) -> None:
        try:
            next(policy.account.refreshes)
            self._lead(key, flight, compute, policy, refresh=True)
        except Exception:
            logger.warning(
                "cache %s: background refresh of %r failed", self.name, key, exc_info=True
            )
        finally:
            with self._bg_lock:
                self._bg_threads.discard(threading.current_thread())

    # --- async get_or_set ----------------------------------------------------------

    async def aget_or_set(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[V]] | Callable[[], V],
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> V:
        """``get_or_set`` for asyncio; ``compute`` may return a value or an awaitable.
        Single-flight across tasks and threads alike."""
        if not callable(compute):
            raise InputTypeError(f"compute must be callable, not {type(compute).__name__}")
        policy = self._policy_for(ttl, tags)
        hit = await self._alookup(key)
        if hit is not None:
            value: V = self._aon_hit(key, hit[0], compute, policy)
            return value
        result: V = await self._aon_miss(key, compute, policy)
        return result

    def _aon_hit(self, key: Hashable, raw: Any, compute: Callable[[], Any], policy: Policy) -> Any:
        """``on_hit`` for asyncio callers: a stale entry is refreshed by a task."""
        next(policy.account.hits)
        if type(raw) is not dict:
            return raw
        value, fresh_until, _ = _open(raw)
        if fresh_until is not None and self._clock() >= fresh_until:
            next(policy.account.stale_hits)
            self._refresh_in_task(key, compute, policy)
        return value

    async def _aon_miss(self, key: Hashable, compute: Callable[[], Any], policy: Policy) -> Any:
        """``on_miss`` for asyncio callers."""
        account = policy.account
        next(account.misses)
        loop = asyncio.get_running_loop()
        while True:
            flight, leader = self._flights.join(key, loop)
            if leader:
                return await self._alead(key, flight, compute, policy, refresh=False)
            if flight.leader is asyncio.current_task():  # a compute awaiting its own key
                return await self._acompute_store(key, compute, policy)
            kind, outcome = await flight.wait_async()
            if kind == VALUE:
                next(account.coalesced)
                return outcome
            if kind == ERROR:
                raise outcome
            hit = await self._alookup(key, count=False)
            if hit is not None:
                return _unwrap(hit[0])

    async def _alead(
        self,
        key: Hashable,
        flight: Flight,
        compute: Callable[[], Any],
        policy: Policy,
        refresh: bool,
    ) -> Any:
        try:
            value = await self._alead_compute(key, compute, policy, refresh)
        except Exception as exc:
            self._flights.land(key, flight, ERROR, exc)
            raise
        except BaseException:
            self._flights.land(key, flight, RETRY, None)
            raise
        if value is MISSING:
            self._flights.land(key, flight, RETRY, None)
        else:
            self._flights.land(key, flight, VALUE, value)
        return value

    async def _alead_compute(
        self, key: Hashable, compute: Callable[[], Any], policy: Policy, refresh: bool
    ) -> Any:
        if not refresh:
            hit = await self._alookup(key, count=False)
            if hit is not None:
                return _unwrap(hit[0])
        if self._lock_tier is None:
            return await self._acompute_store(key, compute, policy)
        token = await self._atry_lock(key)
        if token is None:
            if refresh:
                return MISSING
            return await self._await_holder(key, compute, policy)
        return await self._acompute_locked(key, compute, policy, token, recheck=not refresh)

    async def _atry_lock(self, key: Hashable) -> Any:
        tier = self._lock_tier
        try:
            acquire = getattr(tier, "aacquire_lock", None)
            if callable(acquire):
                token = await acquire(key, self._lock_timeout)
            else:  # one short round trip; RedisTier has no async lock
                token = tier.acquire_lock(key, self._lock_timeout)
        except CacheUnavailable:
            return True
        if token is None and self._lock_service_down():
            return True
        return token

    async def _aunlock(self, key: Hashable, token: Any) -> None:
        if token is True:
            return
        tier = self._lock_tier
        try:
            release = getattr(tier, "arelease_lock", None)
            if callable(release):
                await release(key, token)
            else:
                tier.release_lock(key, token)
        except CacheUnavailable:
            pass

    async def _acompute_locked(
        self, key: Hashable, compute: Callable[[], Any], policy: Policy, token: Any, recheck: bool
    ) -> Any:
        try:
            if recheck:
                hit = await self._alookup(key, count=False)
                if hit is not None:
                    return _unwrap(hit[0])
            return await self._acompute_store(key, compute, policy)
        finally:
            await self._aunlock(key, token)

    async def _await_holder(self, key: Hashable, compute: Callable[[], Any], policy: Policy) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_timeout
        delay = 0.002
        while True:
            await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
            hit = await self._alookup(key, count=False)
            if hit is not None:
                next(policy.account.coalesced)
                return _unwrap(hit[0])
            token = await self._atry_lock(key)
            if token is not None:
                return await self._acompute_locked(key, compute, policy, token, recheck=True)
            if loop.time() >= deadline:
                return await self._acompute_store(key, compute, policy)
            delay = min(delay * 2, 0.1)

    async def _acompute_store(
        self, key: Hashable, compute: Callable[[], Any], policy: Policy
    ) -> Any:
        account = policy.account
        flight = self._flights.current(key)
        start = time.perf_counter()
        try:
            value = compute()
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            next(account.compute_errors)
            raise
        account.record_compute(time.perf_counter() - start)
        if flight is None or not flight.invalidated:
            await self._astore(key, value, policy)
        return value

    def _refresh_in_task(self, key: Hashable, compute: Callable[[], Any], policy: Policy) -> None:
        loop = asyncio.get_running_loop()
        flight, leader = self._flights.join(key, loop)
        if not leader:
            return
        flight.leader = None  # led by the refresh task, not by this caller
        if self._closed:
            self._flights.land(key, flight, RETRY, None)
            return
        task = loop.create_task(self._arefresh_run(key, flight, compute, policy))
        self._bg_tasks.add(task)
        task.add_done_callback(self._bg_tasks.discard)

    async def _arefresh_run(
        self, key: Hashable, flight: Flight, compute: Callable[[], Any], policy: Policy
    ) -> None:
        next(policy.account.refreshes)
        try:
            await self._alead(key, flight, compute, policy, refresh=True)
        except Exception:
            logger.warning(
                "cache %s: background refresh of %r failed", self.name, key, exc_info=True
            )

    # --- stats and alerts ----------------------------------------------------------

    def _check_alert(self) -> None:
        below = self._alert_below
        if below is None:
            return
        hits = sum(self._tier_hits())
        requests = hits + read_count(self._misses)
        if requests < self._alert_min or hits >= below * requests:
            return
        now = self._clock()
        with self._alert_lock:
            last = self._last_alert
            if last is not None and now - last < self._alert_interval:
                return
            self._last_alert = now
            self._alerts += 1
        stats = self.stats()
        try:
            self._on_alert(stats)
        except Exception:
            logger.exception("cache %s: on_alert raised", self.name)

    def _log_alert(self, stats: dict[str, Any]) -> None:
        logger.warning(
            "cache %s: hit ratio %.1f%% over %d requests is below alert_below=%.1f%%",
            self.name,
            100.0 * stats["hit_ratio"],
            stats["requests"],
            100.0 * (self._alert_below or 0.0),
        )

    def _tier_hits(self) -> list[int]:
        hits = [read_count(c) for c in self._hits]
        hits[0] += sum(read_count(a.fast_hits) for a in list(self._accounts))
        return hits

    def stats(self) -> dict[str, Any]:
        """Requests, hits, misses and hit ratios (overall and per tier, with each
        tier's own ``stats()``), computes, compute and saved seconds, saved cost,
        coalesced waits, stale hits, refreshes, alerts, and per-function figures
        of ``@cached`` functions under ``"functions"``."""
        hits = self._tier_hits()
        misses = read_count(self._misses)
        requests = sum(hits) + misses
        tiers = []
        reaching = requests
        for i, tier in enumerate(self._tiers):
            h = hits[i]
            try:
                own = tier.stats()
            except Exception as exc:
                own = {"error": f"{type(exc).__name__}: {exc}"}
            tiers.append(
                {
                    "name": tier.name,
                    "write": self._write_policies[i],
                    "hits": h,
                    "misses": reaching - h,
                    "hit_ratio": h / reaching if reaching else 0.0,
                    "errors": read_count(self._errors[i]),
                    "stats": own,
                }
            )
            reaching -= h
        own_stats = self._account.stats()
        functions = {}
        totals = {
            k: own_stats[k]
            for k in (
                "computes",
                "compute_seconds",
                "saved_seconds",
                "saved_cost",
                "coalesced",
                "compute_errors",
                "stale_hits",
                "refreshes",
            )
        }
        for account in list(self._accounts):
            s = account.stats()
            name = account.name
            while name in functions:
                name += "'"
            functions[name] = s
            for k in totals:
                totals[k] += s[k]
        with self._alert_lock:
            alerts = self._alerts
        return {
            "name": self.name,
            "requests": requests,
            "hits": sum(hits),
            "misses": misses,
            "hit_ratio": sum(hits) / requests if requests else 0.0,
            **totals,
            "in_flight": len(self._flights),
            "alerts": alerts,
            "tiers": tiers,
            "functions": functions,
        }

    # --- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Wait for background refresh threads, then close (flush) every tier.
        Idempotent. Refresh tasks are awaited by :meth:`aclose`."""
        with self._bg_lock:
            self._closed = True
            threads = list(self._bg_threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()
        self._each_tier(lambda t: t.close())

    async def aclose(self) -> None:
        """Await this loop's background refresh tasks, then close every tier
        (``aclose`` where a tier has one)."""
        with self._bg_lock:
            self._closed = True
            threads = list(self._bg_threads)
        loop = asyncio.get_running_loop()
        tasks = [t for t in list(self._bg_tasks) if t.get_loop() is loop]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for thread in threads:
            await asyncio.to_thread(thread.join)
        first: BaseException | None = None
        for t in self._tiers:
            tier: Any = t
            try:
                if callable(getattr(tier, "aclose", None)):
                    await tier.aclose()
                else:
                    tier.close()
            except Exception as exc:
                if first is None:
                    first = exc
        if first is not None:
            raise first

    def __enter__(self) -> TieredCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TieredCache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
