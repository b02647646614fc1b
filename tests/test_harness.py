"""The benchmark harness: statistics on synthetic samples, interleaving, the CLI end to end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import overdrive as od
from overdrive.bench import SUITES, BenchConfig, Comparison, interleaved, load_suite
from overdrive.bench.baselines import FrameBatcher, GreedyThreadBatcher, MinimalAsyncBatcher
from overdrive.bench.compare import _mann_whitney_p
from overdrive.bench.corpus import json_messages


def test_comparison_ratio_is_baseline_over_candidate() -> None:
    base = [2.0, 2.1, 1.9, 2.0, 2.05, 1.95, 2.0]
    cand = [1.0, 1.05, 0.95, 1.0, 1.02, 0.98, 1.0]
    c = Comparison.from_samples(base, cand, number=10)
    assert c.ratio == pytest.approx(2.0)
    assert c.ci_low <= c.ratio <= c.ci_high
    assert c.ci_low > 1.5
    assert c.significant
    assert c.p_value < 0.01
    assert c.to_dict()["number"] == 10


def test_identical_samples_are_not_significant() -> None:
    same = [1.0, 1.1, 0.9, 1.05, 0.95]
    c = Comparison.from_samples(same, list(same), number=1)
    assert c.ratio == pytest.approx(1.0)
    assert not c.significant
    assert c.p_value > 0.5


def test_mann_whitney_symmetry_and_ties() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]
    assert _mann_whitney_p(a, b) == pytest.approx(_mann_whitney_p(b, a))
    assert _mann_whitney_p([1.0] * 5, [1.0] * 5) == 1.0
    assert _mann_whitney_p([], [1.0]) == 1.0


def test_interleaved_rotates_order_and_counts_calls() -> None:
    order: list[str] = []
    calls = {"a": 0, "b": 0, "c": 0}

    def make(name: str):  # type: ignore[no-untyped-def]
        def fn() -> None:
            calls[name] += 1
            if not order or order[-1] != name:
                order.append(name)

        return fn

    samples = interleaved({n: make(n) for n in calls}, repeats=3, number=5, warmup=0)
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls == {"a": 15, "b": 15, "c": 15}
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_interleaved_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="repeats"):
        interleaved({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="empty"):
        interleaved({})


def test_unknown_suite_is_named() -> None:
    with pytest.raises(KeyError, match=r"nope.*compression"):
        load_suite("nope")


def test_compression_suite_rows_and_checks() -> None:
    result = load_suite("compression").run(BenchConfig(quick=True, repeats=2))
    impls = {r["impl"] for r in result.rows}
    assert {"overdrive", "python-zstandard", "zlib-6"} <= impls
    names = [c.name for c in result.checks]
    assert any("floor" in n for n in names)
    for row in result.rows:
        assert row["ns/msg"] > 0
        assert row["MB/s"] > 0
    # the batch APIs are checked against the peer's own batch API first
    many = [n for n in names if n.startswith(("compress_many", "decompress_many"))]
    assert many[0] == "compress_many vs python-zstandard multi_compress_to_buffer(threads=-1)"
    assert "decompress_many vs python-zstandard multi_decompress_to_buffer(threads=-1)" in many


def test_worker_pool_suite_rows_and_checks() -> None:
    result = load_suite("worker_pool").run(BenchConfig(quick=True, repeats=2))
    cases = {r["case"] for r in result.rows}
    assert "submit->result no-op" in cases
    assert any("CPU-bound" in c for c in cases)
    assert any("time.sleep" in c for c in cases)
    for case in cases:
        impls = {r["impl"] for r in result.rows if r["case"] == case}
        assert {"WorkerPool", "WorkerPool(help_on_wait=False)", "ThreadPoolExecutor"} <= impls
    names = [c.name for c in result.checks]
    assert any("help_on_wait=False" in n for n in names)
    assert all(r["value"] > 0 for r in result.rows)
    assert "worker_pool" in SUITES


def test_pools_suite_leads_with_the_free_list() -> None:
    result = load_suite("pools").run(BenchConfig(quick=True, repeats=2))
    first_64k = [r["impl"] for r in result.rows if r["case"] == "64 KiB acquire+release"]
    assert first_64k[:2] == ["overdrive", "Lock + list free list"]
    assert result.checks[0].name == "64 KiB vs Lock + list free list"


def test_telemetry_suite_rows_and_checks() -> None:
    result = load_suite("telemetry").run(BenchConfig(quick=True, repeats=2))
    cases = {r["case"] for r in result.rows}
    assert {"record one latency", "p99 of 100,000 values", "with timer(): pass"} <= cases
    impls = {r["impl"] for r in result.rows if r["case"] == "record one latency"}
    assert {"overdrive", "prometheus_client observe", "hdrhistogram record_value"} <= impls
    names = [c.name for c in result.checks]
    assert names[:2] == ["record() per call", "percentile(99) query"]
    assert all(r["value"] > 0 for r in result.rows)
    assert "telemetry" in SUITES


def test_cache_suite_rows_and_checks() -> None:
    assert "cache" in SUITES
    result = load_suite("cache").run(BenchConfig(quick=True, repeats=2))
    cases: dict[str, list[str]] = {}
    for r in result.rows:
        cases.setdefault(r["case"], []).append(r["impl"])
        assert r["value"] > 0, r
    hit = cases["get hit (Zipf keys, all cached)"]
    assert hit[:2] == ["MemoryTier (tinylfu, ttl)", "cachebox.LRUCache"]
    assert {"cachetools.TTLCache + Lock", "cachetools.TTLCache (no lock)"} <= set(hit)
    assert {"functools.lru_cache hit", "dict.get"} <= set(hit)
    ratio_cases = [c for c in cases if c.startswith("hit ratio")]
    assert len(ratio_cases) == 2  # quick: the whole trace, and the prefix the slow peers replay
    assert {"MemoryTier (tinylfu)", "MemoryTier (lru)", "cachebox.LRUCache"} <= set(
        cases[ratio_cases[0]]
    )
    assert {"cachetools.LRUCache", "cachetools.TTLCache"} <= set(cases[ratio_cases[1]])
    ratios = {r["impl"]: r["value"] for r in result.rows if r["case"] == ratio_cases[0]}
    # LRU is LRU: every exact LRU gives the same hits on the same trace
    assert ratios["MemoryTier (lru)"] == pytest.approx(ratios["cachebox.LRUCache"], abs=0.01)
    assert ratios["functools.lru_cache"] == pytest.approx(ratios["cachebox.LRUCache"], abs=0.01)
    mem = [c for c in cases if c.startswith("memory per entry")]
    assert len(mem) == 1 and cases[mem[0]] == [
        "MemoryTier (tinylfu)",
        "MemoryTier (lru)",
        "cachebox.LRUCache",
        "dict",
    ]
    names = [c.name for c in result.checks]
    assert names[0] == "get hit vs cachebox.LRUCache"
    assert any(n.startswith("hit ratio") for n in names)
    assert any(n.startswith("memory per entry") for n in names)
    assert not any(n.startswith(("L2", "L3", "decorator")) for n in names)


def test_cli_bench_and_report(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "overdrive"]
    listed = subprocess.run([*cli, "bench", "--list"], capture_output=True, text=True, check=True)
    assert "compression" in listed.stdout
    bad = subprocess.run([*cli, "bench", "--suite", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2
    run = subprocess.run(
        [*cli, "bench", "--quick", "--suite", "compression", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "python-zstandard" in run.stdout
    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["build"]["profile"] == "release"
    assert report["suites"][0]["suite"] == "compression"
    shown = subprocess.run(
        [*cli, "report", str(tmp_path / "latest.json"), str(tmp_path / "latest.json")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "run vs base" in shown.stdout
    assert "1.00x" in shown.stdout


def test_minimal_async_batcher_returns_each_callers_result() -> None:
    async def double(items: list[int]) -> list[int]:
        return [2 * x for x in items]

    def triple(items: list[int]) -> list[int]:
        return [3 * x for x in items]

    async def main() -> tuple[list[int], list[int], int]:
        a = MinimalAsyncBatcher(double, max_batch_size=8, max_wait_ms=1.0)
        s = MinimalAsyncBatcher(triple, max_batch_size=8, max_wait_ms=1.0)
        got_a = await asyncio.gather(*[a.submit(i) for i in range(20)])
        got_s = await asyncio.gather(*[s.submit(i) for i in range(20)])
        one = await a.submit(5)  # a lone item goes after max_wait, not never
        await a.aclose()
        await s.aclose()
        return got_a, got_s, one

    got_a, got_s, one = asyncio.run(main())
    assert got_a == [2 * i for i in range(20)]
    assert got_s == [3 * i for i in range(20)]
    assert one == 10


def test_greedy_thread_batcher_returns_each_callers_result_and_drains_on_close() -> None:
    g = GreedyThreadBatcher(lambda items: [x + 1 for x in items], max_batch_size=4)
    futs = [g.submit(i) for i in range(50)]
    g.close()
    assert [f.result(timeout=5) for f in futs] == [i + 1 for i in range(50)]
    assert g.items == 50
    assert g.batches >= 50 // 4


def test_frame_batcher_makes_messagebatchers_frames() -> None:
    msgs = json_messages(120, 200, seed=3)
    frames: list[bytes] = []
    fb = FrameBatcher(frames.append, max_batch_size=50, level=-1)
    for m in msgs:
        fb.put(m)
    fb.close()
    assert [len(od.decode_batch(f)) for f in frames] == [50, 50, 20]
    assert frames == [od.encode_batch(msgs[i : i + 50], 1024, -1) for i in (0, 50, 100)]
    assert [m for f in frames for m in od.decode_batch(f)] == msgs


def test_ideal_open_loop_floor() -> None:
    """The virtual-time greedy batcher: one item per batch when arrivals are
    sparse; a full device gives batches that grow with the rate."""
    from overdrive.bench.suites.batching import ideal_p99

    # 10 items/s on a 2.1 ms + 0.1 ms/item device: every item alone, 2.2 ms each
    assert ideal_p99(10.0, 0.0021, 0.0001, items=1000) == pytest.approx(0.0022)
    cap = 64 / (0.0021 + 0.0001 * 64)
    floors = [ideal_p99(cap * f, 0.0021, 0.0001) for f in (0.5, 0.8, 0.95)]
    assert floors == sorted(floors)
    # at 80%: batches settle near n = rate * T(n), so p99 is about twice T(n) (two batches)
    n = 2.1 / (1 / (cap * 0.8 / 1000) - 0.1)
    assert floors[1] == pytest.approx(2 * (0.0021 + 0.0001 * n), rel=0.1)


def test_batching_suite_cases_and_goals() -> None:
    result = load_suite("batching").run(BenchConfig(quick=True, repeats=2))
    cases: dict[str, list[str]] = {r["case"]: [] for r in result.rows}
    for r in result.rows:
        cases[r["case"]].append(r["impl"])
    overhead = [c for c in cases if c.startswith(("(a)", "(b)", "(c)"))]
    assert len(overhead) == 3
    for c in overhead:
        assert cases[c] == [
            "overdrive (sync handler)",
            "minimal asyncio batcher (sync handler)",
            "overdrive (async handler)",
            "minimal asyncio batcher (async handler)",
        ]
    open_loop = [c for c in cases if c.startswith("open loop")]
    assert open_loop == [f"open loop, device at {p}%" for p in (50, 80, 95)]
    for c in open_loop:
        assert cases[c] == [
            "overdrive",
            "greedy thread batcher",
            "ideal greedy (virtual time, no overhead)",
        ]
    msgs = next(c for c in cases if "JSON msgs" in c)
    assert cases[msgs][1] == "python-zstandard, same frames (50/frame, level -1)"
    names = [c.name for c in result.checks]
    assert sum("overdrive vs minimal asyncio batcher" in n for n in names) == 6
    assert sum("p99 vs greedy thread batcher" in n for n in names) == 2
    assert any(n.startswith("MessageBatcher vs the same frames") for n in names)
    assert all(r["us/item"] > 0 for r in result.rows)
