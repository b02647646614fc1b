"""The benchmark harness: interleaved side-by-side timing, suites and reports.

- :func:`compare` times a baseline and a candidate interleaved and returns a
  :class:`Comparison` (``ratio`` = median baseline / median candidate time,
  its bootstrap interval, a Mann-Whitney p-value, CPU time and peak memory);
  :mod:`~overdrive.bench.stats` holds the statistics, :func:`machine_info`
  what the numbers were measured on.
- ``overdrive bench [--quick] [--suite NAME] [--out DIR]`` runs the suites in
  :data:`~overdrive.bench.suites.SUITES` and writes a JSON report.
- :class:`LoadRunner` drives a target open-loop (no coordinated omission) or
  closed-loop; :class:`StressRunner` finds the capacity knee or soaks.
"""

from __future__ import annotations

from .compare import Comparison, MemoryUse, calibrate, compare, interleaved
from .environment import environment_info, machine_info
from .load import LoadResult, LoadRunner
from .stats import MannWhitneyResult, bootstrap_ratio_ci, mann_whitney_u
from .stress import SLO, StressRunner
from .suites import SUITES, BenchConfig, Check, SuiteResult, load_suite

__all__ = [
    "SLO",
    "SUITES",
    "BenchConfig",
    "Check",
    "Comparison",
    "MannWhitneyResult",
    "MemoryUse",
    "LoadResult",
    "LoadRunner",
    "StressRunner",
    "SuiteResult",
    "bootstrap_ratio_ci",
    "calibrate",
    "compare",
    "environment_info",
    "interleaved",
    "load_suite",
    "machine_info",
    "mann_whitney_u",
]
