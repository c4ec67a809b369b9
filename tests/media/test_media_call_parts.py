"""The call peer's small parts: loopback ICE, the drawn-in frame counter,
the verifying sink's gap detection, KeyPackage identities."""

from __future__ import annotations

import asyncio
import fractions
import random

import aioice.ice
import pytest
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from av import AudioFrame, VideoFrame

from media.counter import COUNTER_MODULUS, CounterVideoTrack, draw_counter, read_counter
from media.loopback import filter_sdp, is_loopback_candidate, loopback_ice
from media.membership import key_package_identity
from mls.inspection import credential_identity
from media.sinks import TrackReport
from mls import MLS

SDP = (
    "v=0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "a=candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host\r\n"
    "a=candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host\r\n"
    "a=candidate:3 1 udp 2130706431 3f0a1c2e-1111-2222-3333-444455556666.local 50002 typ host\r\n"
    "a=candidate:4 1 udp 1694498815 203.0.113.7 50003 typ srflx raddr 192.168.1.20 rport 50000\r\n"
    "a=candidate:5 1 udp 2130706431 ::1 50004 typ host\r\n"
    "a=end-of-candidates\r\n"
)


def test_filter_sdp_keeps_loopback_candidates_only() -> None:
    kept = filter_sdp(SDP)
    candidates = [line for line in kept.splitlines() if line.startswith("a=candidate:")]
    assert candidates == ["a=candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host",
                          "a=candidate:5 1 udp 2130706431 ::1 50004 typ host"]
    assert "a=end-of-candidates\r\n" in kept and kept.startswith("v=0\r\nm=audio")


@pytest.mark.parametrize(("candidate", "loopback"), [
    ("candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host", True),
    ("candidate:2 1 udp 2130706431 127.8.9.10 50001 typ host", True),
    ("a=candidate:5 1 udp 2130706431 ::1 50004 typ host", True),
    ("candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host", False),
    ("candidate:3 1 udp 2130706431 abc.local 50002 typ host", False),
    ("candidate:4 1 udp 1694498815 203.0.113.7 50003 typ srflx raddr 127.0.0.1 rport 1", False),
    ("candidate:1 1 udp", False),
    ("", False),
])
def test_trickled_candidates(candidate: str, loopback: bool) -> None:
    assert is_loopback_candidate(candidate) is loopback


async def test_loopback_ice_is_scoped_to_its_block_and_its_tasks() -> None:
    outside = aioice.ice.get_host_addresses(True, False)
    assert "127.0.0.1" not in outside  # aioice's own choice, hence this module

    async def gather() -> list[str]:
        await asyncio.sleep(0)  # runs after the block has been left
        return aioice.ice.get_host_addresses(True, False)

    with loopback_ice():
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(False, True) == []
        inside = asyncio.ensure_future(gather())  # like aiortc's gathering tasks
    after = asyncio.ensure_future(gather())
    assert await inside == ["127.0.0.1"]
    assert await after == outside
    assert aioice.ice.get_host_addresses(True, False) == outside


@pytest.mark.parametrize("bitrate", [None, 250_000], ids=["default", "aiortc-floor"])
def test_counter_survives_vp8(bitrate: int | None) -> None:
    track = CounterVideoTrack()
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    if bitrate is not None:
        encoder.target_bitrate = bitrate
    read = []
    for index in range(60):
        frame = track.make_frame(index)
        frame.pts, frame.time_base = index * 3000, fractions.Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(vp8_depayload(p) for p in payloads)
        read += [read_counter(out) for out in decoder.decode(JitterFrame(data, timestamp))]
    assert read == list(range(60))


def test_counter_reads_through_noise_and_refuses_grey() -> None:
    frame = VideoFrame(96, 64, "yuv420p")
    draw_counter(frame, 0xABCDEF)
    plane = frame.planes[0]
    pixels = memoryview(plane).cast("B")
    noise = random.Random(7)
    for i in range(plane.line_size * 32):  # the code's rows, +-60 of luma on every pixel
        pixels[i] = min(255, max(0, pixels[i] + noise.randint(-60, 60)))
    assert read_counter(frame) == 0xABCDEF
    pixels[: plane.line_size * 32] = bytes([126]) * (plane.line_size * 32)  # all at the threshold
    assert read_counter(frame) is None


def test_counter_wraps_and_rejects_damage() -> None:
    frame = VideoFrame(96, 64, "yuv420p")
    draw_counter(frame, COUNTER_MODULUS + 5)
    assert read_counter(frame) == 5
    plane = frame.planes[0]
    pixels = memoryview(plane).cast("B")
    for y in range(8):  # invert the first block
        row = y * plane.line_size
        pixels[row : row + 8] = bytes(255 - b for b in pixels[row : row + 8])
    assert read_counter(frame) is None
    with pytest.raises(ValueError):
        draw_counter(VideoFrame(32, 32, "yuv420p"), 1)


def test_track_report_counts_gaps_and_disorder() -> None:
    report = TrackReport("video")
    frames = {}
    for counter in (7, 8, 9, 12, 13, 13, 11, 14):
        frame = frames.get(counter)
        if frame is None:
            frame = frames[counter] = VideoFrame(64, 32, "yuv420p")
            draw_counter(frame, counter)
        report.count(frame)
    assert (report.frames, report.first_counter, report.last_counter) == (8, 7, 14)
    assert report.missing == 2 + 2  # 10, 11 missing; 14 after 11
    assert report.out_of_order == 2  # 13 repeated, 11 after 13
    assert report.gaps == [(9, 12), (11, 14)]
    audio = TrackReport("audio")
    audio.count(AudioFrame(format="s16", layout="mono", samples=960))
    assert audio.frames == 1 and audio.missing == 0


def test_key_package_identity() -> None:
    mls = MLS()
    client = mls.generate_identity()
    credential = mls.generate_credential("bob")
    assert credential_identity(credential.content) == "bob"
    assert key_package_identity(mls.generate_key_package(client, credential).content) == "bob"
    assert key_package_identity(b"\x00\x01garbage") is None
    assert credential_identity(b"\x00") is None


@pytest.mark.parametrize(("source", "answered"), [("127.0.0.1", True), ("192.0.2.2", False)])
async def test_loopback_connection_answers_loopback_checks_only(source: str, answered: bool) -> None:
    # A browser checks from all its sockets; a loopback-only connection must
    # not answer (nor learn a peer-reflexive candidate at) another address.
    from unittest import mock

    from aioice import stun

    connection = aioice.ice.Connection(ice_controlling=True)
    with loopback_ice():
        await connection.gather_candidates()
    try:
        assert {c.host for c in connection.local_candidates} == {"127.0.0.1"}
        protocol = mock.Mock()
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        connection.request_received(request, (source, 50000), protocol)
        # an unauthenticated check gets an error response, if it is answered at all
        assert protocol.send_stun.called is answered
    finally:
        await connection.close()
