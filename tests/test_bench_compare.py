"""compare(): interleaved timing, warm-up, setup, CPU time, memory, verdicts, JSON.

Speed itself is never asserted here; the callables differ by 10x in work so the
verdict's direction holds on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import overdrive as od
from overdrive.bench import Comparison, MemoryUse, compare, environment_info, machine_info
from overdrive.bench.environment import peak_rss_bytes, rss_bytes
from overdrive.bench.report import machine_info as report_machine_info
from overdrive.bench.suites import SuiteResult
from overdrive.bench.suites._common import VALUE_COLUMNS, add_rows, ratio_ci, value_row
from overdrive.exceptions import ConfigurationError, InputTypeError

SCHEMA_KEYS = {
    "kind",
    "created",
    "build",
    "machine",
    "baseline_name",
    "candidate_name",
    "ratio",
    "ci_low",
    "ci_high",
    "p_value",
    "threshold",
    "verdict",
    "significant",
    "baseline",
    "candidate",
    "repeats",
    "number",
}
SIDE_KEYS = {"median_s", "times_s", "cpu_times_s", "peak_tracemalloc_bytes", "peak_rss_bytes"}


def busy(n: int) -> Any:
    def work() -> int:
        s = 0
        for i in range(n):
            s += i * i
        return s

    return work


def test_ten_times_less_work_is_faster_and_the_reverse_is_slower() -> None:
    """CPU time: preemption by other work on the machine is not in it, so the
    10x difference stands out however loaded the machine is."""
    light, heavy = busy(300), busy(3000)
    r = compare(heavy, light, repeats=21, min_time=0.003, memory=False, timer="cpu")
    assert r.verdict == "faster", r
    assert r.ratio > 1.05 and r.ci_low >= 1.05 and r.timer == "cpu"
    assert "faster" in str(r) and "95% CI" in str(r) and "CPU" in str(r)
    back = compare(
        light, heavy, repeats=21, min_time=0.003, memory=False, names=("a", "b"), timer="cpu"
    )
    assert back.verdict == "slower", back
    assert back.ci_high <= 1 / 1.05
    assert str(back).startswith("b ") and "slower than a" in str(back)
    assert len(r.baseline_times) == len(r.baseline_cpu_times) == len(r.candidate_cpu_times) == 21
    assert all(c > 0 for c in r.baseline_cpu_times)
    assert r.to_dict()["timer"] == "cpu"


def test_wall_time_never_claims_the_wrong_direction() -> None:
    """Wall time on a shared machine may be too noisy for a claim (then the
    interval says so), but it must not point the wrong way."""
    light, heavy = busy(300), busy(3000)
    r = compare(heavy, light, repeats=21, min_time=0.003, memory=False)
    assert r.verdict in ("faster", "no difference"), r
    assert r.ratio > 1.0 and r.timer == "wall"
    assert r.baseline_median_s > r.candidate_median_s
    assert r.cpu_ratio is not None and r.cpu_ratio > 1.05


def test_identical_callables_show_no_difference() -> None:
    fn = busy(1000)
    r = compare(fn, fn, repeats=15, min_time=0.003, memory=False, threshold=0.25)
    assert r.verdict == "no difference", r
    assert r.ci_low < 1.25 and r.ci_high > 1 / 1.25
    assert "no difference beyond 25%" in str(r)
    # CPU time is steady enough for the default 5% threshold.
    c = compare(fn, fn, repeats=15, min_time=0.003, memory=False, timer="cpu")
    assert c.verdict == "no difference", c


def test_unequal_counts_of_one_distribution_are_not_significant() -> None:
    """pyperf's compare calls different sample counts 'significant'; this must not."""
    base = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.0, 1.01, 0.99]
    cand = base * 3 + [1.0, 1.005]
    c = Comparison.from_samples(base, cand, number=1)
    assert c.repeats == 10 and len(c.candidate_times) == 32
    assert not c.significant
    assert c.verdict == "no difference"
    assert c.p_value > 0.5
    flat = Comparison.from_samples([2.0] * 5, [2.0] * 17, number=1)
    assert (flat.ratio, flat.ci_low, flat.ci_high, flat.p_value) == (1.0, 1.0, 1.0, 1.0)
    assert not flat.significant and flat.verdict == "no difference"


def test_samples_alternate_order_and_warmup_is_discarded() -> None:
    order: list[str] = []
    a = lambda: order.append("a")  # noqa: E731
    b = lambda: order.append("b")  # noqa: E731
    r = compare(a, b, repeats=4, number=3, warmup=2, memory=False)
    assert len(r.baseline_times) == len(r.candidate_times) == 4
    assert r.number == 3 and r.warmup == 2
    runs = ["".join(order[i : i + 3]) for i in range(0, len(order), 3)]
    # 2 warm-up rounds + 4 timed rounds, each callable once per round, order A B, B A, ...
    assert runs == ["aaa", "bbb", "bbb", "aaa"] * 3


def test_setup_runs_untimed_before_every_sample() -> None:
    setups = 0
    calls = 0

    def setup() -> None:
        nonlocal setups
        setups += 1
        time.sleep(0.02)

    def fn() -> None:
        nonlocal calls
        calls += 1

    r = compare(fn, fn, setup=setup, repeats=3, number=5, warmup=1, memory=True)
    # (1 warm-up + 3 timed) rounds x 2 callables, plus 2 memory calls per callable.
    assert setups == 4 * 2 + 2 * 2
    assert calls == 4 * 2 * 5 + 2 * 2
    # The 20 ms sleep in setup is not in the samples (generous bound: 5 ms per call).
    assert max(r.baseline_times + r.candidate_times) < 0.005


def test_memory_is_measured_outside_the_timing() -> None:
    assert not tracemalloc.is_tracing()

    def alloc() -> int:
        return len(b"x" * 4_000_000)

    r = compare(alloc, lambda: 0, repeats=3, min_time=0.002)
    big, small = r.baseline_memory, r.candidate_memory
    assert big.peak_tracemalloc_bytes is not None and big.peak_tracemalloc_bytes >= 4_000_000
    assert small.peak_tracemalloc_bytes is not None and small.peak_tracemalloc_bytes < 100_000
    assert big.peak_rss_bytes is not None and big.peak_rss_bytes > 0
    assert big.rss_growth_bytes is not None and big.rss_growth_bytes >= 0
    assert not tracemalloc.is_tracing()  # compare() stops what it started
    tracemalloc.start()
    try:
        compare(alloc, alloc, repeats=3, number=1)
        assert tracemalloc.is_tracing()  # ... and leaves the caller's tracing on
    finally:
        tracemalloc.stop()
    skipped = compare(alloc, alloc, repeats=3, number=1, memory=False)
    assert skipped.baseline_memory == MemoryUse()


def test_json_document_has_every_schema_key_and_round_trips(tmp_path: Path) -> None:
    r = compare(busy(2000), busy(200), repeats=5, min_time=0.002, names=("loop", "short"))
    d = json.loads(r.to_json())
    assert set(d) >= SCHEMA_KEYS
    assert d["kind"] == "comparison"
    assert d["build"] == od.build_info()
    assert {"python", "platform", "cpus", "load_avg", "cpu_model"} <= set(d["machine"])
    assert (d["baseline_name"], d["candidate_name"]) == ("loop", "short")
    for side in ("baseline", "candidate"):
        assert set(d[side]) >= SIDE_KEYS
        assert len(d[side]["times_s"]) == len(d[side]["cpu_times_s"]) == 5
    assert d["verdict"] in ("faster", "slower", "no difference")
    assert d["threshold"] == 0.05 and d["repeats"] == 5 and d["number"] == r.number
    # Each side calibrated on its own: the 10x lighter loop runs more calls per sample.
    assert d["candidate"]["number"] > d["baseline"]["number"] == r.number
    path = r.save(tmp_path / "out" / "cmp.json")
    back = Comparison.load(path)
    assert back == r
    assert Comparison.from_dict(d) == r
    with pytest.raises(ConfigurationError, match="kind"):
        Comparison.from_dict({**d, "kind": "load"})


def test_from_samples_keeps_the_old_positional_form() -> None:
    base = [2.0, 2.1, 1.9, 2.0, 2.05, 1.95, 2.0]
    cand = [1.0, 1.05, 0.95, 1.0, 1.02, 0.98, 1.0]
    c = Comparison.from_samples(base, cand, 10)
    assert c.verdict == "faster" and c.significant and c.number == 10
    d = c.to_dict()
    assert d["baseline_median_s"] == 2.0 and d["candidate_median_s"] == 1.0
    assert set(d) >= SCHEMA_KEYS
    old = compare(busy(10), busy(10), repeats=3, target_s=0.002, memory=False)
    assert old.number >= 1
    with pytest.raises(ConfigurationError, match="timer='cpu' needs"):
        Comparison.from_samples(base, cand, 10, timer="cpu")
    with pytest.raises(ConfigurationError, match="timer"):
        Comparison.from_samples(base, cand, 10, timer="gpu")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"repeats": 2}, ConfigurationError, "repeats must be >= 3, got 2"),
        ({"repeats": 5.0}, InputTypeError, "repeats must be an int"),
        ({"repeats": True}, InputTypeError, "repeats"),
        ({"min_time": 0}, ConfigurationError, "min_time must be > 0"),
        ({"min_time": "1"}, InputTypeError, "min_time"),
        ({"number": 0}, ConfigurationError, "number must be >= 1"),
        ({"warmup": -1}, ConfigurationError, "warmup"),
        ({"threshold": -0.1}, ConfigurationError, "threshold"),
        ({"threshold": "5%"}, InputTypeError, "threshold"),
        ({"confidence": 1.0}, ConfigurationError, "confidence"),
        ({"names": ("x", "x")}, ConfigurationError, "names must differ"),
        ({"names": ["x", "y"]}, InputTypeError, "names"),
        ({"setup": 3}, InputTypeError, "setup must be callable"),
        ({"min_time": 0.1, "target_s": 0.1}, ConfigurationError, "target_s"),
        ({"timer": "thread"}, ConfigurationError, "timer must be 'wall' or 'cpu'"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        compare(busy(1), busy(1), **kwargs)


def test_callables_are_checked() -> None:
    with pytest.raises(InputTypeError, match="baseline must be callable"):
        compare(42, busy(1))  # type: ignore[arg-type]

    async def coro() -> None:
        return None

    with pytest.raises(InputTypeError, match="candidate must be a plain callable"):
        compare(busy(1), coro)


def test_compare_from_several_threads() -> None:
    results: list[Comparison] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(compare(busy(50), busy(50), repeats=3, number=20))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 4
    assert all(r.baseline_memory.peak_tracemalloc_bytes is not None for r in results)
    assert not tracemalloc.is_tracing()


def test_machine_info_has_the_cpu_and_report_delegates() -> None:
    m = machine_info()
    assert set(m) >= {"python", "implementation", "platform", "cpus", "cpu_model", "load_avg"}
    assert m["cpus"] >= 1 and len(m["load_avg"]) == 3
    assert set(report_machine_info()) == set(m)
    env = environment_info()
    assert env["build"] == od.build_info() and env["created"].endswith("Z")
    rss, peak = rss_bytes(), peak_rss_bytes()
    assert rss is not None and peak is not None and peak >= rss > 0


def test_add_rows_gives_every_ratio_an_interval() -> None:
    result = SuiteResult("t", VALUE_COLUMNS)
    samples = {
        "overdrive": [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02],
        "peer": [2.0, 2.2, 1.8, 2.1, 1.9, 2.0, 2.05],
    }
    add_rows(result, "case", samples, "overdrive", lambda m: m * 1e9, "ns")
    od_row, peer_row = result.rows
    assert all(set(r) == set(VALUE_COLUMNS) for r in result.rows)
    assert od_row["x_vs_od"] == 1.0 and od_row["ci_low"] == od_row["ci_high"] == ""
    assert peer_row["ci_low"] <= peer_row["x_vs_od"] <= peer_row["ci_high"]
    assert peer_row["ci_low"] > 1.5
    plain = value_row("c", "i", 1.0, "x")
    assert set(plain) == set(VALUE_COLUMNS) and plain["ci_low"] == ""
    assert ratio_ci([], [1.0]) == {"ci_low": "", "ci_high": ""}
