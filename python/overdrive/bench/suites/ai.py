"""AI suite: the example embedding service (``examples/inference_service.py``)
before and after overdrive, driven by the :class:`~overdrive.bench.LoadRunner`.

- **before**: each request calls the numpy MLP directly on its one text (in
  a thread pool, as a sync model in an async service usually runs): no
  batching, no cache;
- **after**: the example's :class:`Service`: an ``ai.InferencePool`` of two
  replicas (each behind its own Batcher) under an embedding cache.

Workload: requests of one text each, drawn from a Zipf law (s = 1.1) over
3,000 distinct short texts, as search queries or repeated prompts are. Both
sides run open loop (arrivals fixed in advance; latency from the intended
send time, so a backlog shows) at the same offered rates: a *moderate* rate
(a third of what per-request calls sustain in a closed loop on this machine,
measured at start) and an *overload* rate (about 1.5x that capacity).

Rows: throughput, p50/p99 latency, cache hit ratio, model calls, model
compute seconds (time inside the model), compute saved against *before*, and
the cost per request for a nominal price per model call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ..._core import LatencyHistogram
from ..load import LoadResult, LoadRunner
from . import BenchConfig, Check, SuiteResult

__all__ = ["COST_PER_CALL", "example_module", "run", "zipf_texts"]

#: Nominal price of one model call (any currency), for cost per request.
COST_PER_CALL = 0.0001
N_TEXTS = 3000
ZIPF_S = 1.1
#: The load generator's own ceiling on this class of machine (arrivals/s).
_MAX_RATE = 3000.0

COLUMNS = [
    "case",
    "impl",
    "offered_rps",
    "throughput_rps",
    "p50_ms",
    "p99_ms",
    "errors",
    "cache_hit_ratio",
    "model_calls",
    "compute_s",
    "compute_saved_s",
    "cost_per_1k_requests",
]

_WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "model",
    "vector",
    "cache",
    "query",
    "search",
    "prompt",
    "token",
    "batch",
    "replica",
    "latency",
    "python",
    "rust",
    "numpy",
    "service",
    "request",
    "answer",
    "context",
    "window",
    "embedding",
    "cosine",
    "similarity",
    "index",
    "shard",
    "router",
    "balancer",
    "queue",
    "stream",
]


def example_module() -> ModuleType | None:
    """``examples/inference_service.py`` of this checkout, imported (None when
    overdrive runs from an installed wheel without the examples)."""
    name = "overdrive_example_inference_service"
    if name in sys.modules:
        return sys.modules[name]
    for parent in Path(__file__).resolve().parents:
        path = parent / "examples" / "inference_service.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                return None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
            return mod
    return None


def zipf_texts(
    n_requests: int, *, n_texts: int = N_TEXTS, s: float = ZIPF_S, seed: int = 7
) -> list[str]:
    """``n_requests`` texts drawn from a Zipf law over ``n_texts`` distinct texts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    texts = [
        " ".join(rng.choice(_WORDS, size=int(rng.integers(4, 12)))) + f" #{i}"
        for i in range(n_texts)
    ]
    p = 1.0 / np.arange(1, n_texts + 1) ** s
    p /= p.sum()
    idx = rng.choice(n_texts, size=n_requests, p=p)
    return [texts[int(i)] for i in idx]


class _TimedModel:
    """The example's MLP with the time spent inside it counted."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.dim_out = model.dim_out
        self._lock = threading.Lock()
        self.calls = 0
        self.items = 0
        self.seconds = 0.0

    def __call__(self, texts: Sequence[str]) -> Any:
        t0 = time.perf_counter()
        out = self._model(texts)
        dt = time.perf_counter() - t0
        with self._lock:
            self.calls += 1
            self.items += len(texts)
            self.seconds += dt
        return out


def _feeder(texts: list[str]) -> Callable[[], str]:
    lock = threading.Lock()
    state = [0]

    def next_text() -> str:
        with lock:
            i = state[0]
            state[0] = i + 1
        return texts[i % len(texts)]

    return next_text


def _capacity(mod: Any, texts: list[str], seconds: float) -> float:
    """Requests/s the *before* path sustains here (closed loop, 8 users)."""
    model = mod.EmbeddingMLP()
    pool = cf.ThreadPoolExecutor(thread_name_prefix="ai-capacity")
    next_text = _feeder(texts)

    async def per_request() -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, model, [next_text()])

    try:
        res = LoadRunner(per_request, concurrency=8, duration=seconds, progress=False).run()
    finally:
        pool.shutdown(wait=True)
    return max(res.achieved_rate, 1.0)


class _Side:
    """One side's segments, merged: latency histogram, counts, elapsed time."""

    def __init__(self, timed: _TimedModel) -> None:
        self.timed = timed
        self.latency = LatencyHistogram("ai-side", max_seconds=600.0)
        self.completed = 0
        self.errors = 0
        self.elapsed = 0.0

    def add(self, res: LoadResult) -> None:
        self.latency.merge(res.latency)
        self.completed += res.completed
        self.errors += res.errors
        if res.achieved_rate > 0:
            self.elapsed += res.completed / res.achieved_rate


def _drive(target: Callable[[], Any], rate: float, duration: float, name: str) -> LoadResult:
    return LoadRunner(
        target,
        rate=rate,
        duration=duration,
        drain_timeout_s=max(10.0, duration * 4),
        tolerance_s=0.02,
        progress=False,
        name=name,
    ).run()


def _row(
    case: str,
    impl: str,
    rate: float,
    side: _Side,
    hit_ratio: float | str,
    before_compute_per_req: float | None,
) -> dict[str, Any]:
    done = max(side.completed, 1)
    timed = side.timed
    per_req = timed.seconds / done
    saved: float | str = ""
    if before_compute_per_req is not None:
        saved = (before_compute_per_req - per_req) * done
    return {
        "case": case,
        "impl": impl,
        "offered_rps": round(rate, 1),
        "throughput_rps": side.completed / side.elapsed if side.elapsed else 0.0,
        "p50_ms": side.latency.percentile(50.0) * 1e3,
        "p99_ms": side.latency.percentile(99.0) * 1e3,
        "errors": side.errors,
        "cache_hit_ratio": hit_ratio,
        "model_calls": timed.calls,
        "compute_s": timed.seconds,
        "compute_saved_s": saved,
        "cost_per_1k_requests": timed.calls * COST_PER_CALL * 1000 / done,
    }


def _one_blas_thread() -> tuple[Any, str]:
    """A context that limits BLAS to one thread per call (threadpoolctl), and
    what it says: with several threads each calling the model, BLAS's own
    threads would oversubscribe the cores and distort both sides."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        return (
            contextlib.nullcontext(),
            "threadpoolctl missing: BLAS threads not limited (pip install 'overdrive[bench]')",
        )
    return (
        threadpool_limits(1, user_api="blas"),
        "BLAS limited to 1 thread per call on both sides (threadpoolctl)",
    )


def _reset(timed: _TimedModel) -> None:
    timed.calls = timed.items = 0
    timed.seconds = 0.0


def _case(
    mod: Any, texts: list[str], rate: float, duration: float, segments: int
) -> tuple[_Side, _Side, float]:
    """Before and after at ``rate``, in alternating segments (a passing load on
    the shared machine hits both sides alike); the service and its cache live
    across the after segments, as a running service's would."""
    b_timed = _TimedModel(mod.EmbeddingMLP())
    # The default executor size, as run_in_executor(None, ...) would use.
    executor = cf.ThreadPoolExecutor(thread_name_prefix="ai-before")
    a_timed = _TimedModel(mod.EmbeddingMLP())
    service = mod.Service(replicas=2, max_batch_size=64, max_wait_ms=2.0, model=a_timed)
    b_next, a_next = _feeder(texts), _feeder(texts)

    async def before() -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, b_timed, [b_next()])

    async def after() -> Any:
        return await service.embed([a_next()])

    limits, _ = _one_blas_thread()
    b_side, a_side = _Side(b_timed), _Side(a_timed)
    seg = duration / segments
    try:
        with limits:
            # Warm-up (threads started, buffers allocated) on texts outside the
            # workload, so the cache starts cold for it; counters restart after.
            warm = [f"warm-up {i}" for i in range(128)]
            for fu in [executor.submit(b_timed, [t]) for t in warm]:
                fu.result()
            service.pool.predict_many(warm)
            _reset(b_timed)
            _reset(a_timed)
            for _ in range(segments):
                b_side.add(_drive(before, rate, seg, "per-request MLP"))
                a_side.add(_drive(after, rate, seg, "InferencePool + EmbeddingCache"))
    finally:
        executor.shutdown(wait=True)
        service.pool.close()
    st = service.stats()
    hits, misses = int(st.get("cache_hits", 0)), int(st.get("cache_misses", 0))
    ratio = hits / (hits + misses) if hits + misses else 0.0
    return b_side, a_side, ratio


def run(config: BenchConfig) -> SuiteResult:
    """Before/after rows at a moderate and an overload rate, and the checks."""
    result = SuiteResult("ai", COLUMNS)
    try:
        import numpy  # noqa: F401
    except ImportError:
        result.notes.append("numpy missing: ai suite skipped (pip install 'overdrive[bench]')")
        return result
    mod = example_module()
    if mod is None:
        result.notes.append("examples/inference_service.py not found: run from a checkout")
        return result
    duration = 4.0 if config.quick else 16.0
    segments = 4 if config.quick else 8
    limits, blas = _one_blas_thread()
    with limits:
        capacity = _capacity(mod, zipf_texts(20_000, seed=1), 1.0 if config.quick else 2.0)
        result.notes.append(
            f"per-request capacity measured here: {capacity:.0f} requests/s (closed loop, "
            f"8 users); moderate = 1/3x, overload = 1.5x that (at most {_MAX_RATE:.0f}/s); {blas}"
        )
        cases = [("moderate", capacity / 3), ("overload", min(1.5 * capacity, _MAX_RATE))]
        measured = _run_cases(mod, cases, duration, segments, result)
    _checks(result, measured)
    result.notes.append(
        f"workload: 1 text per request, Zipf(s={ZIPF_S}) over {N_TEXTS} texts; open loop, "
        f"{duration:.0f} s per side and rate in {segments} alternating segments; "
        f"cost_per_1k_requests = 1000 x model calls x {COST_PER_CALL} / requests; "
        "compute_s = time inside the model"
    )
    return result


def _run_cases(
    mod: Any,
    cases: list[tuple[str, float]],
    duration: float,
    segments: int,
    result: SuiteResult,
) -> dict[str, dict[str, Any]]:
    measured: dict[str, dict[str, Any]] = {}
    for case, rate in cases:
        n = int(rate * duration) + 10
        texts = zipf_texts(n, seed=11)
        b_side, a_side, ratio = _case(mod, texts, rate, duration, segments)
        before_row = _row(case, "before: per-request MLP", rate, b_side, "", None)
        b_per_req = b_side.timed.seconds / max(b_side.completed, 1)
        after_row = _row(
            case, "after: InferencePool + EmbeddingCache", rate, a_side, ratio, b_per_req
        )
        result.rows += [before_row, after_row]
        measured[case] = {"before": before_row, "after": after_row}
    return measured


def _checks(result: SuiteResult, measured: dict[str, dict[str, Any]]) -> None:
    mb, ma = measured["moderate"]["before"], measured["moderate"]["after"]
    ob, oa = measured["overload"]["before"], measured["overload"]["after"]
    result.checks += [
        Check(
            "p99 at the moderate rate",
            "after <= before",
            ma["p99_ms"],
            ma["p99_ms"] <= mb["p99_ms"],
            unit="ms",
            detail=f"before {mb['p99_ms']:.2f} ms",
        ),
        Check(
            "throughput at the overload rate",
            "after > before",
            oa["throughput_rps"],
            oa["throughput_rps"] > ob["throughput_rps"],
            unit="req/s",
            detail=f"before {ob['throughput_rps']:.0f} req/s",
        ),
        Check(
            "p99 at the overload rate",
            "after <= before",
            oa["p99_ms"],
            oa["p99_ms"] <= ob["p99_ms"],
            unit="ms",
            detail=f"before {ob['p99_ms']:.2f} ms",
        ),
        Check(
            "cost per request (moderate)",
            "after <= 0.5x before",
            ma["cost_per_1k_requests"] / mb["cost_per_1k_requests"]
            if mb["cost_per_1k_requests"]
            else 0.0,
            ma["cost_per_1k_requests"] <= 0.5 * mb["cost_per_1k_requests"],
            unit="x",
            detail=f"at {COST_PER_CALL} per model call",
        ),
    ]
