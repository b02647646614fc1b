"""Capacity and endurance: :class:`StressRunner`.

:meth:`StressRunner.find_knee` steps the open-loop rate up (``start_rate``,
times ``factor`` each step) until a step breaks the :class:`SLO` (p99 over
``p99_s``, error rate over ``error_rate``, or achieved throughput below
``min_achieved_fraction`` of the offered rate), then bisects between the last
good and the first bad rate until they are within ``tolerance`` of each
other. The knee is the highest rate that held.

:meth:`StressRunner.soak` holds a fixed rate for a duration and reports
resident-memory growth (RSS after a warm-up against RSS at the end) and the
coefficient of variation of the per-thread elapsed time per call (threaded
targets; the source design asks for < 20%).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import ConfigurationError, InputTypeError
from .load import LoadResult, LoadRunner, _count, _Doc, _env, _number

__all__ = ["SLO", "SoakResult", "StressResult", "StressRunner"]


@dataclass(frozen=True)
class SLO:
    """What a step must meet to count as holding.

    ``p99_s``: p99 latency ceiling (seconds, from the intended send time);
    ``error_rate``: errors / completed ceiling; ``min_achieved_fraction``:
    achieved / offered rate floor.
    """

    p99_s: float = 0.1
    error_rate: float = 0.01
    min_achieved_fraction: float = 0.95

    def __post_init__(self) -> None:
        _number("p99_s", self.p99_s)
        _number("error_rate", self.error_rate, strict=False)
        if self.error_rate > 1.0:
            raise ConfigurationError(
                f"invalid error_rate={self.error_rate!r}: must be a fraction from 0 to 1"
            )
        f = _number("min_achieved_fraction", self.min_achieved_fraction)
        if f > 1.0:
            raise ConfigurationError(
                f"invalid min_achieved_fraction={f!r}: must be a fraction in (0, 1]"
            )

    def broken_by(self, result: LoadResult) -> str | None:
        """None when ``result`` meets the SLO, else ``"p99"``, ``"errors"`` or ``"achieved"``."""
        if result.error_rate > self.error_rate:
            return "errors"
        if result.p99 > self.p99_s:
            return "p99"
        if result.achieved_fraction < self.min_achieved_fraction:
            return "achieved"
        return None

    def to_dict(self) -> dict[str, float]:
        """The ``"slo"`` object of the stress document."""
        return {
            "p99_s": self.p99_s,
            "error_rate": self.error_rate,
            "min_achieved_fraction": self.min_achieved_fraction,
        }


@dataclass
class StressResult(_Doc):
    """The knee search: ``knee_rate`` and every step.

    :meth:`to_dict` is the ``"stress"`` document.
    """

    knee_rate: float
    steps: list[tuple[float, str | None, LoadResult]]
    document: dict[str, Any] = field(repr=False)


@dataclass
class SoakResult(_Doc):
    """A soak run; :meth:`to_dict` is the ``"soak"`` document."""

    rss_growth_bytes: int
    thread_cv: float
    load: LoadResult = field(repr=False)
    document: dict[str, Any] = field(repr=False)


class StressRunner:
    """Find a target's capacity knee, or soak it at a fixed rate.

    ``target`` is anything :class:`~overdrive.bench.load.LoadRunner` takes (a
    sync or async callable, or an HTTP URL); ``load_options`` go to every
    LoadRunner (``max_workers``, ``tolerance_s``, ``drain_timeout_s``,
    ``method``, ...).
    """

    def __init__(
        self,
        target: Callable[[], object] | str,
        *,
        slo: SLO | None = None,
        progress: bool | None = None,
        **load_options: Any,
    ) -> None:
        if slo is not None and not isinstance(slo, SLO):
            raise InputTypeError(f"slo must be an SLO, not {type(slo).__name__}")
        for bad in ("rate", "duration", "schedule", "concurrency"):
            if bad in load_options:
                raise ConfigurationError(
                    f"invalid {bad}={load_options[bad]!r}: StressRunner sets it per step"
                )
        self.target = target
        self.slo = slo or SLO()
        self.progress = progress
        self.load_options = load_options
        # Validates the target and the options once, up front.
        LoadRunner(target, rate=1.0, duration=1.0, progress=False, **load_options)

    def _run(self, rate: float, duration: float, progress: bool | None = False) -> LoadResult:
        opts = dict(self.load_options)
        return LoadRunner(
            self.target, rate=rate, duration=duration, progress=progress, **opts
        ).run()

    def find_knee(
        self,
        *,
        start_rate: float = 50.0,
        factor: float = 2.0,
        step_duration_s: float = 2.0,
        max_rate: float = 1_000_000.0,
        tolerance: float = 0.05,
        max_steps: int = 40,
        stall_s: float = 0.05,
        stall_retries: int = 2,
    ) -> StressResult:
        """Step the rate up from ``start_rate`` until the SLO breaks, then bisect.

        Stops bisecting when the bad rate is within ``tolerance`` (relative)
        of the good one. If even ``start_rate`` breaks, the knee is 0.0; if
        ``max_rate`` holds, the knee is ``max_rate``.

        A step that broke while the generator itself stalled (an arrival
        started more than ``stall_s`` after its intended time: the machine,
        not the target, stopped) is run again, up to ``stall_retries`` times; the
        step's ``"retries"`` says how often.
        """
        start_rate = _number("start_rate", start_rate)
        factor = _number("factor", factor, low=1.0)
        step_duration_s = _number("step_duration_s", step_duration_s)
        max_rate = _number("max_rate", max_rate)
        if max_rate < start_rate:
            raise ConfigurationError(
                f"invalid max_rate={max_rate!r}: must be >= start_rate={start_rate!r}"
            )
        tolerance = _number("tolerance", tolerance)
        max_steps = _count("max_steps", max_steps)
        stall_s = _number("stall_s", stall_s)
        stall_retries = _count("stall_retries", stall_retries, low=0)
        steps: list[tuple[float, str | None, LoadResult]] = []
        retries: list[int] = []

        def step(rate: float) -> bool:
            attempt = 0
            while True:
                result = self._run(rate, step_duration_s)
                broke = self.slo.broken_by(result)
                lag = result.document.get("schedule_lag") or {}
                stalled = lag.get("max", 0.0) > stall_s
                if broke is None or not stalled or attempt >= stall_retries:
                    break
                attempt += 1
            steps.append((rate, broke, result))
            retries.append(attempt)
            return broke is None

        good = 0.0
        bad: float | None = None
        rate = start_rate
        while len(steps) < max_steps:
            if step(rate):
                good = rate
                if rate >= max_rate:
                    break
                rate = min(rate * factor, max_rate)
            else:
                bad = rate
                break
        if bad is not None and good > 0.0:
            while len(steps) < max_steps and (bad - good) > tolerance * good:
                mid = (good + bad) / 2.0
                if step(mid):
                    good = mid
                else:
                    bad = mid
        doc: dict[str, Any] = {"kind": "stress"}
        doc.update(_env())
        doc.update(
            {
                "target": steps[0][2].document["target"] if steps else str(self.target),
                "slo": self.slo.to_dict(),
                "steps": [
                    {
                        "rate": r,
                        "ok": b is None,
                        "broke": b,
                        "retries": n,
                        "load": {
                            k: v for k, v in res.document.items() if k not in ("cdf", "timeline")
                        },
                    }
                    for (r, b, res), n in zip(steps, retries, strict=True)
                ],
                "knee_rate": good,
                "step_duration_s": step_duration_s,
                "first_bad_rate": bad,
            }
        )
        return StressResult(knee_rate=good, steps=steps, document=doc)

    def soak(self, rate: float, duration_s: float, *, warmup_s: float | None = None) -> SoakResult:
        """Hold ``rate`` for ``duration_s``; report RSS growth and thread timing spread.

        RSS growth = RSS at the end - RSS at ``warmup_s`` (default: a tenth of
        the run). ``thread_cv`` is the coefficient of variation (stdev / mean)
        of the per-thread mean elapsed time per call (0.0 for async targets).
        """
        rate = _number("rate", rate)
        duration_s = _number("duration_s", duration_s)
        warm = (
            duration_s / 10.0 if warmup_s is None else _number("warmup_s", warmup_s, strict=False)
        )
        if warm >= duration_s:
            raise ConfigurationError(
                f"invalid warmup_s={warmup_s!r}: must be shorter than duration_s={duration_s!r}"
            )
        result = self._run(rate, duration_s, self.progress)
        samples = result.rss_samples
        start = next((r for t, r in samples if t >= warm), samples[-1][1])
        end = samples[-1][1]
        te = result.thread_elapsed_s
        mean = statistics.fmean(te) if te else 0.0
        cv = statistics.pstdev(te) / mean if len(te) > 1 and mean > 0 else 0.0
        doc: dict[str, Any] = {"kind": "soak"}
        doc.update(_env())
        doc.update(
            {
                "target": result.document["target"],
                "rate": rate,
                "duration_s": duration_s,
                "warmup_s": warm,
                "load": result.document,
                "rss_start_bytes": start,
                "rss_end_bytes": end,
                "rss_growth_bytes": end - start,
                "rss_samples": [[t, r] for t, r in samples],
                "thread_elapsed_s": te,
                "thread_cv": cv if math.isfinite(cv) else 0.0,
            }
        )
        return SoakResult(
            rss_growth_bytes=end - start, thread_cv=doc["thread_cv"], load=result, document=doc
        )
