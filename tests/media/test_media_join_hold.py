"""No frame lost while joining: receivers hold frames of an epoch they do not
have yet and open them when it is installed (RFC 9605 §4.4.4, §5.2), and a
sender sends a participant nothing before it is a member, then only under an
epoch its Welcome gave it, starting with a keyframe.

First on real aiortc receivers without a network (frames put where aiortc
puts them, delivered frames read from the decoder's queue); then in a real
call (CallPeers, the signaling server, loopback) where the joiner processes
its Welcome late on purpose, after the other members' keyframes under the
new epoch have reached it.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from call_checks import PeerStarter
from conftest import until
from media import FailureKind, SFrameSession
from media.call_peer import CallOptions, CallPeer
from media.framing import FrameCodec, frame_codec, is_keyframe
from media.sinks import VerifyingSink
from media.stats import ReceiverStats
from media.tracks import PatternVideoTrack, ToneAudioTrack
from media.transform import HoldLimits
from sframe import MLSKeyManager
from signaling.config import ServerConfig
from signaling.server import RunningServer, start_server

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)
ROOM = "join-hold"
#: how late the joiner processes its Welcome: after the members' switch to
#: the new epoch (CallOptions.confirm_delay, switch_delay), within the hold
WELCOME_DELAY = 0.6


class FakeDtlsTransport:
    state = "new"


class Exporter:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return hashlib.shake_256(b"join-hold|%d|" % self.epoch + label).digest(length)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def sealed_frames(epoch: int, count: int) -> list[JitterFrame]:
    """``count`` VP8 frames of member 0 in ``epoch`` (the first a keyframe),
    as the remote jitter buffer would emit them."""
    session = SFrameSession(MLSKeyManager())
    session.install_epoch(Exporter(epoch), epoch, 0, 2)
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    session.protect_sender(sender)
    frames: list[JitterFrame] = []
    while len(frames) < count:
        encoded = await sender._next_encoded_frame(VP8)
        if encoded is not None:
            frames.append(JitterFrame(b"".join(depayload(VP8, p) for p in encoded.payloads),
                                      encoded.timestamp))
    return frames


class DecoderQueue:
    """Stands in for the receiver's decoder queue, to read what reaches it."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.inner: queue.Queue[Any] = queue.Queue()
        receiver._RTCRtpReceiver__decoder_queue._forward = self.inner.put  # type: ignore[attr-defined]
        self.receiver = receiver

    def put(self, frames: list[JitterFrame]) -> None:
        for frame in frames:
            self.receiver._RTCRtpReceiver__decoder_queue.put((VP8, frame))  # type: ignore[attr-defined]

    def drain(self) -> list[JitterFrame]:
        out = []
        while not self.inner.empty():
            out.append(self.inner.get_nowait()[1])
        return out


def joiner(clock: Clock, hold: HoldLimits | None = HoldLimits()) -> tuple[SFrameSession, RTCRtpReceiver, Any]:
    session = SFrameSession(MLSKeyManager(), clock=clock, hold=hold)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    return session, receiver, session.protect_receiver(receiver)


async def test_held_frames_reach_the_decoder_in_order_once_the_epoch_is_installed() -> None:
    clock = Clock()
    frames = await sealed_frames(3, 6)
    ciphertexts = [f.data for f in frames]
    session, receiver, transform = joiner(clock)
    decoder = DecoderQueue(receiver)
    decoder.put(frames[:4])
    assert decoder.drain() == []
    assert transform.stats().frames_holding == 4 and transform.stats().failures_total == 0

    clock.now += 0.5
    session.install_epoch(Exporter(3), 3, 1, 2)
    released = decoder.drain()
    assert [f.timestamp for f in released] == [f.timestamp for f in frames[:4]]
    assert all(f.data != c for f, c in zip(released, ciphertexts))  # decrypted in place
    assert is_keyframe(FrameCodec.VP8, released[0].data)
    decoder.put(frames[4:])
    assert [f.timestamp for f in decoder.drain()] == [f.timestamp for f in frames[4:]]

    stats = transform.stats()
    assert (stats.frames_held, stats.frames_held_opened, stats.frames_holding) == (4, 4, 0)
    assert stats.frames_decrypted == 6 and stats.keyframes_by_epoch == {3: 1}
    assert stats.failures_total == 0 and stats.keyframe_requests == 0


async def test_held_frames_expire_apart_from_other_failures() -> None:
    clock = Clock()
    frames = await sealed_frames(3, 3)
    session, receiver, transform = joiner(clock)
    decoder = DecoderQueue(receiver)
    decoder.put(frames[:2])
    clock.now += 1.25
    decoder.put(frames[2:])  # expires the two held a second ago, holds this one
    stats = transform.stats()
    assert stats.failures[FailureKind.HELD_EXPIRED] == 2 and stats.failures_total == 2
    assert stats.frames_holding == 1
    session.install_epoch(Exporter(3), 3, 1, 2)
    assert [f.timestamp for f in decoder.drain()] == [frames[2].timestamp]
    assert transform.stats().frames_held_opened == 1


async def test_a_forged_held_frame_is_an_authentication_failure() -> None:
    clock = Clock()
    frames = await sealed_frames(3, 2)
    forged = JitterFrame(frames[1].data[:-1] + bytes([frames[1].data[-1] ^ 1]), frames[1].timestamp)
    session, receiver, transform = joiner(clock)
    decoder = DecoderQueue(receiver)
    decoder.put([frames[0], forged])
    session.install_epoch(Exporter(3), 3, 1, 2)
    assert [f.timestamp for f in decoder.drain()] == [frames[0].timestamp]
    stats = transform.stats()
    assert stats.failures[FailureKind.AUTHENTICATION] == 1 and stats.frames_held_opened == 1


async def test_holding_switched_off_drops_as_unknown_kid() -> None:
    clock = Clock()
    frames = await sealed_frames(3, 2)
    session, receiver, transform = joiner(clock, hold=None)
    decoder = DecoderQueue(receiver)
    decoder.put(frames)
    session.install_epoch(Exporter(3), 3, 1, 2)
    assert decoder.drain() == []
    stats = transform.stats()
    assert stats.failures[FailureKind.UNKNOWN_KID] == 2 and stats.frames_held == 0


async def encoded_frames(sender: RTCRtpSender, codec: RTCRtpCodecParameters, count: int) -> list[bytes | None]:
    """What ``sender`` sends for its next ``count`` source frames (None: nothing)."""
    out: list[bytes | None] = []
    for _ in range(count):
        encoded = await sender._next_encoded_frame(codec)
        out.append(None if encoded is None else b"".join(depayload(codec, p) for p in encoded.payloads))
    return out


async def test_a_sender_withholds_frames_its_remote_cannot_open_then_starts_with_a_keyframe() -> None:
    session = SFrameSession(MLSKeyManager())
    session.install_epoch(Exporter(3), 3, 0, 2)
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    transform = session.protect_sender(sender)
    sent = await encoded_frames(sender, VP8, 3)
    assert all(f is not None for f in sent)
    assert [is_keyframe(FrameCodec.VP8, f) for f in sent if f is not None] == [True, False, False]

    transform.remote_keys_from(None)  # the remote is no member (any more)
    assert await encoded_frames(sender, VP8, 2) == [None, None]
    transform.remote_keys_from(4)  # a member from epoch 4: we still send under 3
    assert await encoded_frames(sender, VP8, 2) == [None, None]
    session.install_epoch(Exporter(4), 4, 0, 2)
    assert await encoded_frames(sender, VP8, 1) == [None]  # installed, not switched to yet
    session.switch_sender(4)
    first, second = await encoded_frames(sender, VP8, 2)
    assert first is not None and is_keyframe(FrameCodec.VP8, first)
    assert second is not None and not is_keyframe(FrameCodec.VP8, second)
    stats = transform.stats()
    assert (stats.frames_withheld, stats.frames_encrypted, stats.epoch) == (5, 5, 4)
    assert stats.frames_dropped == 0


async def test_an_audio_sender_withholds_frames_too() -> None:
    session = SFrameSession(MLSKeyManager())
    session.install_epoch(Exporter(0), 0, 0, 2)
    sender = RTCRtpSender(ToneAudioTrack(), FakeDtlsTransport())
    transform = session.protect_sender(sender)
    transform.remote_keys_from(None)
    assert await encoded_frames(sender, OPUS, 3) == [None, None, None]
    transform.remote_keys_from(0)
    assert all(f is not None for f in await encoded_frames(sender, OPUS, 3))
    stats = transform.stats()
    assert (stats.frames_withheld, stats.frames_encrypted) == (3, 3)


# -- a real call --------------------------------------------------------------------


class LateWelcomePeer(CallPeer):
    """Processes its Welcome ``WELCOME_DELAY`` seconds late; right after,
    snapshots what its receivers opened from the frames they held."""

    at_welcome: dict[str, list[ReceiverStats]]

    async def _handle(self, event: dict[str, Any]) -> None:
        if event.get("type") != "welcome":
            await super()._handle(event)
        elif not event.get("delayed"):  # back to the inbox, later; other events go on meanwhile
            asyncio.get_running_loop().call_later(
                WELCOME_DELAY, self._inbox.put_nowait, {**event, "delayed": True})
        else:
            await super()._handle(event)
            if self.group is not None and not hasattr(self, "at_welcome"):
                self.at_welcome = {name: [r.stats() for r in link.protection.receivers]
                                   for name, link in self.links.items()}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(ServerConfig(host="127.0.0.1", port=0, db_path=tmp_path / "calls.db",
                                              secret=b"k" * 32, static_dir=None))
    yield running
    await running.close()


StartPeer = Callable[..., Awaitable[CallPeer]]


@pytest.fixture
async def start_peer(server: RunningServer) -> AsyncIterator[StartPeer]:
    starter = PeerStarter(server.ws_url, server.server.tokens, ROOM)
    yield starter
    await starter.stop_all()


def video_report(peer: CallPeer, remote: str) -> Any:
    sink = peer.sinks[0]
    assert isinstance(sink, VerifyingSink)
    return sink.reports.get(remote, {}).get("video")


async def test_a_late_welcome_loses_no_frame_from_the_first_keyframe(start_peer: StartPeer) -> None:
    alice, bob = await start_peer("alice"), await start_peer("bob")
    await until(lambda: all(p.status().members == ("alice", "bob") for p in (alice, bob))
                and all((r := video_report(p, q)) is not None and r.frames > 30
                        for p, q in ((alice, "bob"), (bob, "alice"))), "a call of two")
    carol = await start_peer("carol", kind=LateWelcomePeer)
    assert isinstance(carol, LateWelcomePeer)
    await until(lambda: hasattr(carol, "at_welcome"), "carol's late Welcome")
    joined = carol.status().epoch
    assert joined is not None
    await until(lambda: all((r := video_report(carol, q)) is not None and r.frames > 30
                            for q in ("alice", "bob")), "carol decoding both")

    for remote in ("alice", "bob"):
        # the Welcome came late: frames of its epoch, the sender's first
        # keyframe under it among them, were held and opened at once
        at_welcome = {r.kind: r for r in carol.at_welcome[remote]}
        video = at_welcome["video"]
        assert video.frames_held_opened > 0 and video.keyframes_by_epoch.get(joined, 0) >= 1
        assert at_welcome["audio"].frames_held_opened > 0
        for receiver in carol.links[remote].protection.receivers:
            stats = receiver.stats()
            assert stats.failures[FailureKind.HELD_EXPIRED] == 0, (remote, stats)
            assert stats.failures[FailureKind.AUTHENTICATION] == 0
            assert stats.failures[FailureKind.MALFORMED] == 0
            # nothing failed once its first frame was open (older epochs' frames,
            # sent before carol was added, could never be opened by her)
            assert stats.failures_total == at_welcome[stats.kind].failures_total, (remote, stats)
        report = video_report(carol, remote)
        assert report.missing == 0 and report.unreadable == 0 and report.out_of_order == 0, report.gaps


class FirstFrame:
    """Records whether the first frame reaching a receiver's decoder is a keyframe."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        hooked = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        self._decode = hooked._forward
        hooked._forward = self.put  # (on this receiver only)
        self.keyframe: bool | None = None

    def put(self, item: Any) -> None:
        if self.keyframe is None:
            codec, frame = item
            self.keyframe = is_keyframe(frame_codec(codec.mimeType), frame.data)
        self._decode(item)


async def test_no_frame_reaches_a_participant_before_it_is_a_member(start_peer: StartPeer) -> None:
    admitted: set[str] = set()
    alice = await start_peer("alice", options=CallOptions(admit=admitted.__contains__))
    bob = await start_peer("bob")
    # the link is up and alice's encoders run, but bob is not admitted: nothing goes out
    await until(lambda: "bob" in alice.links and alice.links["bob"].connected
                and all(s.frames_withheld > 0 for s in alice.links["bob"].stats().senders)
                and "alice" in bob.links
                and any(r.stats().kind == "video" for r in bob.links["alice"].protection.receivers),
                "a link to bob, who is not a member")
    assert bob.group is None and alice.links["bob"].stats().frames_encrypted == 0
    assert bob.links["alice"].stats().frames_encrypted == 0  # no group, no key: bob sends nothing
    video = next(r for r in bob.links["alice"].protection.receivers if r.stats().kind == "video")
    first = FirstFrame(video.receiver)

    admitted.add("bob")
    alice.reconcile_soon()
    await until(lambda: all(p.status().members == ("alice", "bob") for p in (alice, bob))
                and all((r := video_report(p, q)) is not None and r.frames > 30
                        for p, q in ((alice, "bob"), (bob, "alice"))), "a call of two")
    joined = bob.epochs[0].epoch
    assert bob.epochs[0].cause == "welcome"
    for receiver in bob.links["alice"].protection.receivers:
        stats = receiver.stats()
        assert stats.failures[FailureKind.UNKNOWN_KID] == 0, stats
        assert stats.failures[FailureKind.HELD_EXPIRED] == 0, stats
        assert stats.failures_total == 0, stats
        assert stats.frames_decrypted > 0 and min(stats.frames_by_epoch) >= joined
    assert first.keyframe is True  # decodable from the first frame bob received
    assert sum(alice.links["bob"].stats().failures.values()) == 0
    report = video_report(bob, "alice")
    assert report.missing == 0 and report.unreadable == 0, report.gaps
