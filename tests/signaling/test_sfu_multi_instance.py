"""One SFU room whose members sit on two server instances (issues 16 and 17).

Two in-process servers share one real redis-server (tests/store_fixtures.py)
and one private Janus (media.cli.janus, the ``janus`` fixture): the room's
Janus room, topology and published feeds go through the store
(signaling.sfu, docs/deployment.md "SFU rooms over several instances").

* CallPeers split over the two instances decode each other's audio and video
  through one Janus room (Janus lists exactly one, the store's); the room
  stays while a member is left on either instance and is destroyed (its
  state gone from the store) when the last one, alone on the second
  instance, leaves;
* the mesh -> SFU switch counts the participants of both instances, reaches
  the members of both, and holds for a member joining again while the room
  is live (the store remembers it) until the room is empty everywhere;
* Janus SIGKILLed and restarted: members on both instances get ``sfu.down``
  and ``sfu.up``, the room is created again once (the next generation, one
  Janus room), they republish and receive each other's media again;
* one instance loses its Janus session while Janus lives: only its member
  gets ``sfu.down``/``sfu.up`` and republishes into the same room (same
  generation); the other instance's member keeps its feed, and media flows
  both ways again;
* the store's SFU state on both stores (SQLite and Redis): the Janus room
  claimed once (the loser gets the winner's), a higher generation replaces it
  and drops the old feeds, the switch noted once, feeds written and dropped,
  everything cleared.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from janus_peers import (Publisher, Subscriber, feeds_event, joined_member, publish_over,  # noqa: F401
                         subscribe_over, janus)  # (janus: the fixture)

from call_checks import call_peers, receiving_all, same_group, sink  # noqa: F401  (call_peers: a fixture)
from conftest import BOUND, until
from media.call_peer import CallPeer
from media.cli.janus import JanusProcess
from media.sinks import VerifyingSink
from signaling.client import SignalingClient
from signaling.janus import JanusSession
from signaling.redis_store import RedisStore
from signaling.server import RunningServer
from signaling.sqlite_store import SQLiteStore
from signaling.store import SfuRoomRecord, Store

SECRET = b"u" * 32  # one token secret for both instances (docs/deployment.md)
ROOM = "spread-sfu"

MakeServer = Callable[..., Awaitable[RunningServer]]


async def janus_rooms(url: str) -> list[int]:
    """The rooms Janus's VideoRoom plugin has (its ``list`` request)."""
    probe = JanusSession(url)
    await probe.create()
    try:
        data, _ = await (await probe.attach()).request({"request": "list"})
        return sorted(int(room["room"]) for room in data["list"])
    finally:
        await probe.destroy()


@pytest.mark.e2e
@pytest.mark.slow
async def test_call_peers_on_two_instances_meet_in_one_janus_room(
        make_server: MakeServer, redis_url: str, janus: JanusProcess, call_peers: list[CallPeer]) -> None:
    instances = [await make_server(store=RedisStore.from_url(redis_url), sfu_url=janus.url, sfu_above=0)
                 for _ in range(2)]
    store = RedisStore.from_url(redis_url)
    await store.open()
    try:
        placed = (("alice", 0), ("bob", 1), ("carol", 0))
        for name, i in placed:
            server = instances[i]
            peer = CallPeer(server.ws_url, ROOM, server.server.tokens.mint(ROOM, name, 600),
                            sinks=[VerifyingSink()])
            call_peers.append(peer)
            await peer.start()
        await until(lambda: same_group(call_peers) and receiving_all(call_peers, 20),
                    "a call of three over two instances through Janus", 60)
        for peer in call_peers:
            status = peer.status()
            assert status.topology == "sfu" and peer.links == {}, peer.identity  # no mesh link
            assert status.relabelled == (), peer.identity  # every stream's KID is its announced member's
            assert sorted(sink(peer).reports) == sorted(q.identity for q in call_peers if q is not peer)

        record = await store.sfu_room(ROOM)
        assert record is not None and record.generation == 1
        assert await janus_rooms(janus.url) == [record.janus_room]  # one Janus room for both instances
        for server in instances:
            sfu = server.server.delivery.sfu
            assert sfu is not None and sfu.rooms[ROOM].janus_room == record.janus_room
        feeds = await store.sfu_feeds(ROOM)
        assert sorted(feeds.values()) == ["alice", "bob", "carol"]  # written by both instances

        # the members of the first instance leave: bob, alone on the second, keeps the room
        alice, bob, carol = call_peers
        for peer in (alice, carol):
            await peer.stop()
        call_peers[:] = [bob]
        first = instances[0].server.delivery.sfu
        assert first is not None
        await until(lambda: ROOM not in first.rooms and not first._releases, "the first instance let go")

        async def only_bob() -> bool:
            return list((await store.sfu_feeds(ROOM)).values()) == ["bob"]

        await until_async(only_bob, "alice's and carol's feeds withdrawn")
        assert await janus_rooms(janus.url) == [record.janus_room]
        assert await store.sfu_room(ROOM) == record

        # the last member leaves through the other instance: it destroys the room
        await bob.stop()
        call_peers.clear()

        async def emptied() -> bool:
            return await janus_rooms(janus.url) == [] and await store.sfu_room(ROOM) is None

        await until_async(emptied, "the Janus room destroyed once nobody is left on either instance")
        assert await store.sfu_feeds(ROOM) == {} and not await store.sfu_switched(ROOM)
    finally:
        await store.close()


async def until_async(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    """``until`` for a predicate that asks a server or the store."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not await predicate():
        assert loop.time() < deadline, f"not reached within {BOUND} s: {what}"
        await asyncio.sleep(0.1)




async def test_the_switch_counts_both_instances_and_holds_while_the_room_is_live(
        make_server: MakeServer, redis_url: str, clients: list[SignalingClient]) -> None:
    # Janus never answers here: the topology is decided without it
    instances = [await make_server(store=RedisStore.from_url(redis_url), sfu_url="http://127.0.0.1:9/janus",
                                   sfu_above=2) for _ in range(2)]
    alice, reply = await joined_member(instances[0], clients, "alice", ROOM)
    assert reply["topology"] == "mesh"
    bob, reply = await joined_member(instances[1], clients, "bob", ROOM)
    assert reply["topology"] == "mesh"  # two connected, one per instance: not above 2
    carol, reply = await joined_member(instances[0], clients, "carol", ROOM)
    assert reply["topology"] == "sfu"  # the third, counted over both instances
    for member in (alice, bob):  # alice on carol's instance, bob through the store's signal
        assert await member.next_event("topology") == {"type": "topology", "topology": "sfu"}

    # never back while live: bob leaves and comes back with only two connected
    await carol.leave()
    await bob.leave()
    await until(lambda: ROOM not in instances[1].server.delivery.sfu.rooms, "bob's instance let go")
    bob, reply = await joined_member(instances[1], clients, "bob", ROOM)
    assert reply["topology"] == "sfu"

    # once nobody is left on either instance the next call starts as a mesh
    await alice.leave()
    await bob.leave()
    store = RedisStore.from_url(redis_url)
    await store.open()
    try:
        async def vacated() -> bool:
            return not await store.sfu_switched(ROOM) and await store.presence(ROOM) == {}

        await until_async(vacated, "the room's SFU state forgotten")
    finally:
        await store.close()
    alice, reply = await joined_member(instances[0], clients, "alice", ROOM)
    assert reply["topology"] == "mesh"








@pytest.mark.e2e
async def test_janus_restarted_under_two_instances(make_server: MakeServer, redis_url: str, janus: JanusProcess,
                                                   clients: list[SignalingClient]) -> None:
    instances = [await make_server(store=RedisStore.from_url(redis_url), sfu_url=janus.url, sfu_above=0)
                 for _ in range(2)]
    names = ("alice", "bob")
    members = {who: (await joined_member(instances[i], clients, who, ROOM))[0] for i, who in enumerate(names)}
    peers: list[Publisher | Subscriber] = []
    store = RedisStore.from_url(redis_url)
    await store.open()
    try:
        async def call() -> dict[str, Subscriber]:
            """Both publish, learn both feeds and subscribe to the other's; their subscribers."""
            publishers = {who: Publisher() for who in names}
            subscribers = {who: Subscriber() for who in names}
            peers.extend([*publishers.values(), *subscribers.values()])
            feeds = {who: await publish_over(members[who], publishers[who]) for who in names}
            for who in names:  # each from its own instance and the other's
                assert await feeds_event(members[who], 2) == {feeds["alice"]: "alice", feeds["bob"]: "bob"}
            for me, other in (("alice", "bob"), ("bob", "alice")):
                streams = await subscribe_over(members[me], subscribers[me], [feeds[other]])
                assert {(s["from"], s["kind"]) for s in streams} == {(other, "audio"), (other, "video")}
            return subscribers

        def receiving(subscribers: dict[str, Subscriber]) -> bool:
            return all(len(s.frames) == 2 and min(s.frames.values()) >= 10 for s in subscribers.values())

        first = await call()
        await until(lambda: receiving(first), "media between the instances' members")
        before = await store.sfu_room(ROOM)
        assert before is not None and before.generation == 1

        janus.kill()
        for who in names:
            assert await members[who].next_event("sfu.down", timeout=BOUND) == {"type": "sfu.down"}
        janus.start()
        for who in names:
            assert await members[who].next_event("sfu.up", timeout=BOUND) == {"type": "sfu.up"}
        after = await store.sfu_room(ROOM)
        assert after is not None and after.generation == 2 and after.janus_room == before.janus_room
        assert await janus_rooms(janus.url) == [after.janus_room]  # created again once, for both

        again = await call()
        await until(lambda: receiving(again), "media again after Janus restarted")
    finally:
        for peer in peers:
            await peer.close()
        await store.close()


@pytest.mark.e2e
async def test_one_instance_loses_its_janus_session(make_server: MakeServer, redis_url: str, janus: JanusProcess,
                                                    clients: list[SignalingClient]) -> None:
    instances = [await make_server(store=RedisStore.from_url(redis_url), sfu_url=janus.url, sfu_above=0)
                 for _ in range(2)]
    (alice, _), (bob, _) = await joined_member(instances[0], clients, "alice", ROOM), await joined_member(instances[1], clients, "bob", ROOM)
    peers = {name: (Publisher(), Subscriber()) for name in ("alice", "bob", "alice again")}
    store = RedisStore.from_url(redis_url)
    await store.open()
    try:
        bob_feed = await publish_over(bob, peers["bob"][0])
        alice_feed = await publish_over(alice, peers["alice"][0])
        assert await feeds_event(alice, 2) == await feeds_event(bob, 2) == {alice_feed: "alice", bob_feed: "bob"}
        await subscribe_over(alice, peers["alice"][1], [bob_feed])
        before = await store.sfu_room(ROOM)
        assert before is not None

        lost = instances[0].server.delivery.sfu
        assert lost is not None and lost.janus is not None
        async with aiohttp.ClientSession() as http:  # the first instance's session dies (as on a timeout)
            await http.post(f"{janus.url}/{lost.janus.session_id}", json={"janus": "destroy", "transaction": "t"})
        assert await alice.next_event("sfu.down", timeout=BOUND) == {"type": "sfu.down"}
        assert await alice.next_event("sfu.up", timeout=BOUND) == {"type": "sfu.up"}
        assert await store.sfu_room(ROOM) == before  # Janus kept the room: same id, same generation
        assert await store.sfu_feeds(ROOM) == {bob_feed: "bob"}  # alice's feed went with the session

        publisher, subscriber = peers["alice again"]
        new_feed = await publish_over(alice, publisher)
        assert await feeds_event(bob, 2) == {new_feed: "alice", bob_feed: "bob"}  # bob's feed untouched
        await subscribe_over(alice, subscriber, [bob_feed])
        await subscribe_over(bob, peers["bob"][1], [new_feed])
        await until(lambda: all(len(s.frames) == 2 and min(s.frames.values()) >= 10
                                for s in (subscriber, peers["bob"][1])), "media both ways again")
        assert await janus_rooms(janus.url) == [before.janus_room]
    finally:
        for publisher, subscriber in peers.values():
            await publisher.close()
            await subscriber.close()
        await store.close()


@pytest.fixture
async def store(store_kind: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store = SQLiteStore(tmp_path / "rooms.db") if store_kind == "sqlite" else RedisStore.from_url(redis_url)
    await opened.open()
    yield opened
    await opened.close()


async def test_the_stores_sfu_state(store: Store) -> None:
    assert await store.sfu_room(ROOM) is None
    first = SfuRoomRecord(11, secrets.token_hex(16), 1)
    assert await store.claim_sfu_room(ROOM, first) == first
    loser = SfuRoomRecord(12, secrets.token_hex(16), 1)
    assert await store.claim_sfu_room(ROOM, loser) == first  # set if absent: the winner's comes back
    assert await store.sfu_room(ROOM) == first and await store.sfu_room("elsewhere") is None

    assert not await store.sfu_switched(ROOM)
    assert await store.switch_to_sfu(ROOM) is True
    assert await store.switch_to_sfu(ROOM) is False  # decided once
    assert await store.sfu_switched(ROOM) and not await store.sfu_switched("elsewhere")

    await store.set_sfu_feed(ROOM, 2**52 + 1, "alice")
    await store.set_sfu_feed(ROOM, 5, "bob")
    assert await store.sfu_feeds(ROOM) == {2**52 + 1: "alice", 5: "bob"}
    assert await store.drop_sfu_feed(ROOM, 5) is True
    assert await store.drop_sfu_feed(ROOM, 5) is False
    assert await store.sfu_feeds(ROOM) == {2**52 + 1: "alice"}

    stale = SfuRoomRecord(11, first.secret, 1)  # the same generation again: nothing changes
    assert await store.claim_sfu_room(ROOM, stale) == first and await store.sfu_feeds(ROOM) != {}
    bumped = SfuRoomRecord(11, first.secret, 2)  # Janus restarted: the next generation
    assert await store.claim_sfu_room(ROOM, bumped) == bumped
    assert await store.sfu_feeds(ROOM) == {}  # the old Janus's feeds went with it
    assert await store.claim_sfu_room(ROOM, first) == bumped  # an older one never wins

    await store.set_sfu_feed(ROOM, 7, "carol")
    await store.clear_sfu(ROOM)
    assert await store.sfu_room(ROOM) is None and await store.sfu_feeds(ROOM) == {}
    assert not await store.sfu_switched(ROOM)
