"""The weak registry of live components that telemetry exports.

Every overdrive component registers itself when it is created (the Python
classes in ``__init__``; the native classes from their ``__init__`` through a
hook this module installs in ``overdrive._core``, which runs at construction
only, so no method call pays anything), so ``/metrics`` lists it without any
user call. The registry holds only weak
references: a component that is garbage-collected leaves the export by
itself, and registering never keeps anything alive.

Anything with a ``stats() -> dict`` method can be registered under a
component name of your choice::

    from overdrive import telemetry
    telemetry.register(my_cache, component="cache", name="sessions")

This module imports nothing heavy (no prometheus_client): the components
import it on their construction path.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from .. import _core
from ..exceptions import InputTypeError

__all__ = [
    "Registered",
    "component_of",
    "live",
    "register",
    "registered",
    "unregister",
]

_VALID = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: Component names of classes whose snake_case name is not the one we want.
_KNOWN = {"LatencyHistogram": "latency"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True)
class Registered:
    """One live registered component: the object, its component name (the
    ``<component>`` part of ``overdrive_<component>_<what>_<unit>``) and its
    ``name`` label."""

    obj: Any
    component: str
    name: str


@dataclass
class _Entry:
    ref: weakref.ReferenceType[Any]
    component: str
    name: str
    seq: int


_lock = threading.Lock()
_entries: dict[int, _Entry] = {}
_auto_ids: dict[str, itertools.count[int]] = {}
_seq = itertools.count()
_dead: collections.deque[tuple[int, weakref.ReferenceType[Any]]] = collections.deque()


def component_of(obj: object) -> str:
    """The default component name of ``obj``: its class name in snake_case
    (``BufferPool`` -> ``buffer_pool``), or the class's ``telemetry_component``
    attribute when it has one."""
    declared = getattr(type(obj), "telemetry_component", None)
    if isinstance(declared, str) and declared:
        return declared
    for cls in type(obj).__mro__:
        known = _KNOWN.get(cls.__name__)
        if known is not None:
            return known
    return _CAMEL.sub("_", type(obj).__name__).lower()


_checked: set[str] = set()


def _check_component(component: object) -> str:
    if component in _checked:
        return component
    if not isinstance(component, str):
        raise InputTypeError(f"component must be a str, not {type(component).__name__}")
    if not _VALID.match(component):
        raise InputTypeError(
            f"invalid component={component!r}: must be a Prometheus name part "
            "(letters, digits and underscores, not starting with a digit)"
        )
    _checked.add(component)
    return component


def _own_name(obj: object) -> str | None:
    try:
        name = getattr(obj, "name", None)
    except Exception:
        return None
    return name if isinstance(name, str) and name else None


def register(obj: object, component: str | None = None, name: str | None = None) -> str:
    """Add ``obj`` (anything with ``stats()``; histograms with ``buckets()``)
    to the export and return its ``name`` label.

    ``component`` defaults to the snake_case class name; ``name`` to the
    object's own ``name`` attribute (a non-empty str) or an automatic
    ``<component>-<n>``. Registering an object again replaces its component
    and name (pass only what you want to change: the others stay). Only a
    weak reference is kept: the object leaves the export when it is
    collected, or on :func:`unregister`.

    Raises InputTypeError when ``obj`` has no ``stats()`` (or ``buckets()``),
    cannot be weakly referenced, or ``component``/``name`` are not str.
    """
    if not callable(getattr(obj, "stats", None)) and not callable(getattr(obj, "buckets", None)):
        raise InputTypeError(
            f"obj must have a stats() method to be exported, {type(obj).__name__} has none"
        )
    if name is not None and (not isinstance(name, str) or not name):
        raise InputTypeError(f"name must be a non-empty str or None, not {name!r}")
    key = id(obj)
    with _lock:
        _purge()
        old = _entries.get(key)
        if old is not None and old.ref() is obj:
            comp = _check_component(component) if component is not None else old.component
            old.component = comp
            old.name = name if name is not None else old.name
            return old.name
        comp = _check_component(component if component is not None else component_of(obj))
        if name is None:
            name = _own_name(obj)
        if name is None:
            counter = _auto_ids.get(comp)
            if counter is None:
                counter = _auto_ids[comp] = itertools.count(1)
            name = f"{comp}-{next(counter)}"
        try:
            ref = weakref.ref(obj, _make_reaper(key))
        except TypeError:
            raise InputTypeError(
                f"{type(obj).__name__} objects cannot be weakly referenced, so telemetry "
                "cannot follow their lifetime; wrap the object in one that can"
            ) from None
        _entries[key] = _Entry(ref, comp, name, next(_seq))
        return name


def _make_reaper(key: int) -> Any:
    # A weakref callback may run inside a garbage collection that an
    # allocation under _lock triggered, on the thread holding it: it must not
    # take the lock. It queues the key; the next registry call drops it.
    def reap(ref: weakref.ReferenceType[Any]) -> None:
        _dead.append((key, ref))

    return reap


def _purge() -> None:
    """Drop the entries of collected objects (call with _lock held)."""
    while _dead:
        key, ref = _dead.popleft()
        entry = _entries.get(key)
        if entry is not None and entry.ref is ref:
            del _entries[key]


def unregister(obj: object) -> bool:
    """Remove ``obj`` from the export; True when it was registered."""
    with _lock:
        _purge()
        entry = _entries.get(id(obj))
        if entry is None or entry.ref() is not obj:
            return False
        del _entries[id(obj)]
        return True


def registered(obj: object) -> Registered | None:
    """How ``obj`` is registered (component and name), or None."""
    with _lock:
        entry = _entries.get(id(obj))
        if entry is None or entry.ref() is not obj:
            return None
        return Registered(obj, entry.component, entry.name)


def live() -> list[Registered]:
    """Every registered component still alive, in registration order (a
    snapshot: strong references for as long as the caller holds the list)."""
    with _lock:
        _purge()
        entries = sorted(_entries.values(), key=lambda e: e.seq)
        pairs = [(e.ref(), e) for e in entries]
    return [Registered(obj, e.component, e.name) for obj, e in pairs if obj is not None]


def auto_register(obj: object, component: str) -> None:
    """Register a component from its own constructor: never raises (a
    component must not fail to build because telemetry could not follow it).
    The native classes call it from their ``__init__`` through the hook
    installed below."""
    with contextlib.suppress(Exception):
        register(obj, component=component)


# Every native class with stats() hands each new object to auto_register.
_core._set_telemetry_hook(auto_register)
