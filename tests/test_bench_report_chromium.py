"""The HTML report in a real browser: headless Chromium (Debian package ``chromium``).

``overdrive report`` writes a bench run against a base and a load run against a base;
Chromium loads each page from disk, dumps its DOM (the plots and headings must be
there after parsing) and takes a 1280 px wide screenshot, which must show the plots'
colours, dark text and plenty of non-white pixels. Chromium missing is a failure, not
a skip: ``make test`` installs it through ``scripts/system-deps.sh``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import report_samples as samples
from overdrive.bench.plots import BASE_COLOR, GOOD, RUN_COLOR
from overdrive.cli import main
from report_samples import parse_page

WIDTH, HEIGHT = 1280, 4000


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed (Debian package chromium): run `make test` "
            "or scripts/system-deps.sh"
        )
    return path


def _browse(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"chromium-profile-{page.stem}-{len(args)}"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # running as root (CI containers) needs it
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _screenshot(page: Path, tmp_path: Path) -> np.ndarray:
    png = tmp_path / f"{page.stem}.png"
    _browse(page, tmp_path, f"--screenshot={png}", f"--window-size={WIDTH},{HEIGHT}")
    assert png.exists(), f"chromium wrote no screenshot for {page}"
    pixels = np.asarray(imread(png))[:, :, :3]  # floats in [0, 1]
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    return pixels


def _near(pixels: np.ndarray, hex_color: str, tol: float = 0.08) -> int:
    """How many pixels have (about) this colour."""
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(pixels - rgb).max(axis=2) < tol).sum())


def _check_not_blank(pixels: np.ndarray) -> None:
    non_white = (pixels < 0.94).any(axis=2).mean()
    assert non_white > 0.06, f"only {non_white:.1%} of the page is not white"
    assert pixels.std() > 0.1
    dark = (pixels.max(axis=2) < 0.25).sum()  # text, axes, lines
    assert dark > 20_000, dark


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``overdrive report RUN BASE`` for a bench run and a load run."""
    out = tmp_path_factory.mktemp("reports")
    written = {}
    for name, run, base in (
        ("bench", samples.bench_run(), samples.bench_run(0.8)),
        ("load", samples.load_run(), samples.load_run(slow=1.5, stall=0.0, seed=9)),
    ):
        (out / f"{name}.json").write_text(json.dumps(run))
        (out / f"{name}-base.json").write_text(json.dumps(base))
        assert main(["report", str(out / f"{name}.json"), str(out / f"{name}-base.json")]) == 0
        written[name] = out / f"{name}.html"
        assert written[name].exists()
    return written


def test_dom_after_parsing_has_the_plots_and_headings(
    pages: dict[str, Path], tmp_path: Path
) -> None:
    bench = parse_page(_browse(pages["bench"], tmp_path, "--dump-dom").stdout)
    assert bench.svgs == 6
    assert bench.plots[:3] == [
        "ratios-pools",
        "before-after-rows-pools",
        "before-after-goals-pools",
    ]
    assert {"Suite: pools", "Suite: compression", "Environment"} <= set(bench.headings)
    load = parse_page(_browse(pages["load"], tmp_path, "--dump-dom").stdout)
    assert load.plots == ["latency-cdf", "percentiles", "timeline", "resources"]
    assert load.svgs == 4
    assert {"Latency", "Over time", "Environment"} <= set(load.headings)
    assert "script" not in bench.tags | load.tags


def test_screenshots_show_the_plots(pages: dict[str, Path], tmp_path: Path) -> None:
    bench = _screenshot(pages["bench"], tmp_path)
    _check_not_blank(bench)
    # bars: green (overdrive faster), blue (this run), grey (the base)
    assert _near(bench, GOOD) > 20_000
    assert _near(bench, RUN_COLOR) > 10_000
    assert _near(bench, BASE_COLOR) > 10_000
    load = _screenshot(pages["load"], tmp_path)
    _check_not_blank(load)
    assert _near(load, RUN_COLOR) > 10_000  # CDF lines, percentile bars
    assert _near(load, BASE_COLOR) > 5_000  # the base run overlaid
    # the first plot starts within the first screen: nothing above it pushes it away
    assert _near(load[:1300], RUN_COLOR) > 1_000
