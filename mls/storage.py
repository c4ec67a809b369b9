"""Persistent state for the ``mls`` API: a small key-value interface, in memory or SQLite.

Values are opaque bytes in namespaces (``identity``, ``key_package``,
``group``, ``psk``). ``write`` applies puts and deletes atomically, so a
member's state either moves to the next step completely or not at all.
SQLite (from the standard library) is synchronous and file-backed, which
keeps the package sans-I/O in the sense of the design: no event loop, no
sockets, no threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from mls.errors import MLSError

__all__ = ["MemoryStorage", "SQLiteStorage", "Storage", "StorageError"]


class StorageError(MLSError):
    """The storage backend failed (I/O error, locked or corrupt database)."""


class Storage(Protocol):
    """What the ``MLS`` object needs from a store."""

    def get(self, namespace: str, key: bytes) -> bytes | None:
        """The value under ``key``, or None."""

    def keys(self, namespace: str) -> list[bytes]:
        """Every key of a namespace."""

    def write(
        self, puts: Iterable[tuple[str, bytes, bytes]] = (), deletes: Iterable[tuple[str, bytes]] = ()
    ) -> None:
        """Apply ``puts`` (namespace, key, value) and ``deletes`` (namespace, key) atomically."""

    def clear(self) -> None:
        """Delete everything."""


class MemoryStorage:
    """A ``Storage`` held in a dict: state lives as long as the object."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, bytes], bytes] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage({len(self._data)} entries)"

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self._data.get((namespace, bytes(key)))

    def keys(self, namespace: str) -> list[bytes]:
        return [key for ns, key in self._data if ns == namespace]

    def write(
        self, puts: Iterable[tuple[str, bytes, bytes]] = (), deletes: Iterable[tuple[str, bytes]] = ()
    ) -> None:
        puts, deletes = list(puts), list(deletes)
        for namespace, key in deletes:
            self._data.pop((namespace, bytes(key)), None)
        for namespace, key, value in puts:
            self._data[(namespace, bytes(key))] = bytes(value)

    def clear(self) -> None:
        self._data.clear()


class SQLiteStorage:
    """A ``Storage`` in one SQLite file; each ``write`` is one transaction.

    Open the same path again (a new ``MLS`` object after a restart) to
    continue every group.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS mls_state ("
                " namespace TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
                " PRIMARY KEY (namespace, key))"
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open MLS state database: {exc}") from None

    def __repr__(self) -> str:
        return f"SQLiteStorage({self.path!r})"

    def get(self, namespace: str, key: bytes) -> bytes | None:
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT value FROM mls_state WHERE namespace = ? AND key = ?", (namespace, bytes(key))
                ).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from None
        return None if row is None else bytes(row[0])

    def keys(self, namespace: str) -> list[bytes]:
        try:
            with self._lock:
                rows = self._db.execute("SELECT key FROM mls_state WHERE namespace = ?", (namespace,)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from None
        return [bytes(row[0]) for row in rows]

    def write(
        self, puts: Iterable[tuple[str, bytes, bytes]] = (), deletes: Iterable[tuple[str, bytes]] = ()
    ) -> None:
        puts, deletes = list(puts), list(deletes)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "DELETE FROM mls_state WHERE namespace = ? AND key = ?",
                        [(ns, bytes(key)) for ns, key in deletes],
                    )
                    self._db.executemany(
                        "INSERT OR REPLACE INTO mls_state (namespace, key, value) VALUES (?, ?, ?)",
                        [(ns, bytes(key), bytes(value)) for ns, key, value in puts],
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"write failed: {exc}") from None

    def clear(self) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM mls_state")
            except sqlite3.Error as exc:
                raise StorageError(f"clear failed: {exc}") from None

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()
