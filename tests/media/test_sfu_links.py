"""The SFU media rules of media.sfu without an SFU (issue 16).

* the SDP rules, case by case from tests/contracts/sfu_sdp.json (the page
  runs the same file);
* the publisher's keyframe limiter, alone and inside the SFrame encoder
  wrapper of a real aiortc VP8 sender;
* attribution by SFrame KID on the receive path: real SFrame frames of two
  members sealed by their own sessions, fed to one subscribed receiver,
  where the stream switches from one member's KID to the other's;
* :class:`media.sfu.SfuLinks` of three members through a private Janus
  (tests/sfu_room.py stands in for the server's bridge): everyone decodes
  everyone, attributed by KID, no audio level or RTX negotiated; and the
  same call through a stand-in that swaps two feeds' labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc import RTCDtlsTransport
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, is_rtcp, unpack_header_extensions

from janus_peers import janus  # noqa: F401  (fixture)
from sfu_room import StandInRoom
from test_media_sframe_transform import feed

from conftest import CONTRACTS, SeededExporter, until
from media.cli.janus import JanusProcess
from media.framing import frame_codec, is_keyframe
from media.mesh import MediaSources
from media.session import SFrameSession
from media.sfu import (
    AUDIO_LEVEL_URI,
    AttributingKeys,
    KeyframeLimiter,
    SfuLinks,
    StreamAttribution,
    StreamRelabelled,
    SubscribedStream,
    without_audio_level,
    without_rtx,
)
from media.tracks import PatternVideoTrack
from sframe import MLSKeyManager

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
CASES: list[dict[str, Any]] = json.loads((CONTRACTS / "sfu_sdp.json").read_text())["cases"]


def sdp_of(case: dict[str, Any], key: str) -> str:
    ending = case["line_ending"]
    return ending.join(case[key]) + ending


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_sdp_rules(case: dict[str, Any]) -> None:
    sdp = sdp_of(case, "input")
    if "audio_level" in case["strip"]:
        sdp = without_audio_level(sdp)
    if "rtx" in case["strip"]:
        sdp = without_rtx(sdp)
    assert sdp == sdp_of(case, "expected")


def test_sdp_rules_are_idempotent_and_the_contract_exercises_them() -> None:
    changed = [c for c in CASES if c["input"] != c["expected"]]
    assert len(changed) >= 8 and any(c["input"] == c["expected"] for c in CASES)
    assert any(AUDIO_LEVEL_URI in line for c in CASES for line in c["input"])
    for case in CASES:
        out = without_rtx(without_audio_level(sdp_of(case, "expected")))
        if "rtx" in case["strip"]:
            assert out == sdp_of(case, "expected")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_keyframe_limiter_answers_one_request_per_interval_and_defers_the_rest() -> None:
    clock = Clock()
    limit = KeyframeLimiter(0.5, clock)
    assert limit(False) is False
    assert limit(True) is True  # the first request at once
    clock.now += 0.1
    assert limit(True) is False  # inside the interval: deferred...
    clock.now += 0.1
    assert limit(True) is False
    assert limit(False) is False
    clock.now += 0.31
    assert limit(False) is True  # ...and answered once the interval ends
    clock.now += 0.1
    assert limit(False) is False  # nothing pending any more
    clock.now += 1.0
    assert limit(True) is True
    assert (limit.granted, limit.deferred) == (3, 1)


async def test_the_publishers_vp8_sender_answers_plis_at_the_limited_rate() -> None:
    """A real VP8 sender wrapped by the SFrame transform gets a PLI (RFC 4585
    §6.3.1, through aiortc's own RTCP handler) before each of 20 frames
    0.125 s apart, as under a flood from many subscribers: it sends a
    keyframe every 0.5 s, i.e. one in four frames."""
    session = SFrameSession(MLSKeyManager())
    session.install_epoch(SeededExporter(b"limit"), 1, 0, 2)
    clock = Clock()
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    transform = session.protect_sender(sender)
    limiter = transform.keyframe_requests = KeyframeLimiter(0.5, clock)
    keyframes = []
    while len(keyframes) < 20:
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
        before = transform.stats().keyframes_encrypted
        if await sender._next_encoded_frame(VP8) is None:
            continue
        keyframes.append(transform.stats().keyframes_encrypted - before)
        clock.now += 0.125
    assert keyframes == [1, 0, 0, 0] * 5
    assert limiter.granted == 5
    sender.replaceTrack(None)


async def test_without_the_limiter_every_pli_is_a_keyframe() -> None:
    """The control: the same sender without a limiter answers every PLI."""
    session = SFrameSession(MLSKeyManager())
    session.install_epoch(SeededExporter(b"limit"), 1, 0, 2)
    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    transform = session.protect_sender(sender)
    sent = 0
    while sent < 6:
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
        sent += await sender._next_encoded_frame(VP8) is not None
    assert transform.stats().keyframes_encrypted == transform.stats().frames_encrypted == 6
    sender.replaceTrack(None)


class FakeDtlsTransport:
    """Just enough of RTCDtlsTransport to construct senders and receivers."""

    state = "new"


async def sealed_frames(session: SFrameSession, count: int) -> list[JitterFrame]:
    """``count`` VP8 frames sealed by ``session``'s sending key, as a jitter buffer emits them."""
    from aiortc.codecs import depayload

    sender = RTCRtpSender(PatternVideoTrack(64, 48), FakeDtlsTransport())
    session.protect_sender(sender)
    frames: list[JitterFrame] = []
    while len(frames) < count:
        encoded = await sender._next_encoded_frame(VP8)
        if encoded is not None:
            frames.append(JitterFrame(b"".join(depayload(VP8, p) for p in encoded.payloads),
                                      encoded.timestamp))
    sender.replaceTrack(None)
    return frames


def by_leaf(leaves: dict[int, str]) -> Callable[[int, int], str | None]:
    """An ``identify`` for members whose leaves do not change with the epoch."""
    return lambda leaf, epoch: leaves.get(leaf)


def deliver(receiver: RTCRtpReceiver, frames: list[JitterFrame]) -> list[JitterFrame]:
    """Put VP8 frames where aiortc's jitter buffer puts them; those that reached the decoder."""
    return feed(receiver, VP8, frames)


async def test_a_stream_switching_to_another_members_kid_is_flagged_and_attributed_by_kid() -> None:
    exporter = SeededExporter(b"three")
    alice, bob, carol = (SFrameSession(MLSKeyManager()) for _ in range(3))
    for index, session in enumerate((alice, bob, carol)):
        session.install_epoch(exporter, 3, index, 3)
    leaves = {0: "alice", 1: "bob", 2: "carol"}
    attributed: list[str | None] = []
    relabelled: list[StreamRelabelled] = []
    stream = SubscribedStream(mid="1", feed=77, claimed="alice", kind="video")
    attribution = StreamAttribution(stream, by_leaf(leaves), lambda a: attributed.append(a.first),
                                    relabelled.append)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    transform = carol.protect_receiver(receiver, keys=AttributingKeys(carol, attribution))

    assert len(deliver(receiver, await sealed_frames(alice, 5))) == 5
    assert attributed == ["alice"] and not attribution.flagged and relabelled == []
    # the SFU now forwards bob's frames on the stream it said was alice's
    assert len(deliver(receiver, await sealed_frames(bob, 4))) == 4
    assert attribution.flagged
    assert relabelled == [StreamRelabelled("1", 77, "alice", "alice", "bob", 1, 3)]
    assert attribution.frames_by_sender == {"alice": 5, "bob": 4}
    assert attributed == ["alice"]  # attached once, under its first frame's member
    assert transform.stats().frames_decrypted == 9 and transform.stats().failures_total == 0


async def test_a_stream_the_server_labels_with_another_member_is_flagged_on_its_first_frame() -> None:
    exporter = SeededExporter(b"two")
    alice, bob = SFrameSession(MLSKeyManager()), SFrameSession(MLSKeyManager())
    alice.install_epoch(exporter, 1, 0, 2)
    bob.install_epoch(exporter, 1, 1, 2)
    relabelled: list[StreamRelabelled] = []
    attributed: list[str | None] = []
    attribution = StreamAttribution(SubscribedStream("0", 5, "mallory", "video"),
                                    by_leaf({0: "alice", 1: "bob"}),
                                    lambda a: attributed.append(a.first), relabelled.append)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    bob.protect_receiver(receiver, keys=AttributingKeys(bob, attribution))
    frames = await sealed_frames(alice, 3)
    reached = deliver(receiver, frames)
    assert len(reached) == 3
    assert attributed == ["alice"]  # by KID, not by the server's "mallory"
    assert [(r.claimed, r.sender) for r in relabelled] == [("mallory", "alice")]
    assert attribution.frames_by_sender == {"alice": 3}
    assert is_keyframe(frame_codec(VP8.mimeType), reached[0].data)


async def test_a_frame_of_a_leaf_no_member_holds_is_flagged_and_not_attached() -> None:
    exporter = SeededExporter(b"ghost")
    alice, bob = SFrameSession(MLSKeyManager()), SFrameSession(MLSKeyManager())
    alice.install_epoch(exporter, 1, 0, 2)
    bob.install_epoch(exporter, 1, 1, 2)
    relabelled: list[StreamRelabelled] = []
    attributed: list[str | None] = []
    attribution = StreamAttribution(SubscribedStream("0", 5, "alice", "video"), by_leaf({1: "bob"}),
                                    lambda a: attributed.append(a.first), relabelled.append)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    bob.protect_receiver(receiver, keys=AttributingKeys(bob, attribution))
    deliver(receiver, await sealed_frames(alice, 2))
    assert attributed == [] and attribution.flagged
    assert [(r.sender, r.sender_index) for r in relabelled] == [(None, 0)]


async def test_a_leaf_is_identified_in_the_epoch_of_each_frame() -> None:
    """Leaf 1 is bob's in epoch 3 and, after bob left, erin's in epoch 4: bob's
    late epoch-3 frames stay bob's (no flag), erin's frames on bob's stream are flagged."""
    exporter3, exporter4 = SeededExporter(b"epoch3"), SeededExporter(b"epoch4")
    bob, erin, carol = (SFrameSession(MLSKeyManager()) for _ in range(3))
    bob.install_epoch(exporter3, 3, 1, 3)
    erin.install_epoch(exporter4, 4, 1, 3)
    carol.install_epoch(exporter3, 3, 2, 3)
    carol.install_epoch(exporter4, 4, 2, 3)
    leaves = {3: {1: "bob", 2: "carol"}, 4: {1: "erin", 2: "carol"}}
    relabelled: list[StreamRelabelled] = []

    def stream_of(mid: str) -> tuple[RTCRtpReceiver, StreamAttribution]:
        attribution = StreamAttribution(SubscribedStream(mid, 9, "bob", "video"),
                                        lambda leaf, epoch: leaves[epoch].get(leaf), lambda a: None,
                                        relabelled.append)
        receiver = RTCRtpReceiver("video", FakeDtlsTransport())
        carol.protect_receiver(receiver, keys=AttributingKeys(carol, attribution))
        return receiver, attribution

    late, late_attribution = stream_of("0")
    assert len(deliver(late, await sealed_frames(bob, 3))) == 3
    assert late_attribution.frames_by_sender == {"bob": 3} and not late_attribution.flagged
    reused, reused_attribution = stream_of("1")
    assert len(deliver(reused, await sealed_frames(bob, 2) + await sealed_frames(erin, 2))) == 4
    assert reused_attribution.frames_by_sender == {"bob": 2, "erin": 2}
    assert [(r.mid, r.first, r.sender, r.epoch) for r in relabelled] == [("1", "bob", "erin", 4)]


# -- SfuLinks through a private Janus ----------------------------------------------


class Member:
    """One SfuLinks of a call whose three members share epoch 1 (seeded keys),
    reading every remote track it is given."""

    LEAVES = {0: "alice", 1: "bob", 2: "carol"}

    def __init__(self, index: int, room: StandInRoom) -> None:
        self.identity = self.LEAVES[index]
        self.session = SFrameSession(MLSKeyManager())
        self.session.install_epoch(SeededExporter(b"sfu"), 1, index, 3)
        self.sources = MediaSources.synthetic(64, 48)
        #: (identity, kind) -> frames decoded from tracks given under that identity
        self.decoded: Counter[tuple[str, str]] = Counter()
        self._readers: list[asyncio.Task[None]] = []
        self.links = SfuLinks(session=self.session, sources=self.sources, ready=lambda: True,
                              request=room.member(self.identity), identify=by_leaf(self.LEAVES),
                              on_track=self._on_track)

    def _on_track(self, identity: str, track: MediaStreamTrack) -> None:
        async def read() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    self.decoded[(identity, track.kind)] += 1
        self._readers.append(asyncio.ensure_future(read()))

    def receiving_from(self, others: list[str], frames: int) -> bool:
        return all(self.decoded[(o, kind)] >= frames for o in others for kind in ("audio", "video"))

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await self.links.close()
        self.sources.stop()
        self.session.close()


@pytest.fixture
async def room(janus: JanusProcess) -> AsyncIterator[StandInRoom]:
    stand_in = StandInRoom(janus.url)
    await stand_in.open()
    yield stand_in
    await stand_in.close()


async def call_of_three(room: StandInRoom) -> list[Member]:
    members = [Member(index, room) for index in range(3)]
    for member in members:
        member.links.start()
    await until(lambda: len(room.live_feeds()) == 3, "three feeds published")
    for member in members:
        member.links.want(room.live_feeds())
    return members


def capture_rtp(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every RTP packet any connection sends, on its way to SRTP."""
    packets: list[bytes] = []
    send_rtp = RTCDtlsTransport._send_rtp

    async def recording(self: RTCDtlsTransport, data: bytes) -> None:
        if not is_rtcp(data):
            packets.append(data)
        await send_rtp(self, data)

    monkeypatch.setattr(RTCDtlsTransport, "_send_rtp", recording)
    return packets


def ssrc_of(packet: bytes) -> int:
    return int.from_bytes(packet[8:12], "big")


def extension_ids(packet: bytes) -> set[int]:
    """The header extension ids of an RTP packet (RFC 3550 §5.3.1, RFC 8285)."""
    if not packet[0] & 0x10:
        return set()
    start = 12 + 4 * (packet[0] & 0x0F)
    profile = int.from_bytes(packet[start:start + 2], "big")
    length = 4 * int.from_bytes(packet[start + 2:start + 4], "big")
    return {x_id for x_id, _ in unpack_header_extensions(profile, packet[start + 4:start + 4 + length])}


@pytest.mark.e2e
async def test_three_members_through_janus_receive_each_other_attributed_by_kid(
        room: StandInRoom, monkeypatch: pytest.MonkeyPatch) -> None:
    packets = capture_rtp(monkeypatch)
    members = await call_of_three(room)
    try:
        names = [m.identity for m in members]
        await until(lambda: all(m.receiving_from([n for n in names if n != m.identity], 10) for m in members),
                    "everyone decodes everyone's audio and video")
        for member in members:
            streams = member.links.streams
            assert len(streams) == 4
            assert all(a.first == a.stream.claimed and not a.flagged for a in streams.values())
            assert {a.first for a in streams.values()} == set(names) - {member.identity}
            assert member.links.relabelled == [] and member.links.failed is None
            assert all(stats.failures_total == 0 for _, stats in member.links.receiver_stats().values())
            assert " rtx/" not in member.links._subscriber.remoteDescription.sdp
            assert member.links.stats()[-1].streams_relabelled == 0
        # the audio level was offered to Janus by no one, so it answered none and
        # no audio packet carries it (aiortc's id for it is 2; the mid, id 1, is there)
        assert len(room.client_sdps) == 6 and len(room.janus_sdps) >= 6
        assert not any(AUDIO_LEVEL_URI in sdp for sdp in room.client_sdps + room.janus_sdps)
        audio_ssrcs = {t.sender._ssrc for m in members for t in m.links._publisher.getTransceivers()
                       if t.kind == "audio"}
        audio = [p for p in packets if ssrc_of(p) in audio_ssrcs]
        assert len(audio) > 50 and all(extension_ids(p) == {1} for p in audio)
    finally:
        for member in members:
            await member.close()


@pytest.mark.e2e
async def test_feeds_swapped_by_the_sfu_are_flagged_and_attributed_by_kid(room: StandInRoom) -> None:
    feeds: dict[str, int] = {}

    def swap(feed: int, claimed: str) -> str:  # alice's feed said to be bob's and the reverse
        return {"alice": "bob", "bob": "alice"}.get(claimed, claimed)

    room.relabel = swap
    members = await call_of_three(room)
    try:
        alice, bob, carol = members
        await until(lambda: carol.receiving_from(["alice", "bob"], 10), "carol decodes alice and bob")
        feeds = {member: feed for feed, member in room.publishers.items()}
        flagged = {(e.feed, e.claimed, e.sender) for e in carol.links.relabelled}
        assert flagged == {(feeds["alice"], "bob", "alice"), (feeds["bob"], "alice", "bob")}
        # the tracks went to the sinks under the KID's member, not the server's word
        assert {(a.stream.feed, a.first) for a in carol.links.streams.values()} == \
            {(feeds["alice"], "alice"), (feeds["bob"], "bob")}
        assert carol.links.stats()[-1].streams_relabelled == 4  # audio and video of both
        assert all(not e.sender == "carol" for e in alice.links.relabelled + bob.links.relabelled)
    finally:
        for member in members:
            await member.close()
