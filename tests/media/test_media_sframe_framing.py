"""Codec-aware SFrame framing (media.framing), independent of aiortc peers.

Structure is checked with a recording ``seal``; round trips and the
authentication of clear bytes with real SFrame contexts (sframe package);
realistic frames come from libvpx and libx264 through PyAV.
"""

from __future__ import annotations

import fractions
import re

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.errors import MalformedFrame, UnsupportedCodec
from media.framing import (
    FrameCodec,
    escape_emulation,
    frame_codec,
    is_keyframe,
    open_frame,
    open_h264,
    seal_frame,
    seal_h264,
    seal_h264_nal_units,
    split_annex_b,
    unescape_emulation,
)
from sframe import AuthenticationFailure, SFrameContext

KID = 0x12
BASE_KEY = bytes(range(16))

# Inside a NAL unit, none of these may appear (H.264 §7.4.1, §B.1).
FORBIDDEN = re.compile(rb"\x00\x00[\x00-\x02]")


class Recorder:
    """A fake SFrame: records (plaintext, metadata), returns a marked blob."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, plaintext: bytes, metadata: bytes) -> bytes:
        self.calls.append((plaintext, metadata))
        return b"SF" + plaintext + b"T" * 16


@pytest.fixture
def pair() -> tuple[SFrameContext, SFrameContext]:
    sender = SFrameContext()
    sender.add_send_key(KID, BASE_KEY)
    receiver = SFrameContext()
    receiver.add_recv_key(KID, BASE_KEY)
    return sender, receiver


def sealer(ctx: SFrameContext):
    return lambda plaintext, metadata: ctx.protect(KID, plaintext, metadata)


def opener(ctx: SFrameContext):
    return lambda ciphertext, metadata: ctx.unprotect(ciphertext, metadata).plaintext


def annex_b(*units: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + u for u in units)


# --- codec selection -----------------------------------------------------------


def test_frame_codec_by_mime_type() -> None:
    assert frame_codec("video/VP8") is FrameCodec.VP8
    assert frame_codec("video/H264") is FrameCodec.H264
    assert frame_codec("audio/opus") is FrameCodec.AUDIO
    assert frame_codec("audio/PCMU") is FrameCodec.AUDIO
    with pytest.raises(UnsupportedCodec):
        frame_codec("video/AV1")


# --- VP8 ---------------------------------------------------------------------


def test_vp8_keyframe_keeps_10_clear_bytes() -> None:
    frame = bytes([0x50]) + bytes(range(1, 40))  # bit 0 == 0: keyframe
    seal = Recorder()
    wire = seal_frame(FrameCodec.VP8, frame, seal)
    assert seal.calls == [(frame[10:], frame[:10])]
    assert wire == frame[:10] + b"SF" + frame[10:] + b"T" * 16


def test_vp8_delta_frame_keeps_3_clear_bytes() -> None:
    frame = bytes([0x51]) + bytes(range(1, 40))  # bit 0 == 1: delta frame
    seal = Recorder()
    wire = seal_frame(FrameCodec.VP8, frame, seal)
    assert seal.calls == [(frame[3:], frame[:3])]
    assert wire.startswith(frame[:3] + b"SF")


@pytest.mark.parametrize("frame", [b"", b"\x50" * 9, b"\x51\x00"])
def test_vp8_too_short_frames_are_refused(frame: bytes) -> None:
    seal = Recorder()
    with pytest.raises(MalformedFrame):
        seal_frame(FrameCodec.VP8, frame, seal)
    assert seal.calls == []


def test_vp8_round_trip_and_clear_bytes_are_authenticated(pair) -> None:
    sender, receiver = pair
    frame = bytes([0x50]) + bytes(range(1, 200))
    wire = seal_frame(FrameCodec.VP8, frame, sealer(sender))
    assert wire[:10] == frame[:10]
    assert frame[10:] not in wire
    assert open_frame(FrameCodec.VP8, wire, opener(receiver)) == frame
    # change a clear byte (width) but keep the keyframe bit
    tampered = wire[:7] + bytes([wire[7] ^ 1]) + wire[8:]
    with pytest.raises(AuthenticationFailure):
        open_frame(FrameCodec.VP8, tampered, opener(receiver))


def test_vp8_ciphertext_missing_is_malformed(pair) -> None:
    _, receiver = pair
    with pytest.raises(MalformedFrame):
        open_frame(FrameCodec.VP8, bytes([0x51, 1, 2]), opener(receiver))


# --- Opus / audio --------------------------------------------------------------


def test_opus_is_encrypted_whole(pair) -> None:
    sender, receiver = pair
    frame = bytes([0x78]) + bytes(range(80))
    seal = Recorder()
    seal_frame(FrameCodec.AUDIO, frame, seal)
    assert seal.calls == [(frame, b"")]
    wire = seal_frame(FrameCodec.AUDIO, frame, sealer(sender))
    assert frame[:3] not in wire[:4]
    assert open_frame(FrameCodec.AUDIO, wire, opener(receiver)) == frame


# --- H.264 -------------------------------------------------------------------


def test_emulation_prevention_examples() -> None:
    assert escape_emulation(b"\x00\x00\x01") == b"\x00\x00\x03\x01"
    assert escape_emulation(b"\x00\x00\x00\x00") == b"\x00\x00\x03\x00\x00"
    assert escape_emulation(b"\x00\x00\x03") == b"\x00\x00\x03\x03"
    assert escape_emulation(b"\x00\x00\x04") == b"\x00\x00\x04"
    assert unescape_emulation(b"\x00\x00\x03\x00\x00\x03\x01") == b"\x00\x00\x00\x00\x01"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_emulation_prevention_round_trips_and_hides_start_codes(data: bytes) -> None:
    escaped = escape_emulation(data)
    assert unescape_emulation(escaped) == data
    assert FORBIDDEN.search(escaped + b"\x80") is None


def test_h264_nal_headers_stay_clear_and_bodies_become_one_sframe() -> None:
    sps = b"\x67" + b"\x42\x00\x1f\x00\x00\x01"
    pps = b"\x68" + b"\xce\x3c\x80"
    idr = b"\x65" + bytes(50)
    seal = Recorder()
    wire = seal_h264_nal_units([sps, pps, idr], seal)
    (plaintext, metadata), = seal.calls
    assert plaintext == sps[1:] + pps[1:] + idr[1:]
    # u16 count, the 3 headers, lengths of the first 2 bodies
    assert metadata == b"\x00\x03\x67\x68\x65" + (6).to_bytes(4, "big") + (3).to_bytes(4, "big")
    assert [unit[0] for unit in wire] == [0x67, 0x68, 0x65]
    assert all(unit[-1] == 0x80 for unit in wire)


def test_h264_round_trip_has_no_start_code_in_output(pair) -> None:
    sender, receiver = pair
    # valid NAL units (escaped, last byte non-zero) full of zeros
    units = [b"\x67\x42\x00\x00\x03\x01\x1f", b"\x68" + bytes(30) + b"\x80", b"\x65" + b"\x00\x00\x03" * 40 + b"\x01"]
    frame = annex_b(*units)
    wire = seal_h264(frame, sealer(sender))
    wire_units = split_annex_b(wire)
    assert len(wire_units) == 3
    assert [u[0] for u in wire_units] == [0x67, 0x68, 0x65]
    for unit in wire_units:
        assert FORBIDDEN.search(unit) is None
        assert unit[-1] != 0
    assert open_h264(wire, opener(receiver)) == frame


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 23), st.binary(max_size=120)), min_size=1, max_size=6))
def test_h264_round_trip_property(nal_units: list[tuple[int, bytes]]) -> None:
    sender = SFrameContext()
    sender.add_send_key(KID, BASE_KEY)
    receiver = SFrameContext()
    receiver.add_recv_key(KID, BASE_KEY)
    # as an encoder writes them: escaped bodies ending in a non-zero byte
    units = [bytes([0x60 | t]) + escape_emulation(body) + b"\x80" for t, body in nal_units]
    wire = seal_h264(annex_b(*units), sealer(sender))
    wire_units = split_annex_b(wire)
    assert [u[0] for u in wire_units] == [u[0] for u in units]
    assert all(FORBIDDEN.search(u) is None for u in wire_units)
    assert open_h264(wire, opener(receiver)) == annex_b(*units)


def test_h264_clear_header_is_authenticated(pair) -> None:
    sender, receiver = pair
    wire = seal_h264(annex_b(b"\x65" + bytes(range(1, 60))), sealer(sender))
    tampered = wire[:4] + b"\x41" + wire[5:]  # IDR header rewritten to a non-IDR slice
    with pytest.raises(AuthenticationFailure):
        open_h264(tampered, opener(receiver))


def test_h264_nal_boundaries_are_authenticated(pair) -> None:
    sender, receiver = pair
    wire = seal_h264(annex_b(b"\x67" + b"\x11" * 20, b"\x65" + b"\x22" * 20), sealer(sender))
    first, second = split_annex_b(wire)
    # move one ciphertext byte from the first NAL unit to the second
    moved = annex_b(first[:-2] + first[-1:], second[:1] + first[-2:-1] + second[1:])
    with pytest.raises(AuthenticationFailure):
        open_h264(moved, opener(receiver))


@pytest.mark.parametrize(
    "stream",
    [b"", b"\x65\x01\x02", annex_b(b"\x65\x01\x02"), annex_b(b"\x65")],
    ids=["empty", "no-start-code", "no-trailer", "header-only"],
)
def test_h264_malformed_frames(pair, stream: bytes) -> None:
    _, receiver = pair
    with pytest.raises(MalformedFrame):
        open_h264(stream, opener(receiver))


def test_h264_empty_nal_unit_is_refused() -> None:
    with pytest.raises(MalformedFrame):
        seal_h264_nal_units([b"\x65\x01", b""], Recorder())
    with pytest.raises(MalformedFrame):
        seal_h264_nal_units([], Recorder())


# --- real encoder output -------------------------------------------------------


def encoded_frames(codec_name: str, count: int) -> list[bytes]:
    codec = av.CodecContext.create(codec_name, "w")
    codec.width, codec.height, codec.pix_fmt = 64, 48, "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    if codec_name == "libx264":
        codec.options = {"tune": "zerolatency"}
        codec.profile = "Baseline"
    frames = []
    for i in range(count):
        image = av.VideoFrame(64, 48, "yuv420p")
        for plane in image.planes:
            plane.update(bytes((i * 7 + j) % 251 for j in range(plane.buffer_size)))
        image.pts = i
        frames += [bytes(p) for p in codec.encode(image)]
    frames += [bytes(p) for p in codec.encode(None)]
    return frames


@pytest.mark.parametrize(
    ("codec_name", "framing_codec"), [("libvpx", FrameCodec.VP8), ("libx264", FrameCodec.H264)]
)
def test_real_encoder_frames_round_trip(pair, codec_name: str, framing_codec: FrameCodec) -> None:
    sender, receiver = pair
    frames = encoded_frames(codec_name, 5)
    assert len(frames) >= 5
    assert is_keyframe(framing_codec, frames[0])
    assert not is_keyframe(framing_codec, frames[-1])
    for frame in frames:
        wire = seal_frame(framing_codec, frame, sealer(sender))
        assert is_keyframe(framing_codec, wire) == is_keyframe(framing_codec, frame)
        if framing_codec is FrameCodec.H264:
            assert all(FORBIDDEN.search(u) is None for u in split_annex_b(wire))
        opened = open_frame(framing_codec, wire, opener(receiver))
        if framing_codec is FrameCodec.H264:  # start codes are rewritten as 4 bytes
            assert split_annex_b(opened) == split_annex_b(frame)
        else:
            assert opened == frame
