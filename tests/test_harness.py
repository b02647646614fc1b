"""The benchmark harness: statistics on synthetic samples, interleaving, the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from overdrive.bench import SUITES, BenchConfig, Comparison, interleaved, load_suite
from overdrive.bench.compare import _mann_whitney_p


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
