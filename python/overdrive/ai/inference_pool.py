"""An inference pool: N model replicas, each behind its own :class:`~overdrive.Batcher`.

:class:`InferencePool` composes three core pieces:

- one :class:`~overdrive.Batcher` per replica, so single-item calls reach a
  model as list calls (the batch forms while the model is busy; an idle
  replica runs an item at once);
- a :class:`~overdrive.Balancer` that picks the replica for an unkeyed item
  by its load score (items in flight, queue utilisation, EWMA latency): every
  item ``acquire``\\ s its replica at submit and is ``release``\\ d with its
  latency and outcome when its batch finishes;
- a :class:`~overdrive.ShardRouter` for keyed items (``submit(x, key=...)``,
  e.g. a session id or a prompt prefix): the same key goes to the same
  replica (cache affinity: a model server's KV/prefix cache stays warm) unless
  that replica already carries more than ``load_factor`` times its fair share
  of the keyed load (bounded-load consistent hashing).

Replicas are added and removed at run time; removing one drains it: every
item it accepted runs, and a submit racing with the removal goes to another
replica. Results are exactly what calling the model on the same items gives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import inspect
import itertools
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar, cast

from .._core import Balancer, LatencyHistogram, ShardRouter
from ..batcher import Batcher
from ..exceptions import (
    BatcherClosed,
    BatchResultError,
    ConfigurationError,
    InputTypeError,
    NoBackendAvailable,
)
from ..telemetry.registry import auto_register

__all__ = ["InferencePool"]

T = TypeVar("T")
R = TypeVar("R")

#: How often (seconds) a replica reports its queue's utilisation to the balancer.
_RECONCILE_S = 0.05
_STRATEGIES = ("load_score", "least_outstanding", "p2c", "round_robin")
_pool_ids = itertools.count(1)


def _model_fn(model: object) -> Callable[[list[Any]], Any]:
    """The list call of a model: its ``predict`` method, else the model itself."""
    predict = getattr(model, "predict", None)
    if callable(predict):
        return cast("Callable[[list[Any]], Any]", predict)
    if callable(model):
        return cast("Callable[[list[Any]], Any]", model)
    raise InputTypeError(
        f"model must be a callable taking a list or have a predict(list) method, "
        f"not {type(model).__name__}"
    )


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _as_list(results: Any, n: int) -> list[Any]:
    if type(results) is not list:
        try:
            results = list(results)
        except TypeError:
            raise BatchResultError(
                f"the model must return a list of {n} results, returned {type(results).__name__}"
            ) from None
    if len(results) != n:
        raise BatchResultError(f"the model returned {len(results)} results for {n} inputs")
    return cast("list[Any]", results)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ConfigurationError(f"invalid {name}={value!r}: must be an int >= 1")
    return value


def _positive_float(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{name} must be a number, not {type(value).__name__}")
    v = float(value)
    ok = v >= 0 if allow_zero else v > 0
    if not ok or v != v or v == float("inf"):
        rel = ">=" if allow_zero else ">"
        raise ConfigurationError(f"invalid {name}={value!r}: must be a finite number {rel} 0")
    return v


# A job as the replica's batcher holds it: (submit time, input, keyed, token).
# The token is a one-element list: whoever pops it (the handler when the item
# ran, else the future's done callback when the item was cancelled, expired or
# dropped unrun) releases the item from the structure that holds it (the
# Balancer for an unkeyed item, the ShardRouter for a keyed one), exactly once.
_Job = tuple[float, Any, bool, list[None]]


def _claim(token: list[None]) -> bool:
    """Take the job's token (True once: list.pop is atomic)."""
    try:
        token.pop()
    except IndexError:
        return False
    return True


class _Counts:
    """A replica's counters (what its handler updates)."""

    __slots__ = ("batches", "errors", "items", "keyed", "lock", "next_reconcile")

    def __init__(self) -> None:
        self.batches = self.items = self.errors = self.keyed = 0
        self.next_reconcile = 0.0
        self.lock = threading.Lock()


class _Replica:
    """One model behind its own Batcher, with its counters."""

    def __init__(
        self,
        pool: InferencePool[Any, Any],
        model: object,
        name: str,
        index: int,
        weight: float,
        batcher_kwargs: Mapping[str, Any],
    ) -> None:
        self.model = model
        self.name = name
        self.index = index
        self.weight = weight
        self.removed = False
        self.counts = counts = _Counts()
        self.latency = hist = LatencyHistogram(f"{pool.name}/{name}")
        self.batch_latency = batch_hist = LatencyHistogram(f"{pool.name}/{name}/batch")
        fn = _model_fn(model)
        balancer = pool._lb
        clock = time.perf_counter
        # The handler (which the batcher's dispatcher holds) refers to the pool
        # and to this replica only weakly: a pool dropped without close() is
        # collected, and its batchers close (draining) as Batcher's do.
        pool_wr = weakref.ref(pool)
        self_wr = weakref.ref(self)

        def finish(jobs: list[_Job], started: float, ok: bool) -> None:
            now = clock()
            batch_hist.record(max(now - started, 0.0))
            lats = [max(now - j[0], 0.0) for j in jobs]
            hist.record_many(lats)
            release = balancer.release
            keyed = 0
            for j, lat in zip(jobs, lats, strict=True):
                if not _claim(j[3]):
                    continue  # its future was cancelled while it ran: released then
                if j[2]:
                    keyed += 1
                else:
                    try:
                        release(index, lat, ok)
                    except Exception:  # bookkeeping never fails a batch
                        continue
            p = pool_wr()
            router = p._router if p is not None else None
            if keyed and router is not None:
                for _ in range(keyed):
                    try:
                        router.release(name)
                    except Exception:  # the node left the ring meanwhile
                        break
            with counts.lock:
                counts.batches += 1
                counts.items += len(jobs)
                if not ok:
                    counts.errors += len(jobs)
                due = now >= counts.next_reconcile
                if due:
                    counts.next_reconcile = now + _RECONCILE_S
            if due:
                rep = self_wr()
                if rep is not None:
                    rep.reconcile()

        def lost(keyed: bool, token: list[None], _future: object) -> None:
            # The done callback of every item's future: release an item the
            # handler never finished (cancelled, expired, dropped).
            if not token or not _claim(token):
                return
            try:
                if not keyed:
                    balancer.release(index, None, True)
                    return
                p = pool_wr()
                router = p._router if p is not None else None
                if router is not None:
                    router.release(name)
            except Exception:  # the replica left meanwhile
                return

        self.lost = lost

        if _is_async(fn):
            afn = cast("Callable[[list[Any]], Awaitable[Any]]", fn)

            async def ahandler(jobs: list[_Job]) -> list[Any]:
                started = clock()
                try:
                    out = _as_list(await afn([j[1] for j in jobs]), len(jobs))
                except BaseException:
                    finish(jobs, started, False)
                    raise
                finish(jobs, started, True)
                return out

            handler: Any = ahandler
        else:

            def shandler(jobs: list[_Job]) -> list[Any]:
                started = clock()
                try:
                    out = _as_list(fn([j[1] for j in jobs]), len(jobs))
                except BaseException:
                    finish(jobs, started, False)
                    raise
                finish(jobs, started, True)
                return out

            handler = shandler
        self.batcher: Batcher[_Job, Any] = Batcher(
            handler, name=f"{pool.name}/{name}", **batcher_kwargs
        )
        self._balancer = balancer
        self._pool = pool_wr

    def reconcile(self) -> None:
        """Report the queue's utilisation to the balancer's load score (items
        dropped unrun are released by their futures' done callbacks)."""
        if self.removed:
            return
        s = self.batcher.stats()
        try:
            max_queue = self._max_queue
            self._balancer.report_queue(self.index, min(1.0, int(s["queue_depth"]) / max_queue))
        except Exception:  # removed from the balancer meanwhile
            return

    _max_queue = 10_000

    def stats(self) -> dict[str, Any]:
        s = self.batcher.stats()
        lat = self.latency
        p50, p90, p99 = lat.percentiles([50.0, 90.0, 99.0])
        b50, b99 = self.batch_latency.percentiles([50.0, 99.0])
        outstanding = int(s["submitted"]) - (
            int(s["completed"])
            + int(s["failed"])
            + int(s["expired"])
            + int(s["dropped"])
            + int(s["cancelled"])
        )
        c = self.counts
        with c.lock:
            batches, items, errors, keyed = c.batches, c.items, c.errors, c.keyed
        return {
            "name": self.name,
            "index": self.index,
            "alive": not self.removed,
            "weight": self.weight,
            "batches": batches,
            "items": items,
            "errors": errors,
            "keyed": keyed,
            "in_flight": max(outstanding, 0),
            "queue_depth": int(s["queue_depth"]),
            "mean_batch_size": (items / batches) if batches else 0.0,
            "latency_p50_s": p50,
            "latency_p90_s": p90,
            "latency_p99_s": p99,
            "latency_mean_s": lat.mean,
            "batch_latency_p50_s": b50,
            "batch_latency_p99_s": b99,
        }


class InferencePool(Generic[T, R]):
    """N model replicas, each behind its own :class:`~overdrive.Batcher`.

    ``replicas``: models (callables taking a list and returning one result per
    item, in order; or objects with such a ``predict(list)`` method; sync or
    ``async def``), as an iterable (named ``replica-0``, ``replica-1``, ...)
    or a mapping ``{name: model}``. It may be empty: add replicas later.

    Each submitted item goes to one replica: the :class:`~overdrive.Balancer`
    (``strategy``, default ``"load_score"``: items in flight, queue
    utilisation, EWMA latency) picks it, or, when a ``key`` is given, the
    :class:`~overdrive.ShardRouter` (consistent hashing with bounded loads,
    ``load_factor``) does, so the same key keeps going to the same replica.
    ``key_fn(x)`` derives the key of items submitted without one (e.g.
    ``lambda prompt: prompt[:200]``: prompts sharing a prefix share a replica,
    whose prefix cache stays warm); it returns None for "route by load".
    Results are exactly what ``model([x])[0]`` gives; a model that raises
    fails exactly the items of that batch (with its exception).

    Batcher settings (per replica): ``max_batch_size``, ``max_wait_ms``,
    ``max_queue`` (items queued per replica; a full queue blocks the
    submitter) and ``max_concurrency`` (batches one replica runs at once).

    Thread-safe and asyncio-friendly: :meth:`submit` (a
    ``concurrent.futures.Future``), :meth:`predict`, :meth:`predict_many`
    from threads; :meth:`asubmit` (an awaitable
    :class:`~overdrive.BatchFuture`), :meth:`apredict`,
    :meth:`apredict_many` from coroutines. :meth:`add_replica` and
    :meth:`remove_replica` work under load; :meth:`close` drains everything.
    :meth:`stats` reports per replica (batches, items, errors, in flight,
    latency percentiles); the pool registers itself with
    :mod:`overdrive.telemetry` as ``inference_pool``.
    """

    telemetry_component = "inference_pool"

    def __init__(
        self,
        replicas: Iterable[object] | Mapping[str, object] = (),
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 10_000,
        max_concurrency: int = 1,
        strategy: str = "load_score",
        load_factor: float = 1.25,
        key_fn: Callable[[Any], str | bytes | int | None] | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(replicas, (str, bytes)) or not isinstance(replicas, (Iterable, Mapping)):
            raise InputTypeError(
                f"replicas must be an iterable of models or a mapping name -> model, "
                f"not {type(replicas).__name__}"
            )
        if not isinstance(strategy, str):
            raise InputTypeError(f"strategy must be a str, not {type(strategy).__name__}")
        if strategy not in _STRATEGIES:
            raise ConfigurationError(
                f"invalid strategy={strategy!r}: must be one of {', '.join(_STRATEGIES)}"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise InputTypeError(f"name must be a non-empty str or None, not {name!r}")
        if key_fn is not None and not callable(key_fn):
            raise InputTypeError(f"key_fn must be callable or None, not {type(key_fn).__name__}")
        self._key_fn = key_fn
        self._load_factor = _positive_float("load_factor", load_factor)
        if self._load_factor < 1.0:
            raise ConfigurationError(f"invalid load_factor={load_factor!r}: must be >= 1.0")
        self._batcher_kwargs: dict[str, Any] = {
            "max_batch_size": _positive_int("max_batch_size", max_batch_size),
            "max_wait_ms": _positive_float("max_wait_ms", max_wait_ms, allow_zero=True),
            "max_queue": _positive_int("max_queue", max_queue),
            "max_concurrency": _positive_int("max_concurrency", max_concurrency),
        }
        self.name: str = name if name is not None else f"inference_pool-{next(_pool_ids)}"
        self.strategy = strategy
        self._lock = threading.Lock()
        self._closed = False
        # The balancer starts with one placeholder backend, removed at once
        # (it needs at least one); indices are never reused.
        self._lb = Balancer(1, strategy)
        self._lb.remove(0)
        self._router: ShardRouter | None = None
        self._by_index: dict[int, _Replica] = {}
        self._by_name: dict[str, _Replica] = {}
        self._removed: list[_Replica] = []
        self._auto_names = itertools.count()
        items: Iterable[tuple[str | None, object]]
        if isinstance(replicas, Mapping):
            items = list(replicas.items())
        else:
            items = [(None, m) for m in replicas]
        try:
            for rname, model in items:
                self.add_replica(model, name=rname)
        except BaseException:
            self.close()
            raise
        auto_register(self, "inference_pool")

    # --- replicas -----------------------------------------------------------------

    def add_replica(self, model: object, *, name: str | None = None, weight: float = 1.0) -> str:
        """Add a replica (at run time too) and return its name.

        ``name`` defaults to ``replica-<n>``; ``weight`` scales its share of
        the balancer's and the router's load. About 1/N of the keys move to
        a new replica. ConfigurationError for a name already in use or a
        closed pool, InputTypeError for a model that is not callable."""
        _model_fn(model)
        if name is not None and (not isinstance(name, str) or not name):
            raise InputTypeError(f"name must be a non-empty str or None, not {name!r}")
        w = _positive_float("weight", weight)
        with self._lock:
            if self._closed:
                raise BatcherClosed(f"the inference pool {self.name!r} is closed")
            if name is None:
                name = f"replica-{next(self._auto_names)}"
                while name in self._by_name:
                    name = f"replica-{next(self._auto_names)}"
            elif name in self._by_name:
                raise ConfigurationError(f"invalid name={name!r}: a replica of that name exists")
            index = self._lb.add(w)
            try:
                rep = _Replica(self, model, name, index, w, self._batcher_kwargs)
            except BaseException:
                self._lb.remove(index)
                raise
            rep._max_queue = int(self._batcher_kwargs["max_queue"])
            self._by_index[index] = rep
            self._by_name[name] = rep
            if self._router is None:
                self._router = ShardRouter({name: w}, self._load_factor)
            else:
                self._router.add_node(name, w)
        return name

    def remove_replica(self, name: str, *, timeout: float | None = None) -> None:
        """Take a replica out and drain it: no new item goes to it, and every
        item it already accepted runs (its callers get their results). Blocks
        until the drain ends (``timeout`` seconds at most: TimeoutError, the
        drain carries on). Submits racing with the removal go to another
        replica. ConfigurationError for an unknown name."""
        if not isinstance(name, str):
            raise InputTypeError(f"name must be a str, not {type(name).__name__}")
        with self._lock:
            rep = self._by_name.pop(name, None)
            if rep is None:
                raise ConfigurationError(f"invalid name={name!r}: no replica of that name")
            rep.removed = True
            del self._by_index[rep.index]
            self._lb.remove(rep.index)
            router = self._router
            if router is not None:
                if len(router) <= 1:
                    self._router = None
                else:
                    router.remove_node(name)
            self._removed.append(rep)
            del self._removed[:-64]
        self._close_batcher(rep.batcher, timeout)

    async def aremove_replica(self, name: str, *, timeout: float | None = None) -> None:
        """:meth:`remove_replica` from a coroutine (the drain runs in a thread)."""
        await asyncio.to_thread(self.remove_replica, name, timeout=timeout)

    @staticmethod
    def _close_batcher(batcher: Batcher[Any, Any], timeout: float | None) -> None:
        if timeout is None:
            batcher.close()
            return
        t = threading.Thread(target=batcher.close, name="overdrive-pool-drain", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError(f"the replica did not drain within timeout={timeout!r} s")

    @property
    def replicas(self) -> list[str]:
        """The names of the live replicas, in the order they were added."""
        with self._lock:
            return list(self._by_name)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_name)

    # --- submitting ---------------------------------------------------------------

    def _choose(self, key: object) -> tuple[_Replica, bool]:
        if key is None:
            while True:
                idx = self._lb.acquire()  # NoBackendAvailable when there is none
                rep = self._by_index.get(idx)
                if rep is not None:
                    return rep, False
                self._lb.release(idx, None, True)  # removed between pick and lookup
        if not isinstance(key, (str, bytes, int)) or isinstance(key, bool):
            raise InputTypeError(f"key must be a str, bytes, int or None, not {type(key).__name__}")
        while True:
            router = self._router
            if router is None:
                raise NoBackendAvailable(f"the inference pool {self.name!r} has no replica")
            node = router.route(key)
            rep = self._by_name.get(node)
            if rep is not None:
                return rep, True
            # the replica left meanwhile: route again

    def _unchoose(self, rep: _Replica, keyed: bool) -> None:
        if keyed:
            router = self._router
            if router is not None:
                try:
                    router.release(rep.name)
                except Exception:  # the node left the ring meanwhile
                    return
        elif not rep.removed:
            self._lb.release(rep.index, None, True)

    @staticmethod
    def _accepted(rep: _Replica, keyed: bool, token: list[None], fut: Any) -> None:
        """The replica's batcher took the item: count it, and have its future
        release it if it ends without running (cancelled, expired, dropped)."""
        if keyed:
            with rep.counts.lock:
                rep.counts.keyed += 1
        fut.add_done_callback(functools.partial(rep.lost, keyed, token))

    def _closed_error(self) -> BatcherClosed:
        return BatcherClosed(f"the inference pool {self.name!r} is closed")

    def submit(self, x: T, key: str | bytes | int | None = None) -> cf.Future[R]:
        """Queue ``x`` on one replica; a ``concurrent.futures.Future`` of its result.

        ``key``: route by consistent hashing (the same key goes to the same
        replica while its load allows) instead of by load. Raises
        BatcherClosed after :meth:`close`, NoBackendAvailable when the pool
        has no replica; blocks while the chosen replica's queue is full."""
        return cast("cf.Future[R]", self._submit(x, key, False))

    def asubmit(self, x: T, key: str | bytes | int | None = None) -> Awaitable[R]:
        """:meth:`submit` from a coroutine: an awaitable (a
        :class:`~overdrive.BatchFuture` of the running loop) that never
        blocks the loop."""
        return cast("Awaitable[R]", self._submit(x, key, True))

    def _submit(self, x: T, key: str | bytes | int | None, from_loop: bool) -> Any:
        """One item to a chosen replica's batcher (``submit_async`` when
        ``from_loop``); retried on another replica if the chosen one was removed."""
        if self._closed:
            raise self._closed_error()
        if key is None and self._key_fn is not None:
            key = self._key_fn(x)
        while True:
            rep, keyed = self._choose(key)
            token: list[None] = [None]
            job = (time.perf_counter(), x, keyed, token)
            try:
                fut = rep.batcher.submit_async(job) if from_loop else rep.batcher.submit(job)
            except BatcherClosed:
                self._unchoose(rep, keyed)
                if self._closed or not rep.removed:
                    raise self._closed_error() from None
            except BaseException:
                self._unchoose(rep, keyed)
                raise
            else:
                self._accepted(rep, keyed, token, fut)
                return fut

    def predict(
        self, x: T, key: str | bytes | int | None = None, *, timeout: float | None = None
    ) -> R:
        """The result for one input (blocking; ``timeout`` seconds at most)."""
        return self.submit(x, key).result(timeout)

    def predict_many(
        self,
        xs: Iterable[T],
        key: str | bytes | int | None = None,
        *,
        timeout: float | None = None,
    ) -> list[R]:
        """The results for many inputs, in order (submitted at once, so they
        batch); the first failed item's exception is raised."""
        if isinstance(xs, (str, bytes)) or not isinstance(xs, Iterable):
            raise InputTypeError(f"xs must be an iterable of inputs, not {type(xs).__name__}")
        futs = [self.submit(x, key) for x in xs]
        return [f.result(timeout) for f in futs]

    async def apredict(self, x: T, key: str | bytes | int | None = None) -> R:
        """The result for one input, awaited."""
        return await self.asubmit(x, key)

    async def apredict_many(self, xs: Iterable[T], key: str | bytes | int | None = None) -> list[R]:
        """The results for many inputs, in order, awaited."""
        if isinstance(xs, (str, bytes)) or not isinstance(xs, Iterable):
            raise InputTypeError(f"xs must be an iterable of inputs, not {type(xs).__name__}")
        futs = [self.asubmit(x, key) for x in xs]
        return list(await asyncio.gather(*futs))

    # --- lifecycle ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop accepting and drain every replica: everything accepted runs."""
        with self._lock:
            self._closed = True
            reps = list(self._by_name.values())
        for rep in reps:
            rep.batcher.close()

    async def aclose(self) -> None:
        """:meth:`close`, awaitable (the drains run in a thread)."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> InferencePool[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> InferencePool[T, R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"InferencePool(name={self.name!r}, replicas={self.replicas!r}, "
            f"strategy={self.strategy!r}, closed={self._closed})"
        )

    # --- stats --------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Totals and, per replica (removed ones too, the last 64, with
        ``alive`` False): batches, items, errors, keyed items, items in flight,
        queue depth, mean batch size and latency percentiles in seconds (per
        item, from submit to result; and per batch, the model call)."""
        with self._lock:
            reps = list(self._by_name.values()) + list(self._removed)
        for rep in reps:
            if not rep.removed:
                rep.reconcile()
        per = [rep.stats() for rep in reps]
        live = [p for p in per if p["alive"]]
        batches = sum(p["batches"] for p in per)
        items = sum(p["items"] for p in per)
        router = self._router
        return {
            "name": self.name,
            "strategy": self.strategy,
            "replica_count": len(live),
            "batches": batches,
            "items": items,
            "errors": sum(p["errors"] for p in per),
            "in_flight": sum(p["in_flight"] for p in per),
            "mean_batch_size": (items / batches) if batches else 0.0,
            "router_overflows": router.stats()["overflows"] if router is not None else 0,
            "closed": self._closed,
            "replicas": per,
        }
