"""The benchmark harness: interleaved side-by-side timing, suites and reports.

- :func:`compare` times a baseline and a candidate interleaved and returns a
  :class:`Comparison` (``ratio`` = median baseline / median candidate time).
- ``overdrive bench [--quick] [--suite NAME] [--out DIR]`` runs the suites in
  :data:`~overdrive.bench.suites.SUITES` and writes a JSON report.
"""

from __future__ import annotations

from .compare import Comparison, calibrate, compare, interleaved
from .suites import SUITES, BenchConfig, Check, SuiteResult, load_suite

__all__ = [
    "SUITES",
    "BenchConfig",
    "Check",
    "Comparison",
    "SuiteResult",
    "calibrate",
    "compare",
    "interleaved",
    "load_suite",
]
