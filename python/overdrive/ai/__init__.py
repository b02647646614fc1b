"""The AI pipeline layer: compositions of overdrive's core pieces for services
that call models.

- :class:`InferencePool`: N model replicas, each behind its own Batcher,
  chosen by the Balancer (or by the ShardRouter for a key, for cache
  affinity); replicas added and removed at run time; per-replica stats.
- :class:`EmbeddingCache`: text -> vector, computed once per (model id,
  normalised text), stored as float32 bytes in any cache tier; a batch computes
  only its misses, in one call.
- :class:`SemanticCache`: prompt -> response; an exact hit first, else the
  nearest cached prompt by cosine similarity above a threshold; with an
  evaluation helper (precision/recall of semantic hits on labelled pairs).

Needs numpy (``pip install 'overdrive[ai]'``).
"""

from __future__ import annotations

from .embedding_cache import EmbeddingCache, embedding_key, normalize_text
from .inference_pool import InferencePool
from .semantic_cache import SemanticCache, SemanticEvaluation, SemanticHit

__all__ = [
    "EmbeddingCache",
    "InferencePool",
    "SemanticCache",
    "SemanticEvaluation",
    "SemanticHit",
    "embedding_key",
    "normalize_text",
]
