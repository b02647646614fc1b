"""Row helpers shared by the suites whose tables are ``case, impl, value, unit, x_vs_od``."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from . import SuiteResult

__all__ = ["VALUE_COLUMNS", "add_rows", "repeat", "value_row"]

VALUE_COLUMNS = ["case", "impl", "value", "unit", "x_vs_od"]


def value_row(case: str, impl: str, value: float, unit: str, x: float | str = "") -> dict[str, Any]:
    return {"case": case, "impl": impl, "value": value, "unit": unit, "x_vs_od": x}


def add_rows(
    result: SuiteResult,
    case: str,
    samples: dict[str, list[float]],
    od_key: str,
    value: Callable[[float], float],
    unit: str,
) -> None:
    """One row per implementation: ``value(median seconds)`` and the time ratio to ``od_key``."""
    od_med = statistics.median(samples[od_key])
    for impl, times in samples.items():
        med = statistics.median(times)
        result.rows.append(value_row(case, impl, value(med), unit, med / od_med))


def repeat(n: int, body: Callable[[], Any]) -> Callable[[], None]:
    """A callable that calls ``body`` ``n`` times."""

    def call() -> None:
        for _ in range(n):
            body()

    return call
