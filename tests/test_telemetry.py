"""overdrive.telemetry: the registry, the Prometheus export (scraped over real
HTTP and parsed with prometheus_client's own parser), track_stream, alerts
and the ``overdrive telemetry`` exports."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import overdrive as od
import overdrive.cache as odc
import overdrive.resilience as odr
from overdrive import ai, telemetry
from overdrive.cli import main as cli_main
from overdrive.exceptions import ConfigurationError, InputTypeError
from overdrive.telemetry.histogram import LatencyHistogram
from overdrive.telemetry.mapping import flatten

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- helpers --------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[telemetry.MetricsServer]:
    """A /metrics server on a free port, over its own registry (no process metrics)."""
    srv = telemetry.start_http_server(0, registry=prometheus_client.CollectorRegistry())
    try:
        yield srv
    finally:
        srv.close()


def scrape_text(srv: telemetry.MetricsServer) -> str:
    with urllib.request.urlopen(srv.url, timeout=10) as resp:
        assert resp.status == 200
        body: bytes = resp.read()
    return body.decode()


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """{(sample name, labels): value} and {family: type}."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def scrape(srv: telemetry.MetricsServer) -> tuple[Samples, dict[str, str]]:
    return parse(scrape_text(srv))


def of(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def expected(component: str, name: str, stats: dict[str, Any]) -> Samples:
    """What the export must hold for one component, from its stats()."""
    out: Samples = {}
    for p in flatten(component, stats):
        sample = p.family + ("_total" if p.kind == "counter" else "")
        out[(sample, frozenset((("name", name), *p.labels)))] = p.value
    return out


class Broken:
    """A component whose stats() raises."""

    def stats(self) -> dict[str, Any]:
        raise RuntimeError("stats broke")


class Plain:
    """A foreign component: anything with stats()."""

    def __init__(self) -> None:
        self.hits = 0

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": 2,
            "hit_ratio": 0.25,
            "mean_compute_seconds": 0.5,
            "bytes_stored": 10,
            "state": "ok",
            "nested": {"depth": 3},
        }


# --- registry ---------------------------------------------------------------------


def test_components_register_themselves_with_a_name() -> None:
    pool = od.BufferPool(4096, min_size=1, max_size=4)
    lb = od.Balancer(2)
    b = od.Batcher(lambda xs: xs, name="reg-batcher")
    try:
        reg = telemetry.registered(pool)
        assert reg is not None and reg.component == "buffer_pool"
        assert re.fullmatch(r"buffer_pool-\d+", reg.name)
        assert telemetry.registered(lb) is not None
        rb = telemetry.registered(b)
        assert rb is not None and (rb.component, rb.name) == ("batcher", "reg-batcher")
        assert telemetry.register(pool, name="io-buffers") == "io-buffers"
        reg = telemetry.registered(pool)
        assert reg is not None and (reg.component, reg.name) == ("buffer_pool", "io-buffers")
        # the native class itself registers (from its __init__), signature intact
        assert type(pool) is od._core.BufferPool
        assert "buffer_size" in inspect.signature(od.BufferPool).parameters
        assert telemetry.unregister(pool) is True
        assert telemetry.registered(pool) is None
        assert telemetry.unregister(pool) is False
    finally:
        b.close()


class Dropper(Plain):
    """Reading its name frees another registered object (as a garbage
    collection running at that moment could)."""

    def __init__(self, victim: list[Plain]) -> None:
        super().__init__()
        self.victim = victim

    @property
    def name(self) -> str:
        self.victim.clear()  # the last reference: its weakref callback runs now
        return "dropper"


def test_a_collection_inside_the_registry_does_not_deadlock() -> None:
    # register() reads the object's name under the registry lock; an object
    # freed at that moment (there, or by a gc pass an allocation triggers) runs
    # its weakref callback on this same thread, which must not take the lock.
    victim = [Plain()]
    telemetry.register(victim[0], component="victim", name="v")
    d = Dropper(victim)
    assert telemetry.register(d, component="dropper") == "dropper"
    assert not victim
    comps = [r.component for r in telemetry.live()]
    assert "victim" not in comps and "dropper" in comps
    telemetry.unregister(d)


def test_register_rejects_what_it_cannot_follow() -> None:
    with pytest.raises(InputTypeError, match="stats"):
        telemetry.register(object())
    with pytest.raises(InputTypeError, match="weakly"):
        telemetry.register(_NoWeak())
    with pytest.raises(InputTypeError, match="component"):
        telemetry.register(Plain(), component="bad name")
    with pytest.raises(InputTypeError, match="name"):
        telemetry.register(Plain(), name="")


class _NoWeak(dict):  # type: ignore[type-arg]
    __slots__ = ()

    def stats(self) -> dict[str, Any]:
        return {}


# --- export -------------------------------------------------------------------------


def test_every_component_appears_with_its_stats(server: telemetry.MetricsServer) -> None:
    pool = od.BufferPool(4096, min_size=2, max_size=8, window_s=3600.0)
    bufs = [pool.acquire() for _ in range(3)]
    bufs[0].release()
    objs = od.ObjectPool(dict, max_size=4)
    with objs.acquire():
        pass
    lb = od.Balancer(3)
    for i in range(5):
        idx = lb.acquire()
        lb.release(idx, latency_s=0.01 * (i + 1), ok=i != 2)
    router = od.ShardRouter(["a", "b", "c"])
    for k in range(20):
        router.route(k)
    comp = od.Compressor()
    comp.decompress(comp.compress(b"x" * 5000))
    wp = od.WorkerPool(1, 2)
    assert [f.result() for f in [wp.submit(pow, 2, i) for i in range(4)]] == [1, 2, 4, 8]
    wp.shutdown(wait=True)
    batcher = od.Batcher(lambda xs: [x * 2 for x in xs], name="doubler", max_wait_ms=1)
    assert batcher.submit(21).result(timeout=10) == 42
    batcher.close()
    sent: list[bytes] = []
    mb = od.MessageBatcher(sent.append, name="sink", max_wait_ms=1)
    mb.put(b"hello")
    mb.close()
    hist = LatencyHistogram(name="db")  # registers itself, under its own name
    assert telemetry.registered(hist) == telemetry.Registered(hist, "latency", "db")
    for v in (0.001, 0.002, 0.003, 0.5):
        hist.record(v)
    plain = Plain()
    plain.hits = 6
    telemetry.register(plain, component="my_cache", name="sessions")

    components = [pool, objs, lb, router, comp, wp, batcher, mb]
    hist.record(1e9)  # past max_seconds: counted in +Inf only
    samples, types = scrape(server)
    for obj in components:
        reg = telemetry.registered(obj)
        assert reg is not None, obj
        want = expected(reg.component, reg.name, obj.stats())  # type: ignore[attr-defined]
        assert want, f"{reg.component} exports nothing"
        got = {k: samples.get(k) for k in want}
        assert got == want, reg.component

    n = telemetry.registered(pool).name  # type: ignore[union-attr]
    assert of(samples, "overdrive_buffer_pool_misses_total", name=n) == pool.stats()["misses"]
    assert of(samples, "overdrive_buffer_pool_in_use", name=n) == 2
    assert of(samples, "overdrive_buffer_pool_buffer_size_bytes", name=n) == 4096
    assert types["overdrive_buffer_pool_hits"] == "counter"
    assert types["overdrive_buffer_pool_in_use"] == "gauge"
    lbn = telemetry.registered(lb).name  # type: ignore[union-attr]
    assert of(samples, "overdrive_balancer_errors_total", name=lbn) == 1
    per_backend = [
        of(samples, "overdrive_balancer_backend_picks_total", name=lbn, backend=str(i))
        for i in range(3)
    ]
    assert sum(v or 0 for v in per_backend) == 5
    assert of(samples, "overdrive_batcher_completed_total", name="doubler") == 1
    assert of(samples, "overdrive_message_batcher_submitted_total", name="sink") == 1
    assert of(samples, "overdrive_message_batcher_closed", name="sink") == 1.0
    wpn = telemetry.registered(wp).name  # type: ignore[union-attr]
    assert of(samples, "overdrive_worker_pool_completed_total", name=wpn) == 4
    cn = telemetry.registered(comp).name  # type: ignore[union-attr]
    assert of(samples, "overdrive_compressor_input_bytes_total", name=cn) == 5000
    # a foreign component through the generic fallback
    assert of(samples, "overdrive_my_cache_hits_total", name="sessions") == 6
    assert of(samples, "overdrive_my_cache_hit_ratio", name="sessions") == 0.25
    assert of(samples, "overdrive_my_cache_mean_compute_seconds", name="sessions") == 0.5
    assert of(samples, "overdrive_my_cache_stored_bytes", name="sessions") == 10
    assert of(samples, "overdrive_my_cache_nested_depth", name="sessions") == 3
    # the histogram
    assert types["overdrive_latency_seconds"] == "histogram"
    assert of(samples, "overdrive_latency_seconds_count", name="db") == 5
    assert of(samples, "overdrive_latency_seconds_bucket", name="db", le="0.005") == 3
    assert of(samples, "overdrive_latency_seconds_bucket", name="db", le="0.1") == 3
    assert of(samples, "overdrive_latency_seconds_bucket", name="db", le="300.0") == 4
    assert of(samples, "overdrive_latency_seconds_bucket", name="db", le="+Inf") == 5
    total = of(samples, "overdrive_latency_seconds_sum", name="db")
    assert total == hist.sum
    # every exported name follows the convention
    for name, _labels in samples:
        assert re.fullmatch(r"overdrive_[a-z0-9_]+", name), name
    del bufs


def test_cache_tiers_appear(server: telemetry.MetricsServer, tmp_path: Path) -> None:
    mem = odc.MemoryTier(max_entries=100, name="l1")
    disk = odc.DiskTier(tmp_path / "c.db", name="l2", write_behind=False)
    cache = odc.TieredCache([mem, disk], name="sessions")
    try:
        cache.set("a", 1)
        assert cache.get("a") == 1
        assert cache.get("b") is None
        for obj, component in ((mem, "memory_tier"), (disk, "disk_tier"), (cache, "tiered_cache")):
            reg = telemetry.registered(obj)
            assert reg is not None and reg.component == component
        samples, _ = scrape(server)
        for obj in (mem, disk, cache):
            reg = telemetry.registered(obj)
            assert reg is not None
            want = expected(reg.component, reg.name, dict(obj.stats()))
            assert want, reg.component
            assert {k: samples.get(k) for k in want} == want, reg.component
        hits = of(samples, "overdrive_tiered_cache_hits_total", name="sessions")
        assert hits == cache.stats()["hits"] >= 1
    finally:
        cache.close()


def test_a_live_redis_tier_appears(server: telemetry.MetricsServer, redis_server: str) -> None:
    redis = odc.RedisTier(redis_server, prefix=f"od-tel-{os.getpid()}:", name="shared")
    cache = odc.TieredCache([odc.MemoryTier(max_entries=10), redis], name="with-redis")
    try:
        cache.set("a", {"x": 1})
        assert redis.get("a") == {"x": 1}
        assert redis.get("nope") is None
        reg = telemetry.registered(redis)
        assert reg is not None and reg.component == "redis_tier"
        samples, _ = scrape(server)
        stats = dict(redis.stats())
        want = expected("redis_tier", "shared", stats)
        assert want
        assert {k: samples.get(k) for k in want} == want
        assert of(samples, "overdrive_redis_tier_available", name="shared") == 1.0
        assert of(samples, "overdrive_redis_tier_hits_total", name="shared") == stats["hits"] >= 1
        assert (
            of(samples, "overdrive_redis_tier_misses_total", name="shared") == stats["misses"] >= 1
        )
    finally:
        redis.clear()
        cache.close()


def test_breakers_and_limiters_appear(server: telemetry.MetricsServer) -> None:
    breaker = odr.CircuitBreaker(name="payments")
    limiter = odr.ConcurrencyLimiter(name="inference")
    rate = odr.RateLimiter(100, name="api")
    assert breaker.call(lambda: 7) == 7
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    with limiter.acquire():
        pass
    assert rate.try_acquire()
    samples, _ = scrape(server)
    for obj in (breaker, limiter, rate):
        reg = telemetry.registered(obj)
        assert reg is not None
        want = expected(reg.component, reg.name, obj.stats())
        assert {k: samples.get(k) for k in want} == want, reg.component
    assert of(samples, "overdrive_circuit_breaker_failures_total", name="payments") == 1
    assert of(samples, "overdrive_concurrency_limiter_acquired_total", name="inference") == 1
    assert of(samples, "overdrive_rate_limiter_admitted_total", name="api") == 1


def test_a_raising_stats_is_skipped_and_counted(server: telemetry.MetricsServer) -> None:
    broken = Broken()
    telemetry.register(broken, name="b1")
    ok = Plain()
    telemetry.register(ok, component="fine", name="f1")
    samples, _ = scrape(server)
    assert of(samples, "overdrive_fine_misses_total", name="f1") == 2
    assert (
        of(samples, "overdrive_telemetry_scrape_errors_total", component="broken", name="b1") == 1
    )
    samples, _ = scrape(server)
    assert (
        of(samples, "overdrive_telemetry_scrape_errors_total", component="broken", name="b1") == 2
    )
    assert not any(n.startswith("overdrive_broken_") for n, _ in samples)
    telemetry.unregister(broken)


def test_dead_components_disappear(server: telemetry.MetricsServer) -> None:
    pool = od.ObjectPool(list, max_size=2)
    telemetry.register(pool, name="short-lived")
    samples, _ = scrape(server)
    assert of(samples, "overdrive_object_pool_idle", name="short-lived") == 0
    del pool
    gc.collect()
    samples, _ = scrape(server)
    assert not any(("name", "short-lived") in labels for _, labels in samples)


def test_duplicate_names_stay_apart(server: telemetry.MetricsServer) -> None:
    a, b = Plain(), Plain()
    a.hits, b.hits = 1, 2
    telemetry.register(a, component="dup", name="same")
    telemetry.register(b, component="dup", name="same")
    samples, _ = scrape(server)
    assert of(samples, "overdrive_dup_hits_total", name="same") == 1
    assert of(samples, "overdrive_dup_hits_total", name="same#2") == 2


def test_wsgi_and_asgi_apps_serve_the_same_page() -> None:
    reg = prometheus_client.CollectorRegistry()
    p = Plain()
    telemetry.register(p, component="app", name="x")
    wsgi = telemetry.make_wsgi_app(reg)
    status: list[str] = []
    body = b"".join(
        wsgi(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""},
            lambda s, h: status.append(s),
        )
    )
    assert status[0].startswith("200")
    samples, _ = parse(body.decode())
    assert of(samples, "overdrive_app_misses_total", name="x") == 2

    asgi = telemetry.make_asgi_app(reg)
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/metrics",
            "query_string": b"",
            "headers": [],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        await asgi(scope, receive, send)

    asyncio.run(call())
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    samples, _ = parse(body.decode())
    assert of(samples, "overdrive_app_misses_total", name="x") == 2
    # installed once per registry, however many apps
    assert telemetry.install(reg) is telemetry.install(reg)


def test_server_arguments_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="port"):
        telemetry.start_http_server(70000)
    with pytest.raises(InputTypeError, match="port"):
        telemetry.start_http_server("9100")  # type: ignore[arg-type]


# --- track_stream --------------------------------------------------------------------


class Clock:
    """A manual clock: each call returns the next time from a list."""

    def __init__(self, times: list[float]) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none())))
def test_track_stream_yields_the_same_items(items: list[Any]) -> None:
    assert list(telemetry.track_stream(iter(items), name="prop")) == items

    async def consume() -> list[Any]:
        async def gen() -> AsyncIterator[Any]:
            for x in items:
                yield x

        return [x async for x in telemetry.track_stream(gen(), name="prop-async")]

    assert asyncio.run(consume()) == items


def test_track_stream_records_latencies_tokens_and_cost() -> None:
    m = telemetry.stream_metrics("chat-sync")
    # start 0, first token at 0.25, two more items, end at 1.25
    clock = Clock([0.0, 0.25, 1.25])
    chunks = ["Hel", "lo ", "world"]
    s = telemetry.track_stream(
        iter(chunks),
        name="chat-sync",
        prompt_tokens=100,
        price_per_input_token=0.001,
        price_per_output_token=0.002,
        count_tokens=len,
        clock=clock,
    )
    assert list(s) == chunks
    summary = s.summary
    assert summary is not None
    assert summary["outcome"] == "completed"
    assert summary["output_tokens"] == 11
    assert summary["time_to_first_token_s"] == 0.25
    assert summary["duration_s"] == 1.25
    assert math.isclose(summary["cost"], 100 * 0.001 + 11 * 0.002)
    st_ = m.stats()
    assert (st_["requests"], st_["completed"], st_["errors"], st_["in_flight"]) == (1, 1, 0, 0)
    assert st_["output_tokens"] == 11 and st_["prompt_tokens"] == 100
    assert math.isclose(st_["cost_per_request"], 0.122)
    assert m.time_to_first_token.count == 1
    assert math.isclose(m.time_to_first_token.percentile(50), 0.25, rel_tol=0.02)
    # time per output token after the first: 1.0 s / 10
    assert math.isclose(m.time_per_output_token.percentile(50), 0.1, rel_tol=0.02)
    assert math.isclose(m.output_tokens_per_second.percentile(50), 11 / 1.25, rel_tol=0.02)
    assert math.isclose(m.request_duration.percentile(50), 1.25, rel_tol=0.02)


def test_track_stream_counts_errors_and_early_close() -> None:
    m = telemetry.stream_metrics("chat-fail")

    def failing() -> Iterator[str]:
        yield "a"
        raise ConnectionError("upstream died")

    got: list[str] = []

    def consume() -> None:
        for x in telemetry.track_stream(failing(), name="chat-fail"):
            got.append(x)

    with pytest.raises(ConnectionError, match="upstream died"):
        consume()
    assert got == ["a"]
    closed: list[bool] = []

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    s = telemetry.track_stream(endless(), name="chat-fail")
    for x in s:
        if x == 3:
            break
    s.close()
    assert closed == [True]
    assert s.summary is not None and s.summary["outcome"] == "closed"
    stats = m.stats()
    assert (stats["requests"], stats["errors"], stats["closed_early"]) == (2, 1, 1)
    assert stats["completed"] == 0 and stats["output_tokens"] == 1 + 4
    assert m.request_duration.count == 0  # only streams that ran to their end
    assert m.time_to_first_token.count == 2


def test_track_stream_async_semantics() -> None:
    m = telemetry.stream_metrics("chat-async")

    async def tokens(n: int, fail: bool = False) -> AsyncIterator[str]:
        for i in range(n):
            await asyncio.sleep(0)
            yield f"t{i}"
        if fail:
            raise ValueError("bad chunk")

    async def main() -> None:
        assert [t async for t in telemetry.track_stream(tokens(3), name="chat-async")] == [
            "t0",
            "t1",
            "t2",
        ]
        with pytest.raises(ValueError, match="bad chunk"):
            async for _ in telemetry.track_stream(tokens(2, fail=True), name="chat-async"):
                pass
        async with telemetry.track_stream(tokens(10), name="chat-async") as s:
            async for t in s:
                if t == "t1":
                    break
        assert s.summary is not None and s.summary["outcome"] == "closed"

        async def consume_forever() -> None:
            async for _ in telemetry.track_stream(tokens(10**9), name="chat-async"):
                await asyncio.sleep(0.001)

        task = asyncio.ensure_future(consume_forever())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    stats = m.stats()
    assert (stats["requests"], stats["completed"], stats["errors"], stats["closed_early"]) == (
        4,
        1,
        1,
        2,
    )
    assert stats["in_flight"] == 0


def test_stream_metrics_are_exported(server: telemetry.MetricsServer) -> None:
    list(telemetry.track_stream(iter("abcd"), name="exported", price_per_output_token=0.5))
    samples, types = scrape(server)
    assert of(samples, "overdrive_stream_requests_total", name="exported") == 1
    assert of(samples, "overdrive_stream_cost_total", name="exported") == 2.0
    assert types["overdrive_stream_time_to_first_token_seconds"] == "histogram"
    assert of(samples, "overdrive_stream_request_duration_seconds_count", name="exported") == 1
    assert of(samples, "overdrive_stream_output_tokens_per_second_count", name="exported") == 1
    # its histograms are not exported twice (as overdrive_latency_seconds too)
    assert not any(
        n.startswith("overdrive_latency_") and ("name", "exported.request_duration") in labels
        for n, labels in samples
    )


def test_track_stream_arguments_are_checked() -> None:
    with pytest.raises(InputTypeError, match="stream"):
        telemetry.track_stream(42)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="price_per_input_token"):
        telemetry.track_stream([], price_per_input_token=-1)
    with pytest.raises(InputTypeError, match="prompt_tokens"):
        telemetry.track_stream([], prompt_tokens=1.5)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="count_tokens"):
        telemetry.track_stream([], count_tokens=3)  # type: ignore[arg-type]


# --- alerts ------------------------------------------------------------------------


def test_an_alert_fires_once_and_resolves_once(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    value: list[float | None] = [0.0]
    rule = telemetry.AlertRule(
        "LatencyHigh", op=">", threshold=0.2, getter=lambda: value[0], for_s=10, hysteresis=0.05
    )
    fired: list[telemetry.AlertEvent] = []
    resolved: list[telemetry.AlertEvent] = []
    alerts = telemetry.Alerts(
        [rule], interval_s=1, on_fire=fired.append, on_resolve=resolved.append, clock=lambda: now[0]
    )
    # (time, value): breach at t=1, held 10 s -> fires at t=11 (not before);
    # hovering around the threshold inside the hysteresis band does not resolve;
    # no data (None) changes nothing; below 0.15 resolves.
    script = [
        (0, 0.1),
        (1, 0.3),
        (5, 0.5),
        (10, 0.3),
        (11, 0.3),
        (12, 0.19),
        (13, 0.21),
        (14, 0.16),
        (15, None),
        (16, 0.14),
        (17, 0.1),
        (18, 0.19),
    ]
    with caplog.at_level(logging.INFO, logger="overdrive.telemetry.alerts"):
        for t, v in script:
            now[0], value[0] = float(t), v
            alerts.tick()
    assert [(e.state, e.at, e.value) for e in fired] == [("firing", 11.0, 0.3)]
    assert [(e.state, e.at, e.value) for e in resolved] == [("resolved", 16.0, 0.14)]
    lines = [r.getMessage() for r in caplog.records if r.name == "overdrive.telemetry.alerts"]
    assert len(lines) == 2
    assert "LatencyHigh firing" in lines[0] and "LatencyHigh resolved" in lines[1]
    assert alerts.firing == {}


def test_alerts_on_exported_metrics_per_series() -> None:
    a, b = Plain(), Plain()
    telemetry.register(a, component="alert_cache", name="low")
    telemetry.register(b, component="alert_cache", name="high")
    rule = telemetry.AlertRule(
        "HitRatioLow", metric="overdrive_alert_cache_hit_ratio", op="<", threshold=0.5
    )
    alerts = telemetry.Alerts([rule], clock=lambda: 0.0)
    events = alerts.tick()
    # Plain's hit_ratio is 0.25 for both
    assert sorted(e.instance for e in events) == [
        'overdrive_alert_cache_hit_ratio{name="high"}',
        'overdrive_alert_cache_hit_ratio{name="low"}',
    ]
    assert alerts.tick() == []  # still firing: no new transition
    assert len(alerts.firing) == 2
    telemetry.unregister(a)
    telemetry.unregister(b)


def test_default_latency_rule_measures_the_last_interval() -> None:
    h = LatencyHistogram(name="alerting")
    rules = [r for r in telemetry.default_rules() if r.name == "OverdriveLatencyP95High"]
    alerts = telemetry.Alerts(rules, clock=lambda: 0.0)
    key = "latency/alerting"
    alerts.tick()  # baseline
    for _ in range(100):
        h.record(0.5)
    (ev,) = [e for e in alerts.tick() if e.instance == key]
    assert ev.state == "firing" and math.isclose(ev.value, 0.5, rel_tol=0.02)
    for _ in range(100):
        h.record(0.01)
    (ev,) = [e for e in alerts.tick() if e.instance == key]
    assert ev.state == "resolved"
    telemetry.unregister(h)


def test_default_error_rate_and_cost_rules() -> None:
    rules = telemetry.default_rules(cost_target=0.05)
    names = {r.name for r in rules}
    assert names == {
        "OverdriveCacheHitRateLow",
        "OverdriveLatencyP95High",
        "OverdriveErrorRateHigh",
        "OverdriveCostPerRequestHigh",
    }
    alerts = telemetry.Alerts(
        [r for r in rules if r.name in ("OverdriveErrorRateHigh", "OverdriveCostPerRequestHigh")],
        clock=lambda: 0.0,
    )
    telemetry.stream_metrics("costly")
    alerts.tick()  # baseline

    def gen(fail: bool) -> Iterator[str]:
        yield from ["x", "y"]
        if fail:
            raise OSError("lost")

    failures = 0
    for i in range(40):
        s = telemetry.track_stream(gen(i % 10 == 0), name="costly", price_per_output_token=0.05)
        try:
            assert list(s) == ["x", "y"]
        except OSError:
            failures += 1
    assert failures == 4
    events = {(e.rule.name, e.instance): e for e in alerts.tick()}
    err = events[("OverdriveErrorRateHigh", "stream/costly")]
    assert math.isclose(err.value, 4 / 40)
    cost = events[("OverdriveCostPerRequestHigh", "stream/costly")]
    assert math.isclose(cost.value, 0.1)


def test_alerts_background_thread_and_checks() -> None:
    ticks: list[float] = []

    def getter() -> float:
        ticks.append(1.0)
        return 1.0

    with telemetry.Alerts([telemetry.AlertRule("t", getter=getter, threshold=0.5)], 0.01) as a:
        deadline = 200
        while not ticks and deadline:
            time.sleep(0.01)
            deadline -= 1
    assert ticks and a.ticks >= 1
    with pytest.raises(ConfigurationError, match="exactly one"):
        telemetry.AlertRule("x", threshold=1)
    with pytest.raises(ConfigurationError, match="op"):
        telemetry.AlertRule("x", "m", "!=", 1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="hysteresis"):
        telemetry.AlertRule("x", "m", ">", 1, hysteresis=-1)
    with pytest.raises(ConfigurationError, match="interval_s"):
        telemetry.Alerts([], interval_s=0)


# --- the CLI exports -------------------------------------------------------------------


def _all_metric_names() -> set[str]:
    """Family names of a scrape with one of every component alive."""
    keep = [
        od.BufferPool(1024, min_size=1, max_size=2),
        od.ObjectPool(dict),
        od.Balancer(1),
        od.ShardRouter(["n"]),
        od.Compressor(),
        od.WorkerPool(1, 1),
        od.Batcher(lambda xs: xs),
        od.MessageBatcher(lambda f: None),
    ]
    lb = keep[2]
    lb.release(lb.acquire(), latency_s=0.01)  # type: ignore[attr-defined]
    lb.report_queue(0, 0.5)  # type: ignore[attr-defined]
    keep.append(LatencyHistogram(name="names"))  # type: ignore[arg-type]
    tmp = tempfile.TemporaryDirectory()
    mem = odc.MemoryTier(max_entries=10, max_bytes=1 << 20)
    disk = odc.DiskTier(Path(tmp.name) / "names.db", write_behind=False)
    redis = odc.RedisTier("redis://127.0.0.1:1/0")  # connects lazily: never, here
    cache = odc.TieredCache([mem, disk], name="names")
    cache.get("k")
    keep += [mem, disk, redis, cache]  # type: ignore[list-item]
    keep += [  # type: ignore[list-item]
        odr.CircuitBreaker(name="names"),
        odr.ConcurrencyLimiter(name="names"),
        odr.RateLimiter(10, name="names"),
    ]
    list(telemetry.track_stream(iter("ab"), name="names", price_per_output_token=1.0))
    pool = ai.InferencePool({"r": lambda xs: xs}, name="names")
    pool.predict(1)
    cascade = ai.Cascade([(str, 1.0)], name="names")
    cascade(1)
    keep.append(cascade)  # type: ignore[arg-type]
    reg = prometheus_client.CollectorRegistry()
    telemetry.install(reg)
    text = prometheus_client.generate_latest(reg).decode()
    keep[5].shutdown()  # type: ignore[attr-defined]
    keep[6].close()  # type: ignore[attr-defined]
    keep[7].close()  # type: ignore[attr-defined]
    cache.close()
    redis.close()
    pool.close()
    tmp.cleanup()
    names = set()
    for fam in text_string_to_metric_families(text):
        names.update(s.name for s in fam.samples)
    return names


def test_export_rules_writes_valid_prometheus_rules(tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"
    assert cli_main(["telemetry", "export-rules", "--out", str(out), "--cost-target", "0.02"]) == 0
    doc = yaml.safe_load(out.read_text())
    (group,) = doc["groups"]
    alerts = {r["alert"] for r in group["rules"]}
    assert alerts == {
        "OverdriveCacheHitRateLow",
        "OverdriveLatencyP95High",
        "OverdriveErrorRateHigh",
        "OverdriveCostPerRequestHigh",
    }
    # every concrete metric a rule names is one the export serves
    exported = _all_metric_names()
    for rule in group["rules"]:
        for name in re.findall(r"\b(overdrive_[a-z0-9_]+)\[", rule["expr"]):
            assert name in exported, (rule["alert"], name)
    promtool = shutil.which("promtool")
    if promtool is not None:
        res = subprocess.run(
            [promtool, "check", "rules", str(out)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert "SUCCESS" in res.stdout


def test_export_dashboard_writes_grafana_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dash.json"
    assert cli_main(["telemetry", "export-dashboard", "--out", str(out)]) == 0
    dash = json.loads(out.read_text())
    assert dash["uid"] == "overdrive" and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exported = _all_metric_names()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"\b(overdrive_[a-z0-9_]+)\{", expr):
            assert name in exported, name
    # standard output by default
    assert cli_main(["telemetry", "export-dashboard"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "overdrive"
