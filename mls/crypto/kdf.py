"""Hash and HKDF of a cipher suite (RFC 9420 §5.1, RFC 5869), on ``cryptography``."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from mls.errors import CryptoError


class Kdf:
    """HKDF over one hash function: ``Nh`` is the hash (and Extract) output length."""

    __slots__ = ("algorithm", "Nh", "kdf_id", "_fresh_hash")

    def __init__(self, algorithm: hashes.HashAlgorithm, kdf_id: int) -> None:
        self.algorithm = algorithm
        self.Nh: int = algorithm.digest_size
        self.kdf_id = kdf_id
        #: a context that is only ever copied: a copy costs a third less than a new one
        self._fresh_hash = hashes.Hash(algorithm)

    def hash(self, data: bytes) -> bytes:
        """Hash(data) with the suite hash."""
        digest = self._fresh_hash.copy()
        digest.update(data)
        return digest.finalize()

    def mac(self, key: bytes, data: bytes) -> bytes:
        """HMAC(key, data) with the suite hash (RFC 2104)."""
        tag = hmac.HMAC(key, self.algorithm)
        tag.update(data)
        return tag.finalize()

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        """HKDF-Extract(salt, IKM) = HMAC(salt, IKM) (RFC 5869 §2.2)."""
        return self.mac(salt, ikm)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """HKDF-Expand(PRK, info, L) (RFC 5869 §2.3).

        For L <= Nh the output is T(1) = HMAC(PRK, info || 0x01) truncated,
        computed directly: that is every MLS key-schedule and secret-tree step.
        """
        if 0 < length <= self.Nh:
            return self.mac(prk, info + b"\x01")[:length]
        try:
            return HKDFExpand(self.algorithm, length, info).derive(prk)
        except ValueError as exc:
            raise CryptoError(f"HKDF-Expand cannot produce {length} bytes") from exc
