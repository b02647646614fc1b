"""asv benchmarks for the latency histogram: record() vs prometheus_client's
Histogram.observe, hdrhistogram's record_value and list.append (1000 values a
call); percentile queries on 100,000 values vs hdrhistogram; the timer()
context manager vs prometheus_client's Histogram.time(). Every side binds its
methods once, outside the loop.
"""

from __future__ import annotations

import math
import random

import prometheus_client
from hdrh.histogram import HdrHistogram

from overdrive.telemetry import LatencyHistogram

N = 1000


def _latencies(n: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(0.007), 1.0) for _ in range(n)]


class Record:
    """Each method records N latencies (divide by 1000 for ns/op)."""

    def setup(self) -> None:
        self.values = _latencies(N)
        self.ns_values = [round(v * 1e9) for v in self.values]
        self.hist = LatencyHistogram()
        registry = prometheus_client.CollectorRegistry()
        self.prom = prometheus_client.Histogram("od_asv", "asv", registry=registry)
        self.hdr = HdrHistogram(1, 3_600_000_000_000, 2)
        self.raw: list[float] = []

    def time_overdrive(self) -> None:
        record = self.hist.record
        for v in self.values:
            record(v)

    def time_overdrive_record_ns(self) -> None:
        record_ns = self.hist.record_ns
        for v in self.ns_values:
            record_ns(v)

    def time_overdrive_record_many(self) -> None:
        self.hist.record_many(self.values)

    def time_prometheus_observe(self) -> None:
        observe = self.prom.observe
        for v in self.values:
            observe(v)

    def time_hdrhistogram(self) -> None:
        record_value = self.hdr.record_value
        for v in self.ns_values:
            record_value(v)

    def time_list_append(self) -> None:
        append = self.raw.append
        for v in self.values:
            append(v)
        self.raw.clear()


class Percentile:
    """One query on a histogram holding 100,000 latencies."""

    def setup(self) -> None:
        values = _latencies(100_000, seed=11)
        self.hist = LatencyHistogram()
        self.hist.record_many(values)
        self.hdr = HdrHistogram(1, 3_600_000_000_000, 2)
        for v in values:
            self.hdr.record_value(round(v * 1e9))

    def time_overdrive_p99(self) -> None:
        self.hist.percentile(99.0)

    def time_overdrive_percentiles(self) -> None:
        self.hist.percentiles([50.0, 90.0, 99.0, 99.9])

    def time_overdrive_stats(self) -> None:
        self.hist.stats()

    def time_hdrhistogram_p99(self) -> None:
        self.hdr.get_value_at_percentile(99.0)

    def track_p99_relative_error(self) -> float:
        """Relative error of p99 vs the exact nearest rank, in percent (plus 1e-9: > 0)."""
        values = sorted(_latencies(100_000, seed=11))
        exact = values[math.ceil(0.99 * len(values)) - 1]
        return abs(self.hist.percentile(99.0) - exact) / exact * 100 + 1e-9


class Timer:
    """N timed empty blocks."""

    def setup(self) -> None:
        self.hist = LatencyHistogram()
        registry = prometheus_client.CollectorRegistry()
        self.prom = prometheus_client.Histogram("od_asv_timer", "asv", registry=registry)

    def time_overdrive(self) -> None:
        time_ = self.hist.time
        for _ in range(N):
            with time_():
                pass

    def time_prometheus(self) -> None:
        time_ = self.prom.time
        for _ in range(N):
            with time_():
                pass
