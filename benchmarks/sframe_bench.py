"""SFrame protect+unprotect cost per frame against bare AES-GCM.

Prints, for 120- and 1200-byte frames, the µs per frame of
``SFrameContext.protect`` + ``unprotect`` (AES_128_GCM_SHA256_128 and
AES_128_CTR_HMAC_SHA256_80), the bare ``cryptography`` AESGCM
encrypt+decrypt of the same size, and the ratio.  Target: ratio <= 1.5 for
GCM at 1200 bytes.  Also the floor any Python API pays on top of bare AES-GCM
(two calls, header + ciphertext, a slice, a result tuple; no SFrame logic).  Run: ``python benchmarks/sframe_bench.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from bench_json import figure, write_figures  # noqa: E402
from sframe import SFrameCipherSuite, SFrameContext  # noqa: E402

SIZES = (120, 1200)
SUITES = (SFrameCipherSuite.AES_128_GCM_SHA256_128, SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_80)
NUMBER = 20_000
REPEAT = 7


def best_us(fn: Callable[[], object], number: int = NUMBER, repeat: int = REPEAT) -> float:
    """Best-of-``repeat`` mean µs per call (the least disturbed run)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def sframe_round_trip(suite: SFrameCipherSuite, size: int) -> Callable[[], object]:
    sender, receiver = SFrameContext(suite), SFrameContext(suite)
    base_key = os.urandom(16)
    sender.add_send_key(0x123, base_key)
    receiver.add_recv_key(0x123, base_key)
    frame, protect, unprotect = os.urandom(size), sender.protect, receiver.unprotect
    return lambda: unprotect(protect(0x123, frame))


def bare_gcm_round_trip(size: int) -> Callable[[], object]:
    aead, nonce, frame = AESGCM(os.urandom(16)), os.urandom(12), os.urandom(size)
    header = b"\x99\x01\x23\x45\x67"  # the header SFrame would authenticate
    encrypt, decrypt = aead.encrypt, aead.decrypt
    return lambda: decrypt(nonce, encrypt(nonce, frame, header), header)


def python_floor_round_trip(size: int) -> Callable[[], object]:
    """What any Python protect/unprotect pair adds to bare AES-GCM, with no SFrame
    logic at all: two calls, header + ciphertext, the ciphertext slice, a result tuple."""
    aead, nonce, frame = AESGCM(os.urandom(16)), os.urandom(12), os.urandom(size)
    header = b"\x99\x01\x23\x45\x67"
    encrypt, decrypt = aead.encrypt, aead.decrypt

    def protect(kid: int, plaintext: bytes) -> bytes:
        return header + encrypt(nonce, plaintext, header)

    def unprotect(ciphertext: bytes) -> tuple[int, int, bytes]:
        return 0x123, 0, decrypt(nonce, ciphertext[5:], header)

    return lambda: unprotect(protect(0x123, frame))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (a smoke run)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    number, repeat = (1000, 2) if args.quick else (NUMBER, REPEAT)
    figures = []
    print(f"{'suite':<28} {'bytes':>5} {'sframe µs':>10} {'AESGCM µs':>10} {'ratio':>6}")
    for size in SIZES:
        baseline = best_us(bare_gcm_round_trip(size), number, repeat)
        for suite in SUITES:
            value = best_us(sframe_round_trip(suite, size), number, repeat)
            print(f"{suite.name:<28} {size:>5} {value:>10.2f} {baseline:>10.2f} "
                  f"{value / baseline:>6.2f}")
            figures.append(figure(f"{suite.name} protect+unprotect {size} B", "µs", value, baseline,
                                  "bare AESGCM encrypt+decrypt"))
        floor = best_us(python_floor_round_trip(size), number, repeat)
        print(f"{'  Python call floor':<28} {size:>5} {floor:>10.2f} {baseline:>10.2f} "
              f"{floor / baseline:>6.2f}")
    write_figures(args.json, "sframe_bench", figures)


if __name__ == "__main__":
    main()
