"""Model cascade: call the cheapest model first, escalate while not accepted.

::

    cas = Cascade([(small, 0.001), (medium, 0.01), (large, 0.1)], accept=good_enough)
    answer = cas(query)              # or: await cas.acall(query)
    cas.stats()["cost_saved"]        # vs always calling `large`

Models are ordered cheap -> expensive. Each is a callable ``model(query)``
(sync), a coroutine function, or an object with ``acall(query)`` (async);
:class:`CascadeModel` gives one its own name, ``accept``, per-call and
per-token costs. The last model's result is returned even when not accepted
(there is nothing to escalate to; ``stats()["unaccepted"]`` counts those).

Costs: ``cost_per_call + input_tokens * cost_per_input_token +
output_tokens * cost_per_output_token``, tokens counted by the cascade's
``count_tokens(obj) -> int`` on the query and on the result (needed only when
a model has per-token costs). A call that raises is charged its per-call and
input-token cost. The baseline ("always the most expensive model") charges,
per request, what the last model would have: its per-call cost, the query's
input tokens and the output tokens of the result returned (exact for
per-call pricing, an estimate for per-token output pricing when the last
model was not called).

Exceptions from a model escalate to the next one when they are instances of
``escalate_on`` (default ``(Exception,)``; pass ``()`` to let them propagate
at once); they are counted per model. When the last model raises, its
exception propagates. Exceptions from ``accept`` or ``count_tokens``
propagate (they are bugs, not model failures) without escalating; the call
that ran is still recorded (counted as an error of its model, charged what
was computed) and the request is counted as failed.

Counters are guarded by one lock that is never held while user code runs, so
a cascade is safe from many threads and from asyncio tasks.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..exceptions import ConfigurationError, InputTypeError
from ..telemetry import registry
from ..telemetry.histogram import LatencyHistogram

__all__ = ["Cascade", "CascadeModel"]

Accept = Callable[[Any], bool]


def _cost(param: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputTypeError(f"{param} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"invalid {param}={value!r}: must be a finite number >= 0")
    return float(value)


def _is_async(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


class CascadeModel:
    """One model of a :class:`Cascade`: the model (a callable, a coroutine
    function, or an object with ``acall``), its ``name``, its costs and an
    optional ``accept(result) -> bool`` that overrides the cascade's."""

    __slots__ = (
        "_async",
        "accept",
        "cost_per_call",
        "cost_per_input_token",
        "cost_per_output_token",
        "model",
        "name",
    )

    def __init__(
        self,
        model: Any,
        cost_per_call: float = 0.0,
        *,
        cost_per_input_token: float = 0.0,
        cost_per_output_token: float = 0.0,
        accept: Accept | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(model) and not callable(getattr(model, "acall", None)):
            raise InputTypeError(
                f"model must be callable or have an acall() method, not {type(model).__name__}"
            )
        if accept is not None and not callable(accept):
            raise InputTypeError(f"accept must be a callable or None, not {type(accept).__name__}")
        if name is not None and (not isinstance(name, str) or not name):
            raise InputTypeError(f"name must be a non-empty str or None, not {name!r}")
        self.model = model
        self.cost_per_call = _cost("cost_per_call", cost_per_call)
        self.cost_per_input_token = _cost("cost_per_input_token", cost_per_input_token)
        self.cost_per_output_token = _cost("cost_per_output_token", cost_per_output_token)
        self.accept = accept
        self._async = not callable(model) or _is_async(model)
        self.name = name or getattr(model, "__name__", None) or type(model).__name__

    @property
    def per_token(self) -> bool:
        """True when the model has a per-token cost."""
        return self.cost_per_input_token > 0 or self.cost_per_output_token > 0

    def __repr__(self) -> str:
        return f"CascadeModel({self.name!r}, cost_per_call={self.cost_per_call})"


class _Counters:
    __slots__ = ("accepted", "calls", "cost", "errors", "escalated", "latency", "rejected")

    def __init__(self, name: str) -> None:
        self.calls = self.accepted = self.rejected = self.escalated = self.errors = 0
        self.cost = 0.0
        self.latency = LatencyHistogram(name=name)
        registry.unregister(self.latency)  # exported through the cascade's stats()


_ids = itertools.count(1)


class Cascade:
    """Models ordered cheap -> expensive; :meth:`__call__` / :meth:`acall`
    call the cheapest and escalate while the result is not accepted.

    ``models``: a sequence of ``(model, cost_per_call)``,
    ``(model, cost_per_call, accept)`` or :class:`CascadeModel`.
    ``accept(result) -> bool``: the default predicate (every model but the
    last needs one, its own or this). ``escalate_on``: exception types that
    escalate (default ``(Exception,)``). ``count_tokens(obj) -> int``: counts
    input (the query) and output (the result) tokens for per-token costs.
    """

    telemetry_component = "cascade"

    def __init__(
        self,
        models: Sequence[Any],
        accept: Accept | None = None,
        *,
        escalate_on: tuple[type[BaseException], ...] = (Exception,),
        count_tokens: Callable[[Any], int] | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(models, str | bytes) or not isinstance(models, Sequence):
            raise InputTypeError(
                f"models must be a sequence of (model, cost) or CascadeModel, "
                f"not {type(models).__name__}"
            )
        if len(models) == 0:
            raise ConfigurationError("invalid models=[]: a cascade needs at least one model")
        if accept is not None and not callable(accept):
            raise InputTypeError(f"accept must be a callable or None, not {type(accept).__name__}")
        if count_tokens is not None and not callable(count_tokens):
            raise InputTypeError(
                f"count_tokens must be a callable or None, not {type(count_tokens).__name__}"
            )
        if not isinstance(escalate_on, tuple) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in escalate_on
        ):
            raise InputTypeError(
                f"escalate_on must be a tuple of exception types, not {escalate_on!r:.60}"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise InputTypeError(f"name must be a non-empty str or None, not {name!r}")
        tiers: list[CascadeModel] = []
        for i, item in enumerate(models):
            if isinstance(item, CascadeModel):
                tiers.append(item)
            elif isinstance(item, tuple) and len(item) in (2, 3):
                try:
                    tiers.append(
                        CascadeModel(item[0], item[1], accept=item[2] if len(item) == 3 else None)
                    )
                except (InputTypeError, ConfigurationError) as exc:
                    raise type(exc)(f"models[{i}]: {exc}") from None
            else:
                raise InputTypeError(
                    f"models[{i}] must be (model, cost_per_call), (model, cost_per_call, "
                    f"accept) or a CascadeModel, not {item!r:.60}"
                )
        for i, t in enumerate(tiers[:-1]):
            if t.accept is None and accept is None:
                raise ConfigurationError(
                    f"invalid accept=None: models[{i}] ({t.name!r}) has no accept of its "
                    "own, so the cascade cannot decide when to escalate"
                )
        if count_tokens is None:
            for i, t in enumerate(tiers):
                if t.per_token:
                    raise ConfigurationError(
                        f"invalid count_tokens=None: models[{i}] ({t.name!r}) has a "
                        "per-token cost, so the cascade must count tokens"
                    )
        seen: dict[str, int] = {}
        names = []
        for t in tiers:
            n = seen.get(t.name, 0)
            seen[t.name] = n + 1
            names.append(t.name if n == 0 else f"{t.name}-{n + 1}")
        self.name = name or f"cascade-{next(_ids)}"
        self.models: tuple[CascadeModel, ...] = tuple(tiers)
        self._names = tuple(names)
        self._accept = accept
        self._escalate_on = escalate_on
        self._count = count_tokens
        # the query's tokens are counted only when some price depends on them
        self._count_input = any(t.cost_per_input_token for t in tiers)
        # the first async model: the sync __call__ refuses before calling any model
        self._first_async = next((i for i, t in enumerate(tiers) if t._async), None)
        self._lock = threading.Lock()
        self._c = [_Counters(f"{self.name}.{n}") for n in names]
        self._requests = 0
        self._failed = 0
        self._unaccepted = 0
        self._cost = 0.0
        self._baseline = 0.0
        registry.auto_register(self, "cascade")

    def __repr__(self) -> str:
        return f"<Cascade {self.name!r} models={list(self._names)}>"

    # ------------------------------------------------------------------ helpers

    def _tokens(self, obj: Any) -> int:
        if self._count is None:
            return 0
        n = self._count(obj)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputTypeError(f"count_tokens must return an int >= 0, it returned {n!r:.40}")
        return n

    def _accepts(self, i: int, result: Any) -> bool:
        pred = self.models[i].accept or self._accept
        return True if pred is None else bool(pred(result))

    def _record(self, i: int, ns: int, cost: float, outcome: str, last: bool) -> None:
        c = self._c[i]
        c.latency.record_ns(ns)
        with self._lock:
            c.calls += 1
            c.cost += cost
            if outcome == "accepted":
                c.accepted += 1
            elif outcome == "rejected":
                c.rejected += 1
                if not last:
                    c.escalated += 1
            else:
                c.errors += 1
                if not last:
                    c.escalated += 1

    def _finish(
        self, in_tokens: int, out_tokens: int, spent: float, ok: bool, accepted: bool
    ) -> None:
        top = self.models[-1]
        baseline = (
            top.cost_per_call
            + in_tokens * top.cost_per_input_token
            + out_tokens * top.cost_per_output_token
        )
        with self._lock:
            self._requests += 1
            self._cost += spent
            self._baseline += baseline
            if not ok:
                self._failed += 1
            elif not accepted:
                self._unaccepted += 1

    def _call_cost(self, i: int, in_tokens: int) -> float:
        m = self.models[i]
        return m.cost_per_call + in_tokens * m.cost_per_input_token

    def _fail(self, i: int, ns: int, in_tokens: int, spent: float, last: bool) -> float:
        """Record a call of models[i] that raised (charged its per-call and
        input-token cost); when ``last``, finish the request as failed."""
        cost = self._call_cost(i, in_tokens)
        spent += cost
        self._record(i, ns, cost, "error", last)
        if last:
            self._finish(in_tokens, 0, spent, False, False)
        return spent

    def _settle(self, i: int, ns: int, in_tokens: int, result: Any, spent: float) -> float | None:
        """Cost, accept and record a call of models[i] that returned
        ``result``. Returns None when the request is finished (accepted or the
        last model), else the cost spent so far. When ``count_tokens`` or
        ``accept`` raises, the call is still recorded (as an error, charged
        what was computed) and the request finished as failed before the
        exception propagates. User code runs outside the lock."""
        m, top = self.models[i], self.models[-1]
        last = i == len(self.models) - 1
        cost = self._call_cost(i, in_tokens)
        try:
            out: int | None = None
            if m.cost_per_output_token:
                out = self._tokens(result)
                cost += out * m.cost_per_output_token
            ok = self._accepts(i, result)
            base_out = 0
            if (ok or last) and top.cost_per_output_token:
                base_out = self._tokens(result) if out is None else out
        except BaseException:
            self._record(i, ns, cost, "error", True)
            self._finish(in_tokens, 0, spent + cost, False, False)
            raise
        spent += cost
        self._record(i, ns, cost, "accepted" if ok else "rejected", last)
        if ok or last:
            self._finish(in_tokens, base_out, spent, True, ok)
            return None
        return spent

    # ------------------------------------------------------------------ calls

    def __call__(self, query: Any) -> Any:
        """Run the cascade synchronously on ``query`` and return the first
        accepted result (or the last model's). Async-only models raise
        InputTypeError here, before any model runs: use :meth:`acall`."""
        if self._first_async is not None:
            i = self._first_async
            raise InputTypeError(
                f"models[{i}] ({self._names[i]!r}) is async: call the cascade with "
                "`await cascade.acall(query)`"
            )
        in_tokens = self._tokens(query) if self._count_input else 0
        spent = 0.0
        last = len(self.models) - 1
        for i, m in enumerate(self.models):
            fn = m.model
            start = time.perf_counter_ns()
            try:
                result = fn(query)
            except self._escalate_on as exc:
                spent = self._fail(i, time.perf_counter_ns() - start, in_tokens, spent, i == last)
                if i == last:
                    raise exc from None
                continue
            except BaseException:
                self._fail(i, time.perf_counter_ns() - start, in_tokens, spent, True)
                raise
            ns = time.perf_counter_ns() - start
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                self._fail(i, ns, in_tokens, spent, True)
                raise InputTypeError(
                    f"models[{i}] ({self._names[i]!r}) returned an awaitable: call the "
                    "cascade with `await cascade.acall(query)`"
                )
            so_far = self._settle(i, ns, in_tokens, result, spent)
            if so_far is None:
                return result
            spent = so_far
        raise AssertionError("unreachable")  # pragma: no cover

    async def acall(self, query: Any) -> Any:
        """Run the cascade from asyncio. Async models are awaited; sync ones
        run in a worker thread (``asyncio.to_thread``) so the event loop never
        blocks on a model."""
        in_tokens = self._tokens(query) if self._count_input else 0
        spent = 0.0
        last = len(self.models) - 1
        for i, m in enumerate(self.models):
            fn = m.model
            start = time.perf_counter_ns()
            try:
                acall = getattr(fn, "acall", None)
                if callable(acall):
                    result = await acall(query)
                elif _is_async(fn):
                    result = await fn(query)
                else:
                    result = await asyncio.to_thread(fn, query)
                    if inspect.isawaitable(result):
                        result = await result
            except self._escalate_on as exc:
                spent = self._fail(i, time.perf_counter_ns() - start, in_tokens, spent, i == last)
                if i == last:
                    raise exc from None
                continue
            except BaseException:
                self._fail(i, time.perf_counter_ns() - start, in_tokens, spent, True)
                raise
            ns = time.perf_counter_ns() - start
            so_far = self._settle(i, ns, in_tokens, result, spent)
            if so_far is None:
                return result
            spent = so_far
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """``requests``, ``errors`` (requests that raised), ``unaccepted``
        (the last model's result returned without being accepted), ``cost``
        (spent), ``baseline_cost`` (always the most expensive model),
        ``cost_saved`` (baseline - cost), ``cost_saved_ratio`` and
        ``cost_per_request``; ``models``: per model ``calls``, ``accepted``,
        ``rejected``, ``escalated``, ``errors``, ``cost`` and latency
        (``latency_p50_s``, ``latency_p99_s``, ``latency_mean_s``)."""
        lat = [(c.latency.percentiles([50.0, 99.0]), c.latency.stats()["mean"]) for c in self._c]
        with self._lock:
            models = [
                {
                    "model": n,
                    "index": i,
                    "calls": c.calls,
                    "accepted": c.accepted,
                    "rejected": c.rejected,
                    "escalated": c.escalated,
                    "errors": c.errors,
                    "cost": c.cost,
                    "latency_p50_s": lat[i][0][0],
                    "latency_p99_s": lat[i][0][1],
                    "latency_mean_s": lat[i][1],
                }
                for i, (n, c) in enumerate(zip(self._names, self._c, strict=True))
            ]
            cost, baseline, requests = self._cost, self._baseline, self._requests
            out: dict[str, Any] = {
                "name": self.name,
                "requests": requests,
                "errors": self._failed,
                "unaccepted": self._unaccepted,
            }
        out.update(
            cost=cost,
            baseline_cost=baseline,
            cost_saved=baseline - cost,
            cost_saved_ratio=(baseline - cost) / baseline if baseline else 0.0,
            cost_per_request=cost / requests if requests else 0.0,
            models=models,
        )
        return out
