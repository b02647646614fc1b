"""StressRunner: the capacity knee of a simulated server, soak reports."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from overdrive.bench import SLO, StressRunner
from overdrive.exceptions import ConfigurationError, InputTypeError


class SingleServer:
    """A FIFO server of exactly ``capacity`` requests per second.

    Each call reserves the next 1/capacity-second slot of a virtual clock
    and sleeps until its slot ends, so the capacity does not drift with
    sleep overshoot or a loaded machine: below capacity a call takes
    1/capacity s, above it the queue (and the latency) grows linearly.
    """

    def __init__(self, capacity: float) -> None:
        self.slot = 1.0 / capacity
        self.lock = threading.Lock()
        self.next_free = 0.0

    def __call__(self) -> None:
        with self.lock:
            start = max(time.monotonic(), self.next_free)
            self.next_free = start + self.slot
        finish = start + self.slot
        delay = finish - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def test_knee_within_ten_percent_of_a_known_capacity() -> None:
    # Steps 50, 100, 200 (5% over capacity), then bisection: every path
    # ends within 10% of the capacity.
    capacity = 190.0
    runner = StressRunner(SingleServer(capacity), slo=SLO(p99_s=0.1, error_rate=0.01))
    result = runner.find_knee(start_rate=50, factor=2.0, step_duration_s=1.0, tolerance=0.05)
    summary = [(s["rate"], s["broke"], s["retries"]) for s in result.document["steps"]]
    assert abs(result.knee_rate - capacity) <= 0.1 * capacity, summary
    doc = result.to_dict()
    assert doc["kind"] == "stress"
    assert doc["knee_rate"] == result.knee_rate
    assert set(doc["slo"]) == {"p99_s", "error_rate", "min_achieved_fraction"}
    steps = doc["steps"]
    assert [s["rate"] for s in steps][:3] == [50.0, 100.0, 200.0]
    assert any(s["broke"] in ("p99", "achieved") for s in steps)
    for s in steps:
        assert set(s) == {"rate", "ok", "broke", "retries", "load"}
        assert s["ok"] == (s["broke"] is None)
        assert s["load"]["kind"] == "load" and s["load"]["mode"] == "open"


def test_errors_break_the_slo() -> None:
    def failing() -> None:
        raise RuntimeError("down")

    result = StressRunner(failing).find_knee(start_rate=20, step_duration_s=0.3)
    assert result.knee_rate == 0.0
    assert [s["broke"] for s in result.document["steps"]] == ["errors"]


def test_soak_reports_memory_growth_and_thread_spread() -> None:
    kept: list[bytes] = []
    chunk = bytes(range(256)) * 400  # 100 KiB, every page written

    def leaky() -> None:
        kept.append(chunk + b"")
        kept.append(bytes(bytearray(chunk)))
        time.sleep(0.001)

    soak = StressRunner(leaky).soak(100, 2.0, warmup_s=0.2)
    doc = soak.to_dict()
    assert doc["kind"] == "soak"
    assert {"target", "rate", "duration_s", "load", "rss_start_bytes", "rss_end_bytes"} <= set(doc)
    assert {"rss_growth_bytes", "rss_samples", "thread_elapsed_s", "thread_cv"} <= set(doc)
    # ~180 calls after the warm-up keep ~200 KiB each: ~35 MiB.
    assert soak.rss_growth_bytes >= 10 * 2**20
    assert doc["rss_growth_bytes"] == doc["rss_end_bytes"] - doc["rss_start_bytes"]
    assert doc["load"]["sent"] == 200
    assert doc["thread_elapsed_s"] and all(t >= 0.001 for t in doc["thread_elapsed_s"])
    assert doc["thread_cv"] >= 0.0
    kept.clear()

    steady = StressRunner(lambda: time.sleep(0.001)).soak(100, 1.0)
    # A target that keeps nothing grows far less than the leaky one.
    assert steady.rss_growth_bytes < 5 * 2**20


def test_arguments_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="p99_s"):
        SLO(p99_s=0)
    with pytest.raises(ConfigurationError, match="error_rate"):
        SLO(error_rate=2.0)
    with pytest.raises(InputTypeError, match="slo"):
        StressRunner(lambda: None, slo={"p99_s": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="rate"):
        StressRunner(lambda: None, rate=5)
    runner = StressRunner(lambda: None)
    with pytest.raises(ConfigurationError, match="factor"):
        runner.find_knee(factor=1.0)
    with pytest.raises(ConfigurationError, match="max_rate"):
        runner.find_knee(start_rate=100, max_rate=10)
    with pytest.raises(ConfigurationError, match="warmup_s"):
        runner.soak(10, 1.0, warmup_s=2.0)
    with pytest.raises(InputTypeError, match="target"):
        StressRunner(None)  # type: ignore[arg-type]


def test_cli_stress_soak_and_knee(tmp_path: Path) -> None:
    from overdrive.cli import main

    out = tmp_path / "soak.json"
    args = ["stress", "builtins:object", "--soak", "50", "--duration", "0.5", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "soak" and doc["load"]["sent"] == 25
    out = tmp_path / "knee.json"
    args = ["stress", "builtins:object", "--start-rate", "100", "--max-rate", "200"]
    args += ["--step-duration", "0.3", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "stress" and doc["knee_rate"] == 200.0
    with pytest.raises(ConfigurationError, match="target"):
        main(["stress", "not-a-target", "--soak", "1", "--duration", "0.1"])
