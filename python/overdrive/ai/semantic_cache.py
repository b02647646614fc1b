"""SemanticCache: prompt -> response, answered by the same or a similar prompt.

* **Lookup**: an exact hit first (the normalised prompt, no embedding needed),
  else the nearest cached prompt by cosine similarity (top-1, one float32
  matrix-vector product over the unit vectors of every cached prompt); a hit
  when that similarity is ``>= threshold``.
* **Embeddings**: ``embed_fn(texts: list[str])`` returns one vector per text,
  as for :class:`~overdrive.ai.EmbeddingCache` (which may itself be passed as
  ``embed_fn``, so prompt vectors are cached too). It receives the normalised
  prompt. The vector a miss computed is kept briefly, so the usual
  ``get`` -> model -> ``set`` sequence embeds the prompt once.
* **Bound**: at most ``max_entries`` prompts; the least recently used (set, or
  returned by an exact or semantic hit) is evicted first. With ``ttl``, an
  entry is never returned more than ``ttl`` seconds after it was set.
* **Index**: the vectors live in one float32 matrix that grows by doubling up
  to ``max_entries`` rows; an evicted prompt's row is zeroed and reused.
* **Evaluation**: :meth:`SemanticCache.evaluate` / :meth:`SemanticCache.sweep`
  report the precision and recall of semantic hits on labelled prompt pairs at
  one or several thresholds.

Thread-safe: a lock guards the index; ``embed_fn`` is never called under it,
and the similarity search itself runs outside it (the match it finds is checked
again under the lock before it is returned). Asyncio: ``aget``/``aset``/
``alookup`` await an async ``embed_fn`` (a sync one runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

try:
    import numpy as np
except ImportError as exc:  # pragma: no cover - numpy is in the "ai" extra
    raise ImportError(
        "overdrive.ai's SemanticCache needs numpy: pip install 'overdrive[ai]' (or numpy>=1.26)"
    ) from exc

from ..exceptions import ConfigurationError, InputTypeError
from ..telemetry.registry import auto_register
from .embedding_cache import EmbedFn, Vector, normalize_text

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "SemanticCache",
    "SemanticEvaluation",
    "SemanticHit",
]

#: The default bound on cached prompts.
DEFAULT_MAX_ENTRIES: Final = 10_000
_RECENT: Final = 256  # vectors of recent misses kept for the set() that follows
_MIN_ROWS: Final = 64
# searches over more float32 values than this run in a worker thread from aget()
_ASYNC_OFFLOAD: Final = 4_000_000
_F32: Final = np.dtype(np.float32)


class SemanticHit(NamedTuple):
    """What :meth:`SemanticCache.lookup` found: the cached ``response``, the
    cosine ``similarity`` (1.0 for an exact hit), the cached ``prompt`` it
    matched (as it was set) and whether the hit was ``exact``."""

    response: Any
    similarity: float
    prompt: str
    exact: bool


@dataclass(frozen=True)
class SemanticEvaluation:
    """Semantic-hit quality on labelled pairs at one ``threshold``.

    A pair ``(a, b, same)`` is a *predicted hit* when ``b`` cached would answer
    ``a``: the same normalised text, or cosine similarity ``>= threshold``.
    ``precision`` = true hits / predicted hits (None when nothing was
    predicted), ``recall`` = true hits / pairs labelled same (None when none
    is), ``f1`` their harmonic mean (None when either is None or both are 0),
    ``hit_rate`` = predicted hits / pairs.
    """

    threshold: float
    pairs: int
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    precision: float | None
    recall: float | None
    f1: float | None
    hit_rate: float


class _Entry:
    __slots__ = ("expires", "key", "prompt", "response", "slot")

    def __init__(
        self, key: str, prompt: str, response: Any, slot: int, expires: float | None
    ) -> None:
        self.key = key
        self.prompt = prompt
        self.response = response
        self.slot = slot
        self.expires = expires


class SemanticCache:
    """Cache responses by prompt, answering similar prompts from the cache.

    ``embed_fn(texts) -> vectors`` (sync or async; an
    :class:`~overdrive.ai.EmbeddingCache` will do). ``threshold`` in (0, 1]:
    the least cosine similarity that counts as a hit. ``max_entries``: the
    bound (LRU eviction). ``ttl``: seconds an entry lives (None: until
    evicted). ``normalize``: ``True`` (:func:`~overdrive.ai.normalize_text`:
    NFC, whitespace collapsed, case kept), ``False`` or a callable
    ``str -> str``; applied before the exact lookup and before embedding.
    ``dim``: the vector dimension (default: learnt from the first vector).
    ``clock``: monotonic seconds, for tests. ``name``: for stats and metrics.

    Errors: wrong argument types raise
    :class:`~overdrive.exceptions.InputTypeError`; bad values, and vectors of
    the wrong dimension or with NaN/inf, raise
    :class:`~overdrive.exceptions.ConfigurationError` naming them. An
    exception from ``embed_fn`` propagates and changes nothing.
    """

    def __init__(
        self,
        embed_fn: EmbedFn,
        threshold: float = 0.92,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl: float | None = None,
        normalize: bool | Callable[[str], str] = True,
        dim: int | None = None,
        clock: Callable[[], float] | None = None,
        name: str = "semantic",
    ) -> None:
        if not callable(embed_fn):
            raise InputTypeError(f"embed_fn must be callable, not {type(embed_fn).__name__}")
        self._threshold = _threshold("threshold", threshold)
        if isinstance(max_entries, bool) or not isinstance(max_entries, int):
            raise InputTypeError(f"max_entries must be an int, not {type(max_entries).__name__}")
        if max_entries < 1:
            raise ConfigurationError(f"invalid max_entries={max_entries!r}: must be >= 1")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
                raise InputTypeError(f"ttl must be a number of seconds or None, not {ttl!r}")
            if not 0 < ttl < math.inf:
                raise ConfigurationError(f"invalid ttl={ttl!r}: must be a finite number > 0")
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
        if clock is not None and not callable(clock):
            raise InputTypeError(f"clock must be callable or None, not {type(clock).__name__}")
        if not isinstance(name, str):
            raise InputTypeError(f"name must be a str, not {type(name).__name__}")
        self.name = name
        self._embed_fn = embed_fn
        aembed_many = getattr(embed_fn, "aembed_many", None)
        self._aembed: Callable[[list[str]], Any] | None = (
            aembed_many if callable(aembed_many) else None
        )
        self._fn_is_async = inspect.iscoroutinefunction(embed_fn) or inspect.iscoroutinefunction(
            getattr(embed_fn, "__call__", None)  # noqa: B004
        )
        self._max_entries = max_entries
        self._ttl = float(ttl) if ttl is not None else None
        self._clock = clock if clock is not None else time.monotonic
        self._dim = dim
        self._lock = threading.Lock()
        # normalised prompt -> entry, least recently used first
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._slots: list[_Entry | None] = []
        self._free: list[int] = []
        self._matrix: Vector = np.zeros((0, dim or 0), dtype=_F32)
        self._expires: np.ndarray[Any, np.dtype[np.float64]] = np.zeros(0)
        self._recent: collections.OrderedDict[str, Vector] = collections.OrderedDict()
        self._exact_hits = self._semantic_hits = self._misses = 0
        self._sets = self._updates = self._evictions = self._expirations = 0
        self._embed_calls = 0
        self._embed_seconds = 0.0
        auto_register(self, "semantic_cache")

    # --- properties -----------------------------------------------------------

    @property
    def threshold(self) -> float:
        """The least cosine similarity that is a hit."""
        return self._threshold

    @property
    def max_entries(self) -> int:
        """The bound on cached prompts."""
        return self._max_entries

    @property
    def dim(self) -> int | None:
        """The vector dimension (None until the first vector, unless given)."""
        return self._dim

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"SemanticCache(threshold={self._threshold}, entries={len(self)}, "
            f"max_entries={self._max_entries}, dim={self._dim}, name={self.name!r})"
        )

    # --- embedding (never under the lock) ---------------------------------------

    def _norm(self, prompt: object, what: str = "prompt") -> str:
        if type(prompt) is not str:
            raise InputTypeError(f"{what} must be a str, not {type(prompt).__name__}")
        norm = self._normalize
        if norm is None:
            return prompt
        out = norm(prompt)
        if type(out) is not str:
            raise InputTypeError(
                f"normalize returned a {type(out).__name__} for {prompt[:40]!r}, not a str"
            )
        return out

    def _vectors(self, out: Any, texts: list[str]) -> Vector:
        """``embed_fn``'s output for ``texts``: checked, as unit float32 rows."""
        n = len(texts)
        try:
            arr = np.array(out, dtype=_F32)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"embed_fn returned {type(out).__name__} for {n} texts, which is not "
                f"a sequence of equal-length numeric vectors: {exc}"
            ) from None
        if arr.ndim != 2 or arr.shape[0] != n:
            raise ConfigurationError(
                f"embed_fn returned shape {arr.shape} for {n} texts: it must return one "
                f"1-D vector per text (shape ({n}, dim))"
            )
        dim = arr.shape[1]
        if dim == 0:
            raise ConfigurationError("embed_fn returned vectors of dimension 0")
        with self._lock:
            if self._dim is None:
                self._dim = dim
            known = self._dim
        if dim != known:
            raise ConfigurationError(
                f"embed_fn returned a vector of dimension {dim} for {texts[0][:40]!r}, "
                f"but this cache holds dimension {known}"
            )
        if not np.isfinite(arr).all():
            bad = int(np.nonzero(~np.isfinite(arr).all(axis=1))[0][0])
            raise ConfigurationError(
                f"embed_fn returned a vector with NaN or infinity for {texts[bad][:40]!r}"
            )
        norms = np.linalg.norm(arr.astype(np.float64), axis=1, keepdims=True)
        norms[norms == 0.0] = 1.0  # zero vectors stay zero: they match nothing
        unit: Vector = (arr / norms).astype(_F32)
        return unit

    def _embed(self, texts: list[str]) -> Vector:
        t0 = time.perf_counter()
        out = self._embed_fn(texts)
        if inspect.isawaitable(out):
            close = getattr(out, "close", None)
            if callable(close):
                close()
            raise InputTypeError("embed_fn is async (it returned an awaitable): use aget / aset")
        self._count_embed(time.perf_counter() - t0)
        return self._vectors(out, texts)

    async def _aembed_rows(self, texts: list[str]) -> Vector:
        t0 = time.perf_counter()
        if self._aembed is not None:
            out = await self._aembed(texts)
        elif self._fn_is_async:
            out = await self._embed_fn(texts)
        else:
            out = await asyncio.to_thread(self._embed_fn, texts)
            if inspect.isawaitable(out):
                out = await out
        self._count_embed(time.perf_counter() - t0)
        return self._vectors(out, texts)

    def _count_embed(self, seconds: float) -> None:
        with self._lock:
            self._embed_calls += 1
            self._embed_seconds += seconds

    # --- the index (under the lock) ---------------------------------------------

    def _expired(self, entry: _Entry, now: float) -> bool:
        return entry.expires is not None and entry.expires <= now

    def _remove(self, key: str, entry: _Entry) -> None:
        del self._entries[key]
        self._slots[entry.slot] = None
        self._matrix[entry.slot] = 0.0
        self._free.append(entry.slot)

    def _exact(self, key: str, now: float) -> SemanticHit | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._expired(entry, now):
            self._remove(key, entry)
            self._expirations += 1
            return None
        self._entries.move_to_end(key)
        self._exact_hits += 1
        return SemanticHit(entry.response, 1.0, entry.prompt, True)

    def _snapshot(self) -> tuple[Vector, Any, int]:
        rows = len(self._slots)
        return self._matrix, self._expires if self._ttl is not None else None, rows

    @staticmethod
    def _best(matrix: Vector, expires: Any, rows: int, q: Vector, now: float) -> tuple[int, float]:
        """The row most similar to ``q`` (outside the lock) and its similarity."""
        if rows == 0:
            return -1, -math.inf
        sims = matrix[:rows] @ q
        if expires is not None:
            sims[expires[:rows] <= now] = -2.0
        best = int(np.argmax(sims))
        return best, float(sims[best])

    def _confirm(self, best: int, sim: float, q: Vector, now: float) -> SemanticHit | None:
        """Under the lock: the entry in row ``best`` if it still matches ``q``."""
        if best < 0 or sim < self._threshold or best >= len(self._slots):
            return None
        entry = self._slots[best]
        if entry is None or self._expired(entry, now):
            return None
        current = float(self._matrix[best] @ q)
        if current < self._threshold:
            return None
        self._entries.move_to_end(entry.key)
        self._semantic_hits += 1
        return SemanticHit(entry.response, current, entry.prompt, False)

    def _search(self, q: Vector, key: str) -> SemanticHit | None:
        """Top-1 search, then the check under the lock (redone under it if a
        concurrent write changed the row found)."""
        now = self._clock()
        with self._lock:
            matrix, expires, rows = self._snapshot()
        best, sim = self._best(matrix, expires, rows, q, now)
        with self._lock:
            hit = self._confirm(best, sim, q, now)
            if hit is None and sim >= self._threshold:
                # the row changed while we searched: search again, under the lock
                matrix, expires, rows = self._snapshot()
                best, sim = self._best(matrix, expires, rows, q, now)
                hit = self._confirm(best, sim, q, now)
            if hit is None:
                self._misses += 1
                self._remember(key, q)
            return hit

    def _remember(self, key: str, q: Vector) -> None:
        recent = self._recent
        recent[key] = q
        recent.move_to_end(key)
        while len(recent) > _RECENT:
            recent.popitem(last=False)

    def _grow(self, dim: int) -> None:
        cap = self._matrix.shape[0]
        new_cap = min(self._max_entries, max(_MIN_ROWS, 2 * cap))
        matrix = np.zeros((new_cap, dim), dtype=_F32)
        if cap:
            matrix[:cap] = self._matrix
        self._matrix = matrix
        if self._ttl is not None:
            expires = np.full(new_cap, math.inf)
            if cap:
                expires[:cap] = self._expires
            self._expires = expires

    def _insert(self, key: str, prompt: str, response: Any, q: Vector | None, now: float) -> None:
        expires = now + self._ttl if self._ttl is not None else None
        entry = self._entries.get(key)
        if entry is not None:  # set again: new response, same vector
            entry.response, entry.prompt, entry.expires = response, prompt, expires
            if expires is not None:
                self._expires[entry.slot] = expires
            self._entries.move_to_end(key)
            self._updates += 1
            return
        if q is None:  # deleted while the caller embedded: nothing to insert
            return
        if len(self._entries) >= self._max_entries:
            self._evict(now)
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._slots)
            if slot >= self._matrix.shape[0]:
                self._grow(q.shape[0])
            self._slots.append(None)
        self._matrix[slot] = q
        if expires is not None:
            self._expires[slot] = expires
        entry = _Entry(key, prompt, response, slot, expires)
        self._slots[slot] = entry
        self._entries[key] = entry
        self._sets += 1

    def _evict(self, now: float) -> None:
        if self._ttl is not None:
            rows = len(self._slots)
            for slot in np.nonzero(self._expires[:rows] <= now)[0].tolist():
                e = self._slots[slot]
                if e is not None:
                    self._remove(e.key, e)
                    self._expirations += 1
        while len(self._entries) >= self._max_entries:
            k, e = next(iter(self._entries.items()))
            self._remove(k, e)
            self._evictions += 1

    # --- public API -------------------------------------------------------------

    def lookup(self, prompt: str) -> SemanticHit | None:
        """The best hit for ``prompt`` (exact first, then semantic), or None."""
        key = self._norm(prompt)
        with self._lock:
            hit = self._exact(key, self._clock())
            if hit is not None:
                return hit
            if not self._entries:
                self._misses += 1
                return None
            q = self._recent.get(key)
        if q is None:
            q = self._embed([key])[0]
        return self._search(q, key)

    def get(self, prompt: str, default: Any = None) -> Any:
        """The cached response for ``prompt`` or a similar prompt, else ``default``."""
        hit = self.lookup(prompt)
        return default if hit is None else hit.response

    def set(self, prompt: str, response: Any) -> None:
        """Cache ``response`` for ``prompt`` (replacing the response of the same
        normalised prompt; its vector is computed once)."""
        key = self._norm(prompt)
        with self._lock:
            if key in self._entries:
                self._insert(key, prompt, response, None, self._clock())
                return
            q = self._recent.pop(key, None)
        if q is None:
            q = self._embed([key])[0]
        with self._lock:
            self._insert(key, prompt, response, q, self._clock())

    def _plan_many(
        self, items: Any
    ) -> tuple[list[tuple[str, str, Any]], list[str], dict[str, Vector]]:
        """``(key, prompt, response)`` per item, the keys that need a vector, and
        the vectors of the keys already cached."""
        if isinstance(items, Mapping):
            pairs: Iterable[Any] = items.items()
        elif isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise InputTypeError(
                "items must be a mapping prompt -> response or an iterable of "
                f"(prompt, response) pairs, not {type(items).__name__}"
            )
        else:
            pairs = items
        planned: list[tuple[str, str, Any]] = []
        for i, item in enumerate(pairs):
            if not isinstance(item, tuple) or len(item) != 2:
                raise InputTypeError(
                    f"items[{i}] must be a (prompt, response) pair, not {item!r:.60}"
                )
            prompt, response = item
            planned.append((self._norm(prompt, f"items[{i}] prompt"), prompt, response))
        known: dict[str, Vector] = {}
        need: list[str] = []
        with self._lock:
            for key in dict.fromkeys(k for k, _, _ in planned):
                entry = self._entries.get(key)
                if entry is not None:
                    known[key] = self._matrix[entry.slot].copy()
                else:
                    q = self._recent.get(key)
                    if q is not None:
                        known[key] = q
                    else:
                        need.append(key)
        return planned, need, known

    def _insert_many(
        self,
        planned: list[tuple[str, str, Any]],
        need: list[str],
        vecs: Vector,
        known: dict[str, Vector],
    ) -> None:
        known.update(zip(need, vecs, strict=True))
        with self._lock:
            now = self._clock()
            for key, prompt, response in planned:
                self._insert(key, prompt, response, known[key], now)

    def set_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """:meth:`set` for many prompts (e.g. warming the cache from a log), the
        new ones embedded in one ``embed_fn`` call; later items win."""
        planned, need, known = self._plan_many(items)
        vecs = self._embed(need) if need else np.zeros((0, 0), dtype=_F32)
        self._insert_many(planned, need, vecs, known)

    async def aset_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """:meth:`set_many` for asyncio."""
        planned, need, known = self._plan_many(items)
        vecs = await self._aembed_rows(need) if need else np.zeros((0, 0), dtype=_F32)
        self._insert_many(planned, need, vecs, known)

    async def alookup(self, prompt: str) -> SemanticHit | None:
        """:meth:`lookup` for asyncio."""
        key = self._norm(prompt)
        with self._lock:
            hit = self._exact(key, self._clock())
            if hit is not None:
                return hit
            if not self._entries:
                self._misses += 1
                return None
            q = self._recent.get(key)
            size = len(self._slots) * (self._dim or 0)
        if q is None:
            q = (await self._aembed_rows([key]))[0]
        if size > _ASYNC_OFFLOAD:  # a long matrix product: keep the loop serving
            return await asyncio.to_thread(self._search, q, key)
        return self._search(q, key)

    async def aget(self, prompt: str, default: Any = None) -> Any:
        """:meth:`get` for asyncio (``embed_fn`` may be async)."""
        hit = await self.alookup(prompt)
        return default if hit is None else hit.response

    async def aset(self, prompt: str, response: Any) -> None:
        """:meth:`set` for asyncio."""
        key = self._norm(prompt)
        with self._lock:
            if key in self._entries:
                self._insert(key, prompt, response, None, self._clock())
                return
            q = self._recent.pop(key, None)
        if q is None:
            q = (await self._aembed_rows([key]))[0]
        with self._lock:
            self._insert(key, prompt, response, q, self._clock())

    def delete(self, prompt: str) -> bool:
        """Forget ``prompt`` (its normalised form); True when it was cached."""
        key = self._norm(prompt)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False
            self._remove(key, entry)
            return True

    def clear(self) -> None:
        """Forget every prompt (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._slots = []
            self._free = []
            self._recent.clear()
            self._matrix = np.zeros((0, self._dim or 0), dtype=_F32)
            self._expires = np.zeros(0)

    # --- evaluation ---------------------------------------------------------------

    def _labelled(
        self, labelled_pairs: Iterable[Any]
    ) -> tuple[list[tuple[str, str, bool]], list[str]]:
        """The checked, normalised pairs and the distinct texts to embed."""
        if isinstance(labelled_pairs, (str, bytes)) or not isinstance(labelled_pairs, Iterable):
            raise InputTypeError(
                "labelled_pairs must be an iterable of (prompt, cached_prompt, same) tuples, "
                f"not {type(labelled_pairs).__name__}"
            )
        pairs: list[tuple[str, str, bool]] = []
        for i, item in enumerate(labelled_pairs):
            if not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or len(item) != 3:
                raise InputTypeError(
                    f"labelled_pairs[{i}] must be a (prompt, cached_prompt, same) tuple, "
                    f"not {item!r:.60}"
                )
            a, b, same = item
            if not isinstance(same, (bool, np.bool_)):
                raise InputTypeError(
                    f"labelled_pairs[{i}][2] (same) must be a bool, not {type(same).__name__}"
                )
            pairs.append(
                (
                    self._norm(a, f"labelled_pairs[{i}][0]"),
                    self._norm(b, f"labelled_pairs[{i}][1]"),
                    bool(same),
                )
            )
        texts = list(dict.fromkeys(t for a, b, _ in pairs for t in (a, b) if a != b))
        return pairs, texts

    @staticmethod
    def _similarities(
        pairs: list[tuple[str, str, bool]], texts: list[str], vecs: Vector
    ) -> tuple[list[float], list[bool]]:
        row = {t: i for i, t in enumerate(texts)}
        # float32 dot products, as the search computes them
        sims = [1.0 if a == b else float(vecs[row[a]] @ vecs[row[b]]) for a, b, _ in pairs]
        return sims, [same for _, _, same in pairs]

    def _pair_similarities(self, labelled_pairs: Iterable[Any]) -> tuple[list[float], list[bool]]:
        pairs, texts = self._labelled(labelled_pairs)
        vecs = self._embed(texts) if texts else np.zeros((0, 0), dtype=_F32)
        return self._similarities(pairs, texts, vecs)

    async def _apair_similarities(
        self, labelled_pairs: Iterable[Any]
    ) -> tuple[list[float], list[bool]]:
        pairs, texts = self._labelled(labelled_pairs)
        vecs = await self._aembed_rows(texts) if texts else np.zeros((0, 0), dtype=_F32)
        return self._similarities(pairs, texts, vecs)

    @staticmethod
    def _score(threshold: float, sims: list[float], labels: list[bool]) -> SemanticEvaluation:
        tp = fp = fn = tn = 0
        for sim, same in zip(sims, labels, strict=True):
            hit = sim >= threshold
            if hit and same:
                tp += 1
            elif hit:
                fp += 1
            elif same:
                fn += 1
            else:
                tn += 1
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall > 0
            else None
        )
        n = len(sims)
        return SemanticEvaluation(
            threshold, n, tp, fp, fn, tn, precision, recall, f1, (tp + fp) / n if n else 0.0
        )

    def evaluate(
        self, labelled_pairs: Iterable[Any], threshold: float | None = None
    ) -> SemanticEvaluation:
        """Precision and recall of semantic hits on ``labelled_pairs`` at
        ``threshold`` (default: this cache's).

        Each pair is ``(prompt, cached_prompt, same)``: would ``cached_prompt``'s
        response be a right answer to ``prompt``? The texts are embedded in one
        ``embed_fn`` call; the cache's contents are neither read nor changed.
        """
        t = self._threshold if threshold is None else _threshold("threshold", threshold)
        sims, labels = self._pair_similarities(labelled_pairs)
        return self._score(t, sims, labels)

    def sweep(
        self, labelled_pairs: Iterable[Any], thresholds: Iterable[float]
    ) -> list[SemanticEvaluation]:
        """:meth:`evaluate` at each of ``thresholds`` (the pairs embedded once):
        the precision/recall trade-off to choose a threshold from."""
        if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Iterable):
            raise InputTypeError(
                f"thresholds must be an iterable of numbers, not {type(thresholds).__name__}"
            )
        ts = [_threshold(f"thresholds[{i}]", t) for i, t in enumerate(thresholds)]
        sims, labels = self._pair_similarities(labelled_pairs)
        return [self._score(t, sims, labels) for t in ts]

    async def aevaluate(
        self, labelled_pairs: Iterable[Any], threshold: float | None = None
    ) -> SemanticEvaluation:
        """:meth:`evaluate` for an async ``embed_fn`` (or from a running loop)."""
        t = self._threshold if threshold is None else _threshold("threshold", threshold)
        sims, labels = await self._apair_similarities(labelled_pairs)
        return self._score(t, sims, labels)

    async def asweep(
        self, labelled_pairs: Iterable[Any], thresholds: Iterable[float]
    ) -> list[SemanticEvaluation]:
        """:meth:`sweep` for an async ``embed_fn`` (or from a running loop)."""
        if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Iterable):
            raise InputTypeError(
                f"thresholds must be an iterable of numbers, not {type(thresholds).__name__}"
            )
        ts = [_threshold(f"thresholds[{i}]", t) for i, t in enumerate(thresholds)]
        sims, labels = await self._apair_similarities(labelled_pairs)
        return [self._score(t, sims, labels) for t in ts]

    def stats(self) -> dict[str, Any]:
        """Counters: ``exact_hits``, ``semantic_hits``, ``hits`` (both),
        ``misses``, ``hit_ratio``, ``sets`` (new prompts), ``updates`` (set
        again), ``evictions`` (LRU), ``expirations`` (TTL), ``entries``,
        ``capacity`` (matrix rows allocated), ``matrix_bytes``, ``dim``,
        ``embed_calls``, ``embed_seconds``."""
        with self._lock:
            hits = self._exact_hits + self._semantic_hits
            requests = hits + self._misses
            return {
                "exact_hits": self._exact_hits,
                "semantic_hits": self._semantic_hits,
                "hits": hits,
                "misses": self._misses,
                "hit_ratio": hits / requests if requests else 0.0,
                "sets": self._sets,
                "updates": self._updates,
                "evictions": self._evictions,
                "expirations": self._expirations,
                "entries": len(self._entries),
                "max_entries": self._max_entries,
                "capacity": int(self._matrix.shape[0]),
                "matrix_bytes": int(self._matrix.nbytes),
                "dim": self._dim or 0,
                "threshold": self._threshold,
                "embed_calls": self._embed_calls,
                "embed_seconds": self._embed_seconds,
            }


def _threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise InputTypeError(f"{name} must be a number in (0, 1], not {type(value).__name__}")
    t = float(value)
    if not 0.0 < t <= 1.0:
        raise ConfigurationError(f"invalid {name}={value!r}: must be in (0, 1]")
    return t
