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
from ds_participant import Participant, group_of
from mls.inspection import inspect_welcome
from signaling import protocol as p
from signaling.client import SignalingClient, fetch_token
from signaling.config import DEFAULT_STATIC_DIR
from signaling.errors import ErrorCode, SignalingError
from signaling.server import RunningServer

SECRET = b"s" * 32

#: every test runs on each store (tests/store_fixtures.py)
pytestmark = pytest.mark.usefixtures("store_kind")

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
    assert await alice.next_event("presence") == {"type": "presence", "event": "join", "identity": "bob",
                                                  "resumed": False}
    carol = await connect("carol")
    assert carol.join_reply["members"] == ["alice", "bob"]
    assert (await alice.next_event("presence"))["identity"] == "carol"
    assert (await bob.next_event("presence"))["identity"] == "carol"
    await bob.leave()
    assert await alice.next_event("presence") == {"type": "presence", "event": "leave", "identity": "bob",
                                                  "dropped": False}
    assert (await bob.next_event("closed"))["code"] == 1000
    await carol.close()  # a plain disconnect is a departure too
    assert await alice.next_event("presence") == {"type": "presence", "event": "leave", "identity": "carol",
                                                  "dropped": True}


async def test_rejoin_replaces_the_older_connection(connect: Connect) -> None:
    alice = await connect("alice")
    bob1 = await connect("bob")
    await alice.next_event("presence")
    bob2 = await connect("bob")
    assert (await bob1.next_event("error"))["code"] == "replaced"
    assert (await bob1.next_event("closed"))["code"] == 4001
    assert await alice.next_event("presence") == {"type": "presence", "event": "join", "identity": "bob",
                                                  "resumed": False}
    await no_event(alice, "presence")  # the replaced connection's end is no departure
    await alice.signal("offer", "bob", {"sdp": "x"})
    assert (await bob2.next_event("offer"))["from"] == "alice"


async def test_rooms_are_separate(server: RunningServer, clients: list[SignalingClient],
                                  connect: Connect) -> None:
    alice = await Participant.joined(server, clients, "alice", "a")
    bob = await connect("bob", room="b")
    assert bob.join_reply["members"] == []
    await alice.create()
    await alice.client.send_application(0, alice.send(b"ciphertext"))
    await no_event(bob)
    assert bob.join_reply["group_id"] is None and (await connect("carol", room="a")).join_reply["group_id"]


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
    alice = await Participant.joined(server, clients, "alice", ROOM)
    await expect_error(alice.client.request("join", room=ROOM, token="t"), ErrorCode.ALREADY_JOINED)
    async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
        error = json.loads((await ws.receive(timeout=5)).data)
        assert error["code"] == "unauthorized"
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4009
    assert (await alice.create())["epoch"] == 0  # still fine


# -- KeyPackage directory -------------------------------------------------------------------


Join = Callable[..., Awaitable[Participant]]


@pytest.fixture
def join(server: RunningServer, clients: list[SignalingClient]) -> Join:
    """``join(identity, room=ROOM, **join)``: a Participant (its own MLS state) joined to a room."""
    async def _join(identity: str, room: str = ROOM, **options: Any) -> Participant:
        return await Participant.joined(server, clients, identity, room, **options)
    return _join


async def test_key_package_publish_and_claim(join: Join) -> None:
    alice, bob = await join("alice"), await join("bob")
    await alice.create()
    first, second = bob.key_package(), bob.key_package()
    reply = await bob.client.publish_key_packages([first, second])
    assert (reply["stored"], reply["available"]) == (2, 2)
    await expect_error(bob.client.claim_key_package("bob"), ErrorCode.NOT_MEMBER)  # members claim
    assert await alice.client.claim_key_package("bob") == first
    assert await alice.client.claim_key_package("bob") == second
    await expect_error(alice.client.claim_key_package("bob"), ErrorCode.NOT_FOUND)
    await expect_error(alice.client.claim_key_package("nobody"), ErrorCode.NOT_FOUND)
    await expect_error(bob.client.request("keypackage.publish", key_packages=["%%%"]), ErrorCode.BAD_MESSAGE)
    await expect_error(bob.client.request("keypackage.publish", key_packages=[]), ErrorCode.BAD_MESSAGE)
    await expect_error(bob.client.publish_key_packages([b"kp-1"]), ErrorCode.BAD_MESSAGE)  # not MLS
    # a KeyPackage naming someone else is refused, and none of the batch is stored
    error = await expect_error(bob.client.publish_key_packages([bob.key_package(), alice.key_package()]),
                               ErrorCode.IDENTITY_MISMATCH)
    assert "token identity" in error.message
    await expect_error(alice.client.claim_key_package("bob"), ErrorCode.NOT_FOUND)


async def test_concurrent_claims_take_each_key_package_once(server: RunningServer,
                                                            clients: list[SignalingClient],
                                                            join: Join) -> None:
    claimers = await group_of(server, clients, [f"c{i}" for i in range(10)], ROOM)
    bob = await join("bob")
    packages = [bob.key_package() for _ in range(5)]
    await bob.client.publish_key_packages(packages)
    results = await asyncio.gather(*(c.client.claim_key_package("bob") for c in claimers),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, bytes)]
    assert sorted(won) == sorted(packages)
    assert all(isinstance(r, SignalingError) and r.code == ErrorCode.NOT_FOUND
               for r in results if not isinstance(r, bytes))


async def test_key_package_limit(make_server: Callable[..., Awaitable[RunningServer]],
                                 clients: list[SignalingClient]) -> None:
    server = await make_server(max_key_packages=3)
    bob = await Participant.joined(server, clients, "bob", ROOM)
    await bob.publish(2)
    error = await expect_error(bob.publish(2), ErrorCode.TOO_MANY_KEY_PACKAGES)
    assert error.details["limit"] == 3
    assert (await bob.publish(1))["available"] == 3


async def test_claims_are_rate_limited_per_claimer(make_server: Callable[..., Awaitable[RunningServer]],
                                                   clients: list[SignalingClient]) -> None:
    server = await make_server(claim_rate=0.5, claim_burst=3)
    alice, bob = await group_of(server, clients, ["alice", "bob"], ROOM)
    for _ in range(2):  # (adding bob took the first claim of alice's burst)
        await expect_error(alice.client.claim_key_package("carol"), ErrorCode.NOT_FOUND)
    error = await expect_error(alice.client.claim_key_package("carol"), ErrorCode.RATE_LIMITED)
    assert error.details["rate_per_second"] == 0.5
    # another claimer has a bucket of its own
    await expect_error(bob.client.claim_key_package("carol"), ErrorCode.NOT_FOUND)


# -- the handshake log ----------------------------------------------------------------------


async def commit_events(client: SignalingClient, count: int) -> list[tuple[int, str, int, bytes]]:
    events = [await client.next_event("commit") for _ in range(count)]
    return [(e["seq"], e["from"], e["epoch"], e["commit"]) for e in events]


async def test_commit_race_has_one_winner_and_one_order(server: RunningServer,
                                                        clients: list[SignalingClient]) -> None:
    members = await group_of(server, clients, [f"m{i}" for i in range(10)], ROOM)
    rounds = 3
    for epoch in range(1, rounds + 1):
        outputs = [m.view.update() for m in members]
        results = await asyncio.gather(
            *(m.client.commit(m.view.group_id, epoch, out.commit) for m, out in zip(members, outputs)),
            return_exceptions=True)
        accepted = [i for i, r in enumerate(results) if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, SignalingError)]
        assert len(accepted) == 1 and len(refused) == 9
        assert results[accepted[0]]["epoch"] == epoch + 1
        for error in refused:
            assert error.code == ErrorCode.CONFLICT
            assert error.details["epoch"] == epoch + 1
            assert f"epoch {epoch + 1}" in error.message
        for i, member in enumerate(members):  # the winner applies its commit, the others follow it
            if i == accepted[0]:
                member.view.apply_pending_commit()
            else:
                member.view.discard_pending_commit()
                member.view.receive(outputs[accepted[0]].commit)
    assert len({m.view.epoch_authenticator() for m in members}) == 1
    orders = [await commit_events(m.client, rounds + 1) for m in members]
    assert all(order == orders[0] for order in orders)
    assert [epoch for _, _, epoch, _ in orders[0]] == list(range(rounds + 1))
    seqs = [seq for seq, _, _, _ in orders[0]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for m in members:
        await no_event(m.client, "commit", wait=0.05)


async def test_group_creation_and_commit_refusals(join: Join) -> None:
    alice = await join("alice")
    group = alice.mls.group_create(alice.client_id, alice.credential)
    await expect_error(alice.client.propose(group.group_id, 0, group.propose_update().content),
                       ErrorCode.NO_GROUP)
    assert (await alice.client.create_group(group.group_id, 0, group.group_info()))["epoch"] == 0
    alice.group = group
    group.discard_pending_commit()
    other = alice.mls.group_create(alice.client_id, alice.credential)
    error = await expect_error(alice.client.create_group(other.group_id, 0, other.group_info()),
                               ErrorCode.WRONG_GROUP)
    assert error.details["epoch"] == 0
    first = group.update()
    assert (await alice.client.commit(group.group_id, 0, first.commit))["epoch"] == 1
    group.apply_pending_commit()
    error = await expect_error(alice.client.commit(group.group_id, 0, first.commit), ErrorCode.CONFLICT)
    assert error.details["epoch"] == 1 and "epoch 1" in error.message
    await expect_error(alice.client.commit(other.group_id, 0, other.update().commit), ErrorCode.WRONG_GROUP)
    await expect_error(alice.client.request("commit", group_id="Zw==", epoch=-1, commit="Yw=="),
                       ErrorCode.BAD_MESSAGE)
    await expect_error(alice.client.request("commit", group_id="Zw==", epoch=1), ErrorCode.BAD_MESSAGE)
    await expect_error(alice.client.request("group.create", group_id="Zw==", epoch=0), ErrorCode.BAD_MESSAGE)
    bob = await join("bob")
    assert bob.client.join_reply["group_id"] == group.group_id and bob.client.join_reply["epoch"] == 1


async def test_proposals_fan_out(server: RunningServer, clients: list[SignalingClient]) -> None:
    alice, bob = await group_of(server, clients, ["alice", "bob"], ROOM)
    proposal = bob.view.propose_update().content
    reply = await bob.client.propose(bob.view.group_id, 1, proposal)
    for member in (alice, bob):
        event = await member.client.next_event("proposal")
        assert (event["seq"], event["from"], event["proposal"]) == (reply["seq"], "bob", proposal)
    received = alice.view.receive(proposal)  # answered with a commit of bob's proposal (by reference)
    assert received.commit_output is not None
    committed = received.commit_output
    await alice.submit(committed)
    bob.view.receive(committed.commit)
    await expect_error(bob.client.propose(bob.view.group_id, 1, proposal), ErrorCode.CONFLICT)


async def test_an_external_join_of_an_admitted_identity(server: RunningServer, clients: list[SignalingClient],
                                                     join: Join) -> None:
    """An external commit (RFC 9420 §12.4.3.2) is a valid join when its new leaf is the sender's."""
    alice = await join("alice")
    await alice.create()
    group_info = alice.view.group_info()
    mallory = await join("mallory")
    as_alice = mallory.mls.generate_credential("alice").content
    _, forged = mallory.mls.group_join_external(mallory.client_id, as_alice, group_info)
    await expect_error(mallory.client.commit(alice.view.group_id, 0, forged.commit), ErrorCode.IDENTITY_MISMATCH)
    bob = await join("bob")
    bob.group, output = bob.mls.group_join_external(bob.client_id, bob.credential, group_info)
    assert (await bob.client.commit(alice.view.group_id, 0, output.commit))["epoch"] == 1
    alice.view.receive((await alice.client.next_event("commit"))["commit"])
    assert alice.view.epoch_authenticator() == bob.view.epoch_authenticator()
    # bob is a member now: he claims, and sends application messages
    await expect_error(bob.client.claim_key_package("mallory"), ErrorCode.NOT_FOUND)
    await bob.client.send_application(1, bob.send(b"joined"))
    assert alice.view.receive((await alice.client.next_event("application"))["ciphertext"]).content == b"joined"
    # a second external join as bob would give him two leaves
    again = await join("bob")
    _, twice = again.mls.group_join_external(again.client_id, again.credential, bob.view.group_info())
    await expect_error(again.client.commit(alice.view.group_id, 1, twice.commit), ErrorCode.DUPLICATE_IDENTITY)


async def test_application_messages_fan_out_to_others(server: RunningServer,
                                                      clients: list[SignalingClient]) -> None:
    alice, bob, carol = await group_of(server, clients, ["alice", "bob", "carol"], ROOM)
    ciphertext = alice.send(b"hello")
    seq = await alice.client.send_application(1, ciphertext)
    for member in (bob, carol):
        event = await member.client.next_event("application")
        assert (event["seq"], event["from"], event["epoch"], event["ciphertext"]) == (
            seq, "alice", 1, ciphertext)
        assert member.view.receive(event["ciphertext"]).content == b"hello"
    await no_event(alice.client, "application")


async def test_welcome_routed_to_the_added_member(join: Join) -> None:
    alice, bob, carol = await join("alice"), await join("bob"), await join("carol")
    await alice.create()
    await bob.publish()
    await carol.publish()
    await carol.client.close()  # carol goes offline; she was admitted, her KeyPackage waits
    await alice.add(bob, carol)
    welcome = await bob.client.next_event("welcome")
    assert (welcome["epoch"], welcome["from"]) == (1, "alice")
    assert len(inspect_welcome(welcome["welcome"]).key_package_refs) == 2  # one Welcome for both
    await no_event(alice.client, "welcome")
    await alice.client.send_application(1, alice.send(b"after"))
    # carol was offline: she gets her Welcome, and what followed it, when she joins.
    back = await join("carol")
    assert back.client.join_reply["backlog"] == 2
    event = await back.client.next_event()
    assert (event["type"], event["welcome"], event["epoch"]) == ("welcome", welcome["welcome"], 1)
    assert carol.view.receive((await back.client.next_event())["ciphertext"]).content == b"after"
    # dave has no Welcome: a fresh join replays nothing.
    dave = await join("dave")
    assert dave.client.join_reply["backlog"] == 0


async def test_reconnect_catches_up_without_gaps_or_duplicates(server: RunningServer,
                                                               clients: list[SignalingClient],
                                                               join: Join) -> None:
    alice, bob = await group_of(server, clients, ["alice", "bob"], ROOM)
    await alice.client.send_application(1, alice.send(b"m1"))
    await bob.client.next_event("application")
    cursor = bob.client.last_seq
    await bob.client.close()
    await alice.client.next_event("presence")
    messages = {b"m2": alice.send(b"m2")}
    missed = [await alice.client.send_application(1, messages[b"m2"])]
    update = alice.view.update()
    missed.append((await alice.submit(update))["seq"])
    messages[b"m3"] = alice.send(b"m3")
    missed.append(await alice.client.send_application(2, messages[b"m3"]))
    reply = await bob.client.reconnect()
    assert reply["backlog"] == 3 and reply["last_seq"] == missed[-1] and reply["epoch"] == 2
    replay = [await bob.client.next_event("application", "commit") for _ in range(3)]
    assert [e["seq"] for e in replay] == missed and all(s > cursor for s in missed)
    assert [e.get("ciphertext", e.get("commit")) for e in replay] == [messages[b"m2"], update.commit,
                                                                      messages[b"m3"]]
    await no_event(bob.client, "application", "commit")
    # live traffic continues after the catch-up
    seq = await alice.client.send_application(2, alice.send(b"m4"))
    assert (await bob.client.next_event("application"))["seq"] == seq
    # rejoining from an epoch: everything of that epoch on, whatever was seen before
    erin = await join("erin", epoch=2)
    assert erin.client.join_reply["backlog"] == 2
    assert [(await erin.client.next_event())["ciphertext"] for _ in range(2)][0] == messages[b"m3"]


async def test_join_during_traffic_sees_every_entry_once_in_order(join: Join) -> None:
    alice = await join("alice")
    await alice.create()
    created_seq = alice.client.last_seq
    flood = asyncio.gather(*(alice.client.send_application(0, alice.send(b"m%d" % i)) for i in range(200)))
    await asyncio.sleep(0.005)  # part of the flood is stored before bob's join, part after
    bob = await join("bob", since=0)
    seqs = await flood
    received = [(await bob.client.next_event("application"))["seq"] for _ in range(200)]
    assert received == sorted(seqs) == list(range(created_seq + 1, created_seq + 201))
    await no_event(bob.client, "application", wait=0.05)


# -- WebRTC signaling relay -----------------------------------------------------------------


async def test_offer_answer_candidate_relay(connect: Connect) -> None:
    alice, bob, carol = await connect("alice"), await connect("bob"), await connect("carol")
    await alice.signal("offer", "bob", {"sdp": "v=0 offer"})
    async for event in bob:  # the event stream, presence of carol first
        if event["type"] == "offer":
            assert event == {"type": "offer", "from": "alice", "data": {"sdp": "v=0 offer"}}
            break
        assert event == {"type": "presence", "event": "join", "identity": "carol", "resumed": False}
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
async def test_malformed_frames_get_errors_and_the_connection_lives(join: Join, frame: str,
                                                                    code: str) -> None:
    alice = await join("alice")
    await alice.create()
    await alice.client.send_raw(frame)
    error = await alice.client.next_event("error")
    assert (error["code"], error["re"]) == (code, None)
    assert await alice.client.send_application(0, alice.send(b"ok")) == 1


async def test_invalid_requests_get_errors_with_their_id(join: Join) -> None:
    member = await join("alice")
    await member.create()
    alice = member.client
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
    assert await alice.send_application(0, member.send(b"still alive")) == 1


async def test_oversized_frames(make_server: Callable[..., Awaitable[RunningServer]],
                                clients: list[SignalingClient]) -> None:
    server = await make_server(max_message_bytes=2048)
    member = await Participant.joined(server, clients, "alice", ROOM)
    await member.create()
    alice = member.client
    await alice.send_raw(json.dumps({"type": "application", "id": 1, "epoch": 0, "ciphertext": "A" * 3000}))
    too_large = await alice.next_event("error")
    assert (too_large["code"], too_large["limit"]) == ("too_large", 2048)
    assert await alice.send_application(0, member.send(b"small")) == 1
    await alice.send_raw("A" * 5000)  # beyond twice the limit: the connection is closed (1009)
    assert (await alice.next_event("closed"))["code"] == 1009
    bob = client_for(server, clients, "bob")
    await bob.connect()  # the server carries on
    assert bob.join_reply["members"] == []


async def test_rate_limit(make_server: Callable[..., Awaitable[RunningServer]],
                          clients: list[SignalingClient]) -> None:
    server = await make_server(rate_per_second=0.05, rate_burst=6)
    member = await Participant.joined(server, clients, "alice", ROOM)
    await member.create()  # the join and the creation took two frames of the burst
    alice = member.client
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
    alice = await Participant.joined(server, clients, "alice", ROOM)
    await alice.create()
    bob = Participant(SignalingClient(server.ws_url, ROOM, ""), "bob")  # bob's MLS state, no socket
    packages = [bob.key_package(), bob.key_package()]
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as response:
            assert (await response.json())["status"] == "ok"
        token = await fetch_token(server.url, ROOM, "bob", ttl=120, session=http)
        assert server.server.tokens.verify(token, ROOM).identity == "bob"
        headers = {"Authorization": f"Bearer {token}"}
        alice_headers = {"Authorization": f"Bearer {await fetch_token(server.url, ROOM, 'alice', session=http)}"}
        async with http.post(f"{server.url}/rooms/{ROOM}/keypackages", headers=headers,
                             json={"key_packages": [p.b64encode(kp) for kp in packages]}) as response:
            assert response.status == 200 and (await response.json())["available"] == 2
        async with http.post(f"{server.url}/rooms/{ROOM}/keypackages", headers=alice_headers,
                             json={"key_packages": [p.b64encode(packages[0])]}) as response:
            assert response.status == 403 and (await response.json())["code"] == "identity_mismatch"
        async with http.post(f"{server.url}/rooms/{ROOM}/keypackages/bob/claim",
                             headers=headers) as response:  # bob is no member: he claims nothing
            assert response.status == 403 and (await response.json())["code"] == "not_member"
        async with http.post(f"{server.url}/rooms/{ROOM}/keypackages/bob/claim",
                             headers=alice_headers) as response:
            assert (await response.json())["key_package"] == p.b64encode(packages[0])
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


def joiner(server: RunningServer, clients: list[SignalingClient]) -> Join:
    """``join(identity, **join)``: a Participant of ``server`` in ROOM, joined."""
    async def join(identity: str, **options: Any) -> Participant:
        return await Participant.joined(server, clients, identity, ROOM, **options)
    return join


async def _abandoned_room(server: RunningServer, join: Join) -> tuple[int, bytes, bytes]:
    """alice and bob hold a group (a commit adding them and carol, who went offline, her Welcome
    waiting; KeyPackages; a message), then both go; returns the last sequence number the room
    used, the group id and the Welcome."""
    alice, bob, carol = await join("alice"), await join("bob"), await join("carol")
    await alice.create()
    await bob.publish(2)  # one is left in the directory
    await carol.publish()
    await carol.client.close()
    await alice.add(bob, carol)
    welcome = (await bob.client.next_event("welcome"))["welcome"]
    last = await alice.client.send_application(1, alice.send(b"bye"))
    await alice.client.leave()
    await bob.client.close()  # a dropped connection counts as gone too
    room = server.server.rooms
    await until(lambda: ROOM not in room or not room[ROOM].members, "the server saw both go")
    return last, alice.view.group_id, welcome


@pytest.mark.parametrize("abandon_after", [0.0, 3600.0])
async def test_a_newcomer_starts_an_abandoned_room_afresh(make_server: Callable[..., Awaitable[RunningServer]],
                                                          clients: list[SignalingClient],
                                                          abandon_after: float) -> None:
    server = await make_server(abandon_after=abandon_after)
    join = joiner(server, clients)

    last, group_id, welcome = await _abandoned_room(server, join)
    carol = await join("carol")
    reply = carol.client.join_reply
    if abandon_after:  # not long enough: the group stays, carol gets her Welcome
        assert reply["group_id"] == group_id and reply["epoch"] == 1
        assert (await carol.client.next_event("welcome"))["welcome"] == welcome
        return
    assert reply["group_id"] is None and reply["epoch"] is None and reply["backlog"] == 0
    await no_event(carol.client, "welcome")
    assert (await carol.create())["epoch"] == 0  # the room takes a new group
    await expect_error(carol.client.claim_key_package("bob"), ErrorCode.NOT_FOUND)  # the old group's are gone
    reply = await carol.update()
    assert reply["epoch"] == 1 and reply["seq"] > last  # sequence numbers keep counting up
    dave = await join("dave")
    assert dave.client.join_reply["group_id"] == carol.view.group_id != group_id


async def test_a_returning_member_or_a_present_one_keeps_the_group(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=0.0)
    join = joiner(server, clients)

    _, group_id, welcome = await _abandoned_room(server, join)
    alice = await join("alice", since=0)  # catching up: a member back, not a newcomer
    assert alice.client.join_reply["group_id"] == group_id and alice.client.join_reply["backlog"] == 1
    carol = await join("carol")  # someone is connected: the group has a member to add her
    assert carol.client.join_reply["group_id"] == group_id
    assert (await carol.client.next_event("welcome"))["welcome"] == welcome


async def test_a_newcomer_left_waiting_by_the_last_member_is_told_the_group_was_dropped(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=0.3)
    join = joiner(server, clients)

    alice, dave = await join("alice"), await join("dave")
    await alice.create()  # alice's group; dave waits to be added to it
    await dave.publish()
    await no_event(dave.client, "group_reset", wait=0.6)  # alice is here: nothing is abandoned
    await alice.client.leave()  # ... and goes before adding dave
    await dave.client.next_event("group_reset", timeout=BOUND)
    assert server.server.rooms[ROOM].waiting == set()
    assert (await dave.create())["epoch"] == 0  # the room takes dave's new group
    await expect_error(dave.client.claim_key_package("dave"), ErrorCode.NOT_FOUND)  # dropped with the group
    erin = await join("erin")
    assert erin.client.join_reply["group_id"] == dave.view.group_id != alice.view.group_id
    await no_event(erin.client, "group_reset", wait=0.6)  # dave is a member of the new group


async def test_newcomers_joining_an_abandoned_group_early_are_told_when_it_is_dropped(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=3.0)
    join = joiner(server, clients)

    _, group_id, _ = await _abandoned_room(server, join)
    dave, erin = await join("dave"), await join("erin")  # within the 3 s: the group stays
    assert dave.client.join_reply["group_id"] == erin.client.join_reply["group_id"] == group_id
    for member in (dave, erin):
        assert (await member.client.next_event("group_reset", timeout=BOUND)) == {"type": "group_reset"}
    frank = await join("frank")
    assert frank.client.join_reply["group_id"] is None


async def test_a_member_back_in_time_keeps_the_group_for_the_newcomer_waiting(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=3.0)
    join = joiner(server, clients)

    alice, dave = await join("alice"), await join("dave")
    await alice.create()
    await dave.publish()
    await alice.update()
    await alice.client.close()
    await until(lambda: "alice" not in server.server.rooms[ROOM].members, "the server saw alice go")
    back = await join("alice", since=0)  # back within the 3 s, with her state
    alice.client = back.client
    assert back.client.join_reply["group_id"] == alice.view.group_id
    await no_event(dave.client, "group_reset", wait=3.5)
    await alice.add(dave)
    assert (await dave.client.next_event("welcome"))["epoch"] == 2
    assert server.server.rooms[ROOM].waiting == set()


async def test_a_catch_up_from_before_the_pruned_log_is_refused(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(log_epochs=2)
    join = joiner(server, clients)
    alice, bob = await group_of(server, clients, ["alice", "bob"], ROOM)
    await bob.client.next_event("welcome")
    away_since = bob.client.last_seq
    await bob.client.close()
    seqs = [(await alice.update())["seq"] for _ in range(1, 5)]
    # at epoch 5 the log starts with the commit that started epoch 3 (made in epoch 2)
    state = await server.server.store.group_state(ROOM)
    assert (state.epoch, state.pruned_seq, state.pruned_epoch) == (5, seqs[1] - 1, 2)
    late = client_for(server, clients, "bob")
    error = await expect_error(late.connect(since=away_since), ErrorCode.LOG_TRUNCATED)
    assert error.details["pruned_seq"] == seqs[1] - 1
    await expect_error(client_for(server, clients, "bob").connect(epoch=2), ErrorCode.LOG_TRUNCATED)
    back = await join("bob", since=seqs[1] - 1)  # from what is still there: fine
    assert back.client.join_reply["backlog"] == 3
    assert [(await back.client.next_event("commit"))["epoch"] for _ in range(3)] == [2, 3, 4]
    assert (await join("carol")).client.join_reply["group_id"] == alice.view.group_id  # newcomers: unaffected


async def test_a_reset_at_a_newcomers_join_tells_those_already_waiting(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=0.2)
    join = joiner(server, clients)
    alice, dave = await join("alice"), await join("dave")
    await alice.create()
    await alice.client.leave()
    room = server.server.rooms[ROOM]
    await until(lambda: room.abandon_timer is not None, "the abandon check scheduled")
    room.abandon_timer.cancel()  # as if erin's join were sequenced before the check
    room.abandon_timer = None
    await asyncio.sleep(0.3)  # past abandon_after
    erin = await join("erin")  # her join drops the group ...
    assert erin.client.join_reply["group_id"] is None and erin.client.join_reply["members"] == ["dave"]
    await dave.client.next_event("group_reset")  # ... and dave, waiting, is told so
    await no_event(erin.client, "group_reset")


async def test_a_newcomer_replacing_the_last_members_connection_waits_out_the_window(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=1.5)
    join = joiner(server, clients)
    alice = await join("alice")
    await alice.create()
    await alice.update()
    reloaded = await join("alice")  # a reloaded page: same identity, no state, no Welcome
    await no_event(reloaded.client, "group_reset", wait=0.8)  # the group's member just left: not yet
    await reloaded.client.next_event("group_reset")  # then, once abandon_after has passed


async def test_a_catch_up_into_a_room_started_afresh_meets_the_new_group(
        make_server: Callable[..., Awaitable[RunningServer]], clients: list[SignalingClient]) -> None:
    server = await make_server(abandon_after=0.0, log_epochs=1)
    join = joiner(server, clients)
    alice = await join("alice")
    await alice.create()
    for _ in range(3):
        await alice.update()
    assert (await server.server.store.group_state(ROOM)).pruned_seq > 0
    await alice.client.close()
    await until(lambda: ROOM not in server.server.rooms or not server.server.rooms[ROOM].members,
                "alice gone")
    carol = await join("carol")  # starts the room afresh
    reply = carol.client.join_reply
    assert reply["group_id"] is None and carol.client.last_seq == reply["last_seq"] > 0
    await carol.create()
    back = await join("alice", since=1)  # from the old group's log: no refusal, the new group
    assert back.client.join_reply["group_id"] == carol.view.group_id
