"""The server's HTTP and WebSocket edge against abusive clients and browsers.

Each test plays the attacker, then checks that the server still serves a
legitimate client (:func:`assert_serves`): security headers on every response;
``Host`` and ``Origin`` allowlists (DNS rebinding); ``POST /token`` takes JSON
only; tokens in one canonical spelling whose claims pass the join's rules;
non-finite numbers refused in frames and bodies, never relayed; no query
string (a pasted token) in the access log; per-address connection limits, the
join timeout and the header timeout (a half-sent request); the Python client's
transport failures as ``connection_lost`` with nothing left pending.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, hmac

from media.call_peer import CallOptions, CallPeer
from media.stress.server import ServerProcess
from signaling import protocol as p
from signaling.client import SignalingClient, fetch_token
from signaling.config import ServerConfig
from signaling.errors import ErrorCode, SignalingError
from signaling.room import CLOSE_JOIN_TIMEOUT
from signaling.server import RunningServer, start_server
from signaling.tokens import TOKEN_PREFIX

from conftest import BOUND, MakeServer, until

SECRET = b"edge-secret-0123456789abcdef0123"

#: every test runs on each store (tests/store_fixtures.py)
pytestmark = pytest.mark.usefixtures("store_kind")

ROOM = "edge"
JSON = {"Content-Type": "application/json"}


def token_for(server: RunningServer, identity: str, room: str = ROOM) -> str:
    return server.server.tokens.mint(room, identity, 600)


async def assert_serves(server: RunningServer) -> None:
    """A legitimate client still gets health, a token over HTTP, a join and a relayed offer."""
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as response:
            assert response.status == 200 and (await response.json())["status"] == "ok"
        token = await fetch_token(server.url, "served", "s-alice", session=http)
    alice = SignalingClient(server.ws_url, "served", token)
    bob = SignalingClient(server.ws_url, "served", token_for(server, "s-bob", "served"))
    try:
        await alice.connect()
        assert (await bob.connect())["members"] == ["s-alice"]
        await alice.signal("offer", "s-bob", {"type": "offer", "sdp": "v=0"})
        event = await bob.next_event("offer")
        assert (event["from"], event["data"]) == ("s-alice", {"type": "offer", "sdp": "v=0"})
    finally:
        await alice.close()
        await bob.close()


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>call</title>")
    (root / "app.js").write_text("export const x = 1;\n")
    return root


# -- security headers ------------------------------------------------------------------------


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_security_headers(headers: Any, ws_host: str | None) -> None:
    csp = csp_directives(headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"] and csp["worker-src"] == ["'self'"]
    expected_connect = ["'self'"] + ([f"ws://{ws_host}", f"wss://{ws_host}"] if ws_host else [])
    assert csp["connect-src"] == expected_connect
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert all("*" not in value and "unsafe" not in value for values in csp.values() for value in values)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    features = dict(entry.strip().split("=", 1) for entry in headers["Permissions-Policy"].split(","))
    assert features.pop("camera") == "(self)" and features.pop("microphone") == "(self)"
    assert features and set(features.values()) == {"()"}, features


async def test_security_headers_on_every_response(make_server: MakeServer, static_dir: Path) -> None:
    server = await make_server(static_dir=static_dir)
    host = f"127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as http:
        for method, path, body, status in (
                ("GET", "/", None, 200), ("GET", "/app.js", None, 200), ("GET", "/healthz", None, 200),
                ("POST", "/token", {"room": ROOM, "identity": "alice"}, 200),
                ("POST", "/token", {"room": "bad room", "identity": "alice"}, 400),
                ("GET", "/missing.js", None, 404), ("POST", "/healthz", None, 405),
                ("POST", f"/rooms/{ROOM}/keypackages/bob/claim", None, 401)):
            async with http.request(method, server.url + path, json=body) as response:
                assert response.status == status, (method, path)
                assert_security_headers(response.headers, host)
        # the WebSocket upgrade (101) too, and a refused Host (whose CSP names no host)
        async with http.ws_connect(server.ws_url) as ws:
            assert_security_headers(ws._response.headers, host)
        async with http.get(server.url + "/healthz", headers={"Host": "evil.example"}) as response:
            assert response.status == 421
            assert_security_headers(response.headers, None)
    await assert_serves(server)


# -- Host and Origin --------------------------------------------------------------------------


async def test_foreign_hosts_are_refused_everywhere(make_server: MakeServer, static_dir: Path) -> None:
    """DNS rebinding: the attacker's name, pointed at 127.0.0.1, arrives as Host."""
    server = await make_server(static_dir=static_dir)
    port = server.port
    async with aiohttp.ClientSession() as http:
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1",
                     f"localhost.evil.example:{port}", f"127.0.0.2:{port}", "bad host", ""):
            for method, path in (("GET", "/"), ("GET", "/healthz"), ("POST", "/token"), ("GET", "/ws"),
                                 ("POST", f"/rooms/{ROOM}/keypackages")):
                async with http.request(method, server.url + path, headers={"Host": host, **JSON},
                                        json={"room": ROOM, "identity": "mallory"}) as response:
                    assert response.status == 421, (host, path)
                    reply = await response.json()
                    assert (reply["type"], reply["code"]) == ("error", "host_not_allowed")
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(server.ws_url, headers={"Host": f"evil.example:{port}"})
        assert info.value.status == 421
        for host in (f"localhost:{port}", f"LOCALHOST:{port}", f"127.0.0.1:{port}"):
            async with http.get(server.url + "/healthz", headers={"Host": host}) as response:
                assert response.status == 200, host
    # an HTTP/1.0 request may omit Host: refused too
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    status_line = await asyncio.wait_for(reader.readline(), BOUND)
    assert status_line.split()[1] == b"421"
    writer.close()
    assert server.server.rooms == {}
    await assert_serves(server)


async def test_ipv6_loopback_host_and_configured_hosts(make_server: MakeServer) -> None:
    server = await make_server(allowed_hosts=("calls.example", "Other.Example:8443"))
    port = server.port
    async with aiohttp.ClientSession() as http:
        for host, status in ((f"[::1]:{port}", 200), ("calls.example", 200), (f"calls.example:{port}", 200),
                             ("other.example:8443", 200), ("other.example", 421),
                             (f"other.example:{port}", 421), ("evil.example", 421)):
            async with http.get(server.url + "/healthz", headers={"Host": host}) as response:
                assert response.status == status, host
        # a page of an allowed host is an allowed origin
        async with http.ws_connect(server.ws_url, headers={"Host": "calls.example",
                                                           "Origin": "https://calls.example"}) as ws:
            await ws.send_str(json.dumps({"type": "join", "id": 1, "room": ROOM,
                                          "token": token_for(server, "alice")}))
            assert json.loads((await ws.receive()).data)["type"] == "ack"
    await assert_serves(server)


async def test_foreign_origins_are_refused_on_the_api(make_server: MakeServer, static_dir: Path) -> None:
    server = await make_server(static_dir=static_dir, allowed_origins=("https://app.example",))
    port = server.port
    foreign = ("http://evil.example", f"http://evil.example:{port}", "null", f"http://127.0.0.1:{port + 1}",
               f"file://127.0.0.1:{port}", "https://app.example:444", f"http://127.0.0.1:{port}/path")
    async with aiohttp.ClientSession() as http:
        for origin in foreign:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(server.ws_url, headers={"Origin": origin})
            assert info.value.status == 403, origin
            for path, headers in (("/token", JSON),
                                  (f"/rooms/{ROOM}/keypackages",
                                   {"Authorization": f"Bearer {token_for(server, 'bob')}", **JSON}),
                                  (f"/rooms/{ROOM}/keypackages/bob/claim",
                                   {"Authorization": f"Bearer {token_for(server, 'carol')}"})):
                async with http.post(server.url + path, headers={"Origin": origin, **headers},
                                     json={"room": ROOM, "identity": "mallory", "key_packages": ["AA=="]}
                                     ) as response:
                    assert response.status == 403, (origin, path)
                    assert (await response.json())["code"] == "origin_not_allowed"
            # the page itself is no API: a foreign page may link to it
            async with http.get(server.url + "/", headers={"Origin": origin}) as response:
                assert response.status == 200
        assert server.server.connections == set() and server.server.rooms == {}
        # the page's own origin, a configured one, and none at all (non-browser clients)
        for headers in ({"Origin": f"http://127.0.0.1:{port}"}, {"Origin": f"http://localhost:{port}"},
                        {"Origin": "https://app.example"}, {}):
            async with http.ws_connect(server.ws_url, headers=headers) as ws:
                await ws.send_str(json.dumps({"type": "join", "id": 1, "room": ROOM,
                                              "token": token_for(server, "alice")}))
                assert json.loads((await ws.receive()).data)["type"] == "ack", headers
            async with http.post(server.url + "/token", headers=headers,
                                 json={"room": ROOM, "identity": "alice"}) as response:
                assert response.status == 200, headers
    await assert_serves(server)


async def test_token_endpoint_takes_json_only(make_server: MakeServer) -> None:
    """A cross-site form or ``text/plain`` fetch needs no preflight: /token refuses them."""
    server = await make_server()
    body = json.dumps({"room": ROOM, "identity": "mallory"})
    async with aiohttp.ClientSession() as http:
        for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x", "application/json-seq", None):
            headers = {} if content_type is None else {"Content-Type": content_type}
            async with http.post(server.url + "/token", data=body.encode(), headers=headers) as response:
                assert response.status == 415, content_type
                reply = await response.json()
                assert reply["code"] == "unsupported_media_type" and "token" not in reply
        async with http.post(server.url + "/token", data=body,
                             headers={"Content-Type": "application/json; charset=utf-8"}) as response:
            assert response.status == 200 and (await response.json())["identity"] == "mallory"
    await assert_serves(server)


# -- tokens ------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_token(claims: dict[str, Any]) -> str:
    """A token over arbitrary claims, signed with the server's real secret."""
    signed = TOKEN_PREFIX + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.HMAC(SECRET, hashes.SHA256())
    mac.update(signed.encode())
    return signed + "." + _b64url(mac.finalize())


def noncanonical_spellings(server: RunningServer) -> list[str]:
    """The same signed bytes spelled otherwise: trailing bits set, padding, the standard alphabet."""
    token = token_for(server, "alice")
    signed, _, tag = token.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(tag[-1])
    assert last & 0b11 == 0  # a 32-byte tag leaves 2 unused bits in its last character
    spellings = [f"{signed}.{tag[:-1]}{alphabet[last | 1]}", f"{signed}.{tag[:-1]}{alphabet[last | 2]}",
                 f"{signed}.{tag}=", f"{signed}.{tag}==", f"{signed}.{tag[:20]}={tag[20:]}",
                 f"{signed}.{tag} ", f"{signed}.{tag[:10]}\n{tag[10:]}"]
    for identity in (f"alice{i}" for i in range(200)):  # a tag holding "-" or "_"
        other = token_for(server, identity)
        head, _, other_tag = other.rpartition(".")
        if "-" in other_tag or "_" in other_tag:
            spellings.append(head + "." + other_tag.replace("-", "+").replace("_", "/"))
            break
    else:
        raise AssertionError("no tag with - or _ among 200")
    return spellings


def invalid_claims() -> list[str]:
    return [signed_token({"exp": 2**40, "room": ROOM, "sub": ""}),
            signed_token({"exp": 2**40, "room": ROOM, "sub": "x" * 200}),
            signed_token({"exp": 2**40, "room": ROOM, "sub": "a\nb"}),
            signed_token({"exp": 2**40, "room": ROOM, "sub": 7}),
            signed_token({"exp": True, "room": ROOM, "sub": "alice"}),
            signed_token({"exp": 1e300, "room": ROOM, "sub": "alice"})]


async def test_noncanonical_and_invalid_claim_tokens_are_refused(make_server: MakeServer) -> None:
    server = await make_server()
    assert signed_token({"exp": 2**40, "room": ROOM, "sub": "alice"}) != token_for(server, "alice")
    accepted = signed_token({"exp": 2**40, "room": ROOM, "sub": "alice"})
    assert server.server.tokens.verify(accepted, ROOM).identity == "alice"  # the helper signs right
    for token in noncanonical_spellings(server) + invalid_claims():
        client = SignalingClient(server.ws_url, ROOM, token)
        with pytest.raises(SignalingError) as info:
            await client.connect()
        assert info.value.code == ErrorCode.TOKEN_INVALID, token
        await client.close()
        if token != token.strip() or "\n" in token:
            continue  # HTTP strips a header value's outer whitespace and forbids line breaks
        async with aiohttp.ClientSession() as http, http.post(
                f"{server.url}/rooms/{ROOM}/keypackages/alice/claim",
                headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 401 and (await response.json())["code"] == "token_invalid"
    assert server.server.rooms == {}
    await assert_serves(server)


# -- non-finite numbers ------------------------------------------------------------------------

NON_FINITE = ("1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1.5E+999")


async def test_non_finite_numbers_are_refused_and_never_relayed(make_server: MakeServer) -> None:
    server = await make_server()
    alice = SignalingClient(server.ws_url, ROOM, token_for(server, "alice"))
    bob = SignalingClient(server.ws_url, ROOM, token_for(server, "bob"))
    try:
        await alice.connect()
        await bob.connect()
        await alice.next_event("presence")
        for number in NON_FINITE:
            for frame in (f'{{"type":"offer","id":9,"to":"bob","data":{{"sdp":"v=0","x":{number}}}}}',
                          f'{{"type":"candidate","id":9,"to":"bob","data":[{number}]}}',
                          f'{{"type":"keypackage.claim","id":9,"identity":"bob","n":{number}}}',
                          f'{{"type":"application","id":9,"epoch":{number},"ciphertext":"AA=="}}'):
                await alice.send_raw(frame)
                error = await alice.next_event("error")
                assert (error["code"], error["re"]) == ("bad_json", None), frame
        # nothing reached bob: the first offer he gets is the next legitimate one
        await alice.signal("offer", "bob", {"sdp": "v=0", "x": 1.5e300})
        event = await bob.next_event("offer")
        assert event["data"] == {"sdp": "v=0", "x": 1.5e300}
        assert bob.events.empty()
        # the client never writes one either; its pending map stays empty
        for value in (float("nan"), float("inf"), -float("inf"), [float("nan")]):
            with pytest.raises(SignalingError) as info:
                await alice.signal("offer", "bob", {"x": value})
            assert info.value.code == ErrorCode.BAD_MESSAGE
            assert alice._pending == {}
    finally:
        await alice.close()
        await bob.close()
    async with aiohttp.ClientSession() as http:
        for number in NON_FINITE:
            async with http.post(server.url + "/token", headers=JSON,
                                 data=f'{{"room":"{ROOM}","identity":"x","ttl":{number}}}') as response:
                assert response.status == 400
                assert (await response.json())["code"] == "bad_json"
    assert "Infinity" not in p.dump_frame({"x": 1e308}) and "NaN" not in p.dump_frame({"x": 0.5})
    for value in (float("nan"), float("inf")):
        with pytest.raises(SignalingError):
            p.dump_frame({"x": value})
    await assert_serves(server)


async def test_join_with_a_non_finite_cursor_is_bad_json(make_server: MakeServer) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        for number in NON_FINITE:
            token = token_for(server, "alice")
            await ws.send_str(f'{{"type":"join","id":1,"room":"{ROOM}","token":"{token}","since":{number}}}')
            reply = json.loads((await ws.receive()).data)
            assert (reply["type"], reply["code"]) == ("error", "bad_json")
        assert server.server.rooms == {}
    await assert_serves(server)


# -- the access log ----------------------------------------------------------------------------


async def test_access_log_holds_no_query_string_or_token(make_server: MakeServer, static_dir: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    server = await make_server(static_dir=static_dir)
    token = token_for(server, "alice")
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with aiohttp.ClientSession() as http:
        for path in (f"/?room={ROOM}&token={token}", f"/healthz?token={token}", f"/app.js?t={token}",
                     f"/missing?token={token}", f"/?room={ROOM}#token={token}"):
            async with http.get(server.url + path, headers={"Referer": f"{server.url}/?token={token}"}):
                pass
        async with http.post(f"{server.url}/token?token={token}", json={"room": ROOM, "identity": "a"}):
            pass
        async with http.ws_connect(f"{server.ws_url}?token={token}") as ws:
            await ws.send_str(json.dumps({"type": "join", "id": 1, "room": ROOM, "token": token}))
            assert json.loads((await ws.receive()).data)["type"] == "ack"
    await until(lambda: sum("/ws" in r.getMessage() for r in caplog.records) == 1, "the /ws log line")
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert any('"GET /healthz"' in line for line in lines) and any('"POST /token"' in line for line in lines)
    assert len(lines) == 7, lines
    for line in lines:
        assert token not in line and token[-20:] not in line and "?" not in line and "Referer" not in line
    await assert_serves(server)


# -- per-address limits, the join timeout, the header timeout ---------------------------------


async def test_per_address_connection_limits(make_server: MakeServer) -> None:
    server = await make_server(max_connections_per_address=4, max_unjoined_per_address=2)
    async with aiohttp.ClientSession() as http:
        idle = [await http.ws_connect(server.ws_url) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(server.ws_url)
        assert info.value.status == 429
        # joining frees an unjoined slot; the total still counts it
        await idle[0].send_str(json.dumps({"type": "join", "id": 1, "room": ROOM,
                                           "token": token_for(server, "p0")}))
        assert json.loads((await idle[0].receive()).data)["type"] == "ack"
        more = [await http.ws_connect(server.ws_url)]
        await more[0].send_str(json.dumps({"type": "join", "id": 1, "room": ROOM,
                                           "token": token_for(server, "p1")}))
        assert json.loads((await more[0].receive()).data)["type"] == "ack"
        more.append(await http.ws_connect(server.ws_url))  # 4 open: 2 joined, 2 not
        for _ in range(3):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(server.ws_url)
            assert info.value.status == 429
        async with http.get(server.ws_url.replace("ws://", "http://"),
                            headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                     "Sec-WebSocket-Version": "13",
                                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as response:
            reply = await response.json()
            assert (response.status, reply["code"], reply["limit"]) == (429, "too_many_from_address", 4)
        for ws in idle + more:
            await ws.close()
        await until(lambda: not server.server._by_address, "the address's connections forgotten")
    await assert_serves(server)


async def test_a_socket_that_never_joins_is_closed_after_the_join_timeout(make_server: MakeServer) -> None:
    server = await make_server(join_timeout=0.5, max_unjoined_per_address=1)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.ws_url)
        with pytest.raises(aiohttp.WSServerHandshakeError):  # its one unjoined slot is taken
            await http.ws_connect(server.ws_url)
        await ws.send_str(json.dumps({"type": "offer", "id": 1, "to": "x", "data": {}}))  # not a join
        frames = []
        async with asyncio.timeout(BOUND):
            async for msg in ws:
                frames.append(json.loads(msg.data))
        assert [f["code"] for f in frames] == ["not_joined", "unauthorized"]
        assert ws.close_code == CLOSE_JOIN_TIMEOUT
        await until(lambda: not server.server.connections, "the connection gone")
        second = await http.ws_connect(server.ws_url)  # the slot is free again
        await second.close()
    await assert_serves(server)


async def _closed_within_bound(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(BOUND):
        return await reader.read()


async def test_a_half_sent_request_is_closed_after_the_header_timeout(make_server: MakeServer) -> None:
    server = await make_server(header_timeout=0.5)
    # half a request line
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HT")
    await writer.drain()
    assert await _closed_within_bound(reader) == b""
    writer.close()
    # a complete line, headers trickling in a byte at a time: the timer is not reset
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")

    async def trickle() -> None:
        for byte in b"Host: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    try:
        assert await _closed_within_bound(reader) == b""
    finally:
        trickling.cancel()
        writer.close()
    # a connection that never sends anything
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await _closed_within_bound(reader) == b""
    writer.close()
    # a WebSocket outlives the timeout: it is past its request head
    client = SignalingClient(server.ws_url, ROOM, token_for(server, "alice"))
    try:
        await client.connect()
        await asyncio.sleep(2 * server.server.config.header_timeout)
        await client.signal("offer", "alice", {"sdp": "v=0"})  # relayed to itself
        assert (await client.next_event("offer"))["data"] == {"sdp": "v=0"}
    finally:
        await client.close()
    await assert_serves(server)


# -- the Python client's transport failures ----------------------------------------------------


async def test_a_socket_reset_under_a_request_is_connection_lost() -> None:
    """The server side aborts the TCP connection while a request awaits its reply."""
    hold = asyncio.Event()

    async def silent(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["type"] == "join":
                await ws.send_str(json.dumps({"type": "ack", "re": frame["id"], "identity": "alice"}))
            else:
                hold.set()  # a request arrived: drop the connection without a reply
                request.transport.abort()
        return ws

    app = web.Application()
    app.router.add_get("/ws", silent)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = SignalingClient(f"ws://127.0.0.1:{port}/ws", ROOM, "t")
    try:
        await client.connect()
        with pytest.raises(SignalingError) as info:
            await asyncio.wait_for(client.claim_key_package("bob"), BOUND)
        assert hold.is_set()
        assert info.value.code == ErrorCode.CONNECTION_LOST
        assert client._pending == {}
    finally:
        await client.close()
        await runner.cleanup()


async def test_a_transport_closed_under_the_client_is_connection_lost(make_server: MakeServer) -> None:
    server = await make_server()
    client = SignalingClient(server.ws_url, ROOM, token_for(server, "alice"))
    try:
        await client.connect()
        assert client._ws is not None
        client._ws._writer.transport.abort()  # the socket goes away under the client
        with pytest.raises(SignalingError) as info:
            await client.signal("offer", "bob", {"sdp": "v=0"})
        assert info.value.code == ErrorCode.CONNECTION_LOST
        assert client._pending == {}
        await client.reconnect()  # and it comes back
        assert client.connected
    finally:
        await client.close()
    await assert_serves(server)


async def test_a_client_of_a_sigkilled_server_gets_a_signaling_error(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "killed")
    try:
        url = await server.start()
        client = SignalingClient(server.ws_url, ROOM, await fetch_token(url, ROOM, "alice"))
        try:
            await client.connect()
            pending = [asyncio.create_task(client.claim_key_package(f"bob{i}")) for i in range(20)]
            await server.kill()  # SIGKILL, with requests in flight
            outcomes = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), BOUND)
            # answered before the kill (refused: nobody published, or not a member) or lost with it
            assert all(isinstance(o, SignalingError) for o in outcomes), outcomes
            assert ErrorCode.CONNECTION_LOST in {o.code for o in outcomes}
            assert client._pending == {}
            with pytest.raises(SignalingError) as info:  # and later requests fail typed too
                await client.claim_key_package("bob")
            assert info.value.code in (ErrorCode.CLOSED, ErrorCode.CONNECTION_LOST)
            assert client._pending == {}
        finally:
            await client.close()
        # a server started again on the same database and port serves again
        url = await server.start()
        async with SignalingClient(server.ws_url, ROOM, await fetch_token(url, ROOM, "alice")) as again:
            assert again.identity == "alice"
    finally:
        await server.stop()


# -- CallPeer across a reset and a server restart ----------------------------------------------


def _members(peer: Any) -> tuple[int, frozenset[str]] | None:
    group = peer.group
    return None if group is None else (group.epoch, frozenset(peer.member_identities()))


async def test_call_peers_survive_a_reset_and_a_server_restart(tmp_path: Path, store_kind: str,
                                                              request: pytest.FixtureRequest) -> None:
    """Every member's socket is reset under it (no close frame) and the server goes away; a
    self-update asked meanwhile meets the dead connection (``connection_lost`` or ``closed``)
    instead of killing the peer's loop; a server on the same port and store comes back and
    the call goes on: a newcomer is added by the survivors."""
    store_url = request.getfixturevalue("redis_url") if store_kind == "redis" else None

    def config(port: int) -> ServerConfig:
        return ServerConfig(host="127.0.0.1", port=port, db_path=tmp_path / "restart.db", secret=SECRET,
                            static_dir=None, abandon_after=600.0, store_url=store_url)

    server = await start_server(config(0))
    port = server.port
    peers: list[CallPeer] = []

    async def start(identity: str) -> CallPeer:
        token = server.server.tokens.mint(ROOM, identity, 600)
        peer = CallPeer(server.ws_url, ROOM, token, options=CallOptions(reconnect_timeout=60.0))
        peers.append(peer)
        await peer.start()
        return peer

    try:
        alice, bob = await start("alice"), await start("bob")
        await until(lambda: _members(alice) == _members(bob) == (1, frozenset({"alice", "bob"})),
                    "a call of two")
        for member in tuple(server.server.connections):
            assert member.transport is not None
            member.transport.abort()  # a reset: no close frame
        await server.close()
        for peer in (alice, bob):
            peer._inbox.put_nowait({"type": "self_update"})  # a commit into the dead connection
        await until(lambda: not alice.client.connected and not bob.client.connected, "both cut off")
        server = await start_server(config(port))
        carol = await start("carol")
        everyone = frozenset({"alice", "bob", "carol"})
        await until(lambda: all(_members(p) is not None and _members(p)[1] == everyone  # type: ignore[index]
                                and _members(p) == _members(alice) for p in (alice, bob, carol)),
                    "the call of three after the restart")
        for peer in (alice, bob):
            assert not peer.ended.is_set()
            assert all(not task.done() for task in peer._tasks), peer
    finally:
        for peer in peers:
            await peer.stop()
        await server.close()
