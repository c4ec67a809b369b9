"""AEAD algorithms of the MLS cipher suites (RFC 9420 §5.1, RFC 5116), on ``cryptography``."""

from __future__ import annotations

from typing import Callable, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from mls.errors import CryptoError

_Cipher = Union[AESGCM, ChaCha20Poly1305]

#: HPKE AEAD identifiers (RFC 9180 §7.3).
AES_128_GCM = 0x0001
AES_256_GCM = 0x0002
CHACHA20_POLY1305 = 0x0003

_ALGORITHMS: dict[int, tuple[Callable[[bytes], _Cipher], int]] = {
    AES_128_GCM: (AESGCM, 16),
    AES_256_GCM: (AESGCM, 32),
    CHACHA20_POLY1305: (ChaCha20Poly1305, 32),
}


class Aead:
    """One AEAD algorithm: key length ``Nk``, nonce length ``Nn`` (12), tag 16 bytes.

    No cipher object is cached: secret-tree keys are used for one message and
    must then be deleted (§9.2), so a cache would only keep them alive.
    """

    Nn = 12
    Nt = 16

    def __init__(self, aead_id: int) -> None:
        factory, self.Nk = _ALGORITHMS[aead_id]
        self.aead_id = aead_id
        self._cipher = factory

    def _load(self, key: bytes, nonce: bytes) -> _Cipher:
        if len(key) != self.Nk or len(nonce) != self.Nn:
            raise CryptoError("AEAD key or nonce has the wrong length")
        return self._cipher(bytes(key))

    def seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """Seal(key, nonce, aad, pt) -> ciphertext || tag."""
        return self._load(key, nonce).encrypt(nonce, plaintext, aad)

    def open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """Open(key, nonce, aad, ct); ``CryptoError`` if authentication fails."""
        cipher = self._load(key, nonce)
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise CryptoError("AEAD decryption failed") from None
