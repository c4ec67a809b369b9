"""The signaling server over real WebSockets on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conftest import BOUND, expect_error, until
from signaling.client import SignalingClient, fetch_token
from signaling.config import DEFAULT_STATIC_DIR
from signaling.errors import ErrorCode, SignalingError
from signaling.server import RunningServer

SECRET = b"s" * 32
GROUP = b"\x01group"
ROOM = "room-1"

Connect = Callable[..., Awaitable[SignalingClient]]


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[RunningServer]]) -> RunningServer:
    return await make_server()


def client_for(server: RunningServer, clients: list[SignalingClient], identity: str,
               room: str = ROOM) -> SignalingClient:
    token = server.server.tokens.mint(room, identity, 600)
    client = SignalingClient(server.ws_url, room, token)
    clients.append(client)
    return client


@pytest.fixture
def connect(server: RunningServer, clients: list[SignalingClient]) -> Connect:
    async def _connect(identity: str, room: str = ROOM, **join: Any) -> SignalingClient:
        client = client_for(server, clients, identity, room)
        await client.connect(**join)
        return client
    return _connect


async def no_event(client: SignalingClient, *types: str, wait: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        await client.next_event(*types, timeout=wait)


# -- join, leave, presence ------------------------------------------------------------------


async def test_join_leave_and_presence(connect: Connect) -> None:
    alice = await connect("alice")
    assert alice.join_reply["members"] == [] and alice.join_reply["epoch"] is None
    bob = await connect("bob")
    assert bob.join_reply["members"] == ["alice"]
    assert await alice.next_event("presence") == {"type": "presence", "event": "join", "identity": "bob"}
    carol = await connect("carol")
    assert carol.join_reply["members"] == ["alice", "bob"]
    assert (await alice.next_event("presence"))["identity"] == "carol"
    assert (await bob.next_event("presence"))["identity"] == "carol"
    await bob.leave()
    assert await alice.next_event("presence") == {"type": "presence", "event": "leave", "identity": "bob"}
    assert (await bob.next_event("closed"))["code"] == 1000
    await carol.close()  # a plain disconnect is a departure too
    assert await alice.next_event("presence") == {"type": "presence", "event": "leave", "identity": "carol"}


async def test_rejoin_replaces_the_older_connection(connect: Connect) -> None:
    alice = await connect("alice")
    bob1 = await connect("bob")
    await alice.next_event("presence")
    bob2 = await connect("bob")
    assert (await bob1.next_event("error"))["code"] == "replaced"
    assert (await bob1.next_event("closed"))["code"] == 4001
    assert await alice.next_event("presence") == {"type": "presence", "event": "join", "identity": "bob"}
    await no_event(alice, "presence")  # the replaced connection's end is no departure
    await alice.signal("offer", "bob", {"sdp": "x"})
    assert (await bob2.next_event("offer"))["from"] == "alice"


async def test_rooms_are_separate(connect: Connect) -> None:
    alice = await connect("alice", room="a")
    bob = await connect("bob", room="b")
    assert bob.join_reply["members"] == []
    await alice.send_application(0, b"ciphertext")
    await no_event(bob)


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("token_kind, code", [
    ("missing", ErrorCode.UNAUTHORIZED),
    ("garbage", ErrorCode.TOKEN_INVALID),
    ("other-secret", ErrorCode.TOKEN_INVALID),
    ("wrong-room", ErrorCode.WRONG_ROOM),
    ("expired", ErrorCode.TOKEN_EXPIRED),
])
async def test_join_refused(server: RunningServer, clients: list[SignalingClient], token_kind: str,
                            code: ErrorCode) -> None:
    from signaling.tokens import TokenAuthority
    tokens = server.server.tokens
    token = {
        "missing": "",
        "garbage": "mlscall1.abc.def",
        "other-secret": TokenAuthority(b"o" * 32).mint(ROOM, "mallory", 600),
        "wrong-room": tokens.mint("another-room", "mallory", 600),
        "expired": tokens.mint(ROOM, "mallory", 60, now=1_000_000),
    }[token_kind]
    client = SignalingClient(server.ws_url, ROOM, token)
    clients.append(client)
    error = await expect_error(client.connect(), code)
    assert token not in error.message or not token
    # The connection survives the refusal but may do nothing before joining.
    await expect_error(client.send_application(0, b"x"), ErrorCode.NOT_JOINED)
    assert server.server.rooms == {}


async def test_join_twice_and_join_timeout(make_server: Callable[..., Awaitable[RunningServer]],
                                           clients: list[SignalingClient]) -> None:
    server = await make_server(join_timeout=0.3)
    alice = client_for(server, clients, "alice")
    await alice.connect()
    await expect_error(alice.request("join", room=ROOM, token="t"), ErrorCode.ALREADY_JOINED)
    async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
        error = json.loads((await ws.receive(timeout=5)).data)
        assert error["code"] == "unauthorized"
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4009
    await alice.send_application(0, b"still fine")


# -- KeyPackage directory -------------------------------------------------------------------


async def test_key_package_publish_and_claim(connect: Connect) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    reply = await bob.publish_key_packages([b"kp-1", b"kp-2"])
    assert (reply["stored"], reply["available"]) == (2, 2)
    assert await alice.claim_key_package("bob") == b"kp-1"
    assert await alice.claim_key_package("bob") == b"kp-2"
    await expect_error(alice.claim_key_package("bob"), ErrorCode.NOT_FOUND)
    await expect_error(alice.claim_key_package("nobody"), ErrorCode.NOT_FOUND)
    await expect_error(bob.request("keypackage.publish", key_packages=["%%%"]), ErrorCode.BAD_MESSAGE)
    await expect_error(bob.request("keypackage.publish", key_packages=[]), ErrorCode.BAD_MESSAGE)


async def test_concurrent_claims_take_each_key_package_once(connect: Connect) -> None:
    bob = await connect("bob")
    await bob.publish_key_packages([f"kp-{i}".encode() for i in range(5)])
    claimers = [await connect(f"c{i}") for i in range(10)]
    results = await asyncio.gather(*(c.claim_key_package("bob") for c in claimers),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, bytes)]
    assert sorted(won) == [f"kp-{i}".encode() for i in range(5)]
    assert all(isinstance(r, SignalingError) and r.code == ErrorCode.NOT_FOUND
               for r in results if not isinstance(r, bytes))


async def test_key_package_limit(make_server: Callable[..., Awaitable[RunningServer]],
                                 clients: list[SignalingClient]) -> None:
    server = await make_server(max_key_packages=3)
    bob = client_for(server, clients, "bob")
    await bob.connect()
    await bob.publish_key_packages([b"1", b"2"])
    error = await expect_error(bob.publish_key_packages([b"3", b"4"]), ErrorCode.TOO_MANY_KEY_PACKAGES)
    assert error.details["limit"] == 3
    assert (await bob.publish_key_packages([b"3"]))["available"] == 3


# -- the handshake log ----------------------------------------------------------------------


async def commit_events(client: SignalingClient, count: int) -> list[tuple[int, str, int, bytes]]:
    events = [await client.next_event("commit") for _ in range(count)]
    return [(e["seq"], e["from"], e["epoch"], e["commit"]) for e in events]


async def test_commit_race_has_one_winner_and_one_order(connect: Connect) -> None:
    members = [await connect(f"m{i}") for i in range(10)]
    await members[0].commit(GROUP, 0, b"create")
    rounds = 3
    for epoch in range(1, rounds + 1):
        results = await asyncio.gather(
            *(m.commit(GROUP, epoch, f"{m.identity}@{epoch}".encode()) for m in members),
            return_exceptions=True)
        accepted = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, SignalingError)]
        assert len(accepted) == 1 and len(refused) == 9
        assert accepted[0]["epoch"] == epoch + 1
        for error in refused:
            assert error.code == ErrorCode.CONFLICT
            assert error.details["epoch"] == epoch + 1
            assert f"epoch {epoch + 1}" in error.message
    orders = [await commit_events(m, rounds + 1) for m in members]
    assert all(order == orders[0] for order in orders)
    assert [epoch for _, _, epoch, _ in orders[0]] == list(range(rounds + 1))
    seqs = [seq for seq, _, _, _ in orders[0]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for m in members:
        await no_event(m, "commit", wait=0.05)


async def test_commit_refusals(connect: Connect) -> None:
    alice = await connect("alice")
    await expect_error(alice.propose(GROUP, 0, b"p"), ErrorCode.NO_GROUP)
    assert (await alice.commit(GROUP, 5, b"c5"))["epoch"] == 6  # the first commit registers the group
    error = await expect_error(alice.commit(GROUP, 5, b"again"), ErrorCode.CONFLICT)
    assert error.details["epoch"] == 6
    await expect_error(alice.commit(GROUP, 7, b"ahead"), ErrorCode.CONFLICT)
    await expect_error(alice.commit(b"other", 6, b"c"), ErrorCode.WRONG_GROUP)
    await expect_error(alice.request("commit", group_id="Zw==", epoch=-1, commit="Yw=="),
                       ErrorCode.BAD_MESSAGE)
    await expect_error(alice.request("commit", group_id="Zw==", epoch=6), ErrorCode.BAD_MESSAGE)
    bob = await connect("bob")
    assert bob.join_reply["group_id"] == GROUP and bob.join_reply["epoch"] == 6


async def test_proposals_fan_out(connect: Connect) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    await alice.commit(GROUP, 0, b"c0")
    reply = await bob.propose(GROUP, 1, b"add-carol")
    for member in (alice, bob):
        event = await member.next_event("proposal")
        assert (event["seq"], event["from"], event["proposal"]) == (reply["seq"], "bob", b"add-carol")
    await expect_error(bob.propose(GROUP, 0, b"stale"), ErrorCode.CONFLICT)


async def test_application_messages_fan_out_to_others(connect: Connect) -> None:
    alice, bob, carol = await connect("alice"), await connect("bob"), await connect("carol")
    seq = await alice.send_application(0, b"\x00ciphertext")
    for member in (bob, carol):
        event = await member.next_event("application")
        assert (event["seq"], event["from"], event["epoch"], event["ciphertext"]) == (
            seq, "alice", 0, b"\x00ciphertext")
    await no_event(alice, "application")


async def test_welcome_routed_to_the_added_member(connect: Connect) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    await alice.commit(GROUP, 0, b"c0", welcomes={"bob": b"welcome-bob", "carol": b"welcome-carol"})
    welcome = await bob.next_event("welcome")
    assert (welcome["welcome"], welcome["epoch"], welcome["from"]) == (b"welcome-bob", 1, "alice")
    await no_event(alice, "welcome")
    await alice.send_application(1, b"after")
    # carol was offline: she gets her Welcome, and what followed it, when she joins.
    carol = await connect("carol")
    assert carol.join_reply["backlog"] == 2
    event = await carol.next_event()
    assert (event["type"], event["welcome"], event["epoch"]) == ("welcome", b"welcome-carol", 1)
    assert (await carol.next_event())["ciphertext"] == b"after"
    # dave has no Welcome: a fresh join replays nothing.
    dave = await connect("dave")
    assert dave.join_reply["backlog"] == 0


async def test_reconnect_catches_up_without_gaps_or_duplicates(connect: Connect) -> None:
    alice, bob = await connect("alice"), await connect("bob")
    await alice.commit(GROUP, 0, b"c0")
    await alice.send_application(1, b"m1")
    await bob.next_event("commit")
    await bob.next_event("application")
    cursor = bob.last_seq
    await bob.close()
    await alice.next_event("presence")
    missed = [await alice.send_application(1, b"m2")]
    missed.append((await alice.commit(GROUP, 1, b"c1"))["seq"])
    missed.append(await alice.send_application(2, b"m3"))
    reply = await bob.reconnect()
    assert reply["backlog"] == 3 and reply["last_seq"] == missed[-1] and reply["epoch"] == 2
    replay = [await bob.next_event("application", "commit") for _ in range(3)]
    assert [e["seq"] for e in replay] == missed and all(s > cursor for s in missed)
    assert [e.get("ciphertext", e.get("commit")) for e in replay] == [b"m2", b"c1", b"m3"]
    await no_event(bob, "application", "commit")
    # live traffic continues after the catch-up
    seq = await alice.send_application(2, b"m4")
    assert (await bob.next_event("application"))["seq"] == seq
    # rejoining from an epoch: everything of that epoch on, whatever was seen before
    erin = await connect("erin", epoch=2)
    assert erin.join_reply["backlog"] == 2
    assert [(await erin.next_event())["ciphertext"] for _ in range(2)] == [b"m3", b"m4"]


async def test_join_during_traffic_sees_every_entry_once_in_order(connect: Connect) -> None:
    alice = await connect("alice")
    flood = asyncio.gather(*(alice.send_application(0, b"m%d" % i) for i in range(200)))
    await asyncio.sleep(0.005)  # part of the flood is stored before bob's join, part after
    bob = await connect("bob", since=0)
    seqs = await flood
    received = [(await bob.next_event("application"))["seq"] for _ in range(200)]
    assert received == sorted(seqs) == list(range(1, 201))
    await no_event(bob, "application", wait=0.05)


# -- WebRTC signaling relay -----------------------------------------------------------------


async def test_offer_answer_candidate_relay(connect: Connect) -> None:
    alice, bob, carol = await connect("alice"), await connect("bob"), await connect("carol")
    await alice.signal("offer", "bob", {"sdp": "v=0 offer"})
    async for event in bob:  # the event stream, presence of carol first
        if event["type"] == "offer":
            assert event == {"type": "offer", "from": "alice", "data": {"sdp": "v=0 offer"}}
            break
        assert event == {"type": "presence", "event": "join", "identity": "carol"}
    await bob.signal("answer", "alice", {"sdp": "v=0 answer"})
    assert (await alice.next_event("answer"))["data"] == {"sdp": "v=0 answer"}
    await bob.signal("candidate", "alice", {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"})
    assert (await alice.next_event("candidate"))["from"] == "bob"
    await no_event(carol, "offer", "answer", "candidate")
    await expect_error(alice.signal("offer", "nobody", {}), ErrorCode.NOT_CONNECTED)
    await expect_error(alice.request("offer", to="bob"), ErrorCode.BAD_MESSAGE)


# -- malformed input and limits -------------------------------------------------------------


@pytest.mark.parametrize("frame, code", [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_message"),
    ('{"type": 7}', "bad_message"),
    ('{"v": 2, "type": "application"}', "unsupported_version"),
    ('{"type": "application", "id": [1]}', "bad_message"),
])
async def test_malformed_frames_get_errors_and_the_connection_lives(connect: Connect, frame: str,
                                                                    code: str) -> None:
    alice = await connect("alice")
    await alice.send_raw(frame)
    error = await alice.next_event("error")
    assert (error["code"], error["re"]) == (code, None)
    assert await alice.send_application(0, b"ok") == 1


async def test_invalid_requests_get_errors_with_their_id(connect: Connect) -> None:
    alice = await connect("alice")
    await expect_error(alice.request("no.such.type"), ErrorCode.UNKNOWN_TYPE)
    await expect_error(alice.request("application", epoch=0, ciphertext="***"), ErrorCode.BAD_MESSAGE)
    await expect_error(alice.request("application", epoch="0", ciphertext="AA=="), ErrorCode.BAD_MESSAGE)
    await expect_error(alice.request("application", epoch=0), ErrorCode.BAD_MESSAGE)
    await expect_error(alice.request("keypackage.claim", identity=""), ErrorCode.BAD_MESSAGE)
    await expect_error(alice.request("commit", group_id="AA==", epoch=0, commit="AA==", welcomes=[1]),
                       ErrorCode.BAD_MESSAGE)
    assert alice._ws is not None
    await alice._ws.send_bytes(b"\x00binary")
    assert (await alice.next_event("error"))["code"] == "bad_message"
    assert await alice.send_application(0, b"still alive") == 1


async def test_oversized_frames(make_server: Callable[..., Awaitable[RunningServer]],
                                clients: list[SignalingClient]) -> None:
    server = await make_server(max_message_bytes=2048)
    alice = client_for(server, clients, "alice")
    await alice.connect()
    await alice.send_raw(json.dumps({"type": "application", "id": 1, "epoch": 0, "ciphertext": "A" * 3000}))
    too_large = await alice.next_event("error")
    assert (too_large["code"], too_large["limit"]) == ("too_large", 2048)
    assert await alice.send_application(0, b"small") == 1
    await alice.send_raw("A" * 5000)  # beyond twice the limit: the connection is closed (1009)
    assert (await alice.next_event("closed"))["code"] == 1009
    bob = client_for(server, clients, "bob")
    await bob.connect()  # the server carries on
    assert bob.join_reply["members"] == []


async def test_rate_limit(make_server: Callable[..., Awaitable[RunningServer]],
                          clients: list[SignalingClient]) -> None:
    server = await make_server(rate_per_second=0.05, rate_burst=5)
    alice = client_for(server, clients, "alice")
    await alice.connect()
    for i in range(8):
        await alice.send_raw(json.dumps({"type": "keypackage.claim", "id": 100 + i, "identity": "x"}))
    codes = [(await alice.next_event("error"))["code"] for _ in range(8)]
    assert codes.count("not_found") == 4 and codes.count("rate_limited") == 4


async def test_room_and_participant_limits(make_server: Callable[..., Awaitable[RunningServer]],
                                           clients: list[SignalingClient]) -> None:
    server = await make_server(max_participants=2, max_rooms=1)
    await client_for(server, clients, "a").connect()
    await client_for(server, clients, "b").connect()
    error = await expect_error(client_for(server, clients, "c").connect(), ErrorCode.ROOM_FULL)
    assert error.details["limit"] == 2
    await expect_error(client_for(server, clients, "d", room="other").connect(), ErrorCode.TOO_MANY_ROOMS)
    await client_for(server, clients, "b").connect()  # a rejoin is no extra participant


# -- HTTP surface ---------------------------------------------------------------------------


async def test_http_health_token_and_key_packages(server: RunningServer,
                                                  clients: list[SignalingClient]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as response:
            assert (await response.json())["status"] == "ok"
        token = await fetch_token(server.url, ROOM, "bob", ttl=120, session=http)
        assert server.server.tokens.verify(token, ROOM).identity == "bob"
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{server.url}/rooms/{ROOM}/keypackages", headers=headers,
                             json={"key_packages": ["a3AtMQ==", "a3AtMg=="]}) as response:
            assert response.status == 200 and (await response.json())["available"] == 2
        async with http.post(f"{server.url}/rooms/{ROOM}/keypackages/bob/claim",
                             headers=headers) as response:
            assert (await response.json())["key_package"] == "a3AtMQ=="
        async with http.post(f"{server.url}/rooms/{ROOM}/keypackages/bob/claim") as response:
            assert response.status == 401 and (await response.json())["code"] == "unauthorized"
        async with http.post(f"{server.url}/rooms/other/keypackages/bob/claim",
                             headers=headers) as response:
            assert response.status == 403 and (await response.json())["code"] == "wrong_room"
        async with http.post(server.url + "/token", json={"room": "bad room", "identity": "x"}) as response:
            assert response.status == 400
        async with http.post(server.url + "/token", data=b"{",
                             headers={"Content-Type": "application/json"}) as response:
            assert response.status == 400 and (await response.json())["code"] == "bad_json"
    # the KeyPackage published over HTTP is the one left for a WebSocket claim
    assert await alice.client.claim_key_package("bob") == packages[1]


async def test_token_endpoint_can_be_disabled(make_server: Callable[..., Awaitable[RunningServer]]) -> None:
    server = await make_server(token_endpoint=False)
    with pytest.raises(SignalingError):
        await fetch_token(server.url, ROOM, "alice")


async def test_static_root(make_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path) -> None:
    static = tmp_path / "web"
    static.mkdir()
    (static / "index.html").write_text("<title>mlscall</title>")
    server = await make_server(static_dir=static)
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/index.html"):
            async with http.get(server.url + path) as response:
                assert response.status == 200 and "mlscall" in await response.text()
        async with http.get(server.url + "/healthz") as response:
            assert response.status == 200


async def test_default_static_root_serves_the_call_page_only(
        make_server: Callable[..., Awaitable[RunningServer]]) -> None:
    """The default root is web/public: the page, never the packages, sources or tests around it."""
    server = await make_server(static_dir=DEFAULT_STATIC_DIR)
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/") as response:
            assert response.status == 200
            assert 'src="dist/main.js"' in await response.text()
        async with http.get(server.url + "/style.css") as response:
            assert response.status == 200
        for path in ("/package.json", "/package-lock.json", "/node_modules/ts-mls/package.json",
                     "/test/helpers.js", "/mls/index.js", "/app/call.js", "/public/index.html",
                     "/../package.json", "/%2e%2e/package.json"):
            async with http.get(server.url + path) as response:
                assert response.status in (403, 404), path


# -- abandoned rooms ----------------------------------------------------------------------------


def connector(server: RunningServer, clients: list[SignalingClient]) -> Connect:
    """``connect(identity, **join)``: a client of ``server`` in ROOM, joined."""
    async def connect(identity: str, **join: Any) -> SignalingClient:
        client = client_for(server, clients, identity)
        await client.connect(**join)
        return client
    return connect


async def _abandoned_room(server: RunningServer, connect: Connect) -> int:
    """alice and bob hold a group (commit, Welcome, KeyPackage, message), then both go;
    returns the last sequence number the room used."""
    alice, bob = await connect("alice"), await connect("bob")
    await bob.publish_key_packages([b"kp-bob"])
    await alice.commit(GROUP, 0, b"c0", welcomes={"bob": b"welcome-bob", "carol": b"welcome-carol"})
    last = await alice.send_application(1, b"bye")
    await alice.leave()
    await bob.close()  # a dropped connection counts as gone too
    room = server.server.rooms
    await until(lambda: ROOM not in room or not room[ROOM].members, "the server saw both go")
    return last


@pytest.mark.parametrize("abandon_after", [0.0, 3600.0])
async def test_a_newcomer_starts_an_abandoned_room_afresh(make_server: Callable[..., Awaitable[RunningServer]],
                                                          clients: list[SignalingClient],
                                                          abandon_after: float) -> None:
    server = await make_server(abandon_after=abandon_after)
    connect = connector(server, clients)

    last = await _abandoned_room(server, connect)
    carol = await connect("carol")
    if abandon_after:  # not long enough: the group stays, carol gets her Welcome
        assert carol.join_reply["group_id"] == GROUP and carol.join_reply["epoch"] == 1
        assert (await carol.next_event("welcome"))["welcome"] == b"welcome-carol"
        return
    assert carol.join_reply["group_id"] is None and carol.join_reply["epoch"] is None
    assert carol.join_reply["backlog"] == 0
    await no_event(carol, "welcome")
    await expect_error(carol.claim_key_package("bob"), ErrorCode.NOT_FOUND)  # the old group's are gone
    reply = await carol.commit(b"\x02new group", 0, b"c0'")  # the room takes a new group
    assert reply["epoch"] == 1 and reply["seq"] > last  # sequence numbers keep counting up
    dave = await connect("dave")
    assert dave.join_reply["group_id"] == b"\x02new group"


async def test_a_returning_member_or_a_present_one_keeps_the_group(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=0.0)
    connect = connector(server, clients)

    await _abandoned_room(server, connect)
    alice = await connect("alice", since=0)  # catching up: a member back, not a newcomer
    assert alice.join_reply["group_id"] == GROUP and alice.join_reply["backlog"] == 1  # the commit
    carol = await connect("carol")  # someone is connected: the group has a member to add her
    assert carol.join_reply["group_id"] == GROUP
    assert (await carol.next_event("welcome"))["welcome"] == b"welcome-carol"


async def test_a_newcomer_left_waiting_by_the_last_member_is_told_the_group_was_dropped(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=0.3)
    connect = connector(server, clients)

    alice, dave = await connect("alice"), await connect("dave")
    await alice.commit(GROUP, 0, b"c0")  # alice's group; dave waits to be added to it
    await dave.publish_key_packages([b"kp-dave"])
    await no_event(dave, "group_reset", wait=0.6)  # alice is here: nothing is abandoned
    await alice.leave()  # ... and goes before adding dave
    await dave.next_event("group_reset", timeout=BOUND)
    assert server.server.rooms[ROOM].waiting == set()
    await expect_error(dave.claim_key_package("dave"), ErrorCode.NOT_FOUND)  # dropped with the group
    reply = await dave.commit(b"\x02dave's group", 0, b"c0'")  # the room takes dave's new group
    assert reply["epoch"] == 1
    erin = await connect("erin")
    assert erin.join_reply["group_id"] == b"\x02dave's group"
    await no_event(erin, "group_reset", wait=0.6)  # dave is a member of the new group


async def test_newcomers_joining_an_abandoned_group_early_are_told_when_it_is_dropped(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=3.0)
    connect = connector(server, clients)

    await _abandoned_room(server, connect)
    dave, erin = await connect("dave"), await connect("erin")  # within the 3 s: the group stays
    assert dave.join_reply["group_id"] == erin.join_reply["group_id"] == GROUP
    for client in (dave, erin):
        assert (await client.next_event("group_reset", timeout=BOUND)) == {"type": "group_reset"}
    frank = await connect("frank")
    assert frank.join_reply["group_id"] is None


async def test_a_member_back_in_time_keeps_the_group_for_the_newcomer_waiting(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=3.0)
    connect = connector(server, clients)

    alice, dave = await connect("alice"), await connect("dave")
    await alice.commit(GROUP, 0, b"c0")
    await alice.close()
    await until(lambda: "alice" not in server.server.rooms[ROOM].members, "the server saw alice go")
    alice = await connect("alice", since=0)  # back within the 3 s, with her state
    assert alice.join_reply["group_id"] == GROUP
    await no_event(dave, "group_reset", wait=3.5)
    await alice.commit(GROUP, 1, b"c1", welcomes={"dave": b"welcome-dave"})
    assert (await dave.next_event("welcome"))["welcome"] == b"welcome-dave"
    assert server.server.rooms[ROOM].waiting == set()


async def test_a_catch_up_from_before_the_pruned_log_is_refused(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(log_epochs=2)
    connect = connector(server, clients)
    alice, bob = await connect("alice"), await connect("bob")
    await alice.commit(GROUP, 0, b"c0", welcomes={"bob": b"welcome-bob"})
    await bob.next_event("welcome")
    away_since = bob.last_seq
    await bob.close()
    seqs = [(await alice.commit(GROUP, epoch, b"c%d" % epoch))["seq"] for epoch in range(1, 5)]
    # at epoch 5 the log starts with the commit that started epoch 3 (made in epoch 2)
    state = await server.server.store.group_state(ROOM)
    assert (state.epoch, state.pruned_seq, state.pruned_epoch) == (5, seqs[1] - 1, 2)
    late = client_for(server, clients, "bob")
    error = await expect_error(late.connect(since=away_since), ErrorCode.LOG_TRUNCATED)
    assert error.details["pruned_seq"] == seqs[1] - 1
    await expect_error(client_for(server, clients, "bob").connect(epoch=2), ErrorCode.LOG_TRUNCATED)
    back = await connect("bob", since=seqs[1] - 1)  # from what is still there: fine
    assert back.join_reply["backlog"] == 3
    assert [(await back.next_event("commit"))["epoch"] for _ in range(3)] == [2, 3, 4]
    assert (await connect("carol")).join_reply["group_id"] == GROUP  # newcomers are unaffected


async def test_a_reset_at_a_newcomers_join_tells_those_already_waiting(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=0.2)
    connect = connector(server, clients)
    alice, dave = await connect("alice"), await connect("dave")
    await alice.commit(GROUP, 0, b"c0")
    await alice.leave()
    room = server.server.rooms[ROOM]
    await until(lambda: room.abandon_timer is not None, "the abandon check scheduled")
    room.abandon_timer.cancel()  # as if erin's join were sequenced before the check
    room.abandon_timer = None
    await asyncio.sleep(0.3)  # past abandon_after
    erin = await connect("erin")  # her join drops the group ...
    assert erin.join_reply["group_id"] is None and erin.join_reply["members"] == ["dave"]
    await dave.next_event("group_reset")  # ... and dave, waiting, is told so
    await no_event(erin, "group_reset")


async def test_a_newcomer_replacing_the_last_members_connection_waits_out_the_window(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=1.5)
    connect = connector(server, clients)
    alice = await connect("alice")
    await alice.commit(GROUP, 0, b"c0", welcomes={"bob": b"welcome-bob"})
    reloaded = await connect("alice")  # a reloaded page: same identity, no state, no Welcome
    await no_event(reloaded, "group_reset", wait=0.8)  # the group's member just left: not yet
    await reloaded.next_event("group_reset")  # then, once abandon_after has passed


async def test_a_catch_up_into_a_room_started_afresh_meets_the_new_group(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=0.0, log_epochs=1)
    connect = connector(server, clients)
    alice = await connect("alice")
    for epoch in range(3):
        await alice.commit(GROUP, epoch, b"c%d" % epoch)
    assert (await server.server.store.group_state(ROOM)).pruned_seq > 0
    await alice.close()
    await until(lambda: ROOM not in server.server.rooms or not server.server.rooms[ROOM].members,
                "alice gone")
    carol = await connect("carol")  # starts the room afresh
    assert carol.join_reply["group_id"] is None and carol.last_seq == carol.join_reply["last_seq"] > 0
    await carol.commit(b"\x02new", 0, b"n0")
    back = await connect("alice", since=1)  # from the old group's log: no refusal, the new group
    assert back.join_reply["group_id"] == b"\x02new"
