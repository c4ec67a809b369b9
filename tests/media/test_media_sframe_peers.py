"""Real aiortc peers in one process, over 127.0.0.1 only, with SFrame.

Loopback: aioice 0.13 leaves 127.0.0.1 out of its host candidates and has
no option to add it, so the ``loopback`` fixture replaces
``aioice.ice.get_host_addresses`` for the duration of one test (pytest's
monkeypatch) so that 127.0.0.1 is the *only* host address; peers use
``RTCConfiguration(iceServers=[])`` so no STUN server is queried (aiortc's
default is a public one).  Every SDP is checked to carry loopback
candidates only.  Keys come from a stand-in MLS exporter feeding
``sframe.MLSKeyManager``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from conftest import SeededExporter, negotiate, until
from media import FailureKind, PeerProtection, SFrameSession
from media.tracks import PatternVideoTrack, ToneAudioTrack
from sframe import MLSKeyManager



def epoch_secret(epoch: int, group: bytes = b"call") -> SeededExporter:
    return SeededExporter(group + b"#" + str(epoch).encode())


@dataclass
class Sink:
    """Consumes the remote tracks of a peer, counting decoded frames."""

    decoded: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def attach(self, pc: RTCPeerConnection) -> None:
        pc.on("track", lambda track: self.tasks.append(asyncio.ensure_future(self._consume(track))))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.decoded[track.kind] += 1
        except MediaStreamError:
            pass

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()


@dataclass
class Call:
    """Offerer ``a`` sends media to answerer ``b``."""

    a: RTCPeerConnection
    b: RTCPeerConnection
    sink: Sink
    a_sframe: PeerProtection | None
    b_sframe: PeerProtection | None

    async def close(self) -> None:
        self.sink.close()
        await self.a.close()
        await self.b.close()


async def start_call(
    tracks: list[MediaStreamTrack],
    *,
    video_mime: str = "video/VP8",
    a_session: SFrameSession | None = None,
    b_session: SFrameSession | None = None,
) -> Call:
    config = RTCConfiguration(iceServers=[])
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    sink = Sink()
    sink.attach(b)
    for track in tracks:
        transceiver = a.addTransceiver(track, direction="sendonly")
        if track.kind == "video":
            caps = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in caps if c.mimeType == video_mime])
    a_sframe = a_session.protect_peer_connection(a) if a_session else None
    b_protection: list[PeerProtection] = []
    await negotiate(a, b, (lambda: b_protection.append(b_session.protect_peer_connection(b)))
                    if b_session else None)
    return Call(a, b, sink, a_sframe, b_protection[0] if b_protection else None)


def member(own_index: int, epoch: int = 1, group: bytes = b"call") -> SFrameSession:
    session = SFrameSession(MLSKeyManager())
    session.install_epoch(epoch_secret(epoch, group), epoch, own_index, 2)
    return session


def decoder_threads_alive(pc: RTCPeerConnection) -> bool:
    threads = [t.receiver._RTCRtpReceiver__decoder_thread for t in pc.getTransceivers()]
    return all(thread is not None and thread.is_alive() for thread in threads)


@pytest.mark.parametrize("video_mime", ["video/VP8", "video/H264"])
async def test_encrypted_video_and_opus_decode(loopback: None, video_mime: str) -> None:
    alice, bob = member(0), member(1)
    call = await start_call(
        [PatternVideoTrack(), ToneAudioTrack()], video_mime=video_mime, a_session=alice, b_session=bob
    )
    try:
        await until(lambda: call.sink.decoded["video"] > 20 and call.sink.decoded["audio"] > 20)
        assert call.a_sframe is not None and call.b_sframe is not None
        sent, received = call.a_sframe.stats(), call.b_sframe.stats()
        assert {s.codec for s in sent.senders} == {video_mime, "audio/opus"}
        assert {r.codec for r in received.receivers} == {video_mime, "audio/opus"}
        assert all(r.frames_decrypted > 20 for r in received.receivers)
        assert all(r.epoch == 1 for r in received.receivers)
        assert received.failures == {kind: 0 for kind in FailureKind}
        assert sent.frames_encrypted >= received.frames_decrypted > 40
        assert decoder_threads_alive(call.b)
    finally:
        await call.close()


async def test_wrong_then_unknown_then_right_key(loopback: None) -> None:
    alice = member(0)
    bob = member(1, group=b"not the call")  # epoch 1 with the wrong secret
    call = await start_call([PatternVideoTrack()], a_session=alice, b_session=bob)
    try:
        assert call.b_sframe is not None
        (video,) = call.b_sframe.receivers
        await until(lambda: video.stats().failures[FailureKind.AUTHENTICATION] > 10)
        assert call.sink.decoded["video"] == 0
        assert video.stats().frames_decrypted == 0
        assert decoder_threads_alive(call.b)

        # alice moves to epoch 2 before bob has it: the KID is not forged but
        # not installed yet; bob holds its frames, and gives up on them after
        # about a second (RFC 9605 §4.4.4)
        alice.install_epoch(epoch_secret(2), 2, 0, 2)
        alice.switch_sender()
        await until(lambda: video.stats().failures[FailureKind.HELD_EXPIRED] > 10)
        assert video.stats().frames_holding > 0
        assert call.sink.decoded["video"] == 0

        # bob processes the commit: decryption and decoding resume
        bob.install_epoch(epoch_secret(2), 2, 1, 2)
        await until(lambda: call.sink.decoded["video"] > 10)
        stats = video.stats()
        assert stats.epoch == 2 and stats.frames_decrypted > 10
        assert 1 <= stats.keyframe_requests < stats.failures_total
        assert decoder_threads_alive(call.b)
    finally:
        await call.close()


async def test_unencrypted_pair_works_alongside_encrypted_pair(loopback: None) -> None:
    alice, bob = member(0), member(1)
    secure = await start_call([PatternVideoTrack(), ToneAudioTrack()], a_session=alice, b_session=bob)
    plain = await start_call([PatternVideoTrack(), ToneAudioTrack()])
    try:
        await until(
            lambda: min(secure.sink.decoded.values()) > 20 and min(plain.sink.decoded.values()) > 20
        )
        assert secure.b_sframe is not None
        assert secure.b_sframe.stats().failures == {kind: 0 for kind in FailureKind}
        for pc in (plain.a, plain.b):
            for transceiver in pc.getTransceivers():
                assert "_next_encoded_frame" not in vars(transceiver.sender)
                assert not hasattr(transceiver.receiver, "_sframe_hooked")
    finally:
        await secure.close()
        await plain.close()


async def test_rekey_without_decrypt_failures(loopback: None) -> None:
    alice, bob = member(0), member(1)
    call = await start_call([PatternVideoTrack(), ToneAudioTrack()], a_session=alice, b_session=bob)
    try:
        assert call.a_sframe is not None and call.b_sframe is not None
        video = next(r for r in call.b_sframe.receivers if r.stats().kind == "video")
        await until(lambda: call.sink.decoded["video"] > 10)
        # the commit: receivers first, then the sender's transition
        bob.install_epoch(epoch_secret(2), 2, 1, 2)
        alice.install_epoch(epoch_secret(2), 2, 0, 2, switch_after=0.3)
        assert alice.sending_epoch == 1
        await until(lambda: video.stats().frames_by_epoch.get(2, 0) > 10)
        decoded = call.sink.decoded["video"]
        await until(lambda: call.sink.decoded["video"] > decoded + 10)

        stats = call.b_sframe.stats()
        assert stats.failures == {kind: 0 for kind in FailureKind}
        assert all(r.epoch == 2 for r in stats.receivers)
        assert video.stats().keyframes_by_epoch[2] >= 1
        sent = call.a_sframe.stats()
        assert all(s.epoch == 2 and s.last_rekey is not None for s in sent.senders)
        assert sent.sending_epoch == sent.newest_epoch == 2
    finally:
        await call.close()
