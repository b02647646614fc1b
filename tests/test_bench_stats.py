"""overdrive.bench.stats against scipy on known samples: Mann-Whitney p-values
(exact and tie-corrected asymptotic), bootstrap intervals (coverage, agreement)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps  # type: ignore[import-untyped]

from overdrive.bench.stats import (
    EXACT_MAX_CELLS,
    bootstrap_ratio_ci,
    mann_whitney_u,
    ratio_of_medians,
    verdict,
)
from overdrive.exceptions import ConfigurationError, InputTypeError

ALTERNATIVES = ("two-sided", "less", "greater")

# Small samples without ties, equal and unequal sizes.
NO_TIES: list[tuple[list[float], list[float]]] = [
    ([1.1, 2.3, 3.7], [4.2, 5.9, 6.1]),
    ([0.8, 1.9, 2.2, 3.1, 4.4], [1.5, 2.7, 3.3]),
    ([19.1, 22.5, 14.3, 18.0, 25.2, 16.6, 21.7], [12.2, 15.4, 13.8, 17.1, 11.9]),
    ([0.51], [0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]),
    ([5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 3.0, 4.0]),
    ([1.02, 0.98, 1.11, 0.93, 1.05, 1.07], [1.01, 0.97, 1.03, 0.99, 1.08, 0.95, 1.04]),
]

# Samples with ties (within and across the groups).
WITH_TIES: list[tuple[list[float], list[float]]] = [
    ([1.0, 2.0, 2.0, 3.0, 4.0], [2.0, 3.0, 3.0, 5.0]),
    ([1.0, 1, 1, 2, 2, 3, 3, 3, 3], [2.0, 2, 3, 4, 4, 4, 5]),
    ([10.0] * 6 + [11.0], [10.0, 11.0, 11.0, 12.0]),
    ([0.1, 0.2, 0.2, 0.2, 0.5, 0.9, 0.9, 1.3, 1.3, 1.3, 2.0], [0.2, 0.5, 0.5, 0.9, 2.0, 2.1]),
]


@pytest.mark.parametrize(("x", "y"), NO_TIES)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_exact_p_values_equal_scipy(x: list[float], y: list[float], alternative: Any) -> None:
    ours = mann_whitney_u(x, y, method="exact", alternative=alternative)
    ref = sps.mannwhitneyu(x, y, method="exact", alternative=alternative)
    assert ours.method == "exact"
    assert ours.u == pytest.approx(float(ref.statistic), abs=1e-12)
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-9)
    # Small and without ties: "auto" chooses exact too, like scipy.
    auto = mann_whitney_u(x, y, alternative=alternative)
    assert auto.method == "exact" and auto.p_value == ours.p_value


@pytest.mark.parametrize(("x", "y"), WITH_TIES + NO_TIES)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("continuity", [True, False])
def test_asymptotic_p_values_equal_scipy(
    x: list[float], y: list[float], alternative: Any, continuity: bool
) -> None:
    ours = mann_whitney_u(x, y, method="asymptotic", alternative=alternative, continuity=continuity)
    ref = sps.mannwhitneyu(
        x, y, method="asymptotic", alternative=alternative, use_continuity=continuity
    )
    assert ours.u == pytest.approx(float(ref.statistic), abs=1e-12)
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-9)


@pytest.mark.parametrize(("x", "y"), WITH_TIES)
def test_auto_uses_the_approximation_with_ties(x: list[float], y: list[float]) -> None:
    ours = mann_whitney_u(x, y)
    ref = sps.mannwhitneyu(x, y, method="asymptotic")
    assert ours.method == "asymptotic"
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-9)


def test_random_samples_match_scipy_both_methods() -> None:
    """300 random pairs of sizes 1-30 (a third rounded to make ties), both methods."""
    rng = np.random.default_rng(20261203)
    for trial in range(300):
        n1, n2 = (int(v) for v in rng.integers(1, 31, 2))
        x = rng.normal(0.0, 1.0, n1)
        y = rng.normal(rng.uniform(0.0, 1.5), 1.0, n2)
        if trial % 3 == 0:
            x, y = np.round(x, 1), np.round(y, 1)
        for method in ("exact", "asymptotic"):
            if method == "exact" and n1 * n2 > EXACT_MAX_CELLS:
                continue
            ours = mann_whitney_u(list(x), list(y), method=method)
            ref = sps.mannwhitneyu(x, y, method=method)
            assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-9), (trial, method)


def test_exact_p_value_of_larger_samples_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.lognormal(0.0, 0.3, 40), rng.lognormal(0.15, 0.3, 45)
    ours = mann_whitney_u(list(x), list(y), method="exact")
    ref = sps.mannwhitneyu(x, y, method="exact")
    assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12)


def test_all_values_tied_gives_p_one() -> None:
    assert mann_whitney_u([1.0] * 5, [1.0] * 5).p_value == 1.0
    assert mann_whitney_u([2.0] * 3, [2.0] * 9, method="asymptotic").p_value == 1.0


def test_unequal_counts_of_the_same_values_are_not_significant() -> None:
    """pyperf reports 'significant' whenever counts differ; the U test must not."""
    same = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.98, 1.01]
    p = mann_whitney_u(same, same * 4).p_value
    assert p > 0.9
    ref = sps.mannwhitneyu(same, same * 4)
    assert p == pytest.approx(float(ref.pvalue), abs=1e-9)


def _coverage(n1: int, n2: int, trials: int, seed: int) -> float:
    """Fraction of 95% intervals covering the true ratio of medians of two lognormals."""
    rng = np.random.default_rng(seed)
    true_ratio = 1.3  # median of lognormal(mu, s) is exp(mu)
    covered = 0
    for t in range(trials):
        a = rng.lognormal(math.log(true_ratio), 0.3, n1)
        b = rng.lognormal(0.0, 0.3, n2)
        lo, hi = bootstrap_ratio_ci(list(a), list(b), resamples=1000, seed=t)
        covered += lo <= true_ratio <= hi
    return covered / trials


@pytest.mark.parametrize(("n1", "n2"), [(15, 15), (9, 25)])
def test_bootstrap_interval_covers_the_true_ratio_about_95_percent(n1: int, n2: int) -> None:
    coverage = _coverage(n1, n2, trials=250, seed=n1 * 100 + n2)
    assert 0.90 <= coverage <= 0.99, coverage


def test_bootstrap_interval_agrees_with_scipy_bootstrap() -> None:
    """Same percentile method, independent resampling per group: the ends agree
    with scipy.stats.bootstrap up to Monte Carlo noise."""
    rng = np.random.default_rng(11)
    a, b = rng.lognormal(0.4, 0.25, 40), rng.lognormal(0.0, 0.25, 30)

    def ratio(x: Any, y: Any, axis: int = -1) -> Any:
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    ref = sps.bootstrap(
        (a, b),
        ratio,
        method="percentile",
        n_resamples=20000,
        paired=False,
        vectorized=True,
        rng=np.random.default_rng(0),
    ).confidence_interval
    lo, hi = bootstrap_ratio_ci(list(a), list(b), resamples=4000)
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.1 * width, (lo, ref.low)
    assert abs(hi - ref.high) < 0.1 * width, (hi, ref.high)


def test_bootstrap_is_reproducible_and_contains_the_ratio() -> None:
    a = [2.0, 2.1, 1.9, 2.2, 2.05, 1.95, 2.0, 2.3]
    b = [1.0, 1.1, 0.9, 1.05, 0.95]
    first = bootstrap_ratio_ci(a, b)
    assert bootstrap_ratio_ci(a, b) == first
    assert first[0] <= ratio_of_medians(a, b) <= first[1]
    assert ratio_of_medians(a, b) == pytest.approx(2.025)
    # Constant samples of unequal size: a degenerate, exact interval.
    assert bootstrap_ratio_ci([3.0] * 4, [1.5] * 11) == (2.0, 2.0)


def test_verdict_needs_the_whole_interval_past_the_threshold() -> None:
    assert verdict(1.05, 1.4) == "faster"
    assert verdict(1.049, 1.4) == "no difference"
    assert verdict(0.5, 1 / 1.05) == "slower"
    assert verdict(0.5, 0.96) == "no difference"
    assert verdict(0.9, 1.1) == "no difference"
    assert verdict(1.2, 1.3, threshold=0.25) == "no difference"
    assert verdict(1.01, 1.02, threshold=0.0) == "faster"


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ConfigurationError, match="x must not be empty"):
        mann_whitney_u([], [1.0])
    with pytest.raises(ConfigurationError, match="NaN"):
        mann_whitney_u([1.0, math.nan], [1.0])
    with pytest.raises(InputTypeError, match="y must hold numbers"):
        mann_whitney_u([1.0], ["a"])  # type: ignore[list-item]
    with pytest.raises(InputTypeError, match="sequence"):
        mann_whitney_u("abc", [1.0])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="method"):
        mann_whitney_u([1.0], [2.0], method="permutation")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="alternative"):
        mann_whitney_u([1.0], [2.0], alternative="up")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="confidence"):
        bootstrap_ratio_ci([1.0], [1.0], confidence=1.0)
    with pytest.raises(ConfigurationError, match="resamples"):
        bootstrap_ratio_ci([1.0], [1.0], resamples=10)
    with pytest.raises(InputTypeError, match="resamples"):
        bootstrap_ratio_ci([1.0], [1.0], resamples=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="denominator must not be empty"):
        bootstrap_ratio_ci([1.0], [])
    with pytest.raises(ConfigurationError, match="threshold"):
        verdict(1.0, 1.0, threshold=-0.1)
