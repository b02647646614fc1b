"""Bench reports: JSON files under ``reports/`` and rich tables in the terminal.

Five kinds of JSON document are read here (``"kind"``; a document without one but
with ``"suites"`` is a bench run): ``bench`` (``overdrive bench``), ``comparison``
(``compare()``), ``load`` (LoadRunner), ``stress`` and ``soak`` (StressRunner).
:func:`print_report` prints any of them as rich tables, next to a base document of
the same kind when given; :mod:`overdrive.bench.html` writes the same numbers and
plots as one self-contained HTML file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .. import build_info
from ..exceptions import ConfigurationError
from .environment import machine_info as _machine_info
from .suites import SuiteResult

__all__ = [
    "KINDS",
    "document_kind",
    "fmt_number",
    "html_path_for",
    "load_run",
    "machine_info",
    "make_run",
    "print_comparison",
    "print_compare_result",
    "print_load",
    "print_report",
    "print_run",
    "print_soak",
    "print_stress",
    "write_run",
    "write_run_html",
]

#: The document kinds :func:`print_report` and the HTML report understand.
KINDS = ("bench", "comparison", "load", "stress", "soak")


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (:func:`overdrive.bench.environment.machine_info`)."""
    return _machine_info()


def make_run(results: list[SuiteResult], quick: bool) -> dict[str, Any]:
    """The bench-run document for ``results`` (kind ``bench``)."""
    return {
        "kind": "bench",
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


def write_run_html(run: dict[str, Any], json_path: Path) -> Path:
    """Write the HTML page of ``run`` next to its ``json_path`` (same name, ``.html``) and
    as ``latest.html`` there; returns the first. Raises ImportError without matplotlib."""
    from .html import render_html

    page = render_html(run)
    path = html_path_for(json_path)
    path.write_text(page, encoding="utf-8")
    (path.parent / "latest.html").write_text(page, encoding="utf-8")
    return path


def html_path_for(json_path: str | Path) -> Path:
    """Where the HTML report of ``json_path`` goes by default: the same name, ``.html``."""
    p = Path(json_path)
    return p.with_suffix(".html") if p.suffix == ".json" else p.with_name(p.name + ".html")


def load_run(path: str | Path) -> dict[str, Any]:
    """Read a report document (any kind) from ``path``.

    Raises :class:`FileNotFoundError` for a missing file and
    :class:`~overdrive.exceptions.ConfigurationError` (a ``ValueError``) naming the
    file when it is not JSON or not a known kind of document.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{p} is not a JSON report: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{p} is not a JSON report: top level is {type(data).__name__}")
    document_kind(data, name=str(p))
    return data


def document_kind(doc: dict[str, Any], *, name: str = "document") -> str:
    """The kind of ``doc`` (one of :data:`KINDS`).

    Documents without ``"kind"`` (old bench runs, a bare ``Comparison.to_dict()``) are
    recognised by their keys."""
    kind = doc.get("kind")
    if kind is None:
        for key, guess in (
            ("suites", "bench"),
            ("knee_rate", "stress"),
            ("rss_samples", "soak"),
            ("achieved_rate", "load"),
            ("ratio", "comparison"),
        ):
            if key in doc:
                return guess
    if kind not in KINDS:
        raise ConfigurationError(
            f"{name}: kind={kind!r} is not a report kind; expected one of {', '.join(KINDS)}"
        )
    return str(kind)


def fmt_number(v: Any) -> str:
    """A table cell: floats to about three significant digits, the rest as ``str``."""
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if abs(v) < 0.01:
            return f"{v:.3g}"
        return f"{v:.2f}"
    if v is None:
        return "-"
    return str(v)


_fmt = fmt_number


def _env_line(doc: dict[str, Any]) -> str:
    b = doc.get("build") or {}
    m = doc.get("machine") or {}
    rustc = str(b.get("rustc", ""))
    rustc_v = rustc.split(" ")[1] if " " in rustc else "?"
    cpu = f", {m['cpu_model']}" if m.get("cpu_model") else ""
    return (
        f"[bold]overdrive {b.get('version')}[/] {b.get('profile')} build, rustc {rustc_v}, "
        f"zstd {b.get('zstd')}, python {m.get('python')}, {m.get('cpus')} cpus{cpu}; "
        f"created {doc.get('created', '?')}"
    )


def _ci_text(row: dict[str, Any]) -> str:
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        return f"{lo:.2f}-{hi:.2f}"
    return ""


def print_run(run: dict[str, Any], console: Console | None = None) -> None:
    """Print every suite's table (with a 95% CI column when rows carry one) and its goals."""
    console = console or Console()
    console.print(_env_line(run))
    for suite in run.get("suites", []):
        columns = list(suite.get("columns") or ["case", "impl", "x_vs_od"])
        rows = suite.get("rows", [])
        with_ci = any(_ci_text(r) for r in rows) and "ci_low" not in columns
        table = Table(title=f"suite: {suite.get('suite')}", title_justify="left")
        for col in columns:
            table.add_column(col, justify="left" if col in ("case", "impl") else "right")
        if with_ci:
            table.add_column("x_vs_od 95% CI", justify="right")
        for row in rows:
            cells = [_fmt(row.get(c, "")) for c in columns]
            table.add_row(*cells, *([_ci_text(row)] if with_ci else []))
        console.print(table)
        if suite.get("checks"):
            goals = Table(title="goals", title_justify="left")
            for col in ("check", "value", "goal", "met", "detail"):
                goals.add_column(col, justify="right" if col in ("value", "met") else "left")
            for c in suite["checks"]:
                mark = "[green]yes[/]" if c.get("met") else "[red]NO[/]"
                goals.add_row(
                    str(c.get("name")),
                    f"{_fmt(c.get('value'))}{c.get('unit', '')}",
                    str(c.get("goal", "")),
                    mark,
                    str(c.get("detail", "")),
                )
            console.print(goals)
        for note in suite.get("notes", []):
            console.print(f"  [dim]{note}[/]")


def _change(new: Any, old: Any) -> str:
    if isinstance(new, int | float) and isinstance(old, int | float) and old:
        return f"{new / old:.2f}x"
    return "-"


def print_comparison(
    run: dict[str, Any], base: dict[str, Any], console: Console | None = None
) -> None:
    """Goals and ``x_vs_od`` rows of the bench run ``run`` next to the same ones in ``base``."""
    console = console or Console()
    console.print("base: " + _env_line(base))
    old = {
        (s.get("suite"), c.get("name")): c
        for s in base.get("suites", [])
        for c in s.get("checks", [])
    }
    table = Table(title="goals: run vs base", title_justify="left")
    for col in ("suite", "check", "base", "run", "change", "met (base -> run)"):
        table.add_column(col, justify="left" if col in ("suite", "check") else "right")
    for s in run.get("suites", []):
        for c in s.get("checks", []):
            o = old.get((s.get("suite"), c.get("name")))
            met = "[green]yes[/]" if c.get("met") else "[red]NO[/]"
            if o is None:
                table.add_row(
                    str(s.get("suite")), str(c.get("name")), "-", _fmt(c.get("value")), "new", met
                )
                continue
            was = "yes" if o.get("met") else "NO"
            table.add_row(
                str(s.get("suite")),
                str(c.get("name")),
                _fmt(o.get("value")),
                _fmt(c.get("value")),
                _change(c.get("value"), o.get("value")),
                f"{was} -> {met}",
            )
    console.print(table)
    old_rows = {
        (s.get("suite"), r.get("case"), r.get("impl")): r
        for s in base.get("suites", [])
        for r in s.get("rows", [])
    }
    rows = Table(title="x_vs_od: run vs base", title_justify="left")
    for col in ("suite", "case", "impl", "base", "run", "change"):
        rows.add_column(col, justify="left" if col in ("suite", "case", "impl") else "right")
    for s in run.get("suites", []):
        for r in s.get("rows", []):
            o = old_rows.get((s.get("suite"), r.get("case"), r.get("impl")))
            new, prev = r.get("x_vs_od"), (o or {}).get("x_vs_od")
            if new is None:
                continue
            rows.add_row(
                str(s.get("suite")),
                str(r.get("case")),
                str(r.get("impl")),
                _fmt(prev),
                _fmt(new) + (f" [{_ci_text(r)}]" if _ci_text(r) else ""),
                _change(new, prev) if o else "new",
            )
    console.print(rows)


def _secs(v: Any) -> str:
    from .plots import fmt_seconds

    return fmt_seconds(v)


def _bytes(v: Any) -> str:
    from .plots import fmt_bytes

    return fmt_bytes(v)


def print_compare_result(
    doc: dict[str, Any], base: dict[str, Any] | None = None, console: Console | None = None
) -> None:
    """A ``compare()`` result: verdict, ratio with interval, and both sides' numbers."""
    console = console or Console()
    console.print(_env_line(doc))
    table = Table(title="comparison", title_justify="left")
    for col in ("", "ratio", "95% CI", "p-value", "threshold", "verdict"):
        table.add_column(col, justify="left" if col in ("", "verdict") else "right")
    for name, d in (("base", base), ("this run", doc)):
        if d is None:
            continue
        table.add_row(
            name,
            f"{_fmt(d.get('ratio'))}x",
            f"{_fmt(d.get('ci_low'))}-{_fmt(d.get('ci_high'))}",
            f"{d['p_value']:.2g}" if isinstance(d.get("p_value"), int | float) else "-",
            f"{d['threshold']:.0%}" if isinstance(d.get("threshold"), int | float) else "-",
            str(d.get("verdict", "significant" if d.get("significant") else "-")),
        )
    console.print(table)
    sides = Table(title="samples (per call)", title_justify="left")
    for col in ("", "median wall", "median CPU", "samples", "peak tracemalloc", "peak RSS"):
        sides.add_column(col, justify="left" if not col else "right")
    for key, label in (("baseline", "baseline_name"), ("candidate", "candidate_name")):
        side = doc.get(key) or {}
        cpu = sorted(x for x in side.get("cpu_times_s") or [] if isinstance(x, int | float))
        sides.add_row(
            f"{key}: {doc.get(label, '')}",
            _secs(side.get("median_s")),
            _secs(cpu[len(cpu) // 2]) if cpu else "-",
            str(len(side.get("times_s") or [])),
            _bytes(side.get("peak_tracemalloc_bytes")),
            _bytes(side.get("peak_rss_bytes")),
        )
    console.print(sides)


PERCENTILES = ("p50", "p90", "p99", "p999", "max", "mean")


def _load_summary(doc: dict[str, Any]) -> list[tuple[str, str]]:
    mode = str(doc.get("mode", "?"))
    label = "open loop" if mode == "open" else "closed loop" if mode == "closed" else mode
    rate = doc.get("offered_rate")
    return [
        ("target", str(doc.get("target", "?"))),
        ("mode", label),
        ("offered rate", f"{_fmt(rate)} /s" if rate is not None else "-"),
        ("concurrency", _fmt(doc.get("concurrency"))),
        ("duration", _secs(doc.get("duration_s"))),
        ("sent", _fmt(doc.get("sent"))),
        ("completed", _fmt(doc.get("completed"))),
        ("errors", _fmt(doc.get("errors"))),
        ("missed (never sent)", _fmt(doc.get("missed"))),
        ("achieved rate", f"{_fmt(doc.get('achieved_rate'))} /s"),
    ]


def print_load(
    doc: dict[str, Any], base: dict[str, Any] | None = None, console: Console | None = None
) -> None:
    """A load run: summary, and latency / service time / schedule lag percentiles."""
    console = console or Console()
    console.print(_env_line(doc))
    summary = Table(title="load run", title_justify="left")
    summary.add_column("")
    if base is not None:
        summary.add_column("base", justify="right")
    summary.add_column("this run", justify="right")
    old = dict(_load_summary(base)) if base is not None else {}
    for key, value in _load_summary(doc):
        summary.add_row(key, *([old.get(key, "-")] if base is not None else []), value)
    console.print(summary)
    pct = Table(title="percentiles", title_justify="left")
    pct.add_column("")
    for p in PERCENTILES:
        pct.add_column(p, justify="right")
    for key, label in (
        ("latency", "latency"),
        ("service_time", "service time"),
        ("schedule_lag", "schedule lag"),
    ):
        for name, d in (("base ", base), ("", doc)):
            if d is None or not isinstance(d.get(key), dict):
                continue
            pct.add_row(f"{name}{label}", *(_secs(d[key].get(p)) for p in PERCENTILES))
    console.print(pct)
    for w in doc.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {w}")


def print_stress(doc: dict[str, Any], console: Console | None = None) -> None:
    """A stress ramp: each step's offered and achieved rate, p99, errors; the knee."""
    console = console or Console()
    console.print(_env_line(doc))
    slo = doc.get("slo") or {}
    console.print(
        f"target {doc.get('target')}; SLO: p99 <= {_secs(slo.get('p99_s'))}, "
        f"errors <= {_fmt(slo.get('error_rate'))}, achieved >= "
        f"{_fmt(slo.get('min_achieved_fraction'))} of offered"
    )
    table = Table(title="stress steps", title_justify="left")
    for col in ("offered /s", "achieved /s", "p50", "p99", "errors", "ok", "broke"):
        table.add_column(col, justify="right")
    for step in doc.get("steps") or []:
        load = step.get("load") or {}
        lat = load.get("latency") or {}
        table.add_row(
            _fmt(step.get("rate")),
            _fmt(load.get("achieved_rate")),
            _secs(lat.get("p50")),
            _secs(lat.get("p99")),
            _fmt(load.get("errors")),
            "[green]yes[/]" if step.get("ok") else "[red]NO[/]",
            str(step.get("broke") or ""),
        )
    console.print(table)
    console.print(f"[bold]knee: {_fmt(doc.get('knee_rate'))} requests/s[/]")


def print_soak(doc: dict[str, Any], console: Console | None = None) -> None:
    """A soak: memory growth and thread timing spread, then its load run."""
    console = console or Console()
    table = Table(title="soak", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    cv = doc.get("thread_cv")
    rows = [
        ("target", str(doc.get("target"))),
        ("rate", f"{_fmt(doc.get('rate'))} /s"),
        ("duration", _secs(doc.get("duration_s"))),
        ("RSS at start", _bytes(doc.get("rss_start_bytes"))),
        ("RSS at end", _bytes(doc.get("rss_end_bytes"))),
        ("RSS growth", _bytes(doc.get("rss_growth_bytes"))),
        ("threads", str(len(doc.get("thread_elapsed_s") or []))),
        ("thread time CV (goal < 20%)", f"{cv:.1%}" if isinstance(cv, int | float) else "-"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(_env_line(doc))
    console.print(table)
    if isinstance(doc.get("load"), dict):
        print_load(doc["load"], console=console)


def print_report(
    run: dict[str, Any], base: dict[str, Any] | None = None, console: Console | None = None
) -> None:
    """Print any report document as rich tables; ``base`` (same kind) side by side.

    Raises :class:`~overdrive.exceptions.ConfigurationError` when ``base`` is of
    another kind than ``run``.
    """
    console = console or Console()
    kind = document_kind(run, name="run")
    if base is not None and document_kind(base, name="base") != kind:
        raise ConfigurationError(
            f"base is a {document_kind(base)} document but run is a {kind} document; "
            "compare documents of the same kind"
        )
    if kind == "bench":
        print_run(run, console)
        if base is not None:
            print_comparison(run, base, console)
    elif kind == "comparison":
        print_compare_result(run, base, console)
    elif kind == "load":
        print_load(run, base, console)
    elif kind == "stress":
        print_stress(run, console)
        if base is not None:
            console.print("[bold]base:[/]")
            print_stress(base, console)
    else:
        print_soak(run, console)
        if base is not None:
            console.print("[bold]base:[/]")
            print_soak(base, console)
