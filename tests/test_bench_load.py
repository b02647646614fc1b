"""LoadRunner and the Rust Pacer: open loop without coordinated omission,
closed loop, sync / async / HTTP targets, the JSON document, the CLI."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from overdrive._core import Pacer
from overdrive.bench import LoadRunner
from overdrive.exceptions import ConfigurationError, InputTypeError

STATS_KEYS = {"p50", "p90", "p99", "p999", "max", "mean"}
TIMELINE_KEYS = {
    "t",
    "sent",
    "completed",
    "errors",
    "throughput",
    "p50",
    "p99",
    "rss_bytes",
    "cpu_s",
}


class StallingTarget:
    """Serves in ``service_s``; every call made during [stall_at, stall_at +
    stall_for) (seconds since construction) waits until the stall ends."""

    def __init__(self, stall_at: float, stall_for: float, service_s: float) -> None:
        self.t0 = time.monotonic()
        self.stall_at = stall_at
        self.stall_end = stall_at + stall_for
        self.service_s = service_s

    def __call__(self) -> None:
        now = time.monotonic() - self.t0
        if self.stall_at <= now < self.stall_end:
            time.sleep(self.stall_end - now)
        time.sleep(self.service_s)


def check_document(doc: dict[str, object], mode: str) -> None:
    base = {"kind", "created", "build", "machine", "mode", "target", "offered_rate"}
    base |= {"concurrency", "duration_s", "sent", "completed", "errors", "missed"}
    base |= {"achieved_rate", "latency", "service_time", "schedule_lag", "cdf", "timeline"}
    assert base | {"warnings"} <= set(doc)
    assert doc["kind"] == "load"
    assert doc["mode"] == mode
    assert set(doc["latency"]) == STATS_KEYS  # type: ignore[arg-type]
    assert set(doc["service_time"]) == STATS_KEYS  # type: ignore[arg-type]
    if mode == "open":
        assert set(doc["schedule_lag"]) == STATS_KEYS  # type: ignore[arg-type]
        assert doc["concurrency"] is None
    else:
        assert doc["schedule_lag"] is None
        assert doc["offered_rate"] is None
    cdf = doc["cdf"]
    assert isinstance(cdf, list) and 0 < len(cdf) <= 200
    fractions = [f for _, f in cdf]
    values = [v for v, _ in cdf]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert values == sorted(values)
    timeline = doc["timeline"]
    assert isinstance(timeline, list) and timeline
    for row in timeline:
        assert set(row) == TIMELINE_KEYS
        assert row["rss_bytes"] > 0
    assert sum(r["completed"] for r in timeline) == doc["completed"]
    assert sum(r["sent"] for r in timeline) == doc["sent"]
    json.loads(json.dumps(doc))


def test_coordinated_omission_open_loop_shows_the_stall_closed_loop_hides_it() -> None:
    # 10 s at 200 req/s; the target stalls for 1 s from t = 4 s.
    target = StallingTarget(stall_at=4.0, stall_for=1.0, service_s=0.002)
    open_run = LoadRunner(target, rate=200, duration=10.0, progress=False).run()
    doc = open_run.to_dict()
    check_document(doc, "open")
    assert doc["sent"] == 2000
    assert doc["completed"] == 2000
    # ~200 arrivals (10%) land in the stall, waiting 0..1 s: the p99 shows it.
    assert doc["latency"]["p99"] >= 0.5
    assert doc["latency"]["max"] >= 0.9
    # The generator itself never stalled: arrivals were sent on time.
    assert doc["schedule_lag"]["p99"] < 0.1

    # Closed loop: 2 users back to back; each is stuck once for <= 1 s, and
    # the few requests it did not send during the stall are simply missing.
    target = StallingTarget(stall_at=4.0, stall_for=1.0, service_s=0.005)
    closed = LoadRunner(target, concurrency=2, duration=10.0, progress=False).run().to_dict()
    check_document(closed, "closed")
    assert closed["latency"]["max"] >= 0.5  # the stall happened ...
    assert closed["latency"]["p99"] < 0.1  # ... and the percentiles hide it
    assert closed["completed"] > 1000


def test_open_loop_document_and_counts() -> None:
    calls = []
    result = LoadRunner(lambda: calls.append(1), rate=400, duration=1.0, progress=False).run()
    doc = result.to_dict()
    assert result.sent == result.completed == 400 and result.errors == 0
    assert 0 <= result.missed <= 400
    assert result.achieved_rate == doc["achieved_rate"]
    assert result.percentile(99.0) == result.latency.percentile(99.0) == doc["latency"]["p99"]
    check_document(doc, "open")
    assert doc["sent"] == doc["completed"] == len(calls) == 400
    assert doc["errors"] == 0
    assert doc["offered_rate"] == 400.0
    assert 300 <= doc["achieved_rate"] <= 401
    assert result.latency.count == 400
    assert result.schedule_lag is not None and result.schedule_lag.count == 400
    # Latency from the intended time >= service time from the actual send.
    assert doc["latency"]["mean"] >= doc["service_time"]["mean"]
    assert json.loads(result.to_json())["sent"] == 400


def test_rate_schedule_and_poisson() -> None:
    doc = (
        LoadRunner(lambda: None, schedule=[(0.5, 100), (0.5, 100, 300)], progress=False)
        .run()
        .to_dict()
    )
    assert doc["sent"] == 150  # 50 + (100 + 300) / 2 * 0.5
    assert doc["duration_s"] == 1.0
    a = LoadRunner(lambda: None, rate=300, duration=1.0, poisson=True, seed=3, progress=False)
    n = a.run().to_dict()["sent"]
    assert 200 < n < 400
    assert a.run().to_dict()["sent"] == n  # the seed fixes the arrivals


def test_errors_counted_by_type_and_nothing_leaks() -> None:
    before = threading.active_count()
    counter = iter(range(10**9))

    def flaky() -> None:
        i = next(counter)
        if i % 3 == 0:
            raise ValueError(i)
        if i % 3 == 1:
            raise KeyError(i)

    doc = LoadRunner(flaky, rate=300, duration=0.5, progress=False).run().to_dict()
    assert doc["completed"] == 150
    assert doc["errors"] == 100
    assert doc["error_types"] == {"ValueError": 50, "KeyError": 50}
    closed = LoadRunner(flaky, concurrency=3, duration=0.3, progress=False).run().to_dict()
    assert closed["errors"] > 0
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_async_target_open_and_closed() -> None:
    async def target() -> None:
        await asyncio.sleep(0.002)

    doc = LoadRunner(target, rate=300, duration=1.0, progress=False).run().to_dict()
    check_document(doc, "open")
    assert doc["sent"] == doc["completed"] == 300
    assert doc["latency"]["p50"] >= 0.002
    users = LoadRunner(target, mode="closed", concurrency=4, duration=0.5, progress=False)
    closed = users.run().to_dict()
    check_document(closed, "closed")
    assert closed["completed"] > 50

    async def from_a_loop() -> int:
        # run() inside a running loop uses its own loop in a helper thread.
        r = LoadRunner(target, rate=100, duration=0.3, progress=False)
        a = r.run().to_dict()["sent"]
        b = (await r.arun()).to_dict()["sent"]
        return int(a + b)

    assert asyncio.run(from_a_loop()) == 60


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/missing":
            body = b"no"
            self.send_response(404)
        else:
            body = b"hello"
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        t.join()


def test_http_target_on_loopback(http_url: str) -> None:
    doc = LoadRunner(http_url + "/ok", rate=100, duration=1.0, progress=False).run().to_dict()
    check_document(doc, "open")
    assert doc["completed"] == 100
    assert doc["errors"] == 0
    assert doc["target"] == http_url + "/ok"
    bad = LoadRunner(http_url + "/missing", concurrency=2, duration=0.3, progress=False).run()
    d = bad.to_dict()
    assert d["errors"] == d["completed"] > 0
    assert d["error_types"] == {"HttpStatusError": d["errors"]}


def test_arguments_are_checked_with_typed_errors() -> None:
    with pytest.raises(ConfigurationError, match="rate"):
        LoadRunner(lambda: None, rate=-1, duration=1.0)
    with pytest.raises(ConfigurationError, match="duration"):
        LoadRunner(lambda: None, rate=10, duration=0)
    with pytest.raises(ConfigurationError, match="duration"):
        LoadRunner(lambda: None, rate=10)
    with pytest.raises(InputTypeError, match="target"):
        LoadRunner(42, rate=10, duration=1.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="url"):
        LoadRunner("ftp://x", rate=10, duration=1.0)
    with pytest.raises(ConfigurationError, match="concurrency"):
        LoadRunner(lambda: None, rate=10, duration=1.0, concurrency=2)
    with pytest.raises(ConfigurationError, match="concurrency"):
        LoadRunner(lambda: None, concurrency=0, duration=1.0)
    with pytest.raises(ConfigurationError, match="rate"):
        LoadRunner(lambda: None, duration=1.0)
    with pytest.raises(ConfigurationError, match="mode"):
        LoadRunner(lambda: None, rate=10, duration=1.0, mode="closed")
    with pytest.raises(ConfigurationError, match="mode"):
        LoadRunner(lambda: None, duration=1.0, mode="sideways")
    with pytest.raises(ConfigurationError, match="rate"):
        LoadRunner(lambda: None, duration=1.0, mode="open")
    with pytest.raises(InputTypeError, match="max_workers"):
        LoadRunner(lambda: None, rate=1, duration=1.0, max_workers=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="schedule"):
        LoadRunner(lambda: None, schedule=[(1.0, -5.0)])
    with pytest.raises(InputTypeError, match="schedule"):
        Pacer(schedule=["1,2"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="rate"):
        Pacer(0.0, 1.0)
    with pytest.raises(ConfigurationError, match="tolerance_s"):
        Pacer(1.0, 1.0, tolerance_s=-1.0)
    with pytest.raises(InputTypeError, match="seed"):
        Pacer(1.0, 1.0, seed="x")  # type: ignore[arg-type]


def test_pacer_hands_out_the_schedule_on_time() -> None:
    p = Pacer(2000.0, 0.1)
    got = list(p)
    assert [i for i, _, _ in got] == list(range(200))
    assert all(abs(t - i / 2000.0) < 1e-9 for i, t, _ in got)
    stats = p.stats()
    assert set(stats) == {"issued", "late", "waiting_s", "max_lag_s", "elapsed_s"}
    assert stats["issued"] == 200
    assert p.elapsed() >= 0.0995
    # stop() from another thread ends a long wait.
    long = Pacer(0.5, 100.0)
    assert long.wait_next() is not None
    threading.Timer(0.05, long.stop).start()
    assert long.wait_next() is None
    assert long.stopped
    assert Pacer(schedule=[(1.0, 0.0, 10.0)]).expected_count == 5.0


def test_cli_load_writes_the_document(http_url: str, tmp_path: Path) -> None:
    from overdrive.cli import main

    out = tmp_path / "load.json"
    code = main(
        ["load", http_url, "--rate", "50", "--duration", "0.4", "--no-progress", "--out", str(out)]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "load" and doc["sent"] == 20


def test_arrivals_that_cannot_start_on_time_are_counted_and_warned() -> None:
    # One worker, 20 ms calls, 100 arrivals/s: every call waits for the one
    # before it, so arrivals start later and later (still measured from the
    # intended time, never dropped).
    result = LoadRunner(
        lambda: time.sleep(0.02), rate=100, duration=0.3, max_workers=1, progress=False
    ).run()
    doc = result.to_dict()
    assert doc["sent"] == doc["completed"] == 30
    assert doc["missed"] >= 20  # from the 3rd call on, each starts >= 10 ms late
    assert any("max_workers=1" in w for w in doc["warnings"])
    assert any("started more than tolerance_s" in w for w in doc["warnings"])
    assert doc["latency"]["max"] > doc["service_time"]["max"]
