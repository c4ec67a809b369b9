"""The video jitter buffer of hooked receivers (media.seams.GapSkippingJitterBuffer).

aiortc's own buffer freezes a video stream after a packet that neither
arrives nor comes back by NACK, until 512 more packets have arrived; ours
drops the broken frame after ``max_wait`` seconds of media time and asks
for a keyframe. Packet streams here are synthetic RTP: ``PER_FRAME``
packets per frame, one frame every 1/30 s of the 90 kHz video clock.
"""

from __future__ import annotations

import pytest
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from media.seams import VIDEO_JITTER_CAPACITY, GapSkippingJitterBuffer, hook_receiver

PER_FRAME = 3
TICKS_PER_FRAME = 3000  # 90 kHz / 30 frames per second
MAX_WAIT_FRAMES = 15  # the default max_wait, 0.5 s, in frames


class FakeDtlsTransport:
    """Just enough of RTCDtlsTransport to construct a receiver."""

    state = "new"


def stream(frames: int, *, first_seq: int = 1000, first_ts: int = 50_000) -> list[RtpPacket]:
    """RTP packets of ``frames`` frames; each payload names its frame and part."""
    packets = []
    for frame in range(frames):
        for part in range(PER_FRAME):
            packet = RtpPacket(
                payload_type=96,
                sequence_number=(first_seq + frame * PER_FRAME + part) % 65536,
                timestamp=(first_ts + frame * TICKS_PER_FRAME) % (1 << 32),
            )
            packet._data = bytes([frame % 256, part])  # type: ignore[attr-defined]
            packets.append(packet)
    return packets


def feed(buffer: JitterBuffer, packets: list[RtpPacket]) -> tuple[list[int], list[int]]:
    """Frames handed on (by frame number) and the packet positions that raised a PLI."""
    frames: list[int] = []
    plis: list[int] = []
    for position, packet in enumerate(packets):
        pli, frame = buffer.add(packet)
        if pli:
            plis.append(position)
        if frame is not None:
            assert isinstance(frame, JitterFrame)
            number = frame.data[0]
            assert frame.data == b"".join(bytes([number, part]) for part in range(PER_FRAME)), "a whole frame"
            frames.append(number)
    return frames, plis


@pytest.mark.parametrize("first_seq", [1000, 65536 - 7])  # also across the sequence number wrap
def test_without_loss_it_hands_on_what_aiortcs_buffer_does(first_seq: int) -> None:
    packets = stream(40, first_seq=first_seq)
    ours = feed(GapSkippingJitterBuffer(), packets)
    theirs = feed(JitterBuffer(VIDEO_JITTER_CAPACITY, is_video=True), packets)
    assert ours == theirs
    assert ours[0] == list(range(39)) and ours[1] == []  # the last frame waits for the next one


@pytest.mark.parametrize(("lost_part", "dropped"), [
    (0, [9, 10]),  # frame 10's first packet: frame 9's end is unknown too
    (1, [10]),  # inside frame 10
    (2, [10, 11]),  # frame 10's last packet: whether frame 11 lost its first is unknown
])
def test_a_packet_that_never_comes_costs_its_frame_and_one_keyframe_request(lost_part: int, dropped: list[int]) -> None:
    packets = stream(60)
    lost = 10 * PER_FRAME + lost_part
    received = packets[:lost] + packets[lost + 1:]

    frozen, _ = feed(JitterBuffer(VIDEO_JITTER_CAPACITY, is_video=True), received)
    assert frozen == list(range(dropped[0])), "control: aiortc's own buffer hands on nothing after the hole"

    frames, plis = feed(GapSkippingJitterBuffer(), received)
    assert frames == [n for n in range(59) if n not in dropped], "no broken frame, every other one in order"
    assert len(plis) == 1, "one keyframe request"
    waited = received[plis[0]].timestamp - packets[dropped[0] * PER_FRAME].timestamp
    assert waited == MAX_WAIT_FRAMES * TICKS_PER_FRAME, "given up after max_wait, not before"


def test_a_retransmission_inside_max_wait_loses_nothing() -> None:
    packets = stream(30)
    lost = 10 * PER_FRAME + 1
    retransmitted_after = lost + 5 * PER_FRAME  # NACK answered 5 frames later
    received = packets[:lost] + packets[lost + 1:retransmitted_after] + [packets[lost]] + packets[retransmitted_after:]
    frames, plis = feed(GapSkippingJitterBuffer(), received)
    assert frames == list(range(29)) and plis == []


def test_a_late_packet_of_an_older_frame_does_not_trigger_a_skip() -> None:
    packets = stream(12)
    buffer = GapSkippingJitterBuffer()
    feed(buffer, packets[:5 * PER_FRAME])  # frames 0-3 handed on, frame 4 waiting
    stale = RtpPacket(payload_type=96, sequence_number=packets[0].sequence_number - 3,
                      timestamp=packets[0].timestamp - 40 * TICKS_PER_FRAME)
    stale._data = b"\xff" * PER_FRAME  # type: ignore[attr-defined]
    assert buffer.add(stale) == (False, None)
    frames, plis = feed(buffer, packets[5 * PER_FRAME:])
    assert frames == list(range(4, 11)) and plis == []


def test_hooked_video_receivers_get_it_and_audio_receivers_keep_theirs() -> None:
    video, audio = RTCRtpReceiver("video", FakeDtlsTransport()), RTCRtpReceiver("audio", FakeDtlsTransport())
    audio_buffer = audio._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    for receiver in (video, audio):
        hook_receiver(receiver, lambda codec, frame: True)
    assert isinstance(video._RTCRtpReceiver__jitter_buffer, GapSkippingJitterBuffer)  # type: ignore[attr-defined]
    assert audio._RTCRtpReceiver__jitter_buffer is audio_buffer  # type: ignore[attr-defined]


def test_a_buffer_already_holding_packets_is_left_in_place() -> None:
    receiver = RTCRtpReceiver("video", FakeDtlsTransport())
    buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    buffer.add(stream(1)[0])
    hook_receiver(receiver, lambda codec, frame: True)
    assert receiver._RTCRtpReceiver__jitter_buffer is buffer  # type: ignore[attr-defined]
