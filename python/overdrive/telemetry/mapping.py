"""How each component's ``stats()`` keys become Prometheus metrics.

One small explicit table per known component (what each key is called, whether
it is a monotonic counter or a gauge, and its unit), and a generic fallback
for keys (and components) no table names, so a new stat still shows up.

Metric names are ``overdrive_<component>_<what>_<unit>``; counters get
``_total`` in the exposition. Units are ``seconds``, ``bytes`` or ``ratio``
(0..1); counts carry no unit. Everything here is plain data: the collector
(:mod:`overdrive.telemetry.collector`), the alert rules and the Grafana
dashboard export (:mod:`overdrive.telemetry.rules`) all read it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "COMPONENTS",
    "Items",
    "Labelled",
    "Point",
    "Stat",
    "flatten",
    "metric_name",
]

Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Stat:
    """A scalar stat: exported as ``overdrive_<component>_<what>_<unit>``."""

    what: str
    kind: Kind = "gauge"
    unit: str = ""
    help: str = ""


@dataclass(frozen=True)
class Labelled:
    """A dict stat ``{label_value: number}`` exported as one metric with a
    label (``flush_reasons`` -> ``flushes_total{reason=...}``). With
    ``quantiles=True`` the keys are ``p50``/``p90``/``p99`` and the label is
    ``quantile="0.5"``; other keys (``count``) are dropped."""

    what: str
    label: str
    kind: Kind = "gauge"
    unit: str = ""
    help: str = ""
    quantiles: bool = False


@dataclass(frozen=True)
class Items:
    """A list-of-dicts stat (a balancer's backends, a router's nodes): each
    item's numeric keys become ``<prefix>_<key>`` metrics labelled by the
    item's ``id_key`` value under ``label``."""

    prefix: str
    label: str
    id_key: str
    table: Mapping[str, Stat | None] = field(default_factory=dict)


Spec = Stat | Labelled | Items | None


def _c(what: str, unit: str = "", help: str = "") -> Stat:
    return Stat(what, "counter", unit, help)


def _g(what: str, unit: str = "", help: str = "") -> Stat:
    return Stat(what, "gauge", unit, help)


_POOL_COMMON: dict[str, Spec] = {
    "hits": _c("hits", help="acquires served from the free list"),
    "misses": _c("misses", help="acquires that had to create an item"),
    "hit_ratio": _g("hit", "ratio", "hits / (hits + misses) since start"),
    "in_use": _g("in_use", help="items currently out"),
    "idle": _g("idle", help="items in the free list"),
    "high_water": _g("in_use_high_water", help="most items out at once"),
    "exhausted": _c("exhausted", help="acquires that found the pool exhausted"),
    "waiters": _g("waiters", help="threads waiting for an item"),
}

_BATCHER_COMMON: dict[str, Spec] = {
    "submitted": _c("submitted", help="items accepted"),
    "completed": _c("completed", help="items resolved with a result"),
    "failed": _c("failed", help="items resolved with an error"),
    "expired": _c("expired", help="items whose deadline passed while queued"),
    "rejected": _c("rejected", help="submits refused (queue full or closed)"),
    "dropped": _c("dropped", help="items dropped by the full-queue policy"),
    "cancelled": _c("cancelled", help="items cancelled by their caller"),
    "batches": _c("batches", help="batches dispatched"),
    "mean_batch_size": _g("mean_batch_size", help="items per batch, mean since start"),
    "batch_sizes": None,
    "flush_reasons": Labelled("flushes", "reason", "counter", help="batches by flush reason"),
    "queue_wait_s": Labelled(
        "queue_wait", "quantile", "gauge", "seconds", "time queued (recent)", quantiles=True
    ),
    "handler_time_s": Labelled(
        "handler", "quantile", "gauge", "seconds", "handler time per batch (recent)", quantiles=True
    ),
    "queue_depth": _g("queue_depth", help="items waiting"),
    "lanes": _g("lanes", help="active lanes (keys)"),
    "in_flight": _g("in_flight", help="batches being handled"),
    "closed": _g("closed", help="1 once closed"),
    "model": None,
    "name": None,
    "handler": None,
}

_TIER_COMMON: dict[str, Spec] = {
    "hits": _c("hits", help="lookups that found the key"),
    "misses": _c("misses", help="lookups that did not"),
    "sets": _c("sets", help="values written"),
    "deletes": _c("deletes", help="keys deleted"),
    "errors": _c("errors", help="operations that failed"),
    "evictions": _c("evictions", help="entries evicted for room"),
    "expirations": _c("expirations", help="entries dropped at their TTL"),
    "entries": _g("entries", help="entries held"),
    "bytes": _g("stored", "bytes", "bytes held"),
}

#: The explicit tables, by component name (the registry's default component
#: name of each class). Keys a table does not name fall back to
#: :func:`generic_spec`; a key mapped to None is not exported.
COMPONENTS: dict[str, dict[str, Spec]] = {
    "buffer_pool": {
        **_POOL_COMMON,
        "bytes_allocated": _g("allocated", "bytes", "bytes held by the pool's buffers"),
        "capacity": _g("capacity", help="buffers the pool holds now (in use + idle)"),
        "grows": _c("grows", help="times the pool grew"),
        "shrinks": _c("shrinks", help="times the pool shrank"),
        "freed": _c("freed", help="buffers freed by shrinking"),
        "buffer_size": _g("buffer_size", "bytes", "size of each buffer"),
    },
    "object_pool": {
        **_POOL_COMMON,
        "created": _c("created", help="objects made by the factory"),
        "discarded": _c("discarded", help="objects that failed validation"),
        "evicted": _c("evicted", help="idle objects evicted after max_idle_s"),
    },
    "balancer": {
        "strategy": None,
        "picks": _c("picks", help="backends picked"),
        "in_flight": _g("in_flight", help="requests in flight over all backends"),
        "errors": _c("errors", help="requests released with an error"),
        "no_backend": _c("no_backend", help="picks that found no backend available"),
        "backends": Items(
            "backend",
            "backend",
            "index",
            {
                "index": None,
                "state": None,
                "weight": _g("weight"),
                "in_flight": _g("in_flight"),
                "picks": _c("picks"),
                "completed": _c("completed"),
                "errors": _c("errors"),
                "ejections": _c("ejections"),
                "ewma_latency_s": _g("latency_ewma", "seconds"),
                "error_rate": _g("error", "ratio"),
                "queue_utilisation": _g("queue_utilisation", "ratio"),
            },
        ),
    },
    "shard_router": {
        "routes": _c("routes", help="keys routed"),
        "overflows": _c("overflows", help="routes that skipped a full node"),
        "load": _g("load", help="keys currently counted as load"),
        "load_factor": _g("load_factor", help="bound on a node's load vs its fair share"),
        "nodes": Items(
            "node",
            "node",
            "node",
            {
                "node": None,
                "weight": _g("weight"),
                "alive": _g("alive"),
                "load": _g("load"),
                "routes": _c("routes"),
                "cap": _g("cap"),
            },
        ),
    },
    "compressor": {
        "compress_calls": _c("compress_calls", help="compress calls"),
        "decompress_calls": _c("decompress_calls", help="decompress calls"),
        "bytes_in": _c("input", "bytes", "bytes given to compress"),
        "bytes_out": _c("output", "bytes", "bytes compress produced"),
        "ratio": _g("compression", "ratio", "output / input bytes since start"),
        "raw_packed": _c("raw_packed", help="pack() calls stored raw (below threshold)"),
        "errors": _c("errors", help="calls that raised"),
    },
    "worker_pool": {
        "workers": _g("workers", help="worker threads alive"),
        "min_workers": _g("min_workers"),
        "max_workers": _g("max_workers"),
        "busy": _g("busy", help="workers running a task"),
        "idle": _g("idle", help="workers waiting for a task"),
        "queued": _g("queued", help="tasks waiting"),
        "queue_high_water": _g("queued_high_water", help="most tasks waiting at once"),
        "max_queue": _g("max_queue"),
        "submitted": _c("submitted", help="tasks submitted"),
        "completed": _c("completed", help="tasks finished"),
        "cancelled": _c("cancelled", help="tasks cancelled"),
        "rejected": _c("rejected", help="submits refused (queue full)"),
        "scale_ups": _c("scale_ups"),
        "scale_downs": _c("scale_downs"),
        "scaling_events": None,
        "shutdown": _g("shutdown", help="1 once shut down"),
    },
    "batcher": {**_BATCHER_COMMON, "keys": _g("keys", help="distinct batch keys seen")},
    "inference_pool": {
        "name": None,
        "strategy": None,
        "replica_count": _g("replicas", help="live replicas"),
        "batches": _c("batches", help="model calls (batches) over all replicas"),
        "items": _c("items", help="items run over all replicas"),
        "errors": _c("errors", help="items failed by a raising model"),
        "in_flight": _g("in_flight", help="items accepted and not finished"),
        "mean_batch_size": _g("mean_batch_size", help="items per model call since start"),
        "router_overflows": _c("router_overflows", help="keyed items moved off a full replica"),
        "closed": _g("closed", help="1 once closed"),
        "replicas": Items(
            "replica",
            "replica",
            "name",
            {
                "name": None,
                "index": None,
                "alive": _g("alive"),
                "weight": _g("weight"),
                "batches": _c("batches"),
                "items": _c("items"),
                "errors": _c("errors"),
                "keyed": _c("keyed"),
                "in_flight": _g("in_flight"),
                "queue_depth": _g("queue_depth"),
                "mean_batch_size": _g("mean_batch_size"),
            },
        ),
    },
    "message_batcher": {
        **_BATCHER_COMMON,
        "frames": _c("frames", help="frames sent"),
        "bytes_out": _c("output", "bytes", "bytes sent"),
        "retries": _c("retries", help="sends retried"),
        "given_up": _c("given_up", help="frames given up after the last retry"),
    },
    "memory_tier": {
        **_TIER_COMMON,
        "rejected": _c("rejected", help="sets the admission policy refused"),
        "max_bytes": _g("max", "bytes", "byte bound (absent when unbounded)"),
        "max_entries": _g("max_entries", help="entry bound (absent when unbounded)"),
        "policy": None,
    },
    "disk_tier": {
        **_TIER_COMMON,
        "pending": _g("pending_writes", help="writes queued for the writer thread"),
    },
    "redis_tier": {
        **{k: _TIER_COMMON[k] for k in ("hits", "misses", "sets", "deletes", "errors")},
        "coalesced_batches": _c("coalesced_batches", help="pipelined batches sent"),
        "coalesced_keys": _c("coalesced_keys", help="keys sent in those batches"),
        "skipped_while_down": _c("skipped_while_down", help="operations skipped while down"),
        "available": _g("available", help="1 while the server answers"),
        "closed": _g("closed", help="1 once closed"),
    },
    "tiered_cache": {
        "name": None,
        "requests": _c("requests", help="lookups"),
        "hits": _c("hits", help="lookups served by a tier"),
        "misses": _c("misses", help="lookups no tier could serve"),
        "hit_ratio": _g("hit", "ratio", "hits / requests since start"),
        "computes": _c("computes", help="values computed on a miss"),
        "compute_seconds": _c("compute", "seconds", "time spent computing"),
        "saved_seconds": _c("saved", "seconds", "compute time the hits saved"),
        "saved_cost": _c("saved_cost", help="compute cost the hits saved"),
        "coalesced": _c("coalesced", help="callers that waited for another's compute"),
        "compute_errors": _c("compute_errors", help="computes that raised"),
        "stale_hits": _c("stale_hits", help="stale values served while refreshing"),
        "refreshes": _c("refreshes", help="background refreshes"),
        "in_flight": _g("in_flight", help="computes running"),
        "alerts": _c("alerts", help="hit-rate alerts raised"),
        "functions": None,
        "tiers": Items(
            "tier",
            "tier",
            "name",
            {
                "name": None,
                "write": None,
                "stats": None,
                "hits": _c("hits"),
                "misses": _c("misses"),
                "hit_ratio": _g("hit", "ratio"),
                "errors": _c("errors"),
            },
        ),
    },
    "circuit_breaker": {
        "name": None,
        "state": None,
        "state_code": _g("state", help="0 closed, 1 open, 2 half-open"),
        "successes": _c("successes", help="calls that succeeded"),
        "failures": _c("failures", help="calls that failed (counted exceptions)"),
        "slow_calls": _c("slow_calls", help="calls slower than slow_call_s"),
        "rejected": _c("rejected", help="calls refused while open (CircuitOpen)"),
        "ignored": _c("ignored", help="exceptions that did not count"),
        "opened": _c("opened", help="times the breaker opened"),
        "window_calls": _g("window_calls", help="calls in the sliding window"),
        "window_failure_rate": _g("window_failure", "ratio", "failure rate in the window"),
        "window_slow_rate": _g("window_slow", "ratio", "slow-call rate in the window"),
        "redis_errors": _c("redis_errors", help="shared-state calls to Redis that failed"),
    },
    "concurrency_limiter": {
        "name": None,
        "algorithm": None,
        "limit": _g("limit", help="current concurrency limit"),
        "inflight": _g("in_flight", help="permits held"),
        "queued": _g("queued", help="callers waiting for a permit"),
        "peak_inflight": _g("in_flight_high_water", help="most permits held at once"),
        "acquired": _c("acquired", help="permits granted"),
        "rejected": _c("rejected", help="acquires refused (LimitExceeded)"),
        "timeouts": _c("timeouts", help="acquires that timed out in the queue"),
        "shed": _c("shed", help="queued work dropped past the CoDel target"),
        "failed": _c("failed", help="permits released with a failure"),
    },
    "rate_limiter": {
        "name": None,
        "admitted": _c("admitted", help="acquires admitted"),
        "rejected": _c("rejected", help="acquires refused"),
        "keys": _g("keys", help="keys tracked"),
        "rate_per_s": _g("rate_per_second", help="configured rate"),
        "burst": _g("burst", help="configured burst"),
        "redis_errors": _c("redis_errors", help="Redis calls that failed"),
    },
    "cascade": {
        "name": None,
        "requests": _c("requests", help="queries answered or failed"),
        "errors": _c("errors", help="queries that raised (the last model failed)"),
        "unaccepted": _c("unaccepted", help="last-model results returned without acceptance"),
        "cost": _c("cost", help="cost spent (in the costs' currency)"),
        "baseline_cost": _c("baseline_cost", help="cost of always calling the last model"),
        "cost_saved": _g("cost_saved", help="baseline_cost - cost"),
        "cost_saved_ratio": _g("cost_saved", "ratio", "cost_saved / baseline_cost"),
        "cost_per_request": _g("cost_per_request", help="cost / requests"),
        "models": Items(
            "model",
            "model",
            "model",
            {
                "model": None,
                "index": None,
                "calls": _c("calls"),
                "accepted": _c("accepted"),
                "rejected": _c("rejected"),
                "escalated": _c("escalated"),
                "errors": _c("errors"),
                "cost": _c("cost"),
                "latency_p50_s": _g("latency_p50", "seconds"),
                "latency_p99_s": _g("latency_p99", "seconds"),
                "latency_mean_s": _g("latency_mean", "seconds"),
            },
        ),
    },
    "stream": {
        "requests": _c("requests", help="streams finished (any outcome)"),
        "completed": _c("completed", help="streams that ran to their end"),
        "errors": _c("errors", help="streams that raised"),
        "closed_early": _c("closed_early", help="streams closed before their end"),
        "in_flight": _g("in_flight", help="streams being consumed"),
        "output_tokens": _c("output_tokens", help="output tokens seen"),
        "prompt_tokens": _c("prompt_tokens", help="prompt tokens given"),
        "cost": _c("cost", help="cost of the streams (price x tokens, in the prices' currency)"),
        "cost_per_request": _g("cost_per_request", help="mean cost per priced stream"),
        "priced_requests": _c("priced_requests", help="streams with prices given"),
        "count_tokens_errors": _c("count_tokens_errors", help="count_tokens calls that raised"),
        "name": None,
        # Exported as Prometheus histograms (telemetry_histograms()), not as gauges.
        "time_to_first_token_s": None,
        "time_per_output_token_s": None,
        "output_tokens_per_second": None,
        "request_duration_s": None,
    },
}

#: Stat keys that only ever grow (the generic fallback exports them as counters).
_COUNTER_KEYS = frozenset(
    [
        "hits",
        "misses",
        "stale_hits",
        "sets",
        "gets",
        "deletes",
        "evictions",
        "expirations",
        "errors",
        "failures",
        "failed",
        "successes",
        "calls",
        "requests",
        "computes",
        "compute_errors",
        "refreshes",
        "coalesced",
        "coalesced_keys",
        "coalesced_batches",
        "submitted",
        "completed",
        "rejected",
        "dropped",
        "cancelled",
        "expired",
        "timeouts",
        "retries",
        "opened",
        "closed_count",
        "half_opened",
        "trips",
        "rejections",
        "accepted",
        "admitted",
        "shed",
        "acquired",
        "released",
        "picks",
        "routes",
        "writes",
        "reads",
        "skipped_while_down",
    ]
)

_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")
_QUANTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")


def _clean(part: str) -> str:
    return _NAME_OK.sub("_", part)


@functools.lru_cache(maxsize=4096)
def metric_name(component: str, what: str, unit: str = "") -> str:
    """``overdrive_<component>_<what>_<unit>`` (the unit only once)."""
    name = f"overdrive_{component}_{_clean(what)}"
    if unit and not name.endswith("_" + unit):
        name += "_" + unit
    return name


@functools.lru_cache(maxsize=4096)
def generic_spec(key: str) -> Stat:
    """The fallback for a key no table names: ``*_s``/``*_seconds`` are
    seconds, ``*_bytes``/``bytes_*`` bytes, ``*_ratio``/``*_rate`` ratios (gauges);
    a few well-known monotonic names are counters; everything else a gauge."""
    what, unit = key, ""
    if key.endswith("_seconds"):
        what, unit = key[: -len("_seconds")], "seconds"
    elif key.endswith("_s"):
        what, unit = key[:-2], "seconds"
    elif key.endswith("_bytes"):
        what, unit = key[: -len("_bytes")], "bytes"
    elif key.startswith("bytes_"):
        what, unit = key[len("bytes_") :], "bytes"
    elif key.endswith("_ratio"):
        what, unit = key[: -len("_ratio")], "ratio"
    if key.endswith("_total"):
        return Stat(key[: -len("_total")], "counter", unit)
    monotonic = key in _COUNTER_KEYS or (
        unit in ("seconds", "bytes") and (key.startswith(("total_", "saved_")))
    )
    return Stat(what, "counter" if monotonic else "gauge", unit)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        f = float(value)
        return f if not math.isnan(f) else None
    return None


@dataclass(frozen=True)
class Point:
    """One sample: metric family name (counters without ``_total``), kind,
    help, extra labels (besides ``name``) and value."""

    family: str
    kind: Kind
    help: str
    labels: tuple[tuple[str, str], ...]
    value: float


def flatten(component: str, stats: Mapping[str, Any]) -> Iterator[Point]:
    """The samples of one component's ``stats()`` dict (without the ``name``
    label, which the collector adds)."""
    table = COMPONENTS.get(component, {})
    for key, value in stats.items():
        if not isinstance(key, str):
            continue
        spec = table.get(key, _MISSING)
        if spec is None:
            continue
        yield from _points(component, key, value, spec, (), depth=0)


_MISSING = Stat("__missing__")


def _points(
    component: str,
    key: str,
    value: Any,
    spec: Spec,
    labels: tuple[tuple[str, str], ...],
    depth: int,
) -> Iterator[Point]:
    if spec is None:
        return
    if isinstance(spec, Labelled) and isinstance(value, Mapping):
        name = metric_name(component, spec.what, spec.unit)
        for k, v in value.items():
            num = _number(v)
            if num is None:
                continue
            if spec.quantiles:
                m = _QUANTILE.match(str(k))
                if m is None:
                    continue
                label_value = str(float(m.group(1)) / 100)
            else:
                label_value = str(k)
            yield Point(name, spec.kind, spec.help, (*labels, (spec.label, label_value)), num)
        return
    if isinstance(spec, Items) and isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                continue
            ident = str(item.get(spec.id_key, i))
            item_labels = (*labels, (spec.label, ident))
            for k, v in item.items():
                if not isinstance(k, str):
                    continue
                sub = spec.table.get(k, _MISSING)
                if sub is None:
                    continue
                if sub is _MISSING:
                    sub = generic_spec(k)
                assert isinstance(sub, Stat)
                yield from _points(
                    component,
                    k,
                    v,
                    Stat(f"{spec.prefix}_{sub.what}", sub.kind, sub.unit, sub.help),
                    item_labels,
                    depth + 1,
                )
        return
    if spec is _MISSING or not isinstance(spec, Stat):
        spec = generic_spec(key)
    num = _number(value)
    if num is not None:
        yield Point(metric_name(component, spec.what, spec.unit), spec.kind, spec.help, labels, num)
        return
    if isinstance(value, Mapping) and depth < 3:
        # Generic nested dict: flatten as <key>_<subkey>.
        for k, v in value.items():
            if isinstance(k, str):
                sub = generic_spec(k)
                yield from _points(
                    component,
                    f"{key}_{k}",
                    v,
                    Stat(f"{spec.what}_{sub.what}", sub.kind, sub.unit),
                    labels,
                    depth + 1,
                )
