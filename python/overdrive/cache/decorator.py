"""``@cached``: cache a sync or async function's results in a TieredCache.

The default key is ``(f"{module}.{qualname}", args, tuple(sorted(kwargs.items())))``:
an in-memory tier hashes it directly; tiers that store bytes turn it into
:func:`~overdrive.cache.keys.stable_key`, the same in every process. An
argument that cannot be part of a key (unhashable, or with no stable encoding
when a byte tier is in the stack) raises
:class:`~overdrive.exceptions.InputTypeError` naming it; pass ``key=`` to
build keys yourself (``key(*args, **kwargs)`` returns the whole key).

The hit path is short: build the key, one lookup in the first tier, count the
hit, return. Over a ``MemoryTier`` with the default key, a sync wrapper is a
Rust ``_CachedHit`` doing all of that without a Python frame (keyword calls,
misses and envelope entries go back to the Python path, which builds the same
keys); an async wrapper asks it for a plain hit first. An async function's
wrapper is itself ``async def`` (measured faster than returning a ready-made
awaitable from a plain function, and it is what ``asyncio.create_task``,
``gather`` and ``wait_for`` expect).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar, overload

from .._core import MemoryTier as _MemoryTier  # type: ignore[attr-defined,unused-ignore]
from .._core import _CachedHit  # type: ignore[attr-defined,unused-ignore]
from ..exceptions import InputTypeError
from ._savings import Account
from ._tier import MISSING, Tier
from .keys import stable_key
from .tiered import _ENV, TieredCache, _seconds, takes_any_key

__all__ = ["cached"]

F = TypeVar("F", bound=Callable[..., Any])
_EMPTY: tuple[()] = ()
_NO: Any = object()  # "not in tier 0" (a cached None is a value)


def _default_cache() -> TieredCache:
    from .._core import MemoryTier  # type: ignore[attr-defined,unused-ignore]

    return TieredCache([MemoryTier(max_entries=10_000)])


def _as_cache(cache: object) -> TieredCache:
    if cache is None:
        return _default_cache()
    if isinstance(cache, TieredCache):
        return cache
    if isinstance(cache, Tier):
        return TieredCache([cache], name=cache.name)
    raise InputTypeError(
        f"cache must be a TieredCache, a cache tier or None, not {type(cache).__name__}"
    )


class _KeyCheck:
    """Finds the argument that cannot be part of a key (only on the error path)."""

    def __init__(self, fn: Callable[..., Any], qualname: str, stable: bool) -> None:
        self.fn = fn
        self.qualname = qualname
        self.stable = stable

    def _why(self, value: object) -> str | None:
        try:
            hash(value)
        except TypeError:
            return "is not hashable"
        if self.stable:
            try:
                stable_key(value)
            except TypeError:
                return "has no stable key encoding (a Redis/disk tier needs one)"
        return None

    def error(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], cause: BaseException
    ) -> Exception:
        try:
            params = list(inspect.signature(self.fn).parameters.values())
        except (TypeError, ValueError):
            params = []
        positional = [
            p.name
            for p in params
            if p.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        found: list[tuple[str, object, str]] = []
        for i, value in enumerate(args):
            why = self._why(value)
            if why is not None:
                name = positional[i] if i < len(positional) else f"*args[{i}]"
                found.append((name, value, why))
        for name, value in kwargs.items():
            why = self._why(value)
            if why is not None:
                found.append((name, value, why))
        if not found:
            return InputTypeError(f"{self.qualname}: the cache key is not usable: {cause}")
        name, value, why = found[0]
        return InputTypeError(
            f"{self.qualname}: argument {name!r} (a {type(value).__module__}."
            f"{type(value).__qualname__}) {why}, so it cannot be part of a cache key; "
            "pass key=... to @cached to build keys yourself"
        )


@overload
def cached(cache: F) -> F: ...


@overload
def cached(
    cache: TieredCache | Tier | None = None,
    *,
    ttl: float | None = None,
    key: Callable[..., Hashable] | None = None,
    tags: Iterable[str] = (),
    negative_ttl: float | None = None,
    stale_ttl: float | None = None,
    cost_per_call: float | None = None,
    typed: bool = True,
) -> Callable[[F], F]: ...


def cached(
    cache: Any = None,
    *,
    ttl: float | None = None,
    key: Callable[..., Hashable] | None = None,
    tags: Iterable[str] = (),
    negative_ttl: float | None = None,
    stale_ttl: float | None = None,
    cost_per_call: float | None = None,
    typed: bool = True,
) -> Any:
    """Cache a function's results (sync or ``async def``) in ``cache``.

    ``cache``: a :class:`TieredCache`, a single tier, or None for a private
    ``MemoryTier(max_entries=10_000)`` (``@cached`` bare works too). ``ttl``:
    seconds (None: the tiers' defaults). ``key``: ``key(*args, **kwargs)``
    returns the key (default: module.qualname, args and sorted kwargs).
    ``tags``: for ``cache.invalidate_tag``. ``negative_ttl``, ``stale_ttl``,
    ``cost_per_call``: as :class:`TieredCache`'s, per function (None: the
    cache's own setting). ``typed`` (default True): key by the arguments'
    types too.

    With ``typed=True`` (the default) ``f(1)``, ``f(1.0)`` and ``f(True)`` are
    three entries, so a hit returns what the call with *these* arguments
    returned. The types are those of the top-level arguments (as
    :func:`functools.lru_cache`'s ``typed``): in an in-memory tier ``f((1,))``
    and ``f((1.0,))`` still share an entry; tiers that store bytes keep them
    apart. With ``key=``, ``typed`` does not apply (the key function decides).
    ``typed=False`` saves about 50 ns per hit and lets equal arguments
    of different types share an entry, as ``lru_cache`` does by default.

    On a method, ``self`` is one of the arguments: it must be hashable (with a
    stable encoding when a Redis/disk tier is in the stack), or pass ``key=``
    to leave it out. ``None`` results are cached only with ``negative_ttl``.

    The wrapper has ``.cache`` (the TieredCache), ``.cache_key(*args, **kw)``,
    ``.invalidate(*args, **kw)`` (True when an entry was removed) and
    ``.stats()`` (this function's hits, misses, computes and savings).
    Concurrent calls with the same arguments compute once (single-flight).
    """
    if callable(cache) and not isinstance(cache, (TieredCache, Tier)):
        return cached()(cache)  # bare @cached
    tc = _as_cache(cache)
    if key is not None and not callable(key):
        raise InputTypeError(f"key must be callable or None, not {type(key).__name__}")
    if not isinstance(typed, bool):
        raise InputTypeError(f"typed must be a bool, not {type(typed).__name__}")
    if cost_per_call is not None:
        _seconds("cost_per_call", cost_per_call, zero_ok=True)
    # Checked now, so a bad argument fails at decoration time.
    tc._make_policy(
        ttl,
        tags,
        negative_ttl=MISSING if negative_ttl is None else negative_ttl,
        stale_ttl=MISSING if stale_ttl is None else stale_ttl,
    )

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise InputTypeError(f"@cached decorates a function, not a {type(fn).__name__}")
        qualname = f"{getattr(fn, '__module__', None)}.{getattr(fn, '__qualname__', repr(fn))}"
        account = tc._new_account(qualname, MISSING if cost_per_call is None else cost_per_call)
        policy = tc._make_policy(
            ttl,
            tags,
            negative_ttl=MISSING if negative_ttl is None else negative_ttl,
            stale_ttl=MISSING if stale_ttl is None else stale_ttl,
            account=account,
        )
        checker = _KeyCheck(fn, qualname, not all(takes_any_key(t) for t in tc.tiers))
        if inspect.iscoroutinefunction(fn):
            wrapper = _async_wrapper(fn, tc, policy, account, qualname, key, typed, checker)
        else:
            wrapper = _sync_wrapper(fn, tc, policy, account, qualname, key, typed, checker)
        return wrapper  # type: ignore[return-value]

    return decorate


def _arg_types(args: tuple[Any, ...]) -> Any:
    """The positional arguments' types, cheaply: one argument (the common
    case) gives its type alone, no tuple built through ``map``."""
    n = len(args)
    if n == 1:
        return type(args[0])
    if n == 2:
        return (type(args[0]), type(args[1]))
    return tuple(map(type, args))


def _types(args: tuple[Any, ...], items: tuple[tuple[str, Any], ...]) -> tuple[type, ...]:
    return tuple(map(type, args)) + tuple(type(v) for _, v in items)


def _make_key(
    qualname: str, key: Callable[..., Hashable] | None, typed: bool
) -> Callable[..., Hashable]:
    if key is not None:
        return key
    if typed:

        def typed_key(*args: Any, **kwargs: Any) -> Hashable:
            if kwargs:
                items = tuple(sorted(kwargs.items()))
                return (qualname, args, items, _types(args, items))
            return (qualname, args, _EMPTY, _arg_types(args))

        return typed_key

    def default_key(*args: Any, **kwargs: Any) -> Hashable:
        return (qualname, args, tuple(sorted(kwargs.items())) if kwargs else _EMPTY)

    return default_key


def _attach(
    wrapper: Any,
    fn: Callable[..., Any],
    tc: TieredCache,
    account: Account,
    make_key: Callable[..., Hashable],
) -> None:
    functools.update_wrapper(wrapper, fn)
    wrapper.cache = tc
    wrapper.cache_key = make_key

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        """Remove the entry of these arguments from every tier."""
        return tc.delete(make_key(*args, **kwargs))

    def stats() -> dict[str, Any]:
        """This function's hits, misses, computes and savings."""
        return account.stats()

    wrapper.invalidate = invalidate
    wrapper.stats = stats


def _sync_wrapper(
    fn: Callable[..., Any],
    tc: TieredCache,
    policy: Any,
    account: Account,
    qualname: str,
    key: Callable[..., Hashable] | None,
    typed: bool,
    checker: _KeyCheck,
) -> Callable[..., Any]:
    make_key = _make_key(qualname, key, typed)
    get0 = tc.tiers[0].get  # get(k, sentinel): no (value, seconds) tuple to build
    tier0_hits = tc._hits[0]
    fast_hits = account.fast_hits
    lookup = tc._lookup
    on_hit = tc._on_hit
    on_miss = tc._on_miss
    sorted_ = sorted
    tuple_ = tuple
    type_ = type
    len_ = len
    dict_ = dict
    env = _ENV

    def slow(k: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any], start: int) -> Any:
        try:
            hit = lookup(k, start)
            if hit is None and checker.stable:
                stable_key(k)  # fail before computing, not when storing
        except TypeError as exc:
            raise checker.error(args, kwargs, exc) from None

        def compute() -> Any:
            return fn(*args, **kwargs)

        if hit is not None:
            return on_hit(k, hit[0], compute, policy)
        return on_miss(k, compute, policy)

    if key is None and typed:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k: Hashable
            if kwargs:
                items = tuple_(sorted_(kwargs.items()))
                k = (qualname, args, items, _types(args, items))
            else:
                k = (
                    qualname,
                    args,
                    _EMPTY,
                    type_(args[0]) if len_(args) == 1 else _arg_types(args),
                )
            try:
                v = get0(k, _NO)
            except Exception:
                return slow(k, args, kwargs, 0)
            if v is not _NO:
                if type(v) is not dict_ or env not in v:
                    next(fast_hits)  # this function's hit and tier 0's
                    return v
                next(tier0_hits)
                return on_hit(k, v, lambda: fn(*args, **kwargs), policy)
            return slow(k, args, kwargs, 1)

    elif key is None:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = (qualname, args, tuple_(sorted_(kwargs.items())) if kwargs else _EMPTY)
            try:
                v = get0(k, _NO)
            except Exception:
                return slow(k, args, kwargs, 0)
            if v is not _NO:
                if type(v) is not dict_ or env not in v:
                    next(fast_hits)  # this function's hit and tier 0's
                    return v
                next(tier0_hits)
                return on_hit(k, v, lambda: fn(*args, **kwargs), policy)
            return slow(k, args, kwargs, 1)

    else:
        user_key = make_key

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = user_key(*args, **kwargs)  # a key function's own errors propagate
            try:
                v = get0(k, _NO)
            except Exception:
                return slow(k, args, kwargs, 0)
            if v is not _NO:
                if type(v) is not dict_ or env not in v:
                    next(fast_hits)
                    return v
                next(tier0_hits)
                return on_hit(k, v, lambda: fn(*args, **kwargs), policy)
            return slow(k, args, kwargs, 1)

    if key is None and type(tc.tiers[0]) is _MemoryTier:
        # The hit path in Rust: the same key, one lookup, no Python frame.
        # Keyword calls go to ``wrapper``; misses, envelopes and lookup
        # errors to ``rest``.
        def rest(k: Hashable, args: tuple[Any, ...], v: Any, start: int) -> Any:
            if v is not _NO:
                next(tier0_hits)
                return on_hit(k, v, lambda: fn(*args), policy)
            return slow(k, args, {}, start)

        fast = _CachedHit(qualname, tc.tiers[0], typed, _NO, env, fast_hits, rest, wrapper)
        _attach(fast, fn, tc, account, make_key)
        return fast

    _attach(wrapper, fn, tc, account, make_key)
    return wrapper


def _async_wrapper(
    fn: Callable[..., Any],
    tc: TieredCache,
    policy: Any,
    account: Account,
    qualname: str,
    key: Callable[..., Hashable] | None,
    typed: bool,
    checker: _KeyCheck,
) -> Callable[..., Any]:
    make_key = _make_key(qualname, key, typed)
    tier0_async = tc._async_tier[0]
    get0 = tc.tiers[0].get  # get(k, sentinel): no (value, seconds) tuple to build
    tier0_hits = tc._hits[0]
    fast_hits = account.fast_hits
    alookup = tc._alookup
    aon_hit = tc._aon_hit
    aon_miss = tc._aon_miss
    sorted_ = sorted
    tuple_ = tuple
    type_ = type
    len_ = len
    dict_ = dict
    env = _ENV

    async def slow(k: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any], start: int) -> Any:
        try:
            hit = await alookup(k, start)
            if hit is None and checker.stable:
                stable_key(k)
        except TypeError as exc:
            raise checker.error(args, kwargs, exc) from None

        def compute() -> Any:
            return fn(*args, **kwargs)

        if hit is not None:
            return aon_hit(k, hit[0], compute, policy)
        return await aon_miss(k, compute, policy)

    if key is None and not tier0_async:

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            k: Hashable
            if not typed:
                k = (qualname, args, tuple_(sorted_(kwargs.items())) if kwargs else _EMPTY)
            elif kwargs:
                items = tuple_(sorted_(kwargs.items()))
                k = (qualname, args, items, _types(args, items))
            else:
                k = (
                    qualname,
                    args,
                    _EMPTY,
                    type_(args[0]) if len_(args) == 1 else _arg_types(args),
                )
            try:
                v = get0(k, _NO)
            except Exception:
                return await slow(k, args, kwargs, 0)
            if v is not _NO:
                if type(v) is not dict_ or env not in v:
                    next(fast_hits)  # this function's hit and tier 0's
                    return v
                next(tier0_hits)
                return aon_hit(k, v, lambda: fn(*args, **kwargs), policy)
            return await slow(k, args, kwargs, 1)

        if type(tc.tiers[0]) is _MemoryTier:
            # A plain hit without keywords: key, lookup and count in one
            # Rust call; anything else takes the full path above.
            full = wrapper
            probe = _CachedHit(qualname, tc.tiers[0], typed, _NO, env, fast_hits, full, full).probe

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                if not kwargs:
                    v = probe(args)
                    if v is not _NO:
                        return v
                return await full(*args, **kwargs)

    else:

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await slow(make_key(*args, **kwargs), args, kwargs, 0)

    _attach(wrapper, fn, tc, account, make_key)
    return wrapper
