"""The L2 tier: a Redis (or Redis Cluster) store shared by every process and host.

:class:`RedisTier` keeps the :class:`~overdrive.cache.Tier` contract on top of
redis-py (with hiredis's parser when installed). Entries are stored under
``prefix + stable_key(key)`` as bytes written by the tier's serializer (msgpack
by default; nothing read back is ever unpickled unless you pass a signed
:class:`~overdrive.cache.PickleSerializer`).

Coalescing: concurrent ``get``/``lookup`` calls (from threads, and from asyncio
tasks through ``aget``/``alookup``) are gathered for up to
``coalesce_window_ms`` (or ``max_coalesce`` keys) and served by *one* ``MGET``
(or one script returning values and their PTTLs for lookups). A caller with no
one else around skips the window: it pays one round trip, as a plain ``GET``.
A batch that gathers while another round trip is in flight leaves when that
round trip returns, the window ends or it holds ``max_coalesce`` keys,
whichever comes first; an asyncio caller yields to its loop once, so the tasks
already ready there join its batch. Asyncio callers never block the loop: the
round trip runs in the tier's I/O threads.

Failures: when Redis is down or slower than ``timeout_s``, a read is a miss and
a write is skipped (both counted in ``stats()["errors"]``), and the tier stops
calling Redis for ``retry_after_s`` (``skipped_while_down``), then lets one call
through to probe and recovers when it succeeds. ``strict=True`` raises
:class:`~overdrive.exceptions.CacheUnavailable` instead. Writes skipped while
Redis was unreachable are not replayed: entries written before the outage can
be served after it until their TTL ends.

Tags: each tag is a Redis set under the prefix listing the keys set with it;
``invalidate_tag`` atomically takes the set and unlinks its members. A tag stays
attached to a key until the tag is invalidated (setting the key again without
the tag does not detach it), so invalidation can remove more than needed, never
less.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import numbers
import secrets
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .._core import BatchFuture, _settle
from ..exceptions import (
    CacheDataError,
    CacheUnavailable,
    ConfigurationError,
    InputTypeError,
)
from ..telemetry.registry import auto_register
from .keys import _RESERVED, MAX_KEY_CHARS, stable_key
from .serializers import Serializer, default_serializer

if TYPE_CHECKING:
    import redis
    import redis.cluster

__all__ = ["RedisTier", "close_client", "mask_url"]

log = logging.getLogger("overdrive.cache.redis")

_INSTALL_HINT: Final = "RedisTier needs redis-py: pip install overdrive[redis]"
# Reserved key spaces under the prefix. stable_key never writes "\x1f~" (its
# encodings follow "\x1f" with a type letter or "#"), so these cannot collide.
_TAG_SPACE: Final = b"\x1f~tag:"
_LOCK_SPACE: Final = b"\x1f~lock:"
_CHUNK: Final = 1000  # keys per UNLINK when clearing / invalidating

# GET + PTTL of every key, atomically: [v1, pttl1, v2, pttl2, ...]. A key
# holding another type (written by someone else) reads as absent.
_LOOKUP_LUA: Final = """
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.pcall('GET', k)
  if type(v) == 'table' and v.err then v = false end
  out[2 * i - 1] = v
  out[2 * i] = redis.call('PTTL', k)
end
return out
"""

# Add members ARGV[2..] to tag set KEYS[1]; keep the set alive as long as its
# longest-lived member (ARGV[1] = that member's PX, 0 = no expiry).
_TAG_ADD_LUA: Final = """
local t = KEYS[1]
local cur = redis.call('PTTL', t)
for i = 2, #ARGV do redis.call('SADD', t, ARGV[i]) end
local px = tonumber(ARGV[1])
if px == 0 then
  if cur >= 0 then redis.call('PERSIST', t) end
elseif cur == -2 or (cur >= 0 and cur < px) then
  redis.call('PEXPIRE', t, px)
end
return 1
"""

# Take (and delete) the whole tag set at once.
_TAG_POP_LUA: Final = """
local m = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return m
"""

# Delete the lock only if it still holds our token.
_UNLOCK_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _import_redis() -> Any:
    try:
        import redis
        import redis.cluster
    except ImportError as exc:  # pragma: no cover - the test env has redis
        raise ImportError(_INSTALL_HINT) from exc
    return redis


def mask_url(url: str) -> str:
    """``url`` with its password (userinfo or ``?password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, sep, _pw = userinfo.partition(":")
            netloc = f"{user}:***@{hostport}" if sep else f"{user}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k.lower() in ("password", "pass", "pwd") else v) for k, v in pairs],
                safe="*",
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable redis url>"


def _secrets_of(url: str | None) -> list[str]:
    """The password strings in ``url`` (raw and percent-decoded), to scrub from messages."""
    if not url:
        return []
    out: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            out.append(parts.password)
            netloc = parts.netloc.rpartition("@")[0]
            out.append(netloc.partition(":")[2])
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k.lower() in ("password", "pass", "pwd") and v:
                out.append(v)
                out.append(quote(v, safe=""))
    except ValueError:
        pass
    return sorted({s for s in out if s}, key=len, reverse=True)


def _seconds(name: str, value: object, *, allow_none: bool, positive: bool) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise InputTypeError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(
            f"{name} must be a number of seconds{' or None' if allow_none else ''}, "
            f"not {type(value).__name__}"
        )
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ConfigurationError(
            f"invalid {name}={value!r}: must be a finite number of seconds "
            f"{'> 0' if positive else '>= 0'}"
        )
    return v


def close_client(client: Any) -> None:
    """``client.close()``, and for a Redis Cluster client every node's pool too:
    redis-py's ``RedisCluster.close()`` closes each node's client, which leaves
    the node's connection pool (and its sockets) open."""
    get_nodes = getattr(client, "get_nodes", None)
    if callable(get_nodes):
        for node in get_nodes():
            node_client = getattr(node, "redis_connection", None)
            pool = getattr(node_client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()
    client.close()


def _px(ttl: float | None) -> int:
    """Milliseconds for SET PX (0 = no expiry), rounded up so a tiny TTL still stores."""
    return 0 if ttl is None else max(1, math.ceil(ttl * 1000.0))


class _Gather:
    """One round trip for get/lookup callers: the keys of every caller that
    joined it, then the replies. A batch opened while no other is active is
    "solo": closed at once, its leader pays no window."""

    __slots__ = (
        "aio",
        "closed",
        "done",
        "error",
        "full",
        "keys",
        "pttls",
        "signalled",
        "started",
        "values",
        "wait",
        "waiters",
        "want_ttl",
    )

    def __init__(self, key: bytes, want_ttl: bool, is_open: bool, wait: bool) -> None:
        self.keys = [key]
        self.want_ttl = want_ttl
        self.closed = not is_open
        self.wait = wait  # the leader waits the window (other batches are active)
        self.done = False
        self.full: Any = None  # a held lock: released (once) to wake the waiting leader
        self.signalled = False
        self.started = False  # its round trip began (or was skipped)
        if wait:
            self.full = _new_lock()
            self.full.acquire()
        self.values: list[Any] | None = None
        self.pttls: list[int] | None = None
        self.error: BaseException | None = None
        self.waiters: list[Any] | None = None  # held locks of sync followers
        # the BatchFutures of asyncio callers (leader included), by event loop
        self.aio: dict[asyncio.AbstractEventLoop, list[BatchFuture[None]]] | None = None


_new_lock = threading.Lock
_running_loop = asyncio.get_running_loop


def _signal(g: _Gather) -> None:
    """Wake the leader waiting on ``g`` (call with the tier's lock held)."""
    if not g.signalled and g.full is not None:
        g.signalled = True
        g.full.release()


def _wake_loop(loop: asyncio.AbstractEventLoop, futs: list[BatchFuture[None]]) -> None:
    """Settle ``futs`` (all of ``loop``) with ``None``: one callback on that loop
    runs every awaiting task's wake-up (a cancelled future is left alone)."""
    outcomes: list[Any] = [None] * len(futs)
    try:
        loop.call_soon_threadsafe(_settle, futs, outcomes)
    except RuntimeError:  # the loop closed: nobody awaits there; record the outcomes
        if loop.is_closed():
            with contextlib.suppress(RuntimeError):
                _settle(futs, outcomes)


class RedisTier:
    """The Redis (L2) tier of a tiered cache; see the module docstring.

    ``url``: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS),
    ``unix://``, or ``redis+cluster://host:port`` for Redis Cluster; ignored
    when ``client`` (a ``redis.Redis`` or ``redis.cluster.RedisCluster``
    configured by you, left open by :meth:`close`) is given. ``ttl``: default
    seconds to live (``None``: no expiry). ``timeout_s``: socket connect/read
    timeout of the client this tier creates. ``coalesce_window_ms`` /
    ``max_coalesce``: how long / how many keys a batch gathers at most (``0``
    ms: no timer; a batch gathers while the round trip before it is in flight).
    """

    def __init__(
        self,
        url: str | None = "redis://127.0.0.1:6379/0",
        *,
        client: redis.Redis | redis.cluster.RedisCluster | None = None,
        ttl: float | None = 3600.0,
        prefix: str = "od:",
        serializer: Serializer | None = None,
        timeout_s: float = 0.25,
        strict: bool = False,
        coalesce_window_ms: float = 0.2,
        max_coalesce: int = 256,
        retry_after_s: float = 1.0,
        name: str = "redis",
    ) -> None:
        rd = _import_redis()
        if not isinstance(name, str):
            raise InputTypeError(f"name must be a str, not {type(name).__name__}")
        if not isinstance(prefix, str):
            raise InputTypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if not isinstance(strict, bool):
            raise InputTypeError(f"strict must be a bool, not {type(strict).__name__}")
        if serializer is None:
            serializer = default_serializer()
        elif not (
            callable(getattr(serializer, "dumps", None))
            and callable(getattr(serializer, "loads", None))
        ):
            raise InputTypeError(
                f"serializer must have dumps() and loads(), got {type(serializer).__name__}"
            )
        self._ttl = _seconds("ttl", ttl, allow_none=True, positive=True)
        timeout = _seconds("timeout_s", timeout_s, allow_none=False, positive=True)
        window = _seconds(
            "coalesce_window_ms", coalesce_window_ms, allow_none=False, positive=False
        )
        retry = _seconds("retry_after_s", retry_after_s, allow_none=False, positive=False)
        assert timeout is not None and window is not None and retry is not None
        if isinstance(max_coalesce, bool) or not isinstance(max_coalesce, int):
            raise InputTypeError(f"max_coalesce must be an int, not {type(max_coalesce).__name__}")
        if not 1 <= max_coalesce <= 100_000:
            raise ConfigurationError(f"invalid max_coalesce={max_coalesce!r}: must be in 1..100000")

        self.name = name
        self.prefix = prefix
        self.strict = strict
        self.timeout_s = timeout
        self.retry_after_s = retry
        self.coalesce_window_ms = float(coalesce_window_ms)
        self.max_coalesce = max_coalesce
        self._window = window / 1000.0
        self._pfx = prefix.encode("utf-8", "surrogatepass")
        self._ser: Serializer = serializer
        # a serializer's optional batch decoder (MsgpackSerializer has one)
        many = getattr(serializer, "loads_many", None)
        self._loads_many: Callable[[list[bytes]], list[Any]] | None = (
            many if callable(many) else None
        )
        self._rd = rd
        self._down_errors: tuple[type[BaseException], ...] = (
            rd.exceptions.ConnectionError,
            rd.exceptions.TimeoutError,
            rd.exceptions.ClusterError,
            rd.exceptions.RedisClusterException,  # not a RedisError: no node answers
            OSError,
        )
        self._any_error: tuple[type[BaseException], ...] = (
            rd.exceptions.RedisError,
            rd.exceptions.RedisClusterException,
            OSError,
        )

        self._owns_client = client is None
        self._client_lock = threading.Lock()
        self._client: Any = None
        self._url: str | None = None
        self._secrets: list[str] = []
        if client is not None:
            if not isinstance(client, (rd.Redis, rd.cluster.RedisCluster)):
                raise InputTypeError(
                    "client must be a redis.Redis or redis.cluster.RedisCluster, "
                    f"not {type(client).__name__}"
                )
            self._cluster = isinstance(client, rd.cluster.RedisCluster)
            if client.get_encoder().decode_responses:
                raise ConfigurationError(
                    "client has decode_responses=True; RedisTier stores bytes "
                    "(create the client with decode_responses=False)"
                )
            self._client = client
            self._where = self._describe_client(client)
            self._secrets = self._client_secrets(client)
        else:
            if not isinstance(url, str):
                raise InputTypeError(
                    f"url must be a str (or pass client=), not {type(url).__name__}"
                )
            scheme = url.partition("://")[0].lower()
            known = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
            if "://" not in url or scheme not in known:
                raise ConfigurationError(
                    f"invalid url={mask_url(url)!r}: the scheme must be one of "
                    + ", ".join(f"{k}://" for k in known)
                )
            self._cluster = scheme.endswith("+cluster")
            self._url = url
            self._secrets = _secrets_of(url)
            self._where = mask_url(url)
            if not self._cluster:  # connects lazily, on first use
                try:
                    self._client = self._make_client()
                except (ValueError, TypeError) as exc:
                    raise ConfigurationError(
                        f"invalid url={self._where!r}: {self._scrub(str(exc))}"
                    ) from None

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._open: _Gather | None = None
        self._unstarted: set[_Gather] = set()
        self._active = 0  # batches gathering or running
        self._closed = False
        self._down_until = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._scripts: dict[str, Any] = {}
        self._hits = self._misses = self._sets = self._deletes = self._errors = 0
        self._batches = self._batched_keys = self._skipped = 0
        self._warned_data = False
        auto_register(self, "redis_tier")

    # ------------------------------------------------------------------ setup

    def _make_client(self) -> Any:
        rd = self._rd
        assert self._url is not None
        opts: dict[str, Any] = {
            "socket_timeout": self.timeout_s,
            "socket_connect_timeout": self.timeout_s,
            "retry": rd.retry.Retry(rd.backoff.NoBackoff(), 0),
            "retry_on_timeout": False,
            "health_check_interval": 0,
        }
        if self._cluster:
            url = self._url.replace("+cluster", "", 1)
            return rd.cluster.RedisCluster.from_url(url, **opts)
        return rd.Redis.from_url(self._url, **opts)

    @staticmethod
    def _describe_client(client: Any) -> str:
        try:
            if hasattr(client, "get_nodes"):
                nodes = ",".join(f"{n.host}:{n.port}" for n in client.get_nodes())
                return f"redis+cluster://{nodes}"
            kw = client.connection_pool.connection_kwargs
            if "path" in kw:
                return f"unix://{kw['path']}"
            return f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
        except Exception:  # describing must never fail
            return f"<{type(client).__name__}>"

    @staticmethod
    def _client_secrets(client: Any) -> list[str]:
        found: list[str] = []
        try:
            pools = [client.connection_pool] if hasattr(client, "connection_pool") else []
            if hasattr(client, "get_nodes"):
                pools += [n.redis_connection.connection_pool for n in client.get_nodes()]
            for pool in pools:
                pw = pool.connection_kwargs.get("password")
                if isinstance(pw, str) and pw:
                    found.append(pw)
        except Exception:  # best effort: scrubbing is a second line of defence
            pass
        return sorted(set(found), key=len, reverse=True)

    def _get_client(self) -> Any:
        c = self._client
        if c is not None:
            return c
        with self._client_lock:  # cluster clients discover nodes on creation
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _script(self, name: str, text: str) -> Any:
        s = self._scripts.get(name)
        if s is None:
            s = self._scripts[name] = self._get_client().register_script(text)
        return s

    def __repr__(self) -> str:
        return (
            f"RedisTier(name={self.name!r}, url={self._where!r}, prefix={self.prefix!r}, "
            f"ttl={self._ttl!r}, strict={self.strict})"
        )

    __str__ = __repr__

    @property
    def ttl(self) -> float | None:
        """The default time to live in seconds (``None``: no expiry). A
        TieredCache caps the copies it promotes into this tier by it."""
        return self._ttl

    # ------------------------------------------------------------------ helpers

    def _key(self, key: Hashable) -> bytes:
        return self._pfx + stable_key(key).encode("utf-8", "surrogatepass")

    def _tag_key(self, tag: str) -> bytes:
        if not isinstance(tag, str):
            raise InputTypeError(f"tag must be a str, not {type(tag).__name__}")
        return self._pfx + _TAG_SPACE + tag.encode("utf-8", "surrogatepass")

    def _tags(self, tags: Iterable[str]) -> list[bytes]:
        if isinstance(tags, (str, bytes)):
            raise InputTypeError(
                f"tags must be an iterable of str (e.g. a list), not a bare {type(tags).__name__}"
            )
        try:
            items = list(tags)
        except TypeError:
            raise InputTypeError(
                f"tags must be an iterable of str, not {type(tags).__name__}"
            ) from None
        return [self._tag_key(t) for t in dict.fromkeys(items)]

    def _ttl_arg(self, ttl: float | None) -> float | None:
        if ttl is None:
            return self._ttl
        return _seconds("ttl", ttl, allow_none=True, positive=True)

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _unavailable(self, what: str, exc: BaseException | None) -> CacheUnavailable:
        if exc is None:
            why = f"skipped: Redis failed less than {self.retry_after_s} s ago"
        else:
            why = f"{type(exc).__name__}: {self._scrub(str(exc))}"
        return CacheUnavailable(f"RedisTier {self.name!r} ({self._where}) {what}: {why}")

    def _known_down(self) -> bool:
        """Redis failed less than ``retry_after_s`` ago (no probe is claimed)."""
        du = self._down_until
        return bool(du) and time.monotonic() < du

    def _may_call(self, accepted: bool = False) -> bool:
        """False while Redis is known down (skip it) or the tier is closed (unless
        the call was ``accepted`` before close()); lets one probe through after
        ``retry_after_s``."""
        if self._closed and not accepted:
            return False
        if not self._down_until:
            return True
        now = time.monotonic()
        with self._lock:
            if not self._down_until:
                return True
            if now < self._down_until:
                return False
            self._down_until = now + self.retry_after_s  # this caller probes; others skip
            return True

    def _ok(self) -> None:
        if self._down_until:
            with self._lock:
                was = self._down_until
                self._down_until = 0.0
            if was:
                log.warning("RedisTier %r: Redis at %s answers again", self.name, self._where)

    def _failed(self, exc: BaseException, calls: int = 1) -> None:
        down = isinstance(exc, self._down_errors)
        with self._lock:
            self._errors += calls
            first = down and not self._down_until
            if down:
                self._down_until = time.monotonic() + self.retry_after_s
        if first:
            log.warning(
                "RedisTier %r: Redis at %s failed (%s); skipping it for %.3g s",
                self.name,
                self._where,
                type(exc).__name__,
                self.retry_after_s,
            )

    def _skip(self, what: str, calls: int = 1) -> None:
        """Redis is down (or the tier closed): count, raise when strict."""
        with self._lock:
            if self._closed:
                self._errors += calls
            else:
                self._skipped += calls
        if self.strict:
            if self._closed:
                raise CacheUnavailable(f"RedisTier {self.name!r} is closed ({what})")
            raise self._unavailable(what, None)

    def _run(self, what: str, fn: Any, *args: Any, calls: int = 1) -> tuple[bool, Any]:
        """``(True, fn(client, *args))``, or ``(False, None)`` when skipped/failed
        (strict: CacheUnavailable)."""
        if not self._may_call():
            self._skip(what, calls)
            return False, None
        try:
            out = fn(self._get_client(), *args)
        except self._any_error as exc:
            self._failed(exc, calls)
            if self.strict:
                raise self._unavailable(what, exc) from None
            return False, None
        self._ok()
        return True, out

    def _decode(self, raw: Any) -> Any:
        """The value of raw bytes, or MISSING-like ``_BAD`` for a corrupt entry (counted)."""
        try:
            return self._ser.loads(raw)
        except CacheDataError as exc:
            self._refused(exc)
            return _BAD

    def _refused(self, exc: CacheDataError) -> None:
        """Count (and log) an entry the serializer refused."""
        with self._lock:
            self._errors += 1
            self._hits -= 1
            self._misses += 1
            first = not self._warned_data
            self._warned_data = True
        # once at WARNING (a flood of forged entries must not flood the log)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "RedisTier %r: refused an entry (counted in stats()['errors']): %s",
            self.name,
            exc,
        )

    # ------------------------------------------------------------------ coalescing

    def _join(
        self, k: bytes, want_ttl: bool, loop: asyncio.AbstractEventLoop | None
    ) -> tuple[Any, int, bool, Any]:
        """Add ``k`` to the open batch, or start one. Returns the batch, the
        key's index, whether this caller leads it, and what a follower waits
        on (a held lock for a thread, a future for an asyncio task). A thread
        with nothing else in flight gets ``(None, 0, True, None)``: it goes
        solo (``_active`` is set to 1 for it)."""
        with self._lock:
            if self._closed:
                raise _Closed
            g = self._open
            if g is None and loop is None and not self._active:
                self._active = 1
                return None, 0, True, None
            # A thread does not join a batch whose asyncio leader has not handed
            # it to a thread yet: that thread may be the leader's loop thread
            # (a blocking get() inside a coroutine), which would stall them both.
            if g is not None and (loop is not None or g not in self._unstarted):
                idx = len(g.keys)
                g.keys.append(k)
                if want_ttl:
                    g.want_ttl = True
                if idx + 1 >= self.max_coalesce:
                    self._open = None
                    _signal(g)
                if loop is None:
                    w: Any = _new_lock()
                    w.acquire()
                    if g.waiters is None:
                        g.waiters = [w]
                    else:
                        g.waiters.append(w)
                else:
                    w = BatchFuture(loop=loop)
                    _add_aio_waiter(g, loop, w)
                return g, idx, False, w
            self._active += 1
            busy = self._active > 1 and self.max_coalesce > 1
            # An asyncio leader always opens its batch: the tasks already ready
            # on its loop join while it yields once (no window paid alone).
            is_open = (busy or loop is not None) and self.max_coalesce > 1
            if self._open is not None:  # see above: this thread goes on its own
                is_open = False
            g = _Gather(k, want_ttl, is_open, is_open and busy)
            if is_open:
                self._open = g
            if loop is None:
                return g, 0, True, None
            self._unstarted.add(g)  # close() runs it if the loop is blocked in close()
            lf: BatchFuture[None] = BatchFuture(loop=loop)  # settled with the followers'
            g.aio = {loop: [lf]}
            return g, 0, True, lf

    def _lead(self, g: _Gather) -> None:
        """Gather (when other batches are active), run the batch, hand out the replies."""
        with self._lock:
            if g.started:
                return
            g.started = True
            self._unstarted.discard(g)
        try:
            if not g.closed:
                if g.wait:
                    # until the round trip in flight returns, the batch fills or
                    # the window ends (window 0: no timer, bounded by timeout_s)
                    g.full.acquire(timeout=self._window or self.timeout_s)
                with self._lock:
                    if self._open is g:
                        self._open = None
                    g.closed = True
            keys = g.keys
            if not self._may_call(accepted=True):  # joined before any close(): runs
                g.error = _Down()
            else:
                try:
                    self._fetch(g, keys)
                except self._any_error as exc:
                    g.error = exc
                    self._failed(exc, len(keys))
                except BaseException as exc:  # a bug: every waiter sees it
                    g.error = exc
                else:
                    self._ok()
        finally:
            with self._lock:
                self._active -= 1
                self._batches += 1
                self._batched_keys += len(g.keys)
                if g.error is None and g.values is not None:
                    hits = len(g.values) - g.values.count(None)
                    self._hits += hits
                    self._misses += len(g.values) - hits
                else:
                    self._misses += len(g.keys)
                g.done = True
                waiters, aio = g.waiters, g.aio
                nxt = self._open
                if nxt is not None:  # a round trip ended: the gathering batch goes now
                    _signal(nxt)
                if self._closed and self._active == 0:  # close() waits for this
                    self._idle.notify_all()
            if waiters:
                for w in waiters:
                    w.release()
            if aio:
                for loop, futs in aio.items():
                    _wake_loop(loop, futs)

    def _fetch(self, g: _Gather, keys: list[bytes]) -> None:
        g.values, g.pttls = self._fetch_keys(keys, g.want_ttl)

    def _fetch_keys(self, keys: list[bytes], want_ttl: bool) -> tuple[list[Any], list[int] | None]:
        """Values (and PTTLs when ``want_ttl``) of ``keys`` in one round trip."""
        client = self._client or self._get_client()
        if not want_ttl:
            if len(keys) == 1:
                return [client.get(keys[0])], None
            return (client.mget_nonatomic(keys) if self._cluster else client.mget(keys)), None
        if self._cluster:
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.get(k)
                pipe.pttl(k)
            flat = pipe.execute()
        else:
            flat = self._script("lookup", _LOOKUP_LUA)(keys=keys, client=client)
        values = flat[0::2]
        pttls = [int(p) for p in flat[1::2]]
        for i, p in enumerate(pttls):
            if p == -2:  # expired between GET and PTTL (cluster pipeline)
                values[i] = None
        return values, pttls

    def _solo(self, k: bytes, want_ttl: bool, what: str) -> tuple[Any, int]:
        """One caller and nothing else in flight: a plain GET (or lookup) at once.
        The caller has set ``_active`` to 1."""
        raw: Any = None
        pttl = -2
        err: BaseException | None = None
        try:
            if self._down_until and not self._may_call(accepted=True):
                err = _Down()
            else:
                try:
                    values, pttls = self._fetch_keys([k], want_ttl)
                except self._any_error as exc:
                    err = exc
                    self._failed(exc)
                else:
                    raw = values[0]
                    pttl = pttls[0] if pttls is not None else -1
                    if self._down_until:
                        self._ok()
        finally:
            with self._lock:
                self._active -= 1
                self._batches += 1
                self._batched_keys += 1
                if raw is None:
                    self._misses += 1
                else:
                    self._hits += 1
                nxt = self._open
                if nxt is not None:  # a round trip ended: the gathering batch goes now
                    _signal(nxt)
                if self._closed and self._active == 0:
                    self._idle.notify_all()
        if err is not None:
            if isinstance(err, (_Down, _Closed)):
                self._skip(what)
            elif self.strict:
                raise self._unavailable(what, err) from None
        return raw, pttl

    def _result(self, g: _Gather, idx: int, what: str) -> tuple[Any, int]:
        """``(raw or None, pttl)`` of key ``idx`` once the batch is done."""
        err = g.error
        if err is not None:
            if isinstance(err, _Down):
                self._skip(what)
                return None, -2
            if isinstance(err, _Closed):
                self._skip(what)
                return None, -2
            if isinstance(err, self._any_error):
                if self.strict:
                    raise self._unavailable(what, err) from None
                return None, -2
            raise err
        assert g.values is not None
        raw = g.values[idx]
        return raw, (g.pttls[idx] if g.pttls is not None else -1)

    def _fetch_one(self, key: Hashable, want_ttl: bool, what: str) -> tuple[Any, int]:
        k = self._key(key)
        if self._down_until and self._known_down():
            with self._lock:
                self._misses += 1
            self._skip(what)
            return None, -2
        try:
            g, idx, lead, w = self._join(k, want_ttl, None)
        except _Closed:
            with self._lock:
                self._misses += 1
            self._skip(what)
            return None, -2
        if g is None:
            return self._solo(k, want_ttl, what)
        if lead:
            self._lead(g)
        elif not w.acquire(timeout=self._window + 2 * self.timeout_s + 1.0):
            with self._lock:
                stuck = not g.done
                if stuck:
                    self._misses += 1
                    self._errors += 1
            if stuck:  # the leader is stuck past every timeout (a client without timeouts)
                exc = self._rd.exceptions.TimeoutError(
                    f"no reply within {self.timeout_s} s (coalesced batch)"
                )
                if self.strict:
                    raise self._unavailable(what, exc)
                return None, -2
        return self._result(g, idx, what)

    def _ajoin(
        self, key: Hashable, want_ttl: bool, what: str
    ) -> tuple[_Gather | None, int, Any, bool]:
        """An asyncio caller joins (or leads) a batch: ``(batch, index, its
        BatchFuture, leads)``; ``(None, ...)`` when skipped (Redis known down,
        tier closed; strict: raises). Plain function: the caller awaits."""
        k = self._pfx + stable_key(key).encode("utf-8", "surrogatepass")
        if self._down_until and self._known_down():
            with self._lock:
                self._misses += 1
            self._skip(what)
            return None, 0, None, False
        loop = _running_loop()
        w: BatchFuture[None] = BatchFuture(loop=loop)  # made outside the lock
        with self._lock:  # the common case, inlined: join the open batch
            g = self._open
            if g is not None and not self._closed:
                idx = len(g.keys)
                g.keys.append(k)
                if want_ttl:
                    g.want_ttl = True
                if idx + 1 >= self.max_coalesce:
                    self._open = None
                    _signal(g)
                _add_aio_waiter(g, loop, w)
                return g, idx, w, False
        try:
            g, idx, lead, fut = self._join(k, want_ttl, loop)
        except _Closed:
            with self._lock:
                self._misses += 1
            self._skip(what)
            return None, 0, None, False
        return g, idx, fut, lead

    async def _alead(self, g: _Gather) -> None:
        """The asyncio leader: yield once (the tasks ready on this loop join
        the batch), then hand the batch to the I/O threads."""
        try:
            if not g.closed:
                await asyncio.sleep(0)
        finally:  # even when cancelled: the followers' batch must run
            self._start(g)

    def _start(self, g: _Gather) -> None:
        """Run batch ``g`` in the tier's I/O threads, or inline once the tier
        is closed (then it does no I/O)."""
        if not self._closed:
            try:
                self._pool().submit(self._lead, g)
                return
            except RuntimeError:  # the executor shut down: closed meanwhile
                pass
        self._lead(g)

    def _pool(self) -> ThreadPoolExecutor:
        ex = self._executor
        if ex is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=8, thread_name_prefix=f"overdrive-redis-{self.name}"
                    )
                ex = self._executor
        return ex

    # ------------------------------------------------------------------ Tier API

    def lookup(self, key: Hashable) -> tuple[Any, float | None] | None:
        """``(value, seconds_left)`` (``None`` seconds: no expiry) in one round
        trip (coalesced with concurrent callers), or ``None`` when absent,
        expired, unreadable or Redis is unavailable."""
        raw, pttl = self._fetch_one(key, True, "lookup")
        return self._as_lookup(raw, pttl)

    def _as_lookup(self, raw: Any, pttl: int) -> tuple[Any, float | None] | None:
        if raw is None:
            return None
        value = self._decode(raw)
        if value is _BAD:
            return None
        return value, (None if pttl < 0 else pttl / 1000.0)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value, or ``default`` when absent, expired, unreadable or Redis
        is unavailable. Concurrent gets are served by one MGET."""
        raw, _ = self._fetch_one(key, False, "get")
        if raw is None:
            return default
        value = self._decode(raw)
        return default if value is _BAD else value

    def set(
        self,
        key: Hashable,
        value: Any,
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Store ``value`` (SET PX) for ``ttl`` seconds (``None``: the tier's
        default); ``tags`` let :meth:`invalidate_tag` remove it. Skipped (and
        counted) when Redis is unavailable."""
        k = self._key(key)
        self._set_pairs(lambda: [(k, self._ser.dumps(value))], ttl, tags, "set")

    def _set_pairs(self, make: Any, ttl: Any, tags: Any, what: str) -> None:
        """SET every ``(name, bytes)`` of ``make()`` (arguments checked first)."""
        t = self._ttl_arg(ttl)
        tag_keys = self._tags(tags)
        px = _px(t)
        pairs: list[tuple[bytes, bytes]] = make()
        if not pairs:
            return
        n = len(pairs)

        def go(client: Any) -> None:
            if n == 1 and not tag_keys:
                k, v = pairs[0]
                client.set(k, v, px=px or None)
                return
            pipe = client.pipeline(transaction=False)
            for k, v in pairs:
                pipe.set(k, v, px=px or None)
            members = [k for k, _ in pairs]
            for tk in tag_keys:  # after the SETs: a concurrent invalidation never misses them
                pipe.execute_command("EVAL", _TAG_ADD_LUA, 1, tk, px, *members)
            pipe.execute()

        ok, _ = self._run(what, go, calls=n)
        if ok:
            with self._lock:
                self._sets += n

    def delete(self, key: Hashable) -> bool:
        """Remove ``key``; ``True`` when it was present (``False`` also when
        Redis is unavailable)."""
        k = self._key(key)
        ok, n = self._run("delete", lambda c: c.unlink(k))
        if ok and n:
            with self._lock:
                self._deletes += 1
            return True
        return False

    def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Any]:
        """The present, readable keys among ``keys`` and their values, in one MGET."""
        ks, names = self._many_keys(keys)
        if not names:
            return {}
        ok, raws = self._run(
            "get_many",
            (lambda c: c.mget_nonatomic(names)) if self._cluster else (lambda c: c.mget(names)),
            calls=len(names),
        )
        return self._many_result(ks, raws if ok else None)

    def _many_keys(self, keys: Sequence[Hashable]) -> tuple[list[Hashable], list[bytes]]:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise InputTypeError(
                f"keys must be a sequence of keys (e.g. a list), not {type(keys).__name__}"
            )
        ks = list(dict.fromkeys(keys))
        pfx, sk = self._pfx, stable_key
        # self._key(k), inlined: a plain short str is its own stable key
        return ks, [
            pfx
            + (
                k
                if type(k) is str and len(k) <= MAX_KEY_CHARS and not k.startswith(_RESERVED)
                else sk(k)
            ).encode("utf-8", "surrogatepass")
            for k in ks
        ]

    def _many_result(self, ks: list[Hashable], raws: list[Any] | None) -> dict[Hashable, Any]:
        out: dict[Hashable, Any] = {}
        if raws is None:
            with self._lock:
                self._misses += len(ks)
            return out
        found = [(k, raw) for k, raw in zip(ks, raws, strict=True) if raw is not None]
        with self._lock:
            self._hits += len(found)
            self._misses += len(ks) - len(found)
        many = self._loads_many
        if many is not None:
            try:
                values = many([raw for _, raw in found])
            except CacheDataError:
                pass  # one bad entry: decode one by one below, refusing (and counting) it
            else:
                return dict(zip([k for k, _ in found], values, strict=True))
        for k, raw in found:
            v = self._decode(raw)
            if v is not _BAD:
                out[k] = v
        return out

    def set_many(
        self,
        items: Mapping[Hashable, Any],
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """``set`` for each item in one pipelined round trip."""
        if not isinstance(items, Mapping):
            raise InputTypeError(f"items must be a mapping, not {type(items).__name__}")
        key, dumps = self._key, self._ser.dumps
        self._set_pairs(
            lambda: [(key(k), dumps(v)) for k, v in items.items()], ttl, tags, "set_many"
        )

    def invalidate_tag(self, tag: str) -> int:
        """Remove every entry set with ``tag``; returns how many existed."""
        tk = self._tag_key(tag)

        def go(client: Any) -> int:
            members = self._script("tagpop", _TAG_POP_LUA)(keys=[tk], client=client)
            removed = 0
            for i in range(0, len(members), _CHUNK):
                removed += int(client.unlink(*members[i : i + _CHUNK]))
            return removed

        ok, n = self._run("invalidate_tag", go)
        if ok and n:
            with self._lock:
                self._deletes += n
        return int(n) if ok else 0

    def clear(self) -> None:
        """Remove every key under this tier's prefix (SCAN + UNLINK; never FLUSHDB)."""
        pattern = _glob_escape(self._pfx) + b"*"

        def go(client: Any) -> None:
            batch: list[bytes] = []
            for k in client.scan_iter(match=pattern, count=_CHUNK):
                batch.append(k)
                if len(batch) >= _CHUNK:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)

        self._run("clear", go)

    def close(self) -> None:
        """Wait for in-flight coalesced batches, then release the connections
        (a ``client`` you passed in is left open). Idempotent; later calls
        miss (``strict``: raise CacheUnavailable)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            g = self._open
            self._open = None
            if g is not None:  # its leader runs it now, without waiting the window
                _signal(g)
            orphans = list(self._unstarted)
        # Batches whose asyncio leader has not handed them to a thread yet: that
        # leader's loop may be the one blocked in this call, so run them here.
        for og in orphans:
            self._lead(og)
        with self._lock:
            while self._active:
                self._idle.wait()
            ex = self._executor
        if ex is not None:
            ex.shutdown(wait=True)
        if self._owns_client:
            with self._client_lock:
                c = self._client
            if c is not None:
                with contextlib.suppress(*self._any_error):
                    close_client(c)

    def __enter__(self) -> RedisTier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counters: ``hits``, ``misses``, ``sets``, ``deletes``, ``errors``
        (failed or timed-out calls and refused entries), ``coalesced_batches``
        and ``coalesced_keys`` (batches run by the coalescer and the keys they
        served), ``skipped_while_down`` (calls not sent while Redis was known
        down), plus ``available`` and ``closed``."""
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "sets": self._sets,
                "deletes": self._deletes,
                "errors": self._errors,
                "coalesced_batches": self._batches,
                "coalesced_keys": self._batched_keys,
                "skipped_while_down": self._skipped,
                "available": not self._down_until and not self._closed,
                "closed": self._closed,
            }

    # ------------------------------------------------------------------ extras

    def ping(self) -> bool:
        """``True`` when Redis answers within ``timeout_s`` (always tries, even
        while the tier skips Redis; a success ends the skipping)."""
        if self._closed:
            return False
        try:
            ok = bool(self._get_client().ping())
        except self._any_error as exc:
            self._failed(exc)
            return False
        if ok:
            self._ok()
        return ok

    def acquire_lock(self, key: Hashable, ttl_s: float) -> str | None:
        """A cross-process lock on ``key`` for ``ttl_s`` seconds (SET NX PX with
        a random token): the token, or ``None`` when another holder has it or
        Redis is unavailable (strict: CacheUnavailable)."""
        ttl = _seconds("ttl_s", ttl_s, allow_none=False, positive=True)
        lk = self._pfx + _LOCK_SPACE + stable_key(key).encode("utf-8", "surrogatepass")
        token = secrets.token_hex(16)
        ok, got = self._run("acquire_lock", lambda c: c.set(lk, token, nx=True, px=_px(ttl)))
        return token if ok and got else None

    def release_lock(self, key: Hashable, token: str) -> bool:
        """Release a lock taken with :meth:`acquire_lock`: ``True`` when ``token``
        still held it (compare-and-delete, atomic)."""
        if not isinstance(token, str):
            raise InputTypeError(f"token must be a str, not {type(token).__name__}")
        lk = self._pfx + _LOCK_SPACE + stable_key(key).encode("utf-8", "surrogatepass")
        ok, n = self._run(
            "release_lock",
            lambda c: self._script("unlock", _UNLOCK_LUA)(keys=[lk], args=[token], client=c),
        )
        return bool(ok and n)

    # ------------------------------------------------------------------ asyncio

    async def alookup(self, key: Hashable) -> tuple[Any, float | None] | None:
        """:meth:`lookup` for asyncio (coalesced with threads and other tasks)."""
        g, idx, fut, lead = self._ajoin(key, True, "lookup")
        if g is None:
            return None
        if lead:
            await self._alead(g)
        await fut  # settled, with every future of the batch, by one loop callback
        raw, pttl = self._result(g, idx, "lookup")
        return self._as_lookup(raw, pttl)

    async def aget(self, key: Hashable, default: Any = None) -> Any:
        """:meth:`get` for asyncio (coalesced with threads and other tasks)."""
        g, idx, fut, lead = self._ajoin(key, False, "get")
        if g is None:
            return default
        if lead:
            await self._alead(g)
        await fut  # settled, with every future of the batch, by one loop callback
        # g.values is set when g.error is None
        raw = g.values[idx] if g.error is None else self._result(g, idx, "get")[0]  # type: ignore[index]
        if raw is None:
            return default
        try:
            return self._ser.loads(raw)
        except CacheDataError as exc:
            self._refused(exc)
            return default

    async def aset(
        self, key: Hashable, value: Any, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """:meth:`set` for asyncio (runs in the tier's I/O threads)."""
        await self._in_thread(self.set, key, value, ttl, tags)

    async def adelete(self, key: Hashable) -> bool:
        """:meth:`delete` for asyncio."""
        out: bool = await self._in_thread(self.delete, key)
        return out

    async def aget_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Any]:
        """:meth:`get_many` for asyncio."""
        out: dict[Hashable, Any] = await self._in_thread(self.get_many, keys)
        return out

    async def aset_many(
        self, items: Mapping[Hashable, Any], ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """:meth:`set_many` for asyncio."""
        await self._in_thread(self.set_many, items, ttl, tags)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        if not self._closed:
            loop = asyncio.get_running_loop()
            try:
                fut = loop.run_in_executor(self._pool(), fn, *args)
            except RuntimeError:  # the executor shut down: closed meanwhile
                pass
            else:
                return await fut
        return fn(*args)  # closed: no I/O, skips (or raises when strict)


class _Down(Exception):
    """Marks a batch not sent because Redis is known down."""


class _Closed(Exception):
    """Marks a call on a closed tier."""


_BAD: Final = object()  # a refused (corrupt or forged) entry


def _glob_escape(b: bytes) -> bytes:
    out = bytearray()
    for ch in b:
        if ch in b"*?[]\\":
            out.append(0x5C)
        out.append(ch)
    return bytes(out)


def _add_aio_waiter(g: Any, loop: Any, w: Any) -> None:
    """File ``w`` under its event loop in batch ``g`` (settled once per loop)."""
    aio = g.aio
    if aio is None:
        g.aio = {loop: [w]}
    elif loop in aio:
        aio[loop].append(w)
    else:
        aio[loop] = [w]
