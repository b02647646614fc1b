"""Realistic sample documents of every kind the report reads (see the shared JSON formats).

The producers (compare, LoadRunner, StressRunner, ``overdrive bench``) write these
documents; the report tests build their own here so they do not depend on a run.
Numbers are synthetic but shaped like real runs (a lognormal latency body, a stall
in the tail, a knee in a stress ramp, thread times with a small spread).
"""

from __future__ import annotations

import math
import random
from html.parser import HTMLParser
from typing import Any

import overdrive
from overdrive.bench.report import machine_info

CREATED = "2026-12-03T17:30:00Z"


def _header(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "created": CREATED,
        "build": overdrive.build_info(),
        "machine": {**machine_info(), "cpu_model": "Sample CPU @ 2.0GHz"},
    }


def bench_run(scale: float = 1.0, *, ci: bool = True) -> dict[str, Any]:
    """A bench run with two suites; ``scale`` multiplies every speed-up (to make a base)."""

    def row(case: str, impl: str, ns: float, x: float) -> dict[str, Any]:
        r: dict[str, Any] = {"case": case, "impl": impl, "ns/op": ns, "x_vs_od": x}
        if ci and impl != "overdrive":
            r["ci_low"], r["ci_high"] = x * 0.93, x * 1.08
        return r

    pools_rows = [
        row("64 KiB acquire+release", "overdrive", 75.5, 1.0),
        row("64 KiB acquire+release", "Lock + list free list", 360.4, 4.77 * scale),
        row("64 KiB acquire+release", "overdrive (with)", 146.4, 1.94 * scale),
        row("64 KiB acquire+release", "bytearray(65536)", 2950.0, 39.1 * scale),
        row("1 MiB acquire+release", "overdrive", 81.0, 1.0),
        row("1 MiB acquire+release", "Lock + list free list", 352.0, 4.35 * scale),
        row("1 MiB acquire+release", "bytearray(1 MiB)", 61000.0, 753.0 * scale),
    ]
    comp_rows = [
        {
            "case": "json 1 KiB",
            "impl": "overdrive",
            "value": 2100.0,
            "unit": "ns/msg",
            "x_vs_od": 1.0,
        },
        {
            "case": "json 1 KiB",
            "impl": "python-zstandard",
            "value": 2900.0 * scale,
            "unit": "ns/msg",
            "x_vs_od": 1.38 * scale,
            **({"ci_low": 1.30 * scale, "ci_high": 1.47 * scale} if ci else {}),
        },
        {
            "case": "json 1 KiB",
            "impl": "zlib-6",
            "value": 1700.0,
            "unit": "ns/msg",
            "x_vs_od": 0.81,
            **({"ci_low": 0.77, "ci_high": 0.86} if ci else {}),
        },
    ]
    return {
        **_header("bench"),
        "quick": True,
        "suites": [
            {
                "suite": "pools",
                "columns": ["case", "impl", "ns/op", "x_vs_od"],
                "rows": pools_rows,
                "checks": [
                    {
                        "name": "64 KiB vs Lock + list free list",
                        "goal": ">= 2x faster",
                        "value": 4.77 * scale,
                        "met": True,
                        "unit": "x",
                        "detail": f"CI {4.48 * scale:.2f}-{5.57 * scale:.2f}, p=3.13e-08",
                    },
                    {
                        "name": "64 KiB acquire+release",
                        "goal": "<= 150 ns (aim 100)",
                        "value": 75.5 / scale,
                        "met": True,
                        "unit": "ns",
                        "detail": "",
                    },
                ],
                "notes": ["64 KiB: hit_ratio=1.000000, misses=0, high_water=1"],
            },
            {
                "suite": "compression",
                "columns": ["case", "impl", "value", "unit", "x_vs_od"],
                "rows": comp_rows,
                "checks": [
                    {
                        "name": "json 1 KiB vs python-zstandard",
                        "goal": ">= 1.5x faster",
                        "value": 1.38 * scale,
                        "met": 1.38 * scale >= 1.5,
                        "unit": "x",
                        "detail": f"CI {1.30 * scale:.2f}-{1.47 * scale:.2f}",
                    }
                ],
                "notes": [],
            },
        ],
    }


def comparison(ratio: float = 1.6, seed: int = 1) -> dict[str, Any]:
    """A compare() result: candidate ``ratio`` times faster than the baseline."""
    rng = random.Random(seed)
    base_t = [2.0e-6 * rng.lognormvariate(0, 0.05) for _ in range(21)]
    cand_t = [2.0e-6 / ratio * rng.lognormvariate(0, 0.06) for _ in range(19)]
    return {
        **_header("comparison"),
        "baseline_name": "json.dumps + zlib",
        "candidate_name": "overdrive.compress",
        "ratio": ratio,
        "ci_low": ratio * 0.95,
        "ci_high": ratio * 1.04,
        "p_value": 2.4e-7,
        "threshold": 0.05,
        "verdict": "faster" if ratio > 1 else "slower",
        "significant": True,
        "baseline": {
            "median_s": sorted(base_t)[10],
            "times_s": base_t,
            "cpu_times_s": [t * 0.98 for t in base_t],
            "peak_tracemalloc_bytes": 48_000,
            "peak_rss_bytes": 61_000_000,
        },
        "candidate": {
            "median_s": sorted(cand_t)[9],
            "times_s": cand_t,
            "cpu_times_s": [t * 0.97 for t in cand_t],
            "peak_tracemalloc_bytes": 12_000,
            "peak_rss_bytes": 60_500_000,
        },
        "repeats": 21,
        "number": 5000,
    }


def _pcts(values: list[float]) -> dict[str, float]:
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))]

    return {
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": s[-1],
        "mean": sum(s) / len(s),
    }


def load_run(
    *, rate: float = 200.0, duration: float = 10.0, stall: float = 1.0, seed: int = 3, slow=1.0
) -> dict[str, Any]:
    """An open-loop run at ``rate``/s for ``duration`` s with a ``stall`` s pause at 4 s."""
    rng = random.Random(seed)
    service, lag, latency, sends = [], [], [], []
    n = int(rate * duration)
    for i in range(n):
        intended = i / rate
        s = 0.0008 * slow * rng.lognormvariate(0, 0.45)
        stalled = 4.0 <= intended < 4.0 + stall  # queued behind the stall
        lg = 4.0 + stall - intended if stalled else abs(rng.gauss(0, 0.00005))
        service.append(s)
        lag.append(lg)
        latency.append(s + lg)
        sends.append(intended)
    sl = sorted(latency)
    cdf = []
    for k in range(1, 201):
        frac = k / 200
        cdf.append([sl[min(len(sl) - 1, math.ceil(frac * len(sl)) - 1)], frac])
    timeline = []
    cpu = 0.4
    for step in range(1, int(duration) + 1):
        window = [lat for lat, t in zip(latency, sends, strict=True) if step - 1 <= t < step]
        done = len(window) if not (4 <= step - 1 < 4 + stall) else 0
        cpu += 0.18 + rng.uniform(0, 0.03)
        p = _pcts(window)
        timeline.append(
            {
                "t": float(step),
                "sent": len(window),
                "completed": done if done else len(window) // 4,
                "errors": 3 if step == 7 else 0,
                "throughput": float(done if done else len(window) // 4),
                "p50": p["p50"],
                "p99": p["p99"],
                "rss_bytes": 58_000_000 + step * 150_000 + rng.randint(0, 60_000),
                "cpu_s": cpu,
            }
        )
    return {
        **_header("load"),
        "mode": "open",
        "target": "http://127.0.0.1:8080/predict",
        "offered_rate": rate,
        "concurrency": None,
        "duration_s": duration,
        "sent": n,
        "completed": n - 3,
        "errors": 3,
        "missed": 0,
        "achieved_rate": (n - 3) / duration,
        "latency": _pcts(latency),
        "service_time": _pcts(service),
        "schedule_lag": _pcts(lag),
        "cdf": cdf,
        "timeline": timeline,
        "warnings": ["generator CPU-bound for 0.2 s at t=4.1 s (12 arrivals sent late)"],
    }


def stress_run(capacity: float = 800.0) -> dict[str, Any]:
    """A ramp that breaks above ``capacity`` and bisects back to the knee."""
    rates = [100.0]
    while rates[-1] <= capacity:  # ramp: double until the SLO breaks
        rates.append(rates[-1] * 2)
    lo, hi = rates[-2], rates[-1]
    for _ in range(4):  # bisect to the knee
        mid = (lo + hi) / 2
        rates.append(mid)
        lo, hi = (mid, hi) if mid <= capacity else (lo, mid)
    steps = []
    for rate in rates:
        over = rate > capacity
        achieved = min(rate, capacity * 0.97) if over else rate * 0.995
        p99 = 0.002 + (0.0 if not over else 0.4 * (rate / capacity - 1) + 0.05)
        doc = {
            "kind": "load",
            "mode": "open",
            "target": f"sim:capacity={capacity:g}",
            "offered_rate": rate,
            "duration_s": 3.0,
            "achieved_rate": achieved,
            "errors": 0,
            "latency": {
                "p50": 0.001,
                "p90": 0.0015,
                "p99": p99,
                "p999": p99 * 1.3,
                "max": p99 * 2,
                "mean": 0.0012,
            },
        }
        broke = None
        if over:
            broke = "p99" if p99 > 0.05 else "achieved"
        steps.append({"rate": rate, "ok": not over, "broke": broke, "load": doc})
    return {
        **_header("stress"),
        "target": f"sim:capacity={capacity:g}",
        "slo": {"p99_s": 0.05, "error_rate": 0.01, "min_achieved_fraction": 0.95},
        "steps": steps,
        "knee_rate": lo,
    }


def soak_run() -> dict[str, Any]:
    """A 60 s soak at 200/s with flat memory and an even thread spread."""
    rng = random.Random(5)
    rss = [[float(t), 60_000_000 + rng.randint(0, 400_000)] for t in range(0, 61, 2)]
    threads = [6.0 * rng.uniform(0.92, 1.08) for _ in range(8)]
    mean = sum(threads) / len(threads)
    cv = math.sqrt(sum((t - mean) ** 2 for t in threads) / len(threads)) / mean
    return {
        **_header("soak"),
        "target": "sim:capacity=800",
        "rate": 200.0,
        "duration_s": 60.0,
        "load": load_run(duration=6.0, stall=0.0),
        "rss_start_bytes": rss[0][1],
        "rss_end_bytes": rss[-1][1],
        "rss_growth_bytes": rss[-1][1] - rss[0][1],
        "rss_samples": rss,
        "thread_elapsed_s": threads,
        "thread_cv": cv,
    }


# --- reading pages -------------------------------------------------------------------


class Page(HTMLParser):
    """What a page holds: plots (figure data-plot names), headings, tags, ids, links."""

    def __init__(self) -> None:
        super().__init__()
        self.plots: list[str] = []
        self.svgs = 0
        self.headings: list[str] = []
        self.tags: set[str] = set()
        self.ids: list[str] = []
        self.urls: list[str] = []
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "figure" and a.get("data-plot"):
            self.plots.append(str(a["data-plot"]))
        if tag == "svg" and a.get("class") == "plot":
            self.svgs += 1
        if a.get("id"):
            self.ids.append(str(a["id"]))
        for key in ("src", "href", "xlink:href"):
            if a.get(key):
                self.urls.append(str(a[key]))
        if tag in ("h1", "h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading.append(data)


def parse_page(text: str) -> Page:
    """Parse an HTML report page."""
    page = Page()
    page.feed(text)
    page.close()
    return page
