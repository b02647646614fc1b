"""Open- and closed-loop load generation: :class:`LoadRunner`.

Open loop (``rate=`` or ``schedule=``): the intended send times are fixed
ahead by the Rust :class:`~overdrive._core.Pacer` (sleep, then spin the last
~50 µs with the GIL released; asyncio timers round to ~1 ms). Latency is
measured from the *intended* time, so a stall of the target shows in the
percentiles instead of silently slowing the generator (no coordinated
omission, wrk2's correction). Service time (from the actual send) and
schedule lag (actual send - intended) are reported separately. Slow responses
never throttle arrivals: sync targets run on a thread pool that grows up to
``max_workers``; async targets and HTTP URLs run as tasks on an event loop.
Arrivals that could not start within ``tolerance_s`` of their intended time
are counted as ``missed`` (still sent, still measured from the intended
time), with a warning when they exceed 1% or the generator is CPU-bound.

Closed loop (``concurrency=N`` without a rate): N users call back to back for
``duration`` seconds; latency = service time; the document says
``"mode": "closed"``.

Targets: a sync callable, an async callable (a coroutine function), or an
``http://`` / ``https://`` URL (:class:`~overdrive.bench.http_target.HttpTarget`).
Latencies go into :class:`~overdrive.LatencyHistogram`; :meth:`LoadResult.to_dict`
is the ``"kind": "load"`` JSON document.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as _dt
import inspect
import json
import math
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core import LatencyHistogram, Pacer
from ..exceptions import ConfigurationError, InputTypeError
from .http_target import HttpTarget

__all__ = ["LoadResult", "LoadRunner", "cpu_seconds", "rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Percentiles of the CDF: dense in the body, denser in the tail (<= 200 points).
_CDF_PS: list[float] = sorted(
    {*(i * 0.5 for i in range(1, 197)), 99.1, 99.3, 99.5, 99.7, 99.9, 99.95, 99.99, 100.0}
)[:199]
if _CDF_PS[-1] != 100.0:
    _CDF_PS[-1] = 100.0
_LATENCY_KEYS = ("p50", "p90", "p99", "p999", "max", "mean")


def rss_bytes() -> int:
    """Resident memory of this process, bytes (``/proc/self/statm``; 0 if unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far, seconds."""
    return time.process_time()


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _env() -> dict[str, Any]:
    from .._core import build_info
    from .report import machine_info

    return {"created": _now_iso(), "build": build_info(), "machine": machine_info()}


def _summary(h: LatencyHistogram) -> dict[str, float]:
    if h.count == 0:
        return dict.fromkeys(_LATENCY_KEYS, 0.0)
    p50, p90, p99, p999 = h.percentiles([50.0, 90.0, 99.0, 99.9])
    return {"p50": p50, "p90": p90, "p99": p99, "p999": p999, "max": h.max, "mean": h.mean}


def _cdf(h: LatencyHistogram) -> list[list[float]]:
    if h.count == 0:
        return []
    values = h.percentiles(_CDF_PS)
    out: list[list[float]] = []
    for v, p in zip(values, _CDF_PS, strict=False):
        if out and out[-1][0] == v:
            out[-1][1] = p / 100.0
        else:
            out.append([v, p / 100.0])
    return out


def _number(name: str, value: object, *, low: float = 0.0, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{name} must be a number, not {type(value).__name__}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if strict else v >= low)
    if not ok:
        rel = ">" if strict else ">="
        raise ConfigurationError(f"invalid {name}={value!r}: must be a finite number {rel} {low}")
    return v


def _count(name: str, value: object, *, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low:
        raise ConfigurationError(f"invalid {name}={value!r}: must be an int >= {low}")
    return value


def _is_async(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    return call is not None and inspect.iscoroutinefunction(call)


class _Doc:
    """to_dict / to_json / save of a result holding its JSON ``document``."""

    document: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready document (a copy)."""
        return json.loads(json.dumps(self.document))  # type: ignore[no-any-return]

    def to_json(self, indent: int | None = 2) -> str:
        """The document as JSON text."""
        return json.dumps(self.document, indent=indent)

    def save(self, path: str | Path) -> Path:
        """Write the JSON document to ``path``; return the path."""
        p = Path(path)
        p.write_text(self.to_json(), encoding="utf-8")
        return p


@dataclass
class LoadResult(_Doc):
    """What one load run measured; :meth:`to_dict` is the ``"kind": "load"`` document.

    ``latency`` (from the intended send time in open loop), ``service_time``
    (from the actual send) and ``schedule_lag`` (open loop only) are the
    histograms themselves; ``document`` holds every number in seconds.
    """

    document: dict[str, Any]
    latency: LatencyHistogram
    service_time: LatencyHistogram
    schedule_lag: LatencyHistogram | None
    thread_elapsed_s: list[float] = field(default_factory=list)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)

    def __repr__(self) -> str:
        d = self.document
        return (
            f"LoadResult(mode={d['mode']!r}, target={d['target']!r}, sent={d['sent']}, "
            f"completed={d['completed']}, errors={d['errors']}, missed={d['missed']}, "
            f"p99={d['latency']['p99']:.6f})"
        )

    @property
    def mode(self) -> str:
        """``"open"`` or ``"closed"``."""
        return str(self.document["mode"])

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0-100) of the latency, seconds."""
        return self.latency.percentile(p)

    @property
    def sent(self) -> int:
        """Calls started."""
        return int(self.document["sent"])

    @property
    def completed(self) -> int:
        """Calls finished (successfully or not)."""
        return int(self.document["completed"])

    @property
    def errors(self) -> int:
        """Calls that raised (or answered HTTP >= 400)."""
        return int(self.document["errors"])

    @property
    def missed(self) -> int:
        """Arrivals that started more than ``tolerance_s`` after their intended time."""
        return int(self.document["missed"])

    @property
    def achieved_rate(self) -> float:
        """Completed calls per second of the run (including the drain)."""
        return float(self.document["achieved_rate"])

    @property
    def warnings(self) -> list[str]:
        """What the run noticed (missed arrivals, CPU-bound generator, ...)."""
        return list(self.document["warnings"])

    @property
    def p99(self) -> float:
        """p99 latency, seconds."""
        return float(self.document["latency"]["p99"])

    @property
    def error_rate(self) -> float:
        """errors / completed calls (0.0 when none completed)."""
        done = self.document["completed"]
        return float(self.document["errors"]) / done if done else 0.0

    @property
    def achieved_fraction(self) -> float:
        """achieved_rate / offered_rate (1.0 in closed loop)."""
        offered = self.document["offered_rate"]
        return float(self.document["achieved_rate"]) / offered if offered else 1.0


class _Recorder:
    """Thread-safe tallies of one run: histograms, per-interval counters."""

    def __init__(self, interval_s: float, open_loop: bool, tolerance_s: float) -> None:
        self.interval = interval_s
        self.tolerance = tolerance_s
        self.latency = LatencyHistogram("latency")
        self.service = LatencyHistogram("service_time")
        self.lag = LatencyHistogram("schedule_lag") if open_loop else None
        self.lock = threading.Lock()
        self.sent = 0
        self.completed = 0
        self.errors = 0
        self.missed = 0
        self.last_done = 0.0
        self.error_types: Counter[str] = Counter()
        self.ivl_sent: Counter[int] = Counter()
        self.ivl_done: Counter[int] = Counter()
        self.ivl_err: Counter[int] = Counter()
        self.ivl_hist: dict[int, LatencyHistogram] = {}
        # The pacer's own view (open loop): issued, late, max_lag_s, busy_fraction.
        self.generator: dict[str, float] | None = None

    def _ivl(self, t: float) -> int:
        return int(t / self.interval)

    def started(self, intended: float, actual: float) -> None:
        if self.lag is not None:
            lag = max(actual - intended, 0.0)
            self.lag.record(lag)
            late = lag > self.tolerance
        else:
            late = False
        i = self._ivl(actual)
        with self.lock:
            self.sent += 1
            self.ivl_sent[i] += 1
            if late:
                self.missed += 1

    def done(self, intended: float, actual: float, end: float, err: BaseException | None) -> None:
        lat = end - intended
        self.latency.record(lat)
        self.service.record(end - actual)
        i = self._ivl(end)
        with self.lock:
            h = self.ivl_hist.get(i)
            if h is None:
                h = self.ivl_hist[i] = LatencyHistogram("interval")
            self.completed += 1
            self.ivl_done[i] += 1
            if end > self.last_done:
                self.last_done = end
            if err is not None:
                self.errors += 1
                self.ivl_err[i] += 1
                self.error_types[type(err).__name__] += 1
        h.record(lat)


class _Monitor:
    """Samples RSS and CPU at each interval end; drives the progress bar."""

    def __init__(
        self,
        clock: Callable[[], float],
        interval_s: float,
        duration_s: float,
        progress: bool,
        rec: _Recorder,
        label: str,
    ) -> None:
        self.clock = clock
        self.interval = interval_s
        self.duration = duration_s
        self.rec = rec
        self.samples: list[tuple[float, int, float]] = [(0.0, rss_bytes(), cpu_seconds())]
        self._stop = threading.Event()
        self._progress = progress
        self._label = label
        self._thread = threading.Thread(
            target=self._run, name="overdrive-load-monitor", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        bar: Any = None
        task: Any = None
        if self._progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            task = bar.add_task(self._label, total=self.duration, info="")
            bar.start()
        try:
            k = 1
            while True:
                due = k * self.interval
                if self._stop.wait(max(due - self.clock(), 0.0)):
                    break
                self.samples.append((self.clock(), rss_bytes(), cpu_seconds()))
                k += 1
                if bar is not None:
                    r = self.rec
                    info = f"sent {r.sent}  done {r.completed}  err {r.errors}  missed {r.missed}"
                    bar.update(task, completed=min(self.clock(), self.duration), info=info)
        finally:
            self.samples.append((self.clock(), rss_bytes(), cpu_seconds()))
            if bar is not None:
                bar.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _Workers:
    """Threads running a sync target; grows up to ``max_workers`` so slow
    calls never hold back new arrivals."""

    def __init__(
        self, target: Callable[[], object], rec: _Recorder, clock: Callable[[], float], cap: int
    ) -> None:
        self.target = target
        self.rec = rec
        self.clock = clock
        self.cap = cap
        self.q: queue.SimpleQueue[tuple[float] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = 0
        self.threads: list[threading.Thread] = []
        self.busy: list[tuple[int, float]] = []  # per finished thread: (calls, busy seconds)
        self.saturated = False
        self.in_flight = 0

    def _spawn(self) -> None:
        t = threading.Thread(target=self._work, name="overdrive-load-worker", daemon=True)
        with self.lock:
            self.threads.append(t)
        t.start()

    def prestart(self, n: int) -> None:
        """Start ``n`` idle workers ahead of the first arrival."""
        for _ in range(n):
            with self.lock:
                self.idle += 1
            self._spawn()

    def submit(self, intended: float) -> None:
        spawn = False
        with self.lock:
            self.in_flight += 1
            if self.idle > 0:
                self.idle -= 1
            elif len(self.threads) < self.cap:
                spawn = True
            else:
                self.saturated = True
        if spawn:
            self._spawn()
        self.q.put((intended,))

    def _work(self) -> None:
        calls = 0
        busy = 0.0
        target, rec = self.target, self.rec
        try:
            while True:
                item = self.q.get()
                if item is None:
                    return
                clock = self.clock  # set once the pacer exists
                intended = item[0]
                start = clock()
                rec.started(intended, start)
                err: BaseException | None = None
                try:
                    target()
                except Exception as e:  # counted by type
                    err = e
                end = clock()
                rec.done(intended, start, end, err)
                calls += 1
                busy += end - start
                with self.lock:
                    self.idle += 1
                    self.in_flight -= 1
        finally:
            with self.lock:
                self.busy.append((calls, busy))

    def drain(self, deadline: float) -> int:
        """Wait until every submitted call finished or ``deadline`` (clock);
        return how many are still running."""
        while True:
            with self.lock:
                left = self.in_flight
            if left == 0 or self.clock() >= deadline:
                return left
            time.sleep(0.002)

    def close(self, timeout: float) -> None:
        with self.lock:
            threads = list(self.threads)
        for _ in threads:
            self.q.put(None)
        end = time.monotonic() + timeout
        for t in threads:
            t.join(max(end - time.monotonic(), 0.0))


class LoadRunner:
    """Drive a target at a fixed arrival rate (open loop) or with N users (closed loop).

    Open loop: give ``rate`` (arrivals/s) and ``duration`` (s), or a
    ``schedule`` of ``(duration, rate)`` steps and ``(duration, start_rate,
    end_rate)`` ramps; ``poisson=True`` (with ``seed``) for exponential gaps.
    Closed loop: give ``concurrency`` and ``duration`` without a rate (or
    ``mode="closed"``: one user unless ``concurrency`` says otherwise).

    ``target``: a sync callable, an async callable, or an HTTP(S) URL (with
    ``method``, ``body``, ``headers``). Calls still running
    ``drain_timeout_s`` after the schedule ends are reported as incomplete.
    ``spin_s``: the pacer sleeps until this long before each intended time,
    then busy-spins (at most a quarter of the gap between arrivals; 0: sleep only).
    ``tolerance_s``: an arrival starting later than this is counted as missed.
    ``progress``: a rich progress bar (None: when the run is longer than 3 s
    and standard error is a terminal).

    >>> result = LoadRunner(lambda: None, rate=500, duration=1.0).run()
    >>> result.document["mode"]
    'open'
    """

    def __init__(
        self,
        target: Callable[[], object] | str,
        *,
        rate: float | None = None,
        duration: float | None = None,
        schedule: Iterable[Sequence[float]] | None = None,
        poisson: bool = False,
        seed: int = 0,
        concurrency: int | None = None,
        mode: str | None = None,
        max_workers: int = 1024,
        tolerance_s: float = 0.01,
        spin_s: float = 50e-6,
        drain_timeout_s: float = 10.0,
        interval_s: float | None = None,
        progress: bool | None = None,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
        name: str | None = None,
    ) -> None:
        self._url: str | None = None
        self._http: dict[str, Any] = {}
        if isinstance(target, str):
            HttpTarget(target, method=method, body=body, headers=headers, timeout_s=timeout_s)
            self._url = target
            self._http = {
                "method": method,
                "body": body,
                "headers": headers,
                "timeout_s": timeout_s,
            }
            self._is_async = True
        elif callable(target):
            self._is_async = _is_async(target)
        else:
            raise InputTypeError(
                f"target must be a callable, an async callable or an http(s) URL, "
                f"not {type(target).__name__}"
            )
        self.target = target
        self.name: str = (
            str(name)
            if name
            else str(
                target if isinstance(target, str) else getattr(target, "__qualname__", repr(target))
            )
        )
        if schedule is not None and rate is not None:
            raise ConfigurationError(f"invalid rate={rate!r}: give rate or schedule, not both")
        self._schedule: list[Any] | None = None
        if schedule is not None:
            if isinstance(schedule, (str, bytes)):
                raise InputTypeError("schedule must be a sequence of (duration, rate) tuples")
            # Lists become tuples; the Pacer checks every item (typed errors).
            segs: list[Any] = [tuple(s) if isinstance(s, list) else s for s in schedule]
            self._schedule = segs
            if duration is not None:
                raise ConfigurationError(
                    f"invalid duration={duration!r}: a schedule sets its own duration"
                )
            # Validate now (typed errors naming the item), not at run time.
            duration = Pacer(schedule=segs).duration
        if duration is None:
            raise ConfigurationError("invalid duration=None: give the run's duration in seconds")
        self.duration = _number("duration", duration)
        self.rate = None if rate is None else _number("rate", rate)
        if mode is not None and not isinstance(mode, str):
            raise InputTypeError(
                f"mode must be 'open', 'closed' or None, not {type(mode).__name__}"
            )
        if mode not in (None, "open", "closed"):
            raise ConfigurationError(f"invalid mode={mode!r}: must be 'open', 'closed' or None")
        if mode == "closed" and concurrency is None:
            concurrency = 1
        self.open_loop = self.rate is not None or self._schedule is not None
        if mode == "closed" and self.open_loop:
            raise ConfigurationError(
                f"invalid mode={mode!r}: a closed loop takes no rate or schedule"
            )
        if mode == "open" and not self.open_loop:
            raise ConfigurationError("invalid rate=None: mode='open' needs a rate or a schedule")
        if self.open_loop and concurrency is not None:
            raise ConfigurationError(
                f"invalid concurrency={concurrency!r}: closed loop takes no rate or schedule"
            )
        if not self.open_loop and concurrency is None:
            raise ConfigurationError(
                "invalid rate=None: give rate (open loop), schedule, or concurrency (closed loop)"
            )
        self.concurrency = None if concurrency is None else _count("concurrency", concurrency)
        if not isinstance(poisson, bool):
            raise InputTypeError(f"poisson must be a bool, not {type(poisson).__name__}")
        self.poisson = poisson
        self.seed = _count("seed", seed, low=0)
        self.max_workers = _count("max_workers", max_workers)
        self.tolerance_s = _number("tolerance_s", tolerance_s, strict=False)
        self.drain_timeout_s = _number("drain_timeout_s", drain_timeout_s, strict=False)
        self.spin_s = _number("spin_s", spin_s, strict=False)
        if self.spin_s > 0.1:
            raise ConfigurationError(f"invalid spin_s={spin_s!r}: must be seconds from 0 to 0.1")
        if interval_s is None:
            interval_s = min(max(self.duration / 20.0, 0.1), 1.0)
        self.interval_s = _number("interval_s", interval_s)
        if progress is not None and not isinstance(progress, bool):
            raise InputTypeError(f"progress must be a bool or None, not {type(progress).__name__}")
        self.progress = progress
        if self.rate is not None:
            Pacer(self.rate, self.duration)  # validates the pair

    # --- public ---------------------------------------------------------------

    def run(self) -> LoadResult:
        """Run the load once (blocking) and return the result.

        Async targets and URLs run on a fresh event loop, in a helper thread
        when the calling thread already runs one.
        """
        if self._is_async:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return self._run_async_here()
            box: list[LoadResult] = []
            errs: list[BaseException] = []

            def body() -> None:
                try:
                    box.append(self._run_async_here())
                except BaseException as e:  # re-raised in the caller
                    errs.append(e)

            t = threading.Thread(target=body, name="overdrive-load-loop")
            t.start()
            t.join()
            if errs:
                raise errs[0]
            return box[0]
        return self._run_sync()

    async def arun(self) -> LoadResult:
        """:meth:`run` from a coroutine (in a worker thread, its own event loop)."""
        return await asyncio.to_thread(self.run)

    # --- internals ------------------------------------------------------------

    def _pacer(self) -> Pacer:
        if self._schedule is not None:
            return Pacer(
                schedule=self._schedule,
                poisson=self.poisson,
                seed=self.seed,
                tolerance_s=self.tolerance_s,
                spin_s=self.spin_s,
            )
        return Pacer(
            self.rate,
            self.duration,
            poisson=self.poisson,
            seed=self.seed,
            tolerance_s=self.tolerance_s,
            spin_s=self.spin_s,
        )

    def _show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        return self.duration > 3.0 and sys.stderr.isatty()

    def _run_sync(self) -> LoadResult:
        assert callable(self.target) and not isinstance(self.target, str)
        rec = _Recorder(self.interval_s, self.open_loop, self.tolerance_s)
        warnings: list[str] = []
        if self.open_loop:
            workers = _Workers(self.target, rec, time.perf_counter, self.max_workers)
            workers.prestart(min(8, self.max_workers))
            # Time zero after the workers are up: the first arrivals are not late.
            pacer = self._pacer()
            clock = workers.clock = pacer.elapsed
            mon = _Monitor(
                clock, self.interval_s, self.duration, self._show_progress(), rec, self.name
            )
            mon.start()
            try:
                for _idx, intended, _lag in pacer:
                    workers.submit(intended)
                dispatch_end = clock()
                left = workers.drain(clock() + self.drain_timeout_s)
            finally:
                pacer.stop()
                workers.close(timeout=1.0)
                mon.stop()
            self._generator_warnings(pacer, dispatch_end, warnings, rec)
            if workers.saturated:
                warnings.append(
                    f"the worker pool reached max_workers={self.max_workers}: later arrivals "
                    "queued behind slow calls (latency still counts from the intended time)"
                )
            thread_elapsed = [b / c for c, b in workers.busy if c >= 5]
        else:
            clock = _clock_from_now()
            mon = _Monitor(
                clock, self.interval_s, self.duration, self._show_progress(), rec, self.name
            )
            mon.start()
            left, thread_elapsed = self._closed_sync(rec, clock)
            mon.stop()
        if left:
            warnings.append(
                f"{left} call(s) still running {self.drain_timeout_s} s after the schedule ended "
                "(not counted as completed)"
            )
        return self._result(rec, mon, warnings, thread_elapsed)

    def _closed_sync(self, rec: _Recorder, clock: Callable[[], float]) -> tuple[int, list[float]]:
        assert callable(self.target) and self.concurrency is not None
        target = self.target
        stop_at = [self.duration]  # set to 0 to stop the users early
        per_thread: list[tuple[int, float]] = []
        lock = threading.Lock()

        def user() -> None:
            calls, busy = 0, 0.0
            while True:
                start = clock()
                if start >= stop_at[0]:
                    break
                rec.started(start, start)
                err: BaseException | None = None
                try:
                    target()
                except Exception as e:  # counted by type
                    err = e
                end = clock()
                rec.done(start, start, end, err)
                calls += 1
                busy += end - start
            with lock:
                per_thread.append((calls, busy))

        threads = [
            threading.Thread(target=user, name=f"overdrive-load-user-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        try:
            for t in threads:
                t.start()
            end = time.monotonic() + self.duration + self.drain_timeout_s + 1.0
            for t in threads:
                t.join(max(end - time.monotonic(), 0.0))
        finally:
            stop_at[0] = 0.0
        left = sum(t.is_alive() for t in threads)
        return left, [b / c for c, b in per_thread if c >= 5]

    def _generator_warnings(
        self, pacer: Pacer, dispatch_end: float, warnings: list[str], rec: _Recorder
    ) -> None:
        st = pacer.stats()
        busy = 1.0 - st["waiting_s"] / dispatch_end if dispatch_end > 0 else 0.0
        rec.generator = {
            "issued": st["issued"],
            "late": st["late"],
            "max_lag_s": st["max_lag_s"],
            "busy_fraction": max(busy, 0.0),
        }
        if busy > 0.9:
            warnings.append(
                f"the generator was busy {busy:.0%} of the run (CPU-bound): "
                "the offered rate may not have been delivered"
            )
        if st["late"] > 0.01 * max(st["issued"], 1):
            warnings.append(
                f"the pacer handed out {st['late']} of {st['issued']} arrivals more than "
                f"tolerance_s={self.tolerance_s} late (max {st['max_lag_s'] * 1e3:.1f} ms)"
            )

    def _run_async_here(self) -> LoadResult:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self._run_async())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _run_async(self) -> LoadResult:
        target: Any
        http: HttpTarget | None = None
        if self._url is not None:
            http = HttpTarget(self._url, **self._http)
            target = http
        else:
            target = self.target
        rec = _Recorder(self.interval_s, self.open_loop, self.tolerance_s)
        warnings: list[str] = []
        thread_elapsed: list[float] = []
        try:
            if self.open_loop:
                left, mon = await self._open_async(target, rec, warnings)
            else:
                left, mon = await self._closed_async(target, rec)
        finally:
            if http is not None:
                await http.aclose()
        if left:
            warnings.append(
                f"{left} call(s) still running {self.drain_timeout_s} s after the schedule ended "
                "(cancelled, not counted as completed)"
            )
        return self._result(rec, mon, warnings, thread_elapsed)

    async def _open_async(
        self, target: Any, rec: _Recorder, warnings: list[str]
    ) -> tuple[int, _Monitor]:
        loop = asyncio.get_running_loop()
        pacer = self._pacer()
        clock = pacer.elapsed
        mon = _Monitor(clock, self.interval_s, self.duration, self._show_progress(), rec, self.name)
        tasks: set[asyncio.Task[None]] = set()
        finished = asyncio.Event()
        dispatch_end = [0.0]

        async def one(intended: float) -> None:
            start = clock()
            rec.started(intended, start)
            err: BaseException | None = None
            try:
                await target()
            except Exception as e:  # counted by type
                err = e
            rec.done(intended, start, clock(), err)

        def launch(intended: float) -> None:
            t = loop.create_task(one(intended))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

        # Arrivals due while the loop has not yet run the last wake-up join
        # that batch: one cross-thread wake-up per batch, not per arrival.
        due: collections.deque[float] = collections.deque()
        wake_lock = threading.Lock()
        woken = [False]

        def launch_due() -> None:
            with wake_lock:
                woken[0] = False
            while due:
                launch(due.popleft())

        def pace() -> None:
            try:
                for _idx, intended, _lag in pacer:
                    due.append(intended)
                    with wake_lock:
                        wake = not woken[0]
                        woken[0] = True
                    if wake:
                        loop.call_soon_threadsafe(launch_due)
            finally:
                dispatch_end[0] = clock()
                # RuntimeError: the loop is closing after an interrupt.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(finished.set)

        th = threading.Thread(target=pace, name="overdrive-load-pacer", daemon=True)
        mon.start()
        th.start()
        try:
            await finished.wait()
            await asyncio.sleep(0)  # let the last launches run
            left = 0
            if tasks:
                _done, pending = await asyncio.wait(set(tasks), timeout=self.drain_timeout_s)
                left = len(pending)
        finally:
            pacer.stop()
            await asyncio.to_thread(th.join)
            for t in list(tasks):
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            mon.stop()
        self._generator_warnings(pacer, dispatch_end[0], warnings, rec)
        return left, mon

    async def _closed_async(self, target: Any, rec: _Recorder) -> tuple[int, _Monitor]:
        assert self.concurrency is not None
        clock = _clock_from_now()
        mon = _Monitor(clock, self.interval_s, self.duration, self._show_progress(), rec, self.name)
        stop_at = self.duration

        async def user() -> None:
            while True:
                start = clock()
                if start >= stop_at:
                    return
                rec.started(start, start)
                err: BaseException | None = None
                try:
                    await target()
                except Exception as e:  # counted by type
                    err = e
                rec.done(start, start, clock(), err)

        mon.start()
        users = [asyncio.ensure_future(user()) for _ in range(self.concurrency)]
        try:
            _done, pending = await asyncio.wait(users, timeout=self.duration + self.drain_timeout_s)
        finally:
            for u in users:
                u.cancel()
            await asyncio.gather(*users, return_exceptions=True)
            mon.stop()
        return len(pending), mon

    def _result(
        self,
        rec: _Recorder,
        mon: _Monitor,
        warnings: list[str],
        thread_elapsed: list[float],
    ) -> LoadResult:
        elapsed = max(self.duration, rec.last_done)
        if rec.sent and rec.missed > 0.01 * rec.sent:
            warnings.append(
                f"{rec.missed} of {rec.sent} arrivals ({rec.missed / rec.sent:.1%}) started more "
                f"than tolerance_s={self.tolerance_s} after their intended time: the generator "
                "or its workers could not keep up (CPU-bound?)"
            )
        timeline = []
        used = [*rec.ivl_sent, *rec.ivl_done]
        n = max(1, math.ceil(elapsed / self.interval_s - 1e-9), max(used, default=0) + 1)
        samples = mon.samples
        si = 0
        for i in range(n):
            t_end = (i + 1) * self.interval_s
            while si + 1 < len(samples) and samples[si][0] < t_end - 1e-3:
                si += 1
            _t, rss, cpu = samples[si]
            h = rec.ivl_hist.get(i)
            p50, p99 = h.percentiles([50.0, 99.0]) if h is not None and h.count else (0.0, 0.0)
            width = min(self.interval_s, elapsed - i * self.interval_s)
            timeline.append(
                {
                    "t": min(t_end, elapsed),
                    "sent": rec.ivl_sent[i],
                    "completed": rec.ivl_done[i],
                    "errors": rec.ivl_err[i],
                    "throughput": rec.ivl_done[i] / width if width > 0 else 0.0,
                    "p50": p50,
                    "p99": p99,
                    "rss_bytes": rss,
                    "cpu_s": cpu - samples[0][2],
                }
            )
        doc: dict[str, Any] = {"kind": "load"}
        doc.update(_env())
        doc.update(
            {
                "mode": "open" if self.open_loop else "closed",
                "target": str(self.name),
                "offered_rate": (
                    (self.rate if self.rate is not None else self._expected() / self.duration)
                    if self.open_loop
                    else None
                ),
                "concurrency": self.concurrency,
                "poisson": self.poisson if self.open_loop else None,
                "duration_s": self.duration,
                "elapsed_s": elapsed,
                "sent": rec.sent,
                "completed": rec.completed,
                "errors": rec.errors,
                "error_types": dict(rec.error_types),
                "missed": rec.missed,
                "achieved_rate": rec.completed / elapsed if elapsed > 0 else 0.0,
                "latency": _summary(rec.latency),
                "service_time": _summary(rec.service),
                "schedule_lag": _summary(rec.lag) if rec.lag is not None else None,
                "generator": rec.generator,
                "cdf": _cdf(rec.latency),
                "timeline": timeline,
                "warnings": warnings,
            }
        )
        return LoadResult(
            document=doc,
            latency=rec.latency,
            service_time=rec.service,
            schedule_lag=rec.lag,
            thread_elapsed_s=thread_elapsed,
            rss_samples=[(t, r) for t, r, _c in samples],
        )

    def _expected(self) -> float:
        return float(self._pacer().expected_count)


def _clock_from_now() -> Callable[[], float]:
    t0 = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - t0

    return clock
