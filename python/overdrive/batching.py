"""Batching: request batching (:mod:`overdrive.batcher`) and message batching
(:mod:`overdrive.message_batcher`), re-exported here so that
``from overdrive.batching import ...`` keeps working."""

from __future__ import annotations

from .batcher import Batcher, BatchFuture, batched
from .message_batcher import MessageBatcher, decode_batch, encode_batch

__all__ = [
    "BatchFuture",
    "Batcher",
    "MessageBatcher",
    "batched",
    "decode_batch",
    "encode_batch",
]
