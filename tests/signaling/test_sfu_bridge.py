"""The server's SFU bridge (signaling.sfu; issue 16, docs/protocol.md "SFU").

The topology decision and refusals need no Janus.  Against a private Janus
(media.cli.janus): two members publish and subscribe through the bridge with
raw aiortc connections and receive each other's media; the Janus room refuses
a direct publish without e2ee; a SIGKILLed Janus gives ``sfu.down``, its
restart ``sfu.up`` and members publish again (the room re-created under the
same id, one generation up; a session lost while Janus lives finds its room
there and keeps it); the Janus room is destroyed once the room is vacated.
The bridge keeps the room's SFU state in a store (SQLite here; several
instances over Redis: test_sfu_multi_instance.py).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from janus_peers import (Publisher, Subscriber, feeds_event, joined_member, publish_over,  # noqa: F401
                         subscribe_over, janus)  # (janus: the fixture)

from conftest import BOUND, until
from media.cli.janus import JanusProcess
from signaling.client import SignalingClient
from signaling.errors import ErrorCode, SignalingError
from signaling.janus import JanusSession, SfuRefused
from signaling.sfu import SfuBridge
from signaling.sqlite_store import SQLiteStore
from signaling.store import SfuRoomRecord

ROOM = "room-a"
#: the token secret of the servers make_server starts for this module
SECRET = b"s" * 32


class Pushed:
    """The frames a bridge pushed: (room, identity or None for all, frame)."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, str | None, dict[str, Any]]] = []

    async def __call__(self, room: str, identity: str | None, frame: dict[str, Any]) -> None:
        self.frames.append((room, identity, frame))

    def of(self, kind: str) -> list[tuple[str, str | None, dict[str, Any]]]:
        return [entry for entry in self.frames if entry[2]["type"] == kind]


@pytest.fixture
def pushed() -> Pushed:
    return Pushed()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "rooms.db")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def bridge(janus: JanusProcess, pushed: Pushed, store: SQLiteStore) -> AsyncIterator[SfuBridge]:
    sfu = SfuBridge(janus.url, above=0, send=pushed, store=store, instance="one")
    await sfu.start()
    yield sfu
    await sfu.close()


async def test_topology_goes_sfu_above_the_threshold_and_stays(pushed: Pushed, store: SQLiteStore) -> None:
    sfu = SfuBridge("http://127.0.0.1:9/janus", above=2, send=pushed, store=store, instance="one")  # never contacted
    assert await sfu.joined(ROOM, "alice", 1) == "mesh"
    assert await sfu.joined(ROOM, "bob", 2) == "mesh"
    assert pushed.frames == []
    assert await sfu.joined(ROOM, "carol", 3) == "sfu"
    assert pushed.frames == [(ROOM, "alice", {"type": "topology", "topology": "sfu"}),
                             (ROOM, "bob", {"type": "topology", "topology": "sfu"})]
    sfu.left(ROOM, "carol")
    assert await sfu.joined(ROOM, "dave", 3) == "sfu" and sfu.topology(ROOM) == "sfu"  # never back while live
    assert await sfu.joined("room-b", "erin", 1) == "mesh"
    for who in ("alice", "bob", "dave"):
        sfu.left(ROOM, who)
    assert sfu.topology(ROOM) == "mesh" and await store.sfu_switched(ROOM)  # the store remembers the switch
    assert await sfu.joined(ROOM, "alice", 1) == "sfu"  # until the room is empty on every instance
    sfu.left(ROOM, "alice")
    await sfu.vacated(ROOM)
    assert await sfu.joined(ROOM, "alice", 1) == "mesh"  # the call ended: a new call starts as a mesh
    with pytest.raises(ValueError):
        SfuBridge("http://127.0.0.1:9/janus", above=-1, send=pushed, store=store, instance="one")


async def test_refusals_without_janus(pushed: Pushed, store: SQLiteStore) -> None:
    sfu = SfuBridge("http://127.0.0.1:9/janus", above=1, send=pushed, store=store, instance="one")
    await sfu.joined(ROOM, "alice", 1)
    offer = {"type": "sfu.publish", "jsep": {"type": "offer", "sdp": "v=0\r\n"}}
    with pytest.raises(SignalingError) as mesh:
        await sfu.handle(ROOM, "alice", offer)
    assert mesh.value.code == ErrorCode.SFU_UNAVAILABLE
    with pytest.raises(SignalingError) as stranger:
        await sfu.handle(ROOM, "mallory", offer)
    assert stranger.value.code == ErrorCode.NOT_MEMBER
    with pytest.raises(SignalingError) as elsewhere:
        await sfu.handle("room-b", "alice", offer)
    assert elsewhere.value.code == ErrorCode.NOT_MEMBER
    await sfu.joined(ROOM, "bob", 2)
    with pytest.raises(SignalingError) as down:  # SFU room, Janus never reached
        await sfu.handle(ROOM, "alice", offer)
    assert down.value.code == ErrorCode.SFU_UNAVAILABLE


@pytest.mark.e2e
@pytest.mark.parametrize("message", [
    {"type": "sfu.publish"},
    {"type": "sfu.publish", "jsep": {"type": "answer", "sdp": "v=0\r\n"}},
    {"type": "sfu.publish", "jsep": {"type": "offer", "sdp": 5}},
    {"type": "sfu.subscribe", "feeds": "1"},
    {"type": "sfu.subscribe", "feeds": [1.5]},
    {"type": "sfu.subscribe", "feeds": [True]},
    {"type": "sfu.subscribe", "feeds": [-1]},
    {"type": "sfu.start", "jsep": {"type": "answer", "sdp": "v=0\r\n"}},  # nothing to answer yet
    {"type": "sfu.nothing"},
])
async def test_bad_requests_are_refused(bridge: SfuBridge, message: dict[str, Any]) -> None:
    await bridge.joined(ROOM, "alice", 1)
    with pytest.raises(SignalingError) as refused:
        await bridge.handle(ROOM, "alice", message)
    assert refused.value.code in (ErrorCode.BAD_MESSAGE, ErrorCode.UNKNOWN_TYPE)


async def _publish(bridge: SfuBridge, who: str, publisher: Publisher) -> int:
    ack = await bridge.handle(ROOM, who, {"type": "sfu.publish", "jsep": {"type": "offer",
                                                                         "sdp": await publisher.offer()}})
    assert ack["jsep"]["type"] == "answer" and isinstance(ack["feed"], int)
    await publisher.accept(ack["jsep"]["sdp"])
    return int(ack["feed"])


async def _subscribe(bridge: SfuBridge, who: str, subscriber: Subscriber, feeds: list[int]) -> list[dict[str, Any]]:
    ack = await bridge.handle(ROOM, who, {"type": "sfu.subscribe", "feeds": feeds})
    if ack["jsep"] is not None:
        answer = await subscriber.answer(ack["jsep"]["sdp"])
        assert await bridge.handle(ROOM, who, {"type": "sfu.start", "jsep": {"type": "answer", "sdp": answer}}) == {}
    return list(ack["streams"])


async def _until_destroyed(url: str, room: int) -> None:
    """Wait until Janus no longer has ``room`` (a departed member's release runs in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while await _exists(url, room):
        assert loop.time() < deadline, f"Janus room not destroyed within {BOUND} s"
        await asyncio.sleep(0.05)


def _announced(pushed: Pushed) -> dict[int, str]:
    """The last ``sfu.feeds`` event: feed -> from."""
    feeds = pushed.of("sfu.feeds")
    return {f["feed"]: f["from"] for f in feeds[-1][2]["feeds"]} if feeds else {}


async def _exists(url: str, room: int) -> bool:
    probe = JanusSession(url)
    await probe.create()
    try:
        data, _ = await (await probe.attach()).request({"request": "exists", "room": room})
        return bool(data["exists"])
    finally:
        await probe.destroy()


@pytest.mark.e2e
async def test_two_members_exchange_media_through_the_bridge(bridge: SfuBridge, pushed: Pushed,
                                                             janus: JanusProcess) -> None:
    names = ("alice", "bob")
    publishers = {who: Publisher() for who in names}
    subscribers = {who: Subscriber() for who in names}
    try:
        for count, who in enumerate(names, 1):
            assert await bridge.joined(ROOM, who, count) == "sfu"
        feeds = {who: await _publish(bridge, who, publishers[who]) for who in names}
        await until(lambda: _announced(pushed) == {feeds["alice"]: "alice", feeds["bob"]: "bob"}, "both feeds")
        assert all(identity is None for _, identity, _ in pushed.of("sfu.feeds"))
        await bridge.joined(ROOM, "carol", 3)  # a joiner learns the published feeds
        await until(lambda: pushed.of("sfu.feeds")[-1][1] == "carol", "the feeds sent to the joiner")
        assert _announced(pushed) == {feeds["alice"]: "alice", feeds["bob"]: "bob"}
        bridge.left(ROOM, "carol")

        janus_room = bridge.rooms[ROOM].janus_room
        assert janus_room is not None and await _exists(janus.url, janus_room)
        with pytest.raises(SignalingError) as own:
            await bridge.handle(ROOM, "alice", {"type": "sfu.subscribe", "feeds": [feeds["alice"]]})
        assert own.value.code == ErrorCode.BAD_MESSAGE

        for me, other in (("alice", "bob"), ("bob", "alice")):
            streams = await _subscribe(bridge, me, subscribers[me], [feeds[other]])
            assert sorted(s["kind"] for s in streams) == ["audio", "video"]
            assert {(s["feed"], s["from"]) for s in streams} == {(feeds[other], other)}
        for me in names:
            await until(lambda: len(subscribers[me].frames) == 2 and min(subscribers[me].frames.values()) >= 10,
                        f"{me} receives the other's audio and video")
        again = await bridge.handle(ROOM, "alice", {"type": "sfu.subscribe", "feeds": [feeds["bob"]]})
        assert again["jsep"] is None and len(again["streams"]) == 2  # nothing changed

        # A direct publish without e2ee into the bridge's Janus room is refused by Janus itself.
        raw = JanusSession(janus.url)
        await raw.create()
        clear = Publisher()
        try:
            with pytest.raises(SfuRefused) as refused:
                await (await raw.attach()).request(
                    {"request": "joinandconfigure", "room": janus_room, "ptype": "publisher"},
                    {"type": "offer", "sdp": await clear.offer()})
            assert refused.value.janus_code == 433
        finally:
            await clear.close()
            await raw.destroy()

        bridge.left(ROOM, "bob")
        await until(lambda: _announced(pushed) == {feeds["alice"]: "alice"}, "bob's feed withdrawn")
        assert await _exists(janus.url, janus_room)
        bridge.left(ROOM, "alice")
        assert ROOM not in bridge.rooms
        assert await _exists(janus.url, janus_room)  # the room may have members on other instances
        await bridge.vacated(ROOM)  # it has none on any (the server calls this)
        assert not await _exists(janus.url, janus_room)
        assert await bridge.store.sfu_room(ROOM) is None and await bridge.store.sfu_feeds(ROOM) == {}
    finally:
        for peer in [*publishers.values(), *subscribers.values()]:
            await peer.close()


@pytest.mark.e2e
async def test_janus_killed_and_restarted(bridge: SfuBridge, pushed: Pushed, janus: JanusProcess) -> None:
    publisher = Publisher()
    try:
        await bridge.joined(ROOM, "alice", 1)
        await bridge.joined(ROOM, "bob", 2)
        await _publish(bridge, "alice", publisher)
        first_room = bridge.rooms[ROOM].janus_room
        janus.kill()
        await until(lambda: pushed.of("sfu.down") == [(ROOM, None, {"type": "sfu.down"})], "sfu.down")
        with pytest.raises(SignalingError) as down:
            await bridge.handle(ROOM, "bob", {"type": "sfu.subscribe", "feeds": []})
        assert down.value.code == ErrorCode.SFU_UNAVAILABLE
        janus.start()
        await until(lambda: pushed.of("sfu.up") == [(ROOM, None, {"type": "sfu.up"})], "sfu.up")
        state = bridge.rooms[ROOM]
        assert state.janus_room == first_room and state.generation == 2  # re-created, one generation up
        assert await _exists(janus.url, first_room)
        record = await bridge.store.sfu_room(ROOM)
        assert record is not None and (record.janus_room, record.generation) == (first_room, 2)
        assert await bridge.store.sfu_feeds(ROOM) == {}  # the old Janus's feeds are gone

        await publisher.close()
        publisher = Publisher()  # the client republishes on a new connection
        feed = await _publish(bridge, "alice", publisher)
        await until(lambda: _announced(pushed) == {feed: "alice"}, "alice's new feed")
    finally:
        await publisher.close()


async def test_secret_stays_out_of_reprs(pushed: Pushed, store: SQLiteStore) -> None:
    sfu = SfuBridge("http://127.0.0.1:9/janus", above=0, send=pushed, store=store, instance="one")
    await sfu.joined(ROOM, "alice", 1)
    state = sfu.rooms[ROOM]
    state.secret = secrets.token_hex(16)
    assert state.secret not in repr(state)
    record = SfuRoomRecord(7, secrets.token_hex(16), 1)
    assert record.secret not in repr(record) and "7" in repr(record)


# -- through a real signaling server --------------------------------------------------------










async def test_topology_in_the_join_reply_and_the_switch(make_server: Any, clients: list[SignalingClient]) -> None:
    mesh_only = await make_server()
    alone, reply = await joined_member(mesh_only, clients, "zoe", "room-m")
    assert reply["topology"] == "mesh"
    with pytest.raises(SignalingError) as no_sfu:
        await alone.request("sfu.subscribe", feeds=[])
    assert no_sfu.value.code == ErrorCode.SFU_UNAVAILABLE

    server = await make_server(sfu_url="http://127.0.0.1:9/janus", sfu_above=1)  # Janus never answers
    alice, reply = await joined_member(server, clients, "alice", ROOM)
    assert reply["topology"] == "mesh"
    with pytest.raises(SignalingError) as mesh:
        await alice.request("sfu.subscribe", feeds=[])
    assert mesh.value.code == ErrorCode.SFU_UNAVAILABLE
    bob, reply = await joined_member(server, clients, "bob", ROOM)
    assert reply["topology"] == "sfu"
    assert await alice.next_event("topology") == {"type": "topology", "topology": "sfu"}
    with pytest.raises(SignalingError) as down:
        await bob.request("sfu.subscribe", feeds=[])
    assert down.value.code == ErrorCode.SFU_UNAVAILABLE


@pytest.mark.e2e
async def test_a_connection_that_has_not_joined_is_refused(make_server: Any, janus: JanusProcess) -> None:
    server = await make_server(sfu_url=janus.url, sfu_above=0)
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await ws.send_json({"type": "sfu.subscribe", "id": 1, "feeds": []})
        reply = await ws.receive_json(timeout=10)
    assert reply["type"] == "error" and reply["code"] == ErrorCode.NOT_JOINED


@pytest.mark.e2e
async def test_members_exchange_media_through_the_server(make_server: Any, clients: list[SignalingClient],
                                                         janus: JanusProcess) -> None:
    server = await make_server(sfu_url=janus.url, sfu_above=0)
    names = ("alice", "bob")
    joined = {who: await joined_member(server, clients, who, ROOM) for who in names}
    assert {reply["topology"] for _, reply in joined.values()} == {"sfu"}
    members = {who: client for who, (client, _) in joined.items()}
    publishers = {who: Publisher() for who in names}
    subscribers = {who: Subscriber() for who in names}
    try:
        feeds = {who: await publish_over(members[who], publishers[who]) for who in names}
        for who in names:
            assert await feeds_event(members[who], 2) == {feeds["alice"]: "alice", feeds["bob"]: "bob"}
        for me, other in (("alice", "bob"), ("bob", "alice")):
            streams = await subscribe_over(members[me], subscribers[me], [feeds[other]])
            assert {(s["feed"], s["from"], s["kind"]) for s in streams} == {(feeds[other], other, "audio"),
                                                                           (feeds[other], other, "video")}
        for me in names:
            await until(lambda: len(subscribers[me].frames) == 2 and min(subscribers[me].frames.values()) >= 10,
                        f"{me} receives the other's audio and video through the server and Janus")

        # a member of another room cannot reach this room's feeds
        carol, _ = await joined_member(server, clients, "carol", "room-b")
        stranger = await carol.request("sfu.subscribe", feeds=[feeds["alice"], feeds["bob"]])
        assert stranger == {"type": "ack", "re": stranger["re"], "jsep": None, "streams": []}

        # the bridge's Janus room refuses a publish without e2ee (the bridge always adds it)
        janus_room = server.server.delivery.sfu.rooms[ROOM].janus_room
        raw = JanusSession(janus.url)
        await raw.create()
        clear = Publisher()
        try:
            with pytest.raises(SfuRefused) as refused:
                await (await raw.attach()).request(
                    {"request": "joinandconfigure", "room": janus_room, "ptype": "publisher"},
                    {"type": "offer", "sdp": await clear.offer()})
            assert refused.value.janus_code == 433
        finally:
            await clear.close()
            await raw.destroy()

        await members["bob"].leave()
        assert await feeds_event(members["alice"], 1) == {feeds["alice"]: "alice"}
        await members["alice"].leave()
        await until(lambda: ROOM not in server.server.delivery.sfu.rooms, "the room forgotten")
        await _until_destroyed(janus.url, janus_room)
    finally:
        for peer in [*publishers.values(), *subscribers.values()]:
            await peer.close()


@pytest.mark.e2e
async def test_janus_restart_through_the_server(make_server: Any, clients: list[SignalingClient],
                                                janus: JanusProcess) -> None:
    server = await make_server(sfu_url=janus.url, sfu_above=0)
    (alice, _), (bob, _) = await joined_member(server, clients, "alice", ROOM), await joined_member(server, clients, "bob", ROOM)
    publisher = Publisher()
    try:
        await publish_over(alice, publisher)
        await feeds_event(bob, 1)
        janus.kill()
        for member in (alice, bob):
            assert await member.next_event("sfu.down", timeout=30) == {"type": "sfu.down"}
        with pytest.raises(SignalingError) as down:
            await bob.request("sfu.subscribe", feeds=[])
        assert down.value.code == ErrorCode.SFU_UNAVAILABLE
        janus.start()
        for member in (alice, bob):
            assert await member.next_event("sfu.up", timeout=30) == {"type": "sfu.up"}
        await publisher.close()
        publisher = Publisher()
        feed = await publish_over(alice, publisher)
        assert await feeds_event(bob, 1) == {feed: "alice"}
    finally:
        await publisher.close()


@pytest.mark.e2e
async def test_session_lost_while_janus_lives(pushed: Pushed, janus: JanusProcess, store: SQLiteStore) -> None:
    bridge = SfuBridge(janus.url, above=0, send=pushed, store=store, instance="one", keepalive=0.2)
    await bridge.start()
    await bridge.joined(ROOM, "alice", 1)
    publisher = Publisher()
    try:
        await _publish(bridge, "alice", publisher)
        first_room = bridge.rooms[ROOM].janus_room
        assert bridge.janus is not None and first_room is not None
        async with aiohttp.ClientSession() as http:  # the session dies under the bridge (as on a timeout)
            await http.post(f"{janus.url}/{bridge.janus.session_id}", json={"janus": "destroy", "transaction": "t"})
        await until(lambda: len(pushed.of("sfu.down")) == 1 and len(pushed.of("sfu.up")) == 1, "sfu.down then sfu.up")
        # Janus still has the room (shared by every instance): the bridge keeps it, same generation
        assert bridge.rooms[ROOM].janus_room == first_room and bridge.rooms[ROOM].generation == 1
        assert await _exists(janus.url, first_room)
        assert await store.sfu_feeds(ROOM) == {}  # alice's feed went with the session
    finally:
        await publisher.close()
        await bridge.close()


@pytest.mark.e2e
async def test_close_while_members_leave(pushed: Pushed, janus: JanusProcess, store: SQLiteStore) -> None:
    """close() walks the rooms with awaits inside while members' departures pop rooms (a server
    stopping while its connections close): it finishes, and destroys every Janus room."""
    bridge = SfuBridge(janus.url, above=0, send=pushed, store=store, instance="one")
    await bridge.start()
    rooms = [f"room-{i}" for i in range(4)]
    janus_rooms = []
    for room in rooms:
        await bridge.joined(room, "alice", 1)
        await bridge.handle(room, "alice", {"type": "sfu.subscribe", "feeds": []})  # creates its Janus room
        janus_rooms.append(bridge.rooms[room].janus_room)
    assert [await _exists(janus.url, janus_room) for janus_room in janus_rooms] == [True] * len(rooms)
    closing = asyncio.ensure_future(bridge.close())
    await asyncio.sleep(0)  # close() is under way: the departures come in meanwhile
    for room in rooms:
        bridge.left(room, "alice")
        await asyncio.sleep(0.01)
    await closing
    assert bridge.rooms == {}
    for room, janus_room in zip(rooms, janus_rooms):
        assert not await _exists(janus.url, janus_room)
        assert await store.sfu_room(room) is None


@pytest.mark.e2e
async def test_a_publish_into_a_room_vacated_meanwhile_claims_it_afresh(bridge: SfuBridge, janus: JanusProcess) -> None:
    """Another instance saw the room empty and destroyed its Janus room while a member joined here
    (the joiner's instance had the room already): the member's publish claims a new one."""
    await bridge.joined(ROOM, "alice", 1)
    await bridge.handle(ROOM, "alice", {"type": "sfu.subscribe", "feeds": []})
    first_room = bridge.rooms[ROOM].janus_room
    assert first_room is not None
    await bridge.vacated(ROOM)  # as the other instance does
    assert not await _exists(janus.url, first_room)
    publisher = Publisher()
    try:
        feed = await _publish(bridge, "alice", publisher)
        record = await bridge.store.sfu_room(ROOM)
        assert record is not None and record.janus_room != first_room
        assert bridge.rooms[ROOM].janus_room == record.janus_room and await _exists(janus.url, record.janus_room)
        await until(lambda: feed in bridge.rooms[ROOM].feeds, "the feed announced")
    finally:
        await publisher.close()


@pytest.mark.e2e
async def test_feeds_left_behind_by_a_dead_instance_go(bridge: SfuBridge, pushed: Pushed) -> None:
    """Feeds another instance wrote and can no longer withdraw (it died): those of members it
    held go when their presence is swept (dropped), and a member back here that publishes
    again replaces its old one."""
    await bridge.joined(ROOM, "alice", 1)
    await bridge.store.set_sfu_feed(ROOM, 101, "mallory")  # as written by an instance that died since
    await bridge.store.set_sfu_feed(ROOM, 102, "alice")  # alice's, on that instance, before she came here
    await bridge.dropped(ROOM, ["mallory"])
    assert await bridge.store.sfu_feeds(ROOM) == {102: "alice"}
    assert _announced(pushed) == {102: "alice"}
    publisher = Publisher()
    try:
        feed = await _publish(bridge, "alice", publisher)
        await until(lambda: _announced(pushed) == {feed: "alice"}, "alice's new feed replaces her old one")
        assert await bridge.store.sfu_feeds(ROOM) == {feed: "alice"}
    finally:
        await publisher.close()
