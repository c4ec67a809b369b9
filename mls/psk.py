"""``psk_secret`` from the PSKs injected by a Commit or a Welcome (RFC 9420 §8.4).

::

    psk_extracted_[i] = KDF.Extract(0, psk_[i])
    psk_input_[i]     = ExpandWithLabel(psk_extracted_[i], "derived psk", PSKLabel, KDF.Nh)
    psk_secret_[0]    = 0
    psk_secret_[i]    = KDF.Extract(psk_input_[i-1], psk_secret_[i-1])

with ``PSKLabel = struct { PreSharedKeyID id; uint16 index; uint16 count; }``.
"""

from __future__ import annotations

from collections.abc import Sequence

from mls.crypto import CipherSuite
from mls.errors import ValidationError
from mls.wire.psk import PreSharedKeyID, PSKLabel


def psk_secret(suite: CipherSuite, psks: Sequence[tuple[PreSharedKeyID, bytes]]) -> bytes:
    """Chain the PSKs, in the order the Commit or GroupSecrets lists them, into ``psk_secret``.

    With no PSKs the result is the all-zero vector of length ``KDF.Nh``.
    """
    count = len(psks)
    if count > 0xFFFF:
        raise ValidationError("too many PSKs for a uint16 PSKLabel.count")
    zero = bytes(suite.Nh)
    secret = zero
    for index, (psk_id, psk) in enumerate(psks):
        extracted = suite.kdf_extract(zero, psk)
        label = PSKLabel(psk_id, index, count).encode()
        psk_input = suite.expand_with_label(extracted, b"derived psk", label, suite.Nh)
        secret = suite.kdf_extract(psk_input, secret)
    return secret
