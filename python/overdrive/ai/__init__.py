"""The AI pipeline layer: compositions of overdrive's pieces for AI services.

- Inference pool (:mod:`.inference_pool`): :class:`InferencePool` puts N model
  replicas each behind its own Batcher, chosen by the Balancer (or by the
  ShardRouter for a key or prompt prefix, for cache affinity); replicas are
  added and removed at run time (removal drains); per-replica stats.
- Prompt compaction (:mod:`.compaction`): :func:`compact` runs deterministic
  transforms (:data:`LOSSLESS` by default: XML -> JSON, JSON minification,
  whitespace normalisation; lossy ones: duplicate paragraphs/lines) with the
  tokens each saved, and trims to a token budget keeping the system part and
  the latest turns (:func:`compact_messages` for ``{"role", "content"}``
  conversations).
- Model cascade (:mod:`.cascade`): :class:`Cascade` calls the cheapest model
  first and escalates while the result is not accepted, with per-model
  counts, cost and latency and the cost saved against always calling the
  most expensive model.
- Embedding cache (:mod:`.embedding_cache`): :class:`EmbeddingCache` maps text
  to a vector computed once per (model id, normalised text), stored as float32
  bytes in any cache tier; a batch computes only its misses, in one call.
- Semantic cache (:mod:`.semantic_cache`): :class:`SemanticCache` maps a prompt
  to a response: an exact hit first, else the nearest cached prompt by cosine
  similarity above a threshold; :meth:`SemanticCache.evaluate` reports the
  precision/recall of semantic hits on labelled pairs.

The two caches need numpy (``pip install 'overdrive[ai]'``); they are imported
on first use, so compaction and the cascade work without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .cascade import Cascade, CascadeModel
from .compaction import (
    ALL,
    LOSSLESS,
    Compacted,
    CompactedMessages,
    Step,
    Transform,
    approx_tokens,
    compact,
    compact_messages,
    dedupe_lines,
    dedupe_paragraphs,
    json_to_xml,
    make_dedupe_lines,
    messages_tokens,
    minify_json,
    normalize_whitespace,
    parse_xml,
    trim_messages,
    trim_text,
    xml_to_data,
    xml_to_json,
)
from .inference_pool import InferencePool

if TYPE_CHECKING:
    from .embedding_cache import EmbeddingCache, embedding_key, normalize_text
    from .semantic_cache import SemanticCache, SemanticEvaluation, SemanticHit

# name -> submodule, imported on first access (they need numpy)
_LAZY = {
    "EmbeddingCache": "embedding_cache",
    "embedding_key": "embedding_cache",
    "normalize_text": "embedding_cache",
    "SemanticCache": "semantic_cache",
    "SemanticEvaluation": "semantic_cache",
    "SemanticHit": "semantic_cache",
}


def __getattr__(name: str) -> Any:
    """Import the numpy-backed caches when first named."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ALL",
    "LOSSLESS",
    "Cascade",
    "CascadeModel",
    "Compacted",
    "CompactedMessages",
    "EmbeddingCache",
    "InferencePool",
    "SemanticCache",
    "SemanticEvaluation",
    "SemanticHit",
    "Step",
    "Transform",
    "approx_tokens",
    "compact",
    "compact_messages",
    "dedupe_lines",
    "dedupe_paragraphs",
    "embedding_key",
    "json_to_xml",
    "make_dedupe_lines",
    "messages_tokens",
    "minify_json",
    "normalize_text",
    "normalize_whitespace",
    "parse_xml",
    "trim_messages",
    "trim_text",
    "xml_to_data",
    "xml_to_json",
]
