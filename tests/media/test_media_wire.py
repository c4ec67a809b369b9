"""The RTP payloads on the wire are SFrame ciphertext (issue 6).

A real call over 127.0.0.1 (two aiortc peers, ``SFrameSession`` on each,
as in tests/media/test_media_sframe_peers.py): ``a`` sends VP8 video (the test
pattern with its drawn-in counter) and Opus audio to ``b``.  Captured:

* every RTP packet ``a`` sends, as it leaves the packetizer:
  ``RTCDtlsTransport._send_rtp`` is where aiortc hands the serialized
  packet to SRTP encryption;
* the plaintext encoded frames, as the encoders emit them: in the
  encrypted call where the SFrame sender transform receives them (before
  sealing); in the unencrypted control call where aiortc's VP8 packetizer
  receives them (``Vp8Encoder._packetize``) and what ``OpusEncoder.encode``
  returns.  They are shown to be real media by decoding them: every VP8
  picture carries its counter, every Opus frame sounds.

The check: no 16-byte window of any plaintext frame, past the codec's clear
bytes (VP8: 10 on keyframes, 3 on delta frames, authenticated but readable
by design; Opus: none), occurs in any RTP payload.  The control runs the
same check on the same call without SFrame and finds every frame, so the
check can fail.
"""

from __future__ import annotations

import array
import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCDtlsTransport, RTCPeerConnection, RTCRtpSender
from aiortc.codecs import OpusEncoder, Vp8Encoder
from aiortc.codecs.opus import OpusDecoder
from aiortc.codecs.vpx import Vp8Decoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket, is_rtcp

from conftest import SeededExporter, negotiate, until
from media.counter import CounterVideoTrack, read_counter
from media.framing import vp8_clear_bytes
from media.session import PeerProtection, SFrameSession
from media.tracks import ToneAudioTrack
from media.transform import SFrameSenderTransform
from sframe import MLSKeyManager, decode_header, mls_kid

WINDOW = 16  # bytes: a longer run of plaintext on the wire counts as leaked
EPOCH = 1
SENDER_INDEX = 0


def member(own_index: int) -> SFrameSession:
    session = SFrameSession(MLSKeyManager())
    session.install_epoch(SeededExporter(b"wire"), EPOCH, own_index, 2)
    return session


@dataclass
class Capture:
    """Plaintext frames and RTP payloads, by kind."""

    frames: dict[str, list[bytes]] = field(default_factory=lambda: {"audio": [], "video": []})
    #: (SSRC, RTP timestamp, sequence number, payload) of every RTP packet sent
    packets: list[tuple[int, int, int, bytes]] = field(default_factory=list)

    def payloads(self, ssrcs: set[int]) -> list[bytes]:
        return [payload for ssrc, _, _, payload in self.packets if ssrc in ssrcs]


def capture_rtp(monkeypatch: pytest.MonkeyPatch, capture: Capture) -> None:
    """Record every RTP packet on its way to SRTP encryption."""
    send_rtp = RTCDtlsTransport._send_rtp

    async def recording(self: RTCDtlsTransport, data: bytes) -> None:
        if not is_rtcp(data):
            packet = RtpPacket.parse(data)
            capture.packets.append((packet.ssrc, packet.timestamp, packet.sequence_number,
                                    packet.payload))
        await send_rtp(self, data)

    monkeypatch.setattr(RTCDtlsTransport, "_send_rtp", recording)


def tap_transform(transform: SFrameSenderTransform, capture: Capture) -> None:
    """Record each frame the SFrame sender transform is given (plaintext)."""
    seal_frame = transform.seal_frame

    def recording(frame: bytes) -> bytes | None:
        capture.frames[transform.sender.kind].append(frame)
        return seal_frame(frame)

    transform.seal_frame = recording  # type: ignore[method-assign]


def tap_encoders(monkeypatch: pytest.MonkeyPatch, capture: Capture) -> None:
    """Record what the VP8 packetizer and the Opus encoder are given/return."""
    packetize = Vp8Encoder._packetize
    encode = OpusEncoder.encode

    def vp8_packetize(cls: type[Vp8Encoder], buffer: bytes, picture_id: int) -> list[bytes]:
        if buffer:
            capture.frames["video"].append(buffer)
        return packetize(buffer, picture_id)

    def opus_encode(self: OpusEncoder, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], Any]:
        payloads, timestamp = encode(self, frame, force_keyframe)
        capture.frames["audio"].extend(p for p in payloads if p)
        return payloads, timestamp

    monkeypatch.setattr(Vp8Encoder, "_packetize", classmethod(vp8_packetize))
    monkeypatch.setattr(OpusEncoder, "encode", opus_encode)


@dataclass
class Call:
    a: RTCPeerConnection
    b: RTCPeerConnection
    a_sframe: PeerProtection | None
    decoded: dict[str, int]
    consumers: list[asyncio.Task[None]]

    def sender_ssrcs(self, kind: str, *, rtx: bool = True) -> set[int]:
        """SSRCs ``a`` sends ``kind`` under (media, and retransmissions if ``rtx``)."""
        senders = [t.sender for t in self.a.getTransceivers() if t.kind == kind]
        return {s._ssrc for s in senders} | ({s._rtx_ssrc for s in senders} if rtx else set())

    async def close(self) -> None:
        for task in self.consumers:
            task.cancel()
        await self.a.close()
        await self.b.close()


async def start_call(encrypted: bool, capture: Capture) -> Call:
    """``a`` sends VP8 + Opus to ``b``; SFrame on both ends if ``encrypted``."""
    config = RTCConfiguration(iceServers=[])
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    decoded = {"audio": 0, "video": 0}
    consumers: list[asyncio.Task[None]] = []

    async def consume(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                decoded[track.kind] += 1
        except MediaStreamError:
            pass

    b.on("track", lambda track: consumers.append(asyncio.ensure_future(consume(track))))
    for track in (CounterVideoTrack(), ToneAudioTrack()):
        transceiver = a.addTransceiver(track, direction="sendonly")
        if track.kind == "video":
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == "video/VP8"])
    a_sframe = member(SENDER_INDEX).protect_peer_connection(a) if encrypted else None
    if a_sframe is not None:
        assert len(a_sframe.senders) == 2
        for transform in a_sframe.senders:
            tap_transform(transform, capture)
    await negotiate(a, b, (lambda: member(1).protect_peer_connection(b)) if encrypted else None)
    return Call(a, b, a_sframe, decoded, consumers)


async def hold_call(monkeypatch: pytest.MonkeyPatch, *, encrypted: bool) -> tuple[Capture, Capture, Call]:
    """Run the call until ``b`` decoded plenty.  Returns the frames recorded
    then with every RTP packet sent up to a moment later (all of those
    frames were sent by then), and everything recorded until the call ended."""
    live = Capture()
    capture_rtp(monkeypatch, live)
    if not encrypted:
        tap_encoders(monkeypatch, live)
    call = await start_call(encrypted, live)
    try:
        await until(lambda: call.decoded["video"] >= 40 and call.decoded["audio"] >= 60)
        frames = {kind: list(frames) for kind, frames in live.frames.items()}
        await asyncio.sleep(0.5)  # every frame recorded so far leaves the packetizer
        return Capture(frames, list(live.packets)), live, call
    finally:
        await call.close()


def clear_bytes(kind: str, frame: bytes) -> int:
    """Bytes of a plaintext frame that SFrame leaves readable by design."""
    return vp8_clear_bytes(frame) if kind == "video" else 0


def windows(data: bytes, start: int = 0) -> Iterator[bytes]:
    return (data[i : i + WINDOW] for i in range(start, len(data) - WINDOW + 1))


def leaked_frames(kind: str, frames: list[bytes], payloads: list[bytes]) -> int:
    """How many frames have a WINDOW-byte run (past their clear bytes) in a payload."""
    on_wire = {w for payload in payloads for w in windows(payload)}
    return sum(any(w in on_wire for w in windows(frame, clear_bytes(kind, frame)))
               for frame in frames)


def assert_real_media(capture: Capture) -> None:
    """The recorded frames are the plaintext media: VP8 pictures that carry
    increasing counters, and Opus frames that decode to the tone."""
    video, audio = capture.frames["video"], capture.frames["audio"]
    assert len(video) >= 40 and len(audio) >= 60
    assert video[0][0] & 1 == 0, "the first video frame is a keyframe"
    vp8 = Vp8Decoder()
    counters = [read_counter(picture) for i, frame in enumerate(video)
                for picture in vp8.decode(JitterFrame(frame, i))]
    assert len(counters) == len(video) and None not in counters
    assert all(x < y for x, y in zip(counters, counters[1:])), counters
    opus = OpusDecoder()
    loud = 0
    for i, frame in enumerate(audio):
        for sound in opus.decode(JitterFrame(frame, i * 960)):
            samples = array.array("h", bytes(sound.planes[0]))
            loud += max(map(abs, samples)) > 4000  # the tone's amplitude is 8000
    assert loud >= len(audio) - 2, (loud, len(audio))  # the codec's first frames ramp up


def frame_count(capture: Capture) -> int:
    return sum(len(frames) for frames in capture.frames.values())


async def test_rtp_payloads_are_sframe_ciphertext(loopback: None, monkeypatch: pytest.MonkeyPatch) -> None:
    capture, everything, call = await hold_call(monkeypatch, encrypted=True)
    assert_real_media(capture)
    assert call.a_sframe is not None
    for kind in ("video", "audio"):
        frames, payloads = capture.frames[kind], capture.payloads(call.sender_ssrcs(kind))
        assert len(payloads) >= len(frames)
        assert sum(map(len, payloads)) > sum(map(len, frames))  # all of it travels, sealed
        assert leaked_frames(kind, frames, payloads) == 0, kind

    # each frame on the wire is its clear bytes || SFrame(KID of a, fresh CTR)
    kid = mls_kid(EPOCH, SENDER_INDEX, 0, 4, 1)
    counters = []
    for payload in capture.payloads(call.sender_ssrcs("audio")):
        header_kid, ctr, _ = decode_header(payload)
        assert header_kid == kid
        counters.append(ctr)
    video: dict[int, dict[int, bytes]] = {}  # RTP timestamp -> sequence number -> VP8 data
    media_ssrcs = call.sender_ssrcs("video", rtx=False)
    for ssrc, timestamp, sequence, payload in capture.packets:  # in sending order
        if ssrc in media_ssrcs:  # a retransmission repeats a sequence number: skipped
            video.setdefault(timestamp, {}).setdefault(sequence, vp8_depayload(payload))
    assert len(video) >= len(capture.frames["video"])
    clear_parts = {frame[: clear_bytes("video", frame)] for frame in everything.frames["video"]}
    for parts in video.values():
        sealed = b"".join(parts.values())
        clear = vp8_clear_bytes(sealed)
        assert sealed[:clear] in clear_parts
        header_kid, ctr, _ = decode_header(sealed[clear:])
        assert header_kid == kid
        counters.append(ctr)
    assert len(set(counters)) == len(counters), "a (KID, CTR) pair went out twice"


async def test_control_unencrypted_call_shows_plaintext_on_the_wire(
    loopback: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture, _, call = await hold_call(monkeypatch, encrypted=False)
    assert_real_media(capture)
    assert call.a_sframe is None
    for kind in ("video", "audio"):
        frames, payloads = capture.frames[kind], capture.payloads(call.sender_ssrcs(kind))
        assert leaked_frames(kind, frames, payloads) == len(frames), kind
    assert frame_count(capture) >= 100
