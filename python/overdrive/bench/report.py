"""Bench reports: JSON files under ``reports/`` and rich tables in the terminal."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .. import build_info
from .environment import machine_info as _machine_info
from .suites import SuiteResult

__all__ = ["load_run", "machine_info", "print_comparison", "print_run", "write_run"]


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (:func:`overdrive.bench.environment.machine_info`)."""
    return _machine_info()


def make_run(results: list[SuiteResult], quick: bool) -> dict[str, Any]:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": quick,
        "build": build_info(),
        "machine": machine_info(),
        "suites": [r.to_dict() for r in results],
    }


def write_run(run: dict[str, Any], out_dir: Path) -> Path:
    """Write ``run`` as ``bench-<time>.json`` (and ``latest.json``) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = run["created"].replace(":", "").replace("-", "")
    path = out_dir / f"bench-{stamp}.json"
    text = json.dumps(run, indent=2, sort_keys=False)
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path


def load_run(path: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def print_run(run: dict[str, Any], console: Console | None = None) -> None:
    """Print every suite's table and its goals."""
    console = console or Console()
    b = run.get("build", {})
    console.print(
        f"[bold]overdrive {b.get('version')}[/] {b.get('profile')} build, "
        f"rustc {b.get('rustc', '?').split(' ')[1] if ' ' in b.get('rustc', '') else '?'}, "
        f"zstd {b.get('zstd')}, python {run.get('machine', {}).get('python')}, "
        f"{run.get('machine', {}).get('cpus')} cpus"
    )
    for suite in run["suites"]:
        table = Table(title=f"suite: {suite['suite']}", title_justify="left")
        for col in suite["columns"]:
            table.add_column(col, justify="left" if col in ("case", "impl") else "right")
        for row in suite["rows"]:
            table.add_row(*(_fmt(row.get(c, "")) for c in suite["columns"]))
        console.print(table)
        if suite["checks"]:
            goals = Table(title="goals", title_justify="left")
            for col in ("check", "value", "goal", "met"):
                goals.add_column(col, justify="left" if col in ("check", "goal") else "right")
            for c in suite["checks"]:
                mark = "[green]yes[/]" if c["met"] else "[red]NO[/]"
                goals.add_row(c["name"], f"{_fmt(c['value'])}{c.get('unit', '')}", c["goal"], mark)
            console.print(goals)
        for note in suite.get("notes", []):
            console.print(f"  [dim]{note}[/]")


def print_comparison(
    run: dict[str, Any], base: dict[str, Any], console: Console | None = None
) -> None:
    """Goals of ``run`` next to the same goals in ``base``."""
    console = console or Console()
    old = {(s["suite"], c["name"]): c for s in base["suites"] for c in s["checks"]}
    table = Table(title="run vs base", title_justify="left")
    for col in ("suite", "check", "base", "run", "change"):
        table.add_column(col, justify="left" if col in ("suite", "check") else "right")
    for s in run["suites"]:
        for c in s["checks"]:
            o = old.get((s["suite"], c["name"]))
            if o is None:
                table.add_row(s["suite"], c["name"], "-", _fmt(c["value"]), "new")
                continue
            change = c["value"] / o["value"] if o["value"] else float("nan")
            table.add_row(
                s["suite"], c["name"], _fmt(o["value"]), _fmt(c["value"]), f"{change:.2f}x"
            )
    console.print(table)
