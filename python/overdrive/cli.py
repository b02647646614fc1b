"""The ``overdrive`` command line (also ``python -m overdrive``).

overdrive bench [--quick] [--suite NAME ...] [--out DIR] [--list]
overdrive report RUN.json [BASE.json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .bench import SUITES, BenchConfig, load_suite
    from .bench.report import make_run, print_run, write_run

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
    return 0


def _report(args: argparse.Namespace) -> int:
    from .bench.report import load_run, print_comparison, print_run

    run = load_run(args.run)
    print_run(run)
    if args.base:
        print_comparison(run, load_run(args.base))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="overdrive", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="run benchmark suites side by side with peers")
    bench.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    bench.add_argument("--suite", action="append", help="a suite to run (repeatable); default all")
    bench.add_argument("--out", default="reports", help="directory for the JSON report")
    bench.add_argument("--list", action="store_true", help="list the suites and exit")
    bench.set_defaults(func=_bench)
    report = sub.add_parser("report", help="print a saved run, optionally against a base run")
    report.add_argument("run", help="a bench-*.json file")
    report.add_argument("base", nargs="?", help="an earlier run to compare with")
    report.set_defaults(func=_report)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
