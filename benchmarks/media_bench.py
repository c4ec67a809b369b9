"""Per-frame cost of the media SFrame transform vs bare SFrame.

Figure: codec-aware framing (media.framing) + SFrameSession sealing (the
sending key's ``seal``, as the sender transform uses it) and unprotect
(MLSKeyManager behind the session lock), sender then receiver.
Baseline: bare ``sframe.SFrameContext`` protect + unprotect of a frame of
the same size.  Frames: a 1200-byte VP8 delta frame, a 20 KB VP8 keyframe,
and a 20 KB H.264 keyframe (NAL headers clear, emulation prevention).

Run: ``.venv/bin/python benchmarks/media_bench.py [--quick] [--json PATH]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_json import figure, write_figures  # noqa: E402
from media.framing import (  # noqa: E402
    FrameCodec,
    escape_emulation,
    open_frame,
    seal_frame,
    split_annex_b,
)
from media.session import SFrameSession  # noqa: E402
from sframe import MLSKeyManager, SFrameContext  # noqa: E402

KID = 7
REPEAT = 5


class Exporter:
    """Stand-in MLS exporter."""

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return hashlib.shake_256(b"bench|" + label + context).digest(length)


def vp8_frame(size: int, keyframe: bool) -> bytes:
    body = bytearray(os.urandom(size))
    body[0] = body[0] & 0xFE if keyframe else body[0] | 1
    return bytes(body)


def h264_frame(size: int) -> bytes:
    # SPS, PPS and an IDR slice whose body is random (escaped, non-zero end)
    idr = b"\x65" + escape_emulation(os.urandom(size - 40)) + b"\x80"
    return b"".join(
        b"\x00\x00\x00\x01" + unit for unit in (b"\x67\x42\xc0\x1f\xda\x02\x80", b"\x68\xce\x3c\x80", idr)
    )


def best_per_call(fn: Callable[[], object], number: int, repeat: int = REPEAT) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (a smoke run)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    scale, repeat = (20, 2) if args.quick else (1, REPEAT)
    figures = []
    alice = SFrameSession(MLSKeyManager())
    alice.install_epoch(Exporter(), 1, 0, 2)
    bob = SFrameSession(MLSKeyManager())
    bob.install_epoch(Exporter(), 1, 1, 2)
    seal = alice.sender(0).seal
    open_ = lambda c, m: bob.unprotect(c, m).plaintext  # noqa: E731

    bare_tx, bare_rx = SFrameContext(), SFrameContext()
    bare_tx.add_send_key(KID, bytes(16))
    bare_rx.add_recv_key(KID, bytes(16))

    cases = [
        ("VP8 delta 1200 B", FrameCodec.VP8, vp8_frame(1200, keyframe=False), 3000),
        ("VP8 key 20 KB", FrameCodec.VP8, vp8_frame(20_000, keyframe=True), 600),
        ("H.264 key 20 KB", FrameCodec.H264, h264_frame(20_000), 300),
    ]
    print(f"{'frame':<18}{'transform us':>14}{'bare sframe us':>16}{'ratio':>8}")
    for name, codec, frame, number in cases:
        opened = open_frame(codec, seal_frame(codec, frame, seal), open_)
        assert split_annex_b(opened) == split_annex_b(frame) if codec is FrameCodec.H264 else opened == frame

        def transform() -> None:
            open_frame(codec, seal_frame(codec, frame, seal), open_)

        def bare() -> None:
            bare_rx.unprotect(bare_tx.protect(KID, frame))

        value = best_per_call(transform, max(1, number // scale), repeat)
        baseline = best_per_call(bare, max(1, number // scale), repeat)
        print(f"{name:<18}{value * 1e6:>14.1f}{baseline * 1e6:>16.1f}{value / baseline:>8.2f}")
        figures.append(figure(f"{name} transform", "µs", value * 1e6, baseline * 1e6,
                              "bare SFrameContext protect+unprotect"))
    write_figures(args.json, "media_bench", figures)


if __name__ == "__main__":
    main()
