"""EmbeddingCache: text -> vector, computed once per (model, normalised text).

* **Key**: the BLAKE2b-128 digest of the model id and the normalised text
  (``"emb:" + 32 hex digits``), so two models never share a vector and the key
  is the same in every process (Redis and disk tiers are shared).
* **Normalisation** (``normalize=True``): Unicode NFC, leading and trailing
  whitespace removed, every run of whitespace collapsed to one space; case is
  kept. The *normalised* text is what ``embed_fn`` receives, so texts that
  normalise alike share one vector. ``normalize=False`` keys and embeds each
  text exactly as given; a callable ``str -> str`` is your own normalisation.
* **Storage**: each vector is stored as its little-endian float32 bytes
  (``4 * dim`` bytes, nothing else), which every tier and serializer keeps
  exactly (msgpack ``bin`` in Redis and on disk, the bytes object itself in a
  MemoryTier). Vectors come back as float32 numpy arrays equal, bit for bit,
  to ``numpy.asarray(embed_fn([text]), dtype=numpy.float32)[0]``.
* **Batching**: ``embed_many`` looks every distinct key up in one
  ``get_many``, sends only the misses to ``embed_fn`` in one call (a text
  repeated in the call is computed once), writes them back in one
  ``set_many`` and returns the vectors in the order asked.
* **Single-flight**: concurrent calls (threads and asyncio tasks) missing the
  same text compute it once: the first caller computes, the others wait for
  its vector (or its exception).

Thread-safe and asyncio-safe; no lock is held while ``embed_fn`` or a cache
tier runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
import time
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias

try:
    import numpy as np
    import numpy.typing as npt
except ImportError as exc:  # pragma: no cover - numpy is in the "ai" extra
    raise ImportError(
        "overdrive.ai needs numpy: pip install 'overdrive[ai]' (or numpy>=1.26)"
    ) from exc

from .._core import MemoryTier
from ..cache._singleflight import ERROR, RETRY, VALUE, Flight, Flights
from ..exceptions import CacheDataError, CacheUnavailable, ConfigurationError, InputTypeError
from ..telemetry.registry import auto_register

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EmbedFn",
    "EmbeddingCache",
    "Vector",
    "embedding_key",
    "normalize_text",
]

#: A float32 vector as the caches return it.
Vector: TypeAlias = npt.NDArray[np.float32]
#: ``embed_fn(texts) -> vectors`` (sync, or async for ``aembed_many``).
EmbedFn: TypeAlias = Callable[[list[str]], Any]

#: The default MemoryTier's bound: 256 MiB of vectors (~170k vectors of dim 384).
DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
_F32: Final = np.dtype("<f4")
_SOFT_ERRORS: Final = (CacheUnavailable, CacheDataError)
_PERSON: Final = b"overdrive-emb1"  # BLAKE2b personalisation: versions the key format


def normalize_text(text: str) -> str:
    """NFC, stripped, every run of whitespace (Unicode included) made one space.

    Case and punctuation are kept: ``"Hello,\\u00a0 World "`` -> ``"Hello, World"``.
    """
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def _key_hasher(model_id: str) -> hashlib.blake2b:
    """BLAKE2b-128 already fed with the length-prefixed model id."""
    mid = model_id.encode("utf-8", "surrogatepass")
    h = hashlib.blake2b(len(mid).to_bytes(4, "little"), digest_size=16, person=_PERSON)
    h.update(mid)
    return h


def embedding_key(text: str, model_id: str) -> str:
    """The cache key of ``text`` (already normalised) for ``model_id``.

    ``"emb:"`` + the hex BLAKE2b-128 digest of the model id (length-prefixed,
    so no (model, text) pair can collide with another by concatenation) and
    the text's UTF-8 bytes.
    """
    h = _key_hasher(model_id)
    h.update(text.encode("utf-8", "surrogatepass"))
    return "emb:" + h.hexdigest()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Counters:
    __slots__ = (
        "bad_entries",
        "batch_calls",
        "cache_errors",
        "coalesced",
        "compute_errors",
        "compute_seconds",
        "computed",
        "duplicates",
        "hits",
        "misses",
        "requests",
    )

    def __init__(self) -> None:
        self.requests = self.hits = self.misses = self.duplicates = 0
        self.coalesced = self.computed = self.batch_calls = 0
        self.bad_entries = self.cache_errors = self.compute_errors = 0
        self.compute_seconds = 0.0


class _Call:
    """One embed_many call's texts, split into distinct keys."""

    __slots__ = ("found", "keys", "order", "text_of")

    def __init__(self) -> None:
        self.order: list[str] = []  # the key of each text asked, in order
        self.text_of: dict[str, str] = {}  # distinct key -> normalised text
        self.keys: list[str] = []  # distinct keys, first-seen order
        self.found: dict[str, bytes] = {}  # key -> float32 bytes


class EmbeddingCache:
    """Cache the vectors of an embedding function, per model and normalised text.

    ``embed_fn(texts: list[str])`` returns one vector per text (a 2-D array, or
    a sequence of 1-D arrays or lists); it may be ``async def`` (then use the
    ``a*`` methods; a sync ``embed_fn`` called from them runs in a worker
    thread so the event loop keeps serving). ``model_id`` names the model: it
    is part of every key. ``cache``: any cache tier (``MemoryTier``,
    ``RedisTier``, ``DiskTier``) or a ``TieredCache``; default: a
    ``MemoryTier(max_bytes=DEFAULT_MAX_BYTES)`` of this cache's own.
    ``normalize``: ``True`` (see :func:`normalize_text`), ``False``, or a
    callable ``str -> str``. ``dim``: the vector dimension, checked on every
    vector (default: learnt from the first vector). ``ttl``: seconds each
    stored vector lives (None: the tier's default). ``name``: for stats and
    metrics.

    Errors: a wrong argument type raises
    :class:`~overdrive.exceptions.InputTypeError`; a bad value, or an
    ``embed_fn`` that returns the wrong number of vectors or a vector of the
    wrong dimension, :class:`~overdrive.exceptions.ConfigurationError`. An
    exception raised by ``embed_fn`` propagates (to every caller waiting on
    those texts) and nothing is cached for it. A cache tier that is down or
    holds an unreadable entry is skipped (counted in ``cache_errors`` /
    ``bad_entries``) and the vectors are computed.
    """

    def __init__(
        self,
        embed_fn: EmbedFn,
        model_id: str,
        cache: Any = None,
        *,
        normalize: bool | Callable[[str], str] = True,
        dim: int | None = None,
        ttl: float | None = None,
        name: str = "embeddings",
    ) -> None:
        if not callable(embed_fn):
            raise InputTypeError(f"embed_fn must be callable, not {type(embed_fn).__name__}")
        if not isinstance(model_id, str):
            raise InputTypeError(f"model_id must be a str, not {type(model_id).__name__}")
        if not model_id:
            raise ConfigurationError("invalid model_id='': name the model (it keys the vectors)")
        if normalize is True:
            self._normalize: Callable[[str], str] | None = normalize_text
        elif normalize is False:
            self._normalize = None
        elif callable(normalize):
            self._normalize = normalize
        else:
            raise InputTypeError(
                f"normalize must be a bool or a callable str -> str, not {type(normalize).__name__}"
            )
        if dim is not None:
            if isinstance(dim, bool) or not isinstance(dim, int):
                raise InputTypeError(f"dim must be an int or None, not {type(dim).__name__}")
            if dim < 1:
                raise ConfigurationError(f"invalid dim={dim!r}: must be >= 1")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
                raise InputTypeError(f"ttl must be a number of seconds or None, not {ttl!r}")
            if not 0 < ttl < float("inf"):
                raise ConfigurationError(f"invalid ttl={ttl!r}: must be a finite number > 0")
        if not isinstance(name, str):
            raise InputTypeError(f"name must be a str, not {type(name).__name__}")
        self._owns_cache = cache is None
        if cache is None:
            cache = MemoryTier(max_bytes=DEFAULT_MAX_BYTES, name=f"{name}-memory")
        else:
            for method in ("get", "set"):
                if not callable(getattr(cache, method, None)):
                    raise InputTypeError(
                        f"cache must be a cache tier or a TieredCache (with get/set), "
                        f"not {type(cache).__name__}"
                    )
        self.name = name
        self._embed_fn = embed_fn
        self._fn_is_async = inspect.iscoroutinefunction(embed_fn) or (
            inspect.iscoroutinefunction(getattr(embed_fn, "__call__", None))  # noqa: B004
        )
        self._model_id = model_id
        self._hasher = _key_hasher(model_id)
        self._cache = cache
        self._ttl = float(ttl) if ttl is not None else None
        self._dim = dim
        get_many = getattr(cache, "get_many", None)
        set_many = getattr(cache, "set_many", None)
        self._get_many: Callable[[Sequence[Hashable]], Mapping[Hashable, Any]] | None = (
            get_many if callable(get_many) else None
        )
        self._set_many: Callable[..., None] | None = set_many if callable(set_many) else None
        aget_many = getattr(cache, "aget_many", None)
        aset_many = getattr(cache, "aset_many", None)
        self._aget_many = aget_many if callable(aget_many) else None
        self._aset_many = aset_many if callable(aset_many) else None
        self._aget = getattr(cache, "aget", None)
        self._aset = getattr(cache, "aset", None)
        self._flights = Flights()
        self._lock = threading.Lock()
        self._c = _Counters()
        auto_register(self, "embedding_cache")

    # --- properties -----------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The model id every key carries."""
        return self._model_id

    @property
    def dim(self) -> int | None:
        """The vector dimension (None until the first vector is seen, unless given)."""
        return self._dim

    @property
    def cache(self) -> Any:
        """The tier or TieredCache holding the vectors."""
        return self._cache

    def __repr__(self) -> str:
        return (
            f"EmbeddingCache(model_id={self._model_id!r}, dim={self._dim}, "
            f"cache={type(self._cache).__name__}, name={self.name!r})"
        )

    # --- keys -----------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """The text as keyed and as handed to ``embed_fn``."""
        if type(text) is not str:
            raise InputTypeError(f"text must be a str, not {type(text).__name__}")
        return self._norm(text)

    def _norm(self, text: str) -> str:
        norm = self._normalize
        if norm is None:
            return text
        out = norm(text)
        if type(out) is not str:
            raise InputTypeError(
                f"normalize returned a {type(out).__name__} for {text[:40]!r}, not a str"
            )
        return out

    def key(self, text: str) -> str:
        """The cache key of ``text`` (after normalisation) for this model."""
        return embedding_key(self.normalize(text), self._model_id)

    def _plan(self, texts: Sequence[str]) -> _Call:
        if (type(texts) is not list and type(texts) is not tuple) and (
            isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable)
        ):
            hint = " (wrap a single text in a list, or call embed())" if type(texts) is str else ""
            raise InputTypeError(
                f"texts must be a sequence of str, not {type(texts).__name__}{hint}"
            )
        call = _Call()
        order, text_of = call.order, call.text_of
        norm = self._normalize
        base = self._hasher
        for i, text in enumerate(texts):
            if type(text) is not str:
                raise InputTypeError(f"texts[{i}] must be a str, not {type(text).__name__}")
            if norm is None:
                t = text
            elif norm is normalize_text:
                t = " ".join(text.split()) if text.isascii() else normalize_text(text)
            else:
                t = self._norm(text)
            h = base.copy()
            h.update(t.encode("utf-8", "surrogatepass"))
            k = "emb:" + h.hexdigest()
            order.append(k)
            if k not in text_of:
                text_of[k] = t
        call.keys = list(text_of)
        return call

    # --- stored values --------------------------------------------------------

    def _accept(self, found: Mapping[Hashable, Any], call: _Call) -> int:
        """Move valid float32 blobs into ``call.found``; the number of bad ones."""
        bad = 0
        dim = self._dim
        out = call.found
        for k, blob in found.items():
            if type(blob) is not bytes or not blob or len(blob) % 4:
                bad += 1
                continue
            if dim is None:
                dim = self._learn_dim(len(blob) // 4)
            if len(blob) != 4 * dim:
                bad += 1
                continue
            out[k] = blob  # type: ignore[index]
        return bad

    def _learn_dim(self, dim: int) -> int:
        with self._lock:
            if self._dim is None:
                self._dim = dim
            return self._dim

    def _read(self, keys: list[str], call: _Call) -> tuple[int, int]:
        """Look ``keys`` up; ``(bad entries, cache errors)``."""
        if not keys:
            return 0, 0
        try:
            if self._get_many is not None:
                found: Mapping[Hashable, Any] = self._get_many(keys)
            else:
                get = self._cache.get
                found = {}
                for k in keys:
                    v = get(k, None)
                    if v is not None:
                        found[k] = v
        except _SOFT_ERRORS:
            return 0, 1
        return self._accept(found, call), 0

    async def _aread(self, keys: list[str], call: _Call) -> tuple[int, int]:
        if not keys:
            return 0, 0
        try:
            if self._aget_many is not None:
                found: Mapping[Hashable, Any] = await self._aget_many(keys)
            elif self._get_many is not None:
                found = self._get_many(keys)
            elif callable(self._aget):
                found = {}
                for k in keys:
                    v = await self._aget(k, None)
                    if v is not None:
                        found[k] = v
            else:
                return self._read(keys, call)
        except _SOFT_ERRORS:
            return 0, 1
        return self._accept(found, call), 0

    def _write(self, items: dict[str, bytes]) -> int:
        """Store ``items``; the number of cache errors (0 or 1)."""
        try:
            if self._set_many is not None:
                self._set_many(items, self._ttl)
            else:
                for k, v in items.items():
                    self._cache.set(k, v, self._ttl)
        except _SOFT_ERRORS:
            return 1
        return 0

    async def _awrite(self, items: dict[str, bytes]) -> int:
        try:
            if self._aset_many is not None:
                await self._aset_many(items, self._ttl)
            elif self._set_many is not None:
                self._set_many(items, self._ttl)
            elif callable(self._aset):
                for k, v in items.items():
                    await self._aset(k, v, self._ttl)
            else:
                return self._write(items)
        except _SOFT_ERRORS:
            return 1
        return 0

    # --- computing ------------------------------------------------------------

    def _blobs(self, out: Any, texts: list[str]) -> list[bytes]:
        """``embed_fn``'s output for ``texts`` as float32 bytes, one per text."""
        n = len(texts)
        try:
            arr = np.asarray(out, dtype=_F32)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"embed_fn returned {type(out).__name__} for {n} texts, which is not "
                f"a sequence of equal-length numeric vectors: {exc}"
            ) from None
        if arr.ndim != 2 or arr.shape[0] != n:
            got = f"shape {arr.shape}" if arr.ndim != 1 or arr.shape[0] != n else "1 dimension"
            raise ConfigurationError(
                f"embed_fn returned {got} for {n} texts: it must return one 1-D vector per "
                f"text (a 2-D array of shape ({n}, dim) or a sequence of {n} vectors)"
            )
        dim = arr.shape[1]
        if dim == 0:
            raise ConfigurationError("embed_fn returned vectors of dimension 0")
        known = self._dim if self._dim is not None else self._learn_dim(dim)
        if dim != known:
            raise ConfigurationError(
                f"embed_fn returned vectors of dimension {dim} (model_id={self._model_id!r}), "
                f"but this cache holds dimension {known}: use another model_id for another model"
            )
        arr = np.ascontiguousarray(arr)
        return [row.tobytes() for row in arr]

    def _call_sync(self, texts: list[str]) -> Any:
        out = self._embed_fn(texts)
        if inspect.isawaitable(out):
            close = getattr(out, "close", None)
            if callable(close):
                close()
            raise InputTypeError(
                "embed_fn is async (it returned an awaitable): use aembed / aembed_many"
            )
        return out

    def _compute(self, texts: list[str]) -> list[bytes]:
        t0 = time.perf_counter()
        try:
            blobs = self._blobs(self._call_sync(texts), texts)
        except Exception:
            self._count_compute(len(texts), time.perf_counter() - t0, failed=True)
            raise
        self._count_compute(len(texts), time.perf_counter() - t0)
        return blobs

    async def _acompute(self, texts: list[str]) -> list[bytes]:
        t0 = time.perf_counter()
        try:
            if self._fn_is_async:
                out = await self._embed_fn(texts)
            else:
                out = await asyncio.to_thread(self._embed_fn, texts)
                if inspect.isawaitable(out):
                    out = await out
            blobs = self._blobs(out, texts)
        except Exception:
            self._count_compute(len(texts), time.perf_counter() - t0, failed=True)
            raise
        self._count_compute(len(texts), time.perf_counter() - t0)
        return blobs

    def _count_compute(self, n: int, seconds: float, failed: bool = False) -> None:
        with self._lock:
            c = self._c
            c.batch_calls += 1
            c.compute_seconds += seconds
            if failed:
                c.compute_errors += 1
            else:
                c.computed += n

    # --- single-flight --------------------------------------------------------

    def _join(
        self, keys: list[str], loop: asyncio.AbstractEventLoop | None
    ) -> tuple[list[tuple[str, Flight]], list[tuple[str, Flight]], list[str]]:
        """Split missing keys into (lead, follow, direct). ``direct``: keys whose
        flight this caller cannot wait for without deadlocking (its own, or one
        led by a task of the loop this thread runs), computed without a flight."""
        lead: list[tuple[str, Flight]] = []
        follow: list[tuple[str, Flight]] = []
        direct: list[str] = []
        me: object = asyncio.current_task() if loop is not None else threading.get_ident()
        running = loop if loop is not None else _running_loop()
        for k in keys:
            flight, leader = self._flights.join(k, loop)
            if leader:
                lead.append((k, flight))
            elif flight.leader == me or (
                loop is None and running is not None and flight.loop is running
            ):
                direct.append(k)
            else:
                follow.append((k, flight))
        return lead, follow, direct

    def _lead(self, call: _Call, pending: dict[str, Flight]) -> int:
        """Compute the keys this caller leads, store them, land their flights;
        the number of cache errors. Every flight lands, whatever happens."""
        errors = 0
        found = call.found
        try:
            # another caller may have stored one between our read and our join
            errors += self._read(list(pending), call)[1]
            for k in [k for k in pending if k in found]:
                self._flights.land(k, pending.pop(k), VALUE, found[k])
            if pending:
                keys = list(pending)
                blobs = self._compute([call.text_of[k] for k in keys])
                items = dict(zip(keys, blobs, strict=True))
                found.update(items)
                try:
                    errors += self._write(items)
                finally:
                    for k in keys:
                        self._flights.land(k, pending.pop(k), VALUE, items[k])
        except BaseException as exc:
            self._land_failed(pending, exc)
            raise
        return errors

    async def _alead(self, call: _Call, pending: dict[str, Flight]) -> int:
        """:meth:`_lead` for asyncio."""
        errors = 0
        found = call.found
        try:
            errors += (await self._aread(list(pending), call))[1]
            for k in [k for k in pending if k in found]:
                self._flights.land(k, pending.pop(k), VALUE, found[k])
            if pending:
                keys = list(pending)
                blobs = await self._acompute([call.text_of[k] for k in keys])
                items = dict(zip(keys, blobs, strict=True))
                found.update(items)
                try:
                    errors += await self._awrite(items)
                finally:
                    for k in keys:
                        self._flights.land(k, pending.pop(k), VALUE, items[k])
        except BaseException as exc:
            self._land_failed(pending, exc)
            raise
        return errors

    def _land_failed(self, pending: dict[str, Flight], exc: BaseException) -> None:
        kind = ERROR if isinstance(exc, Exception) else RETRY
        for k, flight in pending.items():
            self._flights.land(k, flight, kind, exc)
        pending.clear()

    def _fill(self, call: _Call, missing: list[str]) -> tuple[int, int, int]:
        """Compute (or wait for) the missing keys; (coalesced, bad, cache errors)."""
        coalesced = errors = 0
        todo = missing
        while todo:
            lead, follow, direct = self._join(todo, None)
            if lead:
                errors += self._lead(call, dict(lead))
            if direct:
                blobs = self._compute([call.text_of[k] for k in direct])
                items = dict(zip(direct, blobs, strict=True))
                call.found.update(items)
                errors += self._write(items)
            todo = []
            for k, flight in follow:
                kind, outcome = flight.wait()
                if kind == VALUE:
                    call.found[k] = outcome
                    coalesced += 1
                elif kind == ERROR:
                    raise outcome
                else:
                    todo.append(k)
        return coalesced, 0, errors

    async def _afill(self, call: _Call, missing: list[str]) -> tuple[int, int, int]:
        coalesced = errors = 0
        todo = missing
        loop = asyncio.get_running_loop()
        while todo:
            lead, follow, direct = self._join(todo, loop)
            if lead:
                errors += await self._alead(call, dict(lead))
            if direct:
                blobs = await self._acompute([call.text_of[k] for k in direct])
                items = dict(zip(direct, blobs, strict=True))
                call.found.update(items)
                errors += await self._awrite(items)
            todo = []
            for k, flight in follow:
                kind, outcome = await flight.wait_async()
                if kind == VALUE:
                    call.found[k] = outcome
                    coalesced += 1
                elif kind == ERROR:
                    raise outcome
                else:
                    todo.append(k)
        return coalesced, 0, errors

    # --- results --------------------------------------------------------------

    def _assemble(self, call: _Call) -> Vector:
        n = len(call.order)
        if n == 0:
            return np.empty((0, self._dim or 0), dtype=_F32)
        found = call.found
        # one copy into a fresh, writable buffer: callers may modify the rows
        buf = bytearray().join([found[k] for k in call.order])
        mat: Vector = np.frombuffer(buf, dtype=_F32).reshape(n, -1)
        return mat

    def _count(self, call: _Call, hits: int, outcome: tuple[int, int, int], bad: int) -> None:
        coalesced, bad2, errors = outcome
        with self._lock:
            c = self._c
            c.requests += len(call.order)
            c.duplicates += len(call.order) - len(call.keys)
            c.hits += hits
            c.misses += len(call.keys) - hits
            c.coalesced += coalesced
            c.bad_entries += bad + bad2
            c.cache_errors += errors

    # --- public API -------------------------------------------------------------

    def embed_matrix(self, texts: Sequence[str]) -> Vector:
        """The vectors of ``texts`` as one float32 matrix of shape ``(len(texts), dim)``.

        Only the texts not cached are computed, in one ``embed_fn`` call."""
        call = self._plan(texts)
        bad, errors = self._read(call.keys, call)
        hits = len(call.found)
        missing = [k for k in call.keys if k not in call.found]
        outcome = self._fill(call, missing) if missing else (0, 0, 0)
        self._count(call, hits, (outcome[0], outcome[1], outcome[2] + errors), bad)
        return self._assemble(call)

    def embed_many(self, texts: Sequence[str]) -> list[Vector]:
        """The vector of each text, in order (float32 1-D arrays, each writable and
        the caller's own). Only the texts not cached are computed, in one
        ``embed_fn`` call; a text repeated in ``texts`` is computed once."""
        return list(self.embed_matrix(texts))

    def embed(self, text: str) -> Vector:
        """The vector of one text."""
        if type(text) is not str:
            raise InputTypeError(f"text must be a str, not {type(text).__name__}")
        vec: Vector = self.embed_matrix([text])[0]
        return vec

    async def aembed_matrix(self, texts: Sequence[str]) -> Vector:
        """:meth:`embed_matrix` for asyncio (``embed_fn`` may be ``async def``)."""
        call = self._plan(texts)
        bad, errors = await self._aread(call.keys, call)
        hits = len(call.found)
        missing = [k for k in call.keys if k not in call.found]
        outcome = await self._afill(call, missing) if missing else (0, 0, 0)
        self._count(call, hits, (outcome[0], outcome[1], outcome[2] + errors), bad)
        return self._assemble(call)

    async def aembed_many(self, texts: Sequence[str]) -> list[Vector]:
        """:meth:`embed_many` for asyncio (``embed_fn`` may be ``async def``)."""
        return list(await self.aembed_matrix(texts))

    async def aembed(self, text: str) -> Vector:
        """:meth:`embed` for asyncio."""
        if type(text) is not str:
            raise InputTypeError(f"text must be a str, not {type(text).__name__}")
        vec: Vector = (await self.aembed_matrix([text]))[0]
        return vec

    def __call__(self, texts: Sequence[str]) -> list[Vector]:
        """``embed_many``: an EmbeddingCache is itself an ``embed_fn`` (e.g. for
        :class:`~overdrive.ai.SemanticCache`)."""
        return self.embed_many(texts)

    def stats(self) -> dict[str, Any]:
        """Counters since creation.

        ``requests``: texts asked for; ``duplicates``: texts repeating a key
        already in the same call; ``hits``/``misses``: distinct keys found /
        not found in the cache; ``coalesced``: misses answered by another
        caller's compute in flight; ``computed``: texts sent to ``embed_fn``;
        ``batch_calls``: ``embed_fn`` calls; ``compute_seconds``: time in them;
        ``saved_seconds``: (hits + duplicates + coalesced) x the mean compute
        time per text; ``bad_entries``: stored values that were not float32
        vectors of this dimension (recomputed); ``cache_errors``: tier reads or
        writes that failed (the call went on without the cache).
        """
        with self._lock:
            c = self._c
            computed, seconds = c.computed, c.compute_seconds
            saved_texts = c.hits + c.duplicates + c.coalesced
            distinct = c.hits + c.misses
            out: dict[str, Any] = {
                "requests": c.requests,
                "hits": c.hits,
                "misses": c.misses,
                "hit_ratio": c.hits / distinct if distinct else 0.0,
                "duplicates": c.duplicates,
                "coalesced": c.coalesced,
                "computed": computed,
                "batch_calls": c.batch_calls,
                "compute_errors": c.compute_errors,
                "compute_seconds": seconds,
                "saved_seconds": saved_texts * seconds / computed if computed else 0.0,
                "bad_entries": c.bad_entries,
                "cache_errors": c.cache_errors,
                "dim": self._dim or 0,
            }
        return out

    def close(self) -> None:
        """Close the cache tier if this EmbeddingCache made it (a cache you
        passed in stays yours to close). Idempotent."""
        if self._owns_cache:
            self._cache.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
