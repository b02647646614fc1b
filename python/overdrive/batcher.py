"""Request batching over the Rust queue: :class:`Batcher` and :func:`batched`.

- :class:`Batcher` groups single-item calls into batches for a handler that
  takes a list and returns a list of the same length. The queue, its timing
  and batch formation run in Rust (``overdrive._core.BatchQueue``); this
  module calls the handler and hands each caller its own result, through a
  ``concurrent.futures.Future`` (:meth:`Batcher.submit`) or an awaitable
  (:meth:`Batcher.submit_async`).
- :func:`batched` turns ``def f(items: list) -> list`` (or ``async def``) into
  a function callers call with one item.

Formation is *pull*: a batch forms when an execution slot is free and grows
while the handler is busy. When nothing runs, waiting items go at once, so
``max_wait_ms`` is an upper bound, never a fixed delay.

Where the handler runs:

- a plain function runs in dispatcher threads: at most ``max_concurrency``
  handler calls at once, plus one thread that resolves a finished batch's
  futures while the next batch already runs. Futures of asyncio callers
  are resolved with one ``loop.call_soon_threadsafe`` per batch (per
  loop), not one per item.
- an ``async def`` handler runs on an event loop: the loop of the first
  ``submit_async`` caller, or a private loop thread if the first caller uses
  ``submit`` from a thread.

The dispatcher (threads or task) holds the handler, never the
:class:`Batcher`: a Batcher nobody references any more is collected, which
closes its queue as ``close()`` would; everything it accepted still runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import functools
import inspect
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, Literal, TypeVar, cast, overload

from . import _batcher_lifecycle as lifecycle
from ._core import Batch, BatchFuture, BatchQueue, BatchReceiver, _forget_running_loop
from .exceptions import BatcherClosed, BatchResultError, InputTypeError, QueueFull
from .telemetry.registry import auto_register

__all__ = ["BatchFuture", "Batcher", "batched"]

log = lifecycle.log

T = TypeVar("T")
R = TypeVar("R")
OnFull = Literal["block", "reject", "drop_oldest"]

_get_running_loop = asyncio._get_running_loop

# submit_async caches the running loop per thread (see _core); a forked child
# has no running loop, as asyncio says there.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_running_loop)


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _being_cancelled() -> bool:
    """True inside a task that is being cancelled (its loop shuts down)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _check(results: Any, n: int) -> list[Any]:
    if type(results) is not list:
        try:
            results = list(results)
        except TypeError:
            raise BatchResultError(
                f"the handler must return a list of {n} results, returned {type(results).__name__}"
            ) from None
    if len(results) != n:
        raise BatchResultError(
            f"the handler returned {len(results)} results for a batch of {n} items"
        )
    return cast("list[Any]", results)


class Batcher(lifecycle.BatcherBase, Generic[T, R]):
    """Batch single-item calls into list calls of ``handler``.

    ``handler(items: list) -> list`` returns one result per item, in order (a
    slot may hold an ``Exception`` instance to fail just that item). It may be
    ``async def``. See the module docstring and README "Batching".

    Submitting (both run in Rust):

    - ``submit(item, priority=0, deadline_ms=None, key=None)`` returns a
      ``concurrent.futures.Future``; it blocks while the queue is full under
      ``on_full="block"`` (up to ``block_timeout`` seconds; Ctrl-C gets
      through).
    - ``submit_async(item, priority=0, deadline_ms=None, key=None)`` returns
      a :class:`~overdrive.BatchFuture` of the running loop (asyncio's future
      protocol: await it, gather it, ``wait_for`` it, cancel it) and never
      blocks the loop. A batch's futures are settled by one loop callback
      that wakes the awaiting tasks directly, not one ``call_soon`` each.

    Both raise :class:`~overdrive.exceptions.BatcherClosed` after ``close()``,
    :class:`~overdrive.exceptions.QueueFull` for a full queue (per
    ``on_full``; ``"drop_oldest"`` fails the evicted item's future with it)
    and :class:`~overdrive.exceptions.DeadlineExceeded` when admission control
    predicts the deadline cannot be met. An item whose ``deadline_ms`` passes
    while queued fails with ``DeadlineExceeded`` and never reaches the handler;
    a cancelled future's item is dropped before the handler sees it. Items
    with different ``key`` never share a batch; higher ``priority`` goes first.

    A handler that raises fails the items of its batch with that exception,
    ``SystemExit`` and ``KeyboardInterrupt`` included (their callers get them,
    as a direct call would give them); the dispatcher carries on.

    Parameters: ``max_batch_size``; ``max_wait_ms`` (upper bound on the oldest
    item's wait while a slot is free); ``max_queue`` and ``on_full``
    (``"block"``, ``"reject"``, ``"drop_oldest"``); ``weigher(item) -> int``
    with ``max_batch_weight`` (an item heavier than the limit runs alone);
    ``max_concurrency`` batches at once; ``adaptive`` (learn latency
    ``a + b*n``; with ``latency_target_ms``, cap the batch so its predicted
    time meets it; halve on failure, AIMD); ``aging_ms`` (a waiting item gains
    one priority level per ``aging_ms``); ``admission`` (reject at submit an
    item whose predicted completion is past its deadline);
    ``retry_individually`` (re-run a failed batch item by item, isolating a
    poison item); ``atexit_timeout_s`` (at interpreter exit, how long a batcher
    that was never closed may take to finish what it accepted; what is left
    then is abandoned and counted in a warning on the ``overdrive.batching``
    logger).

    Lifecycle: ``close()`` (or ``async with`` / ``aclose()``) stops accepting
    and runs everything accepted. A Batcher dropped without ``close()`` is
    closed when it is collected (the same: nothing accepted is lost, then its
    threads stop) -- unless its handler refers to it, which keeps it alive
    until ``close()`` or exit.
    """

    submit: Callable[..., cf.Future[R]]
    submit_async: Callable[..., Awaitable[R]]
    _q: BatchQueue
    _engine: _Dispatcher

    def __init__(
        self,
        handler: Callable[[list[T]], Sequence[R]] | Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 10_000,
        on_full: OnFull = "block",
        weigher: Callable[[T], int] | None = None,
        max_batch_weight: int | None = None,
        max_concurrency: int = 1,
        adaptive: bool = False,
        latency_target_ms: float | None = None,
        aging_ms: float = 100.0,
        admission: bool = False,
        retry_individually: bool = False,
        block_timeout: float | None = None,
        name: str | None = None,
        atexit_timeout_s: float = lifecycle.DEFAULT_ATEXIT_TIMEOUT_S,
    ) -> None:
        if not callable(handler):
            raise InputTypeError(f"handler must be callable, not {type(handler).__name__}")
        if weigher is not None and not callable(weigher):
            raise InputTypeError(f"weigher must be callable or None, not {type(weigher).__name__}")
        self.name = lifecycle.default_name(name, "batcher")
        exit_timeout = lifecycle.non_negative("atexit_timeout_s", atexit_timeout_s)
        self._q = BatchQueue(
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            on_full=on_full,
            max_batch_weight=max_batch_weight,
            max_concurrency=max_concurrency,
            adaptive=adaptive,
            latency_target_ms=latency_target_ms,
            aging_ms=aging_ms,
            admission=admission,
            weigher=weigher,
            block_timeout=block_timeout,
        )
        d = _Dispatcher(
            handler,
            self._q.receiver(),
            name=self.name,
            max_concurrency=max_concurrency,
            retry=retry_individually,
            block_timeout=block_timeout,
            atexit_timeout_s=exit_timeout,
        )
        self._engine = d
        self._is_async = d.is_async
        self.submit = self._q.submit
        self.submit_async = self._q.submit_async
        # The hooks are the dispatcher's: never this object, so that it can
        # be collected while the dispatcher drains.
        self._q.set_hooks(
            foreign=d.foreign if d.is_async else None,
            full=d.submit_waiting_task if on_full == "block" else None,
            dropped=d.kick_closed if d.is_async else None,
        )
        d.start()
        auto_register(self, "batcher")

    def flush(self) -> None:
        """Dispatch everything queued so far as soon as a slot is free."""
        self._q.flush()
        self._engine.kick()

    async def aclose(self) -> None:
        """Like :meth:`close`, awaitable from a coroutine (also from inside
        the async handler's own event loop, where ``close()`` cannot wait)."""
        self._q.close()
        await self._engine.ajoin()

    async def __aenter__(self) -> Batcher[T, R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def stats(self) -> dict[str, Any]:
        """Counters: submitted, completed, failed, expired, rejected, dropped,
        cancelled, batches, batch-size distribution, queue-wait and handler-time
        percentiles (seconds), flush reasons, queue depth, lanes (keys with
        queued items) and keys (key objects remembered), in-flight batches and
        the adaptive model's estimate (``a_s + b_s_per_item * n``)."""
        s = dict(self._q.stats())
        s["name"] = self.name
        s["closed"] = self.closed
        s["handler"] = "async" if self._is_async else "sync"
        return s


class _Dispatcher:
    """Runs a Batcher's handler on the batches of its queue (through the
    queue's receiver handle): threads for a sync handler, an event-loop task
    for an ``async def`` one. It never refers to the Batcher."""

    unit = "items"

    def __init__(
        self,
        handler: Callable[..., Any],
        rx: BatchReceiver,
        *,
        name: str,
        max_concurrency: int,
        retry: bool,
        block_timeout: float | None,
        atexit_timeout_s: float,
    ) -> None:
        self.handler = handler
        self.is_async = _is_async_callable(handler)
        self.name = name
        self.atexit_timeout_s = atexit_timeout_s
        self._rx = rx
        self._retry = retry
        self._max_concurrency = max_concurrency
        self._block_timeout = block_timeout
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # asyncio-handler mode: the loop the dispatcher task runs on.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._own_loop_thread: threading.Thread | None = None
        self._running_tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        lifecycle.register(self)
        if self.is_async:
            return  # bound to a loop by the first submit
        # One dispatcher per slot, plus one thread that resolves finished
        # batches' futures: a dispatcher whose handler call returns frees
        # its slot and starts the next due batch itself, at once (no thread
        # wake-up between two handler calls), leaving the futures of the
        # finished batch to the resolver.
        self._resolve_q: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._dispatchers_left = self._max_concurrency
        for i in range(self._max_concurrency):
            t = threading.Thread(
                target=self._thread_dispatch, name=f"overdrive-{self.name}-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)
        self._resolver = threading.Thread(
            target=self._resolve_loop, name=f"overdrive-{self.name}-resolve", daemon=True
        )
        self._resolver.start()

    @property
    def outstanding(self) -> int:
        return int(self._rx.outstanding)

    def submit_waiting_task(self, *args: Any) -> asyncio.Task[Any]:
        """What ``submit_async`` returns for a full ``block`` queue (the hook
        gets ``submit_waiting``'s arguments): a task (a future, like the
        BatchFuture it returns otherwise) that waits for room and then for
        the result; cancelling it withdraws the item."""
        return asyncio.get_running_loop().create_task(self.submit_waiting(*args))

    async def submit_waiting(
        self,
        q: BatchQueue,
        item: Any,
        priority: int,
        deadline_ms: float | None,
        key: Hashable | None,
    ) -> Any:
        """An async submit into a full ``block`` queue: wait for room without
        blocking the loop (up to ``block_timeout``)."""
        start = time.monotonic()
        pause = 0.0005
        while True:
            await asyncio.sleep(pause)
            try:
                fut = q.submit_async(item, priority, deadline_ms, key, wait=False)
            except QueueFull:
                waited = time.monotonic() - start
                if self._block_timeout is not None and waited >= self._block_timeout:
                    raise
                pause = min(pause * 2, 0.02)
                continue
            return await fut

    def kick(self) -> None:
        """Make an asyncio dispatcher look at the queue now."""
        if self.is_async and self._loop is not None:
            self._kick_from_anywhere(self._loop)

    def kick_closed(self) -> None:
        """The queue closed with nobody waiting for the drain (the Batcher
        was dropped, or the interpreter exits): make the asyncio dispatcher
        drain it, on a private loop if its own is gone."""
        if not self.is_async:
            return
        loop = self._live_loop()
        if loop is not None:
            self._kick_from_anywhere(loop)
        elif self._pending():
            self._bind_loop(None, private=True)

    def _live_loop(self) -> asyncio.AbstractEventLoop | None:
        """The bound loop if it runs (or is the private one, about to)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        return loop if loop.is_running() or loop is self._own_loop else None

    def _pending(self) -> bool:
        """Items queued or running."""
        return bool(self._rx.outstanding)

    def begin_close(self) -> None:
        self._rx.close()
        self.kick_closed()

    # --- the sync (thread) dispatcher ----------------------------------------

    def _thread_dispatch(self) -> None:
        try:
            self._dispatch_batches()
        finally:
            with self._lock:
                self._dispatchers_left -= 1
                last = self._dispatchers_left == 0
            if last:
                # Nothing more can be deferred: the resolver finishes what it
                # holds, then stops.
                self._resolve_q.put(None)

    def _dispatch_batches(self) -> None:
        next_batch = self._rx.next
        poll = self._rx.poll
        defer = self._resolve_q.put
        while True:
            got = next_batch()
            if got is None:
                return
            items, batch, _reason, _wait = got
            while batch is not None:
                finished = self._run_sync(items, batch)
                if finished is None:
                    break
                # The slot is free: if a batch is due, run it now from this
                # thread and let the resolver hand out the finished results.
                got = poll()
                if got is None or got[1] is None:
                    finished.resolve()
                    if got is None:
                        return
                    break
                defer(finished)
                items, batch = got[0], got[1]

    def _resolve_loop(self) -> None:
        get = self._resolve_q.get
        while True:
            finished = get()
            if finished is None:
                lifecycle.unregister(self)
                return
            try:
                finished.resolve()
            except BaseException:  # pragma: no cover - resolve does not call user code
                log.exception("%s: resolving a batch failed", self.name)

    def _call_one_sync(self, item: Any) -> Any:
        try:
            return _check(self.handler([item]), 1)[0]
        except BaseException as e:
            return e

    def _run_sync(self, items: list[Any], batch: Batch) -> Batch | None:
        """Run one batch; returns it if its futures still need ``resolve()``."""
        start = time.perf_counter()
        try:
            outcomes = _check(self.handler(items), len(items))
        except Exception as e:
            if self._retry and len(items) > 1:
                outcomes = [self._call_one_sync(x) for x in items]
                batch.finish(outcomes, time.perf_counter() - start, False)
            else:
                batch.fail(e, time.perf_counter() - start)
            return None
        except BaseException as e:
            # SystemExit, KeyboardInterrupt, ...: this batch's callers get it
            # (a direct call would have raised it to them); no retry, and the
            # dispatcher carries on.
            batch.fail(e, time.perf_counter() - start)
            return None
        batch.complete(outcomes, time.perf_counter() - start)
        return batch

    # --- the asyncio dispatcher -----------------------------------------------

    def foreign(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """A push from outside the dispatch loop (another loop, or a thread)."""
        self._kick_from_anywhere(self._bind_loop(loop))

    def _bind_loop(
        self, loop: asyncio.AbstractEventLoop | None, *, private: bool = False
    ) -> asyncio.AbstractEventLoop:
        """The loop the async handler runs on: keep the bound one while it
        lives (and runs, unless ``loop`` is None), else bind ``loop``, else
        (or if ``private``) a private loop thread."""
        with self._lock:
            cur = self._loop
            if (
                cur is not None
                and not cur.is_closed()
                and (cur is self._own_loop or (not private and (loop is None or cur.is_running())))
            ):
                return cur
            if loop is None or private:
                loop = self._start_own_loop()
            self._loop = loop
            self._rx.set_dispatch_loop(loop)
            bound = loop

        def start() -> None:
            self._task = bound.create_task(self._loop_dispatch())

        if _get_running_loop() is bound:
            start()
        else:
            bound.call_soon_threadsafe(start)
        return bound

    def _start_own_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()

        def run() -> None:
            try:
                loop.run_forever()
            finally:
                loop.close()

        t = threading.Thread(target=run, name=f"overdrive-{self.name}-loop", daemon=True)
        t.start()
        self._own_loop = loop
        self._own_loop_thread = t
        return loop

    def _kick_from_anywhere(self, loop: asyncio.AbstractEventLoop) -> None:
        if _get_running_loop() is loop:
            self._rx.wake()
        else:
            # A closed loop raises RuntimeError: the next submit rebinds.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._rx.wake)

    async def _loop_dispatch(self) -> None:
        rx = self._rx
        poll = rx.poll
        loop = asyncio.get_running_loop()
        while True:
            got = poll()
            if got is None:
                break
            items, batch, _reason, wait = got
            if batch is not None:
                if self._max_concurrency == 1:
                    await self._run_async(items, batch, loop)
                else:
                    t = loop.create_task(self._run_async(items, batch, loop))
                    self._running_tasks.add(t)
                    t.add_done_callback(self._task_done)
                continue
            if wait is None or wait == 0.0:
                continue
            w: asyncio.Future[None] = loop.create_future()
            rx.arm(w)
            timer = loop.call_later(wait, rx.wake) if wait > 0 else None
            try:
                await w
            finally:
                if timer is not None:
                    timer.cancel()
        if self._running_tasks:
            await asyncio.gather(*self._running_tasks, return_exceptions=True)
        lifecycle.unregister(self)
        # Closed and drained: a private loop has nothing left to run (stopped
        # after this task's done callbacks, which are scheduled next).
        if loop is self._own_loop:
            loop.call_soon(loop.stop)

    def _task_done(self, t: asyncio.Task[None]) -> None:
        self._running_tasks.discard(t)
        self._rx.wake()

    async def _call_one_async(self, item: Any) -> Any:
        try:
            res = self.handler([item])
            if inspect.isawaitable(res):
                res = await res
            return _check(res, 1)[0]
        except asyncio.CancelledError as e:
            if _being_cancelled():
                raise
            return e
        except BaseException as e:
            return e

    async def _run_async(
        self, items: list[Any], batch: Batch, loop: asyncio.AbstractEventLoop
    ) -> None:
        start = time.perf_counter()
        try:
            res = self.handler(items)
            if inspect.isawaitable(res):
                res = await res
            outcomes = _check(res, len(items))
        except Exception as e:
            if self._retry and len(items) > 1:
                outcomes = [await self._call_one_async(x) for x in items]
                batch.finish(outcomes, time.perf_counter() - start, False, loop)
            else:
                batch.fail(e, time.perf_counter() - start, loop)
            return
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError) and _being_cancelled():
                # This task is cancelled (its loop shuts down): stop here.
                closed = BatcherClosed("the dispatcher was cancelled while this batch ran")
                batch.fail(closed, time.perf_counter() - start, loop)
                raise
            # SystemExit, KeyboardInterrupt, ...: this batch's callers get it;
            # the dispatcher carries on.
            batch.fail(e, time.perf_counter() - start, loop)
            return
        batch.finish(outcomes, time.perf_counter() - start, True, loop)

    # --- waiting for the drain ------------------------------------------------

    def join(self, timeout: float | None) -> None:
        """After the queue closed: wait up to ``timeout`` seconds (None: until
        done) for every accepted item to run, and stop the threads."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        me = threading.current_thread()
        if not self.is_async:
            for t in self._threads:
                if t is not me:
                    t.join(left())
            # The resolver stops after the last dispatcher (see _thread_dispatch).
            if me is not self._resolver and me not in self._threads:
                self._resolver.join(left())
            return
        loop = self._live_loop()
        if loop is None:
            if not self._pending():
                lifecycle.unregister(self)
                return
            # The loop is gone (or idle): drain on a private loop thread.
            loop = self._bind_loop(None, private=True)
        if _get_running_loop() is loop:
            self._rx.wake()
            return
        if loop is self._own_loop:
            # The task stops its private loop once drained: wait for that.
            self._kick_from_anywhere(loop)
            own = self._own_loop_thread
            if own is not None:
                own.join(left())
            return
        done = threading.Event()

        def watch() -> None:
            self._rx.wake()
            task = self._task
            if task is None or task.done():
                done.set()
            else:
                task.add_done_callback(lambda _t: done.set())

        try:
            loop.call_soon_threadsafe(watch)
        except RuntimeError:  # closed meanwhile: it drained
            return
        done.wait(left())

    async def ajoin(self) -> None:
        """``join`` from a coroutine."""
        loop = asyncio.get_running_loop()
        if not self.is_async:
            await loop.run_in_executor(None, self.join, None)
            return
        if self._live_loop() is None and self._pending():
            self._bind_loop(loop)
        if self._loop is loop:
            self._rx.wake()
            if self._task is not None:
                await self._task
        elif self._loop is not None:
            await loop.run_in_executor(None, self.join, None)
        else:
            lifecycle.unregister(self)


# --- @batched -------------------------------------------------------------------


@overload
def batched(fn: Callable[[list[T]], Sequence[R]], /, **options: Any) -> Callable[[T], R]: ...
@overload
def batched(fn: None = None, /, **options: Any) -> Callable[[Callable[..., Any]], Any]: ...
def batched(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Decorate ``def f(items: list) -> list`` (or ``async def``) so callers
    call ``f(item)``: a sync ``f`` blocks its caller for the result, an async
    ``f`` is awaited. Options are :class:`Batcher`'s. The wrapper exposes
    ``.batcher``, ``.submit``, ``.submit_async`` (await a sync ``f`` from a
    coroutine), ``.flush``, ``.close`` and ``.stats``.
    """

    def wrap(f: Callable[..., Any]) -> Any:
        opts = dict(options)
        b: Batcher[Any, Any] = Batcher(f, name=opts.pop("name", f.__name__), **opts)
        wrapper: Any
        if b._is_async:

            async def call_async(item: Any, **kw: Any) -> Any:
                return await b.submit_async(item, **kw)

            wrapper = call_async
        else:

            def call_sync(item: Any, **kw: Any) -> Any:
                return b.submit(item, **kw).result()

            wrapper = call_sync
        functools.update_wrapper(wrapper, f)
        wrapper.batcher = b
        wrapper.submit = b.submit
        wrapper.submit_async = b.submit_async
        wrapper.flush = b.flush
        wrapper.close = b.close
        wrapper.stats = b.stats
        return wrapper

    if fn is not None:
        return wrap(fn)
    return wrap
