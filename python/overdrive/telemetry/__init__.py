"""Telemetry: every component's stats exported to Prometheus, latency
histograms, inference-stream metrics and alerts.

- Histograms (:mod:`.histogram`): :class:`LatencyHistogram`, a lock-free
  log-linear histogram in Rust: ``record(seconds)``, ``percentile(p)``,
  ``with h.time(): ...`` and ``@h.time()``.
- Registry (:mod:`.registry`): every overdrive component registers itself
  (weakly) when created; :func:`register` adds anything with ``stats()``.
- Export (:mod:`.collector`, :mod:`.server`): :class:`OverdriveCollector`
  reads every live component's ``stats()`` at scrape time and names the
  metrics ``overdrive_<component>_<what>_<unit>`` with a ``name`` label;
  :func:`start_http_server`, :func:`make_wsgi_app`, :func:`make_asgi_app`
  serve them (these need ``prometheus_client``: ``pip install
  'overdrive[telemetry]'``).
- Streams (:mod:`.streams`): :func:`track_stream` wraps a token stream and
  records time to first token, time per output token, tokens/s, end-to-end
  latency and cost.
- Alerts (:mod:`.alerts`): :class:`AlertRule`, :class:`Alerts`,
  :func:`default_rules`; :mod:`.rules` exports Prometheus alerting rules and a
  Grafana dashboard (``overdrive telemetry export-rules`` / ``export-dashboard``).
"""

from __future__ import annotations

from .alerts import (
    AlertEvent,
    AlertRule,
    Alerts,
    cache_hit_rate,
    cost_per_request,
    default_rules,
    error_rate,
    latency_percentile,
)
from .collector import DEFAULT_BUCKETS, OverdriveCollector
from .histogram import LatencyHistogram, Timer
from .registry import Registered, live, register, registered, unregister
from .rules import dashboard, dashboard_json, prometheus_rules, prometheus_rules_yaml
from .server import MetricsServer, install, make_asgi_app, make_wsgi_app, start_http_server
from .streams import (
    AsyncTrackedStream,
    StreamMetrics,
    TrackedStream,
    stream_metrics,
    track_stream,
)

__all__ = [
    "DEFAULT_BUCKETS",
    "AlertEvent",
    "AlertRule",
    "Alerts",
    "AsyncTrackedStream",
    "LatencyHistogram",
    "MetricsServer",
    "OverdriveCollector",
    "Registered",
    "StreamMetrics",
    "Timer",
    "TrackedStream",
    "cache_hit_rate",
    "cost_per_request",
    "dashboard",
    "dashboard_json",
    "default_rules",
    "error_rate",
    "install",
    "latency_percentile",
    "live",
    "make_asgi_app",
    "make_wsgi_app",
    "prometheus_rules",
    "prometheus_rules_yaml",
    "register",
    "registered",
    "start_http_server",
    "stream_metrics",
    "track_stream",
    "unregister",
]
