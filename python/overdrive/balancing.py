"""Balancing: a load balancer and a shard router.

- :class:`Balancer`: picks one of N backends (threads, processes, replicas,
  URLs: it returns indices) by ``load_score`` (default), ``least_outstanding``,
  ``p2c`` or ``round_robin``; counts requests in flight, keeps EWMA latency
  and error rates, ejects failing backends for a cool-down and then probes
  them. ``acquire``/``release`` are lock-free atomics in Rust.
- :class:`ShardRouter`: consistent hashing with bounded loads: sticky routing
  of str/bytes/int keys to nodes with a fixed hash (the same in every
  process), no node above ``load_factor`` times its fair share.

Both hold only atomics and copy their state into a forked child like any
object. The worker pool lives in :mod:`overdrive.worker_pool`.
"""

from __future__ import annotations

from ._core import Balancer, Pick, ShardRouter

__all__ = ["Balancer", "Pick", "ShardRouter"]
