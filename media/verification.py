"""The verification code members of a call compare out of band.

RFC 9420 §8.7: the ``epoch_authenticator`` of an epoch is equal for every
member that agrees on the group's state; comparing it (or a value derived
from it) over another channel detects an attacker in the middle of the
delivery service.  The call page (web/app/verification.js) and the bots
show the same short code, derived here:

    okm  = HKDF-SHA256(salt = "", IKM = epoch_authenticator,
                       info = "mlscall verification code v1", L = 24)   (RFC 5869)
    code = six groups of five decimal digits, group i = u32be(okm[4i:4i+4]) mod 10^5

30 digits carry about 99 bits; the modulo bias (2^32 mod 10^5 / 2^32) is
below 2e-5 per group.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import MediaError

VERIFICATION_INFO = b"mlscall verification code v1"
GROUPS = 6
DIGITS = 5
_BYTES_PER_GROUP = 4


def verification_code(epoch_authenticator: bytes) -> str:
    """The code of an epoch, e.g. ``"04711 93215 00042 77810 12345 67890"``."""
    if not isinstance(epoch_authenticator, (bytes, bytearray)) or not epoch_authenticator:
        raise MediaError("the epoch authenticator must be non-empty bytes")
    okm = HKDF(algorithm=SHA256(), length=GROUPS * _BYTES_PER_GROUP, salt=None,
               info=VERIFICATION_INFO).derive(bytes(epoch_authenticator))
    modulus = 10 ** DIGITS
    return " ".join(
        f"{int.from_bytes(okm[i:i + _BYTES_PER_GROUP], 'big') % modulus:0{DIGITS}d}"
        for i in range(0, len(okm), _BYTES_PER_GROUP)
    )
