"""Minimal RFC 9420 §2.1 encoders for the labeled structs of §5 (KDFLabel, SignContent...).

Kept private to ``mls.crypto`` so the crypto layer does not import ``mls.wire`` (whose
structs may in turn need ``mls.crypto``: an import cycle). Same encoding as
``mls.wire.codec.encode_varint``.
"""

from __future__ import annotations

from mls.errors import EncodeError

_MAX_VARINT = (1 << 30) - 1


def varint(value: int) -> bytes:
    """Encode ``value`` as an RFC 9420 §2.1.2 variable-size length (1, 2 or 4 bytes)."""
    if value < 0x40:
        return value.to_bytes(1, "big")
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value <= _MAX_VARINT:
        return (value | 0x80000000).to_bytes(4, "big")
    raise EncodeError(f"vector length {value} exceeds 2^30-1 (§2.1.2)")


def opaque(data: bytes) -> bytes:
    """Encode ``opaque data<V>``: variable-size length prefix then the bytes (§2.1.2)."""
    return varint(len(data)) + data
