"""RFC 9180 §4 LabeledExtract / LabeledExpand ("HPKE-v1" domain separation)."""

from __future__ import annotations

from mls.crypto.kdf import Kdf

_VERSION = b"HPKE-v1"


def labeled_extract(kdf: Kdf, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    """LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm)."""
    return kdf.extract(salt, _VERSION + suite_id + label + ikm)


def labeled_expand(
    kdf: Kdf, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int
) -> bytes:
    """LabeledExpand(prk, label, info, L).

    = Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L).
    """
    return kdf.expand(prk, length.to_bytes(2, "big") + _VERSION + suite_id + label + info, length)
