"""Tiered caches: memory (Rust store) -> Redis -> disk (SQLite).

See the README's "Caching" section. Serializers and stable keys are shared by
the tiers that store bytes.
"""

from __future__ import annotations

from .._core import MemoryTier
from ._tier import MISSING, Missing, Tier
from .decorator import cached
from .disk import DiskTier
from .keys import stable_key
from .redis_tier import RedisTier
from .serializers import (
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    default_serializer,
)
from .tiered import TieredCache

__all__ = [
    "DiskTier",
    "MISSING",
    "JsonSerializer",
    "MemoryTier",
    "Missing",
    "MsgpackSerializer",
    "PickleSerializer",
    "RedisTier",
    "Serializer",
    "Tier",
    "TieredCache",
    "cached",
    "default_serializer",
    "stable_key",
]
