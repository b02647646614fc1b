"""The contract every cache tier keeps, so :class:`TieredCache` can stack them.

A tier maps keys to values with an optional time to live. ``lookup`` returns
the value *and* the seconds it has left, so a value promoted from a lower tier
is never kept past the expiry it had there.

Keys: :class:`MemoryTier` takes any hashable Python object (compared by its
``__hash__``/``__eq__``). Tiers that store bytes (Redis, disk) turn keys into
strings with :func:`overdrive.cache.keys.stable_key`, which is the same in every
process.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, runtime_checkable

__all__ = ["MISSING", "Tier", "Missing"]


class Missing:
    """The type of :data:`MISSING`: "no entry", distinct from a cached ``None``."""

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


@runtime_checkable
class Tier(Protocol):
    """What a cache tier offers. ``ttl`` arguments are seconds (``None``: the
    tier's default TTL, which may itself be ``None``: no expiry)."""

    @property
    def name(self) -> str:
        """The tier's name (in stats and metrics); a plain attribute will do."""
        ...

    def lookup(self, key: Hashable) -> tuple[Any, float | None] | None:
        """``(value, seconds_left)`` (``None`` seconds: no expiry), or ``None``
        when absent or expired. An expired entry is never returned."""
        ...

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value, or ``default`` when absent or expired."""
        ...

    def set(
        self,
        key: Hashable,
        value: Any,
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Store ``value``; ``tags`` let :meth:`invalidate_tag` remove it later."""
        ...

    def delete(self, key: Hashable) -> bool:
        """Remove the key; ``True`` when it was present."""
        ...

    def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Any]:
        """The present, unexpired keys among ``keys`` and their values."""
        ...

    def set_many(
        self,
        items: Mapping[Hashable, Any],
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """``set`` for each item, in one round trip where the backend allows."""
        ...

    def invalidate_tag(self, tag: str) -> int:
        """Remove every entry set with ``tag``; returns how many were removed
        (a tier that cannot count returns what it knows, possibly 0)."""
        ...

    def clear(self) -> None:
        """Remove every entry of this tier (only this tier's prefix/file)."""
        ...

    def close(self) -> None:
        """Flush what is pending and release connections/files. Idempotent."""
        ...

    def stats(self) -> Mapping[str, Any]:
        """Counters: at least ``hits``, ``misses``, ``sets``, ``deletes``, ``errors``."""
        ...
