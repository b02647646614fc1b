"""The L3 tier: a persistent cache in one SQLite file, shared by processes.

:class:`DiskTier` keeps entries in an SQLite database in WAL mode, so readers
never wait for the writer and several processes can share the file (values
set and flushed in one process are read by the others; concurrent writers
lose nothing: each commit is a short ``BEGIN IMMEDIATE`` transaction and
SQLite's busy timeout serialises them).

**Write-behind.** ``set`` serialises the value and puts it in a bounded
in-memory queue (``max_pending`` keys; a later set of the same key replaces
the queued one); one background thread commits the queue every
``flush_interval_ms``, many entries per transaction. A ``get``/``lookup``/
``delete``/``in`` of a key with a queued write sees the queued write
(read-your-writes in this process; other processes see it once flushed).
When the queue is full the caller flushes it itself before returning (it
blocks briefly, nothing is dropped). The queue is flushed by :meth:`flush`,
:meth:`close`, ``with`` exit, garbage collection of the tier and interpreter
exit (an ``atexit`` hook that holds the tiers weakly). With
``write_behind=False`` every set commits before it returns.

**Expiry and size.** Expiry times are wall-clock (``clock``, default
:func:`time.time`) since processes share the file. An expired entry is never
returned; expired rows are deleted lazily (after a get found one) and by the
writer every ``SWEEP_INTERVAL_S`` seconds (and :meth:`expire`). With
``max_bytes`` the total size of keys plus serialised values is kept under the
bound by deleting expired rows, then the least recently *accessed* rows; access
times are batched in memory and written by the writer thread (no write per
get). Only a tier with ``max_bytes`` records access times.

**Bad data.** A file that is not an SQLite database (or one with another
schema) raises :class:`~overdrive.exceptions.CacheDataError` naming the path;
with ``rebuild_on_corrupt=True`` the file is renamed to ``<path>.corrupt-<time>``
and a new one is created (a warning is logged). A row whose bytes the
serializer refuses (corrupt, forged, a pickle without a valid signature) is a
miss: ``get`` never raises for it, counts an error, logs a warning and
deletes the row. Nothing read from the file is executed (the default
msgpack serializer runs no code; ``PickleSerializer`` checks an HMAC first).

**Errors.** An SQLite failure during a read (e.g. a page corrupted after the
file was opened) is counted in ``errors``, logged, and the read is a miss.
Writes that run in the caller's thread (``write_behind=False``, ``delete``,
``clear``, ``invalidate_tag``, ``flush``, ``close``) raise
:class:`~overdrive.exceptions.CacheUnavailable` (a ``ConnectionError``); a
background commit that fails is counted, logged and retried (the entries stay
queued). Any call after :meth:`close` raises ``CacheUnavailable``.

**Reads.** Each thread reads through its own SQLite connection, and its
reads share one read transaction for up to ``read_snapshot_ms`` (1 ms), which
halves the cost of a read. Any commit by a DiskTier of this process renews
every snapshot before the next read, so within a process reads are never
stale; another process's commit may be seen up to 1 ms late
(``read_snapshot_ms=0``: never).

**Threads and asyncio.** Every method may be called from any thread. The API
is synchronous: from asyncio, either accept the short blocking of a read (a
few microseconds; a set only queues) or run calls in a thread
(``await asyncio.to_thread(tier.get, k)``). After ``os.fork()`` the child
leaves the parent's connections untouched and opens its own, with an empty
queue and its own writer thread (the parent flushes what it had queued); a
``multiprocessing`` child flushes on exit like any process.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from multiprocessing import util as mp_util
from typing import Any, Final

from ..exceptions import CacheDataError, CacheUnavailable, ConfigurationError, InputTypeError
from ..telemetry.registry import auto_register
from ._disk_sql import (
    ACCESS_INDEX,
    COUNT_LIVE,
    DELETE,
    DELETE_IF_EXPIRED,
    DELETE_IF_VALUE,
    EVICT,
    EXPIRES,
    GET,
    INVALIDATE,
    INVALIDATE_REST,
    META,
    OUR_TABLES,
    SCHEMA,
    SCHEMA_VERSION,
    SWEEP,
    TAG,
    TOUCH,
    UPSERT,
    UPSERT_MANY,
    UPSERT_ROWS,
    ForeignFile,
    is_corruption,
)
from .keys import stable_key
from .serializers import MsgpackSerializer, Serializer

__all__ = ["DiskTier"]

_log = logging.getLogger("overdrive.cache.disk")
_monotonic = time.monotonic

#: Seconds between the writer's sweeps of expired rows.
SWEEP_INTERVAL_S: Final = 30.0
_TICK_S: Final = 1.0  # the writer wakes at least this often (access times, lazy deletes)
_CHUNK: Final = 500  # keys per "IN (...)" query

# A queued write: (serialised value, expires_at, tags, size, set time), or None: a delete.
_Op = tuple[bytes, float | None, tuple[str, ...], int, float] | None
_ABSENT: Final = object()
_NO_OPS: Final[dict[str, _Op]] = {}

_COUNTERS: Final = ("hits", "misses", "deletes", "errors", "expirations")

# Bumped after every commit by a DiskTier of this process: a thread's read
# snapshot older than the last local commit is renewed before the next read.
_GEN: Final = [0]


class _ThreadState:
    """One thread's connection, cursor and counters (only that thread writes
    them). When the thread ends its state is freed: the connection closes and
    the counts are folded into the tier's totals."""

    __slots__ = (
        "__weakref__",
        "conn",
        "cur",
        "deletes",
        "errors",
        "expirations",
        "hits",
        "lock",
        "misses",
        "reg",
        "snap_gen",
        "snap_until",
    )

    def __init__(self, conn: sqlite3.Connection, reg: _Counters) -> None:
        self.conn = conn
        self.cur = conn.cursor()
        self.reg = reg
        self.lock = threading.Lock()  # held while the connection runs a statement
        self.snap_gen = -1
        self.snap_until = 0.0
        self.hits = self.misses = self.deletes = self.errors = self.expirations = 0

    def counts(self) -> tuple[int, ...]:
        return (self.hits, self.misses, self.deletes, self.errors, self.expirations)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter teardown
            self.reg.fold(self)


class _Counters:
    """Sums the per-thread counters; a dead thread's counts are kept in ``dead``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: a state's __del__ may run under it
        self.live: dict[int, weakref.ref[_ThreadState]] = {}
        self.dead = [0] * len(_COUNTERS)

    def register(self, st: _ThreadState) -> None:
        with self.lock:
            self.live[id(st)] = weakref.ref(st)

    def fold(self, st: _ThreadState) -> None:
        with self.lock:
            if self.live.pop(id(st), None) is not None:
                for i, v in enumerate(st.counts()):
                    self.dead[i] += v

    def totals(self) -> dict[str, int]:
        with self.lock:
            out = list(self.dead)
            for ref in list(self.live.values()):
                st = ref()
                if st is not None:
                    for i, v in enumerate(st.counts()):
                        out[i] += v
            return dict(zip(_COUNTERS, out, strict=True))

    def states(self) -> list[_ThreadState]:
        with self.lock:
            return [st for ref in self.live.values() if (st := ref()) is not None]


_LIVE: weakref.WeakSet[DiskTier] = weakref.WeakSet()
_FORK_ORPHANS: list[object] = []  # connections inherited by a forked child, never used


def _close_all_at_exit() -> None:
    for tier in list(_LIVE):
        try:
            tier.close()
        except Exception:
            _log.exception("DiskTier %r: flushing at interpreter exit failed", tier.name)


atexit.register(_close_all_at_exit)


def _reset_all_after_fork() -> None:
    for tier in list(_LIVE):
        tier._after_fork()


class _ForkHook:
    """A forked multiprocessing child leaves through ``os._exit`` (no atexit):
    its exit hooks (registered after the child cleared its registry) flush the
    tiers instead."""

    @staticmethod
    def register_finalizer(_self: object) -> None:
        mp_util.Finalize(None, _close_all_at_exit, exitpriority=10)


_FORK_HOOK: Final = _ForkHook()
mp_util.register_after_fork(_FORK_HOOK, _ForkHook.register_finalizer)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)


def _writer_main(
    ref: weakref.ref[DiskTier],
    wake: threading.Event,
    stop: threading.Event,
    interval: float,
) -> None:
    """The write-behind thread: holds the tier only weakly while it waits."""
    while not stop.is_set():
        woke = wake.wait(_TICK_S)
        if stop.is_set():
            return
        if woke and interval > 0:
            stop.wait(interval)  # let a batch gather
            if stop.is_set():
                return
        wake.clear()
        tier = ref()
        if tier is None:
            return
        tier._background_tick()
        del tier


def _check_positive(name: str, value: Any, *, allow_none: bool, integer: bool) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not isinstance(value, int))
    ):
        want = "an int" if integer else "a number"
        raise InputTypeError(
            f"{name} must be {want}{' or None' if allow_none else ''}, "
            f"got {type(value).__name__} {value!r}"
        )
    if not value > 0:  # NaN fails too
        raise ConfigurationError(f"{name} must be > 0, got {value!r}")


class DiskTier:
    """A persistent cache tier in one SQLite file (WAL), shared by processes.

    Args:
        path: the database file (created if absent; its directory must exist).
        max_bytes: bound on the total size of keys plus serialised values in
            the file, enforced after each commit by evicting expired, then least
            recently accessed entries. ``None``: unbounded.
        ttl: default time to live in seconds (``None``: no expiry); ``set``'s
            ``ttl`` overrides it, ``math.inf`` means no expiry.
        serializer: turns values into bytes (default
            :class:`~overdrive.cache.MsgpackSerializer`). Every process sharing
            the file must use a compatible one.
        write_behind: queue sets and commit them from a background thread
            (default); ``False`` commits each set before it returns.
        max_pending: queued keys at most; a set that fills the queue flushes it.
        flush_interval_ms: how long the writer lets a batch gather once a set
            arrives.
        rebuild_on_corrupt: rename a corrupt or foreign file aside and start a
            new one (a warning is logged) instead of raising CacheDataError.
        clock: wall-clock seconds (expiry and access times are stored as such).
        name: the tier's name in stats and TieredCache.
        read_snapshot_ms: a thread's reads share one SQLite read transaction
            for up to this long (renewed at once after any commit by this
            process), so another process's commit may be seen this much later;
            ``0``: every read sees every commit (about 2 µs more per read).
        busy_timeout_s: how long a commit (or opening the file) waits for
            another connection's write lock before failing with
            CacheUnavailable.

    See the module documentation for the exact guarantees.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "cache.db",
        *,
        max_bytes: int | None = None,
        ttl: float | None = 86400.0,
        serializer: Serializer | None = None,
        write_behind: bool = True,
        max_pending: int = 10_000,
        flush_interval_ms: float = 50.0,
        rebuild_on_corrupt: bool = False,
        clock: Callable[[], float] = time.time,
        name: str = "disk",
        read_snapshot_ms: float = 1.0,
        busy_timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise InputTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        fspath = os.fspath(path)
        if not isinstance(fspath, str):
            raise InputTypeError(f"path must name a file as str, got {fspath!r}")
        if fspath in ("", ":memory:") or fspath.startswith("file:"):
            raise ConfigurationError(
                f"path must be a file path (the tier is shared by threads and processes), "
                f"got {fspath!r}"
            )
        _check_positive("max_bytes", max_bytes, allow_none=True, integer=True)
        _check_positive("ttl", ttl, allow_none=True, integer=False)
        _check_positive("max_pending", max_pending, allow_none=False, integer=True)
        _check_positive("busy_timeout_s", busy_timeout_s, allow_none=False, integer=False)
        if isinstance(flush_interval_ms, bool) or not isinstance(flush_interval_ms, (int, float)):
            raise InputTypeError(
                f"flush_interval_ms must be a number, got {type(flush_interval_ms).__name__}"
            )
        if not 0 <= flush_interval_ms <= 60_000:
            raise ConfigurationError(
                f"flush_interval_ms must be in 0..60000, got {flush_interval_ms!r}"
            )
        if isinstance(read_snapshot_ms, bool) or not isinstance(read_snapshot_ms, (int, float)):
            raise InputTypeError(
                f"read_snapshot_ms must be a number, got {type(read_snapshot_ms).__name__}"
            )
        if not 0 <= read_snapshot_ms <= 1000:
            raise ConfigurationError(
                f"read_snapshot_ms must be in 0..1000, got {read_snapshot_ms!r}"
            )
        for flag_name, flag in (
            ("write_behind", write_behind),
            ("rebuild_on_corrupt", rebuild_on_corrupt),
        ):
            if not isinstance(flag, bool):
                raise InputTypeError(f"{flag_name} must be a bool, got {type(flag).__name__}")
        if serializer is None:
            serializer = MsgpackSerializer()
        elif not isinstance(serializer, Serializer):
            raise InputTypeError(
                "serializer must have dumps(value) -> bytes and loads(bytes) -> value, "
                f"got {type(serializer).__name__}"
            )
        if not callable(clock):
            raise InputTypeError(f"clock must be callable, got {type(clock).__name__}")
        if not isinstance(name, str) or not name:
            raise InputTypeError(f"name must be a non-empty str, got {name!r}")

        self.name = name
        self._path = os.path.abspath(fspath)
        self._max_bytes = max_bytes
        self._ttl = None if ttl is None or ttl == math.inf else float(ttl)
        self._serializer = serializer
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        self._write_behind = write_behind
        self._max_pending = max_pending
        self._interval = flush_interval_ms / 1000.0
        self._snapshot_s = read_snapshot_ms / 1000.0
        self._rebuild = rebuild_on_corrupt
        self._busy_timeout = float(busy_timeout_s)
        self._clock = clock
        self._track = max_bytes is not None  # record access times only when evicting

        self._closed = True  # until the file is open
        self._evictions = 0
        self._sets = 0  # counted under _lock
        self._bg_expirations = 0  # counted under _write_lock
        self._bg_errors = 0
        self._last_log = 0.0
        self._next_sweep = 0.0
        self._writer: threading.Thread | None = None
        self._init_runtime()
        self._open_file()
        self._closed = False
        _LIVE.add(self)
        self._start_writer()  # also writes access times and deletes expired rows
        auto_register(self, "disk_tier")

    # --- setup ---------------------------------------------------------------------------

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()  # guards the queue swaps
        self._write_lock = threading.Lock()  # one commit of this tier at a time
        self._local = threading.local()
        self._counters = _Counters()
        self._pending: dict[str, _Op] = {}
        self._inflight: dict[str, _Op] = _NO_OPS  # the batch being committed
        self._touched: dict[str, float] = {}
        self._expired: dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pid = os.getpid()

    def _start_writer(self) -> None:
        self._writer = threading.Thread(
            target=_writer_main,
            args=(weakref.ref(self), self._wake, self._stop, self._interval),
            name=f"overdrive-disk-writer[{self.name}]",
            daemon=True,
        )
        self._writer.start()

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's connections, queue and thread."""
        if self._closed:
            return
        # Never close (nor finalise) the parent's connections here: keep them.
        _FORK_ORPHANS.append((self._local, self._counters.states()))
        self._init_runtime()
        self._start_writer()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=64,
            )
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"DiskTier cannot open {self._path!r}: {exc}") from None
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-8192")  # 8 MiB of pages per connection
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _open_file(self) -> None:
        try:
            self._init_schema()
        except (sqlite3.DatabaseError, ForeignFile) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not is_corruption(exc):
                # busy past the timeout, read-only, disk full...: not the file's fault
                raise CacheUnavailable(f"DiskTier cannot open {self._path!r}: {exc}") from None
            if not self._rebuild:
                raise CacheDataError(
                    f"{self._path!r} is not a usable DiskTier cache file ({exc}); "
                    "delete it, pick another path, or pass rebuild_on_corrupt=True"
                ) from None
            aside = f"{self._path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            _log.warning(
                "DiskTier %r: %r is not a usable cache file (%s); moved it to %r and "
                "started a new one",
                self.name,
                self._path,
                exc,
                aside,
            )
            try:
                os.replace(self._path, aside)
                for suffix in ("-wal", "-shm"):
                    if os.path.exists(self._path + suffix):
                        os.replace(self._path + suffix, aside + suffix)
            except OSError as move_exc:
                raise CacheUnavailable(
                    f"DiskTier cannot move the corrupt file {self._path!r} aside: {move_exc}"
                ) from None
            try:
                self._init_schema()
            except (sqlite3.DatabaseError, ForeignFile) as exc2:
                raise CacheDataError(
                    f"{self._path!r}: rebuilding the cache file failed: {exc2}"
                ) from None

    def _init_schema(self) -> None:
        if not os.path.isdir(os.path.dirname(self._path)):
            raise CacheUnavailable(
                f"DiskTier cannot open {self._path!r}: its directory does not exist"
            )
        conn = self._connect()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version == 0:
                        names = {
                            r[0]
                            for r in conn.execute(
                                "SELECT name FROM sqlite_master WHERE type = 'table'"
                            )
                        }
                        if names - OUR_TABLES:
                            raise ForeignFile(
                                "it is an SQLite database with other tables: "
                                + ", ".join(sorted(names - OUR_TABLES))
                            )
                        for stmt in SCHEMA:
                            conn.execute(stmt)
                        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            if version not in (0, SCHEMA_VERSION):
                raise ForeignFile(
                    f"schema version {version}, this overdrive reads version {SCHEMA_VERSION}"
                )
            if self._max_bytes is not None:
                conn.execute(ACCESS_INDEX)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                _log.warning("DiskTier %r: journal_mode is %s, not wal", self.name, mode)
            conn.execute(META).fetchone()  # the schema is readable
        finally:
            conn.close()

    def _new_state(self) -> _ThreadState:
        if self._closed:
            raise self._closed_error()
        st = _ThreadState(self._connect(), self._counters)
        self._counters.register(st)
        self._local.st = st
        return st

    def _closed_error(self) -> CacheUnavailable:
        return CacheUnavailable(f"DiskTier {self.name!r} ({self._path}) is closed")

    # --- reads ---------------------------------------------------------------------------

    def _fetch(self, key: Hashable, count: bool = True) -> tuple[Any, float | None] | None:
        """``(value, expires_at)`` of a live entry, or None."""
        if self._closed:
            raise self._closed_error()
        k = stable_key(key)
        try:
            st: _ThreadState = self._local.st
        except AttributeError:
            st = self._new_state()
        now = self._clock()
        if self._pending or self._inflight:
            op = self._pending.get(k, _ABSENT)
            if op is _ABSENT:
                op = self._inflight.get(k, _ABSENT)
            if op is not _ABSENT:
                if op is None or (op[1] is not None and op[1] <= now):  # type: ignore[index]
                    if count:
                        st.misses += 1
                    return None
                if count:
                    st.hits += 1
                return self._loads(op[0]), op[1]  # type: ignore[index]
        with st.lock:
            try:
                if st.snap_gen != _GEN[0] or _monotonic() >= st.snap_until:
                    self._renew(st)
                row = st.cur.execute(GET, (k,)).fetchone()
            except sqlite3.Error as exc:
                self._end_read(st)
                row = exc
        if row is None:
            if count:
                st.misses += 1
            return None
        if type(row) is not tuple:
            self._read_failed(st, row)
            return None
        blob, expires_at = row
        if expires_at is not None and expires_at <= now:
            if count:
                st.misses += 1
            self._expire_later(k, now)
            return None
        try:
            value = self._loads(blob)
        except CacheDataError as exc:
            self._bad_row(st, k, blob, exc)
            return None
        if count:
            st.hits += 1
        if self._track:
            self._touch(k, now)
        return value, expires_at

    def _expire_later(self, k: str, now: float) -> None:
        """Have the writer delete the expired row (if it is still expired then)."""
        expired = self._expired
        expired[k] = now
        if len(expired) >= self._max_pending:
            self._wake.set()

    def _touch(self, k: str, now: float) -> None:
        touched = self._touched
        touched[k] = now
        if len(touched) >= self._max_pending:
            self._wake.set()

    def _renew(self, st: _ThreadState) -> None:
        """Start a new read snapshot on the thread's connection (st.lock held):
        reads share one transaction for ``read_snapshot_ms`` unless this process
        commits meanwhile, which saves SQLite's per-statement lock round trip."""
        if st.conn.in_transaction:
            st.cur.execute("COMMIT")
        if self._snapshot_s > 0:
            st.snap_gen = _GEN[0]
            st.cur.execute("BEGIN")
            st.snap_until = _monotonic() + self._snapshot_s

    @staticmethod
    def _end_read(st: _ThreadState) -> None:
        """End the thread's read snapshot (st.lock held)."""
        st.snap_until = 0.0
        with contextlib.suppress(sqlite3.Error):  # also: the connection was closed
            if st.conn.in_transaction:
                st.cur.execute("ROLLBACK")

    def _query(self, st: _ThreadState, sql: str, params: Sequence[Any]) -> list[Any]:
        """All rows of a read, in the thread's snapshot."""
        with st.lock:
            try:
                if st.snap_gen != _GEN[0] or _monotonic() >= st.snap_until:
                    self._renew(st)
                return st.cur.execute(sql, params).fetchall()
            except sqlite3.Error:
                self._end_read(st)
                raise

    @contextlib.contextmanager
    def _transaction(self, st: _ThreadState) -> Iterator[sqlite3.Cursor]:
        """A write transaction on the thread's connection (its read snapshot
        ended first); other threads' and processes' commits wait on SQLite's
        busy timeout."""
        with st.lock:
            self._end_read(st)
            cur = st.cur
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                self._end_read(st)
                raise
            finally:
                _GEN[0] += 1

    def _read_failed(self, st: _ThreadState, exc: sqlite3.Error) -> None:
        if self._closed:
            raise self._closed_error() from None
        st.errors += 1
        st.misses += 1
        self._log_limited("a read of %r failed: %s", self._path, exc)

    def _bad_row(self, st: _ThreadState, k: str, blob: Any, exc: CacheDataError) -> None:
        st.errors += 1
        st.misses += 1
        _log.warning(
            "DiskTier %r: entry %r in %r refused by the serializer (%s); deleted",
            self.name,
            k,
            self._path,
            exc,
        )
        try:
            with self._write_lock, self._transaction(st) as cur:
                cur.execute(DELETE_IF_VALUE, (k, blob))
        except sqlite3.Error as del_exc:
            self._log_limited("deleting a bad entry failed: %s", del_exc)

    def _log_limited(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log >= 10.0:
            self._last_log = now
            _log.warning("DiskTier %r: " + msg, self.name, *args)

    def lookup(self, key: Hashable) -> tuple[Any, float | None] | None:
        """``(value, seconds_left)`` (``None``: no expiry), or ``None`` when the
        key is absent, expired or its stored bytes are refused."""
        found = self._fetch(key)
        if found is None:
            return None
        value, expires_at = found
        return value, None if expires_at is None else max(0.0, expires_at - self._clock())

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value, or ``default`` when absent, expired or refused (never raises
        for bad stored bytes: see the module documentation)."""
        # _fetch inlined for the common case (nothing queued, a row found)
        if self._closed or self._pending or self._inflight:
            found = self._fetch(key)
            return default if found is None else found[0]
        k = stable_key(key)
        try:
            st: _ThreadState = self._local.st
        except AttributeError:
            st = self._new_state()
        now = self._clock()
        with st.lock:
            try:
                if st.snap_gen != _GEN[0] or _monotonic() >= st.snap_until:
                    self._renew(st)
                row = st.cur.execute(GET, (k,)).fetchone()
            except sqlite3.Error:
                self._end_read(st)
                row = _ABSENT
        if row is None:
            st.misses += 1
            return default
        if row is _ABSENT or (row[1] is not None and row[1] <= now):
            found = self._fetch(key)  # the rare paths: an error or an expired row
            return default if found is None else found[0]
        try:
            value = self._loads(row[0])
        except CacheDataError as exc:
            self._bad_row(st, k, row[0], exc)
            return default
        st.hits += 1
        if self._track:
            self._touch(k, now)
        return value

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a live entry (not counted as a hit or miss)."""
        return self._fetch(key, count=False) is not None

    def get_many(self, keys: Sequence[Hashable]) -> dict[Hashable, Any]:
        """The live entries among ``keys`` (one query per 500 keys)."""
        if self._closed:
            raise self._closed_error()
        try:
            st: _ThreadState = self._local.st
        except AttributeError:
            st = self._new_state()
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise InputTypeError(
                f"keys must be a sequence of keys, got {type(keys).__name__} {keys!r:.40}"
            )
        now = self._clock()
        out: dict[Hashable, Any] = {}
        by_name: dict[str, list[Hashable]] = {}
        for key in keys:
            by_name.setdefault(stable_key(key), []).append(key)
        todo: list[str] = []
        pending, inflight = self._pending, self._inflight
        for k, originals in by_name.items():
            op = pending.get(k, _ABSENT)
            if op is _ABSENT:
                op = inflight.get(k, _ABSENT)
            if op is _ABSENT:
                todo.append(k)
            elif op is None or (op[1] is not None and op[1] <= now):  # type: ignore[index]
                st.misses += len(originals)
            else:
                st.hits += len(originals)
                for key in originals:
                    out[key] = self._loads(op[0])  # type: ignore[index]
        found: dict[str, Any] = {}
        for i in range(0, len(todo), _CHUNK):
            chunk = todo[i : i + _CHUNK]
            sql = (
                "SELECT key, value, expires_at FROM entries WHERE key IN "
                f"({','.join('?' * len(chunk))})"
            )
            try:
                rows = self._query(st, sql, chunk)
            except sqlite3.Error as exc:
                self._read_failed(st, exc)
                continue
            for k, blob, expires_at in rows:
                if expires_at is not None and expires_at <= now:
                    self._expire_later(k, now)
                    continue
                try:
                    found[k] = self._loads(blob)
                except CacheDataError as exc:
                    self._bad_row(st, k, blob, exc)
                    st.misses -= 1  # counted below
        for k in todo:
            originals = by_name[k]
            if k in found:
                st.hits += len(originals)
                value = found[k]
                for key in originals:
                    out[key] = value
                if self._track:
                    self._touched[k] = now
            else:
                st.misses += len(originals)
        return out

    def __len__(self) -> int:
        """Live (unexpired) entries in the file, after flushing this tier's queue."""
        self.flush()
        st = self._state()
        try:
            n: int = self._query(st, COUNT_LIVE, (self._clock(),))[0][0]
        except sqlite3.Error as exc:
            raise self._unavailable("counting entries", exc) from None
        return n

    def _state(self) -> _ThreadState:
        if self._closed:
            raise self._closed_error()
        try:
            st: _ThreadState = self._local.st
        except AttributeError:
            st = self._new_state()
        return st

    # --- writes --------------------------------------------------------------------------

    def _expiry(self, ttl: float | None, now: float) -> float | None:
        if ttl is None:
            return None if self._ttl is None else now + self._ttl
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise InputTypeError(f"ttl must be a number or None, got {type(ttl).__name__}")
        if not ttl > 0:
            raise ConfigurationError(f"ttl must be > 0 (math.inf: no expiry), got {ttl!r}")
        return None if ttl == math.inf else now + ttl

    @staticmethod
    def _tags(tags: Iterable[str]) -> tuple[str, ...]:
        if isinstance(tags, str):
            raise InputTypeError(f"tags must be an iterable of str, not a str ({tags!r})")
        try:
            out = tuple(tags)
        except TypeError:
            raise InputTypeError(
                f"tags must be an iterable of str, got {type(tags).__name__}"
            ) from None
        for t in out:
            if not isinstance(t, str):
                raise InputTypeError(f"tags must be str, got {type(t).__name__} {t!r}")
        return out

    def set(
        self,
        key: Hashable,
        value: Any,
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Store ``value`` (queued when ``write_behind``). ``ttl`` seconds
        (``None``: the tier's default; ``math.inf``: no expiry). Raises
        SerializationError for a value the serializer cannot store."""
        k = stable_key(key)
        now = self._clock()
        if ttl is None:
            expires_at = None if self._ttl is None else now + self._ttl
        else:
            expires_at = self._expiry(ttl, now)
        blob = self._dumps(value)
        op = (blob, expires_at, self._tags(tags) if tags else (), len(blob) + len(k), now)
        if self._write_behind and self._max_bytes is None:  # the fast path of _enqueue
            with self._lock:
                if self._closed:
                    raise self._closed_error()
                pending = self._pending
                was_empty = not pending
                pending[k] = op
                self._sets += 1
                full = len(pending) >= self._max_pending
            if was_empty:
                self._wake.set()
            if full:
                self.flush()
            return
        self._enqueue({k: op}, 1)

    def set_many(
        self,
        items: Mapping[Hashable, Any],
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """``set`` for each item, committed together. Every value is serialised
        before any is queued: one that cannot be stored raises and stores none."""
        if not isinstance(items, Mapping):
            raise InputTypeError(f"items must be a mapping, got {type(items).__name__}")
        now = self._clock()
        expires_at = self._expiry(ttl, now)
        tag_tuple = self._tags(tags) if tags else ()
        ops: dict[str, _Op] = {}
        for key, value in items.items():
            k = stable_key(key)
            blob = self._dumps(value)
            ops[k] = (blob, expires_at, tag_tuple, len(blob) + len(k), now)
        if ops:
            self._enqueue(ops, len(items))

    def _enqueue(self, ops: dict[str, _Op], sets: int = 0) -> None:
        """Queue (or, without write-behind, commit) sets and deletes; ``sets``
        is how many ``set`` items they count as."""
        if self._max_bytes is not None:
            for k, op in ops.items():
                if op is not None and op[3] > self._max_bytes:
                    ops[k] = None  # larger than the whole tier: not stored, old value dropped
                    with self._write_lock:
                        self._evictions += 1
        if not self._write_behind:
            self._commit_sync(ops)
            with self._lock:
                self._sets += sets
            return
        with self._lock:
            if self._closed:
                raise self._closed_error()
            self._sets += sets
            pending = self._pending
            was_empty = not pending
            pending.update(ops)
            full = len(pending) >= self._max_pending
        if was_empty:
            self._wake.set()
        if full:
            self.flush()

    def _commit_sync(self, ops: dict[str, _Op]) -> None:
        st = self._state()
        with self._write_lock:
            if self._closed:
                raise self._closed_error()
            with self._lock:
                touched, self._touched = self._touched, {}
                expired, self._expired = self._expired, {}
            try:
                self._write(st, ops, touched, expired, self._clock())
            except sqlite3.Error as exc:
                raise self._unavailable("a write", exc) from None

    def delete(self, key: Hashable) -> bool:
        """Remove ``key``; ``True`` when it had a live entry. The delete is queued
        like a set (gets in this process see it at once)."""
        st = self._state()
        k = stable_key(key)
        now = self._clock()
        op = self._pending.get(k, _ABSENT)
        if op is _ABSENT:
            op = self._inflight.get(k, _ABSENT)
        if op is not _ABSENT:
            present = op is not None and (op[1] is None or op[1] > now)  # type: ignore[index]
        else:
            try:
                rows = self._query(st, EXPIRES, (k,))
            except sqlite3.Error as exc:
                raise self._unavailable("a delete", exc) from None
            if not rows:
                return False
            present = rows[0][0] is None or rows[0][0] > now
        if present:
            st.deletes += 1
        self._enqueue({k: None})
        return present

    def invalidate_tag(self, tag: str) -> int:
        """Remove every entry set with ``tag`` (queued ones included); returns
        how many live entries were removed."""
        if not isinstance(tag, str):
            raise InputTypeError(f"tag must be a str, got {type(tag).__name__} {tag!r}")
        st = self._state()
        with self._write_lock:
            try:
                self._drain_locked(st)
                with self._transaction(st) as cur:
                    cur.execute(INVALIDATE, (tag, self._clock()))
                    removed = cur.rowcount
                    cur.execute(INVALIDATE_REST, (tag,))
            except sqlite3.Error as exc:
                raise self._unavailable("invalidate_tag", exc) from None
        return max(0, removed)

    def clear(self) -> None:
        """Remove every entry of the file (and this tier's queue)."""
        st = self._state()
        with self._write_lock:
            with self._lock:
                self._pending = {}
                self._touched = {}
                self._expired = {}
            try:
                with self._transaction(st) as cur:
                    cur.execute("DELETE FROM tags")
                    cur.execute("DELETE FROM entries")
            except sqlite3.Error as exc:
                raise self._unavailable("clear", exc) from None

    def expire(self) -> int:
        """Delete expired rows now (the writer also does it every
        ``SWEEP_INTERVAL_S`` seconds); returns how many were deleted."""
        st = self._state()
        with self._write_lock:
            before = self._bg_expirations
            try:
                self._write(st, {}, {}, {}, self._clock(), sweep=True)
            except sqlite3.Error as exc:
                raise self._unavailable("expire", exc) from None
            return self._bg_expirations - before

    def flush(self) -> None:
        """Commit everything queued so far (in the calling thread); other
        processes see it once this returns."""
        st = self._state()
        with self._write_lock:
            try:
                self._drain_locked(st)
            except sqlite3.Error as exc:
                raise self._unavailable("flush", exc) from None

    def _drain_locked(self, st: _ThreadState) -> None:
        """Commit the queue; the caller holds ``_write_lock``. On failure the
        entries go back in the queue (behind any newer write of the same key)."""
        with self._lock:
            batch = self._pending
            touched = self._touched
            expired = self._expired
            if not batch and not touched and not expired:
                return
            self._inflight = batch  # visible to readers before it leaves _pending
            self._pending = {}
            self._touched = {}
            self._expired = {}
        try:
            self._write(st, batch, touched, expired, self._clock())
        except BaseException:
            with self._lock:
                for k, op in batch.items():
                    self._pending.setdefault(k, op)
            raise
        finally:
            self._inflight = _NO_OPS

    def _write(
        self,
        st: _ThreadState,
        batch: Mapping[str, _Op],
        touched: Mapping[str, float],
        expired: Mapping[str, float],
        now: float,
        sweep: bool = False,
    ) -> None:
        """One transaction: the queued sets and deletes, access times, lazy
        deletes of expired rows, a sweep when due, eviction to ``max_bytes``."""
        sets = []
        tag_rows = []
        dels = []
        for k, op in batch.items():
            if op is None:
                dels.append((k,))
            else:
                blob, expires_at, tags, size, set_at = op
                sets.append((k, blob, expires_at, set_at, size, 1 if tags else 0))
                for t in tags:
                    tag_rows.append((t, k))
        if not sweep and now >= self._next_sweep:
            sweep = True
        with self._transaction(st) as cur:
            if sets:
                whole = len(sets) - len(sets) % UPSERT_ROWS
                for i in range(0, whole, UPSERT_ROWS):
                    cur.execute(UPSERT_MANY, [v for row in sets[i : i + UPSERT_ROWS] for v in row])
                if whole < len(sets):
                    cur.executemany(UPSERT, sets[whole:])
            if tag_rows:
                cur.executemany(TAG, tag_rows)
            if dels:
                cur.executemany(DELETE, dels)
            if touched:
                cur.executemany(TOUCH, [(t, k, t) for k, t in touched.items()])
            expirations = 0
            if expired:
                cur.executemany(DELETE_IF_EXPIRED, list(expired.items()))
                expirations += max(0, cur.rowcount)
            if sweep:
                while True:
                    cur.execute(SWEEP, (now,))
                    n = cur.rowcount
                    expirations += max(0, n)
                    if n < 1000:
                        break
            evictions = 0
            if self._max_bytes is not None:
                total, entries = cur.execute(META).fetchone()
                if total > self._max_bytes and not sweep:
                    cur.execute(SWEEP, (now,))
                    expirations += max(0, cur.rowcount)
                    total, entries = cur.execute(META).fetchone()
                while total > self._max_bytes and entries > 0:
                    avg = total / entries
                    n = max(1, min(1000, math.ceil((total - self._max_bytes) / avg)))
                    cur.execute(EVICT, (n,))
                    evictions += max(0, cur.rowcount)
                    total, entries = cur.execute(META).fetchone()
        if sweep:
            self._next_sweep = now + SWEEP_INTERVAL_S
        self._bg_expirations += expirations
        self._evictions += evictions

    def _unavailable(self, what: str, exc: sqlite3.Error) -> CacheUnavailable:
        if self._closed:
            return self._closed_error()
        return CacheUnavailable(f"DiskTier {self.name!r}: {what} on {self._path!r} failed: {exc}")

    def _background_tick(self) -> None:
        """One round of the writer thread: commit the queue (errors are counted,
        logged and retried on the next round)."""
        if self._closed or self._pid != os.getpid():
            return
        try:
            st = self._state()
            self._end_idle_snapshots(st)
            with self._write_lock:
                if self._closed:
                    return
                due = self._clock() >= self._next_sweep
                if due and not self._pending and not self._touched and not self._expired:
                    self._write(st, {}, {}, {}, self._clock(), sweep=True)
                else:
                    self._drain_locked(st)
        except Exception as exc:
            if self._closed:
                return
            with self._write_lock:
                self._bg_errors += 1
            self._log_limited("a background commit failed (will retry): %r", exc)

    def _end_idle_snapshots(self, own: _ThreadState) -> None:
        """End read snapshots that threads left open (so they never pin the WAL)."""
        now = _monotonic()
        for st in self._counters.states():
            if st is own or st.snap_until > now or not st.conn.in_transaction:
                continue
            if st.lock.acquire(blocking=False):
                try:
                    if st.snap_until <= now:
                        self._end_read(st)
                finally:
                    st.lock.release()

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Flush the queue, stop the writer and close every connection.
        Idempotent. Raises CacheUnavailable if the final flush fails (the tier
        is closed anyway)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # from here on, sets raise; the queue is final
        self._stop.set()
        self._wake.set()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join()
        failure: CacheUnavailable | None = None
        try:
            try:
                st: _ThreadState = self._local.st
            except AttributeError:
                st = _ThreadState(self._connect(), self._counters)
                self._counters.register(st)
                self._local.st = st
            with self._write_lock:
                self._drain_locked(st)
        except sqlite3.Error as exc:
            failure = CacheUnavailable(
                f"DiskTier {self.name!r}: the final flush to {self._path!r} failed, "
                f"{len(self._pending)} queued writes lost: {exc}"
            )
        except CacheUnavailable as exc:
            failure = exc
        for state in self._counters.states():
            with state.lock, contextlib.suppress(sqlite3.Error):
                state.conn.close()
        _LIVE.discard(self)
        if failure is not None:
            raise failure

    def __enter__(self) -> DiskTier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        try:
            self.close()
        except Exception:
            _log.exception("DiskTier %r: flushing on garbage collection failed", self.name)

    @property
    def path(self) -> str:
        """The absolute path of the database file."""
        return self._path

    @property
    def ttl(self) -> float | None:
        """The default time to live in seconds (``None``: no expiry)."""
        return self._ttl

    @property
    def max_bytes(self) -> int | None:
        """The bound on keys plus values in the file (``None``: unbounded)."""
        return self._max_bytes

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def stats(self) -> dict[str, Any]:
        """Counters of this tier object: ``hits``, ``misses``, ``sets``,
        ``deletes``, ``errors``, ``evictions``, ``expirations`` (expired rows
        deleted), ``pending`` (queued writes); and the file's ``entries`` (rows,
        expired ones not yet swept included) and ``bytes`` (keys + values), or
        ``-1`` for those two once closed."""
        c = self._counters.totals()
        with self._write_lock:
            c["errors"] += self._bg_errors
            c["expirations"] += self._bg_expirations
            evictions = self._evictions
        entries = size = -1
        if not self._closed:
            try:
                st = self._state()
                size, entries = self._query(st, META, ())[0]
            except (sqlite3.Error, CacheUnavailable):
                c["errors"] += 1
        return {
            "hits": c["hits"],
            "misses": c["misses"],
            "sets": self._sets,
            "deletes": c["deletes"],
            "errors": c["errors"],
            "evictions": evictions,
            "expirations": c["expirations"],
            "pending": len(self._pending) + len(self._inflight),
            "entries": entries,
            "bytes": size,
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pending={len(self._pending)}"
        return (
            f"DiskTier(name={self.name!r}, path={self._path!r}, ttl={self._ttl!r}, "
            f"max_bytes={self._max_bytes!r}, write_behind={self._write_behind}, {state})"
        )
