"""Buffer and object pools backed by the Rust core.

- :class:`BufferPool`: fixed-size, 64-byte aligned buffers recycled through a
  lock-free free list. ``acquire()`` returns a :class:`PooledBuffer` that
  supports the buffer protocol (``memoryview``, ``numpy.frombuffer``
  zero-copy, ``file.readinto``, ``socket.recv_into``). Releasing while an
  export is alive raises :class:`~overdrive.exceptions.BufferExportedError`
  (a ``BufferError``); a released buffer cannot be used again. The pool sizes
  itself between ``min_size`` and ``max_size`` buffers (grow 25% above 80%
  utilisation, shrink 12% after a ``window_s`` window below 25%).
- :class:`ObjectPool`: expensive Python objects from ``factory()``, with
  ``reset(obj)`` on release, ``validate(obj)`` on borrow (invalid objects are
  discarded and replaced) and ``max_idle_s`` eviction. No callback ever runs
  while a pool lock is held.

Both raise :class:`~overdrive.exceptions.PoolExhausted` (a ``TimeoutError``)
when all ``max_size`` items are out and none comes back within ``timeout``
(or at once with ``block=False``), and both have ``stats()``.

In asyncio code, :func:`acquire_async` waits for an exhausted pool without
blocking the event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, TypeVar

from ._args import seconds_or_none
from ._core import BufferPool, ObjectPool, PooledBuffer, PooledObject
from .exceptions import BufferExportedError, InputTypeError, PoolExhausted, ReleasedError

__all__ = [
    "BufferExportedError",
    "BufferPool",
    "ObjectPool",
    "PoolExhausted",
    "PooledBuffer",
    "PooledObject",
    "ReleasedError",
    "acquire_async",
]

_L_co = TypeVar("_L_co", covariant=True)

#: First and longest pause between two tries of an exhausted pool in :func:`acquire_async`.
_POLL_MIN_S = 0.0005
_POLL_MAX_S = 0.02


class _Pool(Protocol[_L_co]):
    def acquire(self, timeout: float | None = None, block: bool = True) -> _L_co: ...
    def try_acquire(self) -> _L_co | None: ...


async def acquire_async(pool: _Pool[_L_co], timeout: float | None = None) -> _L_co:
    """``pool.acquire()`` for asyncio: never blocks the event loop.

    Takes an item at once when one is free; otherwise retries with an
    exponential pause (0.5 ms up to 20 ms) until one comes back, raising
    :class:`~overdrive.exceptions.PoolExhausted` after ``timeout`` seconds
    (None: wait until one comes back). Cancelling the awaiting task is safe:
    nothing is taken while it sleeps.
    """
    if not callable(getattr(pool, "try_acquire", None)):
        raise InputTypeError(
            f"pool must be a BufferPool or an ObjectPool, not {type(pool).__name__}"
        )
    timeout = seconds_or_none("timeout", timeout, inf_waits_forever=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = _POLL_MIN_S
    while True:
        item = pool.try_acquire()
        if item is not None:
            return item
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return pool.acquire(block=False)  # PoolExhausted, counted once (or a late item)
        if deadline is not None:
            pause = min(pause, deadline - now)
        await asyncio.sleep(pause)
        pause = min(pause * 2, _POLL_MAX_S)
