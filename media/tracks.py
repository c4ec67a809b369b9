"""Synthetic media sources: a moving test pattern and a sine tone.

Small and cheap to encode, for the demo bot, tests and benchmarks; every
frame differs from the previous one so encoders emit real delta frames.

Both are precomputed and shared by every track of the process: a stress run
hosts many peers per process, and synthesizing the tone one ``math.sin`` per
sample took about a fifth of its event loop.  The pattern scrolls by 4 per
frame modulo 256, so it has 64 distinct images; a tone of a whole number of
hertz fits whole periods into one second (50 frames of 20 ms).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

from aiortc import AudioStreamTrack, VideoStreamTrack
from aiortc.mediastreams import VIDEO_PTIME, MediaStreamError
from av import AudioFrame, VideoFrame

AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms, one Opus frame
#: frames per second of a video source paced in real time (aiortc's video clock)
VIDEO_FPS = round(1 / VIDEO_PTIME)
#: the test pattern repeats after this many frames (4 steps of 256)
PATTERN_PHASES = 64

#: (width, height, phase) -> the pattern's planes (yuv420p)
_pattern_planes: dict[tuple[int, int, int], list[bytes]] = {}
#: frequency -> one second of the tone, s16 little-endian mono
_tone_seconds: dict[int, bytes] = {}


def _pattern(width: int, height: int, index: int) -> list[bytes]:
    key = (width, height, index % PATTERN_PHASES)
    planes = _pattern_planes.get(key)
    if planes is None:
        frame = VideoFrame(width, height, "yuv420p")
        planes = []
        for number, plane in enumerate(frame.planes):
            line = plane.line_size
            rows = plane.buffer_size // line
            row = bytes((3 * x + index * 4 + number * 60) & 0xFF for x in range(line + rows))
            planes.append(b"".join(row[y : y + line] for y in range(rows)))
        _pattern_planes[key] = planes
    return planes


def _tone_second(frequency: int) -> bytes:
    second = _tone_seconds.get(frequency)
    if second is None:
        step = 2 * math.pi * frequency / AUDIO_RATE
        second = _tone_seconds[frequency] = b"".join(
            (int(8000 * math.sin(step * i)) & 0xFFFF).to_bytes(2, "little") for i in range(AUDIO_RATE))
    return second


class PatternVideoTrack(VideoStreamTrack):
    """A diagonal gradient scrolling one step per frame (30 frames/s)."""

    def __init__(self, width: int = 96, height: int = 64) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self._index = 0

    def make_frame(self, index: int) -> VideoFrame:
        """The pattern's ``index``-th image (yuv420p)."""
        frame = VideoFrame(self.width, self.height, "yuv420p")
        for plane, data in zip(frame.planes, _pattern(self.width, self.height, index)):
            plane.update(data)
        return frame

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = self.make_frame(self._index)
        self._index += 1
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """A sine tone (440 Hz by default; whole hertz), 48 kHz mono, 20 ms per frame."""

    def __init__(self, frequency: int = 440) -> None:
        super().__init__()
        self._frequency = frequency
        self._sample = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:  # pace frames in real time
            await asyncio.sleep(self._start + self._sample / AUDIO_RATE - time.time())
        frame = AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        offset = (self._sample % AUDIO_RATE) * 2
        frame.planes[0].update(_tone_second(self._frequency)[offset : offset + AUDIO_SAMPLES * 2])
        frame.pts = self._sample
        frame.sample_rate = AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._sample += AUDIO_SAMPLES
        return frame
