"""``overdrive load`` and ``overdrive stress``: the command-line side of
:class:`~overdrive.bench.load.LoadRunner` and :class:`~overdrive.bench.stress.StressRunner`.

A target is an ``http://`` / ``https://`` URL or ``module:function`` (a sync
or async callable taking no arguments).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

__all__ = ["add_parsers", "resolve_target"]


def resolve_target(spec: str) -> Any:
    """An http(s) URL as is; ``module:attr`` imported and returned."""
    if spec.startswith(("http://", "https://")):
        return spec
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        from ..exceptions import ConfigurationError

        raise ConfigurationError(
            f"invalid target={spec!r}: must be an http(s):// URL or module:function"
        )
    obj: Any = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _print_load(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"load ({doc['mode']} loop): {doc['target']}")
    t.add_column("metric")
    for col in ("p50", "p90", "p99", "p999", "max", "mean"):
        t.add_column(col, justify="right")
    for key in ("latency", "service_time", "schedule_lag"):
        s = doc.get(key)
        if s:
            t.add_row(
                key + " (ms)",
                *(f"{s[c] * 1e3:.3f}" for c in ("p50", "p90", "p99", "p999", "max", "mean")),
            )
    console.print(t)
    offered = doc.get("offered_rate")
    console.print(
        f"sent {doc['sent']}  completed {doc['completed']}  errors {doc['errors']}  "
        f"missed {doc['missed']}  achieved {doc['achieved_rate']:.1f}/s"
        + (f" of {offered:.1f}/s offered" if offered else "")
    )
    for w in doc.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")


def _load(args: argparse.Namespace) -> int:
    from .load import LoadRunner

    kwargs: dict[str, Any] = {
        "duration": args.duration,
        "progress": None if not args.no_progress else False,
        "max_workers": args.max_workers,
        "method": args.method,
    }
    if args.concurrency is not None:
        kwargs["concurrency"] = args.concurrency
    else:
        kwargs["rate"] = args.rate
        kwargs["poisson"] = args.poisson
        kwargs["seed"] = args.seed
    result = LoadRunner(resolve_target(args.target), **kwargs).run()
    _print_load(result.document)
    if args.out:
        result.save(args.out)
        print(f"written to {args.out}")
    return 0


def _stress(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .stress import SLO, StressRunner

    console = Console()
    slo = SLO(p99_s=args.p99_ms / 1e3, error_rate=args.error_rate)
    runner = StressRunner(
        resolve_target(args.target),
        slo=slo,
        progress=None if not args.no_progress else False,
        max_workers=args.max_workers,
        method=args.method,
    )
    if args.soak is not None:
        soak = runner.soak(args.soak, args.duration)
        d = soak.document
        console.print(
            f"soak at {args.soak}/s for {args.duration} s: RSS growth "
            f"{d['rss_growth_bytes'] / 2**20:.2f} MiB, thread CV {d['thread_cv']:.1%}, "
            f"p99 {d['load']['latency']['p99'] * 1e3:.2f} ms"
        )
        doc = soak
    else:
        res = runner.find_knee(
            start_rate=args.start_rate,
            factor=args.factor,
            step_duration_s=args.step_duration,
            max_rate=args.max_rate,
            tolerance=args.tolerance,
        )
        for rate, broke, step in res.steps:
            console.print(
                f"{rate:10.1f}/s  {'ok' if broke is None else 'broke: ' + broke:12}  "
                f"p99 {step.p99 * 1e3:8.2f} ms  achieved {step.document['achieved_rate']:.1f}/s"
            )
        console.print(f"[bold]knee: {res.knee_rate:.1f} req/s[/]")
        doc = res  # type: ignore[assignment]
    if args.out:
        doc.save(args.out)
        print(f"written to {args.out}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="an http(s):// URL or module:function")
    p.add_argument("--method", default="GET", help="HTTP method (GET)")
    p.add_argument("--max-workers", type=int, default=1024, help="thread cap for sync targets")
    p.add_argument("--out", help="write the JSON document here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parsers(sub: Any) -> None:
    """Add the ``load`` and ``stress`` subcommands to ``sub`` (argparse subparsers)."""
    load = sub.add_parser("load", help="open-loop (or closed-loop) load against a target")
    _common(load)
    load.add_argument("--rate", type=float, default=100.0, help="arrivals per second (100)")
    load.add_argument("--duration", type=float, default=10.0, help="seconds (10)")
    load.add_argument("--poisson", action="store_true", help="Poisson arrivals")
    load.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals")
    load.add_argument("--concurrency", type=int, help="closed loop with N users instead of a rate")
    load.set_defaults(func=_load)
    stress = sub.add_parser("stress", help="find the capacity knee, or soak at a fixed rate")
    _common(stress)
    stress.add_argument("--p99-ms", type=float, default=100.0, help="SLO: p99 ceiling (100)")
    stress.add_argument("--error-rate", type=float, default=0.01, help="SLO: error rate (0.01)")
    stress.add_argument("--start-rate", type=float, default=50.0, help="first step (50/s)")
    stress.add_argument("--factor", type=float, default=2.0, help="rate multiplier per step (2)")
    stress.add_argument("--step-duration", type=float, default=2.0, help="seconds per step (2)")
    stress.add_argument("--max-rate", type=float, default=1e6, help="highest rate tried")
    stress.add_argument("--tolerance", type=float, default=0.05, help="bisection stop (0.05)")
    stress.add_argument("--soak", type=float, metavar="RATE", help="soak at RATE instead")
    stress.add_argument("--duration", type=float, default=60.0, help="soak seconds (60)")
    stress.set_defaults(func=_stress)
