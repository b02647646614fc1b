"""Resilience guards: a circuit breaker, an adaptive concurrency limiter and a
GCRA rate limiter, in-process or shared through Redis.

- :class:`CircuitBreaker` (``overdrive.resilience.breaker``): closed / open /
  half-open over a count or time sliding window; never holds a lock across
  the guarded call.
- :class:`ConcurrencyLimiter` (``overdrive.resilience.concurrency``): a bounded
  in-flight count whose limit adapts (AIMD, Gradient2) with a bounded FIFO
  queue, queue timeout and optional CoDel shedding.
- :class:`RateLimiter` (``overdrive.resilience.rate``): GCRA (one timestamp per
  key), in-process or in Redis (one atomic Lua script, server time).

Refusals raise :class:`~overdrive.exceptions.CircuitOpen` or
:class:`~overdrive.exceptions.LimitExceeded`; every class has ``stats()``.
"""

from __future__ import annotations

from ..exceptions import CircuitOpen, LimitExceeded
from .breaker import CircuitBreaker
from .concurrency import ConcurrencyLimiter, Permit
from .rate import RateLimiter

__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "ConcurrencyLimiter",
    "LimitExceeded",
    "Permit",
    "RateLimiter",
]
