"""The private Janus launcher (media.cli.janus; issue 16, DESIGN.md "Scale").

Janus starts on loopback with only VideoRoom and HTTP, answers ``info``,
forwards media between a raw aiortc publisher (jsep with ``e2ee: true`` in a
``require_e2ee`` room) and a raw multistream subscriber, stops by PID, and
comes back on the same ports after a SIGKILL.  Janus's HTTP API is driven raw
here (aiohttp), independently of signaling.janus.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from janus_peers import Publisher, Subscriber, janus  # noqa: F401  (fixture)

from conftest import until
from media.cli.janus import EVENT_LOOPS, JanusProcess, build_shim

pytestmark = pytest.mark.e2e


def _listening(pid: int, port: int) -> list[str]:
    """The local addresses (hex, as /proc shows them) of ``pid``'s TCP sockets listening on ``port``."""
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                    found.append(address)
    return found


def test_build_shim_is_cached(tmp_path: Path) -> None:
    first = build_shim(tmp_path)
    built = first.stat().st_mtime_ns
    assert build_shim(tmp_path) == first
    assert first.stat().st_mtime_ns == built


def test_private_janus_on_loopback(janus: JanusProcess) -> None:
    info = janus.info()
    assert info is not None
    assert set(info["plugins"]) == {"janus.plugin.videoroom"}
    assert set(info["transports"]) == {"janus.transport.http"}
    assert info["static-event-loops"] == EVENT_LOOPS == 1  # one media thread, not one per connection
    assert janus.pid is not None
    assert _listening(janus.pid, janus.http_port) == ["0100007F"]  # 127.0.0.1 only
    first, last = janus.rtp_ports
    assert last - first + 1 == 200
    pid = janus.pid
    janus.stop()
    assert janus.pid is None and janus.info() is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_sigkill_and_restart_on_the_same_ports(janus: JanusProcess) -> None:
    url, ports, pid = janus.url, janus.rtp_ports, janus.pid
    janus.kill()
    assert janus.info() is None
    janus.start()
    assert janus.url == url and janus.rtp_ports == ports and janus.pid != pid
    assert janus.info() is not None


class RawJanus:
    """Janus's HTTP API, raw: one session, one videoroom handle per call of :meth:`attach`."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.session = ""
        self.events: list[dict[str, Any]] = []
        self._poller: asyncio.Task[None] | None = None

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body, transaction=secrets.token_hex(6))
        async with self.http.post(f"{self.url}{path}", json=body) as reply:
            answer: dict[str, Any] = await reply.json()
        return answer

    async def create(self) -> None:
        self.session = f"/{(await self.post('', {'janus': 'create'}))['data']['id']}"
        self._poller = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        while True:
            async with self.http.get(f"{self.url}{self.session}?maxev=10") as reply:
                answer = await reply.json()
            self.events.extend(answer if isinstance(answer, list) else [answer])

    async def attach(self) -> str:
        reply = await self.post(self.session, {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        return f"{self.session}/{reply['data']['id']}"

    async def message(self, handle: str, body: dict[str, Any], jsep: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a plugin message; the synchronous answer, or the asynchronous event with its transaction."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        request["transaction"] = transaction = secrets.token_hex(6)
        async with self.http.post(f"{self.url}{handle}", json=request) as reply:
            answer: dict[str, Any] = await reply.json()
        if answer["janus"] != "ack":
            return answer
        await until(lambda: any(e.get("transaction") == transaction for e in self.events), "janus event")
        return next(e for e in self.events if e.get("transaction") == transaction)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        await self.post(self.session, {"janus": "destroy"})


async def test_media_through_janus(janus: JanusProcess) -> None:
    publisher, subscriber = Publisher(), Subscriber()
    async with aiohttp.ClientSession() as http:
        api = RawJanus(http, janus.url)
        await api.create()
        try:
            owner = await api.attach()
            room = 1000 + secrets.randbelow(10**9)
            created = await api.message(owner, {"request": "create", "room": room, "require_e2ee": True,
                                                "secret": secrets.token_hex(8)})
            assert created["plugindata"]["data"]["videoroom"] == "created"

            joined = await api.message(owner, {"request": "joinandconfigure", "room": room, "ptype": "publisher"},
                                       {"type": "offer", "sdp": await publisher.offer(), "e2ee": True})
            assert joined["plugindata"]["data"]["videoroom"] == "joined", joined["plugindata"]
            feed = joined["plugindata"]["data"]["id"]
            await publisher.accept(joined["jsep"]["sdp"])
            await until(lambda: any(e.get("janus") == "webrtcup" and e.get("sender") == int(owner.rsplit("/")[-1])
                                    for e in api.events), "publisher webrtcup")

            viewer = await api.attach()
            attached = await api.message(viewer, {"request": "join", "room": room, "ptype": "subscriber",
                                                  "streams": [{"feed": feed}]})
            assert attached["plugindata"]["data"]["videoroom"] == "attached", attached["plugindata"]
            assert "a=rtpmap:" in attached["jsep"]["sdp"]
            started = await api.message(viewer, {"request": "start"},
                                        {"type": "answer", "sdp": await subscriber.answer(attached["jsep"]["sdp"])})
            assert started["plugindata"]["data"].get("started") == "ok"
            kinds = {t.kind for t in subscriber.pc.getTransceivers()}
            assert kinds == {"audio", "video"}
            await until(lambda: len(subscriber.frames) == 2 and min(subscriber.frames.values()) >= 10,
                        "audio and video frames through Janus")
        finally:
            await subscriber.close()
            await publisher.close()
            await api.close()


async def test_require_e2ee_room_refuses_a_clear_publish(janus: JanusProcess) -> None:
    publisher = Publisher()
    async with aiohttp.ClientSession() as http:
        api = RawJanus(http, janus.url)
        await api.create()
        try:
            handle = await api.attach()
            room = 1000 + secrets.randbelow(10**9)
            await api.message(handle, {"request": "create", "room": room, "require_e2ee": True})
            refused = await api.message(handle, {"request": "joinandconfigure", "room": room, "ptype": "publisher"},
                                        {"type": "offer", "sdp": await publisher.offer()})
            assert refused["plugindata"]["data"]["error_code"] == 433
        finally:
            await publisher.close()
            await api.close()
