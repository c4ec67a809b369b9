"""The SQLite delivery-service store: group creation, epoch compare-and-set, the PublicGroup state
written with the handshake that produced it, log reads, KeyPackages, reopen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.sqlite_store import SQLiteStore
from signaling.store import (AppendResult, ApplicationRequest, CommitRequest, EntryKind, FeedItem,
                             GroupCreateRequest, LogPolicy, Outcome, Presence, ProposalRequest, QuotaExceeded,
                             WelcomeRecord)

GROUP = b"group-1"


async def create(store: SQLiteStore, room: str, epoch: int = 0, group_id: bytes = GROUP,
                 public: bytes | None = b"public@create") -> AppendResult:
    (result,) = await store.append(room, [GroupCreateRequest("alice", group_id, epoch, public)])
    return result


async def commit(store: SQLiteStore, room: str, sender: str, group_id: bytes, epoch: int, body: bytes,
                 welcomes: tuple[WelcomeRecord, ...] = (), public: bytes | None = None) -> AppendResult:
    (result,) = await store.append(room, [CommitRequest(sender, group_id, epoch, body, welcomes, public)])
    return result


async def propose(store: SQLiteStore, room: str, epoch: int) -> AppendResult:
    (result,) = await store.append(room, [ProposalRequest("a", GROUP, epoch, b"p")])
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


async def test_group_creation_then_commits_with_compare_and_set(store: SQLiteStore) -> None:
    early = await commit(store, "r", "alice", GROUP, 3, b"c3")
    assert (early.outcome, early.entries) == (Outcome.NO_GROUP, ())  # its creator registers it first
    created = await create(store, "r", 3)
    assert (created.outcome, created.epoch, created.entries) == (Outcome.ACCEPTED, 3, ())
    assert await store.public_group("r") == (b"public@create", 1)
    other = await create(store, "r", 0, b"mallory's group", b"public@mallory")
    assert (other.outcome, other.epoch) == (Outcome.WRONG_GROUP, 3)
    assert await store.public_group("r") == (b"public@create", 1)
    first = await commit(store, "r", "alice", GROUP, 3, b"c3", (WelcomeRecord("bob", b"w"),))
    assert first.outcome is Outcome.ACCEPTED and first.epoch == 4
    assert [(e.seq, e.kind, e.epoch, e.recipient) for e in first.entries] == [
        (1, EntryKind.COMMIT, 3, None), (2, EntryKind.WELCOME, 4, "bob")]
    again = await commit(store, "r", "bob", GROUP, 3, b"other")
    assert (again.outcome, again.epoch, again.entries) == (Outcome.CONFLICT, 4, ())
    future = await commit(store, "r", "bob", GROUP, 9, b"other")
    assert (future.outcome, future.epoch) == (Outcome.CONFLICT, 4)
    wrong = await commit(store, "r", "bob", b"another", 4, b"x")
    assert wrong.outcome is Outcome.WRONG_GROUP
    state = await store.group_state("r")
    assert (state.group_id, state.epoch, state.last_seq) == (GROUP, 4, 2)


async def test_the_public_group_moves_only_with_an_accepted_handshake(store: SQLiteStore) -> None:
    await create(store, "r")
    assert (await commit(store, "r", "alice", GROUP, 0, b"c0", public=b"public@1")).outcome is Outcome.ACCEPTED
    assert await store.public_group("r") == (b"public@1", 2)
    assert (await commit(store, "r", "bob", GROUP, 0, b"late", public=b"public@late")).outcome is Outcome.CONFLICT
    (wrong,) = await store.append("r", [ProposalRequest("bob", b"other", 1, b"p", b"public@other")])
    assert wrong.outcome is Outcome.WRONG_GROUP
    assert await store.public_group("r") == (b"public@1", 2)
    (proposal,) = await store.append("r", [ProposalRequest("bob", GROUP, 1, b"p", b"public@1+p")])
    assert proposal.outcome is Outcome.ACCEPTED and await store.public_group("r") == (b"public@1+p", 3)
    # several in one transaction: the state of the last accepted one is what stays
    results = await store.append("r", [CommitRequest("alice", GROUP, 1, b"c1", (), b"public@2"),
                                       CommitRequest("bob", GROUP, 1, b"loser", (), b"public@loser"),
                                       ApplicationRequest("alice", 2, b"m")])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.CONFLICT, Outcome.ACCEPTED]
    assert await store.public_group("r") == (b"public@2", 4)
    assert await store.public_group("elsewhere") is None
    await store.reset_group("r")
    assert await store.public_group("r") is None and (await store.group_state("r")).public_version == 5
    assert (await create(store, "r", 0, b"new")).epoch == 0
    assert await store.public_group("r") == (b"public@create", 6)


async def test_a_handshake_derived_from_an_older_view_is_stale(store: SQLiteStore) -> None:
    await create(store, "r")  # version 1
    (first,) = await store.append("r", [ProposalRequest("bob", GROUP, 0, b"p1", b"public+p1", 1)])
    assert first.outcome is Outcome.ACCEPTED and await store.public_group("r") == (b"public+p1", 2)
    # derived from version 1 too (another instance's view before p1): refused, nothing written
    (stale,) = await store.append("r", [ProposalRequest("carol", GROUP, 0, b"p2", b"public+p2", 1)])
    assert (stale.outcome, stale.entries) == (Outcome.STALE_VIEW, ())
    stale_commit = await store.append("r", [CommitRequest("carol", GROUP, 0, b"c", (), b"public@1", 1)])
    assert stale_commit[0].outcome is Outcome.STALE_VIEW
    assert await store.public_group("r") == (b"public+p1", 2)
    assert (await store.group_state("r")).last_seq == 1
    # a wrong epoch is a conflict first, whatever the version
    (late,) = await store.append("r", [CommitRequest("carol", GROUP, 5, b"c", (), b"x", 1)])
    assert late.outcome is Outcome.CONFLICT
    # one call: each request carries the version its predecessor's view left
    results = await store.append("r", [ProposalRequest("carol", GROUP, 0, b"p2", b"public+p1+p2", 2),
                                       CommitRequest("bob", GROUP, 0, b"c0", (), b"public@1", 3)])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert await store.public_group("r") == (b"public@1", 4)


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


async def test_admitted_identities_last_until_the_group_is_reset(tmp_path: Path) -> None:
    path = tmp_path / "admitted.db"
    s = SQLiteStore(path)
    await s.open()
    await s.admit("r", "alice")
    await s.admit("r", "bob")
    await s.admit("r", "alice")
    await s.admit("other", "carol")
    await s.close()
    s = SQLiteStore(path)
    await s.open()
    try:
        assert await s.admitted("r") == frozenset({"alice", "bob"})
        await s.reset_group("r")
        assert await s.admitted("r") == frozenset() and await s.admitted("other") == frozenset({"carol"})
    finally:
        await s.close()


async def test_presence_is_dropped_only_by_the_instance_holding_it(store: SQLiteStore) -> None:
    await store.heartbeat("a", 5.0)
    await store.set_presence("r", "alice", "a", False)
    await store.set_presence("r", "bob", "a", True)
    assert await store.presence("r") == {"alice": Presence("a", False), "bob": Presence("a", True)}
    await store.set_presence("r", "alice", "b", False)  # a newer connection elsewhere
    await store.drop_presence("r", "alice", "a")  # the older one leaving takes nothing away
    assert (await store.presence("r"))["alice"] == Presence("b", False)
    await store.drop_presence("r", "alice", "b")
    assert await store.presence("r") == {"bob": Presence("a", True)} and await store.presence("x") == {}
    assert await store.empty_since("r") is None
    await store.set_empty_since("r", 12.5)
    assert await store.empty_since("r") == 12.5
    await store.set_empty_since("r", None)
    assert await store.empty_since("r") is None


async def test_concurrent_commits_one_winner(store: SQLiteStore) -> None:
    await create(store, "r")
    await commit(store, "r", "alice", GROUP, 0, b"c0")
    results = await asyncio.gather(*(commit(store, "r", f"m{i}", GROUP, 1, b"c")
                                     for i in range(10)))
    assert sum(r.outcome is Outcome.ACCEPTED for r in results) == 1
    assert all(r.epoch == 2 for r in results)


async def test_proposals_need_the_current_epoch(store: SQLiteStore) -> None:
    assert (await propose(store, "r", 0)).outcome is Outcome.NO_GROUP
    await create(store, "r")
    await commit(store, "r", "a", GROUP, 0, b"c0")
    assert (await propose(store, "r", 0)).outcome is Outcome.CONFLICT
    accepted = await propose(store, "r", 1)
    assert accepted.outcome is Outcome.ACCEPTED and accepted.entries[0].seq == 2


async def test_a_batch_applies_in_order_in_one_transaction(store: SQLiteStore) -> None:
    results = await store.append("r", [
        ApplicationRequest("alice", 0, b"m0"),
        ProposalRequest("alice", GROUP, 0, b"too-early"),
        GroupCreateRequest("alice", GROUP, 0, b"public@0"),
        CommitRequest("alice", GROUP, 0, b"c0"),
        CommitRequest("bob", GROUP, 0, b"loser"),
        ProposalRequest("bob", GROUP, 1, b"p1"),
        CommitRequest("bob", b"other-group", 1, b"x"),
        CommitRequest("bob", GROUP, 1, b"c1", (WelcomeRecord("carol", b"w"),)),
        ApplicationRequest("bob", 2, b"m2"),
    ])
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED, Outcome.NO_GROUP, Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.CONFLICT,
        Outcome.ACCEPTED, Outcome.WRONG_GROUP, Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert [r.epoch for r in results] == [None, None, 0, 1, 1, 1, 1, 2, 2]
    assert [e.seq for r in results for e in r.entries] == [1, 2, 3, 4, 5, 6]
    assert [e.body for e in await store.read_log("r", "carol")] == [b"m0", b"c0", b"p1", b"c1", b"w", b"m2"]
    state = await store.group_state("r")
    assert (state.group_id, state.epoch, state.last_seq) == (GROUP, 2, 6)


async def test_read_log_filters(store: SQLiteStore) -> None:
    await create(store, "r")
    await commit(store, "r", "alice", GROUP, 0, b"c0", (WelcomeRecord("bob", b"w-bob"),
                                                         WelcomeRecord("carol", b"w-carol")))
    await send(store, "r", "alice", 1, b"m1")
    await send(store, "r", "bob", 1, b"m2")
    await commit(store, "r", "bob", GROUP, 1, b"c1")
    await send(store, "r", "other-room-check", 2, b"m3")
    await send(store, "elsewhere", "alice", 0, b"x")
    bob = await store.read_log("r", "bob")
    assert [e.body for e in bob] == [b"c0", b"w-bob", b"m1", b"c1", b"m3"]
    assert [e.seq for e in bob] == sorted(e.seq for e in bob)
    assert [e.body for e in await store.read_log("r", "bob", after_seq=4)] == [b"c1", b"m3"]
    assert [e.body for e in await store.read_log("r", "carol", min_epoch=2)] == [b"m3"]
    assert await store.latest_welcome_seq("r", "carol") == 3
    assert await store.latest_welcome_seq("r", "dave") is None


async def test_key_packages_claimed_once_in_order(store: SQLiteStore) -> None:
    assert await store.publish_key_packages("r", "bob", [b"k1", b"k2", b"k3"], limit=4) == 3
    assert await store.publish_key_packages("r", "bob", [b"k4", b"k5"], limit=4) is None
    assert await store.claim_key_package("r2", "bob") is None
    claims = await asyncio.gather(*(store.claim_key_package("r", "bob") for _ in range(5)))
    assert sorted(c for c in claims if c is not None) == [b"k1", b"k2", b"k3"]
    assert claims.count(None) == 2


async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "reopen.db"
    s = SQLiteStore(path, synchronous="FULL")
    await s.open()
    await create(s, "r")
    await commit(s, "r", "alice", GROUP, 0, b"c0", public=b"public@1")
    await send(s, "r", "alice", 1, b"m")
    await s.publish_key_packages("r", "bob", [b"k"], limit=8)
    await s.close()
    s = SQLiteStore(path)
    await s.open()
    try:
        assert (await s.group_state("r")).epoch == 1 and await s.public_group("r") == (b"public@1", 2)
        assert [e.body for e in await s.read_log("r", "bob")] == [b"c0", b"m"]
        assert await s.claim_key_package("r", "bob") == b"k"
        assert (await commit(s, "r", "bob", GROUP, 0, b"late")).outcome is Outcome.CONFLICT
    finally:
        await s.close()


async def test_a_store_keeping_n_epochs_prunes_what_came_before(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "pruned.db", policy=LogPolicy(epochs=2))
    await store.open()
    try:
        seqs = {}
        await create(store, "r")
        for epoch in range(6):  # epoch e: a message, then the commit moving to e + 1
            await send(store, "r", "bob", epoch, b"m%d" % epoch)
            seqs[epoch] = (await commit(store, "r", "alice", GROUP, epoch, b"c%d" % epoch)).entries[0].seq
            state = await store.group_state("r")
            kept = await store.read_log("r", "carol")
            if epoch < 2:  # the group is at epoch 1 or 2: nothing is older than 2 epochs
                assert state.pruned_seq == 0 and state.pruned_epoch == -1 and kept[0].seq == 1
                continue
            # at epoch e + 1, the log starts with the commit that started epoch e + 1 - 2
            assert (state.pruned_seq, state.pruned_epoch) == (seqs[epoch - 2] - 1, epoch - 2)
            assert kept[0].seq == seqs[epoch - 2] and kept[0].kind is EntryKind.COMMIT
            assert {e.epoch for e in kept} == {epoch - 2, epoch - 1, epoch}
        await send(store, "r", "bob", 6, b"m6")  # a message changes nothing
        assert (await store.group_state("r")).pruned_seq == seqs[3] - 1
        await store.reset_group("r")
        state = await store.group_state("r")
        assert (state.group_id, state.pruned_seq, state.pruned_epoch) == (None, 0, -1)
    finally:
        await store.close()
    with pytest.raises(ValueError):
        LogPolicy(epochs=0)


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


async def test_read_log_pages_and_counts(store: SQLiteStore) -> None:
    await create(store, "r")
    for i in range(10):
        await send(store, "r", "bob", 0, bytes(100 * (i + 1)))
    await send(store, "r", "carol", 0, b"mine")
    assert await store.count_log("r", "carol", after_seq=0, up_to_seq=11) == 10
    assert await store.count_log("r", "carol", after_seq=3, up_to_seq=7) == 4
    page = await store.read_log("r", "carol", limit=4)
    assert [e.seq for e in page] == [1, 2, 3, 4]
    page = await store.read_log("r", "carol", after_seq=4, max_bytes=1100)  # 500 + 600 bytes
    assert [e.seq for e in page] == [5, 6]
    page = await store.read_log("r", "carol", after_seq=6, up_to_seq=8, limit=10)
    assert [e.seq for e in page] == [7, 8]
    assert [e.seq for e in await store.read_log("r", "carol", after_seq=10)] == []  # her own message


async def test_quotas_count_application_messages_and_proposals_per_epoch(tmp_path: Path) -> None:
    policy = LogPolicy(sender_entries=2, sender_bytes=None, room_entries=3, room_bytes=10)
    store = SQLiteStore(tmp_path / "quota.db", policy=policy)
    await store.open()
    try:
        await create(store, "r")
        assert (await send(store, "r", "bob", 0, b"12345")).outcome is Outcome.ACCEPTED
        over = await send(store, "r", "carol", 0, b"123456")
        assert (over.outcome, over.quota) == (Outcome.QUOTA_EXCEEDED, QuotaExceeded("room", "bytes", 10))
        assert (await propose(store, "r", 0)).outcome is Outcome.ACCEPTED  # sender "a", 1 byte
        assert (await send(store, "r", "bob", 0, b"1")).outcome is Outcome.ACCEPTED
        over = await send(store, "r", "bob", 0, b"1")
        assert over.quota == QuotaExceeded("sender", "entries", 2)
        assert (await store.group_state("r")).last_seq == 3
        big = await commit(store, "r", "alice", GROUP, 0, b"a commit beyond every quota")
        assert big.outcome is Outcome.ACCEPTED  # commits are never counted, and start a new epoch
        assert (await send(store, "r", "bob", 1, b"12345")).outcome is Outcome.ACCEPTED
    finally:
        await store.close()


async def test_pruning_by_size_and_age_spares_what_a_newcomer_needs(tmp_path: Path) -> None:
    now = [100.0]
    store = SQLiteStore(tmp_path / "sized.db", policy=LogPolicy(max_bytes=1000, max_age=50.0),
                        clock=lambda: now[0])
    await store.open()
    try:
        await create(store, "r")
        old = await send(store, "r", "bob", 0, bytes(400))
        added = await commit(store, "r", "alice", GROUP, 0, bytes(300), (WelcomeRecord("carol", bytes(300)),))
        assert (await store.group_state("r")).pruned_seq == 0  # 1000 bytes: not over
        fresh = await send(store, "r", "bob", 1, bytes(200))  # 1200: the oldest message goes
        state = await store.group_state("r")
        assert (state.pruned_seq, state.pruned_epoch) == (old.entries[0].seq, 0)
        assert [e.seq for e in await store.read_log("r", "carol")] == [
            e.seq for e in (*added.entries, *fresh.entries)]
        await send(store, "r", "bob", 1, bytes(600))  # over again: only application messages may go
        assert [e.kind for e in await store.read_log("r", "carol")] == [
            EntryKind.COMMIT, EntryKind.WELCOME, EntryKind.APPLICATION]
        now[0] += 60  # everything is older than max_age now
        last = await send(store, "r", "bob", 1, bytes(10))
        kept = await store.read_log("r", "carol")
        assert [e.seq for e in kept] == [*(e.seq for e in added.entries), last.entries[0].seq]
        assert (await store.group_state("r")).pruned_seq == last.entries[0].seq - 1
        assert await store.latest_welcome_seq("r", "carol") == added.entries[1].seq
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
