"""Telemetry: latency histograms (and, from other modules, Prometheus export and alerts).

:class:`LatencyHistogram` is a lock-free log-linear histogram in Rust:
``record(seconds)``, ``percentile(p)``, ``with h.time(): ...`` and ``@h.time()``.
"""

from __future__ import annotations

from .histogram import LatencyHistogram, Timer

__all__ = ["LatencyHistogram", "Timer"]
