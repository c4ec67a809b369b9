"""The signaling server's limits on bodies, token lifetimes, slow readers and connections (real sockets on 127.0.0.1).

- HTTP bodies are parsed like WebSocket frames: nesting beyond 32 levels is a
  JSON ``bad_message`` (never a plain-text 500), oversized bodies a JSON 413
  ``too_large`` with ``limit``, and ``POST /token`` refuses a ttl that is not
  an integer 1..max_token_ttl.
- A slow reader is disconnected (4008) on queued bytes as well as frames.
- ``max_connections`` refuses WebSocket upgrades with a JSON 503.
- ``mlscall serve`` exposes the new limits; ``--static`` names web/public.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling import cli
from signaling import protocol as p
from signaling.config import DEFAULT_STATIC_DIR, ServerConfig
from signaling.ratelimit import TokenBucket
from signaling.room import CLOSE_SLOW_CONSUMER, Member
from signaling.redis_store import RedisStore
from signaling.server import RunningServer, open_store
from signaling.sqlite_store import SQLiteStore

from conftest import REPO_ROOT

SECRET = b"R-followups-secret-0123456789abcd"

#: every test runs on each store (tests/store_fixtures.py)
pytestmark = pytest.mark.usefixtures("store_kind")

ROOM = "followups"

MakeServer = Callable[..., Awaitable[RunningServer]]


def nested(depth: int) -> str:
    """A JSON array nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth


async def post(http: aiohttp.ClientSession, url: str, body: bytes | str,
               headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    """POST raw ``body``; (status, content type, parsed JSON body)."""
    data = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": "application/json", **(headers or {})}
    async with http.post(url, data=data, headers=headers) as response:
        return response.status, response.content_type, json.loads(await response.text())


def bearer(server: RunningServer, identity: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.server.tokens.mint(ROOM, identity, 600)}"}


# -- HTTP bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("body, code", [
    ('{"room": "r", "identity": "a", "x": ' + nested(100_000) + "}", "bad_message"),  # RecursionError depth
    (nested(100_000), "bad_message"),
    ('{"room": "r", "identity": "a", "x": ' + nested(32) + "}", "bad_message"),  # 33 levels
    ('{"room": "r", "identity": "a", "ttl": NaN}', "bad_json"),
    ('{"room": "r", "identity": "a"', "bad_json"),
    (b'{"room": "r", "identity": "\xff"}', "bad_json"),
    ("[1, 2]", "bad_message"),
    ('"text"', "bad_message"),
])
async def test_bad_http_bodies_get_json_errors(make_server: MakeServer, body: str | bytes, code: str) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        for url, headers in ((f"{server.url}/token", None),
                             (f"{server.url}/rooms/{ROOM}/keypackages", bearer(server, "alice"))):
            status, content_type, reply = await post(http, url, body, headers)
            assert (status, content_type) == (400, "application/json"), (url, reply)
            assert reply["type"] == "error" and reply["code"] == code, reply
            assert "Traceback" not in reply["message"] and "Recursion" not in reply["message"]
        async with http.get(f"{server.url}/healthz") as response:
            assert response.status == 200


async def test_nesting_up_to_the_frame_limit_is_accepted(make_server: MakeServer) -> None:
    server = await make_server()
    body = '{"room": "' + ROOM + '", "identity": "alice", "x": ' + nested(p.MAX_DEPTH - 1) + "}"
    async with aiohttp.ClientSession() as http:
        status, _, reply = await post(http, f"{server.url}/token", body)
    assert status == 200, reply
    assert server.server.tokens.verify(reply["token"], ROOM).identity == "alice"


async def test_oversized_http_bodies_get_json_413(make_server: MakeServer) -> None:
    limit = 4096
    server = await make_server(max_message_bytes=limit)
    big = json.dumps({"room": ROOM, "identity": "alice", "pad": "x" * limit})
    async with aiohttp.ClientSession() as http:
        for url, headers in ((f"{server.url}/token", None),
                             (f"{server.url}/rooms/{ROOM}/keypackages", bearer(server, "alice"))):
            status, content_type, reply = await post(http, url, big, headers)
            assert (status, content_type) == (413, "application/json"), reply
            assert reply["code"] == "too_large" and reply["limit"] == limit, reply
        # a body just within the limit is read and parsed as usual
        fits = json.dumps({"room": ROOM, "identity": "alice"})
        fits = fits[:-1] + ', "pad": "' + "x" * (limit - len(fits) - 11) + '"}'
        assert len(fits) == limit
        status, _, reply = await post(http, f"{server.url}/token", fits)
        assert status == 200, reply


@pytest.mark.parametrize("ttl", [0, -1, -3600, 1.5, 60.0, True, False, "60", [60], {"s": 60}, 2**62,
                                 7 * 24 * 3600 + 1])
async def test_token_refuses_a_bad_ttl(make_server: MakeServer, ttl: Any) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        status, _, reply = await post(http, f"{server.url}/token",
                                      json.dumps({"room": ROOM, "identity": "alice", "ttl": ttl}))
    assert status == 400 and reply["code"] == "bad_message", reply
    assert "token" not in reply


@pytest.mark.parametrize("ttl, expected", [(1, 1), (60, 60), (7 * 24 * 3600, 7 * 24 * 3600),
                                           (None, 3600), ("absent", 3600)])
async def test_token_ttl_sets_the_expiry(make_server: MakeServer, ttl: Any, expected: int) -> None:
    server = await make_server()
    body: dict[str, Any] = {"room": ROOM, "identity": "alice"}
    if ttl != "absent":
        body["ttl"] = ttl
    async with aiohttp.ClientSession() as http:
        before = int(time.time())
        status, _, reply = await post(http, f"{server.url}/token", json.dumps(body))
        after = int(time.time())
    assert status == 200, reply
    assert before + expected <= reply["expires"] <= after + expected


# -- queued bytes -----------------------------------------------------------------------------


class GatedSocket:
    """A stand-in WebSocketResponse whose writes wait for ``gate``; records frames and the close."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[str] = []
        self.close_code: int | None = None
        self.closed = False

    async def send_str(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)

    async def close(self, *, code: int, message: bytes) -> bool:
        self.close_code, self.closed = code, True
        return True


async def test_member_closes_on_queued_bytes_before_frames() -> None:
    ws = GatedSocket()
    member = Member(ws, TokenBucket(1.0, 1), max_queued=1000, max_queued_bytes=1000)  # type: ignore[arg-type]
    writer = asyncio.create_task(member.run_writer())
    frames = [f'{{"n":{i},"pad":"{"x" * 300}"}}' for i in range(5)]
    assert all(len(frame) == len(frames[0]) for frame in frames) and 300 < len(frames[0]) < 334
    member.send(frames[0])
    await asyncio.sleep(0)  # the writer takes it: in flight, still counted
    assert member.queue.qsize() == 0 and member.queued_bytes == len(frames[0])
    member.send(frames[1])
    member.send(frames[2])
    assert member.queued_bytes == 3 * len(frames[0]) and not member.closing
    member.send(frames[3])  # would make 4 x ~310 > 1000 bytes wait
    assert member.closing
    member.send(frames[4])  # a closing member takes nothing more
    ws.gate.set()
    await member.wait_closed()
    await asyncio.wait_for(writer, timeout=5)
    assert ws.sent == frames[:3] and ws.close_code == CLOSE_SLOW_CONSUMER
    assert member.queued_bytes == 0


async def test_member_within_its_byte_budget_stays_open() -> None:
    ws = GatedSocket()
    ws.gate.set()
    member = Member(ws, TokenBucket(1.0, 1), max_queued=1000, max_queued_bytes=1000)  # type: ignore[arg-type]
    writer = asyncio.create_task(member.run_writer())
    for i in range(50):  # 50 x 500 bytes in all, but never more than 1000 waiting
        member.send(f'"{i:03d}' + "y" * 495 + '"')
        await asyncio.sleep(0)
        await member.queue.join()
    assert not member.closing and len(ws.sent) == 50 and member.queued_bytes == 0
    member.close(1000, "done")
    await member.wait_closed()
    await asyncio.wait_for(writer, timeout=5)
    assert ws.close_code == 1000


def _small_receive_buffer(addr_info: Any) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_slow_reader_over_the_byte_limit_gets_4008(make_server: MakeServer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    byte_limit = 200_000
    server = await make_server(max_message_bytes=64 * 1024, max_queued_bytes=byte_limit,
                               max_queued_frames=10_000, rate_per_second=1e6, rate_burst=1_000_000)
    caplog.set_level(logging.WARNING, logger="signaling")
    connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer)
    async with aiohttp.ClientSession() as http, aiohttp.ClientSession(connector=connector) as slow_http:
        alice = await http.ws_connect(server.ws_url)
        await alice.send_json({"type": "join", "id": 0, "room": ROOM,
                               "token": server.server.tokens.mint(ROOM, "alice", 600)})
        assert (await alice.receive_json(timeout=10))["type"] == "ack"
        slow = await slow_http.ws_connect(server.ws_url, max_msg_size=0)
        await slow.send_json({"type": "join", "id": 0, "room": ROOM,
                              "token": server.server.tokens.mint(ROOM, "slow", 600)})
        assert (await slow.receive_json(timeout=10))["type"] == "ack"  # from here on it reads nothing
        member = server.server.rooms[ROOM].members["slow"]
        most_waiting = sent = 0
        while not member.closing:
            await alice.send_json({"type": "offer", "id": sent + 1, "to": "slow",
                                   "data": {"sdp": "x" * 60_000, "n": sent}})
            reply = await alice.receive_json(timeout=10)
            while "re" not in reply:
                reply = await alice.receive_json(timeout=10)
            assert reply["type"] == "ack", reply
            most_waiting = max(most_waiting, member.queued_bytes)
            sent += 1
            assert sent < 5000, "the server never closed the slow reader"
        assert most_waiting <= byte_limit and member.queue.qsize() < 10
        assert "closing slow consumer slow" in caplog.text
        received = []
        while (msg := await slow.receive(timeout=30)).type is aiohttp.WSMsgType.TEXT:
            received.append(json.loads(msg.data))
        assert msg.type is aiohttp.WSMsgType.CLOSE and slow.close_code == CLOSE_SLOW_CONSUMER
        offers = [frame["data"]["n"] for frame in received if frame["type"] == "offer"]
        assert offers == list(range(len(offers))) and 0 < len(offers) < sent
        await alice.close()


# -- connections ------------------------------------------------------------------------------


async def _refusal(http: aiohttp.ClientSession, server: RunningServer) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(server.ws_url)
    assert info.value.status == 503
    async with http.get(server.ws_url.replace("ws://", "http://")) as response:
        assert response.status == 503 and response.content_type == "application/json"
        reply = await response.json()
    assert reply["type"] == "error" and reply["code"] == "too_many_connections", reply
    assert reply["limit"] == server.server.config.max_connections


async def test_connections_beyond_the_limit_are_refused(make_server: MakeServer) -> None:
    server = await make_server(max_connections=2)
    async with aiohttp.ClientSession() as http:
        first = await http.ws_connect(server.ws_url)  # not joined: counted all the same
        second = await http.ws_connect(server.ws_url)
        await second.send_json({"type": "join", "id": 1, "room": ROOM,
                                "token": server.server.tokens.mint(ROOM, "bob", 600)})
        assert (await second.receive_json(timeout=10))["type"] == "ack"
        await _refusal(http, server)
        async with http.get(f"{server.url}/healthz") as response:  # HTTP is not limited
            assert (await response.json())["connections"] == 2
        await first.close()
        for _ in range(200):
            if len(server.server.connections) < 2:
                break
            await asyncio.sleep(0.05)
        assert len(server.server.connections) == 1
        third = await http.ws_connect(server.ws_url)
        await third.send_json({"type": "join", "id": 1, "room": ROOM,
                               "token": server.server.tokens.mint(ROOM, "carol", 600)})
        ack = await third.receive_json(timeout=10)
        assert ack["type"] == "ack" and ack["members"] == ["bob"]
        await _refusal(http, server)
        await second.close()
        await third.close()


async def test_concurrent_upgrades_do_not_overshoot_the_limit(make_server: MakeServer) -> None:
    server = await make_server(max_connections=3)
    async with aiohttp.ClientSession() as http:
        outcomes = await asyncio.gather(*(http.ws_connect(server.ws_url) for _ in range(8)),
                                        return_exceptions=True)
        opened = [ws for ws in outcomes if isinstance(ws, aiohttp.ClientWebSocketResponse)]
        refused = [err for err in outcomes if isinstance(err, aiohttp.WSServerHandshakeError)]
        assert len(opened) == 3 and len(refused) == 5 and {err.status for err in refused} == {503}
        assert len(server.server.connections) == 3
        for ws in opened:
            await ws.close()


# -- configuration and CLI --------------------------------------------------------------------


def test_config_checks_the_new_limits() -> None:
    assert ServerConfig().max_queued_bytes == 8 * 1024 * 1024
    with pytest.raises(ValueError, match="max_connections"):
        ServerConfig(max_connections=0)
    with pytest.raises(ValueError, match="max_queued_bytes"):
        ServerConfig(max_message_bytes=1024 * 1024, max_queued_bytes=2 * 1024 * 1024 - 1)
    assert ServerConfig(max_message_bytes=1024 * 1024, max_queued_bytes=2 * 1024 * 1024).max_queued_bytes
    with pytest.raises(ValueError, match="abandon_after"):
        ServerConfig(abandon_after=-1.0)
    with pytest.raises(ValueError, match="log_epochs"):
        ServerConfig(log_epochs=0)


def test_serve_flags_reach_the_config(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    defaults = cli.config_from_args(parser.parse_args(["--db", str(tmp_path / "d.db")]))
    assert (defaults.max_queued_bytes, defaults.max_connections, defaults.max_queued_frames) == (
        ServerConfig().max_queued_bytes, ServerConfig().max_connections, ServerConfig().max_queued_frames)
    args = parser.parse_args(["--db", str(tmp_path / "d.db"), "--max-queued-bytes", "1048576",
                              "--max-connections", "5", "--max-queued-frames", "7", "--abandon-after", "90",
                              "--log-epochs", "12"])
    config = cli.config_from_args(args)
    assert (config.max_queued_bytes, config.max_connections, config.max_queued_frames) == (1048576, 5, 7)
    assert (defaults.abandon_after, config.abandon_after) == (ServerConfig().abandon_after, 90.0)
    assert (defaults.log_epochs, config.log_epochs) == (ServerConfig().log_epochs, 12)
    keep_all = cli.config_from_args(parser.parse_args(["--db", str(tmp_path / "d.db"), "--log-epochs", "0"]))
    assert keep_all.log_epochs is None


async def test_the_store_url_names_the_store(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    for url, path in ((None, db), (f"sqlite://{db}", str(db)), (str(db), str(db)), ("relative.db", "relative.db")):
        config = ServerConfig(db_path=db, store_url=url)
        assert config.sqlite_path() == path
        store = open_store(config)
        assert isinstance(store, SQLiteStore)
        await store.close()  # never opened: nothing to write
    for url in ("redis://127.0.0.1:6379/0", "rediss://cache.example:6380/1", "unix:///run/redis.sock"):
        config = ServerConfig(store_url=url)
        assert config.sqlite_path() is None and isinstance(open_store(config), RedisStore)
    for bad in ("http://127.0.0.1/db", "sqlite://", "postgres://x/y", ""):
        with pytest.raises(ValueError, match="store"):
            ServerConfig(store_url=bad)
    with pytest.raises(ValueError, match="instance_id"):
        ServerConfig(instance_id="")
    assert len({ServerConfig().instance_id for _ in range(8)}) == 8  # random per instance


def test_store_and_instance_flags_reach_the_config(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    db = str(tmp_path / "d.db")
    defaults = cli.config_from_args(parser.parse_args(["--db", db]))
    assert defaults.store_url is None and defaults.sqlite_path() == Path(db) and defaults.instance_id
    config = cli.config_from_args(parser.parse_args(["--db", db, "--store", "redis://127.0.0.1:6379/2",
                                                     "--instance-id", "edge-1"]))
    assert (config.store_url, config.instance_id, config.sqlite_path()) == (
        "redis://127.0.0.1:6379/2", "edge-1", None)
    with pytest.raises(ValueError, match="store"):
        cli.config_from_args(parser.parse_args(["--db", db, "--store", "mysql://x"]))


def test_static_root_is_web_public_in_help_and_docs() -> None:
    assert DEFAULT_STATIC_DIR.parts[-2:] == ("web", "public")
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    static_help = next(action.help for action in parser._actions if "--static" in action.option_strings)
    assert static_help is not None and "web/public" in static_help
    docs = (REPO_ROOT / "docs" / "protocol.md").read_text()
    static_row = next(line for line in docs.splitlines() if line.startswith("| `GET /<path>`"))
    assert "`web/public`" in static_row and "`web/`" not in static_row
