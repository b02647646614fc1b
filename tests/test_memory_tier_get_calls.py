"""MemoryTier.get's call forms: the bare fast entry point (one or two
positional arguments) and the calls it hands to the generic method
(keywords, wrong counts) answer the same, and key equality keeps Python's
semantics on the fast int and str comparisons."""

from __future__ import annotations

import sys

import pytest

from overdrive.cache import MemoryTier
from overdrive.exceptions import InputTypeError


def test_every_call_form_answers_the_same() -> None:
    tier = MemoryTier(max_entries=10, ttl=60)
    tier.set("a", 1)
    default = object()
    assert tier.get("a") == 1
    assert tier.get("a", default) == 1
    assert tier.get(key="a") == 1
    assert tier.get("a", default=default) == 1
    assert tier.get(key="a", default=default) == 1
    assert MemoryTier.get(tier, "a") == 1
    assert tier.get("b") is None
    assert tier.get("b", default) is default
    assert tier.get("b", default=default) is default
    assert tier.get(default=default, key="b") is default


def test_bad_calls_raise_what_the_signature_says() -> None:
    tier = MemoryTier(max_entries=10)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'key'"):
        tier.get()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="from 1 to 2 positional arguments but 3 were given"):
        tier.get("a", 1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'x'"):
        tier.get("a", x=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'key'"):
        tier.get("a", key="b")  # type: ignore[misc]
    with pytest.raises(InputTypeError, match="key must be hashable, not list"):
        tier.get([])
    with pytest.raises(TypeError):
        MemoryTier.get(object(), "a")  # type: ignore[arg-type]
    assert MemoryTier.get.__doc__ and "default" in MemoryTier.get.__doc__


def test_key_equality_keeps_python_semantics() -> None:
    tier = MemoryTier(max_entries=100)
    tier.set(1, "one")
    tier.set(-1, "minus one")
    tier.set(2**70, "big")
    tier.set("k1", "str")
    assert tier.get(True) == "one" and tier.get(1.0) == "one"
    assert tier.get(-1) == "minus one" and tier.get(-2) is None  # hash(-1) == hash(-2)
    assert tier.get(2**70) == "big" and tier.get(2**70 + 1) is None
    assert tier.get(2**61) is None  # hash(2**61) == hash(1)
    assert tier.get("".join(["k", "1"])) == "str" and tier.get("k2") is None
    assert tier.get(b"k1") is None


def test_an_eq_that_raises_propagates() -> None:
    class Boom:
        def __hash__(self) -> int:
            return 7

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("boom")

    tier = MemoryTier(max_entries=10)
    tier.set(7, "seven")
    with pytest.raises(RuntimeError, match="boom"):
        tier.get(Boom())
    assert tier.get(7) == "seven"


def test_hits_and_misses_leak_no_references() -> None:
    tier = MemoryTier(max_entries=10, ttl=60)
    value, default = object(), object()
    tier.set("k", value)
    before = sys.getrefcount(value), sys.getrefcount(default)
    for _ in range(1000):
        tier.get("k")
        tier.get("k", default)
        tier.get("missing", default)
        tier.get(key="missing", default=default)
    assert (sys.getrefcount(value), sys.getrefcount(default)) == before
    stats = tier.stats()
    assert stats["hits"] == 2000 and stats["misses"] == 2000


def test_each_hit_hands_out_one_reference() -> None:
    # A hit raises the value's count inline (not through _Py_IncRef): each
    # returned value holds exactly one reference, released when dropped.
    tier = MemoryTier(max_entries=10, ttl=60)
    value = object()
    tier.set("k", value)
    base = sys.getrefcount(value)
    held = [tier.get("k") for _ in range(1000)]
    assert all(v is value for v in held)
    assert sys.getrefcount(value) == base + 1000
    del held
    assert sys.getrefcount(value) == base
    # Singletons and interned objects (immortal on 3.12+) as values.
    for shared in (None, True, 7, "", ()):
        tier.set("s", shared)
        assert all(tier.get("s", object()) is shared for _ in range(1000))
