"""SQL of :class:`~overdrive.cache.DiskTier`: the schema (version in
``PRAGMA user_version``) and every statement the tier runs.

Tables: ``entries`` (key TEXT PRIMARY KEY: the :func:`stable_key`; value BLOB:
the serializer's bytes; expires_at and accessed_at REAL: wall-clock seconds;
size: len(key) + len(value); tagged: whether ``tags`` has rows for it),
``tags`` (tag, key), and the one-row ``meta`` (total bytes and entries),
kept exact by triggers so every process sees the same totals.
"""

from __future__ import annotations

import sqlite3
from typing import Final

SCHEMA_VERSION: Final = 1

SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS entries (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL,
        expires_at REAL,
        accessed_at REAL NOT NULL,
        size INTEGER NOT NULL,
        tagged INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at)"
    " WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS tags (
        tag TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (tag, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS tags_key ON tags (key)",
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        bytes INTEGER NOT NULL,
        entries INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO meta (id, bytes, entries) VALUES (0, 0, 0)",
    """CREATE TRIGGER IF NOT EXISTS entries_ins AFTER INSERT ON entries BEGIN
        UPDATE meta SET bytes = bytes + NEW.size, entries = entries + 1 WHERE id = 0;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_del AFTER DELETE ON entries BEGIN
        UPDATE meta SET bytes = bytes - OLD.size, entries = entries - 1 WHERE id = 0;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_del_tags AFTER DELETE ON entries
    WHEN OLD.tagged BEGIN
        DELETE FROM tags WHERE key = OLD.key;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_upd AFTER UPDATE OF value, size ON entries BEGIN
        UPDATE meta SET bytes = bytes - OLD.size + NEW.size WHERE id = 0;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_upd_tags AFTER UPDATE OF value, size ON entries
    WHEN OLD.tagged BEGIN
        DELETE FROM tags WHERE key = OLD.key;
    END""",
)
# Only files used with max_bytes need the access-time index (created on open).
ACCESS_INDEX: Final = "CREATE INDEX IF NOT EXISTS entries_accessed ON entries (accessed_at)"
OUR_TABLES: Final = frozenset({"entries", "tags", "meta"})

GET: Final = "SELECT value, expires_at FROM entries WHERE key = ?"
EXPIRES: Final = "SELECT expires_at FROM entries WHERE key = ?"
UPSERT_ROWS: Final = 64  # rows per multi-row upsert statement (fewer steps, fewer GIL trips)


def upsert_sql(rows: int) -> str:
    values = ",".join(["(?, ?, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO entries (key, value, expires_at, accessed_at, size, tagged) VALUES {values} "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "expires_at = excluded.expires_at, accessed_at = excluded.accessed_at, "
        "size = excluded.size, tagged = excluded.tagged"
    )


UPSERT: Final = upsert_sql(1)
UPSERT_MANY: Final = upsert_sql(UPSERT_ROWS)
TAG: Final = "INSERT OR IGNORE INTO tags (tag, key) VALUES (?, ?)"
DELETE: Final = "DELETE FROM entries WHERE key = ?"
DELETE_IF_EXPIRED: Final = "DELETE FROM entries WHERE key = ? AND expires_at <= ?"
DELETE_IF_VALUE: Final = "DELETE FROM entries WHERE key = ? AND value = ?"
TOUCH: Final = "UPDATE entries SET accessed_at = ? WHERE key = ? AND accessed_at < ?"
SWEEP: Final = (
    "DELETE FROM entries WHERE rowid IN "
    "(SELECT rowid FROM entries WHERE expires_at <= ? LIMIT 1000)"
)
EVICT: Final = (
    "DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries ORDER BY accessed_at LIMIT ?)"
)
META: Final = "SELECT bytes, entries FROM meta WHERE id = 0"
COUNT_LIVE: Final = "SELECT COUNT(*) FROM entries WHERE expires_at IS NULL OR expires_at > ?"
INVALIDATE: Final = (
    "DELETE FROM entries WHERE key IN (SELECT key FROM tags WHERE tag = ?) "
    "AND (expires_at IS NULL OR expires_at > ?)"
)
INVALIDATE_REST: Final = "DELETE FROM entries WHERE key IN (SELECT key FROM tags WHERE tag = ?)"


SQLITE_CORRUPT: Final = 11
SQLITE_NOTADB: Final = 26


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is damaged or not a database at all."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # pragma: no cover - Python < 3.11
        return not isinstance(exc, sqlite3.OperationalError)
    return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


class ForeignFile(Exception):
    """The file is an SQLite database but not a DiskTier cache of this schema."""
