"""Every asv benchmark in benches/ sets up and runs once (so history never silently breaks)."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "benches"
FILES = sorted(p for p in BENCH_DIR.glob("*.py") if p.name != "__init__.py")


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"asv_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _smallest_params(cls: type) -> tuple[Any, ...]:
    params = getattr(cls, "params", ())
    if not params:
        return ()
    if not isinstance(params[0], list | tuple):
        params = (params,)
    # the first value of every parameter: benchmarks list sizes smallest first
    return next(itertools.product(*[p[:1] for p in params]))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_asv_benchmarks_run_once(path: Path) -> None:
    module = _load(path)
    ran = 0
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__:
            continue
        methods = [m for m in dir(cls) if m.startswith(("time_", "peakmem_", "track_", "mem_"))]
        if not methods:
            continue
        args = _smallest_params(cls)
        for name in methods:
            obj = cls()
            if hasattr(obj, "setup"):
                obj.setup(*args)
            result = getattr(obj, name)(*args)
            if name.startswith("track_"):
                assert isinstance(result, int | float) and result > 0, (cls.__name__, name)
            if hasattr(obj, "teardown"):
                obj.teardown(*args)
            ran += 1
    assert ran > 0, f"{path.name} defines no benchmarks"
