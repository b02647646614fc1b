"""WorkerPool: a drop-in for :class:`concurrent.futures.ThreadPoolExecutor`
whose worker threads live in the Rust core (idle workers wait without the
GIL), with priorities (higher first, FIFO within a level, aging), a bounded
queue with backpressure, and autoscaling between ``min_workers`` and
``max_workers``.

Fork: a :class:`WorkerPool` does not survive ``os.fork()``. In the child its
worker threads do not exist, so the pool refuses new tasks with
:class:`~overdrive.exceptions.WorkerPoolShutdown` and ``shutdown()`` returns at
once; make a new pool in the child.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures._base import PENDING
from typing import Any, Literal, TypeVar

from ._args import int_or_none, seconds_or_none
from ._core import TaskHandle, WorkerPoolCore
from .exceptions import ConfigurationError, InputTypeError, WorkerPoolShutdown
from .telemetry.registry import auto_register

__all__ = ["WorkerPool", "default_bounds"]

T = TypeVar("T")

# Live pools, weakly: at exit every live pool's workers are joined before the
# interpreter finalises (as ThreadPoolExecutor's threads are); a pool dropped
# without shutdown() is closed by its native half when collected (its queued
# tasks still run) instead of keeping its threads for the life of the process.
_live_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
_live_lock = threading.Lock()


def default_bounds(cores: int | None = None) -> tuple[int, int]:
    """The default ``(min_workers, max_workers)``: 2x and 4x the CPU count."""
    n = max(1, cores if cores is not None else (os.cpu_count() or 1))
    return 2 * n, 4 * n


class _PoolFuture(Future[T]):
    """A :class:`concurrent.futures.Future` whose waiter runs the task itself
    when no worker has started it yet (``help_on_wait``): waiting on a queued
    task costs no thread hand-off, and a task that waits on another task's
    future can never deadlock a full pool."""

    _od_task: TaskHandle | None = None

    def _help(self) -> None:
        task = self._od_task
        if task is not None and self._state == PENDING:
            task.run_inline()

    def result(self, timeout: float | None = None) -> T:
        self._help()
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._help()
        return super().exception(timeout)


class WorkerPool(Executor):
    """A ThreadPoolExecutor drop-in whose threads are managed by the Rust core.

    ``submit(fn, *args, priority=0, **kwargs)`` returns a
    :class:`concurrent.futures.Future`; ``map``, ``shutdown(wait, cancel_futures=)``
    and ``with`` work as in the standard library. Higher ``priority`` runs
    first, FIFO within a level; a task waiting ``aging_s`` seconds gains one
    level (``aging_s=None``: strict priorities).

    Workers start on demand up to ``min_workers`` (default 2x cores) and scale
    up to ``max_workers`` (default 4x cores) while more than ``scale_up_depth``
    tasks wait or more than ``scale_up_util`` of workers are busy; one worker
    retires when peak utilisation stays below ``scale_down_util`` for
    ``scale_down_window_s``.

    With ``max_queue > 0`` the queue is bounded: ``on_full="block"`` makes
    ``submit`` wait (GIL released) up to ``full_timeout_s`` (None: forever),
    ``on_full="reject"`` raises :class:`~overdrive.exceptions.WorkerQueueFull`
    at once. A task that raises fails only its own future. For asyncio use
    ``await pool.submit_async(fn, ...)`` or ``asyncio.wrap_future(pool.submit(...))``.

    ``help_on_wait=True`` (the default): ``future.result()`` / ``.exception()``
    on a task that no worker has started yet runs it on the waiting thread
    (as Java's ForkJoinPool does on join), so a submit-then-wait costs no
    thread hand-off and nested waits cannot deadlock. The task then runs on
    the caller's thread, and ``result(timeout)`` returns when the task is done
    even if that takes longer than ``timeout``: pass ``help_on_wait=False`` if
    tasks rely on running in a pool thread (thread-locals, thread names) or
    callers rely on the timeout.
    """

    def __init__(
        self,
        min_workers: int | None = None,
        max_workers: int | None = None,
        *,
        max_queue: int = 0,
        on_full: Literal["block", "reject"] = "block",
        full_timeout_s: float | None = None,
        aging_s: float | None = 1.0,
        scale_up_depth: int = 10,
        scale_up_util: float = 0.8,
        scale_down_util: float = 0.3,
        scale_down_window_s: float = 10.0,
        thread_name_prefix: str = "overdrive-worker",
        help_on_wait: bool = True,
    ) -> None:
        # Types checked before the arithmetic; ranges by the native half.
        min_workers = int_or_none("min_workers", min_workers)
        max_workers = int_or_none("max_workers", max_workers)
        lo, hi = default_bounds()
        if max_workers is None:
            max_workers = max(hi, min_workers or 0)
        if min_workers is None:
            min_workers = min(lo, max_workers)
        if on_full not in ("block", "reject"):
            raise ConfigurationError(f"invalid on_full={on_full!r}: must be 'block' or 'reject'")
        self._block = on_full == "block"
        self._help = help_on_wait
        # inf waits forever, like None.
        self._full_timeout = seconds_or_none(
            "full_timeout_s", full_timeout_s, inf_waits_forever=True
        )
        self._core = WorkerPoolCore(
            min_workers,
            max_workers,
            max_queue=max_queue,
            aging_s=aging_s,
            scale_up_depth=scale_up_depth,
            scale_up_util=scale_up_util,
            scale_down_util=scale_down_util,
            scale_down_window_s=scale_down_window_s,
            name=thread_name_prefix,
        )
        self._pid = os.getpid()
        self._shutdown = False
        with _live_lock:
            _live_pools.add(self)
        auto_register(self, "worker_pool")

    @property
    def min_workers(self) -> int:
        """Workers kept when idle."""
        return self._core.bounds[0]

    @property
    def max_workers(self) -> int:
        """Workers at most."""
        return self._core.bounds[1]

    def submit(  # type: ignore[override]
        self, fn: Callable[..., T], /, *args: Any, priority: int = 0, **kwargs: Any
    ) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; higher ``priority`` runs first."""
        if not callable(fn):
            raise InputTypeError(f"fn must be callable, not {type(fn).__name__}")
        if self._shutdown or self._pid != os.getpid():
            raise WorkerPoolShutdown(
                "cannot schedule new tasks after shutdown"
                if self._pid == os.getpid()
                else "cannot use a WorkerPool made before os.fork(); make a new one"
            )
        if self._help:
            fut: _PoolFuture[T] = _PoolFuture()
            fut._od_task = self._core.submit(
                fut, fn, args, kwargs or None, priority, self._block, self._full_timeout
            )
            return fut
        plain: Future[T] = Future()
        self._core.submit(
            plain, fn, args, kwargs or None, priority, self._block, self._full_timeout
        )
        return plain

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """As :meth:`concurrent.futures.Executor.map`; ``timeout`` is checked
        like ``full_timeout_s`` (``inf``: no limit)."""
        timeout = seconds_or_none("timeout", timeout, inf_waits_forever=True)
        iters: list[Iterator[Any]] = []
        for i, it in enumerate(iterables):
            try:
                iters.append(iter(it))
            except TypeError:
                raise InputTypeError(
                    f"iterables[{i}] must be iterable, not {type(it).__name__}"
                ) from None
        return super().map(fn, *iters, timeout=timeout, chunksize=chunksize)

    async def submit_async(
        self, fn: Callable[..., T], /, *args: Any, priority: int = 0, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the pool and await its result."""
        return await asyncio.wrap_future(self.submit(fn, *args, priority=priority, **kwargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks. Queued tasks still run unless ``cancel_futures``
        (then their futures are cancelled); with ``wait`` join every worker."""
        if self._pid != os.getpid():
            self._shutdown = True
            return
        self._shutdown = True
        for fut in self._core.shutdown(bool(cancel_futures)):
            fut.cancel()
        if wait:
            self._core.join(None)
            with _live_lock:
                _live_pools.discard(self)

    def stats(self) -> dict[str, Any]:
        """Workers, busy/idle, queue depth and high water, task counts, scaling events.

        In a forked child the pool does not exist (its workers stayed in the
        parent, whose locks may have been held at the fork): raises
        WorkerPoolShutdown there instead of touching them."""
        if self._pid != os.getpid():
            raise WorkerPoolShutdown("this WorkerPool belongs to the parent process (os.fork)")
        return dict(self._core.stats())

    def __repr__(self) -> str:
        if self._pid != os.getpid():
            return f"WorkerPool(<inherited across fork from pid {self._pid}>)"
        s = self._core.stats()
        return (
            f"WorkerPool(workers={s['workers']}, min_workers={s['min_workers']}, "
            f"max_workers={s['max_workers']}, queued={s['queued']}, shutdown={s['shutdown']})"
        )


def _python_exit() -> None:
    """At interpreter exit: run what is queued and join every pool's workers."""
    with _live_lock:
        pools = list(_live_pools)
    for pool in pools:
        pool.shutdown(wait=True)


def _after_fork_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()


atexit.register(_python_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
