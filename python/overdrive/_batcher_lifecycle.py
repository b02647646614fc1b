"""Lifecycle shared by Batcher and MessageBatcher: closing
(:class:`BatcherBase`), the set of dispatchers still running and their
drain at interpreter exit (each within its ``atexit_timeout_s``), default
names, and the checks of these settings.

A batcher's *dispatcher* (its threads, or its event-loop task, and the user's
handler or sink) registers here; the Batcher or MessageBatcher object the
user holds does not, so dropping it lets it be collected (its queue then
closes and the dispatcher drains it, see ``overdrive._core.BatchQueue``).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import os
import reprlib
import threading
import time
import weakref
from typing import Protocol, Self

from .exceptions import ConfigurationError, InputTypeError

log = logging.getLogger("overdrive.batching")

DEFAULT_ATEXIT_TIMEOUT_S = 10.0


class Dispatcher(Protocol):
    """What the exit drain needs from a batcher's dispatcher."""

    name: str
    atexit_timeout_s: float
    #: What it carries, for the log: "items" or "messages".
    unit: str

    def begin_close(self) -> None:
        """Close the queue (without waiting); what it holds still drains."""

    def join(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for everything queued to finish."""

    @property
    def outstanding(self) -> int:
        """Accepted and not finished (queued or running)."""


class _Queue(Protocol):
    """The producers' handle of a batcher's queue, as far as closing goes."""

    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __len__(self) -> int: ...


class BatcherBase:
    """What Batcher and MessageBatcher share: closing through the queue's
    producers' handle, then waiting for the dispatcher to drain it."""

    name: str
    _q: _Queue
    _engine: Dispatcher

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return bool(self._q.closed)

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting (then submit/put raise ``BatcherClosed``), finish
        everything accepted and join the dispatcher (up to ``timeout``
        seconds; None waits until done).

        A Batcher with an ``async def`` handler cannot wait from inside that
        handler's event loop: use ``await aclose()`` there.
        """
        wait = check_timeout(timeout)
        self._q.close()
        self._engine.join(wait)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._q)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} queued={len(self._q)} closed={self.closed}>"


_live: weakref.WeakSet[Dispatcher] = weakref.WeakSet()
_lock = threading.Lock()
_ids = itertools.count(1)


def register(d: Dispatcher) -> None:
    with _lock:
        _live.add(d)


def unregister(d: Dispatcher) -> None:
    with _lock:
        _live.discard(d)


def _drain_at_exit() -> None:
    """Close every live batcher, give each its ``atexit_timeout_s`` (from now,
    all at once) to finish what it accepted, and log what it had to abandon."""
    with _lock:
        live = list(_live)
    start = time.monotonic()
    for d in live:
        try:
            d.begin_close()
        except Exception:  # pragma: no cover - best effort at exit
            log.exception("%s: closing at interpreter exit failed", d.name)
    for d in live:
        try:
            left_s = start + d.atexit_timeout_s - time.monotonic()
            d.join(min(max(0.0, left_s), threading.TIMEOUT_MAX))
            left = d.outstanding
        except Exception:  # pragma: no cover - best effort at exit
            log.exception("%s: draining at interpreter exit failed", d.name)
            continue
        if left:
            log.warning(
                "%s: abandoned %d %s at interpreter exit: not done within atexit_timeout_s=%s",
                d.name,
                left,
                d.unit,
                d.atexit_timeout_s,
            )


def _after_fork_in_child() -> None:
    # The parent's dispatcher threads do not exist here: nothing to drain,
    # and a lock held by one of them at fork time is reset.
    global _lock
    _lock = threading.Lock()
    _live.clear()


atexit.register(_drain_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --- names and settings --------------------------------------------------------------


def default_name(name: object, prefix: str) -> str:
    """``name`` (a str), or ``"<prefix>-<n>"`` for None or ""."""
    if name is None or name == "":
        return f"{prefix}-{next(_ids)}"
    if not isinstance(name, str):
        raise InputTypeError(f"name must be a str or None, not {type(name).__name__}")
    return name


def non_negative(param: str, value: object, unit: str = "seconds") -> float:
    """A finite number >= 0 (int or float, not bool), else ConfigurationError
    (or InputTypeError for a wrong type) naming ``param``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputTypeError(f"{param} must be a number of {unit}, not {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not (math.isfinite(v) and v >= 0):
        raise ConfigurationError(
            f"invalid {param}={reprlib.repr(value)}: must be a finite number of {unit} >= 0"
        )
    return v


def check_timeout(timeout: object) -> float | None:
    """A ``close(timeout=...)``: None (wait for ever) or seconds >= 0 (more
    than a thread join can wait is for ever too)."""
    if timeout is None:
        return None
    t = non_negative("timeout", timeout)
    return None if t >= threading.TIMEOUT_MAX else t
