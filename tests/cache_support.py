"""Test support for the cache: ModelTier, a small pure-Python tier (a dict with
expiry times and an injected clock) that keeps the Tier contract exactly, and
a FakeClock. The model-based TieredCache tests stack ModelTiers; the same
tests run on the real tiers where those exist.

``ModelTier(serializer=...)`` behaves like a tier that stores bytes: keys go
through ``stable_key`` and values through the serializer, so what comes back
is what a Redis or disk tier would hand back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from overdrive.cache import Serializer, stable_key
from overdrive.exceptions import ConfigurationError, InputTypeError


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class ModelTier:
    """A dict with expiry times: the reference tier for model-based tests."""

    def __init__(
        self,
        clock: Callable[[], float],
        ttl: float | None = None,
        name: str = "model",
        serializer: Serializer | None = None,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self._clock = clock
        self._serializer = serializer
        self.any_hashable_key = serializer is None
        self._lock = threading.Lock()
        # key -> (value, expires_at | None, tags)
        self._data: dict[Hashable, tuple[Any, float | None, frozenset[str]]] = {}
        self.counts = dict.fromkeys(("hits", "misses", "sets", "deletes", "errors"), 0)
        self.closed = False

    def _key(self, key: Hashable) -> Hashable:
        if self._serializer is not None:
            return stable_key(key)
        try:
            hash(key)
        except TypeError:
            raise InputTypeError(f"unhashable key {type(key).__name__}") from None
        return key

    def _live(self, k: Hashable) -> tuple[Any, float | None, frozenset[str]] | None:
        entry = self._data.get(k)
        if entry is None:
            return None
        if entry[1] is not None and self._clock() >= entry[1]:
            del self._data[k]
            return None
        return entry

    def lookup(self, key: Hashable) -> tuple[Any, float | None] | None:
        k = self._key(key)
        with self._lock:
            entry = self._live(k)
            if entry is None:
                self.counts["misses"] += 1
                return None
            self.counts["hits"] += 1
            value, expires, _ = entry
            left = None if expires is None else expires - self._clock()
        if self._serializer is not None:
            value = self._serializer.loads(value)
        return value, left

    def get(self, key: Hashable, default: Any = None) -> Any:
        hit = self.lookup(key)
        return default if hit is None else hit[0]

    def set(
        self, key: Hashable, value: Any, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        k = self._key(key)
        if ttl is not None and not ttl > 0:
            raise ConfigurationError(f"invalid ttl={ttl!r}")
        if self._serializer is not None:
            value = self._serializer.dumps(value)
        ttl = self.ttl if ttl is None else ttl
        with self._lock:
            expires = None if ttl is None else self._clock() + ttl
            self._data[k] = (value, expires, frozenset(tags))
            self.counts["sets"] += 1

    def delete(self, key: Hashable) -> bool:
        k = self._key(key)
        with self._lock:
            found = self._live(k) is not None
            self._data.pop(k, None)
            self.counts["deletes"] += found
            return found

    def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Any]:
        out = {}
        for key in keys:
            hit = self.lookup(key)
            if hit is not None:
                out[key] = hit[0]
        return out

    def set_many(
        self, items: Mapping[Hashable, Any], ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        tags = tuple(tags)
        for key, value in items.items():
            self.set(key, value, ttl, tags)

    def invalidate_tag(self, tag: str) -> int:
        with self._lock:
            now = self._clock()
            doomed = [
                k for k, e in self._data.items() if tag in e[2] and (e[1] is None or now < e[1])
            ]
            for k in doomed:
                self._data.pop(k, None)
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def close(self) -> None:
        self.closed = True

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self.counts, "entries": len(self._data)}

    def raw_expiry(self, key: Hashable) -> float | None:
        """The stored expiry time (for promotion tests); KeyError when absent."""
        with self._lock:
            return self._data[self._key(key)][1]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return self._live(self._key(key)) is not None


def keyed_function(*args: Any, **kwargs: Any) -> Any:
    """A module-level function whose @cached key another process recomputes."""
    return [args, kwargs]
