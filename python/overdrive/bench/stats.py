"""Statistics for benchmark samples, in pure Python (no numpy or scipy needed).

- :func:`bootstrap_ratio_ci`: a percentile-bootstrap confidence interval of the
  ratio of two medians. Each group is resampled with its own size (unequal
  counts are fine) from a seeded generator, so the interval is reproducible.
- :func:`mann_whitney_u`: the Mann-Whitney U test with the same statistic and
  p-values as ``scipy.stats.mannwhitneyu``: the exact null distribution for
  samples without ties, the tie-corrected normal approximation (with continuity
  correction) otherwise.
- :func:`verdict`: "faster", "slower" or "no difference", claimed only when the
  whole interval clears a threshold.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from ..exceptions import ConfigurationError, InputTypeError

__all__ = [
    "DEFAULT_SEED",
    "EXACT_MAX_CELLS",
    "MannWhitneyResult",
    "bootstrap_ratio_ci",
    "mann_whitney_u",
    "ratio_of_medians",
    "verdict",
]

DEFAULT_SEED = 0x0D
"""Seed of the bootstrap's generator: the same samples always give the same interval."""

EXACT_MAX_CELLS = 2500
"""``method="auto"`` uses the exact distribution when there are no ties and
``min(n1, n2) <= 8`` (scipy's rule) or ``n1 * n2 <= EXACT_MAX_CELLS`` (e.g. 50 x 50)."""

Method = Literal["auto", "exact", "asymptotic"]
Alternative = Literal["two-sided", "less", "greater"]


def _check_samples(name: str, xs: Sequence[float]) -> list[float]:
    if isinstance(xs, (str, bytes)) or not hasattr(xs, "__len__"):
        raise InputTypeError(f"{name} must be a sequence of numbers, got {type(xs).__name__}")
    out: list[float] = []
    for v in xs:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputTypeError(f"{name} must hold numbers, got {v!r}")
        f = float(v)
        if math.isnan(f):
            raise ConfigurationError(f"{name} must not hold NaN")
        out.append(f)
    if not out:
        raise ConfigurationError(f"{name} must not be empty, got {list(xs)!r}")
    return out


def ratio_of_medians(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """``median(numerator) / median(denominator)`` (``inf`` when the denominator's is 0)."""
    a = _check_samples("numerator", numerator)
    b = _check_samples("denominator", denominator)
    return _ratio(statistics.median(a), statistics.median(b))


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return 1.0 if a == b else math.inf


def _median_sorted(xs: list[float]) -> float:
    n = len(xs)
    mid = n // 2
    return xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2


def bootstrap_ratio_ci(
    numerator: Sequence[float],
    denominator: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``median(numerator) / median(denominator)``.

    Each resample draws ``len(numerator)`` values from ``numerator`` and
    ``len(denominator)`` from ``denominator`` (with replacement, independently),
    so unequal counts are handled as they are. Returns ``(low, high)``; the same
    inputs and ``seed`` always give the same interval.
    """
    a = _check_samples("numerator", numerator)
    b = _check_samples("denominator", denominator)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise InputTypeError(f"confidence must be a float, got {confidence!r}")
    if not 0 < confidence < 1:
        raise ConfigurationError(f"confidence must be in (0, 1), got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int):
        raise InputTypeError(f"resamples must be an int, got {resamples!r}")
    if resamples < 100:
        raise ConfigurationError(f"resamples must be >= 100, got {resamples!r}")
    rng = random.Random(seed)
    choices = rng.choices
    na, nb = len(a), len(b)
    ratios = []
    for _ in range(resamples):
        ma = _median_sorted(sorted(choices(a, k=na)))
        mb = _median_sorted(sorted(choices(b, k=nb)))
        ratios.append(_ratio(ma, mb))
    ratios.sort()
    tail = (1 - confidence) / 2
    lo = ratios[max(0, math.floor(tail * resamples))]
    hi = ratios[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    return lo, hi


@dataclass(frozen=True)
class MannWhitneyResult:
    """``u`` is U of the first sample (scipy's ``statistic``); ``method`` is the one used."""

    u: float
    p_value: float
    method: Literal["exact", "asymptotic"]


def _ranks(a: list[float], b: list[float]) -> tuple[float, list[int]]:
    """Rank sum of ``a`` in the pooled sample (average ranks) and the tie group sizes."""
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    r1 = 0.0
    ties: list[int] = []
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        r1 += rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return r1, ties


@lru_cache(maxsize=64)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings give U = 0, 1, ..., m*n (no ties).

    These are the coefficients of the Gaussian binomial [m+n choose m]_q, built as
    prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i); every partial product is a polynomial.
    """
    m, n = min(m, n), max(m, n)
    poly = [1]
    for i in range(1, m + 1):
        d = n + i
        grown = poly + [0] * d
        for k in range(len(grown) - 1, d - 1, -1):
            grown[k] -= grown[k - d]
        for k in range(i, len(grown)):
            grown[k] += grown[k - i]
        poly = grown[: i * n + 1]
    return tuple(poly)


def _exact_sf(u: int, m: int, n: int) -> float:
    """P(U >= u) under the null hypothesis (no ties)."""
    counts = _u_counts(m, n)
    total = math.comb(m + n, m)
    if u <= 0:
        return 1.0
    if u > m * n:
        return 0.0
    # Sum the shorter tail: the distribution is symmetric about m*n/2.
    if u > m * n - u:
        return sum(counts[u:]) / total
    return 1.0 - sum(counts[:u]) / total


def mann_whitney_u(
    x: Sequence[float],
    y: Sequence[float],
    *,
    method: Method = "auto",
    alternative: Alternative = "two-sided",
    continuity: bool = True,
) -> MannWhitneyResult:
    """The Mann-Whitney U test of ``x`` against ``y``, as ``scipy.stats.mannwhitneyu``.

    ``method="exact"`` uses the exact null distribution (with ties it uses the
    floor of U, as scipy does, and is only approximate); ``"asymptotic"`` the
    normal approximation with tie correction (and continuity correction unless
    ``continuity=False``); ``"auto"`` picks exact when there are no ties and the
    samples are small (see :data:`EXACT_MAX_CELLS`), asymptotic otherwise.
    """
    a = _check_samples("x", x)
    b = _check_samples("y", y)
    if method not in ("auto", "exact", "asymptotic"):
        raise ConfigurationError(f"method must be 'auto', 'exact' or 'asymptotic', got {method!r}")
    if alternative not in ("two-sided", "less", "greater"):
        raise ConfigurationError(
            f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}"
        )
    n1, n2 = len(a), len(b)
    r1, ties = _ranks(a, b)
    u1 = r1 - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    if alternative == "greater":
        u, factor = u1, 1
    elif alternative == "less":
        u, factor = u2, 1
    else:
        u, factor = max(u1, u2), 2
    if method == "auto":
        small = min(n1, n2) <= 8 or n1 * n2 <= EXACT_MAX_CELLS
        method = "exact" if small and not ties else "asymptotic"
    if method == "exact":
        p = _exact_sf(math.floor(u), n1, n2)
    else:
        n = n1 + n2
        tie_term = sum(t**3 - t for t in ties)
        var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
        num = u - n1 * n2 / 2 - (0.5 if continuity else 0.0)
        # All values tied (var 0): no evidence either way unless num says otherwise.
        z = num / math.sqrt(var) if var > 0 else math.copysign(math.inf, num) if num else 0.0
        p = 0.5 * math.erfc(z / math.sqrt(2))  # normal survival function at z
    return MannWhitneyResult(u=u1, p_value=min(1.0, max(0.0, p * factor)), method=method)


def verdict(ci_low: float, ci_high: float, threshold: float = 0.05) -> str:
    """What an interval of ``baseline time / candidate time`` supports.

    "faster" only when the whole interval is at or above ``1 + threshold``,
    "slower" only when it is at or below ``1 / (1 + threshold)``, else
    "no difference" (the data do not show a change larger than the threshold).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InputTypeError(f"threshold must be a float, got {threshold!r}")
    if not 0 <= threshold < math.inf:
        raise ConfigurationError(f"threshold must be >= 0 and finite, got {threshold!r}")
    if ci_low >= 1 + threshold:
        return "faster"
    if ci_high <= 1 / (1 + threshold):
        return "slower"
    return "no difference"
