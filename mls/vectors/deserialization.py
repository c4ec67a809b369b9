"""Checker for ``deserialization.json``: a §2.1.2 vector length header decodes to ``length``."""

from __future__ import annotations

from mls.vectors import expect
from mls.wire import decode_varint, encode_varint


def check(case: dict[str, object]) -> None:
    """Decode ``vlbytes_header`` (all of it) and compare with ``length``; re-encode it."""
    header = bytes.fromhex(str(case["vlbytes_header"]))
    length = decode_varint(header)
    expect("length", length, case["length"])
    expect("re-encoded header", encode_varint(length), header)
