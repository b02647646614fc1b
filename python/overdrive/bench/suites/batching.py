"""Batching suite: the Batcher against minimal hand-written batchers, per-item
calls of a numpy MLP, and the MessageBatcher against the same frames built by
hand and compressed by python-zstandard.

1. Overhead per item (identity handler, batch 64, max_wait 1 ms), overdrive
   vs :class:`~overdrive.bench.baselines.MinimalAsyncBatcher`, each with a
   sync handler (overdrive: its dispatcher thread; minimal:
   ``loop.run_in_executor``) and an ``async def`` handler (awaited on the
   loop): (a) burst: submit 64, await each; (b) burst: 64 ``submit_async``
   futures, one ``asyncio.gather``; (c) closed loop: 256 client tasks, each
   awaiting its own submit in turn. Goal: overdrive <= 0.8x the minimal
   batcher's time per item.
2. numpy MLP: Batcher vs per-item calls.
3. Open loop on a simulated device (handler sleeping ``a + b*n``): one paced
   client thread at 50/80/95% of the device's capacity, overdrive
   (``max_wait_ms=5.0``, the README's setting) vs
   :class:`~overdrive.bench.baselines.GreedyThreadBatcher`, in alternating
   segments; p50/p99/p99.9 from each item's *scheduled* arrival. Goal:
   overdrive p99 <= 0.8x the greedy batcher's at 80% and 95%.
4. MessageBatcher vs :class:`~overdrive.bench.baselines.FrameBatcher` (the same
   frames: messages, layout, 50 per frame, zstd level -1), and, as context,
   python-zstandard per message at level 3.

Timed cases run their implementations interleaved in one process; every
side's submit/put is bound once, outside its loop. Rows give per-item times
and each baseline's time divided by overdrive's (``x_vs_od`` > 1 means
overdrive is faster).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import overdrive as od

from ..baselines import FrameBatcher, GreedyThreadBatcher, MinimalAsyncBatcher
from ..compare import Comparison, interleaved
from ..corpus import json_messages
from . import BenchConfig, Check, SuiteResult
from ._common import ratio_ci

__all__ = [
    "burst_await",
    "burst_gather",
    "closed_loop",
    "identity",
    "identity_sync",
    "ideal_p99",
    "open_loop_p99",
    "run",
]

COLUMNS = ["case", "impl", "us/item", "items/s", "x_vs_od", "ci_low", "ci_high", "detail"]
BATCH = 64
WAIT_MS = 1.0  # overhead cases
DEVICE_WAIT_MS = 5.0  # open loop: the README's setting
CLIENTS = 256
OD = "overdrive"
MINIMAL = "minimal asyncio batcher"
GREEDY = "greedy thread batcher"
GOAL_FRACTION = 0.8

Submit = Callable[[Any], Awaitable[Any]]
Drive = Callable[[Submit], Callable[[], Coroutine[Any, Any, None]]]


async def identity(items: list[Any]) -> list[Any]:
    return items


def identity_sync(items: list[Any]) -> list[Any]:
    return items


HANDLERS: dict[str, Callable[[list[Any]], Any]] = {
    "sync handler": identity_sync,
    "async handler": identity,
}


def _row(case: str, impl: str, secs: float, od_secs: float, detail: str = "") -> dict[str, Any]:
    return {
        "case": case,
        "impl": impl,
        "us/item": secs * 1e6,
        "items/s": 1.0 / secs if secs > 0 else 0.0,
        "x_vs_od": secs / od_secs if od_secs > 0 else 0.0,
        "detail": detail,
    }


# --- 1. overhead per item -----------------------------------------------------------------


def burst_await(submit: Submit, rounds: int) -> Callable[[], Coroutine[Any, Any, None]]:
    """(a) ``rounds`` times: submit 64 items, then await each future."""
    items = range(BATCH)

    async def drive() -> None:
        for _ in range(rounds):
            futs = [submit(x) for x in items]
            for f in futs:
                await f

    return drive


def burst_gather(submit: Submit, rounds: int) -> Callable[[], Coroutine[Any, Any, None]]:
    """(b) ``rounds`` times: submit 64 items, one ``asyncio.gather`` of their futures."""
    items = range(BATCH)
    gather = asyncio.gather

    async def drive() -> None:
        for _ in range(rounds):
            await gather(*[submit(x) for x in items])

    return drive


def closed_loop(submit: Submit, per_client: int) -> Callable[[], Coroutine[Any, Any, None]]:
    """(c) ``CLIENTS`` tasks, each awaiting ``per_client`` submits in turn."""

    async def client() -> None:
        for i in range(per_client):
            await submit(i)

    async def drive() -> None:
        await asyncio.gather(*[client() for _ in range(CLIENTS)])

    return drive


def _run_on(
    loop: asyncio.AbstractEventLoop, coro: Callable[[], Coroutine[Any, Any, None]]
) -> Callable[[], None]:
    return lambda: loop.run_until_complete(coro())


def _overhead_case(
    config: BenchConfig,
    result: SuiteResult,
    case: str,
    drive: Drive,
    per_call: int,
) -> None:
    """Overdrive and the minimal asyncio batcher, sync and async handler, interleaved."""
    loop = asyncio.new_event_loop()

    async def build() -> dict[str, tuple[Any, Any]]:
        return {
            kind: (
                od.Batcher(h, max_batch_size=BATCH, max_wait_ms=WAIT_MS),
                MinimalAsyncBatcher(h, max_batch_size=BATCH, max_wait_ms=WAIT_MS),
            )
            for kind, h in HANDLERS.items()
        }

    pairs = loop.run_until_complete(build())
    impls: dict[str, Callable[[], None]] = {}
    for kind, (b, m) in pairs.items():
        for name, submit in ((f"{OD} ({kind})", b.submit_async), (f"{MINIMAL} ({kind})", m.submit)):
            impls[name] = _run_on(loop, drive(submit))
    try:
        s = interleaved(impls, repeats=config.repeats, warmup=1)
    finally:

        async def close() -> None:
            for b, m in pairs.values():
                await b.aclose()
                await m.aclose()

        loop.run_until_complete(close())
        loop.close()
    for kind, (b, _m) in pairs.items():
        od_s, min_s = s[f"{OD} ({kind})"], s[f"{MINIMAL} ({kind})"]
        od_med, min_med = statistics.median(od_s) / per_call, statistics.median(min_s) / per_call
        mean = b.stats()["mean_batch_size"]
        result.rows.append(_row(case, f"{OD} ({kind})", od_med, od_med, f"mean batch {mean:.1f}"))
        result.rows.append(
            {**_row(case, f"{MINIMAL} ({kind})", min_med, od_med), **ratio_ci(min_s, od_s)}
        )
        cmp = Comparison.from_samples(min_s, od_s, 1)
        frac = od_med / min_med
        result.checks.append(
            Check(
                f"{case}, {kind}: overdrive vs {MINIMAL}",
                f"<= {GOAL_FRACTION}x its time per item",
                frac,
                frac <= GOAL_FRACTION,
                detail=(
                    f"{od_med * 1e6:.2f} vs {min_med * 1e6:.2f} us/item "
                    f"(speed-up CI {cmp.ci_low:.2f}-{cmp.ci_high:.2f})"
                ),
            )
        )
        if case.startswith("(a)") and kind == "async handler":
            result.checks.append(
                Check(
                    "overhead per item, async submit->result, identity handler, batch 64",
                    "<= 1.5 us/item",
                    od_med * 1e6,
                    od_med * 1e6 <= 1.5,
                    unit="us",
                    detail=f"case (a), async handler; {MINIMAL}: {min_med * 1e6:.2f} us",
                )
            )


def _overhead(config: BenchConfig, result: SuiteResult) -> None:
    rounds = 20 if config.quick else 40
    per_client = 8 if config.quick else 16
    cases: list[tuple[str, Drive, int]] = [
        ("(a) burst 64, await each", lambda s: burst_await(s, rounds), rounds * BATCH),
        ("(b) burst 64, one gather", lambda s: burst_gather(s, rounds), rounds * BATCH),
        (
            f"(c) closed loop, {CLIENTS} clients",
            lambda s: closed_loop(s, per_client),
            CLIENTS * per_client,
        ),
    ]
    for case, drive, per_call in cases:
        _overhead_case(config, result, case, drive, per_call)


# --- 2. throughput on a numpy MLP ---------------------------------------------------------


def _mlp(config: BenchConfig, result: SuiteResult) -> None:
    # One BLAS thread: on a 2-core machine OpenBLAS's spinning threads fight
    # the dispatcher and the producer and make both sides noisy (13-680 us/item).
    if "numpy" not in sys.modules:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - bench extra missing
        result.notes.append("numpy missing: MLP case skipped (pip install 'overdrive[bench]')")
        return
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((512, 512), dtype=np.float32) / 23
    w2 = rng.standard_normal((512, 512), dtype=np.float32) / 23
    n = 512 if config.quick else 2048
    xs = [rng.standard_normal(512, dtype=np.float32) for _ in range(n)]

    def forward(x: Any) -> Any:
        return np.maximum(x @ w1, 0) @ w2

    def batch_forward(items: list[Any]) -> list[Any]:
        return list(forward(np.stack(items)))

    b = od.Batcher(batch_forward, max_batch_size=BATCH)
    submit = b.submit

    def per_item() -> None:
        for x in xs:
            forward(x)

    def batched() -> None:
        futs = [submit(x) for x in xs]
        for fu in futs:
            fu.result()

    got = [fu.result() for fu in [submit(x) for x in xs[:8]]]
    assert all(np.allclose(g, forward(x), atol=1e-4) for g, x in zip(got, xs, strict=False))
    s = interleaved(
        {"overdrive Batcher": batched, "per-item calls": per_item},
        repeats=max(3, config.repeats // 2),
        number=1,
    )
    b.close()
    od_med = statistics.median(s["overdrive Batcher"]) / n
    base = statistics.median(s["per-item calls"]) / n
    for k, v in s.items():
        row = _row("numpy MLP 512x512x2", k, statistics.median(v) / n, od_med)
        result.rows.append({**row, **ratio_ci(v, s["overdrive Batcher"])})
    result.checks.append(
        Check(
            "numpy MLP throughput: Batcher vs per-item calls",
            "speedup reported (> 1 means batching pays)",
            base / od_med,
            base / od_med > 1.0,
            detail=f"{n} items, max_batch_size={BATCH}, OPENBLAS_NUM_THREADS={blas_threads}",
        )
    )


# --- 3. open loop on a simulated device ---------------------------------------------------

BASE_S, PER_ITEM_S = 0.002, 0.0001


def _device(items: list[Any]) -> list[Any]:
    time.sleep(BASE_S + PER_ITEM_S * len(items))  # releases the GIL, like a device call
    return items


class _OpenLoopImpl:
    """One batcher under test: ``start()`` makes a fresh one for a segment."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.elapsed = 0.0
        self.batches = 0
        self.items = 0

    def start(self) -> tuple[Callable[[Any], cf.Future[Any]], Callable[[], None]]:
        if self.name == OD:
            b: od.Batcher[Any, Any] = od.Batcher(
                _device, max_batch_size=BATCH, max_wait_ms=DEVICE_WAIT_MS, max_queue=1_000_000
            )

            def close_od() -> None:
                b.close()
                s = b.stats()
                self.batches += s["batches"]
                self.items += s["completed"]

            return b.submit, close_od
        g = GreedyThreadBatcher(_device, max_batch_size=BATCH)

        def close_greedy() -> None:
            g.close()
            self.batches += g.batches
            self.items += g.items

        return g.submit, close_greedy

    def segment(self, rate: float, duration: float) -> None:
        """Offer ``rate`` items/s for ``duration`` s from this thread, one item at a time;
        latency from each item's *scheduled* arrival (generator lag counts against it)."""
        submit, close = self.start()
        lat = self.latencies
        lock = threading.Lock()
        n = int(rate * duration)
        start = time.perf_counter()
        sent = 0
        while sent < n:
            due = int((time.perf_counter() - start) * rate) + 1
            while sent < min(due, n):
                t0 = start + sent / rate

                def done(_f: Any, t0: float = t0) -> None:
                    t = time.perf_counter() - t0
                    with lock:
                        lat.append(t)

                submit(sent).add_done_callback(done)
                sent += 1
            time.sleep(0.0003)
        close()
        self.elapsed += max(time.perf_counter() - start, duration)

    def summary(self) -> tuple[float, float, float, float, float]:
        """achieved items/s, p50, p99, p99.9 (seconds), mean batch."""
        lat = sorted(self.latencies)
        achieved = len(lat) / self.elapsed if self.elapsed else 0.0
        mean = self.items / self.batches if self.batches else 0.0
        return achieved, _pct(lat, 50), _pct(lat, 99), _pct(lat, 99.9), mean


def _pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(p / 100 * len(sorted_vals)))]


def _measured_full_batch() -> float:
    """The simulated device's real full-batch time on this machine: time.sleep
    overshoots (and the GIL is re-taken after it), so it runs slower than its
    nominal 2 ms + 0.1 ms/item; capacity is what the device really delivers."""
    items = list(range(BATCH))
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        _device(items)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def open_loop_p99(impl: str, fraction: float, seconds: float) -> float:
    """p99 latency (s) of ``impl`` (``OD`` or ``GREEDY``) offered ``fraction`` of the
    simulated device's measured capacity for ``seconds``: one segment (for asv)."""
    capacity = BATCH / max(BASE_S + PER_ITEM_S * BATCH, _measured_full_batch())
    runner = _OpenLoopImpl(impl)
    runner.segment(capacity * fraction, seconds)
    return runner.summary()[2]


def _run_open_loop(rate: float, segments: int, seconds: float) -> dict[str, _OpenLoopImpl]:
    """Alternate overdrive and greedy segments (order swapped every segment)."""
    impls = {OD: _OpenLoopImpl(OD), GREEDY: _OpenLoopImpl(GREEDY)}
    order = list(impls.values())
    for seg in range(segments):
        for impl in order if seg % 2 == 0 else order[::-1]:
            impl.segment(rate, seconds)
    return impls


def _open_loop_rows(
    result: SuiteResult, case: str, offered: float, impls: dict[str, _OpenLoopImpl]
) -> dict[str, tuple[float, float, float, float, float]]:
    summaries = {name: impl.summary() for name, impl in impls.items()}
    od_p99 = summaries[OD][2]
    for name, (achieved, p50, p99, p999, mean) in summaries.items():
        result.rows.append(
            {
                "case": case,
                "impl": name,
                "us/item": p99 * 1e6,
                "items/s": achieved,
                "x_vs_od": p99 / od_p99 if od_p99 > 0 else 0.0,
                "detail": f"offered {offered:.0f}/s; p50 {p50 * 1e3:.1f}, p99 "
                f"{p99 * 1e3:.1f}, p99.9 {p999 * 1e3:.1f} ms; mean batch {mean:.1f}",
            }
        )
    return summaries


def ideal_p99(rate: float, base_s: float, per_item_s: float, items: int = 20_000) -> float:
    """p99 latency (s) of a zero-overhead greedy batcher in virtual time: the
    paced arrivals of the open loop, one serial device taking ``base_s +
    per_item_s * n`` per batch of ``n <= BATCH``. Nothing runs: this is the floor
    set by the device and the arrival pattern, which no batching policy on a
    serial device can undercut by overhead alone (waiting for fuller batches
    does not help either: ``docs/architecture.md``, "Open loop")."""
    lat: list[float] = []
    free, i = 0.0, 0
    while i < items:
        start = max(free, i / rate)
        # everything that has arrived by ``start`` (at least item i), up to BATCH
        last = min(items - 1, int(start * rate + 1e-9))
        n = min(max(1, last - i + 1), BATCH)
        end = start + base_s + per_item_s * n
        lat.extend(end - (i + k) / rate for k in range(n))
        i += n
        free = end
    tail = sorted(lat[items // 10 :])  # skip the start-up transient
    return _pct(tail, 99)


def _saturation(config: BenchConfig, result: SuiteResult) -> None:
    nominal = BASE_S + PER_ITEM_S * BATCH
    full = max(nominal, _measured_full_batch())
    capacity = BATCH / full
    segments, seconds = (1, 1.0) if config.quick else (3, 1.5)
    result.notes.append(
        f"simulated device: full batch nominal {nominal * 1e3:.2f} ms, measured "
        f"{full * 1e3:.2f} ms here; capacity {capacity:.0f} items/s (from the measured time). "
        f"Open loop: {segments} alternating segment(s) of {seconds:g} s per batcher and load; "
        f"overdrive max_wait_ms={DEVICE_WAIT_MS}, max_batch_size={BATCH}."
    )
    for frac in (0.5, 0.8, 0.95):
        offered = capacity * frac
        impls = _run_open_loop(offered, segments, seconds)
        case = f"open loop, device at {frac:.0%}"
        summ = _open_loop_rows(result, case, offered, impls)
        achieved, _p50, p99, _p999, _mean = summ[OD]
        floor = ideal_p99(offered, full - PER_ITEM_S * BATCH, PER_ITEM_S)
        result.rows.append(
            {
                "case": case,
                "impl": "ideal greedy (virtual time, no overhead)",
                "us/item": floor * 1e6,
                "items/s": offered,
                "x_vs_od": floor / p99 if p99 > 0 else 0.0,
                "detail": f"the device's floor: p99 {floor * 1e3:.1f} ms with the measured "
                f"batch time {full * 1e3:.2f} ms at n={BATCH}",
            }
        )
        result.checks.append(
            Check(
                f"saturation at {frac:.0%}: achieved >= 95% of offered, p99 <= 3x full batch",
                f">= {0.95 * offered:.0f}/s and p99 <= {3 * full * 1e3:.1f} ms",
                achieved / offered,
                achieved >= 0.95 * offered and p99 <= 3 * full,
                unit="x offered",
                detail=f"p99 {p99 * 1e3:.2f} ms",
            )
        )
        if frac >= 0.8:
            greedy_p99 = summ[GREEDY][2]
            ratio = p99 / greedy_p99
            result.checks.append(
                Check(
                    f"open loop at {frac:.0%}: overdrive p99 vs {GREEDY}",
                    f"<= {GOAL_FRACTION}x its p99",
                    ratio,
                    ratio <= GOAL_FRACTION,
                    detail=f"{p99 * 1e3:.1f} vs {greedy_p99 * 1e3:.1f} ms",
                )
            )
    impls = _run_open_loop(100.0, segments, 0.5 if config.quick else 1.0)
    summ = _open_loop_rows(result, "light load, 100 req/s", 100.0, impls)
    p50 = summ[OD][1]
    service = BASE_S + PER_ITEM_S
    result.checks.append(
        Check(
            "light load (100 req/s): no wait when idle",
            f"p50 <= service time + 1 ms = {(service + 0.001) * 1e3:.1f} ms",
            p50 * 1e3,
            p50 <= service + 0.001,
            unit="ms",
            detail=f"{GREEDY} p50 {summ[GREEDY][1] * 1e3:.2f} ms",
        )
    )


# --- 4. message batching ------------------------------------------------------------------


def _messages(config: BenchConfig, result: SuiteResult) -> None:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - bench extra missing
        result.notes.append("python-zstandard missing: message case skipped")
        return
    n = 10000 if config.quick else 20000
    msgs = json_messages(n, 200, seed=9)
    raw = sum(map(len, msgs))
    zc = zstandard.ZstdCompressor(level=3)
    out = {"od": 0, "frames": 0}

    def sink(frame: bytes) -> None:
        out["od"] += len(frame)

    def frame_sink(frame: bytes) -> None:
        out["frames"] += len(frame)

    def batcher() -> None:
        out["od"] = 0
        mb = od.MessageBatcher(sink)
        put = mb.put
        for m in msgs:
            put(m)
        mb.close()

    def frames() -> None:
        out["frames"] = 0
        fb = FrameBatcher(frame_sink)
        put = fb.put
        for m in msgs:
            put(m)
        fb.close()

    def per_message() -> None:
        c = zc.compress
        for m in msgs:
            c(m)

    mb_name = "overdrive MessageBatcher"
    fair = "python-zstandard, same frames (50/frame, level -1)"
    per_msg = "python-zstandard per message (level 3)"
    s = interleaved(
        {mb_name: batcher, fair: frames, per_msg: per_message},
        repeats=config.repeats,
        number=1,
    )
    batcher()
    frames()
    ratio_od, ratio_fr = raw / out["od"], raw / out["frames"]
    ratio_z = raw / sum(len(zc.compress(m)) for m in msgs)
    med = {k: statistics.median(v) / n for k, v in s.items()}
    od_med = med[mb_name]
    case = "200 B JSON msgs"
    result.rows.append(_row(case, mb_name, od_med, od_med, f"ratio {ratio_od:.2f}"))
    for name, r in ((fair, ratio_fr), (per_msg, ratio_z)):
        row = _row(case, name, med[name], od_med, f"ratio {r:.2f}")
        result.rows.append({**row, **ratio_ci(s[name], s[mb_name])})
    cmp = Comparison.from_samples(s[fair], s[mb_name], 1)
    result.checks.append(
        Check(
            "MessageBatcher vs the same frames by hand + python-zstandard (level -1)",
            ">= 1.0x (no slower than the hand-written framer)",
            cmp.ratio,
            cmp.ratio >= 1.0,
            detail=f"CI {cmp.ci_low:.2f}-{cmp.ci_high:.2f}; ratio {ratio_od:.2f} vs {ratio_fr:.2f}",
        )
    )
    result.checks.append(
        Check(
            "MessageBatcher 200 B JSON: ns/message at ratio >= 3",
            "<= 600 ns/message and ratio >= 3",
            od_med * 1e9,
            od_med * 1e9 <= 600 and ratio_od >= 3,
            unit="ns",
            detail=(
                f"ratio {ratio_od:.2f} (default level -1, 50 msgs/frame); "
                f"per-message zstd {med[per_msg] * 1e9:.0f} ns at {ratio_z:.2f}"
            ),
        )
    )


def run(config: BenchConfig) -> SuiteResult:
    result = SuiteResult("batching", COLUMNS)
    _overhead(config, result)
    _mlp(config, result)
    _saturation(config, result)
    _messages(config, result)
    result.notes.append(
        "us/item: median per-item time (open-loop rows: p99 latency in us; x_vs_od there is "
        "p99 / overdrive's p99). x_vs_od = baseline time / overdrive time (> 1: overdrive "
        f"faster). Overhead cases: identity handler, max_batch_size={BATCH}, "
        f"max_wait_ms={WAIT_MS} on both sides; medians of interleaved repeats. "
        "MessageBatcher: its defaults (50 msgs/frame, 10 ms window, zstd level -1, framing "
        "on background threads); the hand-written framer frames and compresses on the "
        "producer's thread; each time covers construction, every put and close()."
    )
    return result
