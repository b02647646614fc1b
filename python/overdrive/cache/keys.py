"""Stable, process-independent string keys for the tiers that store bytes.

``hash()`` of a ``str`` changes from one process to the next, so Redis and
disk tiers (shared by processes) name entries with :func:`stable_key`: a
``str`` key is used as it is (readable in ``redis-cli``); any other key, and a
``str`` that starts with the reserved ``"\\x1f"``, is written as a typed,
canonical encoding, so ``1``, ``"1"``, ``1.0``, ``True`` and ``b"1"`` never
share an entry. Long encodings are replaced by their BLAKE2b-256 digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import Final

from ..exceptions import InputTypeError

__all__ = ["MAX_KEY_CHARS", "stable_key"]

_RESERVED: Final = "\x1f"
MAX_KEY_CHARS: Final = 256  # longer encodings are hashed


def stable_key(key: Hashable) -> str:
    """The key's name in a shared store: the same in every process and run.

    Supported: ``str``, ``bytes``, ``int``, ``bool``, ``float``, ``None``,
    classes (by module and qualified name: ``@cached``'s typed keys hold the
    arguments' types), and tuples/frozensets of these (nested). Anything else raises
    :class:`~overdrive.exceptions.InputTypeError` (a TypeError) naming the type.
    """
    if type(key) is str and not key.startswith(_RESERVED) and len(key) <= MAX_KEY_CHARS:
        return key
    parts: list[str] = []
    _encode(key, parts, 0)
    enc = _RESERVED + "".join(parts)
    if len(enc) > MAX_KEY_CHARS:
        digest = hashlib.blake2b(enc.encode("utf-8", "surrogatepass"), digest_size=32)
        return _RESERVED + "#" + digest.hexdigest()
    return enc


def _encode(key: object, out: list[str], depth: int) -> None:
    if depth > 100:
        raise InputTypeError("cache key nested deeper than 100 levels")
    t = type(key)
    if key is None:
        out.append("N")
    elif t is bool:
        out.append("T" if key else "F")
    elif t is int:
        out.append(f"i{key};")
    elif t is float:
        out.append(f"f{float.hex(key)};")  # type: ignore[arg-type]
    elif t is str:
        s: str = key  # type: ignore[assignment]
        out.append(f"s{len(s)}:{s}")
    elif t is bytes:
        b: bytes = key  # type: ignore[assignment]
        out.append(f"b{len(b)}:{b.hex()}")
    elif t is tuple:
        items: tuple[object, ...] = key  # type: ignore[assignment]
        out.append(f"t{len(items)}(")
        for item in items:
            _encode(item, out, depth + 1)
        out.append(")")
    elif t is frozenset:
        encoded = []
        for item in key:  # type: ignore[attr-defined]
            sub: list[str] = []
            _encode(item, sub, depth + 1)
            encoded.append("".join(sub))
        encoded.sort()
        out.append(f"z{len(encoded)}(" + "".join(encoded) + ")")
    elif isinstance(key, type):
        name = f"{key.__module__}.{key.__qualname__}"
        out.append(f"y{len(name)}:{name}")
    else:
        raise InputTypeError(
            f"cache key of type {t.__module__}.{t.__qualname__} has no stable encoding; "
            "use str, bytes, int, float, bool, None or tuples/frozensets of them"
        )
