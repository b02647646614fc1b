"""Row helpers shared by the suites whose tables are
``case, impl, value, unit, x_vs_od, ci_low, ci_high``."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..stats import bootstrap_ratio_ci
from . import SuiteResult

__all__ = ["VALUE_COLUMNS", "add_rows", "ratio_ci", "repeat", "value_row"]

VALUE_COLUMNS = ["case", "impl", "value", "unit", "x_vs_od", "ci_low", "ci_high"]
"""``x_vs_od`` = impl time / overdrive time; ``ci_low``-``ci_high`` its 95% bootstrap
interval ("" where there is no interval, e.g. overdrive's own row or a non-timing row)."""


def ratio_ci(times: Sequence[float], od_times: Sequence[float]) -> dict[str, float | str]:
    """``{"ci_low", "ci_high"}``: the 95% bootstrap interval of
    ``median(times) / median(od_times)`` (both empty strings when either sample
    is empty or they are the same list, i.e. overdrive's own row)."""
    if not times or not od_times or times is od_times:
        return {"ci_low": "", "ci_high": ""}
    lo, hi = bootstrap_ratio_ci(times, od_times, resamples=1000)
    return {"ci_low": lo, "ci_high": hi}


def value_row(
    case: str,
    impl: str,
    value: float,
    unit: str,
    x: float | str = "",
    ci: Mapping[str, float | str] | None = None,
) -> dict[str, Any]:
    """One row of a ``VALUE_COLUMNS`` table (``ci``: :func:`ratio_ci` of ``x``, if any)."""
    ci = ci or {}
    return {
        "case": case,
        "impl": impl,
        "value": value,
        "unit": unit,
        "x_vs_od": x,
        "ci_low": ci.get("ci_low", ""),
        "ci_high": ci.get("ci_high", ""),
    }


def add_rows(
    result: SuiteResult,
    case: str,
    samples: dict[str, list[float]],
    od_key: str,
    value: Callable[[float], float],
    unit: str,
) -> None:
    """One row per implementation: ``value(median seconds)``, the time ratio to
    ``od_key`` and that ratio's 95% bootstrap interval from the interleaved samples."""
    od_times = samples[od_key]
    od_med = statistics.median(od_times)
    for impl, times in samples.items():
        med = statistics.median(times)
        ci = ratio_ci(times, od_times)
        result.rows.append(value_row(case, impl, value(med), unit, med / od_med, ci))


def repeat(n: int, body: Callable[[], Any]) -> Callable[[], None]:
    """A callable that calls ``body`` ``n`` times."""

    def call() -> None:
        for _ in range(n):
            body()

    return call
