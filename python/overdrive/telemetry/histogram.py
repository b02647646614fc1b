"""The latency histogram (``overdrive._core.LatencyHistogram``) and its timer.

The histogram and the ``with h.time():`` context manager are Rust (a Rust
``__enter__``/``__exit__`` measured faster than a Python class calling
``perf_counter``). Decorating a function (``@h.time()``) goes through
:func:`_decorate` here: a plain Python wrapper around the call, sync or
async, timed with :func:`time.perf_counter_ns` (the same monotonic clock).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any, ParamSpec, TypeVar, cast

from .._core import LatencyHistogram, Timer
from ..exceptions import InputTypeError

__all__ = ["LatencyHistogram", "Timer"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _decorate(hist: LatencyHistogram, func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Wrap ``func`` so every call records its duration in ``hist`` (``Timer.__call__``).

    Coroutine functions get an ``async def`` wrapper timing the whole await;
    the duration is recorded whether the call returns or raises.
    """
    if not callable(func):
        raise InputTypeError(f"time() decorates a function, not {type(func).__name__}")
    record_ns = hist.record_ns
    if inspect.iscoroutinefunction(func):
        afunc = cast(Callable[..., Any], func)

        @functools.wraps(func)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = perf_counter_ns()
            try:
                return await afunc(*args, **kwargs)
            finally:
                record_ns(perf_counter_ns() - start)

        return cast(Callable[_P, _R], timed_async)

    @functools.wraps(func)
    def timed(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        start = perf_counter_ns()
        try:
            return func(*args, **kwargs)
        finally:
            record_ns(perf_counter_ns() - start)

    return timed
