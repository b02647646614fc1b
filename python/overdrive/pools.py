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
"""

from __future__ import annotations

from ._core import BufferPool, ObjectPool, PooledBuffer, PooledObject
from .exceptions import BufferExportedError, PoolExhausted, ReleasedError

__all__ = [
    "BufferExportedError",
    "BufferPool",
    "ObjectPool",
    "PoolExhausted",
    "PooledBuffer",
    "PooledObject",
    "ReleasedError",
]
