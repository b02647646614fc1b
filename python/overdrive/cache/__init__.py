"""Tiered caches: memory (Rust store) -> Redis -> disk (SQLite).

See the README's "Caching" section. Serializers and stable keys are shared by
the tiers that store bytes.
"""

from __future__ import annotations

from .._core import MemoryTier
from ._tier import MISSING, Missing, Tier
from .keys import stable_key
from .serializers import (
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
    default_serializer,
)

__all__ = [
    "MISSING",
    "JsonSerializer",
    "MemoryTier",
    "Missing",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "Tier",
    "default_serializer",
    "stable_key",
]
