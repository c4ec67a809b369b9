"""The SFU media rules of media.sfu without an SFU (issue 16).

* the SDP rules, case by case from tests/contracts/sfu_sdp.json (the page
  runs the same file);
* the publisher's keyframe limiter, alone and inside the SFrame encoder
  wrapper of a real aiortc VP8 sender;
* attribution by SFrame KID on the receive path: real SFrame frames of two
  members sealed by their own sessions, fed to one subscribed receiver,
  where the stream switches from one member's KID to the other's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from conftest import CONTRACTS, SeededExporter
from media.framing import frame_codec, is_keyframe
from media.session import SFrameSession
from media.sfu import (
    AUDIO_LEVEL_URI,
    AttributingKeys,
    KeyframeLimiter,
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


def deliver(receiver: RTCRtpReceiver, frames: list[JitterFrame]) -> int:
    """Put frames where aiortc's jitter buffer puts them; how many reached the decoder."""
    before = receiver._RTCRtpReceiver__decoder_queue._target.qsize()
    for frame in frames:
        receiver._RTCRtpReceiver__decoder_queue.put((VP8, frame))
    return receiver._RTCRtpReceiver__decoder_queue._target.qsize() - before


async def test_a_stream_switching_to_another_members_kid_is_flagged_and_attributed_by_kid() -> None:
    exporter = SeededExporter(b"three")
    alice, bob, carol = (SFrameSession(MLSKeyManager()) for _ in range(3))
    for index, session in enumerate((alice, bob, carol)):
        session.install_epoch(exporter, 3, index, 3)
    leaves = {0: "alice", 1: "bob", 2: "carol"}
    attributed: list[str | None] = []
    relabelled: list[StreamRelabelled] = []
    stream = SubscribedStream(mid="1", feed=77, claimed="alice", kind="video")
    attribution = StreamAttribution(stream, leaves.get, lambda a: attributed.append(a.first),
                                    relabelled.append)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    transform = carol.protect_receiver(receiver, keys=AttributingKeys(carol, attribution))

    assert deliver(receiver, await sealed_frames(alice, 5)) == 5
    assert attributed == ["alice"] and not attribution.flagged and relabelled == []
    # the SFU now forwards bob's frames on the stream it said was alice's
    assert deliver(receiver, await sealed_frames(bob, 4)) == 4
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
                                    {0: "alice", 1: "bob"}.get,
                                    lambda a: attributed.append(a.first), relabelled.append)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    bob.protect_receiver(receiver, keys=AttributingKeys(bob, attribution))
    frames = await sealed_frames(alice, 3)
    assert deliver(receiver, frames) == 3
    assert attributed == ["alice"]  # by KID, not by the server's "mallory"
    assert [(r.claimed, r.sender) for r in relabelled] == [("mallory", "alice")]
    assert attribution.frames_by_sender == {"alice": 3}
    assert is_keyframe(frame_codec(VP8.mimeType), receiver._RTCRtpReceiver__decoder_queue._target.get_nowait()[1].data)


async def test_a_frame_of_a_leaf_no_member_holds_is_flagged_and_not_attached() -> None:
    exporter = SeededExporter(b"ghost")
    alice, bob = SFrameSession(MLSKeyManager()), SFrameSession(MLSKeyManager())
    alice.install_epoch(exporter, 1, 0, 2)
    bob.install_epoch(exporter, 1, 1, 2)
    relabelled: list[StreamRelabelled] = []
    attributed: list[str | None] = []
    attribution = StreamAttribution(SubscribedStream("0", 5, "alice", "video"), {1: "bob"}.get,
                                    lambda a: attributed.append(a.first), relabelled.append)
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    bob.protect_receiver(receiver, keys=AttributingKeys(bob, attribution))
    deliver(receiver, await sealed_frames(alice, 2))
    assert attributed == [] and attribution.flagged
    assert [(r.sender, r.sender_index) for r in relabelled] == [(None, 0)]
