"""The registry of `overdrive bench` suites, and one cheap suite end to end.

Running every suite, even in quick mode, is `overdrive bench --quick`'s job
(about a minute), not CI's: here each registered module is only imported, and
the cheapest suite (pools) runs through the command line.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from overdrive.bench import SUITES, BenchConfig, SuiteResult, load_suite

# Every component the harness measures (issue #10); the cache suite also
# runs the decorator, Redis (L2) and disk (L3) modules.
COMPONENTS = {
    "compression",
    "batching",
    "pools",
    "balancing",
    "worker_pool",
    "cache",
    "telemetry",
    "resilience",
}
# module -> the function the cache suite's run() calls for its rows
CACHE_PARTS = {
    "cache_decorator": "decorator_rows",
    "cache_redis": "redis_rows",
    "cache_disk": "disk_rows",
}


def test_every_component_has_a_registered_suite() -> None:
    assert set(SUITES) >= COMPONENTS


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_suite_imports_and_has_run(name: str) -> None:
    module = load_suite(name)
    assert module.__name__ == SUITES[name]
    run = module.run
    params = list(inspect.signature(run).parameters)
    assert params == ["config"], (name, params)
    assert inspect.getdoc(module), f"suite {name} has no module docstring"


@pytest.mark.parametrize("part", sorted(CACHE_PARTS))
def test_cache_suite_parts_are_part_of_the_cache_suite(part: str) -> None:
    module = importlib.import_module(f"overdrive.bench.suites.{part}")
    cache = importlib.import_module(SUITES["cache"])
    fn = CACHE_PARTS[part]
    assert callable(getattr(module, fn))
    assert getattr(cache, fn) is getattr(module, fn)
    assert f"{fn}(config, result)" in inspect.getsource(cache.run)


def test_quick_config_is_lighter_than_full() -> None:
    quick, full = BenchConfig.make(True), BenchConfig.make(False)
    assert quick.quick and not full.quick
    assert quick.repeats < full.repeats


def test_cli_quick_suite_end_to_end(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "overdrive", "bench", "--quick", "--suite", "pools"]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "running suite pools (quick)" in done.stdout
    run = json.loads((tmp_path / "latest.json").read_text())
    assert run["quick"] is True
    [suite] = run["suites"]
    assert suite["suite"] == "pools"
    cases: dict[str, list[str]] = {}
    for row in suite["rows"]:
        cases.setdefault(row["case"], []).append(row["impl"])
    assert cases, "no rows"
    # every case puts overdrive beside at least one other way of doing it
    for case, impls in cases.items():
        assert "overdrive" in impls, case
        assert len(impls) >= 2, case
    assert suite["checks"], "no goals checked"
    assert all(isinstance(c["met"], bool) for c in suite["checks"])
    # the suite result round-trips through the dataclass's own dict form
    keys = set(SuiteResult("pools", []).to_dict())
    assert keys <= set(suite)


ROOT = Path(__file__).resolve().parent.parent
# benches/ module -> names of the public API its asv benchmarks must exercise
BENCH_COVERS = {
    "compression": ["od.compress", "compress_many", "dictionary"],
    "batching": ["od.Batcher", "od.MessageBatcher"],
    "pools": ["od.BufferPool", "od.ObjectPool"],
    "balancing": ["od.Balancer", "od.ShardRouter"],
    "worker_pool": ["od.WorkerPool"],
    "cache": ["MemoryTier", "TieredCache", "DiskTier", "cached("],
    "telemetry": ["LatencyHistogram", "timer"],
    "resilience": ["CircuitBreaker", "ConcurrencyLimiter", "RateLimiter"],
}


@pytest.mark.parametrize("module", sorted(BENCH_COVERS))
def test_asv_benches_cover_every_component(module: str) -> None:
    source = (ROOT / "benches" / f"{module}.py").read_text(encoding="utf-8")
    missing = [name for name in BENCH_COVERS[module] if name not in source]
    assert not missing, f"benches/{module}.py never uses {missing}"


def test_asv_conf_builds_the_wheel_in_asv_environments() -> None:
    conf = json.loads((ROOT / "asv.conf.json").read_text(encoding="utf-8"))
    [build] = conf["build_command"]
    assert build.startswith("python -m pip wheel --no-deps -w {build_cache_dir} {build_dir}")
    assert any("{wheel_file}" in cmd for cmd in conf["install_command"])
    assert (ROOT / conf["benchmark_dir"]).is_dir()
    assert conf["html_dir"] == ".asv/html"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "asv run --python=same --quick" in makefile
    assert "$(MAKE) asv-check" in makefile
