"""The resilience benchmark suite runs and states its goals (speed is judged by
the harness, not here)."""

from __future__ import annotations

from overdrive.bench import SUITES, BenchConfig, load_suite


def test_resilience_suite_rows_and_checks() -> None:
    assert "resilience" in SUITES
    result = load_suite("resilience").run(BenchConfig(quick=True, repeats=2))
    cases = {r["case"] for r in result.rows}
    assert {"closed call", "open rejection", "rate try_acquire (admitted)"} <= cases
    impls = {r["impl"] for r in result.rows}
    assert {"pybreaker", "bare call", "aiolimiter.AsyncLimiter"} <= impls
    for row in result.rows:
        assert row["ns/op"] > 0 and row["x_vs_od"] > 0
    names = [c.name for c in result.checks]
    assert any("closed-call overhead" in n for n in names)
    assert any("never serialises" in c.goal for c in result.checks)
