"""The codec floor of a call on this machine: what encoding and decoding
alone cost, and the largest call the cores could carry at that cost.

Every participant of a stress call decodes every other participant's
video (the delivery figure reads a counter drawn into the picture), so
however the media travels the machine decodes n(n-1) streams; a mesh
encodes n(n-1) (one encoder per link), an SFU call n.  This module times,
in this process and outside the call, the same work on the same source:

* **encode**: aiortc's ``Vp8Encoder`` (PyAV/libvpx, its realtime settings)
  on the frames of :class:`media.stress.peer.CountingVideoTrack` (same size,
  same moving pattern with its counter);
* **decode**: aiortc's ``Vp8Decoder`` on those encoded frames;
* **audio**: aiortc's ``OpusEncoder`` and ``OpusDecoder`` on one second of
  the call's tone (:class:`media.tracks.ToneAudioTrack`, 50 frames) five
  times over, after a warm-up;
* **receive stack**: what a receiver does per frame before its decoder:
  SRTP unprotect of each packet (pylibsrtp, as aiortc), RTP parsing and
  VP8 depayloading, the project's video jitter buffer
  (:class:`media.seams.GapSkippingJitterBuffer`) and SFrame decryption with
  the VP8 framing (RFC 9605 §4.4.4, :func:`media.framing.open_vp8`).  Not
  in it: aiortc's per-packet RTCP bookkeeping, the hand-off to the
  decoder thread and the event loop's own work;
* **sink**: the stress peers' sink reading the counter drawn into each
  decoded picture (:class:`media.sinks.TrackReport`).

Costs are CPU time of this process per frame (``time.process_time``: all
its threads, nothing else runs in it meanwhile), so another program's load
weighs on them far less than on wall time.  :func:`largest_call` turns them
into the largest n whose codec work per second fits the cores:
``n(n-1) * decode + n * encode <= cores`` through an SFU and
``n(n-1) * (decode + encode) <= cores`` for a mesh, where ``decode`` is
one participant's media received for one second (30 video frames, 50
audio frames; optionally with the video's receive stack and sink) and
``encode`` one encoder pair's second.

What this means for the SFU's advantage (:func:`ratio_limit`): both
topologies decode n(n-1) streams, so the SFU saves only the mesh's extra
encoders.  With ``n_m`` the largest mesh and ``n_s`` the largest SFU call,
``n_m^2 (decode + encode) ~ cores ~ n_s^2 decode + n_s encode``: as calls
grow (more cores), ``n_s / n_m`` approaches ``sqrt((encode + decode) /
decode)`` from below, and on a given machine the ratio of the two
:func:`largest_call` sizes is the most the codec work lets an SFU gain,
before any packet handling or the SFU's own CPU is counted.
"""

from __future__ import annotations

import asyncio
import os
import time
import math
from dataclasses import dataclass

from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_PTIME, VIDEO_TIME_BASE
from aiortc.rtp import RtpPacket
from av import AudioFrame
from pylibsrtp import Policy, Session

from sframe import SFrameContext

from ..framing import open_vp8, seal_vp8
from ..seams import GapSkippingJitterBuffer
from ..sinks import TrackReport
from ..tracks import AUDIO_RATE, AUDIO_SAMPLES, VIDEO_FPS, ToneAudioTrack
from .peer import CountingVideoTrack

#: audio frames per second (20 ms Opus frames)
AUDIO_FPS = AUDIO_RATE // AUDIO_SAMPLES
#: frames timed by default: 10 s of the source
DEFAULT_FRAMES = 10 * VIDEO_FPS
#: the call's dynamic payload type for VP8 (any value: only parsed back)
_PAYLOAD_TYPE = 96
_SSRC = 0x5EED
_KID = 1
#: SRTP master key and salt length of aiortc's default profile (AES_CM_128_HMAC_SHA1_80)
_SRTP_KEY_LENGTH = 30


@dataclass(frozen=True)
class CodecCosts:
    """CPU milliseconds per frame of the call's sources, timed here."""

    width: int
    height: int
    #: video frames timed
    frames: int
    encode_ms: float
    decode_ms: float
    #: Opus, per 20 ms frame of the tone
    audio_encode_ms: float
    audio_decode_ms: float
    #: SRTP, RTP, depayloading, jitter buffer and SFrame per received frame
    receive_ms: float
    #: the stress sink reading the counter from each decoded picture
    sink_ms: float
    #: encoded bytes per frame, on average (before SFrame)
    frame_bytes: float

    def decode_per_s(self, *, receive: bool = False) -> float:
        """CPU seconds per second to receive one participant's media: decode
        its video and audio (and, if ``receive``, the video's receive stack
        and sink)."""
        video = self.decode_ms + (self.receive_ms + self.sink_ms if receive else 0.0)
        return (VIDEO_FPS * video + AUDIO_FPS * self.audio_decode_ms) / 1000

    def encode_per_s(self) -> float:
        """CPU seconds per second of one encoder pair (video and audio)."""
        return (VIDEO_FPS * self.encode_ms + AUDIO_FPS * self.audio_encode_ms) / 1000


def measure_codec_costs(frames: int = DEFAULT_FRAMES) -> CodecCosts:
    """Encode ``frames`` frames of the call's video source with aiortc's VP8
    encoder, pass them through the receive stack and decode them, timing each
    step in CPU time of this process."""
    if frames < 2:
        raise ValueError("at least 2 frames are needed (the jitter buffer hands a frame on at the next)")
    source = CountingVideoTrack()
    images = []
    for index in range(frames):
        image = source.make_frame(index)
        image.pts = index * round(VIDEO_CLOCK_RATE * VIDEO_PTIME)
        image.time_base = VIDEO_TIME_BASE
        images.append(image)

    encoder = Vp8Encoder()
    encoded: list[tuple[list[bytes], int]] = []
    started = time.process_time()
    for image in images:
        encoded.append(encoder.encode(image))
    encode_s = time.process_time() - started

    # The wire: each frame as the sender transform seals it, packetized by aiortc, under SRTP.
    base_key = os.urandom(16)
    sender, receiver = SFrameContext(), SFrameContext()
    sender.add_send_key(_KID, base_key)
    receiver.add_recv_key(_KID, base_key)
    seal = sender.sealer(_KID)
    srtp_key = os.urandom(_SRTP_KEY_LENGTH)
    protect = Session(Policy(key=srtp_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)).protect
    raw_frames = [b"".join(vp8_depayload(payload) for payload in payloads) for payloads, _ in encoded]
    datagrams: list[bytes] = []
    sequence = 0
    for picture_id, (raw, (_, timestamp)) in enumerate(zip(raw_frames, encoded)):
        # as the sender transform does: the sealed frame through the encoder's packetizer
        payloads = Vp8Encoder._packetize(seal_vp8(raw, seal), picture_id & 0x7FFF)
        for index, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=_PAYLOAD_TYPE, marker=int(index == len(payloads) - 1),
                               sequence_number=sequence, timestamp=timestamp, ssrc=_SSRC, payload=payload)
            datagrams.append(protect(packet.serialize()))
            sequence = (sequence + 1) & 0xFFFF

    unprotect = Session(Policy(key=srtp_key, ssrc_type=Policy.SSRC_ANY_INBOUND)).unprotect
    jitter_buffer = GapSkippingJitterBuffer()
    def open_(ciphertext: bytes, metadata: bytes) -> bytes:
        return receiver.unprotect(ciphertext, metadata).plaintext

    received: list[JitterFrame] = []
    started = time.process_time()
    for datagram in datagrams:
        packet = RtpPacket.parse(unprotect(datagram))
        packet._data = vp8_depayload(packet.payload)  # type: ignore[attr-defined]  # as aiortc's receiver
        _, frame = jitter_buffer.add(packet)
        if frame is not None:
            frame.data = open_vp8(frame.data, open_)
            received.append(frame)
    receive_s = time.process_time() - started
    if [frame.data for frame in received] != raw_frames[:len(received)] or not received:
        raise RuntimeError("the receive stack did not give back the encoded frames")

    decoder = Vp8Decoder()
    pictures = []
    started = time.process_time()
    for frame in received:
        pictures.extend(decoder.decode(frame))
    decode_s = time.process_time() - started
    if len(pictures) != len(received):
        raise RuntimeError(f"the decoder gave {len(pictures)} pictures for {len(received)} frames")

    report = TrackReport("video")
    started = time.process_time()
    for picture in pictures:
        report.count(picture)
    sink_s = time.process_time() - started
    if report.unreadable or report.missing:
        raise RuntimeError("the decoded pictures' counters did not read back")

    audio_encode_ms, audio_decode_ms = _time_opus(asyncio.run(_tone(AUDIO_FPS)))
    return CodecCosts(width=source.width, height=source.height, frames=frames,
                      audio_encode_ms=audio_encode_ms, audio_decode_ms=audio_decode_ms,
                      encode_ms=encode_s * 1000 / frames, decode_ms=decode_s * 1000 / len(received),
                      receive_ms=receive_s * 1000 / len(received), sink_ms=sink_s * 1000 / len(pictures),
                      frame_bytes=sum(map(len, raw_frames)) / frames)


async def _tone(frames: int) -> list[AudioFrame]:
    """``frames`` frames of the call's tone (the track paces them: 20 ms each)."""
    track = ToneAudioTrack()
    try:
        return [await track.recv() for _ in range(frames)]
    finally:
        track.stop()


def _time_opus(tone: list[AudioFrame], rounds: int = 5, warm_up: int = 10) -> tuple[float, float]:
    """CPU milliseconds per frame to encode ``tone`` (``rounds`` times over)
    with aiortc's Opus encoder, and to decode what it made; each codec first
    handles ``warm_up`` frames untimed (opening it and its resampler cost
    about a fifth of one second's frames, which a call pays once)."""
    encoder, decoder = OpusEncoder(), OpusDecoder()
    for frame in tone[:warm_up]:
        for payload in encoder.encode(frame)[0]:
            decoder.decode(JitterFrame(payload, 0))
    frames = tone * rounds
    started = time.process_time()
    encoded = [encoder.encode(frame) for frame in frames]
    encode_s = time.process_time() - started
    packets = [JitterFrame(payload, timestamp) for payloads, timestamp in encoded for payload in payloads]
    started = time.process_time()
    for packet in packets:
        decoder.decode(packet)
    decode_s = time.process_time() - started
    if not packets:
        raise RuntimeError("the Opus encoder gave no packets")
    return encode_s * 1000 / len(frames), decode_s * 1000 / len(packets)


def codec_cores(topology: str, participants: int, costs: CodecCosts, *,
                receive: bool = False) -> float:
    """Cores the call's codec work takes: every participant decodes every
    other's media (with the video's receive stack and sink if ``receive``);
    a mesh encodes once per link, an SFU call once per participant."""
    streams = participants * (participants - 1)
    if topology == "mesh":
        encoders = streams
    elif topology == "sfu":
        encoders = participants
    else:
        raise ValueError(f"unknown topology {topology!r} (mesh or sfu)")
    return streams * costs.decode_per_s(receive=receive) + encoders * costs.encode_per_s()


def largest_call(topology: str, costs: CodecCosts, cores: float, *,
                 receive: bool = False) -> int:
    """The largest call (at least 2 participants, else 0) whose codec work
    fits ``cores``."""
    if costs.decode_per_s() <= 0:
        raise ValueError("a decode that costs nothing bounds no call")
    participants = 1
    while codec_cores(topology, participants + 1, costs, receive=receive) <= cores:
        participants += 1
    return participants if participants >= 2 else 0


def ratio_limit(costs: CodecCosts, *, receive: bool = False) -> float:
    """The SFU's largest call over the mesh's that the codec work allows
    as calls grow without bound: ``sqrt((encode + decode) / decode)``
    (module docstring); no number of cores does better at these costs."""
    decode = costs.decode_per_s(receive=receive)
    if decode <= 0:
        raise ValueError("a decode that costs nothing bounds no call")
    return math.sqrt((costs.encode_per_s() + decode) / decode)
