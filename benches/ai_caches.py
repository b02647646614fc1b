"""asv benchmarks for the AI caches.

* EmbeddingCache: ``embed_many`` of texts that are all cached, against calling
  a numpy embedding function (hashed bag of words, projected to 384 dims by a
  fixed random matrix) directly on the same texts.
* SemanticCache: ``lookup`` at 10,000 and 100,000 cached prompts of dim 384
  (exact hit, semantic hit, miss); the query vector comes from a table, so the
  time is the cache's own (normalise + exact lookup + one matrix-vector product
  + argmax + the check under the lock).

Run by hand for a table of per-call numbers: ``python benches/ai_caches.py``.
"""

from __future__ import annotations

import hashlib
import sys
import timeit
from typing import Any, ClassVar

import numpy as np

from overdrive import ai

DIM = 384
BUCKETS = 4096
_PROJ = np.random.default_rng(0).standard_normal((BUCKETS, DIM)).astype(np.float32)


def numpy_embed(texts: list[str]) -> np.ndarray:
    """A small deterministic numpy "model": hashed bag of words -> 384 dims."""
    rows = np.zeros((len(texts), BUCKETS), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            h = hashlib.blake2b(word.encode(), digest_size=4).digest()
            rows[i, int.from_bytes(h, "little") % BUCKETS] += 1.0
    out = rows @ _PROJ
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def corpus(n: int) -> list[str]:
    words = [f"w{i}" for i in range(500)]
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(words, size=12)) for _ in range(n)]


class EmbedManyHit:
    """``embed_many`` of ``batch`` cached texts vs ``numpy_embed`` on them."""

    params: ClassVar[list[int]] = [1, 64]
    param_names: ClassVar[list[str]] = ["batch"]

    def setup(self, batch: int) -> None:
        self.texts = corpus(batch)
        self.ec = ai.EmbeddingCache(numpy_embed, model_id="bow-384")
        self.ec.embed_many(self.texts)

    def time_cache_hit(self, batch: int) -> None:
        self.ec.embed_many(self.texts)

    def time_embed_fn_direct(self, batch: int) -> None:
        numpy_embed(self.texts)


class _Table:
    """embed_fn returning rows of a fixed matrix: prompt ``p{i}`` -> row i."""

    def __init__(self, matrix: np.ndarray, extra: dict[str, np.ndarray]) -> None:
        self.matrix = matrix
        self.extra = extra

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.matrix.shape[1]), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self.extra[t] if t in self.extra else self.matrix[int(t[1:])]
        return out


class SemanticLookup:
    """``SemanticCache.lookup`` with ``entries`` cached prompts of dim 384."""

    params: ClassVar[list[int]] = [10_000, 100_000]
    param_names: ClassVar[list[str]] = ["entries"]
    timeout = 300

    def setup(self, entries: int) -> None:
        rng = np.random.default_rng(2)
        matrix = rng.standard_normal((entries, DIM)).astype(np.float32)
        near = matrix[entries // 2] + 0.05 * rng.standard_normal(DIM).astype(np.float32)
        far = rng.standard_normal(DIM).astype(np.float32)
        self.sc = ai.SemanticCache(
            _Table(matrix, {"near": near, "far": far}), threshold=0.9, max_entries=entries
        )
        self.sc.set_many((f"p{i}", i) for i in range(entries))
        # the first lookup of each embeds it; later ones reuse the miss's vector
        self.sc.lookup("near")
        self.sc.lookup("far")
        self.exact = f"p{entries // 3}"

    def time_exact_hit(self, entries: int) -> None:
        self.sc.lookup(self.exact)

    def time_semantic_hit(self, entries: int) -> None:
        self.sc.lookup("near")

    def time_miss(self, entries: int) -> None:
        self.sc.lookup("far")

    def peakmem_index(self, entries: int) -> None:
        self.sc.stats()


def _per_call(fn: Any) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()  # enough calls for >= 0.2 s
    return min(timer.repeat(number=number, repeat=3)) / number


def main() -> None:
    """Print per-call times (best of 5)."""
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    for batch in EmbedManyHit.params:
        b = EmbedManyHit()
        b.setup(batch)
        hit = _per_call(lambda b=b, batch=batch: b.time_cache_hit(batch))
        direct = _per_call(lambda b=b, batch=batch: b.time_embed_fn_direct(batch))
        print(
            f"embed_many batch={batch:3d}: cache hit {hit / batch * 1e6:7.2f} us/text, "
            f"numpy embed_fn {direct / batch * 1e6:7.2f} us/text ({direct / hit:.1f}x)"
        )
    for entries in SemanticLookup.params:
        s = SemanticLookup()
        s.setup(entries)
        exact = _per_call(lambda s=s, e=entries: s.time_exact_hit(e))
        sem = _per_call(lambda s=s, e=entries: s.time_semantic_hit(e))
        miss = _per_call(lambda s=s, e=entries: s.time_miss(e))
        raw = s.sc._matrix[: len(s.sc)]  # the floor: the matrix-vector product alone
        q = raw[0].copy()
        floor = _per_call(lambda raw=raw, q=q: raw @ q)
        assert s.sc.lookup("near") is not None and s.sc.lookup("far") is None
        print(
            f"SemanticCache {entries:7,d} x {DIM}: exact hit {exact * 1e6:6.2f} us, "
            f"semantic hit {sem * 1e6:8.1f} us, miss {miss * 1e6:8.1f} us "
            f"(numpy matvec alone {floor * 1e6:8.1f} us)"
        )


if __name__ == "__main__":
    main()
