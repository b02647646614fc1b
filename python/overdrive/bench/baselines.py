"""Minimal hand-written baselines the suites time overdrive against.

Each is what a competent engineer writes in a few dozen lines instead of
using overdrive: no stats, no backpressure, no priorities, no error
isolation. A benchmark against them shows what overdrive's machinery costs
or buys over the floor a user could reach by hand.

- :class:`MinimalAsyncBatcher`: asyncio batcher (deque + Event + one task).
- :class:`GreedyThreadBatcher`: thread batcher (SimpleQueue + one thread,
  takes what is there, never waits).
- :class:`FrameBatcher`: MessageBatcher's frames (same layout, batch size
  and zstd level) built and compressed by python-zstandard on the caller's
  thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import inspect
import queue
import struct
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["FrameBatcher", "GreedyThreadBatcher", "MinimalAsyncBatcher"]

Handler = Callable[[list[Any]], Sequence[Any]] | Callable[[list[Any]], Awaitable[Sequence[Any]]]


class MinimalAsyncBatcher:
    """A minimal asyncio batcher: a deque, an ``asyncio.Event`` and one task.

    ``submit(item)`` returns a future of the running loop. The task sleeps on
    the event while the queue is empty; woken by a first item, it gives the
    batch up to ``max_wait_ms`` to fill (the event fires early when
    ``max_batch_size`` items wait), then takes up to ``max_batch_size`` items.
    Items that queued while the handler ran go at once. An ``async def``
    handler is awaited on the loop; a plain one runs through
    ``loop.run_in_executor`` (a model call must leave the loop).
    """

    def __init__(self, handler: Handler, max_batch_size: int = 64, max_wait_ms: float = 1.0):
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler)
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.queue: deque[tuple[Any, asyncio.Future[Any]]] = deque()
        self.event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def submit(self, item: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        q = self.queue
        q.append((item, fut))
        if len(q) == 1 or len(q) >= self.max_batch_size:
            self.event.set()
        if self.task is None:
            self.task = loop.create_task(self._run())
        return fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        q, n, event = self.queue, self.max_batch_size, self.event
        while True:
            if not q:
                event.clear()
                await event.wait()
                if len(q) < n and self.max_wait > 0:
                    event.clear()
                    timer = loop.call_later(self.max_wait, event.set)
                    await event.wait()
                    timer.cancel()
            batch = [q.popleft() for _ in range(min(n, len(q)))]
            items = [item for item, _ in batch]
            if self.is_async:
                results = await self.handler(items)  # type: ignore[misc]
            else:
                results = await loop.run_in_executor(None, self.handler, items)
            for (_, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    async def aclose(self) -> None:
        """Cancel the task (the benchmarks drain every future before this)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None


class GreedyThreadBatcher:
    """A minimal greedy thread batcher: ``queue.SimpleQueue`` and one thread.

    The thread blocks for one item, takes whatever else is queued (up to
    ``max_batch_size``), calls the handler and resolves the items'
    ``concurrent.futures.Future``. It never waits for a batch to fill.
    """

    def __init__(
        self, handler: Callable[[list[Any]], Sequence[Any]], max_batch_size: int = 64
    ) -> None:
        self.handler = handler
        self.max_batch_size = max_batch_size
        self.queue: queue.SimpleQueue[tuple[Any, cf.Future[Any]] | None] = queue.SimpleQueue()
        self.batches = 0
        self.items = 0
        self.thread = threading.Thread(target=self._run, name="greedy-batcher", daemon=True)
        self.thread.start()

    def submit(self, item: Any) -> cf.Future[Any]:
        fut: cf.Future[Any] = cf.Future()
        self.queue.put((item, fut))
        return fut

    def _run(self) -> None:
        get, get_nowait, n = self.queue.get, self.queue.get_nowait, self.max_batch_size
        stop = False
        while not stop:
            first = get()
            if first is None:
                return
            batch = [first]
            while len(batch) < n:
                try:
                    entry = get_nowait()
                except queue.Empty:
                    break
                if entry is None:
                    stop = True
                    break
                batch.append(entry)
            results = self.handler([item for item, _ in batch])
            self.batches += 1
            self.items += len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                fut.set_result(res)

    def close(self) -> None:
        """Run what is queued, then stop the thread."""
        self.queue.put(None)
        self.thread.join()


_HEADER = struct.Struct("<4sBBxxII")
_LEN = struct.Struct("<I")


class FrameBatcher:
    """MessageBatcher's frames by hand: ``max_batch_size`` messages per frame in
    the same documented layout, the body zstd-compressed by python-zstandard at
    the same ``level`` when longer than ``compress_threshold``, handed to
    ``sink`` on the caller's thread (no background thread, no time window:
    a frame goes when full, and at ``flush()``/``close()``)."""

    def __init__(
        self,
        sink: Callable[[bytes], Any],
        *,
        max_batch_size: int = 50,
        level: int = -1,
        compress_threshold: int = 1024,
    ) -> None:
        import zstandard

        self.sink = sink
        self.max_batch_size = max_batch_size
        self.threshold = compress_threshold
        self.compress = zstandard.ZstdCompressor(level=level).compress
        self.pending: list[bytes] = []

    def put(self, message: bytes) -> None:
        pending = self.pending
        pending.append(message)
        if len(pending) >= self.max_batch_size:
            self.flush()

    def flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        pack = _LEN.pack
        body = b"".join([pack(len(m)) + m for m in pending])
        compressed = len(body) > self.threshold
        header = _HEADER.pack(b"ODMB", 1, int(compressed), len(pending), len(body))
        self.sink(header + (self.compress(body) if compressed else body))
        pending.clear()

    def close(self) -> None:
        self.flush()
