"""The benchmark harness: interleaved side-by-side timing, suites and reports.

- :func:`compare` times a baseline and a candidate interleaved and returns a
  :class:`Comparison` (``ratio`` = median baseline / median candidate time,
  its bootstrap interval, a Mann-Whitney p-value, CPU time and peak memory);
  :mod:`~overdrive.bench.stats` holds the statistics, :func:`machine_info`
  what the numbers were measured on.
- ``overdrive bench [--quick] [--suite NAME] [--out DIR]`` runs the suites in
  :data:`~overdrive.bench.suites.SUITES` and writes a JSON report.
"""

from __future__ import annotations

from .compare import Comparison, MemoryUse, calibrate, compare, interleaved
from .environment import environment_info, machine_info
from .stats import MannWhitneyResult, bootstrap_ratio_ci, mann_whitney_u
from .suites import SUITES, BenchConfig, Check, SuiteResult, load_suite

__all__ = [
    "SUITES",
    "BenchConfig",
    "Check",
    "Comparison",
    "MannWhitneyResult",
    "MemoryUse",
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
