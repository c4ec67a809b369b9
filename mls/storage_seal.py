"""Encryption at rest of stored records: AES-256-GCM under a key the application supplies.

A sealed value is ``version (0x01) || nonce (12 random bytes) || AES-256-GCM
ciphertext and tag``. The additional authenticated data binds the record to
its place, ``"MLS state record v1" || opaque namespace<V> || opaque key<V>``
(RFC 9420 §2.1 vectors), so a sealed value copied under another key or
namespace, truncated or altered fails to open with ``TamperedRecordError``.

The AEAD key is derived once from the application's 32-byte key with
HKDF-SHA256, so the application's key itself never keys the cipher, and the
cipher object is kept for every later record. With random 96-bit nonces one
key should seal at most 2^32 values (NIST SP 800-38D §8.3); every state
change writes one record per changed entry, so this bound is far beyond
a client's lifetime of handshakes.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mls.errors import InvalidArgumentTypeError, StorageKeyError, TamperedRecordError
from mls.wire.codec import Writer

__all__ = ["KEY_SIZE", "RecordSeal"]

#: Length of the application-supplied storage key.
KEY_SIZE = 32
_VERSION = 1
_NONCE_SIZE = 12
_TAG_SIZE = 16
_AAD_LABEL = b"MLS state record v1"
_HKDF_INFO = b"MLS state at rest v1: AES-256-GCM record key"


def _aad(namespace: str, key: bytes) -> bytes:
    writer = Writer()
    writer.raw(_AAD_LABEL)
    writer.opaque(namespace.encode("utf-8"))
    writer.opaque(key)
    return writer.getvalue()


class RecordSeal:
    """Seals and opens stored values under one application key (never kept, never shown)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes | bytearray | memoryview) -> None:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise InvalidArgumentTypeError(f"the storage key must be bytes, not {type(key).__name__}")
        if len(key) != KEY_SIZE:
            raise StorageKeyError(f"the storage key must be {KEY_SIZE} bytes")
        record_key = HKDF(SHA256(), KEY_SIZE, salt=None, info=_HKDF_INFO).derive(bytes(key))
        self._aead = AESGCM(record_key)

    def __repr__(self) -> str:
        return "RecordSeal(AES-256-GCM)"

    def seal(self, namespace: str, key: bytes, value: bytes) -> bytes:
        """``value`` encrypted and bound to (``namespace``, ``key``), under a fresh random nonce."""
        nonce = os.urandom(_NONCE_SIZE)
        return bytes((_VERSION,)) + nonce + self._aead.encrypt(nonce, value, _aad(namespace, key))

    def open(self, namespace: str, key: bytes, sealed: bytes) -> bytes:
        """The value ``seal`` sealed at this place; ``TamperedRecordError`` if it does not authenticate."""
        if len(sealed) < 1 + _NONCE_SIZE + _TAG_SIZE or sealed[0] != _VERSION:
            raise TamperedRecordError(f"a stored {namespace!r} record is not a sealed record of format version {_VERSION}")
        try:
            return self._aead.decrypt(sealed[1 : 1 + _NONCE_SIZE], sealed[1 + _NONCE_SIZE :], _aad(namespace, key))
        except InvalidTag:
            raise TamperedRecordError(
                f"a stored {namespace!r} record failed authentication (modified, moved, or sealed under another key)"
            ) from None
