"""Serializers for the tiers that store bytes (Redis, disk).

The default, :class:`MsgpackSerializer`, reads back exactly what was written
for plain data (``None``, ``bool``, ``int`` of any size, ``float``, ``str``,
``bytes``, ``list``, ``tuple``, ``dict``, ``set``, ``frozenset``) and numpy
arrays (as their raw buffer: dtype, shape, bytes); other types are refused with
:class:`~overdrive.exceptions.SerializationError` rather than turned into
something else. One exception, from msgpack itself: ``bytearray`` and
``memoryview`` values are stored as binary and read back as ``bytes``.
Decoding runs no code.

:class:`JsonSerializer` writes JSON (lists and string-keyed dicts only).
:class:`PickleSerializer` handles any picklable object, but only with a
secret: each value is HMAC-SHA256 signed and the signature is checked before
anything is unpickled, so a value forged in a shared store is refused without
running it.

Every serializer frames its output with a one-byte header (codec and whether
the body is zstd-compressed); bodies over ``compress_threshold`` bytes are
compressed with overdrive's zstd. Bytes that are not a valid frame for this
serializer raise :class:`~overdrive.exceptions.CacheDataError`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import threading
from typing import Any, Final, Protocol, runtime_checkable

import msgpack

from .._core import compress, decompress
from ..exceptions import CacheDataError, ConfigurationError, DecompressionError, SerializationError

__all__ = [
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "default_serializer",
]

# header byte: codec in the high nibble, bit 0 = body is zstd-compressed
_MSGPACK, _JSON, _PICKLE = 0x10, 0x20, 0x30
_ZSTD = 0x01
_MSGPACK_HEAD: Final = bytes((_MSGPACK,))
_MAX_OUTPUT: Final = 1 << 30  # the bomb guard for a compressed body read back

# msgpack extension type codes
_EXT_TUPLE, _EXT_SET, _EXT_FROZENSET, _EXT_BIGINT, _EXT_NDARRAY = 1, 2, 3, 5, 6


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back. ``loads(dumps(v)) == v`` for every
    value ``dumps`` accepts; ``dumps`` raises SerializationError for the rest,
    ``loads`` raises CacheDataError for bytes it did not write."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class _Framed:
    """Header byte plus an optionally compressed body."""

    _codec: int

    def __init__(self, compress_threshold: int | None = 4096, level: int = 3) -> None:
        if compress_threshold is not None and (
            isinstance(compress_threshold, bool)
            or not isinstance(compress_threshold, int)
            or compress_threshold < 0
        ):
            raise ConfigurationError(
                f"compress_threshold must be an int >= 0 or None, got {compress_threshold!r}"
            )
        if isinstance(level, bool) or not isinstance(level, int) or not -7 <= level <= 22:
            raise ConfigurationError(f"level must be an int in -7..22, got {level!r}")
        self.compress_threshold = compress_threshold
        self.level = level

    def _frame(self, body: bytes) -> bytes:
        t = self.compress_threshold
        if t is not None and len(body) > t:
            packed = compress(body, self.level)
            if len(packed) < len(body):
                return bytes((self._codec | _ZSTD,)) + packed
        return bytes((self._codec,)) + body

    def _unframe(self, data: bytes) -> bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CacheDataError(f"cache entry must be bytes, got {type(data).__name__}")
        mv = memoryview(data)
        if len(mv) == 0:
            raise CacheDataError("cache entry is empty")
        head = mv[0]
        if head & 0xF0 != self._codec or head & 0x0E:
            raise CacheDataError(
                f"cache entry header 0x{head:02x} was not written by {type(self).__name__}"
            )
        body = mv[1:]
        if head & _ZSTD:
            try:
                return decompress(body, _MAX_OUTPUT)
            except DecompressionError as exc:
                raise CacheDataError(f"cache entry body does not decompress: {exc}") from None
        return bytes(body)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(compress_threshold={self.compress_threshold!r}, "
            f"level={self.level})"
        )


def _ndarray_parts(value: Any) -> bytes | None:
    """msgpack body of a numpy array, or None when ``value`` is not one."""
    np = _numpy_if_loaded()
    if np is None or type(value) is not np.ndarray:
        return None
    if value.dtype.hasobject:
        raise SerializationError(
            f"numpy arrays of dtype {value.dtype} hold Python objects and cannot be cached "
            "by MsgpackSerializer (use PickleSerializer with a secret)"
        )
    packed: bytes = msgpack.packb(
        [value.dtype.str, list(value.shape), value.tobytes(order="C")], use_bin_type=True
    )
    return packed


def _numpy_if_loaded() -> Any:
    import sys

    return sys.modules.get("numpy")


class MsgpackSerializer(_Framed):
    """msgpack with exact round trips for plain data and numpy arrays (the default)."""

    _codec = _MSGPACK

    def _default(self, obj: Any) -> Any:
        t = type(obj)
        if t is tuple:
            return msgpack.ExtType(_EXT_TUPLE, self._pack(list(obj)))
        if t is set:
            return msgpack.ExtType(_EXT_SET, self._pack(list(obj)))
        if t is frozenset:
            return msgpack.ExtType(_EXT_FROZENSET, self._pack(list(obj)))
        if t is int:  # outside msgpack's 64-bit range
            return msgpack.ExtType(_EXT_BIGINT, str(obj).encode())
        arr = _ndarray_parts(obj)
        if arr is not None:
            return msgpack.ExtType(_EXT_NDARRAY, arr)
        raise SerializationError(
            f"MsgpackSerializer cannot store a {t.__module__}.{t.__qualname__} value exactly; "
            "supported: None, bool, int, float, str, bytes, list, tuple, dict, set, "
            "frozenset, numpy arrays (or pass JsonSerializer / PickleSerializer(secret=...))"
        )

    def _pack(self, value: Any) -> bytes:
        try:
            packed: bytes = msgpack.packb(
                value, default=self._default, use_bin_type=True, strict_types=True
            )
            return packed
        except SerializationError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"MsgpackSerializer cannot store the value: {exc}") from None

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code == _EXT_TUPLE:
            return tuple(self._unpack(data))
        if code == _EXT_SET:
            return set(self._unpack(data))
        if code == _EXT_FROZENSET:
            return frozenset(self._unpack(data))
        if code == _EXT_BIGINT:
            return int(data.decode("ascii"))
        if code == _EXT_NDARRAY:
            return _load_ndarray(data)
        raise CacheDataError(f"unknown msgpack extension type {code}")

    def _unpack(self, data: bytes | memoryview) -> Any:
        return msgpack.unpackb(
            data, ext_hook=self._ext_hook, raw=False, strict_map_key=False, use_list=True
        )

    def dumps(self, value: Any) -> bytes:
        # A reused Packer per thread (msgpack.packb builds one, with a 256 KiB
        # buffer, per call). Nested packs (_default) still use packb: a Packer
        # is not re-entrant.
        try:
            packer = self._tls.packer
        except AttributeError:
            packer = self._new_packer()
        try:
            body: bytes = packer.pack(value)
        except SerializationError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"MsgpackSerializer cannot store the value: {exc}") from None
        return self._frame(body)

    @property
    def _tls(self) -> threading.local:
        tls: threading.local | None = self.__dict__.get("_tls_store")
        if tls is None:
            tls = self.__dict__.setdefault("_tls_store", threading.local())
        return tls

    def _new_packer(self) -> Any:
        packer = msgpack.Packer(default=self._default, use_bin_type=True, strict_types=True)
        self._tls.packer = packer
        return packer

    def __getstate__(self) -> dict[str, Any]:  # the per-thread packers stay behind
        return {k: v for k, v in self.__dict__.items() if k != "_tls_store"}

    def loads(self, data: bytes) -> Any:
        body: bytes | memoryview
        if type(data) is bytes and data[:1] == _MSGPACK_HEAD:
            body = memoryview(data)[1:]  # an uncompressed frame: no copy of the body
        else:
            body = self._unframe(data)
        try:
            return msgpack.unpackb(  # _unpack, inlined: one frame less per value
                body, ext_hook=self._ext_hook, raw=False, strict_map_key=False, use_list=True
            )
        except CacheDataError:
            raise
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise CacheDataError(f"cache entry is not valid msgpack: {exc!r}") from None

    def loads_many(self, datas: list[bytes]) -> list[Any]:
        """``[loads(d) for d in datas]`` in one frame (a multi-key read decodes
        its values here). Raises CacheDataError if any entry is unreadable."""
        unpackb, hook, head = msgpack.unpackb, self._ext_hook, _MSGPACK_HEAD
        out: list[Any] = []
        append = out.append
        try:
            for data in datas:
                if type(data) is bytes and data[:1] == head:
                    body: bytes | memoryview = memoryview(data)[1:]
                else:
                    body = self._unframe(data)
                append(unpackb(body, ext_hook=hook, raw=False, strict_map_key=False, use_list=True))
        except CacheDataError:
            raise
        except Exception as exc:
            raise CacheDataError(f"cache entry is not valid msgpack: {exc!r}") from None
        return out


def _load_ndarray(data: bytes) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - written by a process that had numpy
        raise CacheDataError("cache entry holds a numpy array but numpy is not installed") from None
    parts = msgpack.unpackb(data, raw=False)
    if not (isinstance(parts, list) and len(parts) == 3):
        raise CacheDataError("malformed numpy array entry")
    dtype_str, shape, raw = parts
    dtype = np.dtype(dtype_str)
    if dtype.hasobject:
        raise CacheDataError(f"refusing a numpy array entry of object dtype {dtype_str!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise CacheDataError(f"malformed numpy array shape {shape!r}")
    count = 1
    for d in shape:
        count *= d
    if not isinstance(raw, bytes) or count * dtype.itemsize != len(raw):
        raise CacheDataError("numpy array entry: data length does not match dtype and shape")
    return np.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


class JsonSerializer(_Framed):
    """JSON: ``None``, ``bool``, ``int``, ``float``, ``str``, lists and
    string-keyed dicts. Tuples and other types are refused (JSON would hand
    them back as something else)."""

    _codec = _JSON

    def dumps(self, value: Any) -> bytes:
        _check_json(value)
        try:
            body = json.dumps(value, separators=(",", ":"), allow_nan=True).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(f"JsonSerializer cannot store the value: {exc}") from None
        return self._frame(body)

    def loads(self, data: bytes) -> Any:
        body = self._unframe(data)
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise CacheDataError(f"cache entry is not valid JSON: {exc}") from None


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > 500:
        raise SerializationError("JsonSerializer: value nested deeper than 500 levels")
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return
    if t is list:
        for v in value:
            _check_json(v, depth + 1)
        return
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise SerializationError(
                    f"JsonSerializer: dict key {k!r} is a {type(k).__name__}, not str "
                    "(JSON would read it back as a string)"
                )
            _check_json(v, depth + 1)
        return
    raise SerializationError(
        f"JsonSerializer cannot store a {t.__qualname__} value exactly "
        "(supported: None, bool, int, float, str, list, dict with str keys)"
    )


class PickleSerializer(_Framed):
    """pickle, HMAC-SHA256 signed with ``secret``: a value whose signature does
    not verify is refused with CacheDataError before ``pickle.loads`` sees it.

    Every process sharing the store must use the same secret. Use it only when
    the values are not plain data; anyone holding the secret can make this
    process run code."""

    _codec = _PICKLE
    _MAC_LEN = 32

    def __init__(
        self, secret: bytes | str, compress_threshold: int | None = 4096, level: int = 3
    ) -> None:
        super().__init__(compress_threshold, level)
        if isinstance(secret, str):
            secret = secret.encode()
        if not isinstance(secret, bytes) or len(secret) < 16:
            length = len(secret) if isinstance(secret, bytes) else "?"
            raise ConfigurationError(
                "secret must be bytes or str of at least 16 bytes, got "
                f"{type(secret).__name__} of length {length}"
            )
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def dumps(self, value: Any) -> bytes:
        try:
            body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pickling raises many types
            raise SerializationError(f"PickleSerializer cannot pickle the value: {exc!r}") from None
        framed = self._frame(body)
        return framed[:1] + self._mac(framed) + framed[1:]

    def loads(self, data: bytes) -> Any:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CacheDataError(f"cache entry must be bytes, got {type(data).__name__}")
        data = bytes(data)
        n = self._MAC_LEN
        if len(data) < 1 + n:
            raise CacheDataError("signed cache entry is too short")
        mac, framed = data[1 : 1 + n], data[:1] + data[1 + n :]
        if not hmac.compare_digest(mac, self._mac(framed)):
            raise CacheDataError("cache entry signature does not verify: refused, not unpickled")
        body = self._unframe(framed)
        try:
            return pickle.loads(body)
        except Exception as exc:
            raise CacheDataError(f"signed cache entry does not unpickle: {exc!r}") from None

    def __repr__(self) -> str:  # never the secret
        return (
            f"PickleSerializer(secret=<{len(self._secret)} bytes>, "
            f"compress_threshold={self.compress_threshold!r}, level={self.level})"
        )


def default_serializer() -> Serializer:
    """A new :class:`MsgpackSerializer` with the default settings."""
    return MsgpackSerializer()
