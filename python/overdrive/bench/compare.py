"""Interleaved timing of callables and their comparison.

The machine is shared and noisy: absolute times drift from run to run. So
candidates are timed *side by side in one process, interleaved* (each repeat
times every callable once, in a rotating order), and results are reported as
ratios of medians with a bootstrap confidence interval and a Mann-Whitney p-value.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Comparison", "calibrate", "compare", "interleaved"]

Timer = Callable[[], float]


def calibrate(fn: Callable[[], Any], target_s: float = 0.02, max_number: int = 1_000_000) -> int:
    """How many calls of ``fn`` take about ``target_s`` seconds (at least 1)."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= target_s or number >= max_number:
            break
        grow = target_s / elapsed if elapsed > 0 else 10.0
        number = min(max_number, max(number * 2, int(number * min(grow, 10.0))))
    return max(1, int(number * target_s / elapsed)) if elapsed > 0 else number


def _time_once(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def interleaved(
    callables: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 15,
    number: int | None = None,
    target_s: float = 0.02,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of each callable, ``repeats`` samples each.

    Every repeat times each callable once (``number`` calls in a row); the
    order rotates between repeats so no callable always runs first.
    ``number`` defaults to what takes ``target_s`` for the slowest callable.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(callables)
    if not names:
        raise ValueError("callables must not be empty")
    if number is None:
        number = min(calibrate(fn, target_s) for fn in callables.values())
    for _ in range(warmup):
        for fn in callables.values():
            _time_once(fn, max(1, number // 4))
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_time_once(callables[name], number))
    return samples


def _bootstrap_ratio_ci(
    base: list[float], cand: list[float], level: float = 0.95, resamples: int = 2000
) -> tuple[float, float]:
    rng = random.Random(0x0D)
    ratios = []
    for _ in range(resamples):
        b = statistics.median(rng.choices(base, k=len(base)))
        c = statistics.median(rng.choices(cand, k=len(cand)))
        ratios.append(b / c if c > 0 else math.inf)
    ratios.sort()
    lo = ratios[int((1 - level) / 2 * resamples)]
    hi = ratios[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return lo, hi


def _mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    tie_term = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = rank
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, pooled, strict=True) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    return math.erfc(max(z, 0.0) / math.sqrt(2))


@dataclass(frozen=True)
class Comparison:
    """Baseline vs candidate. ``ratio`` = median baseline time / median candidate
    time: above 1 means the candidate is faster."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    baseline_median_s: float
    candidate_median_s: float
    repeats: int
    number: int
    baseline_times: list[float] = field(repr=False, default_factory=list)
    candidate_times: list[float] = field(repr=False, default_factory=list)

    @classmethod
    def from_samples(cls, base: list[float], cand: list[float], number: int) -> Comparison:
        bm, cm = statistics.median(base), statistics.median(cand)
        lo, hi = _bootstrap_ratio_ci(base, cand)
        p = _mann_whitney_p(base, cand)
        return cls(
            ratio=bm / cm if cm > 0 else math.inf,
            ci_low=lo,
            ci_high=hi,
            p_value=p,
            significant=p < 0.05 and not (lo <= 1.0 <= hi),
            baseline_median_s=bm,
            candidate_median_s=cm,
            repeats=len(base),
            number=number,
            baseline_times=list(base),
            candidate_times=list(cand),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "significant": self.significant,
            "baseline_median_s": self.baseline_median_s,
            "candidate_median_s": self.candidate_median_s,
            "repeats": self.repeats,
            "number": self.number,
        }


def compare(
    baseline: Callable[[], Any],
    candidate: Callable[[], Any],
    *,
    repeats: int = 15,
    number: int | None = None,
    target_s: float = 0.02,
) -> Comparison:
    """Time ``baseline`` and ``candidate`` interleaved and compare their medians."""
    if number is None:
        number = min(calibrate(baseline, target_s), calibrate(candidate, target_s))
    samples = interleaved(
        {"baseline": baseline, "candidate": candidate}, repeats=repeats, number=number
    )
    return Comparison.from_samples(samples["baseline"], samples["candidate"], number)
