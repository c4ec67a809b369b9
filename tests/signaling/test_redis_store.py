"""The store contract (signaling/store.py) run against SQLite and Redis alike, and what only the
shared Redis store promises: one commit per epoch across instances (RFC 9420 §14, §12.4), the
feed in seq order across instances, stale public views, presence of dead instances, typed
errors for a bad address."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
import pytest

from conftest import BOUND, until
from redis_server import RedisServer, free_port
from signaling.redis_store import RedisStore, RedisUnavailableError, RedisURLError
from signaling.sqlite_store import SQLiteStore
from signaling.store import (AppendResult, ApplicationRequest, CommitRequest, EntryKind, FeedItem,
                             GroupCreateRequest, LogPolicy, Outcome, Presence, ProposalRequest, QuotaExceeded,
                             Store, WelcomeRecord)

GROUP = b"group-1"

StoreFactory = Callable[..., Awaitable[Store]]


@pytest.fixture
async def make_store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
                     ) -> AsyncIterator[StoreFactory]:
    """Open stores of the test's kind; one ``name`` is one store's data (a file, a key prefix),
    so opening a name again reopens it. All are closed after the test."""
    opened: list[Store] = []

    async def factory(*, name: str = "store", policy: LogPolicy = LogPolicy(),
                      clock: Callable[[], float] = time.time) -> Store:
        store: Store
        if store_kind == "sqlite":
            store = SQLiteStore(tmp_path / f"{name}.db", policy=policy, clock=clock)
        else:
            store = RedisStore.from_url(request.getfixturevalue("redis_url"), policy=policy, clock=clock,
                                        prefix=name)
        await store.open()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    return await make_store()


@pytest.fixture
async def redis_stores(redis_url: str) -> AsyncIterator[list[RedisStore]]:
    """Two RedisStores on one database (two instances: separate connections), opened."""
    stores = [RedisStore.from_url(redis_url) for _ in range(2)]
    for s in stores:
        await s.open()
    yield stores
    for s in stores:
        await s.close()


async def create(store: Store, room: str, epoch: int = 0, group_id: bytes = GROUP,
                 public: bytes | None = b"public@create") -> AppendResult:
    (result,) = await store.append(room, [GroupCreateRequest("alice", group_id, epoch, public)])
    return result


async def commit(store: Store, room: str, sender: str, group_id: bytes, epoch: int, body: bytes,
                 welcomes: tuple[WelcomeRecord, ...] = (), public: bytes | None = None,
                 version: int | None = None) -> AppendResult:
    (result,) = await store.append(room, [CommitRequest(sender, group_id, epoch, body, welcomes, public,
                                                        version)])
    return result


async def propose(store: Store, room: str, epoch: int) -> AppendResult:
    (result,) = await store.append(room, [ProposalRequest("a", GROUP, epoch, b"p")])
    return result


async def send(store: Store, room: str, sender: str, epoch: int, body: bytes) -> AppendResult:
    (result,) = await store.append(room, [ApplicationRequest(sender, epoch, body)])
    return result


# -- the contract, for both stores -----------------------------------------------------------------


async def test_group_creation_then_commits_with_compare_and_set(store: Store) -> None:
    early = await commit(store, "r", "alice", GROUP, 3, b"c3")
    assert (early.outcome, early.entries) == (Outcome.NO_GROUP, ())
    created = await create(store, "r", 3)
    assert (created.outcome, created.epoch, created.entries) == (Outcome.ACCEPTED, 3, ())
    assert await store.public_group("r") == (b"public@create", 1)
    other = await create(store, "r", 0, b"mallory's group", b"public@mallory")
    assert (other.outcome, other.epoch) == (Outcome.WRONG_GROUP, 3)
    assert await store.public_group("r") == (b"public@create", 1)
    first = await commit(store, "r", "alice", GROUP, 3, b"c3", (WelcomeRecord("bob", b"w"),))
    assert first.outcome is Outcome.ACCEPTED and first.epoch == 4
    assert [(e.seq, e.kind, e.epoch, e.recipient, e.group_id) for e in first.entries] == [
        (1, EntryKind.COMMIT, 3, None, GROUP), (2, EntryKind.WELCOME, 4, "bob", GROUP)]
    again = await commit(store, "r", "bob", GROUP, 3, b"other")
    assert (again.outcome, again.epoch, again.entries) == (Outcome.CONFLICT, 4, ())
    future = await commit(store, "r", "bob", GROUP, 9, b"other")
    assert (future.outcome, future.epoch) == (Outcome.CONFLICT, 4)
    assert (await commit(store, "r", "bob", b"another", 4, b"x")).outcome is Outcome.WRONG_GROUP
    state = await store.group_state("r")
    assert (state.group_id, state.epoch, state.last_seq, state.public_version) == (GROUP, 4, 2, 1)
    assert (await store.group_state("nowhere")).group_id is None


async def test_the_public_group_moves_only_with_an_accepted_handshake(store: Store) -> None:
    await create(store, "r")
    assert (await commit(store, "r", "alice", GROUP, 0, b"c0", public=b"public@1")).outcome is Outcome.ACCEPTED
    assert await store.public_group("r") == (b"public@1", 2)
    assert (await commit(store, "r", "bob", GROUP, 0, b"late", public=b"public@late")).outcome is Outcome.CONFLICT
    (wrong,) = await store.append("r", [ProposalRequest("bob", b"other", 1, b"p", b"public@other")])
    assert wrong.outcome is Outcome.WRONG_GROUP
    (proposal,) = await store.append("r", [ProposalRequest("bob", GROUP, 1, b"p", b"public@1+p")])
    assert proposal.outcome is Outcome.ACCEPTED and await store.public_group("r") == (b"public@1+p", 3)
    results = await store.append("r", [CommitRequest("alice", GROUP, 1, b"c1", (), b"public@2"),
                                       CommitRequest("bob", GROUP, 1, b"loser", (), b"public@loser"),
                                       ApplicationRequest("alice", 2, b"m")])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.CONFLICT, Outcome.ACCEPTED]
    assert await store.public_group("r") == (b"public@2", 4)
    assert await store.public_group("elsewhere") is None
    await store.publish_key_packages("r", "bob", [b"k"], limit=4)
    await store.reset_group("r")
    state = await store.group_state("r")
    assert await store.public_group("r") is None and state.public_version == 5
    assert (state.group_id, state.epoch, state.last_seq, state.pruned_seq) == (None, None, 4, 0)
    assert await store.read_log("r", "carol") == [] and await store.claim_key_package("r", "bob") is None
    assert (await create(store, "r", 0, b"new")).epoch == 0
    assert await store.public_group("r") == (b"public@create", 6)
    assert (await send(store, "r", "bob", 0, b"after")).entries[0].seq == 5  # seqs keep counting up


async def test_a_handshake_derived_from_an_older_view_is_stale(store: Store) -> None:
    await create(store, "r")
    (first,) = await store.append("r", [ProposalRequest("bob", GROUP, 0, b"p1", b"public+p1", 1)])
    assert first.outcome is Outcome.ACCEPTED and await store.public_group("r") == (b"public+p1", 2)
    (stale,) = await store.append("r", [ProposalRequest("carol", GROUP, 0, b"p2", b"public+p2", 1)])
    assert (stale.outcome, stale.epoch, stale.entries) == (Outcome.STALE_VIEW, 0, ())
    assert (await commit(store, "r", "carol", GROUP, 0, b"c", (), b"public@1", 1)).outcome is Outcome.STALE_VIEW
    assert await store.public_group("r") == (b"public+p1", 2)
    assert (await store.group_state("r")).last_seq == 1
    assert (await commit(store, "r", "carol", GROUP, 5, b"c", (), b"x", 1)).outcome is Outcome.CONFLICT
    results = await store.append("r", [ProposalRequest("carol", GROUP, 0, b"p2", b"public+p1+p2", 2),
                                       CommitRequest("bob", GROUP, 0, b"c0", (), b"public@1", 3)])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert await store.public_group("r") == (b"public@1", 4)


async def test_the_feed_carries_each_append_in_seq_order(store: Store) -> None:
    seen: list[FeedItem] = []
    probes: list[FeedItem] = []
    await store.subscribe("r", seen.append)
    await store.subscribe("probe", probes.append)
    await create(store, "r")
    results = await asyncio.gather(
        store.append("r", [CommitRequest("alice", GROUP, 0, b"c0", (WelcomeRecord("bob", b"w"),))],
                     origin="one"),
        store.append("r", [ApplicationRequest("alice", 1, b"m1"), ApplicationRequest("alice", 1, b"m2")],
                     origin="two"),
        store.append("other", [ApplicationRequest("x", 0, b"elsewhere")], origin="one"))
    await until(lambda: len(seen) >= 3, "the feed's three items")
    assert sorted([e.seq for e in item.entries] for item in seen) == [[1, 2], [3], [4]]
    assert [e.seq for item in seen for e in item.entries] == [1, 2, 3, 4]
    origins = {e.body: item.origin for item in seen for e in item.entries}
    assert origins == {b"c0": "one", b"w": "one", b"m1": "two", b"m2": "two"}
    commit_item = next(item for item in seen if item.entries[0].kind is EntryKind.COMMIT)
    assert commit_item.entries == results[0][0].entries
    await store.signal("r", {"type": "presence", "who": ["a"]}, "one")
    await until(lambda: len(seen) == 4, "the signal")
    assert seen[-1] == FeedItem((), {"type": "presence", "who": ["a"]}, "one")
    await store.unsubscribe("r")
    await send(store, "r", "alice", 1, b"m3")
    await store.signal("probe", {"type": "probe"}, "one")  # published after m3: seen after it, if at all
    await until(lambda: len(probes) == 1, "the probe")
    assert len(seen) == 4
    assert [e.seq for e in await store.read_entries("r", after_seq=1)] == [2, 3, 4, 5]
    assert [e.seq for e in await store.read_entries("r", after_seq=1, up_to_seq=3)] == [2, 3]
    assert [e.seq for e in await store.read_entries("r", after_seq=0, limit=2)] == [1, 2]
    assert (await store.read_entries("r", after_seq=1, limit=1))[0].recipient == "bob"


async def test_admitted_identities_last_until_the_group_is_reset(make_store: StoreFactory) -> None:
    s = await make_store(name="admitted")
    await s.admit("r", "alice")
    await s.admit("r", "bob")
    await s.admit("r", "alice")
    await s.admit("other", "carol")
    await s.close()
    s = await make_store(name="admitted")
    assert await s.admitted("r") == frozenset({"alice", "bob"})
    await s.reset_group("r")
    assert await s.admitted("r") == frozenset() and await s.admitted("other") == frozenset({"carol"})


async def test_presence_is_dropped_only_by_the_instance_holding_it(store: Store) -> None:
    await store.heartbeat("a", 60.0)
    await store.heartbeat("b", 60.0)
    await store.set_presence("r", "alice", "a", False)
    await store.set_presence("r", "bob", "a", True)
    assert await store.presence("r") == {"alice": Presence("a", False), "bob": Presence("a", True)}
    await store.set_presence("r", "alice", "b", False)
    await store.drop_presence("r", "alice", "a")
    assert (await store.presence("r"))["alice"] == Presence("b", False)
    await store.drop_presence("r", "alice", "b")
    assert await store.presence("r") == {"bob": Presence("a", True)} and await store.presence("x") == {}
    assert await store.empty_since("r") is None
    await store.set_empty_since("r", 12.5)
    assert await store.empty_since("r") == 12.5
    await store.set_empty_since("r", None)
    assert await store.empty_since("r") is None


async def test_concurrent_commits_one_winner(store: Store) -> None:
    await create(store, "r")
    await commit(store, "r", "alice", GROUP, 0, b"c0")
    results = await asyncio.gather(*(commit(store, "r", f"m{i}", GROUP, 1, b"c") for i in range(10)))
    assert sum(r.outcome is Outcome.ACCEPTED for r in results) == 1
    assert all(r.epoch == 2 for r in results)


async def test_proposals_need_the_current_epoch(store: Store) -> None:
    assert (await propose(store, "r", 0)).outcome is Outcome.NO_GROUP
    await create(store, "r")
    await commit(store, "r", "a", GROUP, 0, b"c0")
    assert (await propose(store, "r", 0)).outcome is Outcome.CONFLICT
    accepted = await propose(store, "r", 1)
    assert accepted.outcome is Outcome.ACCEPTED and accepted.entries[0].seq == 2


async def test_a_batch_applies_in_order_in_one_step(store: Store) -> None:
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
    logged = await store.read_log("r", "carol")
    assert [e.body for e in logged] == [b"m0", b"c0", b"p1", b"c1", b"w", b"m2"]
    assert logged == [e for r in results for e in r.entries]  # what append said is what was stored
    state = await store.group_state("r")
    assert (state.group_id, state.epoch, state.last_seq) == (GROUP, 2, 6)


async def test_read_log_filters(store: Store) -> None:
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


async def test_key_packages_claimed_once_in_order(store: Store) -> None:
    assert await store.publish_key_packages("r", "bob", [b"k1", b"k2", b"k3"], limit=4) == 3
    assert await store.publish_key_packages("r", "bob", [b"k4", b"k5"], limit=4) is None
    assert await store.claim_key_package("r2", "bob") is None
    claims = await asyncio.gather(*(store.claim_key_package("r", "bob") for _ in range(5)))
    assert sorted(c for c in claims if c is not None) == [b"k1", b"k2", b"k3"]
    assert claims.count(None) == 2
    assert await store.publish_key_packages("r", "bob", [b"k6"], limit=1) == 1


async def test_reopen_keeps_everything(make_store: StoreFactory) -> None:
    s = await make_store(name="reopen")
    await create(s, "r")
    await commit(s, "r", "alice", GROUP, 0, b"c0", public=b"public@1")
    await send(s, "r", "alice", 1, b"m")
    await s.publish_key_packages("r", "bob", [b"k"], limit=8)
    await s.close()
    s = await make_store(name="reopen")
    assert (await s.group_state("r")).epoch == 1 and await s.public_group("r") == (b"public@1", 2)
    assert [e.body for e in await s.read_log("r", "bob")] == [b"c0", b"m"]
    assert await s.claim_key_package("r", "bob") == b"k"
    assert (await commit(s, "r", "bob", GROUP, 0, b"late")).outcome is Outcome.CONFLICT
    other = await make_store(name="another")  # another file, another key prefix: nothing shared
    assert (await other.group_state("r")).group_id is None


async def test_a_store_keeping_n_epochs_prunes_what_came_before(make_store: StoreFactory) -> None:
    store = await make_store(policy=LogPolicy(epochs=2))
    seqs = {}
    await create(store, "r")
    for epoch in range(6):
        await send(store, "r", "bob", epoch, b"m%d" % epoch)
        seqs[epoch] = (await commit(store, "r", "alice", GROUP, epoch, b"c%d" % epoch)).entries[0].seq
        state = await store.group_state("r")
        kept = await store.read_log("r", "carol")
        if epoch < 2:
            assert state.pruned_seq == 0 and state.pruned_epoch == -1 and kept[0].seq == 1
            continue
        assert (state.pruned_seq, state.pruned_epoch) == (seqs[epoch - 2] - 1, epoch - 2)
        assert kept[0].seq == seqs[epoch - 2] and kept[0].kind is EntryKind.COMMIT
        assert {e.epoch for e in kept} == {epoch - 2, epoch - 1, epoch}
    await send(store, "r", "bob", 6, b"m6")
    assert (await store.group_state("r")).pruned_seq == seqs[3] - 1
    await store.reset_group("r")
    state = await store.group_state("r")
    assert (state.group_id, state.pruned_seq, state.pruned_epoch) == (None, 0, -1)


async def test_read_log_pages_and_counts(store: Store) -> None:
    await create(store, "r")
    for i in range(10):
        await send(store, "r", "bob", 0, bytes(100 * (i + 1)))
    await send(store, "r", "carol", 0, b"mine")
    assert await store.count_log("r", "carol", after_seq=0, up_to_seq=11) == 10
    assert await store.count_log("r", "carol", after_seq=3, up_to_seq=7) == 4
    assert await store.count_log("r", "carol", after_seq=0, up_to_seq=11, min_epoch=1) == 0
    assert [e.seq for e in await store.read_log("r", "carol", limit=4)] == [1, 2, 3, 4]
    assert [e.seq for e in await store.read_log("r", "carol", after_seq=4, max_bytes=1100)] == [5, 6]
    assert [e.seq for e in await store.read_log("r", "carol", after_seq=6, up_to_seq=8, limit=10)] == [7, 8]
    assert [e.seq for e in await store.read_log("r", "carol", after_seq=10)] == []


async def test_quotas_count_application_messages_and_proposals_per_epoch(make_store: StoreFactory) -> None:
    store = await make_store(policy=LogPolicy(sender_entries=2, sender_bytes=None, room_entries=3,
                                              room_bytes=10))
    await create(store, "r")
    assert (await send(store, "r", "bob", 0, b"12345")).outcome is Outcome.ACCEPTED
    over = await send(store, "r", "carol", 0, b"123456")
    assert (over.outcome, over.quota) == (Outcome.QUOTA_EXCEEDED, QuotaExceeded("room", "bytes", 10))
    assert (await propose(store, "r", 0)).outcome is Outcome.ACCEPTED
    assert (await send(store, "r", "bob", 0, b"1")).outcome is Outcome.ACCEPTED
    over = await send(store, "r", "bob", 0, b"1")
    assert (over.epoch, over.quota) == (0, QuotaExceeded("sender", "entries", 2))
    assert (await send(store, "r", "dave", 0, b"1")).quota == QuotaExceeded("room", "entries", 3)
    assert (await store.group_state("r")).last_seq == 3
    big = await commit(store, "r", "alice", GROUP, 0, b"a commit beyond every quota")
    assert big.outcome is Outcome.ACCEPTED
    assert (await send(store, "r", "bob", 1, b"12345")).outcome is Outcome.ACCEPTED


async def test_pruning_by_size_and_age_spares_what_a_newcomer_needs(make_store: StoreFactory) -> None:
    now = [100.0]
    store = await make_store(policy=LogPolicy(max_bytes=1000, max_age=50.0), clock=lambda: now[0])
    await create(store, "r")
    old = await send(store, "r", "bob", 0, bytes(400))
    added = await commit(store, "r", "alice", GROUP, 0, bytes(300), (WelcomeRecord("carol", bytes(300)),))
    assert (await store.group_state("r")).pruned_seq == 0
    fresh = await send(store, "r", "bob", 1, bytes(200))
    state = await store.group_state("r")
    assert (state.pruned_seq, state.pruned_epoch) == (old.entries[0].seq, 0)
    assert [e.seq for e in await store.read_log("r", "carol")] == [
        e.seq for e in (*added.entries, *fresh.entries)]
    await send(store, "r", "bob", 1, bytes(600))
    assert [e.kind for e in await store.read_log("r", "carol")] == [
        EntryKind.COMMIT, EntryKind.WELCOME, EntryKind.APPLICATION]
    now[0] += 60
    last = await send(store, "r", "bob", 1, bytes(10))
    kept = await store.read_log("r", "carol")
    assert [e.seq for e in kept] == [*(e.seq for e in added.entries), last.entries[0].seq]
    assert (await store.group_state("r")).pruned_seq == last.entries[0].seq - 1
    assert await store.latest_welcome_seq("r", "carol") == added.entries[1].seq
    # once the next commit leaves them behind, the old epoch's handshakes go too
    now[0] += 60
    moved = await commit(store, "r", "bob", GROUP, 1, bytes(10))
    await send(store, "r", "bob", 2, bytes(10))
    assert [e.seq for e in await store.read_log("r", "carol")][0] == moved.entries[0].seq
    assert await store.latest_welcome_seq("r", "carol") is None


async def test_epochs_are_exact_up_to_the_protocol_bound(make_store: StoreFactory) -> None:
    """Epochs are uint64 (RFC 9420 §12.4); the protocol takes them below 2^62, far past the 2^53
    up to which a double (a Lua number) is exact."""
    store = await make_store(policy=LogPolicy(epochs=1))
    top = 2**62 - 1
    await create(store, "top", top - 1)
    assert (await commit(store, "top", "bob", GROUP, top - 2, b"late")).epoch == top - 1  # a conflict
    won = await commit(store, "top", "alice", GROUP, top - 1, b"c", (WelcomeRecord("bob", b"w"),))
    assert (won.outcome, won.epoch, [e.epoch for e in won.entries]) == (Outcome.ACCEPTED, top, [top - 1, top])
    app = await send(store, "top", "carol", 2**53 + 1, b"m")  # an application epoch is its sender's word
    assert [e.epoch for e in await store.read_log("top", "bob", min_epoch=2**53 + 1)] == [top - 1, top, 2**53 + 1]
    assert await store.read_log("top", "bob", min_epoch=top) == [won.entries[1]]
    assert await store.read_log("top", "bob", min_epoch=2**53 + 2) == list(won.entries)
    assert (await store.read_entries("top", after_seq=2))[0] == app.entries[0]
    assert (await store.group_state("top")).epoch == top
    # across a carry of the low 15 digits, with pruning one epoch back
    start = 2 * 10**15 - 2
    await create(store, "carry", start)
    seqs = [(await commit(store, "carry", "alice", GROUP, epoch, b"c")).entries[0].seq
            for epoch in range(start, start + 4)]
    state = await store.group_state("carry")
    assert (state.epoch, state.pruned_epoch, state.pruned_seq) == (start + 4, start + 2, seqs[2] - 1)
    assert [e.epoch for e in await store.read_log("carry", "x")] == [start + 2, start + 3]


# -- what only the shared Redis store promises ----------------------------------------------------


async def test_two_instances_racing_a_commit_always_give_one_winner(redis_stores: list[RedisStore]) -> None:
    one, two = redis_stores
    await create(one, "race")
    winners = []
    for epoch in range(200):
        racers = [commit(one, "race", "alice", GROUP, epoch, b"a%d" % epoch),
                  commit(two, "race", "bob", GROUP, epoch, b"b%d" % epoch)]
        results = await asyncio.gather(*(racers if epoch % 2 else racers[::-1]))  # either sends first
        assert sorted(r.outcome.value for r in results) == ["accepted", "conflict"], epoch
        (winner,) = [r for r in results if r.outcome is Outcome.ACCEPTED]
        assert [e.seq for e in winner.entries] == [epoch + 1]  # consecutive: a loser takes no seq
        assert all(r.epoch == epoch + 1 for r in results)
        winners.append(winner.entries[0].sender)
    logged = await two.read_entries("race", after_seq=0)
    assert [(e.seq, e.epoch, e.sender) for e in logged] == [(e + 1, e, winners[e]) for e in range(200)]
    assert (await one.group_state("race")).epoch == 200
    assert set(winners) == {"alice", "bob"}  # both instances won races


async def test_every_instance_sees_the_feed_in_seq_order(redis_stores: list[RedisStore]) -> None:
    one, two = redis_stores
    seen: dict[str, list[FeedItem]] = {"one": [], "two": []}
    await one.subscribe("r", seen["one"].append)
    await two.subscribe("r", seen["two"].append)
    await create(one, "r")
    sends = [(one if i % 2 else two).append("r", [ApplicationRequest(f"m{i % 5}", 0, b"%d" % i)],
                                           origin="one" if i % 2 else "two") for i in range(200)]
    results = await asyncio.gather(*sends)
    await until(lambda: all(sum(len(item.entries) for item in items) == 200 for items in seen.values()),
                "200 entries on both feeds")
    for items in seen.values():
        assert [e.seq for item in items for e in item.entries] == list(range(1, 201))
    assert seen["one"] == seen["two"]
    acked = {r[0].entries[0].seq: (r[0].entries[0].body, "one" if int(r[0].entries[0].body) % 2 else "two")
             for r in results}
    assert {e.seq: (e.body, item.origin) for item in seen["one"] for e in item.entries} == acked


async def test_a_view_changed_by_another_instance_is_stale(redis_stores: list[RedisStore]) -> None:
    one, two = redis_stores
    await create(one, "r", public=b"view@1")
    view, version = await two.public_group("r") or (b"", -1)
    assert (view, version) == (b"view@1", 1)
    (accepted,) = await one.append("r", [ProposalRequest("alice", GROUP, 0, b"p-a", b"view+a", version)])
    assert accepted.outcome is Outcome.ACCEPTED
    (stale,) = await two.append("r", [ProposalRequest("bob", GROUP, 0, b"p-b", b"view+b", version)])
    assert stale.outcome is Outcome.STALE_VIEW
    assert await one.public_group("r") == (b"view+a", 2) and (await one.group_state("r")).last_seq == 1
    view, version = await two.public_group("r") or (b"", -1)  # reload, validate again: accepted
    (again,) = await two.append("r", [ProposalRequest("bob", GROUP, 0, b"p-b", view + b"+b", version)])
    assert again.outcome is Outcome.ACCEPTED and await one.public_group("r") == (b"view+a+b", 3)


async def test_presence_held_by_a_dead_instance_is_left_out(redis_stores: list[RedisStore]) -> None:
    one, two = redis_stores
    await one.heartbeat("alive", 60.0)
    await one.set_presence("r", "alice", "alive", False)
    await two.set_presence("r", "bob", "dying", True)
    await two.set_presence("r", "carol", "never-seen", False)
    await one.heartbeat("dying", 60.0)
    assert await two.presence("r") == {"alice": Presence("alive", False), "bob": Presence("dying", True)}
    await one.heartbeat("dying", 0.05)  # its last heartbeat: the key expires unless renewed

    async def until_gone() -> None:
        while "bob" in await two.presence("r"):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until_gone(), timeout=BOUND)
    assert await two.presence("r") == {"alice": Presence("alive", False)}
    await one.heartbeat("dying", 60.0)  # back: the presence it still holds shows again
    assert await one.presence("r") == {"alice": Presence("alive", False), "bob": Presence("dying", True)}


async def test_a_dead_instance_presence_is_swept_once(redis_stores: list[RedisStore]) -> None:
    one, two = redis_stores
    await one.heartbeat("alive", 60.0)
    await one.heartbeat("dying", 60.0)
    await one.set_presence("r", "alice", "alive", False)
    for identity in ("bob", "carol", "dave"):
        await two.set_presence("r", identity, "dying", identity == "dave")
    assert await one.sweep_presence("r") == []  # everyone's instance is alive
    await one.heartbeat("dying", 0.05)  # its last heartbeat
    await until_async(lambda: one.presence("r"), lambda present: "bob" not in present, "the key expired")
    await one.set_presence("r", "carol", "alive", False)  # carol came back through a live instance
    swept = await asyncio.gather(*(store.sweep_presence("r") for store in (one, two, one, two)))
    # each dead presence dropped once, by one of the racing sweeps; carol's new one stays
    assert sorted(identity for dropped in swept for identity in dropped) == ["bob", "dave"]
    assert await one.presence("r") == {"alice": Presence("alive", False), "carol": Presence("alive", False)}
    await one.heartbeat("dying", 60.0)  # even back, it holds nothing any more
    assert await two.presence("r") == {"alice": Presence("alive", False), "carol": Presence("alive", False)}
    assert await two.sweep_presence("r") == []


async def until_async(read: Callable[[], Awaitable[object]], holds: Callable[[object], bool], what: str) -> None:
    """Poll ``read()`` until ``holds`` its value; fail after the tests' bound."""
    async def poll() -> None:
        while not holds(await read()):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout=BOUND)


async def test_deployments_in_two_databases_of_one_server_do_not_hear_each_other(redis_url: str) -> None:
    """Pub/sub spans a server's databases: the feed's channels carry the database number."""
    assert redis_url.endswith("/0")
    stores = [RedisStore.from_url(redis_url), RedisStore.from_url(redis_url[:-1] + "1")]
    seen: list[list[FeedItem]] = [[], []]
    try:
        for store, items in zip(stores, seen):
            await store.open()
            await store.subscribe("r", items.append)
        zero, one = stores
        await create(one, "r")
        await send(one, "r", "alice", 0, b"db 1")
        await one.signal("r", {"db": 1}, "one")
        # published after database 1's items: once it arrives, they would have arrived before it
        await zero.signal("r", {"db": 0}, "zero")
        await until(lambda: any(item.signal == {"db": 0} for item in seen[0]), "database 0's own signal")
        await until(lambda: any(item.signal == {"db": 1} for item in seen[1]), "database 1's own signal")
        assert seen[0] == [FeedItem((), {"db": 0}, "zero")]
        assert [e.body for item in seen[1] for e in item.entries] == [b"db 1"]
        assert await zero.read_entries("r", after_seq=0) == []
    finally:
        for store in stores:
            await store.close()


async def test_a_bad_address_or_an_unreachable_redis_is_a_typed_error() -> None:
    for url in ("http://127.0.0.1:6379/0", "not a url", "redis://127.0.0.1:6379/not-a-db"):
        with pytest.raises(RedisURLError):
            RedisStore.from_url(url)
    port = free_port()  # nothing listens there
    store = RedisStore.from_url(f"redis://:hunter2@127.0.0.1:{port}/0")
    with pytest.raises(RedisUnavailableError) as refused:
        await store.open()
    assert "hunter2" not in str(refused.value) and str(port) in str(refused.value)
    assert "hunter2" not in repr(store)
    await store.close()


async def test_the_feed_resubscribes_after_redis_restarts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    store = RedisStore.from_url(server.url)
    try:
        await store.open()
        seen: list[FeedItem] = []
        await store.subscribe("r", seen.append)
        await send(store, "r", "alice", 0, b"before")
        await until(lambda: len(seen) == 1, "the first item")
        server.kill()
        with pytest.raises(RedisUnavailableError):
            await send(store, "r", "alice", 0, b"while down")
        server.start()
        # the command connection comes back (server.start returned once Redis answered) and the
        # append script, lost with the restart, is loaded again (NOSCRIPT)
        sent = await send(store, "r", "alice", 0, b"after")
        # the feed's connection comes back on its own and subscribes again; items published
        # before it did are lost to it (the consumer reads them with read_entries)
        async def until_resubscribed() -> None:
            while not any(item.signal == {"probe": True} for item in seen):
                await store.signal("r", {"probe": True}, "me")
                await asyncio.sleep(0.05)

        await asyncio.wait_for(until_resubscribed(), timeout=BOUND)
        # subscribed again, the feed told its consumer to read what it missed, before any later item
        probe = next(i for i, item in enumerate(seen) if item.signal == {"probe": True})
        assert FeedItem(resync=True) in seen[1:probe]
        assert [e.body for e in await store.read_entries("r", after_seq=0)] == [b"before", b"after"]
        assert sent.entries[0].seq == 2
    finally:
        await store.close()
        server.stop()
