"""Savings accounting: what each cache hit saved, in seconds and money.

An :class:`Account` belongs to one cached function (``@cached``) or to a
:class:`~overdrive.cache.TieredCache`'s own ``get_or_set`` calls. A miss times
the compute with :func:`time.perf_counter`; a hit saved the account's mean
compute time (measured in this process) and ``cost_per_call``. Hits are counted
with :func:`itertools.count` (atomic under the GIL, no lock on the hit path);
``saved_seconds`` is ``hits * mean compute time``, evaluated when read.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

__all__ = ["Account", "read_count"]


def read_count(counter: itertools.count[int]) -> int:
    """The next value an :func:`itertools.count` would return (= calls so far)."""
    text = repr(counter)  # "count(N)"
    return int(text[6:-1])


class Account:
    """Hit/miss/compute counters of one cached function (or of a cache's own calls)."""

    __slots__ = (
        "__weakref__",
        "_compute_seconds",
        "_computes",
        "_lock",
        "coalesced",
        "compute_errors",
        "cost_per_call",
        "fast_hits",
        "hits",
        "misses",
        "name",
        "refreshes",
        "stale_hits",
    )

    def __init__(self, name: str, cost_per_call: float | None) -> None:
        self.name = name
        self.cost_per_call = cost_per_call
        self.hits = itertools.count()
        # hits in the first tier counted by @cached's hit path alone (one counter
        # for the function and the tier); TieredCache.stats() adds them to tier 0
        self.fast_hits = itertools.count()
        self.misses = itertools.count()
        self.coalesced = itertools.count()
        self.stale_hits = itertools.count()
        self.refreshes = itertools.count()
        self.compute_errors = itertools.count()
        self._lock = threading.Lock()
        self._computes = 0
        self._compute_seconds = 0.0

    def record_compute(self, seconds: float) -> None:
        """One compute that took ``seconds`` (successful or not: it cost that time)."""
        with self._lock:
            self._computes += 1
            self._compute_seconds += seconds

    def stats(self) -> dict[str, Any]:
        """Counters and the savings they imply."""
        with self._lock:
            computes, seconds = self._computes, self._compute_seconds
        hits = read_count(self.hits) + read_count(self.fast_hits)
        misses = read_count(self.misses)
        mean = seconds / computes if computes else 0.0
        requests = hits + misses
        return {
            "hits": hits,
            "misses": misses,
            "hit_ratio": hits / requests if requests else 0.0,
            "computes": computes,
            "compute_seconds": seconds,
            "mean_compute_seconds": mean,
            "coalesced": read_count(self.coalesced),
            "compute_errors": read_count(self.compute_errors),
            "stale_hits": read_count(self.stale_hits),
            "refreshes": read_count(self.refreshes),
            "saved_seconds": hits * mean,
            "saved_cost": hits * self.cost_per_call if self.cost_per_call is not None else 0.0,
        }
