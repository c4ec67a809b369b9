"""The delivery service's fan-out through the store's feed (signaling.delivery, issue 17).

On SQLite (one instance): a feed that loses an item or hands one over twice
still gives every member each entry once, in seq order (gaps filled from the
store); a feed that arrives late still puts a sender's commit before its ack;
a proposal validated against a view another instance changed meanwhile is
refused by the store (``STALE_VIEW``) and validated again against the stored
view. On one real redis-server, two instances: a newer connection of an
identity on one instance replaces the older one on the other, a newcomer
left waiting on one instance by the last member leaving another is told the
group was dropped, and a commit on one instance adds an identity admitted
through the other.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from conftest import BOUND, MakeServer, expect_error, until
from ds_participant import Participant, group_of
from signaling.client import SignalingClient
from signaling.errors import ErrorCode
from signaling.protocol import b64encode
from signaling.public_state import PublicState
from signaling.redis_store import RedisStore
from signaling.sqlite_store import SQLiteStore
from signaling.store import AppendRequest, AppendResult, FeedItem, Outcome, ProposalRequest

SECRET = b"F" * 32
ROOM = "fed"


class LossyStore(SQLiteStore):
    """SQLite whose feed loses the items whose first seq is in ``drop`` and hands those in
    ``twice`` over twice, as a pub/sub feed may around a reconnection."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.drop: set[int] = set()
        self.twice: set[int] = set()
        self.dropped: list[int] = []

    def _publish(self, room: str, item: FeedItem) -> None:
        first = item.entries[0].seq if item.entries else None
        if first in self.drop:
            self.dropped.append(first)
            return
        super()._publish(room, item)
        if first in self.twice:
            super()._publish(room, item)


class LateFeedStore(SQLiteStore):
    """SQLite whose feed hands each item over a while after the append returned (as a feed
    reader on its own connection may)."""

    def _publish(self, room: str, item: FeedItem) -> None:
        asyncio.get_running_loop().call_later(0.1, super()._publish, room, item)


class RacingStore(SQLiteStore):
    """SQLite where, just before the next proposal derived from a view arrives, another
    instance appends ``injected`` (a proposal of its own, with the view it derived from the
    stored one): the first proposal's view is stale."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.injected: tuple[str, bytes, bytes, int] | None = None
        self.outcomes: list[Outcome] = []

    async def append(self, room: str, requests: Sequence[AppendRequest], *,
                     origin: str = "") -> list[AppendResult]:
        if self.injected is not None and any(isinstance(r, ProposalRequest) and r.public_version is not None
                                             for r in requests):
            sender, group_id, proposal, epoch = self.injected
            self.injected = None
            stored = await self.public_group(room)
            assert stored is not None
            encoded = PublicState.load(stored[0]).proposal(sender, proposal)
            (other,) = await super().append(room, [ProposalRequest(sender, group_id, epoch, proposal, encoded,
                                                                   stored[1])], origin="elsewhere")
            assert other.outcome is Outcome.ACCEPTED
        results = await super().append(room, requests, origin=origin)
        self.outcomes.extend(result.outcome for result in results)
        return results


async def applications(client: SignalingClient, count: int) -> list[int]:
    return [(await client.next_event("application"))["seq"] for _ in range(count)]


async def test_a_lost_or_repeated_feed_item_changes_nothing_members_see(
        make_server: MakeServer, tmp_path: Path, clients: list[SignalingClient]) -> None:
    store = LossyStore(tmp_path / "lossy.db")
    server = await make_server(store=store)
    alice, bob, carol = await group_of(server, clients, ["alice", "bob", "carol"], ROOM)
    last = (await store.group_state(ROOM)).last_seq
    store.drop = {last + 2, last + 5, last + 6}
    store.twice = {last + 3, last + 8}
    # one after the other (a lost item of one's own append is read from the store) ...
    acked = [await alice.client.send_application(1, alice.send(b"m%d" % i)) for i in range(4)]
    # ... and at once (a later item shows the gap)
    acked += await asyncio.gather(*(alice.client.send_application(1, alice.send(b"n%d" % i))
                                    for i in range(6)))
    assert sorted(acked) == list(range(last + 1, last + 11)) and store.dropped
    for member in (bob, carol):
        assert await applications(member.client, 10) == sorted(acked)
    marker = await carol.client.send_application(1, carol.send(b"marker"))
    for member in (alice, bob):  # nothing came twice before it
        assert await applications(member.client, 1) == [marker]


async def test_a_late_feed_still_puts_the_commit_before_its_ack(
        make_server: MakeServer, tmp_path: Path, clients: list[SignalingClient]) -> None:
    server = await make_server(store=LateFeedStore(tmp_path / "late.db"))
    alice, bob = await group_of(server, clients, ["alice", "bob"], ROOM)
    update = alice.view.update()
    async with aiohttp.ClientSession() as http:
        raw = await http.ws_connect(server.ws_url)
        await raw.send_str(json.dumps({"type": "join", "id": 0, "room": ROOM, "since": 0,
                                       "token": server.server.tokens.mint(ROOM, "alice", 600)}))
        frames: list[dict[str, Any]] = []

        async def until_reply(rid: Any) -> None:
            while not frames or frames[-1].get("re") != rid:
                frames.append(json.loads((await raw.receive(timeout=BOUND)).data))

        await until_reply(0)
        await raw.send_str(json.dumps({
            "type": "commit", "id": "c", "epoch": 1, "group_id": b64encode(alice.view.group_id),
            "commit": b64encode(update.commit)}))
        await until_reply("c")
        commit_events = [i for i, f in enumerate(frames) if f.get("type") == "commit"]
        ack = frames[-1]
        assert ack["type"] == "ack" and ack["epoch"] == 2
        assert [frames[i]["seq"] for i in commit_events][-1] == ack["seq"]  # its own commit came first
        await raw.close()
    # bob got the commit that added him, then this one
    assert [(await bob.client.next_event("commit"))["seq"] for _ in range(2)] == [1, ack["seq"]]


async def test_a_proposal_on_a_stale_view_is_validated_again(
        make_server: MakeServer, tmp_path: Path, clients: list[SignalingClient]) -> None:
    store = RacingStore(tmp_path / "racing.db")
    server = await make_server(store=store)
    alice, bob, carol = await group_of(server, clients, ["alice", "bob", "carol"], ROOM)
    for member in (alice, bob):
        await member.client.next_event("commit")
    bobs = bob.view.propose_update().content
    store.injected = ("bob", bob.view.group_id, bobs, 1)
    store.outcomes.clear()
    alices = alice.view.propose_update().content
    reply = await alice.client.propose(alice.view.group_id, 1, alices)
    assert store.outcomes == [Outcome.STALE_VIEW, Outcome.ACCEPTED]
    # both proposals reach everyone, the other instance's first
    for member in (alice, bob, carol):
        first, second = (await member.client.next_event("proposal"), await member.client.next_event("proposal"))
        assert (first["from"], second["from"], second["seq"]) == ("bob", "alice", reply["seq"])
    carol.view.receive(bobs)
    carol.view.discard_pending_commit()  # answered with a commit once both are in
    output = carol.view.receive(alices).commit_output
    assert output is not None
    # the view kept both: a commit of both proposals is valid to it
    assert (await carol.submit(output))["epoch"] == 2
    assert (await server.server.store.group_state(ROOM)).epoch == 2


# -- two instances on one redis-server ------------------------------------------------------


async def two_instances(make_server: MakeServer, redis_url: str, **config: Any) -> list[Any]:
    return [await make_server(store=RedisStore.from_url(redis_url), **config) for _ in range(2)]


async def test_a_newer_connection_on_another_instance_replaces_the_older(
        make_server: MakeServer, redis_url: str, clients: list[SignalingClient]) -> None:
    first, second = await two_instances(make_server, redis_url)
    watcher = await Participant.joined(first, clients, "watcher", ROOM)
    old = await Participant.joined(first, clients, "alice", ROOM)
    await watcher.client.next_event("presence")
    new = await Participant.joined(second, clients, "alice", ROOM)
    assert new.client.join_reply["members"] == ["watcher"]
    replaced = await old.client.next_event("error")
    assert replaced["code"] == ErrorCode.REPLACED
    await old.client.next_event("closed")
    await until(lambda: "alice" not in first.server.rooms[ROOM].members, "the old connection gone")
    # alice is still present (on the other instance): nobody is told she left
    third = await Participant.joined(first, clients, "carol", ROOM)
    assert third.client.join_reply["members"] == ["alice", "watcher"]
    event = await watcher.client.next_event("presence")
    assert (event["event"], event["identity"]) == ("join", "alice")
    event = await watcher.client.next_event("presence")
    assert (event["event"], event["identity"]) == ("join", "carol")


async def test_a_newcomer_left_waiting_by_a_member_on_another_instance_is_told_of_the_reset(
        make_server: MakeServer, redis_url: str, clients: list[SignalingClient]) -> None:
    first, second = await two_instances(make_server, redis_url, abandon_after=0.3)
    alice = await Participant.joined(first, clients, "alice", ROOM)
    dave = await Participant.joined(second, clients, "dave", ROOM)
    await alice.create()  # dave waits to be added to alice's group
    await dave.publish()
    await alice.client.leave()  # alice goes before adding him
    assert (await dave.client.next_event("group_reset", timeout=BOUND)) == {"type": "group_reset"}
    assert (await dave.create())["epoch"] == 0  # the room takes dave's new group
    erin = await Participant.joined(first, clients, "erin", ROOM)
    assert erin.client.join_reply["group_id"] == dave.view.group_id
    await erin.publish()
    await dave.add(erin)  # erin, on the other instance, was admitted to the new group
    assert (await erin.client.next_event("welcome"))["epoch"] == 1


async def test_a_commit_adds_an_identity_admitted_through_another_instance(
        make_server: MakeServer, redis_url: str, clients: list[SignalingClient]) -> None:
    first, second = await two_instances(make_server, redis_url)
    alice = await Participant.joined(first, clients, "alice", ROOM)
    await alice.create()
    await alice.update()  # the first instance has read who is admitted: alice alone
    bob = await Participant.joined(second, clients, "bob", ROOM)  # admitted through the second
    await bob.publish()
    assert (await alice.add(bob))["epoch"] == 2
    assert (await bob.client.next_event("welcome"))["epoch"] == 2
    # a KeyPackage of an identity never admitted is still refused, after the store was asked again
    stranger = Participant(SignalingClient(first.ws_url, ROOM, "unused"), "stranger")
    await expect_error(alice.submit(alice.view.add(stranger.key_package())), ErrorCode.NOT_ADMITTED)
