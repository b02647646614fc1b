"""The prometheus_client custom collector: every live component's stats at
scrape time.

Nothing is recorded on the components' hot paths: at each scrape the
collector walks the weak registry (:mod:`overdrive.telemetry.registry`),
calls each live component's ``stats()`` and maps the numbers through the
tables of :mod:`overdrive.telemetry.mapping`. Objects with ``buckets()``
(``LatencyHistogram``) export as Prometheus histograms. A component whose
``stats()`` raises is skipped and counted in
``overdrive_telemetry_scrape_errors_total``: a scrape never fails because of
one component.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..exceptions import ConfigurationError
from . import registry
from .mapping import Point, flatten

__all__ = [
    "DEFAULT_BUCKETS",
    "RATE_BUCKETS",
    "OverdriveCollector",
    "histogram_samples",
    "require_prometheus_client",
]

log = logging.getLogger("overdrive.telemetry")

#: The ``le`` bounds (seconds) a latency histogram is exported at; the native
#: histogram's finer buckets are summed into these.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
#: Bounds for histograms of rates (tokens per second).
RATE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def require_prometheus_client() -> Any:
    """Import prometheus_client, or raise ImportError saying how to get it."""
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "overdrive.telemetry's Prometheus export needs prometheus_client: "
            "pip install 'overdrive[telemetry]' (or prometheus_client>=0.20)"
        ) from exc
    return prometheus_client


def histogram_samples(
    hist: Any, bounds: Sequence[float]
) -> tuple[list[tuple[str, float]], float, float]:
    """``(buckets, count, sum)`` of a histogram in Prometheus form: cumulative
    counts at ``bounds`` and ``+Inf``.

    A ``LatencyHistogram`` counts at the bounds itself (``buckets(bounds)``,
    overflow values in ``+Inf`` only). Any other object with ``buckets()``
    (cumulative ``(upper_bound, count)`` pairs) is summed here: the count at a
    bound is that of the last native bucket whose upper bound is not above it.
    """
    try:
        pairs = list(hist.buckets([*bounds, math.inf]))
    except TypeError:
        pairs = []
    if len(pairs) == len(bounds) + 1:
        out = [(_fmt(b), float(c)) for b, (_u, c) in zip(bounds, pairs, strict=False)]
        total = float(pairs[-1][1])
    else:
        native = list(hist.buckets())
        uppers = [float(u) for u, _ in native]
        cums = [float(c) for _, c in native]
        total = cums[-1] if cums else 0.0
        out = []
        for b in bounds:
            i = bisect.bisect_right(uppers, b * (1 + 1e-9))
            out.append((_fmt(b), cums[i - 1] if i else 0.0))
    out.append(("+Inf", total))
    s = hist.sum
    return out, total, float(s() if callable(s) else s)


def _fmt(b: float) -> str:
    return repr(float(b))


class OverdriveCollector:
    """A prometheus_client collector of every registered live component.

    ``collector = OverdriveCollector(); prometheus_client.REGISTRY.register(collector)``
    (:func:`overdrive.telemetry.install` does this once). ``buckets``: the
    ``le`` bounds for latency histograms (seconds). ``components``: a callable
    returning the components to export (default: the weak registry's live
    ones).
    """

    def __init__(
        self,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        components: Any = None,
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[0] <= 0:
            raise ConfigurationError(f"invalid buckets={buckets!r}: need positive bounds")
        self.buckets = tuple(bounds)
        self._components = components if components is not None else registry.live
        self._lock = threading.Lock()
        self._errors: dict[tuple[str, str], int] = {}
        self._warned: set[tuple[str, str]] = set()
        self.last_duration_s = 0.0

    def describe(self) -> list[Any]:
        """Nothing up front (names depend on what is alive at scrape time), so
        registering never calls :meth:`collect`."""
        return []

    @property
    def scrape_errors(self) -> dict[tuple[str, str], int]:
        """``stats()`` failures so far by ``(component, name)``."""
        with self._lock:
            return dict(self._errors)

    def samples(self) -> list[tuple[Point, str]]:
        """Every scalar sample now as ``(point, name_label)`` (the alerts and
        the tests read these without prometheus_client). Histograms are not
        included."""
        out: list[tuple[Point, str]] = []
        for reg, stats in self._read():
            if stats is not None:
                out.extend((p, reg.name) for p in flatten(reg.component, stats))
        return out

    def _read(self) -> Iterator[tuple[registry.Registered, Mapping[str, Any] | None]]:
        seen: dict[tuple[str, str], int] = {}
        for reg in self._components():
            key = (reg.component, reg.name)
            n = seen.get(key, 0) + 1
            seen[key] = n
            if n > 1:  # two components with one name: keep both series apart
                reg = registry.Registered(reg.obj, reg.component, f"{reg.name}#{n}")
            if _is_histogram(reg.obj) and not callable(getattr(reg.obj, "telemetry_stats", None)):
                yield reg, None
                continue
            try:
                getter = getattr(reg.obj, "telemetry_stats", None) or reg.obj.stats
                stats = getter()
                if not isinstance(stats, Mapping):
                    raise TypeError(f"stats() returned {type(stats).__name__}, not a dict")
            except Exception as exc:
                self._count_error(reg, exc)
                continue
            yield reg, stats

    def _count_error(self, reg: registry.Registered, exc: BaseException) -> None:
        key = (reg.component, reg.name)
        with self._lock:
            self._errors[key] = self._errors.get(key, 0) + 1
            first = key not in self._warned
            self._warned.add(key)
        if first:
            log.warning(
                "telemetry: %s %r: stats() raised %r; skipped (counted in "
                "overdrive_telemetry_scrape_errors_total)",
                reg.component,
                reg.name,
                exc,
            )

    def collect(self) -> Iterable[Any]:
        """The metric families of everything alive now (prometheus_client API)."""
        require_prometheus_client()
        import prometheus_client.core as core

        start = time.perf_counter()
        families: dict[str, Any] = {}
        label_names: dict[str, tuple[str, ...]] = {}
        for reg, stats in self._read():
            if stats is None:
                self._collect_histogram(core, families, reg, reg.component, reg.obj, "seconds")
                continue
            for point in flatten(reg.component, stats):
                labels = ("name", *(k for k, _ in point.labels))
                fam = families.get(point.family)
                if fam is None:
                    cls = (
                        core.CounterMetricFamily
                        if point.kind == "counter"
                        else core.GaugeMetricFamily
                    )
                    fam = cls(point.family, point.help or point.family, labels=labels)
                    families[point.family] = fam
                    label_names[point.family] = labels
                elif label_names[point.family] != labels or _kind(fam) != point.kind:
                    continue  # a clash between two components' fallbacks: keep the first
                fam.add_metric([reg.name, *(v for _, v in point.labels)], point.value)
            hists = getattr(reg.obj, "telemetry_histograms", None)
            if callable(hists):
                try:
                    for what, (hist, unit) in hists().items():
                        self._collect_histogram(
                            core, families, reg, f"{reg.component}_{what}", hist, unit
                        )
                except Exception as exc:
                    self._count_error(reg, exc)
        errors = core.CounterMetricFamily(
            "overdrive_telemetry_scrape_errors",
            "stats() calls that raised during a scrape (the component was skipped)",
            labels=("component", "name"),
        )
        for (component, name), n in sorted(self.scrape_errors.items()):
            errors.add_metric([component, name], n)
        self.last_duration_s = time.perf_counter() - start
        yield from families.values()
        yield errors
        duration = core.GaugeMetricFamily(
            "overdrive_telemetry_scrape_duration_seconds",
            "time the overdrive collector took to read every component (this scrape)",
            value=self.last_duration_s,
        )
        yield duration

    def _collect_histogram(
        self,
        core: Any,
        families: dict[str, Any],
        reg: registry.Registered,
        base: str,
        hist: Any,
        unit: str,
    ) -> None:
        family = f"overdrive_{base}"
        if unit and not family.endswith("_" + unit):
            family += "_" + unit
        bounds = self.buckets if unit == "seconds" else RATE_BUCKETS
        try:
            buckets, _count, total = histogram_samples(hist, bounds)
        except Exception as exc:
            self._count_error(reg, exc)
            return
        fam = families.get(family)
        if fam is None:
            fam = core.HistogramMetricFamily(family, f"{base} ({unit})", labels=("name",))
            families[family] = fam
        elif not isinstance(fam, core.HistogramMetricFamily):
            return
        fam.add_metric([reg.name], buckets, total)


def _kind(fam: Any) -> str:
    return "counter" if fam.type == "counter" else "gauge"


def _is_histogram(obj: object) -> bool:
    return callable(getattr(obj, "buckets", None)) and callable(getattr(obj, "record", None))
