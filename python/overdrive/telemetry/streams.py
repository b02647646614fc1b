"""Inference-stream metrics: :func:`track_stream` wraps a token stream.

``for tok in track_stream(llm_stream, name="chat"): ...`` yields exactly what
the stream yields, and records per stream name (one :class:`StreamMetrics`,
exported as ``overdrive_stream_*{name="chat"}``):

- time to first token (from the ``track_stream`` call to the first item that
  carries at least one token),
- time per output token after the first: ``(end - first) / (tokens - 1)``,
- output tokens per second over the whole request: ``tokens / (end - start)``,
- end-to-end latency (``start`` to the stream's end),
- cost per stream when prices are given:
  ``prompt_tokens * price_per_input_token + output_tokens * price_per_output_token``.

Latencies go into ``LatencyHistogram``s; the three whole-request values
(time per token, tokens/s, end-to-end) only for streams that ran to their
end. A stream that raises counts in ``errors``, one closed before its end
(``break`` then ``close()``/garbage collection, ``aclose()``, cancellation)
in ``closed_early``; tokens and cost count for every outcome.

Each item counts as one token unless ``count_tokens(item) -> int`` says
otherwise (a chunk of several tokens, or 0 for a chunk with no text).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, Self, TypeVar, overload

from ..exceptions import ConfigurationError, InputTypeError
from . import registry

__all__ = [
    "AsyncTrackedStream",
    "StreamMetrics",
    "TrackedStream",
    "stream_metrics",
    "track_stream",
]

log = logging.getLogger("overdrive.telemetry")

T = TypeVar("T")

#: Histogram upper bound for tokens per second (the histograms hold any
#: positive value; "seconds" is only their unit name).
_MAX_RATE = 1e6


def _histogram(name: str, max_value: float = 3600.0) -> Any:
    from .histogram import LatencyHistogram

    h = LatencyHistogram(name=name, max_seconds=max_value)
    # Exported through StreamMetrics.telemetry_histograms(), not as a "latency" histogram.
    registry.unregister(h)
    return h


class StreamMetrics:
    """The metrics of every stream tracked under one name (thread-safe).

    Get one with :func:`stream_metrics`; :func:`track_stream` feeds it.
    ``time_to_first_token``, ``time_per_output_token``,
    ``output_tokens_per_second`` and ``request_duration`` are
    ``LatencyHistogram``s (exported as Prometheus histograms); ``stats()``
    holds the counters and p50/p95/p99 of each.
    """

    telemetry_component = "stream"

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise InputTypeError(f"name must be a non-empty str, not {name!r}")
        self.name = name
        self.time_to_first_token = _histogram(f"{name}.time_to_first_token")
        self.time_per_output_token = _histogram(f"{name}.time_per_output_token")
        self.output_tokens_per_second = _histogram(f"{name}.output_tokens_per_second", _MAX_RATE)
        self.request_duration = _histogram(f"{name}.request_duration")
        self._lock = threading.RLock()  # RLock: finish() may run from __del__
        self._requests = 0
        self._completed = 0
        self._errors = 0
        self._closed_early = 0
        self._in_flight = 0
        self._output_tokens = 0
        self._prompt_tokens = 0
        self._cost = 0.0
        self._priced = 0
        self._count_errors = 0
        registry.register(self, component="stream", name=name)

    def telemetry_histograms(self) -> dict[str, tuple[Any, str]]:
        """The histograms the collector exports, by metric part, with units."""
        return {
            "time_to_first_token": (self.time_to_first_token, "seconds"),
            "time_per_output_token": (self.time_per_output_token, "seconds"),
            "output_tokens_per_second": (self.output_tokens_per_second, ""),
            "request_duration": (self.request_duration, "seconds"),
        }

    def stats(self) -> dict[str, Any]:
        """Counters (``requests``, ``completed``, ``errors``,
        ``closed_early``, ``in_flight``, ``output_tokens``, ``prompt_tokens``,
        ``cost``, ``cost_per_request``) and ``{p50, p95, p99, count}`` of each
        histogram (``*_s`` in seconds; ``output_tokens_per_second``)."""
        with self._lock:
            out: dict[str, Any] = {
                "name": self.name,
                "requests": self._requests,
                "completed": self._completed,
                "errors": self._errors,
                "closed_early": self._closed_early,
                "in_flight": self._in_flight,
                "output_tokens": self._output_tokens,
                "prompt_tokens": self._prompt_tokens,
                "cost": self._cost,
                "cost_per_request": self._cost / self._priced if self._priced else 0.0,
                "priced_requests": self._priced,
                "count_tokens_errors": self._count_errors,
            }
        for key, (hist, _unit) in self.telemetry_histograms().items():
            suffix = "_s" if _unit == "seconds" else ""
            p50, p95, p99 = hist.percentiles([50.0, 95.0, 99.0])
            count = hist.count
            out[key + suffix] = {
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "count": count() if callable(count) else count,
            }
        return out

    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _end(self, rec: _Request, outcome: str, end: float) -> None:
        cost = rec.cost()
        with self._lock:
            self._in_flight -= 1
            self._requests += 1
            self._output_tokens += rec.output_tokens
            self._prompt_tokens += rec.prompt_tokens or 0
            self._count_errors += rec.count_errors
            if outcome == "completed":
                self._completed += 1
            elif outcome == "error":
                self._errors += 1
            else:
                self._closed_early += 1
            if cost is not None:
                self._cost += cost
                self._priced += 1
        if outcome != "completed":
            return
        e2e = max(end - rec.start, 0.0)
        self.request_duration.record(e2e)
        if rec.first is not None and rec.output_tokens > 1:
            self.time_per_output_token.record(max(end - rec.first, 0.0) / (rec.output_tokens - 1))
        if rec.output_tokens > 0 and e2e > 0:
            self.output_tokens_per_second.record(min(rec.output_tokens / e2e, _MAX_RATE))


_streams_lock = threading.Lock()
_streams: dict[str, StreamMetrics] = {}


def stream_metrics(name: str = "stream") -> StreamMetrics:
    """The :class:`StreamMetrics` of ``name`` (made on first use; kept for the
    life of the process, like a prometheus_client metric)."""
    with _streams_lock:
        m = _streams.get(name)
        if m is None:
            m = StreamMetrics(name)
            _streams[name] = m
        return m


def _price(param: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputTypeError(f"{param} must be a number or None, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"invalid {param}={value!r}: must be a finite number >= 0")
    return float(value)


class _Request:
    """One tracked stream's running totals."""

    __slots__ = (
        "clock",
        "count_errors",
        "count_tokens",
        "done",
        "first",
        "metrics",
        "output_tokens",
        "price_in",
        "price_out",
        "prompt_tokens",
        "start",
        "summary",
    )

    def __init__(
        self,
        metrics: StreamMetrics,
        clock: Callable[[], float],
        count_tokens: Callable[[Any], int] | None,
        prompt_tokens: int | None,
        price_in: float | None,
        price_out: float | None,
    ) -> None:
        self.metrics = metrics
        self.clock = clock
        self.count_tokens = count_tokens
        self.prompt_tokens = prompt_tokens
        self.price_in = price_in
        self.price_out = price_out
        self.output_tokens = 0
        self.count_errors = 0
        self.first: float | None = None
        self.done = False
        self.summary: dict[str, Any] | None = None
        self.start = clock()
        metrics._begin()

    def item(self, item: object) -> None:
        if self.count_tokens is None:
            n = 1
        else:
            try:
                n = int(self.count_tokens(item))
            except Exception:
                self.count_errors += 1
                n = 1
            n = max(n, 0)
        if n and self.first is None:
            self.first = self.clock()
            self.metrics.time_to_first_token.record(max(self.first - self.start, 0.0))
        self.output_tokens += n

    def cost(self) -> float | None:
        if self.price_in is None and self.price_out is None:
            return None
        return (self.prompt_tokens or 0) * (self.price_in or 0.0) + self.output_tokens * (
            self.price_out or 0.0
        )

    def finish(self, outcome: str) -> None:
        if self.done:
            return
        self.done = True
        end = self.clock()
        self.summary = {
            "outcome": outcome,
            "output_tokens": self.output_tokens,
            "time_to_first_token_s": None if self.first is None else self.first - self.start,
            "duration_s": end - self.start,
            "cost": self.cost(),
        }
        self.metrics._end(self, outcome, end)


class TrackedStream(Generic[T]):
    """A synchronous iterator yielding the wrapped stream's items unchanged
    while recording them (see :func:`track_stream`). ``close()`` (or leaving
    a ``with`` block) ends it early and closes the wrapped stream; ``summary``
    holds this stream's own numbers once it has ended."""

    def __init__(self, it: Iterator[T], req: _Request) -> None:
        self._it = it
        self._req = req

    @property
    def summary(self) -> dict[str, Any] | None:
        """``outcome`` ("completed", "error", "closed"), ``output_tokens``,
        ``time_to_first_token_s``, ``duration_s``, ``cost``; None until it ends."""
        return self._req.summary

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        if self._req.done:
            raise StopIteration
        try:
            item = next(self._it)
        except StopIteration:
            self._req.finish("completed")
            raise
        except GeneratorExit:
            self._req.finish("closed")
            raise
        except BaseException:
            self._req.finish("error")
            raise
        self._req.item(item)
        return item

    def close(self) -> None:
        """End the stream now (counted as closed early unless it had ended)
        and close the wrapped iterator when it has ``close()``."""
        self._req.finish("closed")
        close = getattr(self._it, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        req = getattr(self, "_req", None)
        if req is not None and not req.done:
            req.finish("closed")


class AsyncTrackedStream(Generic[T]):
    """The asynchronous counterpart of :class:`TrackedStream`: ``async for``,
    ``await aclose()``, ``async with``; cancellation counts as closed early."""

    def __init__(self, it: AsyncIterator[T], req: _Request) -> None:
        self._it = it
        self._req = req

    @property
    def summary(self) -> dict[str, Any] | None:
        """As :attr:`TrackedStream.summary`."""
        return self._req.summary

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._req.done:
            raise StopAsyncIteration
        try:
            item = await self._it.__anext__()
        except StopAsyncIteration:
            self._req.finish("completed")
            raise
        except (asyncio.CancelledError, GeneratorExit):
            self._req.finish("closed")
            raise
        except BaseException:
            self._req.finish("error")
            raise
        self._req.item(item)
        return item

    async def aclose(self) -> None:
        """End the stream now and ``aclose()`` the wrapped iterator when it can."""
        self._req.finish("closed")
        aclose = getattr(self._it, "aclose", None)
        if callable(aclose):
            await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        req = getattr(self, "_req", None)
        if req is not None and not req.done:
            req.finish("closed")


@overload
def track_stream(
    stream: AsyncIterable[T],
    *,
    name: str = ...,
    prompt_tokens: int | None = ...,
    price_per_input_token: float | None = ...,
    price_per_output_token: float | None = ...,
    count_tokens: Callable[[T], int] | None = ...,
    clock: Callable[[], float] | None = ...,
) -> AsyncTrackedStream[T]: ...
@overload
def track_stream(
    stream: Iterable[T],
    *,
    name: str = ...,
    prompt_tokens: int | None = ...,
    price_per_input_token: float | None = ...,
    price_per_output_token: float | None = ...,
    count_tokens: Callable[[T], int] | None = ...,
    clock: Callable[[], float] | None = ...,
) -> TrackedStream[T]: ...
def track_stream(
    stream: Iterable[T] | AsyncIterable[T],
    *,
    name: str = "stream",
    prompt_tokens: int | None = None,
    price_per_input_token: float | None = None,
    price_per_output_token: float | None = None,
    count_tokens: Callable[[T], int] | None = None,
    clock: Callable[[], float] | None = None,
) -> TrackedStream[T] | AsyncTrackedStream[T]:
    """Wrap a token stream (sync or async iterable) and record its metrics
    under ``name`` (see the module docstring for what is measured).

    The clock starts now: call it right when the request is sent. Returns a
    :class:`TrackedStream` (or :class:`AsyncTrackedStream` for an async
    iterable) yielding the same items. ``prompt_tokens`` and the two prices
    (per token, in any currency) give the cost per stream; ``count_tokens``
    says how many tokens an item holds (default 1; if it raises, the item
    counts as 1). ``clock``: seconds as a float (default ``time.perf_counter``).
    """
    if prompt_tokens is not None and (
        isinstance(prompt_tokens, bool) or not isinstance(prompt_tokens, int)
    ):
        raise InputTypeError(f"prompt_tokens must be an int or None, not {prompt_tokens!r}")
    if prompt_tokens is not None and prompt_tokens < 0:
        raise ConfigurationError(f"invalid prompt_tokens={prompt_tokens}: must be >= 0")
    price_in = _price("price_per_input_token", price_per_input_token)
    price_out = _price("price_per_output_token", price_per_output_token)
    if count_tokens is not None and not callable(count_tokens):
        raise InputTypeError(f"count_tokens must be callable, not {type(count_tokens).__name__}")
    if clock is None:
        clock = time.perf_counter
    if not isinstance(name, str) or not name:
        raise InputTypeError(f"name must be a non-empty str, not {name!r}")
    metrics = stream_metrics(name)
    if hasattr(stream, "__aiter__"):
        ait = stream.__aiter__()
        req = _Request(metrics, clock, count_tokens, prompt_tokens, price_in, price_out)
        return AsyncTrackedStream(ait, req)
    try:
        it = iter(stream)
    except TypeError:
        raise InputTypeError(
            f"stream must be an iterable or an async iterable, not {type(stream).__name__}"
        ) from None
    req = _Request(metrics, clock, count_tokens, prompt_tokens, price_in, price_out)
    return TrackedStream(it, req)
