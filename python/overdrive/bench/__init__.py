"""The benchmark harness: interleaved side-by-side timing, suites and reports.

- :func:`compare` times a baseline and a candidate interleaved and returns a
  :class:`Comparison` (``ratio`` = median baseline / median candidate time).
- ``overdrive bench [--quick] [--suite NAME] [--out DIR]`` runs the suites in
  :data:`~overdrive.bench.suites.SUITES` and writes a JSON report.
- :class:`LoadRunner` drives a target open-loop (no coordinated omission) or
  closed-loop; :class:`StressRunner` finds the capacity knee or soaks.
"""

from __future__ import annotations

from .compare import Comparison, calibrate, compare, interleaved
from .load import LoadResult, LoadRunner
from .stress import SLO, StressRunner
from .suites import SUITES, BenchConfig, Check, SuiteResult, load_suite

__all__ = [
    "SLO",
    "SUITES",
    "BenchConfig",
    "Check",
    "Comparison",
    "LoadResult",
    "LoadRunner",
    "StressRunner",
    "SuiteResult",
    "calibrate",
    "compare",
    "interleaved",
    "load_suite",
]
