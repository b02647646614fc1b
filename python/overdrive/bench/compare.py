"""Interleaved timing of callables and their comparison (the perf runner).

The machine is shared and noisy: absolute times drift from run to run. So
candidates are timed *side by side in one process, interleaved* (each repeat
times every callable once, in a rotating order: A B, B A, A B, ...), and results
are reported as the ratio of medians with a bootstrap confidence interval and a
Mann-Whitney p-value. A change is claimed only when the whole interval clears a
threshold (:func:`overdrive.bench.stats.verdict`).

Memory is measured in separate, untimed calls after the timing: ``tracemalloc``
(which slows every allocation) never runs while a sample is timed.
"""

from __future__ import annotations

import gc
import inspect
import json
import math
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError, InputTypeError
from .environment import (
    machine_info,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    utc_now,
)
from .stats import bootstrap_ratio_ci, mann_whitney_u, verdict

__all__ = ["Comparison", "MemoryUse", "calibrate", "compare", "interleaved"]

Timer = Callable[[], float]

# tracemalloc and the RSS peak are process-wide: one memory pass at a time.
_MEMORY_LOCK = threading.Lock()


def _check_callable(name: str, fn: object) -> None:
    if not callable(fn):
        raise InputTypeError(f"{name} must be callable, got {type(fn).__name__}: {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise InputTypeError(
            f"{name} must be a plain callable, got coroutine function {fn!r}; "
            "wrap it, e.g. lambda: loop.run_until_complete(fn())"
        )


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 < value < math.inf:
        raise ConfigurationError(f"{name} must be > 0 and finite, got {value!r}")
    return float(value)


def calibrate(
    fn: Callable[[], Any],
    target_s: float = 0.02,
    max_number: int = 1_000_000,
    *,
    setup: Callable[[], Any] | None = None,
) -> int:
    """How many calls of ``fn`` take about ``target_s`` seconds (at least 1).

    ``setup`` (if given) runs, untimed, before each trial batch.
    """
    number = 1
    while True:
        if setup is not None:
            setup()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= target_s or number >= max_number:
            break
        grow = target_s / elapsed if elapsed > 0 else 10.0
        number = min(max_number, max(number * 2, int(number * min(grow, 10.0))))
    return max(1, int(number * target_s / elapsed)) if elapsed > 0 else number


def _calibrate_pair(
    fns: tuple[Callable[[], Any], Callable[[], Any]],
    target_s: float,
    setup: Callable[[], Any] | None,
    rounds: int = 4,
) -> tuple[int, int]:
    """Calls per sample for each callable so both samples take about ``target_s``.

    A rough count for each, then ``rounds`` interleaved batches of both: the
    fastest batch of each sets its count. Interleaving matters on a loaded
    machine: calibrating one callable in a quiet moment and the other in a busy
    one would make their samples unequally long, and long samples get preempted
    more often, which biases the ratio.
    """
    rough = [calibrate(fn, target_s, setup=setup) for fn in fns]
    best = [math.inf, math.inf]
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            if setup is not None:
                setup()
            start = time.perf_counter()
            for _ in range(rough[i]):
                fns[i]()
            best[i] = min(best[i], time.perf_counter() - start)
    out = [max(1, int(n * target_s / b)) if b > 0 else n for n, b in zip(rough, best, strict=True)]
    return out[0], out[1]


def _time_once(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _sample(
    fn: Callable[[], Any], number: int, setup: Callable[[], Any] | None
) -> tuple[float, float]:
    """Seconds per call, wall (perf_counter) and CPU (process_time), of one sample."""
    if setup is not None:
        setup()
    # Start every sample clean: young garbage the other callable left is collected
    # here, untimed (a full collection, ~20-100 ms on a large heap, runs once per compare).
    gc.collect(0)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    t1 = time.perf_counter()
    c1 = time.process_time()
    return (t1 - t0) / number, (c1 - c0) / number


def interleaved(
    callables: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 15,
    number: int | None = None,
    target_s: float = 0.02,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of each callable, ``repeats`` samples each.

    Every repeat times each callable once (``number`` calls in a row); the
    order rotates between repeats so no callable always runs first.
    ``number`` defaults to what takes ``target_s`` for the slowest callable.
    """
    if repeats < 1:
        raise ConfigurationError(f"repeats must be >= 1, got {repeats}")
    names = list(callables)
    if not names:
        raise ConfigurationError("callables must not be empty")
    if number is None:
        number = min(calibrate(fn, target_s) for fn in callables.values())
    for _ in range(warmup):
        for fn in callables.values():
            _time_once(fn, max(1, number // 4))
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_time_once(callables[name], number))
    return samples


@dataclass(frozen=True)
class MemoryUse:
    """Peak memory of one call, measured in untimed passes after the timing.

    - ``peak_tracemalloc_bytes``: the peak of Python-heap allocations traced by
      :mod:`tracemalloc` during the call, above what was allocated before it.
      Memory Rust allocates (e.g. through mimalloc) is invisible to it.
    - ``peak_rss_bytes``: the process's peak resident set size during the call
      (``VmHWM`` after resetting it, so it covers all allocators and threads).
    - ``rss_growth_bytes``: ``peak_rss_bytes`` minus the RSS just before the
      call. Where the peak cannot be reset (not Linux >= 4.0), the growth is how
      far the call raised the process's lifetime peak, often 0.
    None: not measured (``compare(..., memory=False)``) or unknown on this OS.
    """

    peak_tracemalloc_bytes: int | None = None
    peak_rss_bytes: int | None = None
    rss_growth_bytes: int | None = None
    rss_peak_reset: bool = False


def _measure_memory(fn: Callable[[], Any], setup: Callable[[], Any] | None) -> MemoryUse:
    with _MEMORY_LOCK:
        # RSS first, without tracemalloc (its own bookkeeping would count).
        if setup is not None:
            setup()
        gc.collect()
        reset = reset_peak_rss()
        before = rss_bytes() if reset else peak_rss_bytes()
        fn()
        peak = peak_rss_bytes()
        growth = max(0, peak - before) if peak is not None and before is not None else None
        if setup is not None:
            setup()
        gc.collect()
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            current, _ = tracemalloc.get_traced_memory()
            fn()
            _, traced_peak = tracemalloc.get_traced_memory()
        finally:
            if not was_tracing:
                tracemalloc.stop()
    return MemoryUse(
        peak_tracemalloc_bytes=max(0, traced_peak - current),
        peak_rss_bytes=peak,
        rss_growth_bytes=growth,
        rss_peak_reset=reset,
    )


def _mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney p-value (1.0 when a sample is empty); kept for old callers."""
    if not a or not b:
        return 1.0
    return mann_whitney_u(a, b).p_value


def _bootstrap_ratio_ci(
    base: Sequence[float], cand: Sequence[float], level: float = 0.95, resamples: int = 2000
) -> tuple[float, float]:
    """:func:`overdrive.bench.stats.bootstrap_ratio_ci`; kept for old callers."""
    return bootstrap_ratio_ci(base, cand, confidence=level, resamples=resamples)


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _side(times: Sequence[float], cpu: Sequence[float], mem: MemoryUse) -> dict[str, Any]:
    return {
        "median_s": statistics.median(times) if times else None,
        "times_s": list(times),
        "cpu_median_s": statistics.median(cpu) if cpu else None,
        "cpu_times_s": list(cpu),
        "peak_tracemalloc_bytes": mem.peak_tracemalloc_bytes,
        "peak_rss_bytes": mem.peak_rss_bytes,
        "rss_growth_bytes": mem.rss_growth_bytes,
        "rss_peak_reset": mem.rss_peak_reset,
    }


def _memory_from(d: Mapping[str, Any]) -> MemoryUse:
    return MemoryUse(
        peak_tracemalloc_bytes=d.get("peak_tracemalloc_bytes"),
        peak_rss_bytes=d.get("peak_rss_bytes"),
        rss_growth_bytes=d.get("rss_growth_bytes"),
        rss_peak_reset=bool(d.get("rss_peak_reset", False)),
    )


def _fmt_s(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


@dataclass(frozen=True)
class Comparison:
    """Baseline vs candidate. ``ratio`` = median baseline time / median candidate
    time: above 1 means the candidate is faster.

    ``ci_low``/``ci_high``: the ``confidence`` (95%) bootstrap interval of the
    ratio; ``p_value``: two-sided Mann-Whitney U test of the two samples;
    ``significant``: ``p_value < 1 - confidence`` and the interval excludes 1;
    ``verdict``: "faster" only when ``ci_low >= 1 + threshold``, "slower" only
    when ``ci_high <= 1 / (1 + threshold)``, else "no difference". Times are
    seconds per call, one per timed sample (warm-up samples are not kept).
    """

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    baseline_median_s: float
    candidate_median_s: float
    repeats: int
    number: int
    baseline_times: list[float] = field(repr=False, default_factory=list)
    candidate_times: list[float] = field(repr=False, default_factory=list)
    threshold: float = 0.05
    verdict: str = "no difference"
    confidence: float = 0.95
    p_method: str = "asymptotic"
    baseline_name: str = "baseline"
    candidate_name: str = "candidate"
    baseline_cpu_times: list[float] = field(repr=False, default_factory=list)
    candidate_cpu_times: list[float] = field(repr=False, default_factory=list)
    baseline_memory: MemoryUse = field(repr=False, default_factory=MemoryUse)
    candidate_memory: MemoryUse = field(repr=False, default_factory=MemoryUse)
    warmup: int = 0
    baseline_number: int = 0
    candidate_number: int = 0
    timer: str = "wall"
    created: str = field(repr=False, default="")
    build: dict[str, Any] = field(repr=False, default_factory=dict)
    machine: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def from_samples(
        cls,
        base: Sequence[float],
        cand: Sequence[float],
        number: int,
        *,
        threshold: float = 0.05,
        confidence: float = 0.95,
        baseline_name: str = "baseline",
        candidate_name: str = "candidate",
        baseline_cpu_times: Sequence[float] = (),
        candidate_cpu_times: Sequence[float] = (),
        baseline_memory: MemoryUse | None = None,
        candidate_memory: MemoryUse | None = None,
        warmup: int = 0,
        baseline_number: int = 0,
        candidate_number: int = 0,
        timer: str = "wall",
        build: Mapping[str, Any] | None = None,
        machine: Mapping[str, Any] | None = None,
    ) -> Comparison:
        """Statistics of two samples of seconds per call (counts may differ).

        ``timer="cpu"`` computes the ratio, interval and test from the CPU times
        instead (which must then be given); ``base``/``cand`` stay the wall times.
        """
        if timer not in ("wall", "cpu"):
            raise ConfigurationError(f"timer must be 'wall' or 'cpu', got {timer!r}")
        if timer == "cpu" and not (baseline_cpu_times and candidate_cpu_times):
            raise ConfigurationError("timer='cpu' needs baseline_cpu_times and candidate_cpu_times")
        sb, sc = (base, cand) if timer == "wall" else (baseline_cpu_times, candidate_cpu_times)
        bm, cm = statistics.median(sb), statistics.median(sc)
        lo, hi = bootstrap_ratio_ci(sb, sc, confidence=confidence)
        mw = mann_whitney_u(sb, sc)
        return cls(
            ratio=bm / cm if cm > 0 else (1.0 if bm == cm else math.inf),
            ci_low=lo,
            ci_high=hi,
            p_value=mw.p_value,
            significant=mw.p_value < 1 - confidence and not (lo <= 1.0 <= hi),
            baseline_median_s=statistics.median(base),
            candidate_median_s=statistics.median(cand),
            repeats=len(base),
            number=number,
            baseline_times=list(base),
            candidate_times=list(cand),
            threshold=threshold,
            verdict=verdict(lo, hi, threshold),
            confidence=confidence,
            p_method=mw.method,
            baseline_name=baseline_name,
            candidate_name=candidate_name,
            baseline_cpu_times=list(baseline_cpu_times),
            candidate_cpu_times=list(candidate_cpu_times),
            baseline_memory=baseline_memory or MemoryUse(),
            candidate_memory=candidate_memory or MemoryUse(),
            warmup=warmup,
            baseline_number=baseline_number or number,
            candidate_number=candidate_number or number,
            timer=timer,
            created=utc_now(),
            build=dict(build) if build is not None else {},
            machine=dict(machine) if machine is not None else {},
        )

    @property
    def cpu_ratio(self) -> float | None:
        """Median baseline CPU time / median candidate CPU time (None if not recorded)."""
        if not self.baseline_cpu_times or not self.candidate_cpu_times:
            return None
        b = statistics.median(self.baseline_cpu_times)
        c = statistics.median(self.candidate_cpu_times)
        return b / c if c > 0 else None

    def summary(self) -> str:
        """One line, e.g. ``candidate 1.32x faster than baseline (95% CI 1.25-1.40, p=0.0002)``."""
        cand, base = self.candidate_name, self.baseline_name
        level = f"{self.confidence * 100:g}% CI"
        p = f"p={self.p_value:.2g}" if self.p_value >= 1e-4 else f"p={self.p_value:.1e}"
        if self.timer == "cpu":
            cb = (
                statistics.median(self.candidate_cpu_times),
                statistics.median(self.baseline_cpu_times),
            )
            medians = f"CPU {_fmt_s(cb[0])} vs {_fmt_s(cb[1])}"
        else:
            medians = f"{_fmt_s(self.candidate_median_s)} vs {_fmt_s(self.baseline_median_s)}"
        if self.verdict == "faster":
            return (
                f"{cand} {self.ratio:.2f}x faster than {base} "
                f"({level} {self.ci_low:.2f}-{self.ci_high:.2f}, {p}; {medians} per call)"
            )
        if self.verdict == "slower":
            inv = (1 / self.ratio, 1 / self.ci_high, 1 / self.ci_low)
            return (
                f"{cand} {inv[0]:.2f}x slower than {base} "
                f"({level} {inv[1]:.2f}-{inv[2]:.2f}, {p}; {medians} per call)"
            )
        return (
            f"{cand} vs {base}: no difference beyond {self.threshold:.0%} "
            f"(time ratio {self.ratio:.2f}, {level} {self.ci_low:.2f}-{self.ci_high:.2f}, "
            f"{p}; {medians} per call)"
        )

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """The result as a ``"kind": "comparison"`` document (see the report schema).

        Non-finite ratios become None so the JSON stays standard.
        """
        return {
            "kind": "comparison",
            "created": self.created or utc_now(),
            "build": self.build or _build_info(),
            "machine": self.machine or machine_info(),
            "baseline_name": self.baseline_name,
            "candidate_name": self.candidate_name,
            "ratio": _finite(self.ratio),
            "ci_low": _finite(self.ci_low),
            "ci_high": _finite(self.ci_high),
            "confidence": self.confidence,
            "p_value": self.p_value,
            "p_method": self.p_method,
            "threshold": self.threshold,
            "timer": self.timer,
            "verdict": self.verdict,
            "significant": self.significant,
            "cpu_ratio": self.cpu_ratio,
            "summary": self.summary(),
            "baseline": {
                **_side(self.baseline_times, self.baseline_cpu_times, self.baseline_memory),
                "number": self.baseline_number or self.number,
            },
            "candidate": {
                **_side(self.candidate_times, self.candidate_cpu_times, self.candidate_memory),
                "number": self.candidate_number or self.number,
            },
            "baseline_median_s": self.baseline_median_s,
            "candidate_median_s": self.candidate_median_s,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "number": self.number,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (parent directories created); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_json() + "\n", encoding="utf-8")
        return p

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        """Rebuild a result from :meth:`to_dict`'s document (statistics are not recomputed)."""
        if d.get("kind", "comparison") != "comparison":
            raise ConfigurationError(f"not a comparison document: kind={d.get('kind')!r}")
        b, c = d.get("baseline", {}), d.get("candidate", {})

        def num(key: str) -> float:
            v = d.get(key)
            return math.inf if v is None else float(v)

        return cls(
            ratio=num("ratio"),
            ci_low=num("ci_low"),
            ci_high=num("ci_high"),
            p_value=float(d["p_value"]),
            significant=bool(d["significant"]),
            baseline_median_s=float(b.get("median_s", d.get("baseline_median_s", math.nan))),
            candidate_median_s=float(c.get("median_s", d.get("candidate_median_s", math.nan))),
            repeats=int(d["repeats"]),
            number=int(d["number"]),
            baseline_times=list(b.get("times_s", [])),
            candidate_times=list(c.get("times_s", [])),
            threshold=float(d.get("threshold", 0.05)),
            verdict=str(d.get("verdict", "no difference")),
            confidence=float(d.get("confidence", 0.95)),
            p_method=str(d.get("p_method", "asymptotic")),
            baseline_name=str(d.get("baseline_name", "baseline")),
            candidate_name=str(d.get("candidate_name", "candidate")),
            baseline_cpu_times=list(b.get("cpu_times_s", [])),
            candidate_cpu_times=list(c.get("cpu_times_s", [])),
            baseline_memory=_memory_from(b),
            candidate_memory=_memory_from(c),
            warmup=int(d.get("warmup", 0)),
            baseline_number=int(b.get("number", d["number"])),
            candidate_number=int(c.get("number", d["number"])),
            timer=str(d.get("timer", "wall")),
            created=str(d.get("created", "")),
            build=dict(d.get("build", {})),
            machine=dict(d.get("machine", {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> Comparison:
        """Read a file written by :meth:`save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ConfigurationError(f"{path}: not a comparison document")
        return cls.from_dict(data)


def _build_info() -> dict[str, Any]:
    from .. import build_info

    return dict(build_info())


def compare(
    baseline: Callable[[], Any],
    candidate: Callable[[], Any],
    *,
    setup: Callable[[], Any] | None = None,
    repeats: int = 15,
    min_time: float = 0.02,
    number: int | None = None,
    warmup: int = 1,
    threshold: float = 0.05,
    confidence: float = 0.95,
    memory: bool = True,
    names: tuple[str, str] = ("baseline", "candidate"),
    timer: str = "wall",
    target_s: float | None = None,
) -> Comparison:
    """Time ``baseline`` and ``candidate`` interleaved and compare their medians.

    - A sample is ``number`` calls in a row. By default each callable gets its
      own count, so that each of its samples takes about ``min_time`` seconds:
      a rough calibration, then 4 interleaved batches of both, the fastest of
      which decides. Equally long samples get the same exposure to the machine's
      noise (long samples are preempted more often than short ones).
      ``Comparison.number`` is the smaller count; ``baseline_number`` and
      ``candidate_number`` each side's. ``target_s`` is the old name of ``min_time``.
    - ``warmup`` samples of each run first and are discarded;
      then ``repeats`` samples of each, interleaved in alternating order
      (A B, B A, A B, ...). ``setup()``, if given, runs untimed before every
      sample (and before calibration and memory calls), followed by a
      young-generation ``gc.collect(0)`` (a full collection runs once, first).
    - Each sample records wall time (``time.perf_counter``) and CPU time of the
      whole process (``time.process_time``, so threads the call starts count)
      per call. Memory (see :class:`MemoryUse`) is measured after the timing in
      separate calls, unless ``memory=False``.
    - The result holds the ratio of medians (baseline / candidate: > 1 means the
      candidate is faster), its bootstrap interval, the Mann-Whitney p-value
      and a ``verdict`` that needs the whole interval beyond ``threshold``.
    - ``timer="cpu"`` computes those from the CPU times instead of wall times:
      on a machine shared with other work, time spent preempted is not in the
      CPU time, so CPU-bound code compares far more steadily (code that waits,
      on I/O or sleeps, must use the default ``"wall"``).
    """
    _check_callable("baseline", baseline)
    _check_callable("candidate", candidate)
    if setup is not None:
        _check_callable("setup", setup)
    _check_int("repeats", repeats, 3)
    if timer not in ("wall", "cpu"):
        raise ConfigurationError(f"timer must be 'wall' or 'cpu', got {timer!r}")
    _check_int("warmup", warmup, 0)
    if target_s is not None:
        if min_time != 0.02:
            raise ConfigurationError(
                f"pass min_time or target_s (its old name), not both: {min_time!r}, {target_s!r}"
            )
        min_time = target_s
    target = _check_seconds("min_time", min_time)
    if number is not None:
        _check_int("number", number, 1)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InputTypeError(f"threshold must be a float, got {threshold!r}")
    if not 0 <= threshold < math.inf:
        raise ConfigurationError(f"threshold must be >= 0 and finite, got {threshold!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise InputTypeError(f"confidence must be a float, got {confidence!r}")
    if not 0 < confidence < 1:
        raise ConfigurationError(f"confidence must be in (0, 1), got {confidence!r}")
    if (
        not isinstance(names, tuple)
        or len(names) != 2
        or not all(isinstance(n, str) for n in names)
    ):
        raise InputTypeError(f"names must be a tuple of two str, got {names!r}")
    if names[0] == names[1]:
        raise ConfigurationError(f"names must differ, got {names!r}")

    fns = (baseline, candidate)
    gc.collect()
    numbers = (number, number) if number is not None else _calibrate_pair(fns, target, setup)
    for r in range(warmup):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            _sample(fns[i], numbers[i], setup)
    wall: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    for r in range(repeats):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            w, c = _sample(fns[i], numbers[i], setup)
            wall[i].append(w)
            cpu[i].append(c)
    mems = (MemoryUse(), MemoryUse())
    if memory:
        mems = (_measure_memory(baseline, setup), _measure_memory(candidate, setup))
    return Comparison.from_samples(
        wall[0],
        wall[1],
        min(numbers),
        threshold=float(threshold),
        confidence=float(confidence),
        baseline_name=names[0],
        candidate_name=names[1],
        baseline_cpu_times=cpu[0],
        candidate_cpu_times=cpu[1],
        baseline_memory=mems[0],
        candidate_memory=mems[1],
        warmup=warmup,
        baseline_number=numbers[0],
        candidate_number=numbers[1],
        timer=timer,
        build=_build_info(),
        machine=machine_info(),
    )
