"""What only the SQLite store does: its in-process feed (every append's FeedItem published before
``append`` returns) and the upgrade of databases written by earlier versions.

The store contract both stores keep (group creation, epoch compare-and-set, the PublicGroup
state written with the handshake that produced it, log reads, quotas, pruning, KeyPackages,
presence, reopen) runs for SQLite and Redis in ``tests/signaling/test_redis_store.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.sqlite_store import SQLiteStore
from signaling.store import (AppendResult, ApplicationRequest, CommitRequest, FeedItem, GroupCreateRequest,
                             LogPolicy, WelcomeRecord)

GROUP = b"group-1"


async def create(store: SQLiteStore, room: str, epoch: int = 0, group_id: bytes = GROUP,
                 public: bytes | None = b"public@create") -> AppendResult:
    (result,) = await store.append(room, [GroupCreateRequest("alice", group_id, epoch, public)])
    return result


async def commit(store: SQLiteStore, room: str, sender: str, group_id: bytes, epoch: int, body: bytes,
                 welcomes: tuple[WelcomeRecord, ...] = (), public: bytes | None = None) -> AppendResult:
    (result,) = await store.append(room, [CommitRequest(sender, group_id, epoch, body, welcomes, public)])
    return result


async def send(store: SQLiteStore, room: str, sender: str, epoch: int, body: bytes) -> AppendResult:
    (result,) = await store.append(room, [ApplicationRequest(sender, epoch, body)])
    return result


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "store.db")
    await s.open()
    yield s
    await s.close()


async def test_the_feed_carries_each_append_in_seq_order_before_it_returns(store: SQLiteStore) -> None:
    seen: list[FeedItem] = []
    await store.subscribe("r", seen.append)
    await create(store, "r")
    assert seen == []  # a group creation logs nothing
    results = await asyncio.gather(
        store.append("r", [CommitRequest("alice", GROUP, 0, b"c0", (WelcomeRecord("bob", b"w"),))],
                     origin="one"),
        store.append("r", [ApplicationRequest("alice", 1, b"m1"), ApplicationRequest("alice", 1, b"m2")],
                     origin="two"),
        store.append("other", [ApplicationRequest("x", 0, b"elsewhere")], origin="one"))
    assert [[e.seq for e in item.entries] for item in seen] == [[1, 2], [3], [4]]
    assert [item.origin for item in seen] == ["one", "two", "two"]
    assert [e.body for item in seen for e in item.entries] == [b"c0", b"w", b"m1", b"m2"]
    assert tuple(seen[0].entries) == results[0][0].entries
    await store.signal("r", {"type": "presence"}, "one")
    assert seen[-1] == FeedItem((), {"type": "presence"}, "one")
    await store.unsubscribe("r")
    await send(store, "r", "alice", 1, b"m3")
    assert len(seen) == 4
    # every entry, whoever may read it (the Welcome, alice's own messages)
    assert [e.seq for e in await store.read_entries("r", after_seq=1)] == [2, 3, 4, 5]
    assert [e.seq for e in await store.read_entries("r", after_seq=1, up_to_seq=3)] == [2, 3]
    assert [e.seq for e in await store.read_entries("r", after_seq=0, limit=2)] == [1, 2]


async def test_a_database_from_before_pruning_gets_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE rooms (room TEXT PRIMARY KEY, group_id BLOB, epoch INTEGER,"
               " last_seq INTEGER NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO rooms (room, group_id, epoch, last_seq) VALUES ('r', ?, 4, 9)", (GROUP,))
    db.commit()
    db.close()
    store = SQLiteStore(path, policy=LogPolicy(epochs=1))
    await store.open()
    try:
        state = await store.group_state("r")
        assert (state.group_id, state.epoch, state.last_seq, state.pruned_seq, state.pruned_epoch) == (
            GROUP, 4, 9, 0, -1)
        assert (await commit(store, "r", "alice", GROUP, 4, b"c4")).entries[0].seq == 10
    finally:
        await store.close()


async def test_a_database_from_before_quotas_gets_its_log_sizes_and_dates(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "older.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE rooms (room TEXT PRIMARY KEY, group_id BLOB, epoch INTEGER,"
               " last_seq INTEGER NOT NULL DEFAULT 0)")
    db.execute("CREATE TABLE log (room TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,"
               " sender TEXT NOT NULL, epoch INTEGER NOT NULL, group_id BLOB, recipient TEXT,"
               " body BLOB NOT NULL, PRIMARY KEY (room, seq)) WITHOUT ROWID")
    db.execute("INSERT INTO rooms (room, group_id, epoch, last_seq) VALUES ('r', ?, 0, 2)", (GROUP,))
    db.executemany("INSERT INTO log (room, seq, kind, sender, epoch, body) VALUES ('r', ?, 'application',"
                   " 'bob', 0, ?)", [(1, bytes(600)), (2, bytes(300))])
    db.commit()
    db.close()
    now = [5000.0]
    store = SQLiteStore(path, policy=LogPolicy(max_bytes=1000, max_age=100.0), clock=lambda: now[0])
    await store.open()
    try:
        now[0] += 50  # the old entries count from the upgrade: not too old yet
        await send(store, "r", "bob", 0, bytes(200))  # 1100 bytes: the oldest goes, by its size
        assert [e.seq for e in await store.read_log("r", "carol")] == [2, 3]
        assert (await store.group_state("r")).pruned_seq == 1
    finally:
        await store.close()
