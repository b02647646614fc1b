"""The AI pipeline layer: compositions of overdrive's pieces for AI services.

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
"""

from __future__ import annotations

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

__all__ = [
    "ALL",
    "LOSSLESS",
    "Cascade",
    "CascadeModel",
    "Compacted",
    "CompactedMessages",
    "Step",
    "Transform",
    "approx_tokens",
    "compact",
    "compact_messages",
    "dedupe_lines",
    "dedupe_paragraphs",
    "json_to_xml",
    "make_dedupe_lines",
    "messages_tokens",
    "minify_json",
    "normalize_whitespace",
    "parse_xml",
    "trim_messages",
    "trim_text",
    "xml_to_data",
    "xml_to_json",
]
