"""Raw aiortc peers for the Janus tests (DESIGN.md, "Scale"; issue 16).

A publisher (sendonly audio + video, no SFrame: these tests are about the
transport through Janus, not about encryption) and a multistream subscriber
(recvonly, ``bundlePolicy=MAX_BUNDLE``, RTX stripped from Janus's offer since
aiortc 1.16 drops RTX when several publishers share one connection).  Both
gather on 127.0.0.1 only and never negotiate the audio-level header extension.
The ``janus`` fixture starts a private Janus (media.cli.janus) per test.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from conftest import BOUND
from media.cli.janus import JanusProcess
from media.loopback import filter_sdp, loopback_ice
from media.sfu import without_audio_level, without_rtx
from media.tracks import PatternVideoTrack, ToneAudioTrack
from signaling.client import SignalingClient

@pytest.fixture
def janus(tmp_path: Path) -> Iterator[JanusProcess]:
    """A private Janus on loopback (shim cached under the test's tmp folder), stopped after the test."""
    process = JanusProcess(tmp_path / "janus", cache_dir=tmp_path / "cache")
    process.start()
    yield process
    process.stop()


class Publisher:
    """One sendonly connection with a pattern video and a tone audio track."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
        self.pc.addTransceiver(PatternVideoTrack(), direction="sendonly")

    async def offer(self) -> str:
        """The complete offer (ICE gathered on 127.0.0.1)."""
        with loopback_ice():
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return without_audio_level(self.pc.localDescription.sdp)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(filter_sdp(answer), "answer"))

    async def close(self) -> None:
        await self.pc.close()


class Subscriber:
    """One recvonly multistream connection; counts the frames received per mid."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.frames: Counter[str] = Counter()
        self._readers: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track)
        self._readers.append(asyncio.ensure_future(self._read(str(mid), track)))

    async def _read(self, mid: str, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames[mid] += 1
        except MediaStreamError:
            return

    async def answer(self, offer: str) -> str:
        """Answer Janus's offer (RTX and audio-level stripped); returns the complete answer."""
        await self.pc.setRemoteDescription(RTCSessionDescription(without_audio_level(without_rtx(filter_sdp(offer))),
                                                                 "offer"))
        with loopback_ice():
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await self.pc.close()


# -- the same peers through a signaling server's sfu.* requests ------------------------------


async def joined_member(server: Any, clients: list[SignalingClient], identity: str,
                        room: str) -> tuple[SignalingClient, dict[str, Any]]:
    """A joined client of ``server`` and its join reply."""
    client = SignalingClient(server.ws_url, room, server.server.tokens.mint(room, identity, 600))
    clients.append(client)
    return client, await client.connect()


async def publish_over(client: SignalingClient, publisher: Publisher) -> int:
    """Publish through the server (``sfu.publish``); the feed id."""
    ack = await client.request("sfu.publish", jsep={"type": "offer", "sdp": await publisher.offer()})
    await publisher.accept(ack["jsep"]["sdp"])
    return int(ack["feed"])


async def subscribe_over(client: SignalingClient, subscriber: Subscriber, feeds: list[int]) -> list[dict[str, Any]]:
    """Subscribe through the server (``sfu.subscribe``, then ``sfu.start``); the streams."""
    ack = await client.request("sfu.subscribe", feeds=feeds)
    if ack["jsep"] is not None:
        answer = await subscriber.answer(ack["jsep"]["sdp"])
        await client.request("sfu.start", jsep={"type": "answer", "sdp": answer})
    return list(ack["streams"])


async def feeds_event(client: SignalingClient, count: int) -> dict[int, str]:
    """The next ``sfu.feeds`` event naming ``count`` feeds: feed -> member."""
    while True:
        event = await client.next_event("sfu.feeds", timeout=BOUND)
        if len(event["feeds"]) == count:
            return {f["feed"]: f["from"] for f in event["feeds"]}
