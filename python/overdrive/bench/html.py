"""One self-contained HTML file per report: inline CSS, plots as inline SVG, no scripts.

:func:`render_html` turns any report document (``bench``, ``comparison``,
``load``, ``stress``, ``soak``; see :mod:`overdrive.bench.report`) and an
optional base document of the same kind into a page with the plots of
:mod:`overdrive.bench.plots`, the same numbers as tables, and the environment
(build, machine, creation time) of each document. :func:`write_html` writes it.
The page links nothing external, so it can be mailed, attached to a CI run or
opened from disk.

matplotlib is needed (``pip install 'overdrive[bench]'``); without it both
functions raise :class:`ImportError` saying how to install it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import plots
from .plots import fmt_bytes, fmt_seconds, parse_ci
from .report import PERCENTILES, document_kind, fmt_number

__all__ = ["render_html", "write_html"]

CSS = """
:root { color-scheme: light; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif;
       margin: 0; background: #f5f6f8; color: #1d232a; font-size: 15px; line-height: 1.45; }
main { max-width: 1200px; margin: 0 auto; padding: 20px 24px 60px; background: #fff; }
h1 { font-size: 26px; margin: 4px 0 2px; }
h2 { font-size: 21px; margin: 34px 0 8px; padding-top: 10px; border-top: 2px solid #dfe3e8; }
h3 { font-size: 17px; margin: 22px 0 6px; }
.sub { color: #58636f; margin: 0 0 14px; }
figure { margin: 10px 0 18px; }
figure svg.plot { display: block; width: 100%; height: auto; }
figcaption { color: #58636f; font-size: 13px; margin-top: 2px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border: 1px solid #d5dae0; padding: 3px 9px; vertical-align: top; }
th { background: #eef1f4; text-align: left; }
table.values td:not(:first-child) { text-align: right; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.met, .unmet { color: #fff; padding: 0 6px; white-space: nowrap; border-radius: 3px;
              font-weight: bold; }
.nw { white-space: nowrap; }
.met { background: #2e8540; }
.unmet { background: #c0392b; }
.verdict { font-size: 18px; font-weight: bold; }
.env { display: flex; gap: 18px; flex-wrap: wrap; }
.env table { font-size: 13px; }
ul.notes { color: #58636f; font-size: 13px; }
.warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: 6px 10px; margin: 6px 0; }
"""

TITLES = {
    "bench": "Benchmark run",
    "comparison": "Comparison",
    "load": "Load run",
    "stress": "Stress run",
    "soak": "Soak run",
}


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return f"<td>{'yes' if v else 'no'}</td>"
    if _is_num(v):
        return f'<td class="num">{_e(fmt_number(v))}</td>'
    return f"<td>{_e(fmt_number(v))}</td>"


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    raw: Sequence[int] = (),
    values_right: bool = False,
) -> str:
    """An HTML table; cells whose column index is in ``raw`` are inserted unescaped.
    ``values_right`` right-aligns every column after the first (numbers with units)."""
    out = ['<table class="values">' if values_right else "<table>", "<thead><tr>"]
    out.extend(f"<th>{_e(h)}</th>" for h in headers)
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, v in enumerate(row):
            out.append(f"<td>{v}</td>" if i in raw else _cell(v))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _num_td(text: str) -> str:
    return f'<td class="num">{_e(text)}</td>'


def _figure(svg: str | None, caption: str, name: str) -> str:
    if svg is None:
        return ""
    return (
        f'<figure class="plot" data-plot="{_e(name)}">{svg}'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _with_unit(value: Any, unit: Any) -> str:
    unit = str(unit or "")
    sep = "" if unit in ("x", "%") else " "
    return f"{fmt_number(value)}{sep}{unit}".strip()


def _nowrap(markup: str) -> str:
    return f'<span class="nw">{markup}</span>'


def _badge(met: Any) -> str:
    return '<span class="met">met</span>' if met else '<span class="unmet">not met</span>'


# --- environment ------------------------------------------------------------------------


def _env_table(doc: Mapping[str, Any], label: str) -> str:
    b = doc.get("build") or {}
    m = doc.get("machine") or {}
    load = m.get("load_avg")
    rows: list[tuple[str, Any]] = [
        ("created", doc.get("created", "-")),
        ("overdrive", f"{b.get('version', '?')} ({b.get('profile', '?')} build)"),
        ("rustc", b.get("rustc", "-")),
        ("features", ", ".join(b.get("features") or []) or "-"),
        ("zstd", b.get("zstd", "-")),
        ("target", b.get("target", "-")),
        ("python", f"{m.get('python', '?')} {m.get('implementation', '')}".strip()),
        ("platform", m.get("platform", "-")),
        ("cpus", m.get("cpus", "-")),
        ("cpu model", m.get("cpu_model", "-")),
        (
            "load average",
            ", ".join(f"{x:.2f}" for x in load) if isinstance(load, list) else "-",
        ),
    ]
    if "quick" in doc:
        rows.insert(1, ("mode", "quick" if doc.get("quick") else "full"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<div><h3>{_e(label)}</h3><table>{body}</table></div>"


def _environment(doc: Mapping[str, Any], base: Mapping[str, Any] | None) -> str:
    parts = [_env_table(doc, "this run")]
    if base is not None:
        parts.append(_env_table(base, "base"))
    return (
        '<section id="environment"><h2>Environment</h2>'
        f'<div class="env">{"".join(parts)}</div></section>'
    )


# --- bench runs -------------------------------------------------------------------------


def _ci(row: Mapping[str, Any]) -> str:
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if _is_num(lo) and _is_num(hi):
        return f"{lo:.2f}-{hi:.2f}"
    return ""


def _bench_suite(suite: Mapping[str, Any], base_suite: Mapping[str, Any] | None) -> str:
    name = str(suite.get("suite", "?"))
    out = [f'<section class="suite" id="suite-{_e(name)}"><h2>Suite: {_e(name)}</h2>']
    out.append(
        _figure(
            plots.bench_suite_ratios(suite),
            "x_vs_od per row: implementation time / overdrive time, drawn from the 1.0 line "
            "(the case's reference row, a diamond). Green: overdrive faster (> 1); red: this "
            "implementation faster (< 1); blue: overdrive's own variants (impl named "
            "overdrive ...). Whiskers: 95% bootstrap interval when measured.",
            f"ratios-{name}",
        )
    )
    columns = list(suite.get("columns") or ["case", "impl", "x_vs_od"])
    rows = list(suite.get("rows", []))
    with_ci = any(_ci(r) for r in rows) and "ci_low" not in columns
    headers = columns + (["x_vs_od 95% CI"] if with_ci else [])
    out.append(f"<h3>Measurements ({_e(name)})</h3>")
    out.append(
        _table(
            headers,
            ([r.get(c, "") for c in columns] + ([_ci(r)] if with_ci else []) for r in rows),
        )
    )
    checks = list(suite.get("checks", []))
    if checks:
        out.append(f"<h3>Goals ({_e(name)})</h3>")
        out.append(
            _table(
                ["goal", "target", "value", "met", "detail"],
                (
                    [
                        c.get("name", ""),
                        c.get("goal", ""),
                        _with_unit(c.get("value"), c.get("unit", "")),
                        _badge(c.get("met")),
                        c.get("detail", ""),
                    ]
                    for c in checks
                ),
                raw=(3,),
            )
        )
    notes = suite.get("notes") or []
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    if base_suite is not None:
        out.append(f"<h3>Before/after: base vs this run ({_e(name)})</h3>")
        out.append(
            _figure(
                plots.bench_base_rows(suite, base_suite),
                "x_vs_od of each row in the base run (grey) and this run (blue), with intervals.",
                f"before-after-rows-{name}",
            )
        )
        out.append(
            _figure(
                plots.bench_base_goals(suite, base_suite),
                "Each goal's value in the base run and this run (green: met, red: not met); "
                "whiskers: the CI stated in the goal's detail.",
                f"before-after-goals-{name}",
            )
        )
        old = {str(c.get("name")): c for c in base_suite.get("checks", [])}
        table_rows = []
        for c in checks:
            o = old.get(str(c.get("name")))
            ov, nv = (o or {}).get("value"), c.get("value")
            change = f"{nv / ov:.2f}x" if _is_num(ov) and _is_num(nv) and ov else "-"
            ci_o = parse_ci((o or {}).get("detail"), ov)
            ci_n = parse_ci(c.get("detail"), nv)
            table_rows.append(
                [
                    _e(c.get("name", "")),
                    _e(c.get("goal", "")),
                    _nowrap(
                        _e(fmt_number(ov) if o else "new")
                        + (f" [{ci_o[0]:.2f}-{ci_o[1]:.2f}]" if ci_o else "")
                    ),
                    _nowrap(
                        _e(fmt_number(nv)) + (f" [{ci_n[0]:.2f}-{ci_n[1]:.2f}]" if ci_n else "")
                    ),
                    _e(change),
                    _nowrap((_badge(o.get("met")) if o else "-") + " → " + _badge(c.get("met"))),
                ]
            )
        out.append(
            _table(
                ["goal", "target", "base", "this run", "change", "met"],
                table_rows,
                raw=(0, 1, 2, 3, 4, 5),
            )
        )
    out.append("</section>")
    return "".join(out)


def _bench(doc: Mapping[str, Any], base: Mapping[str, Any] | None) -> str:
    suites = list(doc.get("suites", []))
    old = {str(s.get("suite")): s for s in (base or {}).get("suites", [])}
    checks = [c for s in suites for c in s.get("checks", [])]
    met = sum(1 for c in checks if c.get("met"))
    summary = (
        f'<p class="verdict">{met} of {len(checks)} goals met across {len(suites)} suite(s)</p>'
    )
    goals = _table(
        ["suite", "goals", "met", "not met"],
        (
            [
                s.get("suite", ""),
                len(s.get("checks", [])),
                sum(1 for c in s.get("checks", []) if c.get("met")),
                sum(1 for c in s.get("checks", []) if not c.get("met")),
            ]
            for s in suites
        ),
    )
    body = "".join(
        _bench_suite(s, old.get(str(s.get("suite"))) if base is not None else None) for s in suites
    )
    return f'<section id="summary"><h2>Summary</h2>{summary}{goals}</section>{body}'


# --- comparisons ------------------------------------------------------------------------


def _median(values: Any) -> float | None:
    vals = sorted(v for v in values or [] if _is_num(v))
    if not vals:
        return None
    mid = len(vals) // 2
    return float(vals[mid]) if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _comparison(doc: Mapping[str, Any], base: Mapping[str, Any] | None) -> str:
    ratio = doc.get("ratio")
    verdict = doc.get("verdict") or ("significant" if doc.get("significant") else "no difference")
    head = (
        f'<p class="verdict">{_e(doc.get("candidate_name", "candidate"))} vs '
        f"{_e(doc.get('baseline_name', 'baseline'))}: {_e(verdict)}"
        + (f" ({ratio:.3f}x" if _is_num(ratio) else " (")
        + f", 95% CI {_e(fmt_number(doc.get('ci_low')))}-{_e(fmt_number(doc.get('ci_high')))})"
        + "</p>"
    )
    rows = []
    for name, d in (("base", base), ("this run", doc)):
        if d is None:
            continue
        p = d.get("p_value")
        t = d.get("threshold")
        rows.append(
            [
                name,
                d.get("ratio"),
                d.get("ci_low"),
                d.get("ci_high"),
                f"{p:.3g}" if _is_num(p) else "-",
                f"{t:.0%}" if _is_num(t) else "-",
                d.get("significant", "-"),
                d.get("verdict", "-"),
                d.get("repeats", "-"),
                d.get("number", "-"),
            ]
        )
    table = _table(
        [
            "",
            "ratio",
            "CI low",
            "CI high",
            "p-value",
            "threshold",
            "significant",
            "verdict",
            "repeats",
            "calls/sample",
        ],
        rows,
    )
    sides = []
    for key, label in (("baseline", "baseline_name"), ("candidate", "candidate_name")):
        side = doc.get(key) or {}
        sides.append(
            [
                f"{key}: {doc.get(label, '')}",
                fmt_seconds(side.get("median_s")),
                fmt_seconds(_median(side.get("cpu_times_s"))),
                len(side.get("times_s") or []),
                fmt_bytes(side.get("peak_tracemalloc_bytes")),
                fmt_bytes(side.get("peak_rss_bytes")),
            ]
        )
    side_table = _table(
        [
            "",
            "median wall / call",
            "median CPU / call",
            "samples",
            "peak tracemalloc",
            "peak RSS",
        ],
        sides,
        values_right=True,
    )
    return (
        f'<section id="summary"><h2>Result</h2>{head}{table}</section>'
        '<section id="ratio"><h2>Ratio with confidence interval</h2>'
        + _figure(
            plots.comparison_ratio(doc, base),
            "Ratio of median times (baseline / candidate) and its 95% bootstrap interval; a "
            "speed-up is claimed only when the whole interval clears the threshold band.",
            "ratio",
        )
        + "</section>"
        '<section id="samples"><h2>Sample distributions</h2>'
        + _figure(
            plots.comparison_distributions(doc),
            "Every timed sample (wall and CPU time per call), interleaved A B A B.",
            "distributions",
        )
        + "</section>"
        '<section id="resources"><h2>Time and memory</h2>'
        + _figure(
            plots.comparison_resources(doc),
            "Median wall and CPU time per call; peak traced Python allocations and peak RSS.",
            "resources",
        )
        + side_table
        + "</section>"
    )


# --- load, stress, soak -----------------------------------------------------------------

MAX_TIMELINE_ROWS = 40

LOAD_FIELDS = (
    ("target", "target", str),
    ("mode", "mode", str),
    ("offered rate (/s)", "offered_rate", None),
    ("concurrency", "concurrency", None),
    ("duration", "duration_s", fmt_seconds),
    ("sent", "sent", None),
    ("completed", "completed", None),
    ("errors", "errors", None),
    ("missed (could not be sent)", "missed", None),
    ("achieved rate (/s)", "achieved_rate", None),
)


def _load(doc: Mapping[str, Any], base: Mapping[str, Any] | None, prefix: str = "") -> str:
    mode = doc.get("mode")
    loop = "open loop" if mode == "open" else "closed loop" if mode == "closed" else str(mode)
    out = [
        f'<section id="{prefix}load-summary"><h2>Load: {_e(doc.get("target", "?"))} ({loop})</h2>'
    ]
    for w in doc.get("warnings") or []:
        out.append(f'<div class="warn">warning: {_e(w)}</div>')
    headers = ["", *(["base"] if base is not None else []), "this run"]
    rows = []
    for label, key, conv in LOAD_FIELDS:
        vals = [d.get(key) for d in ([base] if base is not None else []) + [doc]]
        if conv is not None:
            vals = [conv(v) if v is not None else "-" for v in vals]
        rows.append([label, *vals])
    out.append(_table(headers, rows, values_right=True))
    out.append("</section>")
    out.append(f'<section id="{prefix}latency"><h2>Latency</h2>')
    if mode == "open":
        out.append(
            '<p class="sub">Open loop: latency is measured from each request\'s intended send '
            "time, so a stall shows in the percentiles (no coordinated omission); service time "
            "is measured from the actual send and schedule lag is how late the send was.</p>"
        )
    elif mode == "closed":
        out.append(
            '<p class="sub">Closed loop: each user waits for its response before the next '
            "request, so latency is service time and a stall throttles arrivals.</p>"
        )
    out.append(
        _figure(
            plots.load_cdf(doc, base),
            "Latency CDF on a log time axis (left) and its tail, 1 - CDF (right)"
            + ("; base run overlaid in grey." if base is not None else "."),
            f"{prefix}latency-cdf",
        )
    )
    out.append(
        _figure(
            plots.load_percentile_bars(doc, base),
            "Percentiles of latency, service time and schedule lag"
            + (" (base grey, this run blue)." if base is not None else "."),
            f"{prefix}percentiles",
        )
    )
    prow = []
    for key, label in (
        ("latency", "latency"),
        ("service_time", "service time"),
        ("schedule_lag", "schedule lag"),
    ):
        for name, d in (("base ", base), ("", doc)):
            if d is None or not isinstance(d.get(key), Mapping):
                continue
            prow.append([f"{name}{label}", *(fmt_seconds(d[key].get(p)) for p in PERCENTILES)])
    out.append(_table(["", *PERCENTILES], prow, values_right=True))
    out.append("</section>")
    timeline = plots.load_timeline(doc)
    resources = plots.load_resources(doc)
    if timeline or resources:
        out.append(f'<section id="{prefix}timeline"><h2>Over time</h2>')
        out.append(
            _figure(
                timeline,
                "Completed requests per second (offered rate dashed, errors red) and p50/p99 "
                "latency per interval.",
                f"{prefix}timeline",
            )
        )
        out.append(
            _figure(
                resources,
                "Resident memory of the process and its CPU use per interval "
                "(100% = one core busy).",
                f"{prefix}resources",
            )
        )
        tl = [p for p in doc.get("timeline") or [] if _is_num(p.get("t"))]
        util = plots.cpu_utilisation(tl)
        every = max(1, math.ceil(len(tl) / MAX_TIMELINE_ROWS))
        if every > 1:
            out.append(f'<p class="sub">every {every}th of {len(tl)} intervals</p>')
        out.append(
            _table(
                [
                    "t (s)",
                    "sent",
                    "completed",
                    "errors",
                    "throughput /s",
                    "p50",
                    "p99",
                    "RSS",
                    "CPU %",
                ],
                (
                    [
                        p.get("t"),
                        p.get("sent"),
                        p.get("completed"),
                        p.get("errors"),
                        p.get("throughput"),
                        fmt_seconds(p.get("p50")),
                        fmt_seconds(p.get("p99")),
                        fmt_bytes(p.get("rss_bytes")),
                        f"{u:.0f}" if u is not None and math.isfinite(u) else "-",
                    ]
                    for p, u in list(zip(tl, util, strict=True))[::every]
                ),
                values_right=True,
            )
        )
        out.append("</section>")
    return "".join(out)


def _stress(doc: Mapping[str, Any], base: Mapping[str, Any] | None) -> str:
    slo = doc.get("slo") or {}
    knee = doc.get("knee_rate")
    head = (
        f'<p class="verdict">capacity knee: {_e(fmt_number(knee))} requests/s'
        + (
            f" (base: {_e(fmt_number(base.get('knee_rate')))} requests/s)"
            if base is not None
            else ""
        )
        + "</p>"
        f'<p class="sub">target {_e(doc.get("target", "?"))}; SLO: p99 &le; '
        f"{_e(fmt_seconds(slo.get('p99_s')))}, error rate &le; "
        f"{_e(fmt_number(slo.get('error_rate')))}, achieved &ge; "
        f"{_e(fmt_number(slo.get('min_achieved_fraction')))} of offered</p>"
    )
    rows = []
    for i, s in enumerate(doc.get("steps") or [], start=1):
        load = s.get("load") or {}
        lat = load.get("latency") or {}
        rows.append(
            [
                i,
                s.get("rate"),
                load.get("achieved_rate"),
                fmt_seconds(lat.get("p50")),
                fmt_seconds(lat.get("p99")),
                load.get("errors", "-"),
                _badge(s.get("ok")).replace("not met", "broke").replace(">met", ">ok"),
                s.get("broke") or "",
            ]
        )
    table = _table(
        ["step", "offered /s", "achieved /s", "p50", "p99", "errors", "SLO", "broke on"],
        ([_e(fmt_number(c)) if i != 6 else c for i, c in enumerate(r)] for r in rows),
        raw=(0, 1, 2, 3, 4, 5, 6, 7),
        values_right=True,
    )
    return (
        f'<section id="summary"><h2>Capacity</h2>{head}</section>'
        '<section id="steps"><h2>Steps</h2>'
        + _figure(
            plots.stress_steps(doc, base),
            "Each step's achieved rate against the offered rate (left) and its p99 latency "
            "(right); green: within the SLO, red X: broke it; the vertical line is the knee.",
            "stress-steps",
        )
        + table
        + "</section>"
    )


def _soak(doc: Mapping[str, Any], base: Mapping[str, Any] | None) -> str:
    cv = doc.get("thread_cv")
    growth = doc.get("rss_growth_bytes")
    docs = [base, doc] if base is not None else [doc]

    def cv_text(d: Mapping[str, Any]) -> str:
        v = d.get("thread_cv")
        return f"{v:.1%}" if _is_num(v) else "-"

    rows = [
        ["target", *(d.get("target", "-") for d in docs)],
        ["rate (/s)", *(d.get("rate", "-") for d in docs)],
        ["duration", *(fmt_seconds(d.get("duration_s")) for d in docs)],
        ["RSS at start", *(fmt_bytes(d.get("rss_start_bytes")) for d in docs)],
        ["RSS at end", *(fmt_bytes(d.get("rss_end_bytes")) for d in docs)],
        ["RSS growth", *(fmt_bytes(d.get("rss_growth_bytes")) for d in docs)],
        ["threads", *(len(d.get("thread_elapsed_s") or []) for d in docs)],
        ["thread time CV (goal < 20%)", *(cv_text(d) for d in docs)],
    ]
    out = [
        '<section id="summary"><h2>Soak</h2>',
        f'<p class="verdict">memory growth {_e(fmt_bytes(growth))}, thread time CV '
        f"{_e(f'{cv:.1%}' if _is_num(cv) else '-')}</p>",
        _table(
            ["", *(["base", "this run"] if base is not None else ["value"])],
            rows,
            values_right=True,
        ),
        "</section>",
        '<section id="memory"><h2>Memory</h2>',
        _figure(
            plots.soak_rss(doc, base),
            "Resident memory sampled during the soak"
            + (" (base run grey)." if base is not None else "."),
            "soak-rss",
        ),
        "</section>",
        '<section id="threads"><h2>Thread timing</h2>',
        _figure(
            plots.soak_threads(doc),
            "Elapsed time each worker thread spent; the coefficient of variation measures "
            "how evenly work was spread.",
            "soak-threads",
        ),
        "</section>",
    ]
    load = doc.get("load")
    old = base.get("load") if base is not None else None
    if isinstance(load, Mapping):
        out.append(_load(load, old if isinstance(old, Mapping) else None, prefix="soak-"))
    return "".join(out)


# --- the page ---------------------------------------------------------------------------


def render_html(
    run: Mapping[str, Any], base: Mapping[str, Any] | None = None, *, title: str | None = None
) -> str:
    """The report page of ``run`` (any kind) against ``base`` (same kind) as one HTML string.

    Raises :class:`ImportError` (with install instructions) when matplotlib is
    missing, and :class:`~overdrive.exceptions.ConfigurationError` when the
    documents are not reports or are of different kinds.
    """
    from ..exceptions import ConfigurationError

    plots.require_matplotlib()
    kind = document_kind(dict(run), name="run")
    if base is not None and document_kind(dict(base), name="base") != kind:
        raise ConfigurationError(
            f"base is a {document_kind(dict(base))} document but run is a {kind} document; "
            "compare documents of the same kind"
        )
    heading = title or f"overdrive {TITLES[kind].lower()}" + (" vs base" if base else "")
    if kind == "bench":
        body = _bench(run, base)
    elif kind == "comparison":
        body = _comparison(run, base)
    elif kind == "load":
        body = _load(run, base)
    elif kind == "stress":
        body = _stress(run, base)
    else:
        body = _soak(run, base)
    sub = f"created {run.get('created', '?')}" + (
        f"; base created {base.get('created', '?')}" if base is not None else ""
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="overdrive report">'
        f"<title>{_e(heading)}</title><style>{CSS}</style></head>"
        f'<body><main data-kind="{kind}"><h1>{_e(heading)}</h1><p class="sub">{_e(sub)}</p>'
        f"{body}{_environment(run, base)}</main></body></html>\n"
    )


def write_html(
    run: Mapping[str, Any], path: str | Path, base: Mapping[str, Any] | None = None
) -> Path:
    """Render ``run`` (against ``base``) and write the page to ``path``; returns the path."""
    page = render_html(run, base)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
