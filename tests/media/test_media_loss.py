"""A video packet lost for good, and its retransmission too, in a real call.

Two aiortc peers over 127.0.0.1: ``a`` sends the counter test pattern
(VP8, about one RTP packet per frame) to ``b``. Once ``b`` decodes, one
video packet of ``a`` is dropped on its way to SRTP, along with every
resend of it and every retransmission (RTX) packet, so NACK cannot repair
the hole. With SFrame on ``b``'s receiver (``GapSkippingJitterBuffer``, see
media/seams.py) the picture comes back within a few seconds, at a keyframe,
and its counter keeps increasing; the control call without SFrame uses
aiortc's own jitter buffer, which stays frozen (it would wait for 512
packets, some 17 s).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiortc import RTCConfiguration, RTCDtlsTransport, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket, is_rtcp

from conftest import SeededExporter, negotiate, until
from media.counter import CounterVideoTrack, read_counter
from media.session import SFrameSession
from sframe import MLSKeyManager

RECOVERY_BOUND = 5.0  # seconds: 0.5 s of waiting, a PLI, a keyframe, with room for a loaded machine
FROZEN_FOR = 3.0  # seconds the control call must show no new picture


def member(own_index: int) -> SFrameSession:
    session = SFrameSession(MLSKeyManager())
    session.install_epoch(SeededExporter(b"loss"), 1, own_index, 2)
    return session


@dataclass
class Loss:
    """Drops one video packet for good once armed (and all retransmissions meanwhile)."""

    media_ssrc: int = 0
    rtx_ssrc: int = 0
    armed: bool = False
    lost_seq: int | None = None
    dropped: int = 0
    counters: list[int] = field(default_factory=list)  # counters of the pictures ``b`` decoded

    def drops(self, data: bytes) -> bool:
        if not self.armed or is_rtcp(data):
            return False
        packet = RtpPacket.parse(data)
        if packet.ssrc == self.rtx_ssrc:
            self.dropped += 1
            return True
        if packet.ssrc == self.media_ssrc:
            if self.lost_seq is None:
                self.lost_seq = packet.sequence_number
            if packet.sequence_number == self.lost_seq:  # the original, or a resend of it
                self.dropped += 1
                return True
        return False


async def call_with_loss(monkeypatch: pytest.MonkeyPatch, *, encrypted: bool) -> tuple[Loss, list[int]]:
    """Run the call, lose one packet; returns the loss and the counters decoded after it."""
    loss = Loss()
    send_rtp = RTCDtlsTransport._send_rtp

    async def lossy(self: RTCDtlsTransport, data: bytes) -> None:
        if not loss.drops(data):
            await send_rtp(self, data)

    monkeypatch.setattr(RTCDtlsTransport, "_send_rtp", lossy)
    config = RTCConfiguration(iceServers=[])
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    consumers: list[asyncio.Task[None]] = []

    async def consume(track: MediaStreamTrack) -> None:
        try:
            while True:
                counter = read_counter(await track.recv())
                if counter is not None:
                    loss.counters.append(counter)
        except MediaStreamError:
            pass

    b.on("track", lambda track: consumers.append(asyncio.ensure_future(consume(track))))
    transceiver = a.addTransceiver(CounterVideoTrack(), direction="sendonly")
    transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                     if c.mimeType in ("video/VP8", "video/rtx")])
    if encrypted:
        member(0).protect_peer_connection(a)
    try:
        await negotiate(a, b, (lambda: member(1).protect_peer_connection(b)) if encrypted else None)
        await until(lambda: len(loss.counters) >= 30, "b decodes video")
        loss.media_ssrc, loss.rtx_ssrc = transceiver.sender._ssrc, transceiver.sender._rtx_ssrc
        loss.armed = True
        await until(lambda: loss.lost_seq is not None, "a packet is lost")
        before = len(loss.counters)
        if encrypted:
            await until(lambda: len(loss.counters) >= before + 30, "the picture comes back", RECOVERY_BOUND)
        else:
            await asyncio.sleep(FROZEN_FOR)
        return loss, loss.counters[before:]
    finally:
        for task in consumers:
            task.cancel()
        await a.close()
        await b.close()


async def test_the_picture_comes_back_after_a_packet_lost_for_good(
        loopback: None, monkeypatch: pytest.MonkeyPatch) -> None:
    loss, after = await call_with_loss(monkeypatch, encrypted=True)
    assert loss.dropped >= 1
    assert all(x < y for x, y in zip(after, after[1:])), "the counter only moves forward"


async def test_control_aiortcs_own_buffer_stays_frozen(loopback: None, monkeypatch: pytest.MonkeyPatch) -> None:
    loss, after = await call_with_loss(monkeypatch, encrypted=False)
    assert loss.dropped >= 1
    assert len(after) <= 1, f"aiortc's buffer handed on {len(after)} pictures after the hole"
