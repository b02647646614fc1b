"""Serving ``/metrics``: an HTTP server thread, or a WSGI/ASGI app to mount.

Each function installs the :class:`~overdrive.telemetry.collector.OverdriveCollector`
into the prometheus_client registry it serves (once per registry), so the
page holds every live overdrive component next to the application's own
prometheus_client metrics.
"""

from __future__ import annotations

import threading
from typing import Any, Self

from ..exceptions import ConfigurationError, InputTypeError
from .collector import OverdriveCollector, require_prometheus_client

__all__ = ["MetricsServer", "install", "make_asgi_app", "make_wsgi_app", "start_http_server"]

_lock = threading.Lock()
_installed: dict[int, tuple[Any, OverdriveCollector]] = {}


def install(registry: Any = None) -> OverdriveCollector:
    """Register the overdrive collector in ``registry`` (default:
    ``prometheus_client.REGISTRY``) unless it already is; return it."""
    pc = require_prometheus_client()
    if registry is None:
        registry = pc.REGISTRY
    with _lock:
        found = _installed.get(id(registry))
        if found is not None and found[0] is registry:
            return found[1]
        collector = OverdriveCollector()
        registry.register(collector)
        _installed[id(registry)] = (registry, collector)
        return collector


class MetricsServer:
    """A running ``/metrics`` HTTP server (a daemon thread).

    ``port`` is the bound port (useful with ``port=0``), ``url`` the metrics
    address; ``close()`` (or leaving the ``with`` block) stops it.
    """

    def __init__(self, httpd: Any, thread: threading.Thread, collector: OverdriveCollector):
        self._httpd = httpd
        self._thread = thread
        self.collector = collector
        self.addr: str = httpd.server_address[0]
        self.port: int = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://<addr>:<port>/metrics``."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and wait for the server thread (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MetricsServer(url={self.url!r})"


def start_http_server(port: int, addr: str = "127.0.0.1", registry: Any = None) -> MetricsServer:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread.

    ``port=0`` picks a free port (read it from ``.port``). The default
    ``addr`` listens on loopback only: pass ``"0.0.0.0"`` to expose it.
    ``registry``: a prometheus_client ``CollectorRegistry`` (default the
    global ``REGISTRY``); the overdrive collector is installed into it.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise InputTypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"invalid port={port}: must be in 0..65535")
    if not isinstance(addr, str):
        raise InputTypeError(f"addr must be a str, not {type(addr).__name__}")
    pc = require_prometheus_client()
    if registry is None:
        registry = pc.REGISTRY
    collector = install(registry)
    httpd, thread = pc.start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(httpd, thread, collector)


def make_wsgi_app(registry: Any = None) -> Any:
    """A WSGI app serving the metrics page (mount it at ``/metrics``)."""
    pc = require_prometheus_client()
    if registry is None:
        registry = pc.REGISTRY
    install(registry)
    return pc.make_wsgi_app(registry)


def make_asgi_app(registry: Any = None) -> Any:
    """An ASGI app serving the metrics page (mount it at ``/metrics``)."""
    pc = require_prometheus_client()
    if registry is None:
        registry = pc.REGISTRY
    install(registry)
    return pc.make_asgi_app(registry)
