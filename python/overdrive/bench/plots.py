"""Plots for the HTML report: matplotlib figures rendered to inline SVG.

matplotlib is imported lazily (only when a plot is drawn), so ``import
overdrive`` never needs it. Figures are built with :class:`matplotlib.figure.Figure`
directly (no pyplot, no global figure manager), rendered as SVG with text as
paths (the page looks the same whatever fonts the viewer has), and every SVG
id is prefixed so many plots can live in one HTML file.

Each public function takes one of the JSON documents described in
``overdrive.bench.report`` (or a part of one) and returns ``<svg ...>...</svg>``
markup, or ``None`` when the document has nothing to plot.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MISSING_MATPLOTLIB",
    "bench_base_goals",
    "bench_base_rows",
    "bench_suite_ratios",
    "comparison_distributions",
    "comparison_ratio",
    "comparison_resources",
    "cpu_utilisation",
    "fmt_bytes",
    "fmt_seconds",
    "load_cdf",
    "load_percentile_bars",
    "load_resources",
    "load_timeline",
    "parse_ci",
    "require_matplotlib",
    "soak_rss",
    "soak_threads",
    "stress_steps",
]

#: The message of the ImportError raised when matplotlib is missing.
MISSING_MATPLOTLIB = (
    "HTML reports need matplotlib, which is not installed. Install it with "
    "`pip install 'overdrive[bench]'` (or `pip install matplotlib`)."
)

WIDTH_IN = 12.0  # figure width; the page scales every SVG to its column (<= 1200 px)
BASE_COLOR = "#9aa5b1"
RUN_COLOR = "#1f6fb4"
GOOD = "#2e8540"
BAD = "#c0392b"
OD_COLOR = "#1f6fb4"
PEER_COLOR = "#e08a1e"
PCTS = ("p50", "p90", "p99", "p999", "max")

_ids = itertools.count(1)
P = ParamSpec("P")
R = TypeVar("R")


def require_matplotlib() -> None:
    """Raise :class:`ImportError` with install instructions when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(MISSING_MATPLOTLIB) from exc


# --- formatting -------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    """``v`` as a finite float, or None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _g3(v: float) -> str:
    text = f"{v:.3g}"
    return f"{v:.0f}" if "e" in text else text


def fmt_seconds(s: Any) -> str:
    """A duration in seconds with the unit that fits (``1.23 ms``); ``-`` when missing."""
    v = _num(s)
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0 s"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if a >= scale * 0.9995:
            return f"{_g3(v / scale)} {unit}"
    return f"{_g3(v * 1e9)} ns"


def fmt_bytes(b: Any) -> str:
    """A byte count in KiB/MiB/GiB; ``-`` when missing."""
    v = _num(b)
    if v is None:
        return "-"
    a = abs(v)
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if a >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v:.0f} B"


_CI = re.compile(r"CI\s*([0-9]*\.?[0-9]+)\s*[-\u2013]\s*([0-9]*\.?[0-9]+)")


def parse_ci(detail: Any, value: Any = None) -> tuple[float, float] | None:
    """The ``CI lo-hi`` interval a check's ``detail`` text mentions, if any.

    With ``value``, only an interval that contains it: a detail may state the
    interval of another number (a speed-up next to a time ratio, say)."""
    if not isinstance(detail, str):
        return None
    m = _CI.search(detail)
    if m is None:
        return None
    lo, hi = float(m.group(1)), float(m.group(2))
    if lo > hi:
        return None
    v = _num(value)
    if value is not None and (v is None or not lo <= v <= hi):
        return None
    return lo, hi


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


# --- rendering --------------------------------------------------------------------------


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(
        {
            "svg.fonttype": "path",
            "svg.hashsalt": "overdrive-report",
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
            "axes.labelsize": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.fontsize": 9,
            "legend.framealpha": 0.9,
        }
    ):
        yield


def _figure(height_in: float) -> Figure:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH_IN, max(2.0, height_in)), layout="constrained")


def _svg(fig: Figure, label: str) -> str:
    """``fig`` as inline SVG markup with ids made unique in the page."""
    buf = io.StringIO()
    with _style():
        fig.savefig(buf, format="svg")
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    p = f"p{next(_ids)}-"
    text = re.sub(r'\bid="([^"]+)"', rf'id="{p}\1"', text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{p}\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{p}\1)", text)
    safe = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return text.replace("<svg ", f'<svg class="plot" role="img" aria-label="{safe}" ', 1)


def _seconds_axis(ax: Axes, axis: str = "x") -> None:
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _pos: fmt_seconds(v))
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(fmt)


def _ratio_axis(ax: Axes, lo: float, hi: float) -> bool:
    """Log x axis for ratios spanning >= 4x, else linear; ticks read ``2x``."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    log = hi / lo >= 4.0
    if log:
        ax.set_xscale("log")
        # 1-2-5 ticks over a few decades; only the powers of ten over many (labels must fit)
        subs = (1.0, 2.0, 5.0) if math.log10(hi / lo) <= 3.2 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
    return log


def _min_span(ax: Axes, values: Sequence[float], span: float) -> None:
    """Y limits around ``values`` at least ``span`` wide, so noise is not blown up to fill
    the axes (a memory plot that looks like growth when it moved a few KiB)."""
    if not values:
        return
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.15, (span - (hi - lo)) / 2, 0.0)
    ax.set_ylim(max(0.0, lo - pad), hi + pad)


def _legend_outside(ax: Axes, **kwargs: Any) -> None:
    """The legend to the right of the axes, where it hides no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def _with_style(fn: Callable[P, R]) -> Callable[P, R]:
    """Build the figure under the report's rc settings (fonts, grid)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        require_matplotlib()
        with _style():
            return fn(*args, **kwargs)

    return wrapper


# --- bench runs -------------------------------------------------------------------------


def _ci_of(row: Mapping[str, Any]) -> tuple[float, float] | None:
    lo, hi = _num(row.get("ci_low")), _num(row.get("ci_high"))
    if lo is None or hi is None or lo > hi or lo <= 0:
        return None
    return lo, hi


def _row_label(row: Mapping[str, Any]) -> str:
    return _wrap(f"{row.get('case', '')} · {row.get('impl', '')}", 52)


def _ratio_limits(values: Sequence[float]) -> tuple[float, float]:
    lo = min([1.0, *values])
    hi = max([1.0, *values])
    return lo, hi


@_with_style
def bench_suite_ratios(suite: Mapping[str, Any]) -> str | None:
    """One bar per row: ``x_vs_od`` from 1.0 (the line) with its 95% interval."""
    rows = [r for r in suite.get("rows", []) if (_num(r.get("x_vs_od")) or 0) > 0]
    if not rows:
        return None
    xs = [float(r["x_vs_od"]) for r in rows]
    cis = [_ci_of(r) for r in rows]
    ends = xs + [c[i] for c in cis if c for i in (0, 1)]
    lo, hi = _ratio_limits(ends)
    fig = _figure(0.34 * len(rows) + 1.3)
    ax = fig.add_subplot()
    log = _ratio_axis(ax, lo, hi)
    colors = []
    for r, x in zip(rows, xs, strict=True):
        if str(r.get("impl", "")).startswith("overdrive"):
            colors.append(OD_COLOR)
        else:
            colors.append(GOOD if x >= 1 else BAD)
    y = list(range(len(rows)))
    ax.barh(y, [x - 1 for x in xs], left=1.0, color=colors, height=0.62)
    for i, (x, ci) in enumerate(zip(xs, cis, strict=True)):
        if ci is not None:
            ax.errorbar(x, i, xerr=[[x - ci[0]], [ci[1] - x]], color="black", capsize=3, lw=1)
        if x == 1.0:
            ax.plot([1.0], [i], marker="D", color=OD_COLOR, ms=5)
        right = max(x, ci[1] if ci else x, 1.0)
        text = f"{_g3(x)}x" + (f"  [{_g3(ci[0])}-{_g3(ci[1])}]" if ci else "")
        ax.text(
            right * (1.04 if log else 1.0) + (0 if log else 0.01 * hi),
            i,
            "  " + text,
            va="center",
            fontsize=9,
        )
    ax.axvline(1.0, color="black", lw=1.2)
    ax.set_yticks(y, [_row_label(r) for r in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlim(lo / 1.25 if log else 0.0, hi * 2.6 if log else hi * 1.3)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("x_vs_od = implementation / overdrive  (> 1: overdrive faster; bars: 95% CI)")
    ax.set_title(f"suite {suite.get('suite', '?')}: each implementation relative to overdrive")
    return _svg(fig, f"suite {suite.get('suite')} ratios")


def _rows_by_key(suite: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(str(r.get("case")), str(r.get("impl"))): r for r in suite.get("rows", [])}


@_with_style
def bench_base_rows(suite: Mapping[str, Any], base_suite: Mapping[str, Any]) -> str | None:
    """Before/after bars of ``x_vs_od`` per row (base grey, run blue) with intervals."""
    old = _rows_by_key(base_suite)
    pairs = []
    for r in suite.get("rows", []):
        x = _num(r.get("x_vs_od"))
        if x is None or x <= 0 or (str(r.get("impl", "")) == "overdrive" and x == 1.0):
            continue
        o = old.get((str(r.get("case")), str(r.get("impl"))))
        ox = _num(o.get("x_vs_od")) if o else None
        pairs.append((r, x, o, ox if ox and ox > 0 else None))
    if not pairs:
        return None
    ends: list[float] = []
    for r, x, o, ox in pairs:
        ends.append(x)
        ends.extend(_ci_of(r) or ())
        if ox is not None and o is not None:
            ends.append(ox)
            ends.extend(_ci_of(o) or ())
    lo, hi = _ratio_limits(ends)
    fig = _figure(0.52 * len(pairs) + 1.5)
    ax = fig.add_subplot()
    log = _ratio_axis(ax, lo, hi)
    h = 0.38
    for i, (r, x, o, ox) in enumerate(pairs):
        for value, row, dy, color in (
            (ox, o, -h / 2, BASE_COLOR),
            (x, r, h / 2, RUN_COLOR),
        ):
            if value is None or row is None:
                continue
            ax.barh(i + dy, value - 1, left=1.0, height=h, color=color)
            ci = _ci_of(row)
            if ci is not None:
                ax.errorbar(
                    value,
                    i + dy,
                    xerr=[[value - ci[0]], [ci[1] - value]],
                    color="black",
                    capsize=2.5,
                    lw=1,
                )
        change = f"  {_g3(ox)}x → {_g3(x)}x" if ox else f"  new: {_g3(x)}x"
        right = max(e for e in (x, ox or x, (_ci_of(r) or (x, x))[1], 1.0))
        ax.text(right * (1.04 if log else 1.0), i, change, va="center", fontsize=9)
    ax.axvline(1.0, color="black", lw=1.2)
    ax.set_yticks(range(len(pairs)), [_row_label(p[0]) for p in pairs], fontsize=9)
    ax.set_ylim(len(pairs) - 0.4, -0.6)
    ax.set_xlim(lo / 1.25 if log else 0.0, hi * 3.0 if log else hi * 1.35)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("x_vs_od = implementation / overdrive  (> 1: overdrive faster; bars: 95% CI)")
    ax.set_title(f"suite {suite.get('suite', '?')}: base run vs this run, per row")
    from matplotlib.patches import Patch

    _legend_outside(
        ax, handles=[Patch(color=BASE_COLOR, label="base"), Patch(color=RUN_COLOR, label="run")]
    )
    return _svg(fig, f"suite {suite.get('suite')} before/after rows")


@_with_style
def bench_base_goals(suite: Mapping[str, Any], base_suite: Mapping[str, Any]) -> str | None:
    """One small panel per goal: the base value and this run's, with ``CI`` when given."""
    old = {str(c.get("name")): c for c in base_suite.get("checks", [])}
    checks = [c for c in suite.get("checks", []) if _num(c.get("value")) is not None]
    if not checks:
        return None
    ncols = 4
    nrows = math.ceil(len(checks) / ncols)
    fig = _figure(2.6 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(checks):
            ax.set_visible(False)
            continue
        c = checks[k]
        o = old.get(str(c.get("name")))
        bars: list[tuple[str, float, tuple[float, float] | None, str]] = []
        ov = _num(o.get("value")) if o else None
        if o is not None and ov is not None:
            bars.append(("base", ov, parse_ci(o.get("detail"), ov), BASE_COLOR))
        bars.append(
            (
                "run",
                float(c["value"]),
                parse_ci(c.get("detail"), c["value"]),
                GOOD if c.get("met") else BAD,
            )
        )
        for j, (_name, v, ci, color) in enumerate(bars):
            ax.bar(j, v, color=color, width=0.6)
            if ci is not None:
                ax.errorbar(
                    j,
                    v,
                    yerr=[[max(0.0, v - ci[0])], [max(0.0, ci[1] - v)]],
                    color="black",
                    capsize=3,
                    lw=1,
                )
            ax.annotate(
                _g3(v),
                (j, max(v, ci[1]) if ci else v),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xticks(range(len(bars)), [b[0] for b in bars])
        ax.set_xlim(-0.7, 1.7)
        top = max(max(b[1], b[2][1] if b[2] else b[1]) for b in bars)
        ax.set_ylim(min(0.0, min(b[1] for b in bars)), top * 1.22 if top > 0 else 1.0)
        unit = str(c.get("unit", ""))
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.set_title(
            _wrap(str(c.get("name", "")), 34) + "\n" + _wrap(f"goal: {c.get('goal', '')}", 40),
            fontsize=9,
        )
        ax.grid(axis="x", visible=False)
    fig.suptitle(
        f"suite {suite.get('suite', '?')}: goals, base vs this run "
        "(green: met, red: not met; bars: CI)",
        fontweight="bold",
    )
    return _svg(fig, f"suite {suite.get('suite')} before/after goals")


# --- comparisons ------------------------------------------------------------------------


def _sub(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``doc[key]`` when it is a mapping, else an empty one (optional keys may be null)."""
    side = doc.get(key)
    return side if isinstance(side, Mapping) else {}


_side = _sub


def _floats(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    out = [_num(v) for v in values]
    return [v for v in out if v is not None]


@_with_style
def comparison_distributions(doc: Mapping[str, Any]) -> str | None:
    """Box plots with every sample (wall time per call) of baseline and candidate."""
    import random

    names = [
        str(doc.get("baseline_name") or "baseline"),
        str(doc.get("candidate_name") or "candidate"),
    ]
    data = [
        _floats(_side(doc, "baseline").get("times_s")),
        _floats(_side(doc, "candidate").get("times_s")),
    ]
    cpu = [
        _floats(_side(doc, "baseline").get("cpu_times_s")),
        _floats(_side(doc, "candidate").get("cpu_times_s")),
    ]
    if not any(data):
        return None
    panels = [("wall time per call", data)]
    if any(cpu):
        panels.append(("CPU time per call", cpu))
    fig = _figure(2.6 * len(panels) + 0.8)
    axes = fig.subplots(len(panels), 1, squeeze=False)
    rng = random.Random(7)
    for (title, series), ax in zip(panels, axes[:, 0], strict=True):
        present = [(n, s) for n, s in zip(names, series, strict=True) if s]
        ax.boxplot(
            [s for _, s in present],
            orientation="horizontal",
            widths=0.5,
            showfliers=False,
            medianprops={"color": "black", "lw": 2},
        )
        for i, (_, s) in enumerate(present, start=1):
            jitter = [i + rng.uniform(-0.18, 0.18) for _ in s]
            ax.scatter(
                s,
                jitter,
                s=14,
                alpha=0.65,
                color=BASE_COLOR if i == 1 and len(present) == 2 else RUN_COLOR,
                edgecolors="#333",
                linewidths=0.4,
                zorder=3,
            )
        ax.set_yticks(range(1, len(present) + 1), [n for n, _ in present])
        ax.set_ylim(len(present) + 0.6, 0.4)
        _seconds_axis(ax, "x")
        ax.set_xlabel(f"{title} (each point: one repeat of {doc.get('number', '?')} calls)")
        ax.set_title(title + ": distribution of samples")
        ax.grid(axis="y", visible=False)
    return _svg(fig, "comparison sample distributions")


@_with_style
def comparison_ratio(doc: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> str | None:
    """The ratio of medians with its 95% interval and the threshold band (and the base's)."""
    entries = []
    if base is not None and _num(base.get("ratio")) is not None:
        entries.append(("base", base))
    if _num(doc.get("ratio")) is None:
        return None
    entries.append(("this run", doc))
    fig = _figure(1.0 + 0.7 * len(entries))
    ax = fig.add_subplot()
    ends: list[float] = []
    for _, d in entries:
        for k in ("ratio", "ci_low", "ci_high"):
            v = _num(d.get(k))
            if v is not None and v > 0:
                ends.append(v)
    thr = _num(doc.get("threshold")) or 0.05
    lo, hi = _ratio_limits([*ends, 1 + thr, 1 / (1 + thr)])
    log = _ratio_axis(ax, lo, hi)
    ax.axvspan(1 / (1 + thr), 1 + thr, color="#ddd", alpha=0.7, label=f"±{thr:.0%} threshold")
    ax.axvline(1.0, color="black", lw=1.2)
    for i, (name, d) in enumerate(entries):
        r = float(d["ratio"])
        clo, chi = _num(d.get("ci_low")), _num(d.get("ci_high"))
        color = BASE_COLOR if name == "base" else (GOOD if r >= 1 else BAD)
        if clo is not None and chi is not None:
            ax.errorbar(
                r, i, xerr=[[r - clo], [chi - r]], fmt="o", color=color, capsize=5, lw=2, ms=8
            )
            extra = f"  [{clo:.3f} - {chi:.3f}]"
        else:
            ax.plot([r], [i], "o", color=color, ms=8)
            extra = ""
        verdict = d.get("verdict", "significant" if d.get("significant") else "not significant")
        p = _num(d.get("p_value"))
        ptext = f", p={p:.2g}" if p is not None else ""
        ax.annotate(
            f"{r:.3f}x{extra} {verdict}{ptext}",
            (chi if chi else r, i),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.set_yticks(range(len(entries)), [e[0] for e in entries])
    ax.set_ylim(len(entries) - 0.4, -0.6)
    ax.set_xlim(
        lo / 1.15 if log else max(0.0, lo - (hi - lo) * 0.3),
        hi * 2.5 if log else hi + (hi - lo) * 1.4,
    )
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("ratio = median baseline time / median candidate time  (> 1: candidate faster)")
    ax.set_title("ratio of medians with 95% bootstrap interval")
    ax.legend(loc="lower right")
    return _svg(fig, "comparison ratio")


@_with_style
def comparison_resources(doc: Mapping[str, Any]) -> str | None:
    """Median wall time, median CPU time and peak memory, baseline next to candidate."""
    import statistics

    names = [
        str(doc.get("baseline_name") or "baseline"),
        str(doc.get("candidate_name") or "candidate"),
    ]
    sides = [_side(doc, "baseline"), _side(doc, "candidate")]

    def med(side: Mapping[str, Any], key: str) -> float | None:
        vals = _floats(side.get(key))
        return statistics.median(vals) if vals else None

    panels: list[tuple[str, str, list[float | None]]] = [
        (
            "median wall time per call",
            "s",
            [_num(s.get("median_s")) or med(s, "times_s") for s in sides],
        ),
        ("median CPU time per call", "s", [med(s, "cpu_times_s") for s in sides]),
        ("peak memory (tracemalloc)", "B", [_num(s.get("peak_tracemalloc_bytes")) for s in sides]),
        ("peak resident memory (RSS)", "B", [_num(s.get("peak_rss_bytes")) for s in sides]),
    ]
    panels = [p for p in panels if any(v is not None for v in p[2])]
    if not panels:
        return None
    fig = _figure(3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for (title, unit, vals), ax in zip(panels, axes[0], strict=True):
        xs = [i for i, v in enumerate(vals) if v is not None]
        heights = [float(v) for v in vals if v is not None]
        peak = max(heights) if heights else 1.0
        if unit == "B":
            scale, label = next(
                (
                    (float(sc), u)
                    for sc, u in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))
                    if peak >= sc
                ),
                (1.0, "B"),
            )
        else:
            scale, label = next(
                ((sc, u) for sc, u in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")) if peak >= sc),
                (1e-9, "ns"),
            )
        ax.bar(
            xs,
            [h / scale for h in heights],
            color=[BASE_COLOR, RUN_COLOR][: len(xs)] if len(xs) == 2 else RUN_COLOR,
            width=0.6,
        )
        for x, h in zip(xs, heights, strict=True):
            text = fmt_bytes(h) if unit == "B" else fmt_seconds(h)
            ax.annotate(
                text,
                (x, h / scale),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=9,
            )
        ax.set_xticks(range(len(names)), [_wrap(n, 18) for n in names], fontsize=9)
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.18)
        ax.grid(axis="x", visible=False)
    return _svg(fig, "comparison wall, CPU and memory")


# --- load runs --------------------------------------------------------------------------


def _cdf(doc: Mapping[str, Any]) -> list[tuple[float, float]]:
    pts = []
    for p in doc.get("cdf") or []:
        if isinstance(p, list | tuple) and len(p) == 2:
            x, f = _num(p[0]), _num(p[1])
            if x is not None and f is not None and x > 0:
                pts.append((x, f))
    return pts


@_with_style
def load_cdf(doc: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> str | None:
    """Latency CDF (log x) and its tail (1 - fraction, log y); the base run overlaid."""
    runs = [("this run", doc, RUN_COLOR)]
    if base is not None:
        runs.insert(0, ("base", base, BASE_COLOR))
    series = [(n, _cdf(d), d, c) for n, d, c in runs]
    series = [s for s in series if s[1]]
    if not series:
        return None
    fig = _figure(4.4)
    ax, tail = fig.subplots(1, 2)
    for name, pts, d, color in series:
        xs, fs = [p[0] for p in pts], [p[1] for p in pts]
        lat = _sub(d, "latency")
        marks = [(k, f, _num(lat.get(k))) for k, f in (("p50", 0.5), ("p99", 0.99))]
        known = ", ".join(f"{k} {fmt_seconds(v)}" for k, _, v in marks if v)
        label = f"{name} ({known})" if known else name
        ax.step(xs, fs, where="post", color=color, lw=2, label=label)
        tx = [x for x, f in zip(xs, fs, strict=True) if f < 1.0]
        tf = [1.0 - f for f in fs if f < 1.0]
        if tx:
            tail.step(tx, tf, where="post", color=color, lw=2, label=name)
        for _key, frac, v in marks:
            if v is not None and v > 0:
                ax.plot([v], [frac], "o", color=color, ms=6, mec="black", mew=0.6)
                tail.plot([v], [1.0 - frac], "o", color=color, ms=6, mec="black", mew=0.6)
    for frac in (0.5, 0.99):
        ax.axhline(frac, color="#888", lw=0.8, ls=":")
        tail.axhline(1.0 - frac, color="#888", lw=0.8, ls=":")
    for a in (ax, tail):
        a.set_xscale("log")
        _seconds_axis(a, "x")
        a.set_xlabel("latency (log scale)")
    ax.legend(loc="lower right", title="dots: p50 and p99", title_fontsize=9)
    tail.legend(loc="upper right")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction of requests at or below")
    ax.set_title("latency CDF")
    tail.set_yscale("log")
    tail.set_ylabel("fraction of requests slower (log)")
    tail.set_title("tail: 1 - CDF")
    return _svg(fig, "latency CDF")


def _timeline(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tl = doc.get("timeline") or []
    return [p for p in tl if isinstance(p, Mapping) and _num(p.get("t")) is not None]


@_with_style
def load_timeline(doc: Mapping[str, Any]) -> str | None:
    """Throughput (and errors) and p50/p99 latency per interval over the run."""
    tl = _timeline(doc)
    if not tl:
        return None
    t = [float(p["t"]) for p in tl]
    fig = _figure(6.0)
    top, bottom = fig.subplots(2, 1, sharex=True)
    thr = [_num(p.get("throughput")) for p in tl]
    top.plot(
        t,
        [v if v is not None else math.nan for v in thr],
        color=RUN_COLOR,
        lw=2,
        marker="o",
        ms=3,
        label="completed / s",
    )
    rate = _num(doc.get("offered_rate"))
    if rate is not None:
        top.axhline(rate, color="black", ls="--", lw=1, label=f"offered {rate:g} / s")
    errs = [_num(p.get("errors")) or 0.0 for p in tl]
    if any(errs):
        widths = [t[0]] + [b - a for a, b in itertools.pairwise(t)]
        top.bar(
            t,
            [e / w if w > 0 else 0 for e, w in zip(errs, widths, strict=True)],
            width=[-0.8 * w for w in widths],
            align="edge",
            color=BAD,
            alpha=0.6,
            label="errors / s",
        )
    top.set_ylabel("requests / s")
    top.set_ylim(bottom=0)
    top.set_title("throughput per interval")
    _legend_outside(top)
    for key, color in (("p50", GOOD), ("p99", BAD)):
        vals = [_num(p.get(key)) for p in tl]
        bottom.plot(
            t,
            [v if v is not None and v > 0 else math.nan for v in vals],
            color=color,
            lw=2,
            marker="o",
            ms=3,
            label=key,
        )
    bottom.set_yscale("log")
    _seconds_axis(bottom, "y")
    bottom.set_ylabel("latency (log scale)")
    bottom.set_xlabel("time since start (s)")
    bottom.set_title("latency percentiles per interval")
    _legend_outside(bottom)
    return _svg(fig, "throughput and percentiles over time")


def cpu_utilisation(tl: Sequence[Mapping[str, Any]]) -> list[float | None]:
    """Per-interval CPU use in % of one core from ``cpu_s`` (cumulative process CPU
    seconds at the end of each interval; per-interval values when not monotonic)."""
    t = [float(p["t"]) for p in tl]
    cpu = [_num(p.get("cpu_s")) for p in tl]
    vals = [c for c in cpu if c is not None]
    cumulative = len(vals) == len(cpu) and all(b >= a for a, b in itertools.pairwise(vals))
    out: list[float | None] = []
    prev_t, prev_c = 0.0, 0.0
    for ti, ci in zip(t, cpu, strict=True):
        dt = ti - prev_t
        if ci is None or dt <= 0:
            out.append(None)
        elif cumulative:
            out.append(100.0 * (ci - prev_c) / dt if prev_t > 0 or len(out) else None)
        else:
            out.append(100.0 * ci / dt)
        prev_t, prev_c = ti, ci if ci is not None else prev_c
    if cumulative and out:
        out[0] = None  # the first sample's start is unknown (CPU used before the run)
    return out


@_with_style
def load_resources(doc: Mapping[str, Any]) -> str | None:
    """Resident memory and CPU use over the run (from the timeline samples)."""
    tl = _timeline(doc)
    if not tl or not any(_num(p.get("rss_bytes")) or _num(p.get("cpu_s")) for p in tl):
        return None
    t = [float(p["t"]) for p in tl]
    fig = _figure(3.4)
    mem, cpu_ax = fig.subplots(1, 2)
    rss = [_num(p.get("rss_bytes")) for p in tl]
    mem.plot(t, [v / 2**20 if v is not None else math.nan for v in rss], color=RUN_COLOR, lw=2)
    mem.set_ylabel("RSS (MiB)")
    mem.set_xlabel("time since start (s)")
    mem.set_title("resident memory")
    _min_span(mem, [v / 2**20 for v in rss if v is not None], 4.0)
    util = cpu_utilisation(tl)
    cpu_ax.plot(
        t,
        [u if u is not None else math.nan for u in util],
        color=PEER_COLOR,
        lw=2,
        marker="o",
        ms=3,
    )
    cpu_ax.set_ylabel("CPU (% of one core)")
    cpu_ax.set_xlabel("time since start (s)")
    cpu_ax.set_title("process CPU use")
    cpu_ax.set_ylim(bottom=0)
    for a in (mem, cpu_ax):
        a.set_xlim(0, max(t) * 1.02 if max(t) > 0 else 1.0)
    return _svg(fig, "memory and CPU over time")


@_with_style
def load_percentile_bars(
    doc: Mapping[str, Any], base: Mapping[str, Any] | None = None
) -> str | None:
    """Latency, service time and schedule lag percentiles (log y); before/after with a base."""
    groups = [
        ("latency", "latency"),
        ("service time", "service_time"),
        ("schedule lag", "schedule_lag"),
    ]
    runs = [("this run", doc, RUN_COLOR)]
    if base is not None:
        runs.insert(0, ("base", base, BASE_COLOR))
    panels = []
    for title, key in groups:
        if any(isinstance(d.get(key), Mapping) for _, d, _ in runs):
            panels.append((title, key))
    if not panels:
        return None
    fig = _figure(3.8)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)
    width = 0.8 / len(runs)
    for (title, key), ax in zip(panels, axes[0], strict=True):
        for j, (name, d, color) in enumerate(runs):
            stats = _sub(d, key)
            vals = [_num(stats.get(p)) for p in PCTS]
            xs = [i + (j - (len(runs) - 1) / 2) * width for i in range(len(PCTS))]
            hs = [v if v is not None and v > 0 else math.nan for v in vals]
            ax.bar(xs, hs, width=width, color=color, label=name)
            for x, v in zip(xs, vals, strict=True):
                if v is not None and v > 0:
                    ax.annotate(
                        fmt_seconds(v),
                        (x, v),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        fontsize=7,
                        rotation=90 if len(runs) > 1 else 0,
                    )
        ax.set_xticks(range(len(PCTS)), list(PCTS))
        ax.set_yscale("log")
        _seconds_axis(ax, "y")
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
        ax.margins(y=0.25)
    axes[0][0].set_ylabel("seconds (log scale)")
    axes[0][0].legend(loc="upper left")
    fig.suptitle(
        "percentiles: latency (from intended send) = schedule lag + service time", fontweight="bold"
    )
    return _svg(fig, "latency, service time and schedule lag percentiles")


# --- stress and soak --------------------------------------------------------------------


def _steps(
    doc: Mapping[str, Any],
) -> tuple[list[float], list[float | None], list[float | None], list[bool]]:
    """A stress document's steps by offered rate: rates, achieved rates, p99s, ok flags."""
    steps = [s for s in doc.get("steps") or [] if _num(s.get("rate")) is not None]
    steps.sort(key=lambda s: float(s["rate"]))
    loads = [_sub(s, "load") for s in steps]
    return (
        [float(s["rate"]) for s in steps],
        [_num(ld.get("achieved_rate")) for ld in loads],
        [_num(_sub(ld, "latency").get("p99")) for ld in loads],
        [bool(s.get("ok")) for s in steps],
    )


@_with_style
def stress_steps(doc: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> str | None:
    """Achieved vs offered rate and p99 per step, the knee marked (the base's in grey)."""
    rates, achieved, p99, ok = _steps(doc)
    if not rates:
        return None
    knee = _num(doc.get("knee_rate"))
    slo = _sub(doc, "slo")
    fig = _figure(4.4)
    left, right = fig.subplots(1, 2)
    b_rates, b_achieved, b_p99, _ = _steps(base) if base is not None else ([], [], [], [])
    b_knee = _num(base.get("knee_rate")) if base is not None else None
    top = max([*rates, *b_rates, *(a for a in [*achieved, *b_achieved] if a is not None)])
    if b_rates:
        left.plot(
            b_rates,
            [a if a is not None else math.nan for a in b_achieved],
            color=BASE_COLOR,
            lw=2,
            marker="s",
            ms=4,
            label="base run",
        )
        right.plot(
            b_rates,
            [v if v is not None and v > 0 else math.nan for v in b_p99],
            color=BASE_COLOR,
            lw=2,
            marker="s",
            ms=4,
            label="base run",
        )
    left.plot(
        [0, top * 1.05], [0, top * 1.05], color="#888", ls=":", lw=1, label="achieved = offered"
    )
    frac = _num(slo.get("min_achieved_fraction"))
    if frac is not None:
        left.plot(
            [0, top * 1.05],
            [0, top * 1.05 * frac],
            color="#bbb",
            ls="--",
            lw=1,
            label=f"SLO floor ({frac:.0%} of offered)",
        )
    left.plot(rates, [a if a is not None else math.nan for a in achieved], color=RUN_COLOR, lw=1.5)
    for r, a, good in zip(rates, achieved, ok, strict=True):
        if a is not None:
            left.plot([r], [a], "o" if good else "X", color=GOOD if good else BAD, ms=8)
    left.set_xlabel("offered rate (requests / s)")
    left.set_ylabel("achieved rate (requests / s)")
    left.set_title("achieved vs offered rate per step")
    right.plot(
        rates, [v if v is not None and v > 0 else math.nan for v in p99], color=RUN_COLOR, lw=1.5
    )
    for r, v, good in zip(rates, p99, ok, strict=True):
        if v is not None and v > 0:
            right.plot([r], [v], "o" if good else "X", color=GOOD if good else BAD, ms=8)
    slo_p99 = _num(slo.get("p99_s"))
    if slo_p99 is not None:
        right.axhline(slo_p99, color=BAD, ls="--", lw=1, label=f"SLO p99 {fmt_seconds(slo_p99)}")
    right.set_yscale("log")
    _seconds_axis(right, "y")
    right.set_xlabel("offered rate (requests / s)")
    right.set_ylabel("p99 latency (log scale)")
    right.set_title("p99 latency per step")
    for a in (left, right):
        if knee is not None:
            a.axvline(knee, color="black", lw=1.5, label=f"knee {knee:,.0f} / s")
        if b_knee is not None:
            a.axvline(
                b_knee, color=BASE_COLOR, lw=1.5, ls="--", label=f"base knee {b_knee:,.0f} / s"
            )
        a.set_xlim(0, top * 1.08)
        a.plot([], [], "o", color=GOOD, label="step met the SLO")
        a.plot([], [], "X", color=BAD, label="step broke the SLO")
        a.legend(loc="upper left", fontsize=8)
    left.set_ylim(0, top * 1.1)
    return _svg(fig, "stress steps and knee")


def _rss_samples(doc: Mapping[str, Any]) -> list[tuple[float, float]]:
    pts = []
    for p in doc.get("rss_samples") or []:
        if isinstance(p, list | tuple) and len(p) == 2:
            t, b = _num(p[0]), _num(p[1])
            if t is not None and b is not None:
                pts.append((t, b))
    return pts


@_with_style
def soak_rss(doc: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> str | None:
    """Resident memory over the soak, with start, end and growth (the base's in grey)."""
    pts = _rss_samples(doc)
    if not pts:
        return None
    fig = _figure(3.6)
    ax = fig.add_subplot()
    old = _rss_samples(base) if base is not None else []
    if old:
        ax.plot(
            [p[0] for p in old],
            [p[1] / 2**20 for p in old],
            color=BASE_COLOR,
            lw=2,
            label="base run",
        )
    ax.plot(
        [p[0] for p in pts],
        [p[1] / 2**20 for p in pts],
        color=RUN_COLOR,
        lw=2,
        label="this run" if old else None,
    )
    start, end = _num(doc.get("rss_start_bytes")), _num(doc.get("rss_end_bytes"))
    if start is not None:
        ax.axhline(start / 2**20, color="#888", ls="--", lw=1, label=f"start {fmt_bytes(start)}")
    growth = _num(doc.get("rss_growth_bytes"))
    if growth is None and start is not None and end is not None:
        growth = end - start
    if growth is not None:
        ax.plot([], [], " ", label=f"growth {fmt_bytes(growth)}")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("resident memory during the soak")
    _min_span(ax, [p[1] / 2**20 for p in pts + old], 8.0)
    _legend_outside(ax)
    return _svg(fig, "soak resident memory")


@_with_style
def soak_threads(doc: Mapping[str, Any]) -> str | None:
    """Each worker thread's elapsed time, with the mean and the coefficient of variation."""
    vals = _floats(doc.get("thread_elapsed_s"))
    if not vals:
        return None
    fig = _figure(3.4)
    ax = fig.add_subplot()
    mean = sum(vals) / len(vals)
    ax.bar(range(len(vals)), vals, color=RUN_COLOR, width=0.7)
    ax.axhline(mean, color="black", lw=1.2, label=f"mean {fmt_seconds(mean)}")
    cv = _num(doc.get("thread_cv"))
    if cv is not None:
        ax.plot([], [], " ", label=f"CV {cv:.1%} (goal < 20%)")
    ax.set_xticks(
        range(len(vals)),
        [str(i) for i in range(len(vals))] if len(vals) <= 40 else [""] * len(vals),
    )
    ax.set_xlabel("thread")
    _seconds_axis(ax, "y")
    ax.set_ylabel("elapsed time in requests")
    ax.set_title("per-thread elapsed time (spread)")
    _legend_outside(ax)
    ax.grid(axis="x", visible=False)
    return _svg(fig, "soak thread time spread")
