"""A discrete-event simulation of replicas behind the real :class:`~overdrive.Balancer`.

``n_replicas`` FIFO single-server replicas with exponential service times
(mean 1: results are in service-time units) receive Poisson arrivals at
``utilisation * n_replicas`` per unit time. Each arrival calls
``balancer.acquire()``; each completion calls ``balancer.release(i,
latency_s=response_time)`` at its virtual time, so the balancer sees exactly
the in-flight counts and latencies a real client would. Time is virtual: the
result does not depend on the machine's speed.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from .._core import Balancer

__all__ = ["SimResult", "simulate"]


@dataclass(frozen=True)
class SimResult:
    """Response-time percentiles in service-time units."""

    strategy: str
    requests: int
    p50: float
    p99: float
    p999: float
    mean: float


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[k]


def simulate(
    strategy: str,
    *,
    n_replicas: int = 16,
    utilisation: float = 0.9,
    requests: int = 100_000,
    warmup: int = 10_000,
    seed: int = 1,
) -> SimResult:
    """Run ``requests`` arrivals (after ``warmup``) through a Balancer with ``strategy``."""
    if not 0.0 < utilisation < 1.0:
        raise ValueError(f"utilisation must be in (0, 1), got {utilisation}")
    lb = Balancer(n_replicas, strategy)
    rng = random.Random(seed)
    rate = utilisation * n_replicas
    free_at = [0.0] * n_replicas
    done: list[tuple[float, int, float]] = []  # (finish time, replica, response time)
    acquire, release = lb.acquire, lb.release
    push, pop = heapq.heappush, heapq.heappop
    expo = rng.expovariate
    t = 0.0
    responses: list[float] = []
    for k in range(warmup + requests):
        t += expo(rate)
        while done and done[0][0] <= t:
            _, i, resp = pop(done)
            release(i, resp, True)
        i = acquire()
        start = free_at[i] if free_at[i] > t else t
        finish = start + expo(1.0)
        free_at[i] = finish
        push(done, (finish, i, finish - t))
        if k >= warmup:
            responses.append(finish - t)
    responses.sort()
    return SimResult(
        strategy=strategy,
        requests=requests,
        p50=_percentile(responses, 50.0),
        p99=_percentile(responses, 99.0),
        p999=_percentile(responses, 99.9),
        mean=sum(responses) / len(responses),
    )
