"""Synthetic media sources: a moving test pattern and a sine tone.

Small and cheap to encode, for the demo bot, tests and benchmarks; every
frame differs from the previous one so encoders emit real delta frames.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

from aiortc import AudioStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms, one Opus frame


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
        for number, plane in enumerate(frame.planes):
            width = plane.line_size
            rows = plane.buffer_size // width
            row = bytes((3 * x + index * 4 + number * 60) & 0xFF for x in range(width + rows))
            plane.update(b"".join(row[y : y + width] for y in range(rows)))
        return frame

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = self.make_frame(self._index)
        self._index += 1
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """A 440 Hz sine tone, 48 kHz mono, 20 ms per frame."""

    def __init__(self, frequency: float = 440.0) -> None:
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
        step = 2 * math.pi * self._frequency / AUDIO_RATE
        samples = (
            int(8000 * math.sin(step * (self._sample + i))) & 0xFFFF for i in range(AUDIO_SAMPLES)
        )
        frame.planes[0].update(b"".join(s.to_bytes(2, "little") for s in samples))
        frame.pts = self._sample
        frame.sample_rate = AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._sample += AUDIO_SAMPLES
        return frame
