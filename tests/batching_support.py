"""Helpers shared by the batching tests (Batcher, MessageBatcher)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import overdrive as od

WAIT = 30.0  # generous per-future timeout: a hang fails, slowness never does


def f(x: Any) -> Any:
    """The per-item computation the handlers apply."""
    return x * 31 + 7 if isinstance(x, int) else f"<{x}>"


def apply_f(items: list[Any]) -> list[Any]:
    """``f`` of each item (of its last field for tuples)."""
    return [f(x[-1]) if isinstance(x, tuple) else f(x) for x in items]


class Recorder:
    """A sync handler that records every batch it gets and returns
    ``self.fn(items)`` (``apply_f`` unless a test swaps it)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.lock = threading.Lock()
        self.gate = gate
        self.started = threading.Event()
        self.fn: Callable[[list[Any]], list[Any]] = apply_f

    def __call__(self, items: list[Any]) -> list[Any]:
        with self.lock:
            self.batches.append(list(items))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        return self.fn(items)

    def seen(self) -> list[Any]:
        return [x for b in self.batches for x in b]


def held_batcher(
    **kw: Any,
) -> tuple[od.Batcher[Any, Any], Recorder, threading.Event, Any]:
    """A batcher whose handler is stuck in a first batch (item -1) until the gate opens."""
    gate = threading.Event()
    rec = Recorder(gate)
    b: od.Batcher[Any, Any] = od.Batcher(rec, **kw)
    first = b.submit(-1)
    assert rec.started.wait(WAIT)
    return b, rec, gate, first


def fill_until_queued(mb: od.MessageBatcher, n: int) -> list[bytes]:
    """Put messages until ``n`` stay queued (the framer is blocked on a busy sink)."""
    sent: list[bytes] = []
    for i in range(1000):
        m = b"m%d" % i
        mb.put(m)
        sent.append(m)
        threading.Event().wait(0.005)  # let the framer take it if it can
        if len(mb) >= n:
            return sent
    raise AssertionError("the queue never filled")


class Captured:
    """An object a handler or sink captures, to watch (weakref) when it is freed."""


def join_threads(prefix: str) -> None:
    """Join every thread whose name starts with ``prefix``; fail if one stays alive."""
    for t in threading.enumerate():
        if t.name.startswith(prefix):
            t.join(WAIT)
            assert not t.is_alive(), f"{t.name} is still running"


class Interrupted(Exception):
    """Raised in the main thread by the test's signal handler."""


@contextlib.contextmanager
def interrupted_after(delay: float) -> Iterator[None]:
    """While the body runs, send SIGUSR1 to this process every ``delay``
    seconds; the handler raises :class:`Interrupted` in the main thread (once),
    as Ctrl-C would raise KeyboardInterrupt."""
    raised: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if not raised:
            raised.append(signum)
            raise Interrupted

    done = threading.Event()

    def kill() -> None:
        while not done.wait(delay):
            os.kill(os.getpid(), signal.SIGUSR1)

    old = signal.signal(signal.SIGUSR1, handler)
    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    try:
        yield
    finally:
        done.set()
        killer.join()
        signal.signal(signal.SIGUSR1, old)


def run_python(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; it must exit with status 0."""
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0, res.stderr
    return res
