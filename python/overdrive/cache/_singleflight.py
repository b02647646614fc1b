"""Single-flight: concurrent callers for one missing key share one compute.

A :class:`Flight` is the in-progress compute of one key. The first caller (the
leader) runs it; threads wait on a :class:`threading.Event`, asyncio tasks on a
future of their own loop (resolved thread-safely), so threads and tasks, on any
number of loops, can wait for the same leader. The leader publishes a value,
an exception (every waiter raises it), or "retry" (the leader was cancelled or
interrupted: waiters start over, one of them becoming the new leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Hashable
from typing import Any, Final

__all__ = ["ERROR", "RETRY", "VALUE", "Flight", "Flights"]

VALUE: Final = 1
ERROR: Final = 2
RETRY: Final = 3


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Flight:
    """One key's compute in progress; ``loop`` is the leader's event loop, if any."""

    __slots__ = ("_lock", "_waiters", "event", "invalidated", "kind", "leader", "loop", "outcome")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        # the leading task (async) or thread id (sync): a compute that asks for
        # its own key again must not wait for itself
        self.leader: object = asyncio.current_task() if loop is not None else threading.get_ident()
        self.event = threading.Event()
        # set by delete/invalidate_tag/clear while the compute runs: its result
        # is still handed to the waiters but not stored (it may predate the change)
        self.invalidated = False
        self.kind = 0
        self.outcome: Any = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def publish(self, kind: int, outcome: Any) -> None:
        """Record the result and wake every waiter (threads and tasks)."""
        with self._lock:
            self.kind = kind
            self.outcome = outcome
            waiters, self._waiters = self._waiters, []
            self.event.set()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, fut in waiters:
            if loop is running:
                _resolve(fut)
            else:
                # A closed loop raises RuntimeError: its task is gone too.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, fut)

    def wait(self) -> tuple[int, Any]:
        """Block this thread until the leader publishes."""
        self.event.wait()
        return self.kind, self.outcome

    async def wait_async(self) -> tuple[int, Any]:
        """Suspend this task until the leader publishes."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.event.is_set():
                return self.kind, self.outcome
            self._waiters.append((loop, fut))
        await fut
        return self.kind, self.outcome


class Flights:
    """The flights in progress, by key (thread-safe)."""

    __slots__ = ("_flights", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Flight] = {}

    def join(self, key: Hashable, loop: asyncio.AbstractEventLoop | None) -> tuple[Flight, bool]:
        """The key's flight and whether this caller leads it (started it now)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = Flight(loop)
            self._flights[key] = flight
            return flight, True

    def current(self, key: Hashable) -> Flight | None:
        """The key's flight, if one is running."""
        with self._lock:
            return self._flights.get(key)

    def invalidate(self, key: Hashable | None) -> None:
        """Mark the key's running flight (``None``: every running flight) invalidated."""
        with self._lock:
            if key is None:
                for flight in self._flights.values():
                    flight.invalidated = True
            else:
                one = self._flights.get(key)
                if one is not None:
                    one.invalidated = True

    def land(self, key: Hashable, flight: Flight, kind: int, outcome: Any) -> None:
        """Remove the flight (later callers look the tiers up again), then publish."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.publish(kind, outcome)

    def __len__(self) -> int:
        with self._lock:
            return len(self._flights)
