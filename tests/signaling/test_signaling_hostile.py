"""Hostile clients against the signaling server and MLS delivery service (real WebSockets, 127.0.0.1).

Fuzzed and mutated frames, protocol misuse, slow readers, bad HTTP requests.
After every hostile sequence the server must still serve a normal client:
health, a join, a group and a commit adding a member (:func:`assert_serves`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import re
import socket
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import expect_error, until
from ds_participant import Participant, group_of
from mls import MLS
from signaling import room as room_module
from signaling.client import SignalingClient, fetch_token
from signaling.config import ServerConfig
from signaling.errors import ErrorCode, SignalingError
from signaling.redis_store import RedisStore
from signaling.server import RunningServer, start_server
from signaling.sqlite_store import SQLiteStore
from signaling.store import AppendRequest, AppendResult, CommitRequest, EntryKind
from signaling.tokens import TokenAuthority

SECRET = b"Q-hostile-secret-0123456789abcdef"

#: every test runs on each store (tests/store_fixtures.py)
pytestmark = pytest.mark.usefixtures("store_kind")

GROUP = b"\x02hostile-group"  # a group id no room carries
ROOM = "hostile"
ERROR_CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL.value, ErrorCode.CLOSED.value}

MakeServer = Callable[..., Awaitable[RunningServer]]
_health_rooms = itertools.count()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def token_for(server: RunningServer, identity: str, room: str = ROOM) -> str:
    return server.server.tokens.mint(room, identity, 600)


async def joined(server: RunningServer, clients: list[SignalingClient], identity: str,
                 room: str = ROOM, **join: Any) -> SignalingClient:
    client = SignalingClient(server.ws_url, room, token_for(server, identity, room))
    clients.append(client)
    await client.connect(**join)
    return client


async def assert_serves(server: RunningServer) -> None:
    """The server still answers health, admits two participants, takes a group and sequences a
    commit adding the second to both."""
    async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as response:
        assert response.status == 200 and (await response.json())["status"] == "ok"
    room = f"health-{next(_health_rooms)}"
    opened: list[SignalingClient] = []
    try:
        alice = await Participant.joined(server, opened, "h-alice", room)
        bob = await Participant.joined(server, opened, "h-bob", room)
        assert bob.client.join_reply["members"] == ["h-alice"]
        await alice.create()
        await bob.publish()
        ack = await alice.add(bob)
        assert ack["epoch"] == 1
        for member in (alice, bob):
            event = await member.client.next_event("commit")
            assert (event["seq"], event["from"]) == (ack["seq"], "h-alice")
        assert alice.view.epoch_authenticator() == bob.view.epoch_authenticator()
    finally:
        for client in opened:
            await client.close()


class RawSocket:
    """A WebSocket speaking raw JSON text: replies are matched as 'the next frame with a re'."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def reply(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next ack or error frame (events before it are kept in ``events``)."""
        while True:
            msg = await self.ws.receive(timeout=timeout)
            assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data, self.ws.close_code)
            frame = json.loads(msg.data)
            if "re" in frame:
                return frame
            self.events.append(frame)

    async def request(self, frame: dict[str, Any] | str) -> dict[str, Any]:
        await self.send(frame)
        return await self.reply()


async def raw_join(http: aiohttp.ClientSession, server: RunningServer, identity: str,
                   room: str = ROOM) -> RawSocket:
    raw = RawSocket(await http.ws_connect(server.ws_url, max_msg_size=0))
    token = token_for(server, identity, room)
    ack = await raw.request({"type": "join", "id": 0, "room": room, "token": token})
    assert ack["type"] == "ack", ack
    return raw


# -- fuzzed requests ------------------------------------------------------------------------

_LONG = ["r" * 65, "i" * 129, "x" * 2049, "B" * 70_000]
_BAD_BASE64 = ["%%%", "AAA", "A===", "====", "QQ", "Zm9v\n", " AAAA", "AAAA=", "_-_-", "ä"]
_IDENTITIES = ["bob", "alice", "nobody", "ñandú", "李", "🙂" * 3, "a\u0000b", "tab\tbed", "cr\r\nlf",
               "\u200b", "\ud800", "a\udfff", " ", "\x7f", "x" * 129]
_INTS = [0, 1, -1, 2**31, 2**53 + 1, 2**62 - 1, 2**62, 2**63, 2**64, 2**64 + 1, -(2**64), 10**300]

json_leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from(_INTS)
             | st.floats() | st.text(max_size=30)
             | st.text(st.characters(max_codepoint=0x1F), max_size=8)
             | st.sampled_from(_LONG + _BAD_BASE64 + _IDENTITIES))
json_values = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

#: For each request type, a valid value of every field (the fuzzer swaps in hostile ones).
SCHEMA: dict[str, dict[str, Any]] = {
    "join": {"room": ROOM, "token": "mlscall1.e30.AAAA", "since": 0, "epoch": 0},
    "keypackage.publish": {"key_packages": [b64(b"kp")]},
    "keypackage.claim": {"identity": "bob"},
    "group.create": {"group_id": b64(GROUP), "epoch": 0, "group_info": b64(b"\x00\x01\x00\x04gi"),
                     "ratchet_tree": b64(b"t")},
    "commit": {"group_id": b64(GROUP), "epoch": 0, "commit": b64(b"c"),
               "welcomes": [{"to": "carol", "welcome": b64(b"w")}]},
    "proposal": {"group_id": b64(GROUP), "epoch": 1, "proposal": b64(b"p")},
    "application": {"epoch": 0, "ciphertext": b64(b"ct")},
    "offer": {"to": "bob", "data": {"sdp": "v=0"}},
    "answer": {"to": "bob", "data": {"sdp": "v=0"}},
    "candidate": {"to": "bob", "data": {"candidate": "c"}},
}


def _not_leave(kind: str) -> bool:
    return kind != "leave"


def _not_text(value: Any) -> bool:
    return not isinstance(value, str)


#: request types: known, unknown text (a "leave" would end the rig's membership), or no text.
#: Built once, with named predicates: hypothesis describes a lambda in a filter by parsing its
#: source with ``ast``, and inside the composite, deep in the stack, CPython 3.11.7 once failed
#: that parse with "SystemError: AST constructor recursion depth mismatch" (a flaky CI failure)
_KINDS = (st.sampled_from(sorted(SCHEMA)) | st.text(max_size=12).filter(_not_leave)
          | json_leaf.filter(_not_text))


@st.composite
def hostile_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request of any type with every field valid, hostile or absent, plus stray fields."""
    kind = draw(_KINDS)
    frame: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2))
    for name, valid in SCHEMA.get(kind, {}).items() if isinstance(kind, str) else ():
        choice = draw(st.sampled_from(["valid", "hostile", "absent"]))
        if choice == "valid":
            frame[name] = valid
        elif choice == "hostile":
            frame[name] = draw(json_values)
        else:
            frame.pop(name, None)
    if kind in ("commit",) and draw(st.booleans()):  # hostile Welcome lists
        frame["welcomes"] = draw(st.lists(st.fixed_dictionaries({"to": json_values, "welcome": json_values}),
                                          max_size=3))
    version = draw(st.sampled_from(["absent", 1, 2, 0, True, 1.0, "1", None]))
    frame.pop("v", None)
    if version != "absent":
        frame["v"] = version
    frame["type"] = kind
    return frame


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


#: Protocol words an error message may name (field and type names), not echoes of a payload.
_VOCABULARY = {word for kind, fields in SCHEMA.items() for word in (kind, *fields)} | {"key_package", "protocol"}
#: the server's constant error messages (string literals in signaling/): a fuzzed
#: string may be part of one by chance ("join a r" of "join a room first"), no echo
_CONSTANT_MESSAGES = frozenset(
    message for source in (Path(__file__).resolve().parents[2] / "signaling").glob("*.py")
    for message in re.findall(r'SignalingError\(\s*ErrorCode\.\w+,\s*"([^"]*)"\s*\)', source.read_text()))


def check_reply(reply: dict[str, Any], frame: dict[str, Any] | None) -> None:
    """An ack, or a typed error (never ``internal``) that does not echo the request's strings."""
    assert reply["type"] in ("ack", "error"), reply
    if reply["type"] == "error":
        assert reply["code"] in ERROR_CODES, reply
        assert isinstance(reply["message"], str)
        constant = reply["message"] in _CONSTANT_MESSAGES
        for text in _strings(frame) if frame is not None and not constant else ():
            if len(text) >= 8 and text not in _VOCABULARY:
                assert text not in reply["message"], (text, reply)


def test_the_echo_check_flags_an_echo_and_not_a_constant_message() -> None:
    assert "join a room first" in _CONSTANT_MESSAGES and len(_CONSTANT_MESSAGES) > 20
    check_reply({"type": "error", "code": "not_joined", "message": "join a room first"}, {"x": "join a r"})
    with pytest.raises(AssertionError):
        check_reply({"type": "error", "code": "bad_request", "message": "no room 'plaintext!' here"},
                    {"room": "plaintext!"})


class FuzzRig:
    """A server on its own event loop, a joined client 'alice', a joined 'bob' and a stranger."""

    def __init__(self, tmp_path: Path, redis_url: str | None) -> None:
        self.loop = asyncio.new_event_loop()
        self.ids = itertools.count(1)
        self.run(self._start(tmp_path, redis_url))

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    async def _start(self, tmp_path: Path, redis_url: str | None) -> None:
        # (the stranger stays unjoined for the whole run: no join deadline closes it meanwhile)
        config = ServerConfig(port=0, db_path=tmp_path / "fuzz.db", secret=SECRET, static_dir=None,
                              rate_per_second=1e6, rate_burst=1_000_000, max_message_bytes=64 * 1024,
                              join_timeout=3600.0)
        store = None if redis_url is None else RedisStore.from_url(redis_url, policy=config.log_policy())
        self.server = await start_server(config, store=store)
        self.http = aiohttp.ClientSession()
        opened: list[SignalingClient] = []
        self.member = await Participant.joined(self.server, opened, "bob", ROOM)
        self.bob = self.member.client
        await self.member.create()  # the room's group, of which alice is no member
        await self._reopen()

    async def _reopen(self) -> None:
        self.alice = await raw_join(self.http, self.server, "alice")
        self.stranger = RawSocket(await self.http.ws_connect(self.server.ws_url, max_msg_size=0))

    async def exchange(self, frame: dict[str, Any]) -> None:
        """``frame`` to alice (joined) and to the stranger (not joined); both answer properly."""
        if self.alice.ws.closed or self.stranger.ws.closed:
            await self.alice.ws.close()
            await self.stranger.ws.close()
            await self._reopen()
        frame = {**frame, "id": next(self.ids)}
        text = json.dumps(frame)
        if len(text.encode()) > 2 * self.server.server.config.max_message_bytes:
            await self.alice.send(text)  # far too large: the connection is closed with 1009
            assert (await self.alice.ws.receive(timeout=10)).type is aiohttp.WSMsgType.CLOSE
            assert self.alice.ws.close_code == 1009
            return
        reply = await self.alice.request(text)
        check_reply(reply, frame)
        assert reply["re"] in (frame["id"], None), (reply, frame)
        if reply["type"] == "ack" and frame["type"] in ("offer", "answer", "candidate"):
            relayed = await self.bob.next_event(frame["type"])
            assert relayed == {"type": frame["type"], "from": "alice", "data": frame["data"]}
        stranger_reply = await self.stranger.request(text)
        check_reply(stranger_reply, frame)
        assert stranger_reply["type"] == "error"
        if frame["type"] != "join" and stranger_reply["re"] is not None:
            assert stranger_reply["code"] in ("not_joined", "unknown_type"), stranger_reply

    async def exchange_text(self, text: str | bytes) -> None:
        """Raw text (or binary) to alice: exactly one reply, an ack or a typed error."""
        if self.alice.ws.closed:
            await self._reopen()
        if isinstance(text, bytes):
            await self.alice.ws.send_bytes(text)
        else:
            await self.alice.send(text)
        check_reply(await self.alice.reply(), None)

    def close(self) -> None:
        async def _close() -> None:
            await self.bob.close()
            await self.alice.ws.close()
            await self.stranger.ws.close()
            await self.http.close()
            await assert_serves(self.server)
            await self.server.close()
        try:
            self.run(_close())
        finally:
            self.loop.close()


@pytest.fixture
def rig(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> Any:
    rig = FuzzRig(tmp_path, request.getfixturevalue("redis_url") if store_kind == "redis" else None)
    yield rig
    rig.close()  # asserts the server still serves a normal client after the fuzzing


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])


@FUZZ
@given(frame=hostile_requests())
def test_fuzzed_requests_get_typed_replies(rig: FuzzRig, frame: dict[str, Any]) -> None:
    rig.run(rig.exchange(frame))


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    for position, action, char in edits:
        i = position % (len(text) + 1)
        if action == 0:
            text = text[:i] + text[i + 1:]
        elif action == 1:
            text = text[:i] + char + text[i:]
        else:
            text = text[:i] + char + text[i + 1:]
    return text


_VALID_FRAMES = [json.dumps({"type": kind, "id": 1, **fields}) for kind, fields in SCHEMA.items()]


@FUZZ
@given(text=st.sampled_from(_VALID_FRAMES).flatmap(lambda frame: st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 2), st.characters(codec="utf-8")), min_size=1, max_size=6)
    .map(lambda edits: _mutate(frame, edits))) | st.text(max_size=200) | st.binary(max_size=64))
def test_mutated_and_random_frames_get_one_typed_reply(rig: FuzzRig, text: str | bytes) -> None:
    rig.run(rig.exchange_text(text))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commit=st.binary(max_size=300) | st.binary(max_size=200).map(lambda b: b"\x00\x01\x00\x01" + b)
       | st.binary(max_size=200).map(lambda b: b"\x00\x01\x00\x02" + b))
def test_random_commit_bytes_are_refused(rig: FuzzRig, commit: bytes) -> None:
    """Bytes that look like an MLSMessage are refused with a typed error, never a server fault,
    and move nothing: not the room's epoch, not its log."""
    before = rig.run(rig.server.server.store.group_state(ROOM))
    group_id = rig.member.view.group_id
    rig.run(rig.exchange({"type": "commit", "group_id": b64(group_id), "epoch": before.epoch,
                          "commit": b64(commit or b"\x00")}))
    assert rig.run(rig.server.server.store.group_state(ROOM)) == before


async def test_deeply_nested_json_is_refused_and_the_connection_lives(make_server: MakeServer) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        alice = await raw_join(http, server, "alice")
        too_deep: Any = 1
        for _ in range(40):
            too_deep = [too_deep]
        deep_offer = json.dumps({"type": "offer", "to": "alice", "data": too_deep})
        for text in ("[" * 100_000, '{"a":' * 50_000, '{"type": "offer", "to": "alice", "data": '
                     + "[" * 20_000 + "]" * 20_000 + "}", deep_offer):
            error = await alice.request(text)
            assert (error["type"], error["code"], error["re"]) == ("error", "bad_message", None)
            assert "levels deep" in error["message"]
        shallow: Any = 1
        for _ in range(30):
            shallow = [shallow]
        ack = await alice.request({"type": "offer", "id": 2, "to": "alice", "data": shallow})
        assert ack["type"] == "ack"
        reply = await alice.request({"type": "offer", "id": 5, "to": "alice", "data": {}})
        assert (reply["type"], reply["re"]) == ("ack", 5)
    await assert_serves(server)


async def test_non_standard_json_constants_are_not_relayed(make_server: MakeServer,
                                                           clients: list[SignalingClient]) -> None:
    """NaN and Infinity are not JSON (RFC 8259 §6): relaying them would break browser peers."""
    server = await make_server()
    bob = await joined(server, clients, "bob")
    async with aiohttp.ClientSession() as http:
        alice = await raw_join(http, server, "alice")
        for constant in ("NaN", "Infinity", "-Infinity"):
            error = await alice.request('{"type": "offer", "id": 3, "to": "bob", "data": %s}' % constant)
            assert (error["type"], error["code"]) == ("error", "bad_json")
        ack = await alice.request({"type": "offer", "id": 4, "to": "bob", "data": {"sdp": 1.5}})
        assert ack["type"] == "ack"
    assert (await bob.next_event("offer"))["data"] == {"sdp": 1.5}  # the first offer bob sees
    await assert_serves(server)


async def test_protocol_version_must_be_the_integer_one(make_server: MakeServer) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        alice = await raw_join(http, server, "alice")
        for version in (True, 1.0, "1", None, 2**64):
            error = await alice.request({"v": version, "type": "application", "id": 1, "epoch": 0,
                                         "ciphertext": "AA=="})
            assert (error["type"], error["code"], error["supported"]) == ("error", "unsupported_version", [1])
        assert (await alice.request({"v": 1, "type": "offer", "id": 2, "to": "alice",
                                     "data": {}}))["type"] == "ack"


# -- protocol misuse ------------------------------------------------------------------------


async def test_every_request_before_join_is_refused(make_server: MakeServer) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        raw = RawSocket(await http.ws_connect(server.ws_url))
        for kind, fields in SCHEMA.items():
            if kind == "join":
                continue
            error = await raw.request({"type": kind, "id": kind, **fields})
            assert (error["code"], error["re"]) == ("not_joined", kind)
        leave = await raw.request({"type": "leave", "id": 1})
        assert leave["code"] == "not_joined"
        assert server.server.rooms == {}
        assert (await server.server.store.group_state(ROOM)).last_seq == 0
    await assert_serves(server)


async def test_requests_after_leave_are_refused(make_server: MakeServer,
                                                clients: list[SignalingClient]) -> None:
    server = await make_server()
    bob = await Participant.joined(server, clients, "bob", ROOM)
    alice = Participant(bob.client, "alice")  # alice's MLS state; her connection is raw below
    group = alice.mls.group_create(alice.client_id, alice.credential)
    async with aiohttp.ClientSession() as http:
        raw = await raw_join(http, server, "alice")
        # leave and a group creation in one burst: it must not be sequenced after the leave
        await raw.send({"type": "leave", "id": 1})
        await raw.send({"type": "group.create", "id": 2, "group_id": b64(group.group_id), "epoch": 0,
                        "group_info": b64(group.group_info())})
        assert (await raw.reply())["type"] == "ack"
        msg = await raw.ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE and raw.ws.close_code == 1000
    assert (await bob.client.next_event("presence"))["event"] == "join"
    assert (await bob.client.next_event("presence")) == {"type": "presence", "event": "leave",
                                                         "identity": "alice", "dropped": False}
    assert (await server.server.store.group_state(ROOM)).group_id is None  # nothing after the leave
    await bob.create()
    assert (await bob.update())["seq"] == 1
    await assert_serves(server)


async def test_replaced_connection_can_no_longer_send(make_server: MakeServer, clients: list[SignalingClient],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames a replaced connection sends while its close is pending are not sequenced (no ghosts),
    even valid messages of the same member."""
    monkeypatch.setattr(room_module, "FLUSH_TIMEOUT", 1.0)
    server = await make_server()
    alice, bob = await group_of(server, clients, ["alice", "bob"], ROOM)
    connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as http:
        old = await raw_join(http, server, "bob")  # reads nothing from here on: its close stays pending
        assert (await alice.client.next_event("presence"))["event"] == "join"
        stuck = server.server.rooms[ROOM].members["bob"]
        while stuck.queue.qsize() < 3:
            await alice.client.signal("offer", "bob", {"sdp": "x" * 60_000})
        new = await Participant.joined(server, clients, "bob", ROOM)
        assert stuck.closing
        for i in range(20):
            await old.send({"type": "application", "id": i, "epoch": 1, "ciphertext": b64(bob.send(b"old"))})
        seq = await new.client.send_application(1, bob.send(b"new"))
        event = await alice.client.next_event("application")
        assert event["seq"] == seq and alice.view.receive(event["ciphertext"]).content == b"new"
        await asyncio.wait_for(server.close(), timeout=30)  # a pending close does not hold up shutdown


async def test_relay_stays_inside_the_room(make_server: MakeServer, clients: list[SignalingClient]) -> None:
    server = await make_server()
    alice = await joined(server, clients, "alice", room="room-a")
    mallory = await joined(server, clients, "mallory", room="room-b")
    await expect_error(mallory.signal("offer", "alice", {"sdp": "evil"}), ErrorCode.NOT_CONNECTED)
    # relaying to oneself reaches only oneself
    await mallory.signal("candidate", "mallory", {"candidate": "self"})
    assert (await mallory.next_event("candidate"))["data"] == {"candidate": "self"}
    await alice.signal("offer", "alice", {"sdp": "mine"})
    assert (await alice.next_event("offer"))["data"] == {"sdp": "mine"}  # not mallory's offer
    await assert_serves(server)


async def test_key_packages_and_welcomes_stay_in_their_room(make_server: MakeServer,
                                                           clients: list[SignalingClient]) -> None:
    server = await make_server()
    alice, bob, carol = [await Participant.joined(server, clients, who, "room-a") for who in ("alice", "bob", "carol")]
    await alice.create()
    await bob.publish()
    await carol.publish()
    await carol.client.close()
    mallory = await Participant.joined(server, clients, "mallory", "room-b")
    await mallory.create()  # a member of room-b's group, not of room-a's
    await expect_error(mallory.client.claim_key_package("bob"), ErrorCode.NOT_FOUND)
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": "Bearer " + token_for(server, "mallory", "room-b")}
        async with http.post(f"{server.url}/rooms/room-a/keypackages/bob/claim", headers=headers) as response:
            assert response.status == 403 and (await response.json())["code"] == "wrong_room"
        async with http.post(f"{server.url}/rooms/room-b/keypackages/bob/claim", headers=headers) as response:
            assert response.status == 404
    # carol's Welcome in room-a (carol not connected) reaches neither room-b's carol nor others
    await alice.add(bob, carol)
    carol_b = await joined(server, clients, "carol", room="room-b")
    assert carol_b.join_reply["backlog"] == 0
    carol_a = await joined(server, clients, "carol", room="room-a")
    assert carol_a.join_reply["backlog"] == 1
    assert (await carol_a.next_event("welcome"))["epoch"] == 1
    await assert_serves(server)


async def test_welcome_lists_are_bounded(make_server: MakeServer, clients: list[SignalingClient]) -> None:
    """One commit cannot flood a member with Welcomes: duplicates and lists above a roomful are refused."""
    server = await make_server(max_participants=4)
    alice = await Participant.joined(server, clients, "alice", ROOM)
    victim = await Participant.joined(server, clients, "victim", ROOM)
    await alice.create()
    await victim.publish()
    output = alice.view.add(await alice.client.claim_key_package("victim"))
    group_id, commit = alice.view.group_id, output.commit
    duplicates = [{"to": "victim", "welcome": b64(b"w")}] * 2
    error = await expect_error(alice.client.request("commit", group_id=group_id, epoch=0, commit=commit,
                                                    welcomes=duplicates), ErrorCode.BAD_MESSAGE)
    assert "victim" not in error.message
    many = [{"to": f"n{i}", "welcome": b64(b"w")} for i in range(5)]
    await expect_error(alice.client.request("commit", group_id=group_id, epoch=0, commit=commit, welcomes=many),
                       ErrorCode.BAD_MESSAGE)
    assert (await server.server.store.group_state(ROOM)).last_seq == 0  # refused whole, nothing logged
    ack = await alice.submit(output, {"victim": output.welcome})
    assert ack["epoch"] == 1
    assert (await victim.client.next_event("commit"))["seq"] == ack["seq"]
    await assert_serves(server)


async def test_epoch_edges(make_server: MakeServer, clients: list[SignalingClient]) -> None:
    server = await make_server()
    alice = await Participant.joined(server, clients, "alice", ROOM)
    for epoch in (2**64, 2**64 - 1, 2**63, -1, -(2**64)):
        await expect_error(alice.client.request("commit", group_id=GROUP, epoch=epoch, commit=b"c"),
                           ErrorCode.BAD_MESSAGE)
        await expect_error(alice.client.request("group.create", group_id=GROUP, epoch=epoch, group_info=b"g"),
                           ErrorCode.BAD_MESSAGE)
        await expect_error(alice.client.request("application", epoch=epoch, ciphertext=b"c"),
                           ErrorCode.BAD_MESSAGE)
        await expect_error(alice.client.request("join", room=ROOM, token="t", since=epoch),
                           ErrorCode.ALREADY_JOINED)
    group = alice.mls.group_create(alice.client_id, alice.credential)
    # an envelope epoch (the highest one allowed) that is not the GroupInfo's
    error = await expect_error(alice.client.create_group(group.group_id, 2**62 - 1, group.group_info()),
                               ErrorCode.INVALID_HANDSHAKE)
    assert "epoch" in error.message
    assert (await server.server.store.group_state(ROOM)).epoch is None
    await alice.client.create_group(group.group_id, 0, group.group_info())
    alice.group = group
    update = group.update()
    await expect_error(alice.client.commit(group.group_id, 2**62 - 1, update.commit), ErrorCode.BAD_MESSAGE)
    assert (await alice.submit(update))["epoch"] == 1
    late = await joined(server, clients, "late", epoch=1)
    assert late.join_reply["epoch"] == 1 and late.join_reply["backlog"] == 0
    await assert_serves(server)


async def test_hostile_commit_race_keeps_one_commit_per_epoch_and_one_order(
        make_server: MakeServer, clients: list[SignalingClient]) -> None:
    server = await make_server()
    members = await group_of(server, clients, [f"m{i}" for i in range(12)], ROOM)
    group_id = members[0].view.group_id
    elsewhere = [m.mls.group_create(m.client_id, m.credential) for m in members]  # groups of no room
    rounds = 4
    stale: bytes | None = None
    for epoch in range(1, rounds + 1):
        outputs = [m.view.update() for m in members]
        attempts = []
        for member, output, other in zip(members, outputs, elsewhere):
            attempts.append(member.client.commit(group_id, epoch, output.commit))
            attempts.append(member.client.commit(group_id, epoch - 1, stale or b"\x00"))
            attempts.append(member.client.commit(other.group_id, 0, other.update().commit))
            other.discard_pending_commit()
        results = await asyncio.gather(*attempts, return_exceptions=True)
        commits = [r for i, r in enumerate(results) if i % 3 == 0]
        assert sum(isinstance(r, dict) for r in commits) == 1, commits
        winner = next(i for i, r in enumerate(commits) if isinstance(r, dict))
        for i, result in enumerate(results):
            if i % 3 == 0 and i // 3 != winner:
                assert isinstance(result, SignalingError) and result.code == ErrorCode.CONFLICT
            elif i % 3 == 1:
                assert isinstance(result, SignalingError) and result.code in (
                    ErrorCode.CONFLICT, ErrorCode.INVALID_HANDSHAKE)
            elif i % 3 == 2:
                assert isinstance(result, SignalingError) and result.code == ErrorCode.WRONG_GROUP
        for i, member in enumerate(members):
            if i == winner:
                member.view.apply_pending_commit()
            else:
                member.view.discard_pending_commit()
                member.view.receive(outputs[winner].commit)
        stale = outputs[winner].commit
    orders = []
    for member in members:
        events = [await member.client.next_event("commit") for _ in range(rounds + 1)]
        orders.append([(e["seq"], e["epoch"], e["commit"]) for e in events])
    assert all(order == orders[0] for order in orders)
    assert [epoch for _, epoch, _ in orders[0]] == list(range(rounds + 1))
    commits = Counter(e.epoch for e in await server.server.store.read_entries(ROOM, after_seq=0)
                      if e.kind is EntryKind.COMMIT)
    assert sorted(commits.items()) == [(epoch, 1) for epoch in range(rounds + 1)]
    assert len({m.view.epoch_authenticator() for m in members}) == 1
    await assert_serves(server)


# -- limits and many connections --------------------------------------------------------------


async def test_many_connections_within_the_limits(make_server: MakeServer,
                                                  clients: list[SignalingClient]) -> None:
    server = await make_server(max_participants=40, max_rooms=3, max_unjoined_per_address=64)
    members = await asyncio.gather(*(Participant.joined(server, clients, f"p{i}", ROOM) for i in range(40)))
    await expect_error(joined(server, clients, "one-too-many"), ErrorCode.ROOM_FULL)
    creator, *others = members
    await creator.create()
    await asyncio.gather(*(m.publish() for m in others))
    for batch in range(0, 39, 13):  # (each Welcome names every joiner: 13 at a time fit in a frame)
        await creator.add(*others[batch:batch + 13])
        for member in others[:batch]:  # those added before follow (skipping the commit adding them)
            event = await member.client.next_event("commit")
            while event["epoch"] < member.view.epoch:
                event = await member.client.next_event("commit")
            member.view.receive(event["commit"])
    last = (await server.server.store.group_state(ROOM)).last_seq
    seqs = await asyncio.gather(*(m.client.send_application(3, m.send(m.identity.encode())) for m in members))
    assert sorted(seqs) == list(range(last + 1, last + 41))
    for member in members[:5]:
        got = sorted([(await member.client.next_event("application"))["seq"] for _ in range(39)])
        assert got == sorted(s for s, m in zip(seqs, members) if m is not member)
    for other in ("r2", "r3"):
        await joined(server, clients, "x", room=other)
    await expect_error(joined(server, clients, "x", room="r4"), ErrorCode.TOO_MANY_ROOMS)
    # a room whose members have all gone frees its slot
    for client in clients:
        if client.room == "r2":
            await client.close()
    for _ in range(200):
        if "r2" not in server.server.rooms:
            break
        await asyncio.sleep(0.01)
    await joined(server, clients, "x", room="r4")
    for client in clients:
        await client.close()
    await until(lambda: not server.server.rooms, "every room's slot freed")
    await assert_serves(server)


async def test_oversized_and_rate_limited_frames_get_clear_errors(make_server: MakeServer) -> None:
    server = await make_server(max_message_bytes=8192, rate_per_second=0.01, rate_burst=6)
    async with aiohttp.ClientSession() as http:
        alice = await raw_join(http, server, "alice")
        multibyte = json.dumps({"type": "application", "id": 1, "epoch": 0, "ciphertext": "AA==",
                                "pad": "é" * 4200}, ensure_ascii=False)  # 4200 characters, 8400 bytes
        error = await alice.request(multibyte)
        assert (error["code"], error["limit"], error["re"]) == ("too_large", 8192, None)
        for _ in range(6):
            error = await alice.request("{}")
        assert (error["code"], error["rate_per_second"]) == ("rate_limited", 0.01)
    await assert_serves(server)


# -- slow readers -----------------------------------------------------------------------------


def _small_receive_buffer(addr_info: Any) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def _fill_until_closing(server: RunningServer, sender: SignalingClient, target: str,
                              caplog: pytest.LogCaptureFixture) -> int:
    """Relay large offers to ``target`` until the server gives up on it; how many were sent."""
    member = server.server.rooms[ROOM].members[target]
    sent = 0
    while "closing slow consumer" not in caplog.text:
        await sender.signal("offer", target, {"sdp": "x" * 60_000, "n": sent})
        sent += 1
        assert sent < 5000, "the server never closed the slow reader"
    assert member.closing
    return sent


async def test_slow_reader_gets_close_code_4008(make_server: MakeServer, clients: list[SignalingClient],
                                                caplog: pytest.LogCaptureFixture) -> None:
    server = await make_server(max_queued_frames=8)
    alice = await joined(server, clients, "alice")
    connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as http:
        slow = await raw_join(http, server, "slow")  # from here on it reads nothing
        sent = await _fill_until_closing(server, alice, "slow", caplog)
        received = []
        while (msg := await slow.ws.receive(timeout=30)).type is aiohttp.WSMsgType.TEXT:
            received.append(json.loads(msg.data))
        assert msg.type is aiohttp.WSMsgType.CLOSE and slow.ws.close_code == 4008
    offers = [frame["data"]["n"] for frame in received if frame["type"] == "offer"]
    assert offers == list(range(len(offers))) and 0 < len(offers) < sent  # in order, the rest dropped
    assert (await alice.next_event("presence"))["event"] == "join"
    assert await alice.next_event("presence") == {"type": "presence", "event": "leave", "identity": "slow",
                                                  "dropped": True}
    await assert_serves(server)


async def test_reader_that_never_resumes_is_disconnected(make_server: MakeServer,
                                                         clients: list[SignalingClient],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(room_module, "FLUSH_TIMEOUT", 0.2)
    server = await make_server(max_queued_frames=8)
    alice = await joined(server, clients, "alice")
    connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as http:
        stuck = await raw_join(http, server, "stuck")  # never reads again
        assert (await alice.next_event("presence"))["event"] == "join"
        await _fill_until_closing(server, alice, "stuck", caplog)
        assert await alice.next_event("presence", timeout=30) == {
            "type": "presence", "event": "leave", "identity": "stuck", "dropped": True}
        assert len(server.server.connections) == 1
        # the TCP connection is dropped too, unsent frames and all: the stuck client sees it end
        while (msg := await stuck.ws.receive(timeout=30)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
    await assert_serves(server)


# -- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [
    123, ["mlscall1.a.b"], {"t": 1}, True, "mlscall1." + "A" * 5000, "mlscall1.é.x", "mlscall1.%%%.%%%",
    "mlscall1..", ".", "mlscall1.e30.", "mlscall2.e30.AAAA", "\u0000", "Bearer x",
])
async def test_malformed_tokens_are_refused(make_server: MakeServer, token: Any) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        raw = RawSocket(await http.ws_connect(server.ws_url))
        error = await raw.request({"type": "join", "id": 1, "room": ROOM, "token": token})
        assert error["code"] == "token_invalid", error
        assert not isinstance(token, str) or len(token) < 8 or token not in error["message"]
        assert server.server.rooms == {}
        if not isinstance(token, str) or not token.isprintable():
            return  # not even sendable as an HTTP header
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{server.url}/rooms/{ROOM}/keypackages/bob/claim", headers=headers) as response:
            assert response.status == 401
    await assert_serves(server)


async def test_expired_and_other_room_tokens_are_refused(make_server: MakeServer) -> None:
    server = await make_server()
    tokens = server.server.tokens
    forged = TokenAuthority(b"f" * 32).mint(ROOM, "mallory", 600)
    cases = [(tokens.mint(ROOM, "alice", 1, now=0), "token_expired"),
             (tokens.mint("elsewhere", "alice", 600), "wrong_room"),
             (forged, "token_invalid"),
             (forged.rsplit(".", 1)[0] + "." + token_for(server, "alice").rsplit(".", 1)[1], "token_invalid")]
    async with aiohttp.ClientSession() as http:
        raw = RawSocket(await http.ws_connect(server.ws_url))
        for token, code in cases:
            error = await raw.request({"type": "join", "id": 1, "room": ROOM, "token": token})
            assert error["code"] == code and token not in json.dumps(error)
        assert (await raw.request({"type": "join", "id": 2, "room": ROOM,
                                   "token": token_for(server, "alice")}))["type"] == "ack"
    await assert_serves(server)


# -- HTTP -------------------------------------------------------------------------------------


async def test_http_bad_methods_and_bodies(make_server: MakeServer) -> None:
    server = await make_server(max_message_bytes=4096)
    bearer = {"Authorization": "Bearer " + token_for(server, "bob")}
    publish = f"{server.url}/rooms/{ROOM}/keypackages"
    async with aiohttp.ClientSession() as http:
        for method, path in [("GET", "/token"), ("POST", "/healthz"), ("PUT", f"/rooms/{ROOM}/keypackages"),
                             ("GET", f"/rooms/{ROOM}/keypackages/bob/claim"), ("DELETE", "/ws")]:
            async with http.request(method, server.url + path) as response:
                assert response.status == 405, (method, path)
        bodies: list[tuple[bytes, str]] = [
            (b"", "bad_json"), (b"{", "bad_json"), (b"\xff\xfe", "bad_json"), (b"[1]", "bad_message"),
            (b'"x"', "bad_message"), (b"{}", "bad_message"), (b'{"key_packages": "AA=="}', "bad_message"),
            (b'{"key_packages": [1]}', "bad_message"), (b'{"key_packages": ["%%%"]}', "bad_message"),
            (b'{"key_packages": [[]]}', "bad_message"), (b'{"key_packages": [""]}', "bad_message"),
        ]
        for body, code in bodies:
            async with http.post(publish, data=body, headers=bearer) as response:
                assert response.status == 400 and (await response.json())["code"] == code, body
        for body in (b"[" * 3000, b"A" * 5000):  # too deep, too large: refused, never a crash
            async with http.post(publish, data=body, headers=bearer) as response:
                assert 400 <= response.status < 600
        for token_body in (b'{"room": "r", "identity": "a\\u0000"}', b'{"room": ["r"], "identity": "x"}',
                           b'{"room": "r", "identity": "x", "ttl": -5}',
                           b'{"room": "r", "identity": "x", "ttl": 1e309}',
                           b'{"room": "r", "identity": "x", "ttl": 99999999999999999999}'):
            async with http.post(server.url + "/token", data=token_body,
                                 headers={"Content-Type": "application/json"}) as response:
                assert response.status == 400, token_body
        for identity in ("%00", "a%0Ab", "%E2%80%8B", "x" * 129):
            async with http.post(f"{publish}/{identity}/claim", headers=bearer) as response:
                assert response.status == 400 and (await response.json())["code"] == "bad_message", identity
        async with http.post(f"{publish}/%F0%9F/claim", headers=bearer) as response:  # bob is no member
            assert response.status == 403 and (await response.json())["code"] == "not_member"
        async with http.post(server.url + "/rooms/bad%20room/keypackages", headers=bearer,
                             json={}) as response:
            assert response.status == 400
        for header in ("Bearer", "Basic abc", "bearer  ", "Bearer " + "x" * 3000):
            async with http.post(f"{publish}/bob/claim", headers={"Authorization": header}) as response:
                assert response.status == 401, header
    await assert_serves(server)


# -- durability and secrecy -----------------------------------------------------------------


class SlowStore(SQLiteStore):
    """A store whose appends take a while: an ack sent before COMMIT would be caught."""

    async def append(self, room: str, requests: Sequence[AppendRequest], *,
                     origin: str = "") -> list[AppendResult]:
        await asyncio.sleep(0.05)
        return await super().append(room, requests, origin=origin)


async def test_every_ack_follows_a_committed_write(make_server: MakeServer, tmp_path: Path,
                                                   clients: list[SignalingClient]) -> None:
    db_path = tmp_path / "slow.db"
    server = await make_server(db_path=db_path, store=SlowStore(db_path))
    member = await Participant.joined(server, clients, "alice", ROOM)
    await member.create()
    sent = {i: member.send(b"m%d" % i) for i in range(20)}
    update = member.view.update()
    async with aiohttp.ClientSession() as http:
        alice = await raw_join(http, server, "alice")  # the same member on a raw socket
        for i, ciphertext in sent.items():
            await alice.send({"type": "application", "id": i, "epoch": 0, "ciphertext": b64(ciphertext)})
        await alice.send({"type": "commit", "id": "c", "group_id": b64(member.view.group_id), "epoch": 0,
                          "commit": b64(update.commit)})
        for _ in range(21):
            ack = await alice.reply()
            assert ack["type"] == "ack"
            with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:  # another reader, now
                row = db.execute("SELECT body FROM log WHERE room = ? AND seq = ?",
                                 (ROOM, ack["seq"])).fetchone()
            expected = update.commit if ack["re"] == "c" else sent[ack["re"]]
            assert row == (expected,), ack
    await assert_serves(server)


class FailingStore(SQLiteStore):
    poisoned: bytes | None = None

    async def append(self, room: str, requests: Sequence[AppendRequest], *,
                     origin: str = "") -> list[AppendResult]:
        if any(isinstance(r, CommitRequest) and r.commit == self.poisoned for r in requests):
            raise sqlite3.OperationalError("disk I/O error")
        return await super().append(room, requests, origin=origin)


async def test_a_store_failure_is_never_acknowledged(make_server: MakeServer, tmp_path: Path,
                                                     clients: list[SignalingClient]) -> None:
    db_path = tmp_path / "failing.db"
    store = FailingStore(db_path)
    server = await make_server(db_path=db_path, store=store)
    alice, bob = await group_of(server, clients, ["alice", "bob"], ROOM)
    poison = alice.view.update()
    store.poisoned = poison.commit
    await expect_error(alice.client.commit(alice.view.group_id, 1, poison.commit), ErrorCode.INTERNAL)
    alice.view.discard_pending_commit()
    # epoch 1 is still open, and the server's view of the group was read again from the store:
    # bob's commit for epoch 1 is validated against the state before the poisoned one
    ack = await bob.update()
    event = await alice.client.next_event("commit")
    while event["epoch"] != 1:
        event = await alice.client.next_event("commit")
    assert event["seq"] == ack["seq"]
    alice.view.receive(event["commit"])
    assert alice.view.epoch_authenticator() == bob.view.epoch_authenticator()
    await assert_serves(server)


def _mls_member(name: str) -> tuple[MLS, bytes, bytes]:
    mls = MLS()
    client_id = mls.generate_identity()
    return mls, client_id.content, mls.generate_credential(name).content


async def test_real_mls_call_leaves_no_plaintext_token_or_secret_behind(
        make_server: MakeServer, clients: list[SignalingClient], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    db_path = tmp_path / "secrecy.db"
    server = await make_server(db_path=db_path)
    plaintext = b"TOP-SECRET-PLAINTEXT-4711"
    a_mls, a_id, a_cred = _mls_member("alice")
    b_mls, b_id, b_cred = _mls_member("bob")
    group = a_mls.group_create(a_id, a_cred, group_id=b"real-group")
    tokens = [await fetch_token(server.url, ROOM, who) for who in ("alice", "bob")]
    alice = SignalingClient(server.ws_url, ROOM, tokens[0])
    bob = SignalingClient(server.ws_url, ROOM, tokens[1])
    clients.extend([alice, bob])
    await alice.connect()
    await bob.connect()
    await alice.create_group(group.group_id, group.epoch, group.group_info())
    await bob.publish_key_packages([b_mls.generate_key_package(b_id, b_cred).content])
    output = group.add(await alice.claim_key_package("bob"))
    assert output.welcome is not None
    ack = await alice.commit(group.group_id, group.epoch, output.commit, welcomes={"bob": output.welcome})
    assert ack["epoch"] == 1
    assert (await alice.next_event("commit"))["commit"] == output.commit
    group.apply_pending_commit()
    bob_group = b_mls.group_join(b_id, (await bob.next_event("welcome"))["welcome"])
    await alice.send_application(group.epoch, group.send(plaintext).content)
    received = bob_group.receive((await bob.next_event("application"))["ciphertext"])
    assert received.content == plaintext
    # wrong tokens and errors are logged too: still no token in the logs
    await expect_error(SignalingClient(server.ws_url, "elsewhere", tokens[0]).connect(), ErrorCode.WRONG_ROOM)
    for client in (alice, bob):
        await client.close()
    await server.close()
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("secrecy.db*"))
    logs = caplog.text
    for secret in (plaintext, SECRET, SECRET.hex().encode(), *(t.encode() for t in tokens),
                   *(t.split(".")[2].encode() for t in tokens)):
        assert secret not in stored
        assert secret.decode() not in logs
    assert b64(output.commit)[:40] not in logs and b64(output.welcome)[:40] not in logs


# -- the MLS header cross-check -------------------------------------------------------------


async def test_commit_envelope_must_match_its_mls_header(make_server: MakeServer,
                                                         clients: list[SignalingClient]) -> None:
    """A real MLS commit is refused when the envelope's group_id or epoch disagrees with its header."""
    server = await make_server()
    alice, bob = await joined(server, clients, "alice"), await joined(server, clients, "bob")
    a_mls, a_id, a_cred = _mls_member("alice")
    b_mls, b_id, b_cred = _mls_member("bob")
    group = a_mls.group_create(a_id, a_cred, group_id=b"real-group")
    await alice.create_group(group.group_id, 0, group.group_info())
    await bob.publish_key_packages([b_mls.generate_key_package(b_id, b_cred).content])
    first = group.add(await alice.claim_key_package("bob"))
    for group_id, epoch in ((b"another-group", 0), (group.group_id, 1)):
        error = await expect_error(alice.commit(group_id, epoch, first.commit), ErrorCode.BAD_MESSAGE)
        assert "header" in error.message
    assert (await server.server.store.group_state(ROOM)).epoch == 0
    assert (await alice.commit(group.group_id, 0, first.commit, welcomes={"bob": first.welcome}))["epoch"] == 1
    group.apply_pending_commit()
    # replaying the epoch-0 commit in an epoch-1 envelope would desynchronise the room from the group
    error = await expect_error(bob.commit(group.group_id, 1, first.commit), ErrorCode.BAD_MESSAGE)
    assert "epoch 0" in error.message
    await expect_error(alice.commit(group.group_id, 1, first.welcome or b""), ErrorCode.INVALID_HANDSHAKE)
    message = group.send(b"hello").content
    await expect_error(alice.commit(group.group_id, 1, message), ErrorCode.INVALID_HANDSHAKE)
    await expect_error(alice.send_application(0, message), ErrorCode.BAD_MESSAGE)
    assert await alice.send_application(1, message) > 0
    proposal = group.propose_update().content
    await expect_error(alice.send_application(1, proposal), ErrorCode.BAD_MESSAGE)  # a PublicMessage
    await expect_error(alice.propose(group.group_id, 0, proposal), ErrorCode.BAD_MESSAGE)
    assert (await alice.propose(group.group_id, 1, proposal))["epoch"] == 1
    second = group.commit()
    await expect_error(alice.propose(group.group_id, 1, second.commit), ErrorCode.BAD_MESSAGE)
    assert (await alice.commit(group.group_id, 1, second.commit))["epoch"] == 2
    # bytes that are no MLSMessage are no handshake
    await expect_error(alice.commit(group.group_id, 2, b"opaque"), ErrorCode.INVALID_HANDSHAKE)
    assert (await server.server.store.group_state(ROOM)).epoch == 2
    await assert_serves(server)
