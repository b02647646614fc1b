"""Prometheus alerting rules (YAML) and a Grafana dashboard (JSON) for the
exported metrics (``overdrive telemetry export-rules`` / ``export-dashboard``).

Both are generated from the same tables the collector uses
(:mod:`overdrive.telemetry.mapping`), so they name exactly the metrics
``/metrics`` serves. The rules are the source design's defaults (cache hit
rate < 60%, p95 latency > 200 ms, error rate > 1%, cost per request over a
target), the same as :func:`overdrive.telemetry.default_rules` evaluates in
process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .alerts import ERROR_RATE_KEYS
from .mapping import COMPONENTS, Items, Labelled, Stat, metric_name

__all__ = [
    "HISTOGRAMS",
    "dashboard",
    "dashboard_json",
    "prometheus_rules",
    "prometheus_rules_yaml",
]

#: The latency histogram families the collector exports (seconds).
HISTOGRAMS: dict[str, str] = {
    "overdrive_latency_seconds": "LatencyHistogram (by name)",
    "overdrive_stream_time_to_first_token_seconds": "stream time to first token",
    "overdrive_stream_time_per_output_token_seconds": "stream time per output token",
    "overdrive_stream_request_duration_seconds": "stream end-to-end latency",
}
#: The histograms the p95 rule watches.
_P95_HISTOGRAMS = (
    "overdrive_latency_seconds",
    "overdrive_stream_time_to_first_token_seconds",
    "overdrive_stream_request_duration_seconds",
)
_BY = "job, instance, name"


def counter_name(component: str, key: str) -> str:
    """The exposed name (with ``_total``) of a counter stat of a component."""
    spec = COMPONENTS[component][key]
    assert isinstance(spec, Stat) and spec.kind == "counter", (component, key)
    return metric_name(component, spec.what, spec.unit) + "_total"


def _rate(metric: str, window: str) -> str:
    return f"sum by ({_BY}) (rate({metric}[{window}]))"


def prometheus_rules(
    *,
    hit_rate: float = 0.6,
    p95_s: float = 0.2,
    error_rate_max: float = 0.01,
    cost_target: float | None = 0.01,
    window: str = "5m",
    for_: str = "5m",
) -> dict[str, Any]:
    """The alerting rules as a dict (one group, ``overdrive``)."""
    rules: list[dict[str, Any]] = []
    cache = '{__name__=~"overdrive_.*(cache|tier).*_hits_total"}'
    miss = '{__name__=~"overdrive_.*(cache|tier).*_misses_total"}'
    rules.append(
        {
            "alert": "OverdriveCacheHitRateLow",
            "expr": (
                f"{_rate(cache, window)}\n  / ({_rate(cache, window)} + {_rate(miss, window)})"
                f"\n  < {hit_rate:g}"
            ),
            "for": for_,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"overdrive cache {{{{ $labels.name }}}}: hit rate below {hit_rate:.0%}",
                "description": "hit rate {{ $value | humanizePercentage }} over " + window,
            },
        }
    )
    for hist in _P95_HISTOGRAMS:
        rules.append(
            {
                "alert": "OverdriveLatencyP95High",
                "expr": (
                    f"histogram_quantile(0.95, sum by ({_BY}, le) "
                    f"(rate({hist}_bucket[{window}])))\n  > {p95_s:g}"
                ),
                "for": for_,
                "labels": {"severity": "warning", "histogram": hist},
                "annotations": {
                    "summary": f"overdrive {HISTOGRAMS[hist]} {{{{ $labels.name }}}}: p95 above "
                    f"{p95_s * 1000:g} ms",
                    "description": "p95 {{ $value | humanizeDuration }} over " + window,
                },
            }
        )
    for component, (errs, totals) in ERROR_RATE_KEYS.items():
        err = " + ".join(_rate(counter_name(component, k), window) for k in errs)
        tot = " + ".join(_rate(counter_name(component, k), window) for k in totals)
        rules.append(
            {
                "alert": "OverdriveErrorRateHigh",
                "expr": f"({err})\n  / ({tot})\n  > {error_rate_max:g}",
                "for": for_,
                "labels": {"severity": "critical", "component": component},
                "annotations": {
                    "summary": f"overdrive {component} {{{{ $labels.name }}}}: error rate above "
                    f"{error_rate_max:.1%}",
                    "description": "error rate {{ $value | humanizePercentage }} over " + window,
                },
            }
        )
    if cost_target is not None:
        cost = _rate(counter_name("stream", "cost"), window)
        n = _rate(counter_name("stream", "priced_requests"), window)
        rules.append(
            {
                "alert": "OverdriveCostPerRequestHigh",
                "expr": f"{cost}\n  / {n}\n  > {cost_target:g}",
                "for": for_,
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "overdrive stream {{ $labels.name }}: cost per request above "
                    f"{cost_target:g}",
                    "description": "mean cost per request {{ $value }} over " + window,
                },
            }
        )
    return {"groups": [{"name": "overdrive", "rules": rules}]}


def _yaml(value: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(v, Mapping | list) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(_yaml(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return lines
    if isinstance(value, list):
        for item in value:
            sub = _yaml(item, indent + 1)
            first = sub[0].lstrip()
            lines.append(f"{pad}- {first}")
            lines.extend(sub[1:])
        return lines
    return [f"{pad}{_scalar(value)}"]


def _scalar(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a YAML double-quoted scalar
    if isinstance(v, Mapping):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return json.dumps(v)


def prometheus_rules_yaml(**kwargs: Any) -> str:
    """:func:`prometheus_rules` as a Prometheus rule file (YAML text)."""
    head = "# Prometheus alerting rules for overdrive (overdrive telemetry export-rules)\n"
    return head + "\n".join(_yaml(prometheus_rules(**kwargs))) + "\n"


def _panel(
    pid: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def _grafana_unit(kind: str, unit: str) -> str:
    if unit == "seconds":
        return "s"
    if unit == "bytes":
        return "Bps" if kind == "counter" else "bytes"
    if unit == "ratio":
        return "percentunit"
    return "ops" if kind == "counter" else "short"


def _component_panels(component: str, table: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """(title, exprs, grafana unit) for each exported stat of a component."""
    sel = '{name=~"$name"}'
    out: list[tuple[str, Any, str]] = []
    for spec in table.values():
        if isinstance(spec, Stat):
            m = metric_name(component, spec.what, spec.unit)
            if spec.kind == "counter":
                expr = f"rate({m}_total{sel}[$__rate_interval])"
                out.append(
                    (f"{spec.what} /s", [(expr, "{{name}}")], _grafana_unit("counter", spec.unit))
                )
            else:
                out.append(
                    (spec.what, [(f"{m}{sel}", "{{name}}")], _grafana_unit("gauge", spec.unit))
                )
        elif isinstance(spec, Labelled):
            m = metric_name(component, spec.what, spec.unit)
            legend = "{{name}} {{" + spec.label + "}}"
            if spec.kind == "counter":
                expr = f"rate({m}_total{sel}[$__rate_interval])"
                out.append(
                    (f"{spec.what} /s", [(expr, legend)], _grafana_unit("counter", spec.unit))
                )
            else:
                out.append((spec.what, [(f"{m}{sel}", legend)], _grafana_unit("gauge", spec.unit)))
        elif isinstance(spec, Items):
            for sub in spec.table.values():
                if not isinstance(sub, Stat):
                    continue
                m = metric_name(component, f"{spec.prefix}_{sub.what}", sub.unit)
                legend = "{{name}} " + spec.label + " {{" + spec.label + "}}"
                if sub.kind == "counter":
                    expr = f"rate({m}_total{sel}[$__rate_interval])"
                else:
                    expr = f"{m}{sel}"
                title = f"{spec.prefix} {sub.what}" + (" /s" if sub.kind == "counter" else "")
                out.append((title, [(expr, legend)], _grafana_unit(sub.kind, sub.unit)))
    return out


def dashboard() -> dict[str, Any]:
    """A Grafana dashboard (a dict) with a row per component: counters as
    rates, gauges as values, histograms as p50/p95/p99. Variables:
    ``datasource`` (a Prometheus data source) and ``name`` (the components'
    ``name`` label)."""
    panels: list[dict[str, Any]] = []
    pid = 1
    y = 0

    def row(title: str) -> None:
        nonlocal pid, y
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid += 1
        y += 1

    def grid(items: list[tuple[str, Any, str]]) -> None:
        nonlocal pid, y
        for i, (title, exprs, unit) in enumerate(items):
            x = (i % 3) * 8
            if i and i % 3 == 0:
                y += 8
            panels.append(_panel(pid, title, exprs, unit, x, y))
            pid += 1
        if items:
            y += 8

    row("latency histograms")
    sel = '{name=~"$name"}'
    hist_items = []
    for fam, title in HISTOGRAMS.items():
        exprs = [
            (
                f"histogram_quantile({q}, sum by (name, le) "
                f"(rate({fam}_bucket{sel}[$__rate_interval])))",
                "{{name}} p" + str(round(q * 100)),
            )
            for q in (0.5, 0.95, 0.99)
        ]
        hist_items.append((title, exprs, "s"))
    grid(hist_items)
    for component, table in COMPONENTS.items():
        row(component.replace("_", " "))
        grid(_component_panels(component, table))
    return {
        "title": "overdrive",
        "uid": "overdrive",
        "tags": ["overdrive"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                {
                    "name": "name",
                    "label": "component name",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {"query": 'label_values({__name__=~"overdrive_.*"}, name)'},
                    "definition": 'label_values({__name__=~"overdrive_.*"}, name)',
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "current": {},
                },
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboard_json() -> str:
    """:func:`dashboard` as JSON text."""
    return json.dumps(dashboard(), indent=2) + "\n"
