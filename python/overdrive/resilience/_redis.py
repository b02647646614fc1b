"""Shared state in Redis for the breaker and the rate limiter.

``redis=`` accepts a :class:`~overdrive.cache.RedisTier` (its client and
prefix are reused), a ``redis.Redis`` client (``decode_responses=False``), or a
``redis://`` URL. Every state change is one atomic Lua script that reads the
server's clock (``TIME``), so processes on different hosts never compare their
own clocks.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

from ..exceptions import ConfigurationError, InputTypeError

__all__ = ["RedisLink", "resolve_redis"]

_DEFAULT_PREFIX = "od:"


class RedisLink:
    """A redis-py client, a key prefix and the Lua scripts registered on it."""

    def __init__(self, client: Any, prefix: str, where: str, owned: bool = False) -> None:
        self.client = client
        self.prefix = prefix
        self.where = where
        self._scripts: dict[str, Any] = {}
        self._lock = threading.Lock()
        # a client made from a URL is ours: closed by close() or when the owner goes away
        self._finalizer = weakref.finalize(self, _close_client, client) if owned else None

    def close(self) -> None:
        """Close the client if this link created it (from a URL); else leave it open."""
        if self._finalizer is not None:
            self._finalizer()

    def key(self, *parts: str) -> str:
        """``prefix + ':'.join(parts)``."""
        return self.prefix + ":".join(parts)

    def script(self, name: str, text: str) -> Any:
        """The registered script ``name`` (``EVALSHA``, reloaded by redis-py on NOSCRIPT)."""
        s = self._scripts.get(name)
        if s is None:
            with self._lock:
                s = self._scripts.get(name)
                if s is None:
                    s = self._scripts[name] = self.client.register_script(text)
        return s


def resolve_redis(redis: object, param: str = "redis") -> RedisLink | None:
    """``None`` stays ``None``; a RedisTier, a redis client or a URL becomes a RedisLink."""
    if redis is None:
        return None
    try:
        import redis as rd
    except ImportError as exc:  # pragma: no cover - redis is in the extras
        raise ConfigurationError(
            f"{param}= needs redis-py: pip install overdrive[redis] ({exc})"
        ) from None
    from ..cache.redis_tier import RedisTier, mask_url

    if isinstance(redis, RedisTier):
        return RedisLink(redis._get_client(), redis.prefix, repr(redis))
    if isinstance(redis, str):
        if not redis.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"invalid {param}={mask_url(redis)!r}: use redis://, rediss:// or unix://"
            )
        try:
            client = rd.Redis.from_url(redis, socket_timeout=1.0, socket_connect_timeout=1.0)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"invalid {param}={mask_url(redis)!r}: {exc}") from None
        return RedisLink(client, _DEFAULT_PREFIX, mask_url(redis), owned=True)
    if isinstance(redis, (rd.Redis, rd.cluster.RedisCluster)):
        if redis.get_encoder().decode_responses:
            raise ConfigurationError(
                f"{param} client has decode_responses=True; create it with decode_responses=False"
            )
        return RedisLink(redis, _DEFAULT_PREFIX, f"<{type(redis).__name__}>")
    raise InputTypeError(
        f"{param} must be a RedisTier, a redis.Redis client or a redis:// URL, "
        f"not {type(redis).__name__}"
    )


def _close_client(client: Any) -> None:
    from ..cache.redis_tier import close_client

    with contextlib.suppress(Exception):
        close_client(client)
