"""The default :class:`~signaling.store.Store`: one SQLite file in WAL mode.

All statements run on one dedicated thread (SQLite connections are not
thread-safe, and one writer makes every transaction trivially serial), so
the event loop never blocks on disk. :meth:`SQLiteStore.append` returns
after COMMIT; appends that arrive while a transaction is being written wait
and then go, every room's together, into the next one (group commit across
rooms: one transaction, and one hand-over to the store thread, per batch
rather than per room). Durability: WAL with ``synchronous=NORMAL`` (the
default) keeps every committed transaction across a process kill (SIGKILL) because the WAL write
happened before COMMIT returned; ``synchronous=FULL`` adds an fsync per commit
and so also survives power loss.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .store import (AppendRequest, AppendResult, ApplicationRequest, EntryKind, GroupCreateRequest,
                    LogEntry, Outcome, ProposalRequest, RoomGroup)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY,
    group_id BLOB,
    epoch INTEGER,
    last_seq INTEGER NOT NULL DEFAULT 0,
    pruned_seq INTEGER NOT NULL DEFAULT 0,
    pruned_epoch INTEGER NOT NULL DEFAULT -1,
    public_group BLOB
);
CREATE TABLE IF NOT EXISTS log (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    group_id BLOB,
    recipient TEXT,
    body BLOB NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS log_one_commit_per_epoch ON log(room, epoch) WHERE kind = 'commit';
CREATE INDEX IF NOT EXISTS log_welcomes ON log(room, recipient, seq) WHERE recipient IS NOT NULL;
CREATE TABLE IF NOT EXISTS key_packages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS key_packages_owner ON key_packages(room, identity, id);
"""

#: Columns added to ``rooms`` since its first release: a database made before gets them on open.
_ADDED_ROOM_COLUMNS = {
    "pruned_seq": "INTEGER NOT NULL DEFAULT 0",
    "pruned_epoch": "INTEGER NOT NULL DEFAULT -1",
    "public_group": "BLOB",
}

_ROOM_STATE = "SELECT group_id, epoch, last_seq, pruned_seq, pruned_epoch FROM rooms WHERE room = ?"
_LOG_COLUMNS = "room, seq, kind, sender, epoch, body, group_id, recipient"
_INSERT_LOG = f"INSERT INTO log ({_LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def _entry(row: tuple) -> LogEntry:
    room, seq, kind, sender, epoch, body, group_id, recipient = row
    return LogEntry(room, seq, EntryKind(kind), sender, epoch, body, group_id, recipient)


class SQLiteStore:
    """A :class:`~signaling.store.Store` in one SQLite database file."""

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL",
                 log_epochs: int | None = None) -> None:
        if log_epochs is not None and log_epochs < 1:
            raise ValueError("log_epochs must be at least 1 (None keeps every epoch)")
        self._path = str(path)
        self._synchronous = synchronous
        #: epochs of log kept (see Store.append); None: the log is never pruned
        self._log_epochs = log_epochs
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None
        #: Appends waiting for the next group commit, and the task writing them.
        self._appends: list[tuple[str, tuple[AppendRequest, ...], asyncio.Future[list[AppendResult]]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        present = {row[1] for row in db.execute("PRAGMA table_info(rooms)")}
        for column, declaration in _ADDED_ROOM_COLUMNS.items():
            if column not in present:
                db.execute(f"ALTER TABLE rooms ADD COLUMN {column} {declaration}")
        self._db = db

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        if db is None:
            raise RuntimeError("the store is not open")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- groups and the handshake log ------------------------------------------------------

    @staticmethod
    def _room_row(db: sqlite3.Connection, room: str) -> tuple[bytes | None, int | None, int]:
        row = db.execute("SELECT group_id, epoch, last_seq FROM rooms WHERE room = ?", (room,)).fetchone()
        if row is None:
            db.execute("INSERT INTO rooms (room) VALUES (?)", (room,))
            return None, None, 0
        return row

    async def group_state(self, room: str) -> RoomGroup:
        return await self._run(self._group_state, room)

    def _group_state(self, room: str) -> RoomGroup:
        assert self._db is not None
        row = self._db.execute(_ROOM_STATE, (room,)).fetchone()
        return RoomGroup(None, None, 0) if row is None else RoomGroup(*row)

    async def append(self, room: str, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        waiter: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._appends.append((room, tuple(requests), waiter))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._group_commit())
        return await waiter

    async def _group_commit(self) -> None:
        """Write the waiting appends, all rooms in one transaction, until none wait."""
        while self._appends:
            batch, self._appends = self._appends, []
            outcomes: list[list[AppendResult] | Exception]
            try:
                outcomes = await self._run(self._append_rooms, [(room, reqs) for room, reqs, _ in batch])
            except Exception as exc:  # the transaction itself failed: nothing of the batch was written
                outcomes = [exc] * len(batch)
            for (_, _, waiter), outcome in zip(batch, outcomes):
                if waiter.done():  # its caller was cancelled
                    continue
                if isinstance(outcome, Exception):
                    waiter.set_exception(outcome)
                else:
                    waiter.set_result(outcome)

    def _append_rooms(self, batch: list[tuple[str, tuple[AppendRequest, ...]]]
                      ) -> list[list[AppendResult] | Exception]:
        """Each ``(room, requests)`` in order in one transaction; a failing one is undone alone."""
        outcomes: list[list[AppendResult] | Exception] = []
        with self._transaction() as db:
            for room, requests in batch:
                db.execute("SAVEPOINT room_append")
                try:
                    outcomes.append(self._append(db, room, requests))
                except Exception as exc:
                    db.execute("ROLLBACK TO room_append")
                    outcomes.append(exc)
                db.execute("RELEASE room_append")
        return outcomes

    def _append(self, db: sqlite3.Connection, room: str,
                requests: tuple[AppendRequest, ...]) -> list[AppendResult]:
        results: list[AppendResult] = []
        rows: list[LogEntry] = []
        group_id, epoch, seq = self._room_row(db, room)
        public_group: bytes | None = None  # the newest accepted state, written once at the end
        for request in requests:
            if isinstance(request, GroupCreateRequest):
                if group_id is not None:
                    results.append(AppendResult(Outcome.WRONG_GROUP, epoch))
                    continue
                group_id, epoch, public_group = request.group_id, request.epoch, request.public_group
                results.append(AppendResult(Outcome.ACCEPTED, epoch))
                continue
            if isinstance(request, ApplicationRequest):
                entries = [LogEntry(room, seq + 1, EntryKind.APPLICATION, request.sender,
                                    request.epoch, request.ciphertext)]
            elif group_id is not None and group_id != request.group_id:
                results.append(AppendResult(Outcome.WRONG_GROUP, epoch))
                continue
            elif isinstance(request, ProposalRequest):
                if group_id is None:
                    results.append(AppendResult(Outcome.NO_GROUP, None))
                    continue
                if epoch != request.epoch:
                    results.append(AppendResult(Outcome.CONFLICT, epoch))
                    continue
                entries = [LogEntry(room, seq + 1, EntryKind.PROPOSAL, request.sender, epoch,
                                    request.proposal, group_id)]
                public_group = request.public_group or public_group
            else:
                if group_id is None:
                    results.append(AppendResult(Outcome.NO_GROUP, None))
                    continue
                if epoch != request.epoch:
                    results.append(AppendResult(Outcome.CONFLICT, epoch))
                    continue
                epoch = request.epoch + 1
                public_group = request.public_group or public_group
                entries = [LogEntry(room, seq + 1, EntryKind.COMMIT, request.sender, request.epoch,
                                    request.commit, group_id)]
                for welcome in request.welcomes:
                    entries.append(LogEntry(room, entries[-1].seq + 1, EntryKind.WELCOME,
                                            request.sender, epoch, welcome.body, group_id,
                                            welcome.recipient))
            rows.extend(entries)
            seq = entries[-1].seq
            results.append(AppendResult(Outcome.ACCEPTED, epoch, tuple(entries)))
        db.executemany(_INSERT_LOG, [(e.room, e.seq, e.kind.value, e.sender, e.epoch, e.body, e.group_id,
                                      e.recipient) for e in rows])
        db.execute("UPDATE rooms SET group_id = ?, epoch = ?, last_seq = ? WHERE room = ?",
                   (group_id, epoch, seq, room))
        if public_group is not None:
            db.execute("UPDATE rooms SET public_group = ? WHERE room = ?", (public_group, room))
        if self._log_epochs is not None and epoch is not None and any(
                e.kind is EntryKind.COMMIT for e in rows):
            self._prune(db, room, epoch - self._log_epochs - 1)
        return results

    @staticmethod
    def _prune(db: sqlite3.Connection, room: str, cutoff: int) -> None:
        """Delete every entry sequenced before the commit made in epoch ``cutoff``
        (the one that started the oldest epoch kept), after a commit."""
        row = db.execute("SELECT seq FROM log WHERE room = ? AND kind = 'commit' AND epoch = ?",
                         (room, cutoff)).fetchone()
        if row is None:  # not that far yet, or pruned already
            return
        db.execute("DELETE FROM log WHERE room = ? AND seq < ?", (room, row[0]))
        db.execute("UPDATE rooms SET pruned_seq = MAX(pruned_seq, ?), pruned_epoch = ? WHERE room = ?",
                   (row[0] - 1, cutoff, room))

    async def read_log(self, room: str, reader: str, *, after_seq: int = 0,
                       min_epoch: int | None = None) -> list[LogEntry]:
        return await self._run(self._read_log, room, reader, after_seq, min_epoch)

    def _read_log(self, room: str, reader: str, after_seq: int,
                  min_epoch: int | None) -> list[LogEntry]:
        assert self._db is not None
        rows = self._db.execute(
            f"SELECT {_LOG_COLUMNS} FROM log WHERE room = ? AND seq > ? AND epoch >= ?"
            " AND (recipient IS NULL OR recipient = ?)"
            " AND NOT (kind = 'application' AND sender = ?) ORDER BY seq",
            (room, after_seq, -1 if min_epoch is None else min_epoch, reader, reader)).fetchall()
        return [_entry(row) for row in rows]

    async def latest_welcome_seq(self, room: str, recipient: str) -> int | None:
        return await self._run(self._latest_welcome_seq, room, recipient)

    def _latest_welcome_seq(self, room: str, recipient: str) -> int | None:
        assert self._db is not None
        row = self._db.execute("SELECT MAX(seq) FROM log WHERE room = ? AND recipient = ?",
                               (room, recipient)).fetchone()
        return row[0]

    async def public_group(self, room: str) -> bytes | None:
        return await self._run(self._public_group, room)

    def _public_group(self, room: str) -> bytes | None:
        assert self._db is not None
        row = self._db.execute("SELECT public_group FROM rooms WHERE room = ?", (room,)).fetchone()
        return None if row is None else row[0]

    async def reset_group(self, room: str) -> None:
        await self._run(self._reset_group, room)

    def _reset_group(self, room: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM log WHERE room = ?", (room,))
            db.execute("DELETE FROM key_packages WHERE room = ?", (room,))
            db.execute("UPDATE rooms SET group_id = NULL, epoch = NULL, pruned_seq = 0, pruned_epoch = -1,"
                       " public_group = NULL WHERE room = ?", (room,))

    # -- KeyPackage directory --------------------------------------------------------------

    async def publish_key_packages(self, room: str, identity: str,
                                   key_packages: Sequence[bytes], limit: int) -> int | None:
        return await self._run(self._publish_key_packages, room, identity, tuple(key_packages), limit)

    def _publish_key_packages(self, room: str, identity: str, key_packages: tuple[bytes, ...],
                              limit: int) -> int | None:
        with self._transaction() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM key_packages WHERE room = ? AND identity = ?",
                                  (room, identity)).fetchone()
            if count + len(key_packages) > limit:
                return None
            db.executemany("INSERT INTO key_packages (room, identity, body) VALUES (?, ?, ?)",
                           [(room, identity, body) for body in key_packages])
        return count + len(key_packages)

    async def claim_key_package(self, room: str, identity: str) -> bytes | None:
        return await self._run(self._claim_key_package, room, identity)

    def _claim_key_package(self, room: str, identity: str) -> bytes | None:
        with self._transaction() as db:
            row = db.execute(
                "DELETE FROM key_packages WHERE id = (SELECT id FROM key_packages"
                " WHERE room = ? AND identity = ? ORDER BY id LIMIT 1) RETURNING body",
                (room, identity)).fetchone()
        return None if row is None else row[0]
