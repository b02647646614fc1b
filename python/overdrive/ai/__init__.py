"""The AI pipeline layer: compositions of the core pieces for inference services.

- :class:`InferencePool`: N model replicas, each behind its own Batcher,
  chosen by the Balancer (or by the ShardRouter for a key, for cache
  affinity); replicas added and removed at run time.
"""

from __future__ import annotations

from .inference_pool import InferencePool

__all__ = ["InferencePool"]
