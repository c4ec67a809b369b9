"""Codec-aware SFrame framing: which bytes of an encoded frame stay clear.

RFC 9605 §4.4 encrypts a *frame* and authenticates caller-chosen
``metadata`` with it.  Over RTP, packetizers, depacketizers and SFUs must
still read a few bytes of each frame (VP8 keyframe flag and dimensions,
H.264 NAL unit types, start codes), so as deployed E2EE does (libwebrtc's
FrameCryptor, Jitsi, DAVE) those bytes are left in the clear and passed to
SFrame as ``metadata``: they are authenticated, never encrypted (RFC 9605
§9.4 "Metadata": a receiver uses them only to prepare decryption).

This module is crypto-free.  It takes two callables from the caller:
``seal(plaintext, metadata) -> sframe_ciphertext`` (SFrame protect) and
``open_(sframe_ciphertext, metadata) -> plaintext`` (SFrame unprotect), so
it is testable on its own and byte-identical whatever SFrame stack runs it.

Wire formats (what an RTP packetizer sees; the browser side mirrors them):

VP8 (RFC 7741 payload, RFC 6386 §9.1 frame tag)
    ``clear || SFrame(header || ciphertext || tag)`` where ``clear`` is the
    first 10 bytes of a keyframe (``frame[0] & 1 == 0``: 3-byte frame tag,
    3-byte start code, 4 bytes of width/height) and the first 3 bytes of a
    delta frame (the whole frame tag: keyframe bit, version, show_frame and
    first partition size, which SFUs read).  We chose 3 rather than 1 for
    delta frames because libwebrtc's FrameCryptor and Jitsi do, so the same
    frame layout works with browser E2EE.  ``metadata = clear``.

H.264 (RFC 6184 payload, ITU-T H.264 Annex B byte stream)
    The frame is a sequence of NAL units ``hdr_i || body_i`` (1-byte NAL
    unit header, §7.3.1).  The whole frame is one SFrame ciphertext, so the
    NAL units of a frame are bound together (one CTR per frame)::

        plaintext = body_1 || ... || body_k
        metadata  = u16(k) || hdr_1 .. hdr_k || u32(len body_1) .. u32(len body_{k-1})
        SF        = SFrame protect(plaintext, metadata)

    ``SF`` is cut into ``k`` segments, segment ``i < k`` being
    ``len(body_i)`` bytes long and the last one taking the rest (which
    includes the SFrame header's surplus and the tag).  Wire NAL unit
    ``i`` is ``hdr_i || EPB(segment_i) || 0x80``, where EPB is the H.264
    emulation prevention of §7.4.1 (``00 00 0x`` with ``x <= 3`` becomes
    ``00 00 03 0x``), so ciphertext never contains a start code, and the
    ``0x80`` trailer (like ``rbsp_stop_one_bit``) keeps the NAL unit from
    ending in a zero byte that Annex B parsers would take for padding.
    NAL unit headers (type, NRI) stay readable for packetizers (STAP-A,
    FU-A) and for SFUs looking for IDR/SPS/PPS.  The 1-byte header is all
    aiortc and Baseline profile use; the 3-byte SVC/MVC header extensions
    (types 14, 20, 21) are encrypted like any body.

Opus and every other audio codec
    Encrypted whole: ``SFrame(frame)``, ``metadata = b""``.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable, Sequence

from .errors import MalformedFrame, UnsupportedCodec

#: ``seal(plaintext, metadata)`` returns an SFrame ciphertext (RFC 9605 §4.4.3).
Seal = Callable[[bytes, bytes], bytes]
#: ``open_(sframe_ciphertext, metadata)`` returns the plaintext (RFC 9605 §4.4.4).
Open = Callable[[bytes, bytes], bytes]

VP8_KEYFRAME_CLEAR_BYTES = 10
VP8_DELTA_FRAME_CLEAR_BYTES = 3

H264_NAL_HEADER_SIZE = 1
H264_TRAILER = 0x80
H264_NAL_TYPE_IDR = 5
ANNEX_B_START_CODE = b"\x00\x00\x00\x01"

_EMULATION = re.compile(rb"\x00\x00(?=[\x00-\x03])")
_ESCAPED = re.compile(rb"\x00\x00\x03")
_START_CODE = b"\x00\x00\x01"


class FrameCodec(enum.Enum):
    """The framing rule a codec follows."""

    VP8 = "vp8"
    H264 = "h264"
    #: Audio frames (Opus, G.711, G.722) are encrypted whole.
    AUDIO = "audio"


def frame_codec(mime_type: str) -> FrameCodec:
    """The framing rule for an RTP codec MIME type (``video/VP8``...)."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return FrameCodec.VP8
    if mime == "video/h264":
        return FrameCodec.H264
    if mime.startswith("audio/"):
        return FrameCodec.AUDIO
    raise UnsupportedCodec(f"no SFrame framing for {mime_type}")


# --- VP8 ---------------------------------------------------------------------


def vp8_clear_bytes(frame: bytes) -> int:
    """Clear byte count of a VP8 frame: 10 for a keyframe, 3 otherwise.

    RFC 6386 §9.1: bit 0 of the frame tag is 0 on keyframes.
    """
    if not frame:
        raise MalformedFrame("empty VP8 frame")
    return VP8_KEYFRAME_CLEAR_BYTES if frame[0] & 1 == 0 else VP8_DELTA_FRAME_CLEAR_BYTES


def seal_vp8(frame: bytes, seal: Seal) -> bytes:
    """``clear || SFrame(rest)`` with ``clear`` as metadata."""
    n = vp8_clear_bytes(frame)
    if len(frame) < n:
        raise MalformedFrame("VP8 frame shorter than its frame header")
    clear = frame[:n]
    return clear + seal(frame[n:], clear)


def open_vp8(wire: bytes, open_: Open) -> bytes:
    """Inverse of :func:`seal_vp8`."""
    n = vp8_clear_bytes(wire)
    if len(wire) <= n:
        raise MalformedFrame("VP8 frame has no SFrame ciphertext")
    clear = wire[:n]
    return clear + open_(wire[n:], clear)


# --- H.264 -------------------------------------------------------------------


def escape_emulation(data: bytes) -> bytes:
    """H.264 §7.4.1 emulation prevention: insert 0x03 after ``00 00``
    whenever the next byte is 0x00..0x03."""
    return _EMULATION.sub(b"\x00\x00\x03", data)


def unescape_emulation(data: bytes) -> bytes:
    """Inverse of :func:`escape_emulation` (drop the 0x03 of ``00 00 03``)."""
    return _ESCAPED.sub(b"\x00\x00", data)


def split_annex_b(stream: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (ITU-T H.264 §B.2).

    Zero bytes before a start code are ``trailing_zero_8bits``, not part of
    the NAL unit (so 3- and 4-byte start codes are both accepted).
    """
    first = stream.find(_START_CODE)
    if first < 0 or stream[:first].strip(b"\x00"):
        raise MalformedFrame("H.264 frame does not start with a start code")
    units = []
    pos = first + len(_START_CODE)
    while True:
        nxt = stream.find(_START_CODE, pos)
        end = len(stream) if nxt < 0 else nxt
        units.append(stream[pos:end].rstrip(b"\x00"))
        if nxt < 0:
            return units
        pos = nxt + len(_START_CODE)


def _h264_metadata(headers: Sequence[int], lengths: Sequence[int]) -> bytes:
    return (
        struct.pack("!H", len(headers))
        + bytes(headers)
        + b"".join(struct.pack("!I", n) for n in lengths)
    )


def seal_h264_nal_units(nal_units: Sequence[bytes], seal: Seal) -> list[bytes]:
    """Wire NAL units for the NAL units of one frame (see module docstring)."""
    if not nal_units or len(nal_units) > 0xFFFF:
        raise MalformedFrame("H.264 frame must hold 1..65535 NAL units")
    if any(len(unit) < H264_NAL_HEADER_SIZE for unit in nal_units):
        raise MalformedFrame("empty H.264 NAL unit")
    headers = [unit[0] for unit in nal_units]
    lengths = [len(unit) - H264_NAL_HEADER_SIZE for unit in nal_units[:-1]]
    plaintext = b"".join(unit[H264_NAL_HEADER_SIZE:] for unit in nal_units)
    sframe_ct = seal(plaintext, _h264_metadata(headers, lengths))
    wire = []
    pos = 0
    for header, length in zip(headers, lengths + [len(sframe_ct)]):
        segment = sframe_ct[pos : pos + length]
        pos += length
        wire.append(bytes([header]) + escape_emulation(segment) + bytes([H264_TRAILER]))
    return wire


def seal_h264(stream: bytes, seal: Seal) -> bytes:
    """:func:`seal_h264_nal_units` over an Annex B frame, returned as Annex B."""
    units = seal_h264_nal_units(split_annex_b(stream), seal)
    return b"".join(ANNEX_B_START_CODE + unit for unit in units)


def open_h264(stream: bytes, open_: Open) -> bytes:
    """Decrypt an Annex B frame written by :func:`seal_h264`; Annex B out."""
    units = split_annex_b(stream)
    if len(units) > 0xFFFF:
        raise MalformedFrame("too many H.264 NAL units")
    headers = []
    segments = []
    for unit in units:
        if len(unit) < H264_NAL_HEADER_SIZE + 1 or unit[-1] != H264_TRAILER:
            raise MalformedFrame("H.264 NAL unit lacks the SFrame framing trailer")
        headers.append(unit[0])
        segments.append(unescape_emulation(unit[H264_NAL_HEADER_SIZE:-1]))
    lengths = [len(segment) for segment in segments[:-1]]
    plaintext = open_(b"".join(segments), _h264_metadata(headers, lengths))
    if len(plaintext) < sum(lengths):
        raise MalformedFrame("H.264 plaintext shorter than its NAL unit layout")
    out = []
    pos = 0
    for header, length in zip(headers, lengths + [len(plaintext) - sum(lengths)]):
        out.append(ANNEX_B_START_CODE + bytes([header]) + plaintext[pos : pos + length])
        pos += length
    return b"".join(out)


# --- whole frames (audio) ----------------------------------------------------


def seal_whole(frame: bytes, seal: Seal) -> bytes:
    """``SFrame(frame)`` with empty metadata (Opus and other audio)."""
    return seal(frame, b"")


def open_whole(wire: bytes, open_: Open) -> bytes:
    """Inverse of :func:`seal_whole`."""
    return open_(wire, b"")


# --- dispatch ----------------------------------------------------------------


def is_keyframe(codec: FrameCodec, frame: bytes) -> bool:
    """Whether a frame (clear or sealed: the bytes read are clear) starts a
    new decodable sequence: VP8 keyframe bit, or an H.264 IDR NAL unit."""
    if codec is FrameCodec.VP8:
        return bool(frame) and frame[0] & 1 == 0
    if codec is FrameCodec.H264:
        try:
            return h264_has_idr(split_annex_b(frame))
        except MalformedFrame:
            return False
    return False


def h264_has_idr(nal_units: Sequence[bytes]) -> bool:
    """True if a NAL unit is an IDR slice (nal_unit_type 5, H.264 §7.4.1)."""
    return any(unit and unit[0] & 0x1F == H264_NAL_TYPE_IDR for unit in nal_units)


def frame_sealer(codec: FrameCodec) -> Callable[[bytes, Seal], bytes]:
    """The function protecting one encoded frame of ``codec``:
    :func:`seal_vp8`, :func:`seal_h264` or :func:`seal_whole` (a stream
    looks it up once, not per frame)."""
    if codec is FrameCodec.VP8:
        return seal_vp8
    if codec is FrameCodec.H264:
        return seal_h264
    return seal_whole


def frame_opener(codec: FrameCodec) -> Callable[[bytes, Open], bytes]:
    """The inverse of :func:`frame_sealer`."""
    if codec is FrameCodec.VP8:
        return open_vp8
    if codec is FrameCodec.H264:
        return open_h264
    return open_whole


def seal_frame(codec: FrameCodec, frame: bytes, seal: Seal) -> bytes:
    """Protect one encoded frame with the codec's clear-byte rule."""
    return frame_sealer(codec)(frame, seal)


def open_frame(codec: FrameCodec, wire: bytes, open_: Open) -> bytes:
    """Unprotect one encoded frame written by :func:`seal_frame`."""
    return frame_opener(codec)(wire, open_)
