"""In-process alerts: rules over metrics, evaluated on a background tick.

An :class:`AlertRule` compares a value with a threshold (``op`` one of
``>``, ``>=``, ``<``, ``<=``); the value comes from a ``getter`` (a callable
returning a number, None for "no data", or a ``{instance: number}`` dict) or
from ``metric``, a metric name (``fnmatch`` pattern) of the exported
metrics, one instance per series. A rule *fires* once its condition has held
for ``for_s`` seconds and *resolves* only once the value is back past the
threshold by ``hysteresis`` (so a value hovering at the threshold does not
flap). :class:`Alerts` evaluates rules every ``interval_s`` seconds on a
daemon thread (or on each :meth:`Alerts.tick` call, with an injected clock
in tests), calls ``on_fire``/``on_resolve`` and logs ONE line per
transition on the ``overdrive.telemetry.alerts`` logger.

:func:`default_rules` holds the source design's thresholds: cache hit rate
below 60%, p95 latency above 200 ms, error rate above 1%, cost per request
above a target. Their getters measure over the last tick interval (the
change of each component's counters and histogram buckets since the
previous tick), so an alert resolves when things get better, not when a
lifetime average finally moves.
"""

from __future__ import annotations

import bisect
import fnmatch
import logging
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from ..exceptions import ConfigurationError, InputTypeError
from . import registry

__all__ = [
    "AlertEvent",
    "AlertRule",
    "Alerts",
    "ERROR_RATE_KEYS",
    "cache_hit_rate",
    "cost_per_request",
    "default_rules",
    "error_rate",
    "latency_percentile",
]

log = logging.getLogger("overdrive.telemetry.alerts")

Op = Literal[">", ">=", "<", "<="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
Getter = Callable[[], "float | Mapping[str, float | None] | None"]


@dataclass(frozen=True)
class AlertEvent:
    """One transition: ``state`` is "firing" or "resolved"; ``instance``
    names the series ("" for a single-valued getter); ``at`` is the alerts
    clock's time."""

    rule: AlertRule
    instance: str
    state: Literal["firing", "resolved"]
    value: float
    at: float

    def __str__(self) -> str:
        r = self.rule
        where = f" [{self.instance}]" if self.instance else ""
        return (
            f"alert {r.name}{where} {self.state}: value {self.value:.6g} "
            f"(fires when {r.op} {r.threshold:.6g})"
        )


class AlertRule:
    """A threshold on one value.

    ``metric``: an exported metric name or ``fnmatch`` pattern (counters
    with or without ``_total``), one instance per matching series; or
    ``getter``: a callable returning a number, None (no data: no change) or
    ``{instance: number}``. ``op`` compares value with ``threshold``.
    ``for_s``: how long the condition must hold before firing.
    ``hysteresis`` (>= 0, in the value's units): a firing rule resolves only
    when the value is past ``threshold`` by this much (below ``threshold -
    hysteresis`` for ``>``/``>=``, above ``threshold + hysteresis`` for
    ``<``/``<=``). ``severity`` and ``description`` go into the exported
    Prometheus rules and the events.
    """

    def __init__(
        self,
        name: str,
        metric: str | None = None,
        op: Op = ">",
        threshold: float = 0.0,
        *,
        getter: Getter | None = None,
        for_s: float = 0.0,
        hysteresis: float = 0.0,
        severity: str = "warning",
        description: str = "",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InputTypeError(f"name must be a non-empty str, not {name!r}")
        if (metric is None) == (getter is None):
            raise ConfigurationError(f"rule {name!r}: give exactly one of metric= and getter=")
        if metric is not None and not isinstance(metric, str):
            raise InputTypeError(f"metric must be a str, not {type(metric).__name__}")
        if getter is not None and not callable(getter):
            raise InputTypeError(f"getter must be callable, not {type(getter).__name__}")
        if op not in _OPS:
            raise ConfigurationError(f"invalid op={op!r}: must be one of {', '.join(_OPS)}")
        for param, value in (
            ("threshold", threshold),
            ("for_s", for_s),
            ("hysteresis", hysteresis),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputTypeError(f"{param} must be a number, not {type(value).__name__}")
            if not math.isfinite(value):
                raise ConfigurationError(f"invalid {param}={value!r}: must be finite")
        if for_s < 0:
            raise ConfigurationError(f"invalid for_s={for_s!r}: must be >= 0")
        if hysteresis < 0:
            raise ConfigurationError(f"invalid hysteresis={hysteresis!r}: must be >= 0")
        self.name = name
        self.metric = metric
        self.getter = getter
        self.op: Op = op
        self.threshold = float(threshold)
        self.for_s = float(for_s)
        self.hysteresis = float(hysteresis)
        self.severity = severity
        self.description = description

    def breached(self, value: float) -> bool:
        """Whether ``value`` meets the firing condition."""
        return _OPS[self.op](value, self.threshold)

    def cleared(self, value: float) -> bool:
        """Whether ``value`` is far enough back (past the hysteresis band) to resolve."""
        if self.op in (">", ">="):
            return not _OPS[self.op](value, self.threshold - self.hysteresis)
        return not _OPS[self.op](value, self.threshold + self.hysteresis)

    def values(self, samples: Callable[[], Iterable[tuple[str, str, float]]]) -> dict[str, float]:
        """The current value of each instance (``samples`` yields
        ``(family, series, value)`` of the exported metrics)."""
        out: dict[str, float] = {}
        if self.getter is not None:
            got = self.getter()
            if isinstance(got, Mapping):
                for k, v in got.items():
                    if v is not None and math.isfinite(float(v)):
                        out[str(k)] = float(v)
            elif got is not None and math.isfinite(float(got)):
                out[""] = float(got)
            return out
        assert self.metric is not None
        pattern = self.metric.removesuffix("_total")
        for family, series, value in samples():
            if fnmatch.fnmatchcase(family, pattern) and math.isfinite(value):
                out[series] = value
        return out

    def __repr__(self) -> str:
        src = self.metric if self.metric is not None else getattr(self.getter, "__name__", "getter")
        return (
            f"AlertRule({self.name!r}, {src!r}, {self.op!r}, {self.threshold!r}, "
            f"for_s={self.for_s!r}, hysteresis={self.hysteresis!r})"
        )


@dataclass
class _State:
    pending_since: float | None = None
    firing: bool = False
    since: float = 0.0
    value: float = math.nan


class Alerts:
    """Evaluates ``rules`` (default :func:`default_rules`) every
    ``interval_s`` seconds.

    ``start()``/``stop()`` (or ``with Alerts(...):``) run the tick on a daemon
    thread; :meth:`tick` evaluates once (for tests, with ``clock`` injected).
    ``on_fire(event)`` / ``on_resolve(event)`` run on the ticking thread; an
    exception there is logged, never raised. Thread-safe.
    """

    def __init__(
        self,
        rules: Sequence[AlertRule] | None = None,
        interval_s: float = 15.0,
        *,
        on_fire: Callable[[AlertEvent], object] | None = None,
        on_resolve: Callable[[AlertEvent], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        if isinstance(interval_s, bool) or not isinstance(interval_s, int | float):
            raise InputTypeError(f"interval_s must be a number, not {type(interval_s).__name__}")
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ConfigurationError(f"invalid interval_s={interval_s!r}: must be > 0")
        self.rules = list(default_rules() if rules is None else rules)
        for r in self.rules:
            if not isinstance(r, AlertRule):
                raise InputTypeError(f"rules must be AlertRule objects, not {type(r).__name__}")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"rule names must be unique: {names}")
        self.interval_s = float(interval_s)
        self.on_fire = on_fire
        self.on_resolve = on_resolve
        self.clock = clock
        self.log = logger or log
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], _State] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.errors = 0

    # -- evaluation ---------------------------------------------------------

    def tick(self) -> list[AlertEvent]:
        """Evaluate every rule once; return the transitions it caused."""
        with self._lock:
            now = self.clock()
            cache: list[tuple[str, str, float]] | None = None

            def samples() -> list[tuple[str, str, float]]:
                nonlocal cache
                if cache is None:
                    cache = _metric_samples()
                return cache

            events: list[AlertEvent] = []
            for rule in self.rules:
                try:
                    values = rule.values(samples)
                except Exception:
                    self.errors += 1
                    self.log.exception("alert %s: evaluating the rule failed", rule.name)
                    continue
                for instance, value in values.items():
                    ev = self._step(rule, instance, value, now)
                    if ev is not None:
                        events.append(ev)
            self.ticks += 1
        for ev in events:
            self._announce(ev)
        return events

    def _step(self, rule: AlertRule, instance: str, value: float, now: float) -> AlertEvent | None:
        st = self._states.setdefault((rule.name, instance), _State())
        st.value = value
        if not st.firing:
            if not rule.breached(value):
                st.pending_since = None
                return None
            if st.pending_since is None:
                st.pending_since = now
            if now - st.pending_since < rule.for_s:
                return None
            st.firing, st.since, st.pending_since = True, now, None
            return AlertEvent(rule, instance, "firing", value, now)
        if rule.cleared(value):
            st.firing, st.since = False, now
            return AlertEvent(rule, instance, "resolved", value, now)
        return None

    def _announce(self, ev: AlertEvent) -> None:
        if ev.state == "firing":
            self.log.warning("%s", ev)
            cb = self.on_fire
        else:
            self.log.info("%s", ev)
            cb = self.on_resolve
        if cb is not None:
            try:
                cb(ev)
            except Exception:
                self.log.exception("alert %s: the %s callback raised", ev.rule.name, ev.state)

    @property
    def firing(self) -> dict[tuple[str, str], float]:
        """``{(rule name, instance): last value}`` of every firing alert."""
        with self._lock:
            return {k: s.value for k, s in self._states.items() if s.firing}

    # -- the background tick ------------------------------------------------

    def start(self) -> Self:
        """Start ticking every ``interval_s`` on a daemon thread (idempotent)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="overdrive-alerts", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # pragma: no cover - tick() already guards each rule
                self.log.exception("alerts: a tick failed")

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background tick and wait for it (idempotent)."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _metric_samples() -> list[tuple[str, str, float]]:
    from .collector import OverdriveCollector

    out = []
    for point, name in OverdriveCollector().samples():
        labels = ",".join(f'{k}="{v}"' for k, v in (("name", name), *point.labels))
        out.append((point.family, f"{point.family}{{{labels}}}", point.value))
    return out


# -- windowed getters for the default rules --------------------------------


def _stats(obj: Any) -> Mapping[str, Any] | None:
    try:
        s = obj.stats()
    except Exception:
        return None
    return s if isinstance(s, Mapping) else None


def _num(s: Mapping[str, Any], keys: Sequence[str]) -> float | None:
    total = 0.0
    for k in keys:
        v = s.get(k)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        total += float(v)
    return total


class _Window:
    """The change of named numbers since the previous call, per key."""

    def __init__(self) -> None:
        self._prev: dict[Any, tuple[float, ...]] = {}
        self._lock = threading.Lock()

    def delta(self, key: Any, now: tuple[float, ...]) -> tuple[float, ...] | None:
        with self._lock:
            prev = self._prev.get(key)
            self._prev[key] = now
        if prev is None or len(prev) != len(now):
            return None
        d = tuple(a - b for a, b in zip(now, prev, strict=True))
        return None if any(x < 0 for x in d) else d


def cache_hit_rate(min_events: int = 10) -> Getter:
    """A getter: hits / (hits + misses) over the last interval of every live
    component whose name holds ``cache`` or ``tier`` (None until at least
    ``min_events`` lookups happened in the interval)."""
    window = _Window()

    def cache_hit_rate() -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for reg in registry.live():
            if "cache" not in reg.component and "tier" not in reg.component:
                continue
            s = _stats(reg.obj)
            if s is None:
                continue
            hits, misses = _num(s, ("hits",)), _num(s, ("misses",))
            if hits is None or misses is None:
                continue
            d = window.delta(("hit", id(reg.obj)), (hits, misses))
            key = f"{reg.component}/{reg.name}"
            if d is None or d[0] + d[1] < min_events:
                out[key] = None
            else:
                out[key] = d[0] / (d[0] + d[1])
        return out

    return cache_hit_rate


#: For the error-rate rule: per component, the stats keys counting errors
#: and the keys whose sum counts all attempts. Other components with an
#: ``errors`` key use ``requests`` or ``calls`` as the total.
ERROR_RATE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "batcher": (("failed",), ("completed", "failed")),
    "message_batcher": (("failed",), ("completed", "failed")),
    "balancer": (("errors",), ("picks",)),
    "compressor": (("errors",), ("compress_calls", "decompress_calls")),
    "stream": (("errors",), ("requests",)),
    "tiered_cache": (("compute_errors",), ("computes",)),
    "circuit_breaker": (("failures",), ("successes", "failures")),
}


def _error_keys(component: str, s: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    known = ERROR_RATE_KEYS.get(component)
    if known is not None:
        return known
    for total in ("requests", "calls"):
        if total in s:
            return ("errors",), (total,)
    return (), ()


def error_rate(min_events: int = 20) -> Getter:
    """A getter: errors / attempts over the last interval for every live
    component with error counters (:data:`ERROR_RATE_KEYS`); None until at
    least ``min_events`` attempts happened in the interval."""
    window = _Window()

    def error_rate() -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for reg in registry.live():
            s = _stats(reg.obj)
            if s is None:
                continue
            err_keys, total_keys = _error_keys(reg.component, s)
            if not err_keys:
                continue
            errs, total = _num(s, err_keys), _num(s, total_keys)
            if errs is None or total is None:
                continue
            d = window.delta(("err", id(reg.obj)), (errs, total))
            key = f"{reg.component}/{reg.name}"
            out[key] = None if d is None or d[1] < min_events else min(d[0] / d[1], 1.0)
        return out

    return error_rate


def _histograms() -> Iterable[tuple[str, Any]]:
    for reg in registry.live():
        obj = reg.obj
        if callable(getattr(obj, "buckets", None)) and callable(getattr(obj, "record", None)):
            yield f"{reg.component}/{reg.name}", obj
        hists = getattr(obj, "telemetry_histograms", None)
        if callable(hists):
            for what, (h, unit) in hists().items():
                if unit == "seconds" and what in ("request_duration", "time_to_first_token"):
                    yield f"{reg.component}/{reg.name}/{what}", h


def windowed_percentile(
    prev: list[tuple[float, float]] | None, now: list[tuple[float, float]], p: float
) -> tuple[float | None, float]:
    """The ``p``-th percentile of the values recorded between two
    ``buckets()`` snapshots (cumulative counts), as the upper bound of the
    bucket that holds it, and how many values that was."""
    if not now:
        return None, 0.0
    prev_ub = [u for u, _ in prev or []]
    prev_c = [c for _, c in prev or []]

    def before(u: float) -> float:
        i = bisect.bisect_right(prev_ub, u)
        return prev_c[i - 1] if i else 0.0

    deltas = [(u, c - before(u)) for u, c in now]
    total = deltas[-1][1]
    if total <= 0:
        return None, 0.0
    rank = math.ceil(total * p / 100.0)
    for u, d in deltas:
        if d >= rank:
            return u, total
    return deltas[-1][0], total


def latency_percentile(p: float = 95.0, min_events: int = 10) -> Getter:
    """A getter: the ``p``-th percentile (seconds) of every live latency
    histogram (and each stream name's time to first token and request
    duration) over the last interval; None with fewer than ``min_events``
    values in the interval."""
    prevs: dict[Any, list[tuple[float, float]]] = {}
    lock = threading.Lock()

    def latency_percentile() -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key, h in _histograms():
            now = [(float(u), float(c)) for u, c in h.buckets()]
            with lock:
                prev = prevs.get((key, id(h)))
                prevs[(key, id(h))] = now
            if prev is None:
                out[key] = None
                continue
            value, n = windowed_percentile(prev, now, p)
            out[key] = value if n >= min_events else None
        return out

    return latency_percentile


def cost_per_request() -> Getter:
    """A getter: the mean cost of the priced streams that ended in the last
    interval, per stream name (None when none ended)."""
    window = _Window()

    def cost_per_request() -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for reg in registry.live():
            if reg.component != "stream":
                continue
            s = _stats(reg.obj)
            if s is None:
                continue
            cost, n = _num(s, ("cost",)), _num(s, ("priced_requests",))
            if cost is None or n is None:
                continue
            d = window.delta(("cost", id(reg.obj)), (cost, n))
            out[f"stream/{reg.name}"] = None if d is None or d[1] < 1 else d[0] / d[1]
        return out

    return cost_per_request


def default_rules(
    *,
    hit_rate: float = 0.6,
    p95_s: float = 0.2,
    error_rate_max: float = 0.01,
    cost_target: float | None = None,
    for_s: float = 0.0,
) -> list[AlertRule]:
    """The source design's alerts: cache hit rate < ``hit_rate`` (60%), p95
    latency > ``p95_s`` (200 ms), error rate > ``error_rate_max`` (1%), and
    cost per request > ``cost_target`` (only when a target is given). Each
    has a hysteresis band of a tenth of its threshold."""
    rules = [
        AlertRule(
            "OverdriveCacheHitRateLow",
            op="<",
            threshold=hit_rate,
            getter=cache_hit_rate(),
            for_s=for_s,
            hysteresis=0.05,
            description=f"cache hit rate below {hit_rate:.0%}",
        ),
        AlertRule(
            "OverdriveLatencyP95High",
            op=">",
            threshold=p95_s,
            getter=latency_percentile(95.0),
            for_s=for_s,
            hysteresis=p95_s / 10,
            description=f"p95 latency above {p95_s * 1000:.0f} ms",
        ),
        AlertRule(
            "OverdriveErrorRateHigh",
            op=">",
            threshold=error_rate_max,
            getter=error_rate(),
            for_s=for_s,
            hysteresis=error_rate_max / 10,
            severity="critical",
            description=f"error rate above {error_rate_max:.1%}",
        ),
    ]
    if cost_target is not None:
        rules.append(
            AlertRule(
                "OverdriveCostPerRequestHigh",
                op=">",
                threshold=cost_target,
                getter=cost_per_request(),
                for_s=for_s,
                hysteresis=cost_target / 10,
                description=f"cost per request above {cost_target:g}",
            )
        )
    return rules
