"""Reports: terminal tables and the self-contained HTML page for every kind of result document.

The documents come from ``report_samples`` (shaped like the producers' output); the
pages are checked for their plots, numbers and headings, and for linking nothing
external. ``test_bench_report_chromium.py`` renders pages in a real browser.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import report_samples as samples
from overdrive.bench.html import render_html, write_html
from overdrive.bench.plots import fmt_bytes, fmt_seconds, parse_ci
from overdrive.bench.report import (
    document_kind,
    html_path_for,
    load_run,
    make_run,
    print_report,
    write_run_html,
)
from overdrive.cli import main
from overdrive.exceptions import ConfigurationError
from report_samples import Page, parse_page


def assert_self_contained(text: str, page: Page) -> None:
    assert "<script" not in text
    assert "<link" not in text
    assert "@import" not in text
    # every reference is to an element of the page itself
    assert all(u.startswith("#") for u in page.urls), [u for u in page.urls if u[0] != "#"][:5]
    assert "url(http" not in text
    assert len(page.ids) == len(set(page.ids)), "ids repeat across the inline SVGs"


# --- documents are rendered once per module (matplotlib is the slow part) ---------------


@pytest.fixture(scope="module")
def bench_page() -> str:
    return render_html(samples.bench_run(), samples.bench_run(0.8))


@pytest.fixture(scope="module")
def load_page() -> str:
    return render_html(samples.load_run(), samples.load_run(slow=1.5, stall=0.0, seed=9))


def test_bench_page_with_base_has_every_plot_and_table(bench_page: str) -> None:
    page = parse_page(bench_page)
    assert_self_contained(bench_page, page)
    assert page.plots == [
        "ratios-pools",
        "before-after-rows-pools",
        "before-after-goals-pools",
        "ratios-compression",
        "before-after-rows-compression",
        "before-after-goals-compression",
    ]
    assert page.svgs == 6
    assert "overdrive benchmark run vs base" in page.headings
    for heading in ("Suite: pools", "Goals (pools)", "Before/after: base vs this run (pools)"):
        assert heading in page.headings
    assert "Environment" in page.headings
    # the numbers are in the tables too, with intervals, met / not met and the change
    assert "4.44-5.15" in bench_page  # a row's CI (4.77 x 0.93 - 4.77 x 1.08)
    assert "2 of 3 goals met" in bench_page
    assert '<span class="unmet">not met</span>' in bench_page
    assert "1.25x" in bench_page  # goal change 4.77 / 3.82
    assert samples.CREATED in bench_page
    assert "Sample CPU @ 2.0GHz" in bench_page


def test_load_page_with_base_overlays_cdfs_and_shows_percentiles(load_page: str) -> None:
    page = parse_page(load_page)
    assert_self_contained(load_page, page)
    assert page.plots == ["latency-cdf", "percentiles", "timeline", "resources"]
    assert page.svgs == 4
    assert "Load: http://127.0.0.1:8080/predict (open loop)" in page.headings
    assert "Over time" in page.headings
    run = samples.load_run()
    # the stall: p99 latency near 1 s while p99 service time stays in milliseconds
    assert fmt_seconds(run["latency"]["p99"]) in load_page
    assert run["latency"]["p99"] > 0.5 > run["service_time"]["p99"]
    assert fmt_seconds(run["service_time"]["p99"]) in load_page
    assert "generator CPU-bound" in load_page  # the run's warning is shown
    # both runs in the CDF plot's legend, with their percentiles
    assert "base run overlaid" in load_page


def test_comparison_page_has_distributions_ratio_and_resources() -> None:
    text = render_html(samples.comparison(), samples.comparison(1.3, 2))
    page = parse_page(text)
    assert_self_contained(text, page)
    assert page.plots == ["ratio", "distributions", "resources"]
    assert "overdrive.compress vs json.dumps + zlib: faster (1.600x" in text
    assert fmt_bytes(48_000) in text and fmt_bytes(61_000_000) in text


def test_stress_and_soak_pages() -> None:
    stress = render_html(samples.stress_run(), samples.stress_run(capacity=600.0))
    page = parse_page(stress)
    assert_self_contained(stress, page)
    assert page.plots == ["stress-steps"]
    assert "capacity knee: 800 requests/s (base: 600 requests/s)" in stress
    assert stress.count('<span class="unmet">broke</span>') == 5
    soak = render_html(samples.soak_run(), samples.soak_run())
    page = parse_page(soak)
    assert_self_contained(soak, page)
    assert page.plots[:2] == ["soak-rss", "soak-threads"]
    assert "soak-latency-cdf" in page.plots and "soak-timeline" in page.plots
    assert "thread time CV" in soak and "base run grey" in soak


def test_missing_optional_keys_still_render() -> None:
    """A closed-loop run without CDF, timeline or schedule lag; an old bench run (no kind,
    no intervals); a comparison without samples: pages with what there is."""
    closed = {
        "kind": "load",
        "mode": "closed",
        "target": "f",
        "concurrency": 8,
        "latency": {"p50": 0.001, "p99": 0.004},
        "service_time": {"p50": 0.001, "p99": 0.004},
        "schedule_lag": None,
    }
    page = parse_page(render_html(closed))
    assert page.plots == ["percentiles"]
    assert "Load: f (closed loop)" in page.headings
    old = samples.bench_run(ci=False)
    del old["kind"]
    for s in old["suites"]:
        for c in s["checks"]:
            c["detail"] = ""
    page = parse_page(render_html(old, old))
    assert page.plots[0] == "ratios-pools"
    bare = {"kind": "comparison", "ratio": 1.2, "ci_low": 1.1, "ci_high": 1.3}
    assert parse_page(render_html(bare)).plots == ["ratio"]
    assert parse_page(render_html({"kind": "stress", "steps": []})).plots == []


def test_document_kinds_and_bad_documents(tmp_path: Path) -> None:
    assert document_kind(samples.load_run(duration=1.0)) == "load"
    assert document_kind({"suites": []}) == "bench"
    assert document_kind({"ratio": 1.2, "ci_low": 1.1, "ci_high": 1.3}) == "comparison"
    assert document_kind({"steps": [], "knee_rate": 10.0}) == "stress"
    with pytest.raises(ConfigurationError, match=r"kind='flame'.*bench, comparison"):
        document_kind({"kind": "flame"})
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match=r"bad\.json.*top level is list"):
        load_run(bad)
    bad.write_text("{nope")
    with pytest.raises(ConfigurationError, match=r"bad\.json is not a JSON report"):
        load_run(bad)
    with pytest.raises(ConfigurationError, match="base is a stress document but run is a load"):
        render_html(samples.load_run(duration=1.0), samples.stress_run())
    with pytest.raises(ConfigurationError, match="base is a soak document"):
        print_report(samples.stress_run(), samples.soak_run(), Console(file=io.StringIO()))


def _printed(doc: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    console = Console(record=True, width=140, file=io.StringIO())
    print_report(doc, base, console)
    return console.export_text()


def test_terminal_tables_for_every_kind() -> None:
    text = _printed(samples.bench_run(), samples.bench_run(0.8))
    assert "suite: pools" in text and "x_vs_od 95% CI" in text and "4.44-5.15" in text
    assert "goals: run vs base" in text and "1.25x" in text
    text = _printed(samples.comparison(), samples.comparison(1.3, 2))
    assert "1.60x" in text and "1.52-1.66" in text and "faster" in text and "46.9 KiB" in text
    load = samples.load_run()
    text = _printed(load)
    assert "open loop" in text and fmt_seconds(load["latency"]["p99"]) in text
    assert "schedule lag" in text and "generator CPU-bound" in text
    text = _printed(samples.stress_run())
    assert "knee: 800 requests/s" in text and "p99" in text
    soak = samples.soak_run()
    text = _printed(soak)
    assert fmt_bytes(soak["rss_growth_bytes"]) in text and "thread time CV" in text


def test_formatting_helpers() -> None:
    assert fmt_seconds(0.0012345) == "1.23 ms"
    assert fmt_seconds(0.9996) == "1 s"
    assert fmt_seconds(2.5e-8) == "25 ns"
    assert fmt_seconds(None) == "-"
    assert fmt_bytes(3 * 2**20) == "3.0 MiB"
    assert fmt_bytes(-2048) == "-2.0 KiB"
    assert parse_ci("CI 4.48-5.57, p=3.13e-08") == (4.48, 5.57)
    assert parse_ci("CI 1.2\u20131.4") == (1.2, 1.4)
    assert parse_ci("no interval") is None
    assert parse_ci("CI 4.48-5.57", 5.0) == (4.48, 5.57)
    assert parse_ci("speed-up CI 1.52-2.23", 0.58) is None  # the interval of another number
    assert html_path_for("reports/bench-1.json") == Path("reports/bench-1.html")
    assert html_path_for("run") == Path("run.html")


def test_write_html_and_make_run_kind(tmp_path: Path) -> None:
    out = write_html(samples.stress_run(), tmp_path / "sub" / "stress.html")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert make_run([], quick=True)["kind"] == "bench"
    run = samples.bench_run(ci=False)
    path = write_run_html(run, tmp_path / "bench-20261203T173000Z.json")
    assert path == tmp_path / "bench-20261203T173000Z.html"
    assert (tmp_path / "latest.html").read_text(encoding="utf-8") == path.read_text(
        encoding="utf-8"
    )


def test_cli_report_writes_html_next_to_the_run(tmp_path: Path) -> None:
    run, base = tmp_path / "stress.json", tmp_path / "stress-base.json"
    run.write_text(json.dumps(samples.stress_run()))
    base.write_text(json.dumps(samples.stress_run(capacity=600.0)))
    assert main(["report", str(run), str(base)]) == 0
    page = parse_page((tmp_path / "stress.html").read_text(encoding="utf-8"))
    assert page.plots == ["stress-steps"]
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(run), "--html", str(out)]) == 0
    assert out.exists()
    (tmp_path / "stress.html").unlink()
    assert main(["report", str(run), "--no-html"]) == 0
    assert not (tmp_path / "stress.html").exists()
    soak = tmp_path / "soak.json"
    soak.write_text(json.dumps(samples.soak_run()))
    assert main(["report", str(run), str(soak), "--no-html"]) == 2  # kinds differ
    assert main(["report", str(tmp_path / "missing.json")]) == 2


def test_cli_report_without_matplotlib_says_how_to_install(tmp_path: Path) -> None:
    run = tmp_path / "stress.json"
    run.write_text(json.dumps(samples.stress_run()))
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # what a missing package looks like
        "from overdrive.cli import main\n"
        f"sys.exit(main(['report', {str(run)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "pip install 'overdrive[bench]'" in out
    assert "knee: 800 requests/s" in out  # the tables were still printed
    assert not (tmp_path / "stress.html").exists()


def test_import_overdrive_does_not_import_matplotlib() -> None:
    code = (
        "import sys, overdrive, overdrive.bench, overdrive.bench.report, overdrive.bench.html, "
        "overdrive.bench.plots, overdrive.cli\n"
        "print('matplotlib' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.strip() == "False"


def test_cli_bench_writes_html_next_to_its_json(tmp_path: Path) -> None:
    assert main(["bench", "--quick", "--suite", "pools", "--out", str(tmp_path)]) == 0
    stamped = sorted(tmp_path.glob("bench-*.json"))
    assert len(stamped) == 1
    html_file = stamped[0].with_suffix(".html")
    page = parse_page(html_file.read_text(encoding="utf-8"))
    assert page.plots == ["ratios-pools"]
    assert "Goals (pools)" in page.headings
    assert (tmp_path / "latest.html").read_text(encoding="utf-8") == html_file.read_text(
        encoding="utf-8"
    )
    assert re.search(r"\d+ of \d+ goals met across 1 suite", html_file.read_text())
