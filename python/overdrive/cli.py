"""The ``overdrive`` command line (also ``python -m overdrive``).

overdrive bench [--quick] [--suite NAME ...] [--out DIR] [--list]
overdrive report RUN.json [BASE.json] [--html OUT | --no-html]
overdrive telemetry export-rules [--out FILE] [--cost-target X] [--window 5m] [--for 5m]
overdrive telemetry export-dashboard [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from .bench import SUITES, BenchConfig, load_suite
    from .bench.report import make_run, print_run, write_run, write_run_html

    console = Console()
    if args.list:
        for name in SUITES:
            console.print(name)
        return 0
    names = args.suite or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        console.print(f"[red]unknown suite(s): {', '.join(unknown)}; known: {', '.join(SUITES)}[/]")
        return 2
    config = BenchConfig.make(args.quick)
    results = []
    for name in names:
        console.print(f"[bold]running suite {name}[/] ({'quick' if args.quick else 'full'})")
        results.append(load_suite(name).run(config))
    run = make_run(results, args.quick)
    print_run(run, console)
    path = write_run(run, Path(args.out))
    console.print(f"report written to {path}")
    try:
        html_path = write_run_html(run, path)
    except ImportError as exc:  # the run is saved; only the HTML page is missing
        console.print(f"[yellow]no HTML report: {escape(str(exc))}[/]")
        return 0
    console.print(f"HTML report written to {html_path} (and latest.html)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from .bench.report import html_path_for, load_run, print_report

    console = Console()
    try:
        run = load_run(args.run)
        base = load_run(args.base) if args.base else None
        print_report(run, base, console)
    except (OSError, ValueError) as exc:
        console.print(f"[red]overdrive report: {escape(str(exc))}[/]")
        return 2
    if args.no_html:
        return 0
    out = Path(args.html) if args.html else html_path_for(args.run)
    try:
        from .bench.html import write_html

        write_html(run, out, base)
    except ImportError as exc:
        console.print(
            f"[red]overdrive report: {escape(str(exc))}[/] (or pass --no-html for tables only)"
        )
        return 3
    console.print(f"HTML report written to {out}")
    return 0


def _write(text: str, out: str | None) -> int:
    if out is None or out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")
        print(f"written to {out}", file=sys.stderr)
    return 0


def _export_rules(args: argparse.Namespace) -> int:
    from .telemetry.rules import prometheus_rules_yaml

    text = prometheus_rules_yaml(
        hit_rate=args.hit_rate,
        p95_s=args.p95_ms / 1000.0,
        error_rate_max=args.error_rate,
        cost_target=None if args.cost_target < 0 else args.cost_target,
        window=args.window,
        for_=args.for_,
    )
    return _write(text, args.out)


def _export_dashboard(args: argparse.Namespace) -> int:
    from .telemetry.rules import dashboard_json

    return _write(dashboard_json(), args.out)


def _add_telemetry(sub: Any) -> None:
    tele = sub.add_parser("telemetry", help="Prometheus alerting rules and a Grafana dashboard")
    tsub = tele.add_subparsers(dest="telemetry_command", required=True)
    rules = tsub.add_parser(
        "export-rules", help="write Prometheus alerting rules (YAML) for the exported metrics"
    )
    rules.add_argument("--out", help="file to write (default: standard output)")
    rules.add_argument("--hit-rate", type=float, default=0.6, help="cache hit rate floor (0.6)")
    rules.add_argument("--p95-ms", type=float, default=200.0, help="p95 latency ceiling (200)")
    rules.add_argument("--error-rate", type=float, default=0.01, help="error rate ceiling (0.01)")
    rules.add_argument(
        "--cost-target",
        type=float,
        default=0.01,
        help="cost per request ceiling, in your prices' currency (0.01; negative: no rule)",
    )
    rules.add_argument("--window", metavar="DURATION", default="5m", help="rate() window (5m)")
    rules.add_argument(
        "--for", dest="for_", metavar="DURATION", default="5m", help="how long before firing (5m)"
    )
    rules.set_defaults(func=_export_rules)
    dash = tsub.add_parser(
        "export-dashboard", help="write a Grafana dashboard (JSON) for the exported metrics"
    )
    dash.add_argument("--out", help="file to write (default: standard output)")
    dash.set_defaults(func=_export_dashboard)


def main(argv: Sequence[str] | None = None) -> int:
    from .bench import load_cli

    parser = argparse.ArgumentParser(prog="overdrive", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="run benchmark suites side by side with peers")
    bench.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    bench.add_argument("--suite", action="append", help="a suite to run (repeatable); default all")
    bench.add_argument(
        "--out", default="reports", help="directory for the JSON and HTML reports (reports)"
    )
    bench.add_argument("--list", action="store_true", help="list the suites and exit")
    bench.set_defaults(func=_bench)
    report = sub.add_parser(
        "report",
        help="print a saved run (bench, comparison, load, stress or soak JSON) as tables and "
        "write an HTML report with plots, optionally against a base run of the same kind",
    )
    report.add_argument("run", help="a JSON report (bench-*.json, a compare/load/stress/soak run)")
    report.add_argument("base", nargs="?", help="an earlier run of the same kind to compare with")
    html = report.add_mutually_exclusive_group()
    html.add_argument(
        "--html", metavar="OUT", help="where to write the HTML report (default: RUN with .html)"
    )
    html.add_argument("--no-html", action="store_true", help="print the tables only")
    report.set_defaults(func=_report)
    _add_telemetry(sub)
    load_cli.add_parsers(sub)  # overdrive load, overdrive stress
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
