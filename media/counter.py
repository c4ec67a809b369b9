"""A frame counter drawn into the picture, readable from decoded pixels.

The sender draws each frame's number into the luma plane as a block code;
a receiver reads it back from the *decoded* picture, so it can check that
every frame after the first keyframe arrived, decrypted and decoded
(no gap), independently of RTP sequence numbers or SFrame counters.

Code: 32 bits (a 24-bit counter and an 8-bit check, the low byte of its
CRC-32) in a grid of 8 x 4 blocks of 8 x 8 pixels at the top left of the
picture, black (Y = 16) for 0 and white (Y = 235) for 1.  Blocks are aligned
with the codec's transform blocks and read at their 4 x 4 centre against a
mid-grey threshold, which survives VP8 at aiortc's bitrates (tested down to
its 250 kbit/s floor); the check rejects a picture whose code did not.

Every receiver of a stress run or benchmark reads every picture, so the
read is done a few wide integer additions at a time rather than pixel by
pixel: luma values are taken to 1/16 (a block's 16 samples then sum to at
most 240, one byte), the sample rows of all blocks are added as one integer
with a byte per pixel, the four centre columns of each block likewise, and
the 32 sums are thresholded by one ``bytes.translate``.
"""

from __future__ import annotations

import zlib

from av import VideoFrame

from .tracks import PatternVideoTrack

BLOCK = 8
COLUMNS = 8
ROWS = 4
COUNTER_BITS = 24
COUNTER_MODULUS = 1 << COUNTER_BITS
_BLACK, _WHITE, _THRESHOLD = 16, 235, 126
_SAMPLE = range(BLOCK // 4, BLOCK - BLOCK // 4)  # the 4 x 4 centre of a block
#: luma to 1/16, and a block's sum of 16 such samples to the bit it reads as
#: (above the threshold's 16 samples, less half the rounding down: ±8 of 219)
_SIXTEENTH = bytes(value >> 4 for value in range(256))
_BIT = bytes(ord("1") if total > _THRESHOLD - 7 else ord("0") for total in range(256))

#: smallest picture the code fits in
MIN_WIDTH, MIN_HEIGHT = COLUMNS * BLOCK, ROWS * BLOCK


def _check(counter: int) -> int:
    return zlib.crc32(counter.to_bytes(3, "big")) & 0xFF


def _bits(counter: int) -> list[int]:
    word = ((counter % COUNTER_MODULUS) << 8) | _check(counter % COUNTER_MODULUS)
    return [(word >> (31 - i)) & 1 for i in range(COLUMNS * ROWS)]


def draw_counter(frame: VideoFrame, counter: int) -> None:
    """Draw ``counter`` (mod 2^24) into ``frame``'s luma plane (yuv420p) in place."""
    if frame.width < MIN_WIDTH or frame.height < MIN_HEIGHT:
        raise ValueError(f"the picture must be at least {MIN_WIDTH}x{MIN_HEIGHT}")
    plane = frame.planes[0]
    stride = plane.line_size
    pixels = memoryview(plane).cast("B")
    for i, bit in enumerate(_bits(counter)):
        row, column = divmod(i, COLUMNS)
        run = bytes([_WHITE if bit else _BLACK]) * BLOCK
        for y in range(row * BLOCK, (row + 1) * BLOCK):
            start = y * stride + column * BLOCK
            pixels[start : start + BLOCK] = run


def read_counter(frame: VideoFrame) -> int | None:
    """The counter drawn into a decoded picture, or None if unreadable."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    if frame.width < MIN_WIDTH or frame.height < MIN_HEIGHT:
        return None
    plane = frame.planes[0]
    stride = plane.line_size
    pixels = memoryview(plane).cast("B")
    width = COLUMNS * BLOCK
    # one byte per pixel of the code's width, each the sum over a block's sample rows
    rows = 0
    for y in _SAMPLE:
        line = b"".join(pixels[(row * BLOCK + y) * stride:][:width] for row in range(ROWS))
        rows += int.from_bytes(line.translate(_SIXTEENTH), "big")
    summed = rows.to_bytes(ROWS * width, "big")
    # one byte per block (row by row), the sum over its sample columns too
    blocks = sum(int.from_bytes(summed[x::BLOCK], "big") for x in _SAMPLE)
    word = int(blocks.to_bytes(ROWS * COLUMNS, "big").translate(_BIT), 2)
    counter = word >> 8
    return counter if word & 0xFF == _check(counter) else None


class CounterVideoTrack(PatternVideoTrack):
    """The moving test pattern with each frame's number drawn in (30 frames/s)."""

    def make_frame(self, index: int) -> VideoFrame:
        frame = super().make_frame(index)
        draw_counter(frame, index)
        return frame
