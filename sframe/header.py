"""The SFrame header (RFC 9605 §4.3).

Config byte ``X|KKK|Y|CCC`` followed by the KID and CTR as minimal-length
big-endian integers.  Values 0-7 sit in the config byte itself.  Decoding is
strict: a value carried in extra bytes must use the minimum number of bytes
(so a value < 8 in an extended field, or a leading zero byte, is malformed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .errors import InvalidArgumentType, InvalidParameter, MalformedHeader

MAX_KID = (1 << 64) - 1
MAX_CTR = (1 << 64) - 1


def encode_field(value: int) -> tuple[int, bytes]:
    """The 4-bit config nibble and the trailing bytes for one KID/CTR value."""
    if value < 8:
        return value, b""
    length = (value.bit_length() + 7) >> 3
    return 0x08 | (length - 1), value.to_bytes(length, "big")


def encode_header(kid: int, ctr: int) -> bytes:
    """Encode an SFrame header for ``kid`` and ``ctr`` (each 0 .. 2^64-1)."""
    if not (isinstance(kid, int) and isinstance(ctr, int) and 0 <= kid <= MAX_KID and 0 <= ctr <= MAX_CTR):
        raise InvalidParameter("KID and CTR must be in 0 .. 2^64-1")
    k_nibble, k_bytes = encode_field(kid)
    c_nibble, c_bytes = encode_field(ctr)
    return bytes(((k_nibble << 4) | c_nibble,)) + k_bytes + c_bytes


# _MIN_EXTENDED[n]: smallest value that needs an n-byte field (8 for n = 1).
_MIN_EXTENDED = (0, 8) + tuple(1 << (8 * (n - 1)) for n in range(2, 9))


# KID_END[config]: length of the config byte plus the KID field it announces.
KID_END = tuple(2 + ((config >> 4) & 0x07) if config & 0x80 else 1 for config in range(256))


def kid_prefixes(kid: int) -> Iterator[tuple[bytes, int, int]]:
    """Every strict header start (config byte || KID bytes) for ``kid``, one
    per value of the CTR nibble ``Y|CCC``: ``(prefix, ctr_length, value)``.

    ``value`` is the CTR itself when ``ctr_length`` is 0 (CTR in the config
    byte), else the smallest CTR that minimally needs ``ctr_length`` bytes.
    Lets a receiver find its key and the CTR layout in one dict lookup.
    """
    k_nibble, k_bytes = encode_field(kid)
    for c_nibble in range(16):
        prefix = bytes(((k_nibble << 4) | c_nibble,)) + k_bytes
        if c_nibble & 0x08:
            c_len = (c_nibble & 0x07) + 1
            yield prefix, c_len, _MIN_EXTENDED[c_len]
        else:
            yield prefix, 0, c_nibble


def decode_header(data: bytes) -> tuple[int, int, int]:
    """Parse the header at the start of ``data``: ``(kid, ctr, header_length)``.

    Raises :class:`MalformedHeader` if ``data`` is empty, truncated or the
    encoding is not minimal.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgumentType(f"data must be bytes, not {type(data).__name__}")
    try:
        config = data[0]
    except IndexError:
        raise MalformedHeader("empty SFrame ciphertext") from None
    if config & 0x80:
        kid_end = ((config >> 4) & 0x07) + 2
        kid = int.from_bytes(data[1:kid_end], "big")
        if kid < _MIN_EXTENDED[kid_end - 1]:
            raise MalformedHeader("truncated or non-minimal KID")
    else:
        kid_end = 1
        kid = config >> 4
    if config & 0x08:
        end = kid_end + (config & 0x07) + 1
        ctr = int.from_bytes(data[kid_end:end], "big")
        if ctr < _MIN_EXTENDED[end - kid_end]:
            raise MalformedHeader("truncated or non-minimal CTR")
    else:
        end = kid_end
        ctr = config & 0x07
    if len(data) < end:
        raise MalformedHeader("truncated SFrame header")
    return kid, ctr, end


@dataclass(frozen=True, slots=True)
class SFrameHeader:
    """An SFrame header: the KID and CTR of one SFrame ciphertext (§4.3)."""

    kid: int
    ctr: int

    def __post_init__(self) -> None:
        kid, ctr = self.kid, self.ctr
        if not (isinstance(kid, int) and isinstance(ctr, int) and 0 <= kid <= MAX_KID and 0 <= ctr <= MAX_CTR):
            raise InvalidParameter("KID and CTR must be in 0 .. 2^64-1")

    def encode(self) -> bytes:
        """The wire encoding of this header."""
        return encode_header(self.kid, self.ctr)

    @classmethod
    def decode(cls, data: bytes) -> tuple[SFrameHeader, int]:
        """Parse the header at the start of ``data``: ``(header, length)``."""
        kid, ctr, length = decode_header(data)
        return cls(kid, ctr), length
