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
  is live (the store remembers it) until the room is empty everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from janus_peers import janus  # noqa: F401  (fixture)

from conftest import BOUND, until
from media.call_peer import CallPeer
from media.cli.janus import JanusProcess
from media.sinks import VerifyingSink
from signaling.client import SignalingClient
from signaling.janus import JanusSession
from signaling.redis_store import RedisStore
from signaling.server import RunningServer

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


def sink(peer: CallPeer) -> VerifyingSink:
    verifying = peer.sinks[0]
    assert isinstance(verifying, VerifyingSink)
    return verifying


def receiving_all(peers: list[CallPeer], at_least: int) -> bool:
    return all(sink(p).frames(q.identity, kind) >= at_least
               for p in peers for q in peers if q is not p for kind in ("audio", "video"))


def same_group(peers: list[CallPeer]) -> bool:
    names = tuple(sorted(p.identity for p in peers))
    statuses = [p.status() for p in peers]
    return (all(s.members == names for s in statuses) and len({s.epoch for s in statuses}) == 1
            and len({s.verification for s in statuses}) == 1)


@pytest.fixture
async def call_peers() -> AsyncIterator[list[CallPeer]]:
    peers: list[CallPeer] = []
    yield peers
    for peer in peers:
        await peer.stop()


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


async def _member(server: RunningServer, clients: list[SignalingClient],
                  identity: str) -> tuple[SignalingClient, dict[str, Any]]:
    client = SignalingClient(server.ws_url, ROOM, server.server.tokens.mint(ROOM, identity, 600))
    clients.append(client)
    return client, await client.connect()


async def test_the_switch_counts_both_instances_and_holds_while_the_room_is_live(
        make_server: MakeServer, redis_url: str, clients: list[SignalingClient]) -> None:
    # Janus never answers here: the topology is decided without it
    instances = [await make_server(store=RedisStore.from_url(redis_url), sfu_url="http://127.0.0.1:9/janus",
                                   sfu_above=2) for _ in range(2)]
    alice, reply = await _member(instances[0], clients, "alice")
    assert reply["topology"] == "mesh"
    bob, reply = await _member(instances[1], clients, "bob")
    assert reply["topology"] == "mesh"  # two connected, one per instance: not above 2
    carol, reply = await _member(instances[0], clients, "carol")
    assert reply["topology"] == "sfu"  # the third, counted over both instances
    for member in (alice, bob):  # alice on carol's instance, bob through the store's signal
        assert await member.next_event("topology") == {"type": "topology", "topology": "sfu"}

    # never back while live: bob leaves and comes back with only two connected
    await carol.leave()
    await bob.leave()
    await until(lambda: ROOM not in instances[1].server.delivery.sfu.rooms, "bob's instance let go")
    bob, reply = await _member(instances[1], clients, "bob")
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
    alice, reply = await _member(instances[0], clients, "alice")
    assert reply["topology"] == "mesh"
