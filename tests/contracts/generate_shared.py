"""Writes the shared contract fixtures verification_code.json, kid_layout.json
and codec_clear_bytes.json (see README.md in this folder).

Run once (``.venv/bin/python tests/contracts/generate_shared.py``); the
outputs are committed and read by tests/project/test_contracts_shared.py and
web/test/contracts-shared.test.js.  The expected values are computed here
from the rules as written (RFC 5869 HKDF from ``cryptography`` for the
verification code, RFC 9605 §5.2 integer arithmetic for the KID, the framing
rules of media/framing.py's docstring), never by the Python or JS
implementations under test.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).parent
U64_MAX = (1 << 64) - 1


def filler(label: str, length: int) -> bytes:
    """Deterministic filler bytes (test data, not key material)."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"{label}|{counter}".encode()).digest()
        counter += 1
    return out[:length]


def write(name: str, content: dict[str, Any]) -> None:
    (HERE / name).write_text(json.dumps(content, indent=1) + "\n")


# --- verification code (media/verification.py, web/app/verification.js) -----------


def verification_code(authenticator: bytes) -> str:
    okm = HKDF(algorithm=SHA256(), length=24, salt=b"", info=b"mlscall verification code v1").derive(authenticator)
    return " ".join(f"{struct.unpack('>I', okm[i:i + 4])[0] % 100000:05d}" for i in range(0, 24, 4))


def verification_fixture() -> dict[str, Any]:
    authenticators = [
        ("one byte", b"\x01"),
        ("16 bytes", filler("auth16", 16)),
        ("32 bytes (SHA-256 suites)", filler("auth32", 32)),
        ("32 bytes differing in the last bit", filler("auth32", 31) + bytes([filler("auth32", 32)[31] ^ 1])),
        ("48 bytes (SHA-384 suites)", filler("auth48", 48)),
        ("64 bytes (SHA-512 suites)", filler("auth64", 64)),
        ("32 zero bytes", bytes(32)),
        ("32 bytes 0xff", b"\xff" * 32),
    ]
    # a code with a group below 1000 (two leading zeros kept)
    seed = 0
    while min(int(g) for g in verification_code(filler(f"pad{seed}", 32)).split()) >= 1000:
        seed += 1
    authenticators.append(("a group with leading zeros", filler(f"pad{seed}", 32)))
    cases: list[dict[str, Any]] = [
        {"name": name, "epoch_authenticator": auth.hex(), "code": verification_code(auth)}
        for name, auth in authenticators
    ]
    cases.append({"name": "empty authenticator", "epoch_authenticator": "", "rejected": True})
    return {
        "description": "The verification code of an epoch (RFC 9420 §8.7 epoch_authenticator; HKDF-SHA256, "
                       "info 'mlscall verification code v1', six groups of five digits). See README.md.",
        "cases": cases,
    }


# --- KID layout (RFC 9605 §5.2) ---------------------------------------------------


def kid(epoch: int, sender: int, context: int, e: int, s: int) -> int | None:
    if epoch < 0 or context < 0 or not 0 <= sender < (1 << s):
        return None
    value = (context << (s + e)) + (sender << e) + (epoch % (1 << e))
    return value if value <= U64_MAX else None


def kid_fixture() -> dict[str, Any]:
    layouts = [
        ("E=4 S=6 epoch 14 sender 3", 14, 3, 0, 4, 6),
        ("E=4 S=6 epoch 14 sender 20", 14, 20, 0, 4, 6),
        ("E=4 S=6 context 2", 16, 2, 2, 4, 6),
        ("epoch mod 2^E", 17, 51, 0, 4, 6),
        ("epoch 16 shares the low bits of epoch 0", 16, 1, 0, 4, 6),
        ("largest sender index of S bits", 0, 63, 0, 4, 6),
        ("S=0: a group of one", 3, 0, 0, 4, 0),
        ("E=1", 5, 1, 0, 1, 1),
        ("E=1 S=0", 6, 0, 1, 1, 0),
        ("E=8 context 1", 300, 2, 1, 8, 2),
        ("E=32 S=0 context 1", (1 << 40) + 7, 0, 1, 32, 0),
        ("E=60 S=4", (1 << 62) + 9, 15, 0, 60, 4),
        ("epoch 2^64-1", U64_MAX, 5, 0, 4, 3),
        ("context 2^40", 9, 1, 1 << 40, 4, 2),
        ("context filling the KID to 2^64-1", 15, 63, (1 << 54) - 1, 4, 6),
        ("E=32 S=32: KID 2^64-1", U64_MAX, (1 << 32) - 1, 0, 32, 32),
        ("overflow: context one past the 64 bits", 0, 0, 1 << 54, 4, 6),
        ("overflow: E=32 S=32 with context 1", 0, 0, 1, 32, 32),
        ("sender index 2^S", 1, 64, 0, 4, 6),
        ("S=0 and sender index 1", 1, 1, 0, 4, 0),
        ("negative sender index", 1, -1, 0, 4, 6),
        ("negative epoch", -1, 0, 0, 4, 6),
        ("negative context", 1, 0, -1, 4, 6),
    ]
    cases = []
    for name, epoch, sender, context, e, s in layouts:
        case: dict[str, Any] = {"name": name, "epoch": str(epoch), "sender_index": sender, "context": str(context),
                                "epoch_bits": e, "index_bits": s}
        value = kid(epoch, sender, context, e, s)
        if value is None:
            case["error"] = "InvalidParameter"
        else:
            case["kid"] = str(value)
        cases.append(case)
    group_sizes = [1, 2, 3, 4, 5, 16, 17, 64, 65, 1000, 1 << 32]
    managers = [
        ("default E=4, S from a group of 64", 64, 4, None, 17, 51, 0),
        ("default E=4, S from a group of 3, context 1", 3, 4, None, 5, 2, 1),
        ("E=8, S from a group of 1000", 1000, 8, None, 300, 999, 0),
        ("E=3, S fixed at 16 for a group of 5", 5, 3, 16, 7, 4, 3),
    ]
    return {
        "description": "SFrame KID of an MLS sender (RFC 9605 §5.2): KID = (context << (S+E)) + "
                       "(sender_index << E) + (epoch mod 2^E), at most 64 bits. Integers above 2^53 are "
                       "decimal strings. See README.md.",
        "layout": cases,
        "index_bits": [{"group_size": n, "index_bits": max(n - 1, 0).bit_length()} for n in group_sizes],
        "manager": [
            {"name": name, "group_size": n, "epoch_bits": e, "index_bits": s, "epoch": epoch,
             "sender_index": sender, "context": context,
             "kid": str(kid(epoch, sender, context, e, s if s is not None else max(n - 1, 0).bit_length()))}
            for name, n, e, s, epoch, sender, context in managers
        ],
    }


# --- codec-aware clear bytes (media/framing.py, web/sframe/framing.js) --------------


def escape(data: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for b in data:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def fake_sframe(plaintext: bytes, label: str, zero_runs: bytes = b"") -> bytes:
    """A stand-in SFrame ciphertext: 2-byte header, body, 16-byte tag; ``zero_runs``
    overwrite the start of the body so the ciphertext holds start-code patterns."""
    body = bytearray(filler(label, len(plaintext)))
    body[:len(zero_runs)] = zero_runs[:len(body)]
    return b"\x9a\x05" + bytes(body) + filler(label + "tag", 16)


def vp8_case(name: str, frame: bytes) -> dict[str, Any]:
    n = 10 if frame[0] & 1 == 0 else 3
    case: dict[str, Any] = {"name": name, "codec": "vp8", "frame": frame.hex(), "keyframe": frame[0] & 1 == 0,
                            "clear_bytes": n}
    if len(frame) < n:
        case["seal_error"] = "MalformedFrame"
        return case
    sframe = fake_sframe(frame[n:], name)
    case.update(plaintext=frame[n:].hex(), metadata=frame[:n].hex(), sframe=sframe.hex(),
                wire=(frame[:n] + sframe).hex())
    return case


def h264_case(name: str, units: list[bytes], start_codes: list[bytes], zero_runs: bytes = b"") -> dict[str, Any]:
    frame = b"".join(sc + unit for sc, unit in zip(start_codes, units))
    headers = bytes(unit[0] for unit in units)
    lengths = [len(unit) - 1 for unit in units[:-1]]
    plaintext = b"".join(unit[1:] for unit in units)
    metadata = struct.pack(">H", len(units)) + headers + b"".join(struct.pack(">I", n) for n in lengths)
    sframe = fake_sframe(plaintext, name, zero_runs)
    wire = b""
    pos = 0
    for header, length in zip(headers, lengths + [len(sframe)]):
        wire += b"\x00\x00\x00\x01" + bytes([header]) + escape(sframe[pos:pos + length]) + b"\x80"
        pos += length
    return {"name": name, "codec": "h264", "frame": frame.hex(),
            "keyframe": any(unit[0] & 0x1F == 5 for unit in units),
            "plaintext": plaintext.hex(), "metadata": metadata.hex(), "sframe": sframe.hex(), "wire": wire.hex(),
            "opened": b"".join(b"\x00\x00\x00\x01" + unit for unit in units).hex()}


def codec_fixture() -> dict[str, Any]:
    key = bytes([0x50, 0x42, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01]) + filler("vp8key", 40)
    delta = bytes([0x31, 0x0E, 0x00]) + filler("vp8delta", 30)
    sc4, sc3 = b"\x00\x00\x00\x01", b"\x00\x00\x01"
    sps, pps = b"\x67\x42\xc0\x1f\xda\x01\x40\x16\xec\x04", b"\x68\xce\x3c\x80"
    idr = b"\x65" + filler("idr", 60) + b"\x80"
    slice_ = b"\x41" + filler("p-slice", 25) + b"\x80"
    frames: list[dict[str, Any]] = [
        vp8_case("VP8 keyframe: 10 bytes clear", key),
        vp8_case("VP8 keyframe of exactly 10 bytes: empty plaintext", key[:10]),
        vp8_case("VP8 keyframe shorter than 10 bytes", key[:9]),
        vp8_case("VP8 delta frame: 3 bytes clear", delta),
        vp8_case("VP8 delta frame of exactly 3 bytes", delta[:3]),
        vp8_case("VP8 delta frame of 1 byte", delta[:1]),
        vp8_case("VP8 delta frame of 2 bytes", delta[:2]),
        h264_case("H.264 one IDR NAL unit", [idr], [sc4]),
        h264_case("H.264 SPS, PPS, IDR (a keyframe)", [sps, pps, idr], [sc4, sc4, sc4]),
        h264_case("H.264 one P slice, 3-byte start code", [slice_], [sc3]),
        h264_case("H.264 mixed start codes, leading zero byte", [b"\x09\xf0", slice_], [b"\x00" + sc4, sc3]),
        h264_case("H.264 NAL unit of a header only", [b"\x06", slice_], [sc4, sc4]),
        h264_case("H.264 ciphertext holding 00 00 00/01/02/03: emulation prevention",
                  [sps, pps, idr], [sc4, sc4, sc4],
                  zero_runs=b"\x00\x00\x00\x00\x00\x01\x00\x00\x02\x00\x00\x03\x00\x00\x04"),
        h264_case("H.264 ciphertext segment ending in 00 00, the next one starting 01",
                  [b"\x67\x11\x22\x33\x44\x55\x66", slice_], [sc4, sc4],
                  zero_runs=b"\x11\x22\x00\x00\x01\x00"),
        {"name": "H.264 frame without a start code", "codec": "h264", "frame": idr.hex(), "keyframe": False,
         "seal_error": "MalformedFrame"},
        {"name": "H.264 empty NAL unit between two start codes", "codec": "h264",
         "frame": (sc4 + sc4 + idr).hex(), "keyframe": True, "seal_error": "MalformedFrame"},
        {"name": "Opus frame: encrypted whole", "codec": "audio", "frame": filler("opus", 80).hex(),
         "keyframe": False, "plaintext": filler("opus", 80).hex(), "metadata": "",
         "sframe": fake_sframe(filler("opus", 80), "opus").hex(),
         "wire": fake_sframe(filler("opus", 80), "opus").hex()},
        {"name": "Opus frame of 1 byte (DTX)", "codec": "audio", "frame": "f8", "keyframe": False,
         "plaintext": "f8", "metadata": "", "sframe": fake_sframe(b"\xf8", "dtx").hex(),
         "wire": fake_sframe(b"\xf8", "dtx").hex()},
    ]
    sealed_key = bytes.fromhex(frames[0]["wire"])
    sealed_delta = bytes.fromhex(frames[3]["wire"])
    sealed_h264 = bytes.fromhex(frames[8]["wire"])
    open_errors = [
        {"name": "VP8 keyframe with nothing after its 10 clear bytes", "codec": "vp8", "wire": sealed_key[:10].hex()},
        {"name": "VP8 delta frame with nothing after its 3 clear bytes", "codec": "vp8",
         "wire": sealed_delta[:3].hex()},
        {"name": "VP8 empty frame", "codec": "vp8", "wire": ""},
        {"name": "H.264 last NAL unit without its 0x80 trailer", "codec": "h264", "wire": sealed_h264[:-1].hex()},
        {"name": "H.264 without a start code", "codec": "h264", "wire": sealed_h264[4:].hex()},
        {"name": "H.264 NAL unit of a header only", "codec": "h264", "wire": "0000000165"},
    ]
    raw_epb = [
        ("no zeros", b"\x12\x34"),
        ("00 00 00", b"\x00\x00\x00"),
        ("00 00 01", b"\x00\x00\x01"),
        ("00 00 02", b"\x00\x00\x02"),
        ("00 00 03", b"\x00\x00\x03"),
        ("00 00 04 needs none", b"\x00\x00\x04"),
        ("trailing 00 00 needs none", b"\xaa\x00\x00"),
        ("four zeros", b"\x00\x00\x00\x00"),
        ("six zeros then 01", b"\x00" * 6 + b"\x01"),
        ("00 00 03 03", b"\x00\x00\x03\x03"),
        ("00 01 00 00 01", b"\x00\x01\x00\x00\x01"),
    ]
    annex_b = [
        ("4-byte start code", sc4 + b"\x65\x01", [b"\x65\x01"]),
        ("3-byte start code", sc3 + b"\x41\x02", [b"\x41\x02"]),
        ("trailing zero bytes before the next start code", sc4 + b"\x67\x01\x00\x00" + sc3 + b"\x68\x02",
         [b"\x67\x01", b"\x68\x02"]),
        ("leading zero bytes", b"\x00\x00" + sc4 + b"\x09\x10", [b"\x09\x10"]),
        ("an empty NAL unit", sc4 + sc4 + b"\x65", [b"", b"\x65"]),
        ("emulation-prevented body stays one unit", sc4 + b"\x65\x00\x00\x03\x01\x00\x00\x03\x00",
         [b"\x65\x00\x00\x03\x01\x00\x00\x03"]),
    ]
    return {
        "description": "Codec-aware clear bytes of encoded frames (VP8: 10 on keyframes, 3 on delta frames; "
                       "H.264: NAL unit headers clear, one SFrame ciphertext per frame, emulation prevention and "
                       "0x80 trailer per NAL unit; audio: encrypted whole). 'sframe' is what the stand-in SFrame "
                       "seal returns. See README.md.",
        "frames": frames,
        "open_errors": [dict(case, error="MalformedFrame") for case in open_errors],
        "emulation_prevention": [{"name": name, "raw": raw.hex(), "escaped": escape(raw).hex()}
                                 for name, raw in raw_epb],
        "annex_b": [{"name": name, "stream": stream.hex(), "units": [u.hex() for u in units]}
                    for name, stream, units in annex_b]
        + [{"name": "no start code", "stream": "6501", "error": "MalformedFrame"},
           {"name": "garbage before the first start code", "stream": "0100000165", "error": "MalformedFrame"}],
        "mime_types": [
            {"mime_type": "video/VP8", "codec": "vp8"}, {"mime_type": "video/vp8", "codec": "vp8"},
            {"mime_type": "video/H264", "codec": "h264"}, {"mime_type": "audio/opus", "codec": "audio"},
            {"mime_type": "audio/PCMU", "codec": "audio"}, {"mime_type": "video/VP9", "error": "UnsupportedCodec"},
            {"mime_type": "video/AV1", "error": "UnsupportedCodec"},
        ],
    }


if __name__ == "__main__":
    write("verification_code.json", verification_fixture())
    write("kid_layout.json", kid_fixture())
    write("codec_clear_bytes.json", codec_fixture())
