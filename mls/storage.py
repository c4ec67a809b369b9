"""Persistent state for the ``mls`` API: a small key-value interface, in memory or SQLite.

Values are opaque bytes in namespaces (``identity``, ``key_package``,
``group``, ``psk``). ``write`` applies puts and deletes atomically, so a
member's state either moves to the next step completely or not at all.
SQLite (from the standard library) is synchronous and file-backed, which
keeps the package sans-I/O in the sense of the design: no event loop, no
sockets, no threads.

Both stores take an optional 32-byte ``key``: every value is then sealed
with AES-256-GCM bound to its namespace and key (``mls.storage_seal``).
Record keys stay in the clear for lookups; they are public identifiers
(client ids are hashes of public keys, KeyPackageRefs, group ids and PSK ids,
all of which travel in RFC 9420 messages).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from mls.errors import StorageError, StorageKeyError, TamperedRecordError
from mls.storage_seal import RecordSeal

__all__ = [
    "MemoryStorage",
    "SQLiteStorage",
    "Storage",
    "StorageError",
    "StorageKeyError",
    "TamperedRecordError",
]

#: Where the sealed key-check value of an encrypted database lives (``mls_meta``).
_META = "mls-meta"
_KEY_CHECK = b"key-check"


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
    """A ``Storage`` held in a dict: state lives as long as the object.

    With ``key`` (32 bytes) the dict holds only sealed values.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._data: dict[tuple[str, bytes], bytes] = {}
        self._seal = RecordSeal(key) if key is not None else None

    def __repr__(self) -> str:
        sealed = ", encrypted" if self._seal is not None else ""
        return f"MemoryStorage({len(self._data)} entries{sealed})"

    @property
    def encrypted(self) -> bool:
        """Whether values are sealed with an application key."""
        return self._seal is not None

    def get(self, namespace: str, key: bytes) -> bytes | None:
        key = bytes(key)
        value = self._data.get((namespace, key))
        if value is None or self._seal is None:
            return value
        return self._seal.open(namespace, key, value)

    def keys(self, namespace: str) -> list[bytes]:
        return [key for ns, key in self._data if ns == namespace]

    def write(
        self, puts: Iterable[tuple[str, bytes, bytes]] = (), deletes: Iterable[tuple[str, bytes]] = ()
    ) -> None:
        deletes = [(ns, bytes(key)) for ns, key in deletes]
        sealed = [(ns, bytes(key), self._sealed(ns, bytes(key), bytes(value))) for ns, key, value in puts]
        for namespace, key in deletes:
            self._data.pop((namespace, key), None)
        for namespace, key, value in sealed:
            self._data[(namespace, key)] = value

    def _sealed(self, namespace: str, key: bytes, value: bytes) -> bytes:
        return value if self._seal is None else self._seal.seal(namespace, key, value)

    def clear(self) -> None:
        self._data.clear()


class SQLiteStorage:
    """A ``Storage`` in one SQLite file; each ``write`` is one transaction.

    Open the same path again (a new ``MLS`` object after a restart) to
    continue every group. With ``key`` (32 bytes, from the application) every
    value is sealed (AES-256-GCM) and the database remembers a sealed check
    value: opening it later without the key, or with another key, raises
    ``StorageKeyError`` and changes nothing; so does opening a database of
    unencrypted state with a key. A record altered or moved in the file raises
    ``TamperedRecordError`` when read.
    """

    def __init__(self, path: str | Path, key: bytes | None = None) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        seal = RecordSeal(key) if key is not None else None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open MLS state database: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS mls_state ("
                " namespace TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
                " PRIMARY KEY (namespace, key))"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS mls_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
            self._check_key(seal)
        except sqlite3.Error as exc:
            self._db.close()
            raise StorageError(f"cannot open MLS state database: {exc}") from None
        except BaseException:
            self._db.close()
            raise
        self._seal = seal

    def _check_key(self, seal: RecordSeal | None) -> None:
        """Match ``seal`` against the database's key check value, writing one into a new database."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT value FROM mls_meta WHERE name = ?", (_KEY_CHECK.decode(),)).fetchone()
            if row is not None:
                if seal is None:
                    raise StorageKeyError("this MLS state database is encrypted: open it with its key")
                try:
                    seal.open(_META, _KEY_CHECK, bytes(row[0]))
                except TamperedRecordError:
                    raise StorageKeyError("this is not the key of this MLS state database") from None
            elif seal is not None:
                if self._db.execute("SELECT 1 FROM mls_state LIMIT 1").fetchone() is not None:
                    raise StorageKeyError("this MLS state database holds unencrypted state: open it without a key")
                self._db.execute(
                    "INSERT INTO mls_meta (name, value) VALUES (?, ?)",
                    (_KEY_CHECK.decode(), seal.seal(_META, _KEY_CHECK, b"")),
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def __repr__(self) -> str:
        sealed = ", encrypted" if self._seal is not None else ""
        return f"SQLiteStorage({self.path!r}{sealed})"

    @property
    def encrypted(self) -> bool:
        """Whether values are sealed with an application key."""
        return self._seal is not None

    def get(self, namespace: str, key: bytes) -> bytes | None:
        key = bytes(key)
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT value FROM mls_state WHERE namespace = ? AND key = ?", (namespace, key)
                ).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from None
        if row is None:
            return None
        value = bytes(row[0])
        return value if self._seal is None else self._seal.open(namespace, key, value)

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
                        [(ns, bytes(key), self._sealed(ns, bytes(key), bytes(value))) for ns, key, value in puts],
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"write failed: {exc}") from None

    def _sealed(self, namespace: str, key: bytes, value: bytes) -> bytes:
        return value if self._seal is None else self._seal.seal(namespace, key, value)

    def clear(self) -> None:
        """Delete every record (an encrypted database keeps its key check: it stays encrypted)."""
        with self._lock:
            try:
                self._db.execute("DELETE FROM mls_state")
            except sqlite3.Error as exc:
                raise StorageError(f"clear failed: {exc}") from None

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()
