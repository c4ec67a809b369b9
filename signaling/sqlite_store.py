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

Quotas and pruning (:class:`~signaling.store.LogPolicy`) are checked and done
inside the append's transaction: ``rooms`` keeps each room's log size and the
current epoch's usage, ``log_usage`` each sender's, ``log.at`` when each entry
was appended (by the store's clock). Reads are paged (``read_log`` with a
limit): every statement handed to the store thread is bounded, so one room's
catch-up never holds up another room's appends for longer than one page.

One instance only: the feed (:class:`~signaling.store.FeedItem`) is
in-process, published after each transaction commits in ``seq`` order and
before the appends it wrote return; presence and heartbeats live in memory
(the one instance is alive while the store is open), and so does when each
room was last left empty (a restart reads as everyone having left then),
and each room's SFU state (its Janus room, topology and published feeds).
The identities admitted to each room and the public view's version are in
the database.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .store import (AppendRequest, AppendResult, ApplicationRequest, CommitRequest, EntryKind, FeedItem,
                    GroupCreateRequest, LogEntry, LogPolicy, Outcome, Presence, ProposalRequest,
                    QuotaExceeded, RoomGroup, SfuRoomRecord)

T = TypeVar("T")

logger = logging.getLogger("signaling")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY,
    group_id BLOB,
    epoch INTEGER,
    last_seq INTEGER NOT NULL DEFAULT 0,
    pruned_seq INTEGER NOT NULL DEFAULT 0,
    pruned_epoch INTEGER NOT NULL DEFAULT -1,
    public_group BLOB,
    log_bytes INTEGER NOT NULL DEFAULT 0,
    quota_epoch INTEGER,
    quota_entries INTEGER NOT NULL DEFAULT 0,
    quota_bytes INTEGER NOT NULL DEFAULT 0,
    public_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS admitted (
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    PRIMARY KEY (room, identity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    group_id BLOB,
    recipient TEXT,
    body BLOB NOT NULL,
    at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_usage (
    room TEXT NOT NULL,
    sender TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (room, sender)
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
    "log_bytes": "INTEGER NOT NULL DEFAULT 0",
    "quota_epoch": "INTEGER",
    "quota_entries": "INTEGER NOT NULL DEFAULT 0",
    "quota_bytes": "INTEGER NOT NULL DEFAULT 0",
    "public_version": "INTEGER NOT NULL DEFAULT 0",
}

_ROOM_STATE = ("SELECT group_id, epoch, last_seq, pruned_seq, pruned_epoch, public_version FROM rooms"
               " WHERE room = ?")
_LOG_COLUMNS = "room, seq, kind, sender, epoch, body, group_id, recipient"
_INSERT_LOG = f"INSERT INTO log ({_LOG_COLUMNS}, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: The entries of the log ``reader`` may see (see Store.read_log), after a seq, from an epoch.
_VISIBLE = ("room = ? AND seq > ? AND seq <= ? AND epoch >= ? AND (recipient IS NULL OR recipient = ?)"
            " AND NOT (kind = 'application' AND sender = ?)")
#: Kinds counted by the per-epoch quotas (LogPolicy).
_COUNTED = (ApplicationRequest, ProposalRequest)
_NO_SEQ_LIMIT = 2**63 - 1


def _entry(row: tuple) -> LogEntry:
    room, seq, kind, sender, epoch, body, group_id, recipient = row
    return LogEntry(room, seq, EntryKind(kind), sender, epoch, body, group_id, recipient)


class SQLiteStore:
    """A :class:`~signaling.store.Store` in one SQLite database file."""

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL",
                 policy: LogPolicy = LogPolicy(), clock: Callable[[], float] = time.time) -> None:
        self._path = str(path)
        self._synchronous = synchronous
        #: what each room's log takes and keeps (see Store.append)
        self._policy = policy
        #: seconds (Unix time by default): when entries were appended, for ``policy.max_age``
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None
        #: Appends waiting for the next group commit, and the task writing them.
        self._appends: list[tuple[str, tuple[AppendRequest, ...], str,
                                  asyncio.Future[list[AppendResult]]]] = []
        self._committer: asyncio.Task[None] | None = None
        #: The feed's handler of each subscribed room.
        self._feeds: dict[str, Callable[[FeedItem], None]] = {}
        #: Who is connected to each room (by identity), and since when each room has been empty.
        self._presence: dict[str, dict[str, Presence]] = {}
        self._empty_since: dict[str, float] = {}
        #: Each room's SFU state (one instance: in memory): Janus room, switched rooms, feeds.
        self._sfu_rooms: dict[str, SfuRoomRecord] = {}
        self._sfu_switched: set[str] = set()
        self._sfu_feeds: dict[str, dict[int, str]] = {}

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
        if "log_bytes" not in present:
            db.execute("UPDATE rooms SET log_bytes = (SELECT COALESCE(SUM(length(body)), 0) FROM log"
                       " WHERE log.room = rooms.room)")
        if "at" not in {row[1] for row in db.execute("PRAGMA table_info(log)")}:
            # entries of a database from before age pruning count from now on
            db.execute("ALTER TABLE log ADD COLUMN at REAL NOT NULL DEFAULT 0")
            db.execute("UPDATE log SET at = ?", (self._clock(),))
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
    def _room_row(db: sqlite3.Connection, room: str
                  ) -> tuple[bytes | None, int | None, int, int, int | None, int, int, int]:
        """group_id, epoch, last_seq, log_bytes, the quota usage (its epoch, entries, bytes) and
        the public view's version."""
        row = db.execute("SELECT group_id, epoch, last_seq, log_bytes, quota_epoch, quota_entries,"
                         " quota_bytes, public_version FROM rooms WHERE room = ?", (room,)).fetchone()
        if row is None:
            db.execute("INSERT INTO rooms (room) VALUES (?)", (room,))
            return None, None, 0, 0, None, 0, 0, 0
        return row

    async def group_state(self, room: str) -> RoomGroup:
        return await self._run(self._group_state, room)

    def _group_state(self, room: str) -> RoomGroup:
        assert self._db is not None
        row = self._db.execute(_ROOM_STATE, (room,)).fetchone()
        return RoomGroup(None, None, 0) if row is None else RoomGroup(*row)

    async def append(self, room: str, requests: Sequence[AppendRequest], *,
                     origin: str = "") -> list[AppendResult]:
        waiter: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._appends.append((room, tuple(requests), origin, waiter))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._group_commit())
        return await waiter

    async def _group_commit(self) -> None:
        """Write the waiting appends, all rooms in one transaction, until none wait."""
        while self._appends:
            batch, self._appends = self._appends, []
            outcomes: list[list[AppendResult] | Exception]
            try:
                outcomes = await self._run(self._append_rooms, [(room, reqs) for room, reqs, _, _ in batch])
            except Exception as exc:  # the transaction itself failed: nothing of the batch was written
                outcomes = [exc] * len(batch)
            for (room, _, origin, _), outcome in zip(batch, outcomes):  # committed: publish, in seq order
                if not isinstance(outcome, Exception):
                    for result in outcome:
                        if result.entries:
                            self._publish(room, FeedItem(result.entries, None, origin))
            for (_, _, _, waiter), outcome in zip(batch, outcomes):
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
        (group_id, epoch, seq, log_bytes, quota_epoch, quota_entries, quota_bytes,
         version) = self._room_row(db, room)
        usage = _EpochUsage(db, room, -1 if epoch is None else epoch)
        if quota_epoch == usage.epoch:
            usage.room = [quota_entries, quota_bytes]
        public_group: bytes | None = None  # the newest accepted state, written once at the end
        committed = False
        for request in requests:
            if isinstance(request, GroupCreateRequest):
                if group_id is not None:
                    results.append(AppendResult(Outcome.WRONG_GROUP, epoch))
                    continue
                group_id, epoch, public_group = request.group_id, request.epoch, request.public_group
                if public_group is not None:
                    version += 1
                usage = _EpochUsage(db, room, epoch)
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
                if request.public_version is not None and request.public_version != version:
                    results.append(AppendResult(Outcome.STALE_VIEW, epoch))
                    continue
                entries = [LogEntry(room, seq + 1, EntryKind.PROPOSAL, request.sender, epoch,
                                    request.proposal, group_id)]
            else:
                if group_id is None:
                    results.append(AppendResult(Outcome.NO_GROUP, None))
                    continue
                if epoch != request.epoch:
                    results.append(AppendResult(Outcome.CONFLICT, epoch))
                    continue
                if request.public_version is not None and request.public_version != version:
                    results.append(AppendResult(Outcome.STALE_VIEW, epoch))
                    continue
                epoch, committed = request.epoch + 1, True
                usage = _EpochUsage(db, room, epoch)  # a new epoch: fresh quotas
                entries = [LogEntry(room, seq + 1, EntryKind.COMMIT, request.sender, request.epoch,
                                    request.commit, group_id)]
                for welcome in request.welcomes:
                    entries.append(LogEntry(room, entries[-1].seq + 1, EntryKind.WELCOME,
                                            request.sender, epoch, welcome.body, group_id,
                                            welcome.recipient))
            if isinstance(request, _COUNTED):
                exceeded = usage.charge(self._policy, request.sender, len(entries[0].body))
                if exceeded is not None:
                    results.append(AppendResult(Outcome.QUOTA_EXCEEDED, epoch, quota=exceeded))
                    continue
            if isinstance(request, (ProposalRequest, CommitRequest)) and request.public_group is not None:
                public_group = request.public_group
                version += 1
            rows.extend(entries)
            seq = entries[-1].seq
            results.append(AppendResult(Outcome.ACCEPTED, epoch, tuple(entries)))
        now = self._clock()
        db.executemany(_INSERT_LOG, [(e.room, e.seq, e.kind.value, e.sender, e.epoch, e.body, e.group_id,
                                      e.recipient, now) for e in rows])
        log_bytes += sum(len(e.body) for e in rows)
        usage.write()
        db.execute("UPDATE rooms SET group_id = ?, epoch = ?, last_seq = ? WHERE room = ?",
                   (group_id, epoch, seq, room))
        if public_group is not None:
            db.execute("UPDATE rooms SET public_group = ?, public_version = ? WHERE room = ?",
                       (public_group, version, room))
        if self._policy.epochs is not None and epoch is not None and committed:
            log_bytes -= self._prune_epochs(db, room, epoch - self._policy.epochs - 1)
        if rows:
            log_bytes -= self._prune_size_and_age(db, room, epoch, log_bytes, now, rows[0].seq)
        db.execute("UPDATE rooms SET log_bytes = ? WHERE room = ?", (log_bytes, room))
        return results

    @staticmethod
    def _prune_epochs(db: sqlite3.Connection, room: str, cutoff: int) -> int:
        """Delete every entry sequenced before the commit made in epoch ``cutoff``
        (the one that started the oldest epoch kept), after a commit; the bytes freed."""
        row = db.execute("SELECT seq FROM log WHERE room = ? AND kind = 'commit' AND epoch = ?",
                         (room, cutoff)).fetchone()
        if row is None:  # not that far yet, or pruned already
            return 0
        (freed,) = db.execute("SELECT COALESCE(SUM(length(body)), 0) FROM log WHERE room = ? AND seq < ?",
                              (room, row[0])).fetchone()
        db.execute("DELETE FROM log WHERE room = ? AND seq < ?", (room, row[0]))
        db.execute("UPDATE rooms SET pruned_seq = MAX(pruned_seq, ?), pruned_epoch = MAX(pruned_epoch, ?)"
                   " WHERE room = ?", (row[0] - 1, cutoff, room))
        return freed

    def _prune_size_and_age(self, db: sqlite3.Connection, room: str, epoch: int | None,
                            log_bytes: int, now: float, appended: int) -> int:
        """Delete the oldest entries while the log holds more than ``policy.max_bytes`` or they
        are older than ``policy.max_age``, sparing what a newcomer needs to join (the commit
        that started the current epoch, the epoch's Welcomes and proposals) and the entries
        this append wrote (from seq ``appended`` on); the bytes freed."""
        policy = self._policy
        excess = 0 if policy.max_bytes is None else log_bytes - policy.max_bytes
        threshold = None if policy.max_age is None else now - policy.max_age
        oldest = db.execute("SELECT at FROM log WHERE room = ? ORDER BY seq LIMIT 1", (room,)).fetchone()
        if oldest is None or (excess <= 0 and (threshold is None or oldest[0] >= threshold)):
            return 0
        # From the commit that started the current epoch on, only application messages may go.
        started = None if epoch is None else db.execute(
            "SELECT seq FROM log WHERE room = ? AND kind = 'commit' AND epoch = ?",
            (room, epoch - 1)).fetchone()
        spared_from = 0 if started is None else started[0]
        freed, cutoff, newest_epoch = 0, 0, -1
        rows = db.execute("SELECT seq, kind, epoch, at, length(body) FROM log WHERE room = ? ORDER BY seq",
                          (room,))
        for entry_seq, kind, entry_epoch, at, size in rows:
            if entry_seq >= appended or (freed >= excess and (threshold is None or at >= threshold)):
                break
            if entry_seq < spared_from or kind == EntryKind.APPLICATION.value:
                freed, cutoff = freed + size, entry_seq
                newest_epoch = max(newest_epoch, entry_epoch)
        rows.close()
        if cutoff == 0:
            return 0
        db.execute("DELETE FROM log WHERE room = ? AND seq <= ? AND (seq < ? OR kind = 'application')",
                   (room, cutoff, spared_from))
        # an application message's epoch is its sender's word: never count one beyond the group's
        pruned_epoch = newest_epoch if epoch is None else min(newest_epoch, epoch)
        db.execute("UPDATE rooms SET pruned_seq = MAX(pruned_seq, ?), pruned_epoch = MAX(pruned_epoch, ?)"
                   " WHERE room = ?", (cutoff, pruned_epoch, room))
        return freed

    async def read_log(self, room: str, reader: str, *, after_seq: int = 0,
                       min_epoch: int | None = None, up_to_seq: int | None = None,
                       limit: int | None = None, max_bytes: int | None = None) -> list[LogEntry]:
        return await self._run(self._read_log, room, reader, after_seq, min_epoch, up_to_seq, limit,
                               max_bytes)

    def _read_log(self, room: str, reader: str, after_seq: int, min_epoch: int | None,
                  up_to_seq: int | None, limit: int | None, max_bytes: int | None) -> list[LogEntry]:
        assert self._db is not None
        rows = self._db.execute(
            f"SELECT {_LOG_COLUMNS} FROM log WHERE {_VISIBLE} ORDER BY seq LIMIT ?",
            (room, after_seq, _NO_SEQ_LIMIT if up_to_seq is None else up_to_seq,
             -1 if min_epoch is None else min_epoch, reader, reader, -1 if limit is None else limit))
        entries: list[LogEntry] = []
        size = 0
        for row in rows:  # fetched one at a time: a page stops at max_bytes without reading further
            entries.append(_entry(row))
            size += len(row[5])
            if max_bytes is not None and size >= max_bytes:
                break
        rows.close()
        return entries

    async def count_log(self, room: str, reader: str, *, after_seq: int, up_to_seq: int,
                        min_epoch: int | None = None) -> int:
        return await self._run(self._count_log, room, reader, after_seq, up_to_seq, min_epoch)

    def _count_log(self, room: str, reader: str, after_seq: int, up_to_seq: int,
                   min_epoch: int | None) -> int:
        assert self._db is not None
        (count,) = self._db.execute(
            f"SELECT COUNT(*) FROM log WHERE {_VISIBLE}",
            (room, after_seq, up_to_seq, -1 if min_epoch is None else min_epoch, reader, reader)).fetchone()
        return count

    async def latest_welcome_seq(self, room: str, recipient: str) -> int | None:
        return await self._run(self._latest_welcome_seq, room, recipient)

    def _latest_welcome_seq(self, room: str, recipient: str) -> int | None:
        assert self._db is not None
        row = self._db.execute("SELECT MAX(seq) FROM log WHERE room = ? AND recipient = ?",
                               (room, recipient)).fetchone()
        return row[0]

    async def public_group(self, room: str) -> tuple[bytes, int] | None:
        return await self._run(self._public_group, room)

    def _public_group(self, room: str) -> tuple[bytes, int] | None:
        assert self._db is not None
        row = self._db.execute("SELECT public_group, public_version FROM rooms WHERE room = ?",
                               (room,)).fetchone()
        return None if row is None or row[0] is None else (row[0], row[1])

    async def read_entries(self, room: str, *, after_seq: int, up_to_seq: int | None = None,
                           limit: int | None = None) -> list[LogEntry]:
        return await self._run(self._read_entries, room, after_seq, up_to_seq, limit)

    def _read_entries(self, room: str, after_seq: int, up_to_seq: int | None,
                      limit: int | None) -> list[LogEntry]:
        assert self._db is not None
        rows = self._db.execute(
            f"SELECT {_LOG_COLUMNS} FROM log WHERE room = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (room, after_seq, _NO_SEQ_LIMIT if up_to_seq is None else up_to_seq,
             -1 if limit is None else limit)).fetchall()
        return [_entry(row) for row in rows]

    async def reset_group(self, room: str) -> None:
        await self._run(self._reset_group, room)

    def _reset_group(self, room: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM log WHERE room = ?", (room,))
            db.execute("DELETE FROM key_packages WHERE room = ?", (room,))
            db.execute("DELETE FROM log_usage WHERE room = ?", (room,))
            db.execute("DELETE FROM admitted WHERE room = ?", (room,))
            db.execute("UPDATE rooms SET group_id = NULL, epoch = NULL, pruned_seq = 0, pruned_epoch = -1,"
                       " public_group = NULL, public_version = public_version + 1, log_bytes = 0,"
                       " quota_epoch = NULL, quota_entries = 0, quota_bytes = 0 WHERE room = ?", (room,))

    # -- the feed (in-process: this store serves one instance) ------------------------------

    def _publish(self, room: str, item: FeedItem) -> None:
        handler = self._feeds.get(room)
        if handler is None:
            return
        try:
            handler(item)
        except Exception:
            logger.exception("feed handler of room %s failed", room)

    async def subscribe(self, room: str, handler: Callable[[FeedItem], None]) -> None:
        self._feeds[room] = handler

    async def unsubscribe(self, room: str) -> None:
        self._feeds.pop(room, None)

    async def signal(self, room: str, message: dict[str, Any], origin: str) -> None:
        self._publish(room, FeedItem((), message, origin))

    # -- admission and presence --------------------------------------------------------------

    async def admit(self, room: str, identity: str) -> None:
        await self._run(self._admit, room, identity)

    def _admit(self, room: str, identity: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO admitted (room, identity) VALUES (?, ?)", (room, identity))

    async def admitted(self, room: str) -> frozenset[str]:
        return await self._run(self._admitted, room)

    def _admitted(self, room: str) -> frozenset[str]:
        assert self._db is not None
        return frozenset(row[0] for row in self._db.execute(
            "SELECT identity FROM admitted WHERE room = ?", (room,)))

    async def set_presence(self, room: str, identity: str, instance: str, waiting: bool) -> None:
        self._presence.setdefault(room, {})[identity] = Presence(instance, waiting)

    async def drop_presence(self, room: str, identity: str, instance: str) -> None:
        present = self._presence.get(room)
        if present is not None and identity in present and present[identity].instance == instance:
            del present[identity]
            if not present:
                del self._presence[room]

    async def presence(self, room: str) -> dict[str, Presence]:
        return dict(self._presence.get(room, {}))

    async def sweep_presence(self, room: str) -> list[str]:
        """Nothing to drop: the one instance of this store is alive while the store is open."""
        return []

    async def heartbeat(self, instance: str, ttl: float) -> None:
        """Nothing to note: the one instance of this store is alive while the store is open."""

    async def empty_since(self, room: str) -> float | None:
        return self._empty_since.get(room)

    async def set_empty_since(self, room: str, when: float | None) -> None:
        if when is None:
            self._empty_since.pop(room, None)
        else:
            self._empty_since[room] = when

    # -- the room's SFU state ------------------------------------------------------------------

    async def sfu_room(self, room: str) -> SfuRoomRecord | None:
        return self._sfu_rooms.get(room)

    async def claim_sfu_room(self, room: str, record: SfuRoomRecord) -> SfuRoomRecord:
        held = self._sfu_rooms.get(room)
        if held is None or held.generation < record.generation:
            self._sfu_rooms[room] = held = record
            self._sfu_feeds.pop(room, None)
        return held

    async def switch_to_sfu(self, room: str) -> bool:
        if room in self._sfu_switched:
            return False
        self._sfu_switched.add(room)
        return True

    async def sfu_switched(self, room: str) -> bool:
        return room in self._sfu_switched

    async def set_sfu_feed(self, room: str, feed: int, identity: str) -> None:
        self._sfu_feeds.setdefault(room, {})[feed] = identity

    async def drop_sfu_feed(self, room: str, feed: int) -> bool:
        return self._sfu_feeds.get(room, {}).pop(feed, None) is not None

    async def sfu_feeds(self, room: str) -> dict[int, str]:
        return dict(self._sfu_feeds.get(room, {}))

    async def clear_sfu(self, room: str) -> None:
        self._sfu_rooms.pop(room, None)
        self._sfu_switched.discard(room)
        self._sfu_feeds.pop(room, None)

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


class _EpochUsage:
    """What a room and each of its senders wrote in one epoch (the quotas of LogPolicy),
    read from the database as needed and written back in the append's transaction."""

    def __init__(self, db: sqlite3.Connection, room: str, epoch: int) -> None:
        self._db, self._room, self.epoch = db, room, epoch
        #: the room's [entries, bytes] this epoch
        self.room = [0, 0]
        #: each sender's [entries, bytes] this epoch, for those read so far
        self._senders: dict[str, list[int]] = {}

    def _sender(self, sender: str) -> list[int]:
        usage = self._senders.get(sender)
        if usage is None:
            row = self._db.execute("SELECT epoch, entries, bytes FROM log_usage WHERE room = ? AND sender = ?",
                                   (self._room, sender)).fetchone()
            usage = self._senders[sender] = [0, 0] if row is None or row[0] != self.epoch else [row[1], row[2]]
        return usage

    def charge(self, policy: LogPolicy, sender: str, size: int) -> QuotaExceeded | None:
        """Count one entry of ``size`` bytes from ``sender``, or the quota it would exceed."""
        mine = self._sender(sender)
        for scope, usage, entries, limit_bytes in (("sender", mine, policy.sender_entries, policy.sender_bytes),
                                                   ("room", self.room, policy.room_entries, policy.room_bytes)):
            if entries is not None and usage[0] + 1 > entries:
                return QuotaExceeded(scope, "entries", entries)
            if limit_bytes is not None and usage[1] + size > limit_bytes:
                return QuotaExceeded(scope, "bytes", limit_bytes)
        for usage in (mine, self.room):
            usage[0] += 1
            usage[1] += size
        return None

    def write(self) -> None:
        self._db.execute("UPDATE rooms SET quota_epoch = ?, quota_entries = ?, quota_bytes = ? WHERE room = ?",
                         (self.epoch, *self.room, self._room))
        self._db.executemany(
            "INSERT OR REPLACE INTO log_usage (room, sender, epoch, entries, bytes) VALUES (?, ?, ?, ?, ?)",
            [(self._room, sender, self.epoch, *usage) for sender, usage in self._senders.items()])
