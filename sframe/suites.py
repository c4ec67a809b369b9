"""SFrame cipher suites (RFC 9605 §4.5, §8.1) and the AES-CTR + HMAC
compound AEAD (§4.5.1).

Suites 6-8 (``AES_256_CTR_HMAC_SHA512_*``) are not in RFC 9605: they were
added to the working group's test vectors after publication.
"""

from __future__ import annotations

import hmac as _stdlib_hmac
import struct
import threading
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import AuthenticationFailure, InvalidParameter, UnsupportedCipherSuite


class SFrameCipherSuite(IntEnum):
    """SFrame cipher suite identifiers (RFC 9605 §8.1; 6-8 not in the RFC)."""

    AES_128_CTR_HMAC_SHA256_80 = 0x0001
    AES_128_CTR_HMAC_SHA256_64 = 0x0002
    AES_128_CTR_HMAC_SHA256_32 = 0x0003
    AES_128_GCM_SHA256_128 = 0x0004
    AES_256_GCM_SHA512_128 = 0x0005
    AES_256_CTR_HMAC_SHA512_80 = 0x0006
    AES_256_CTR_HMAC_SHA512_64 = 0x0007
    AES_256_CTR_HMAC_SHA512_32 = 0x0008


@dataclass(frozen=True)
class CipherSuiteParams:
    """Constants of one suite (RFC 9605 §4.5 table): ``nka`` is 0 for GCM."""

    suite: SFrameCipherSuite
    hash: type[hashes.HashAlgorithm]
    nh: int
    nka: int
    nk: int
    nn: int
    nt: int
    in_rfc9605: bool

    @property
    def is_compound(self) -> bool:
        """True for the AES-CTR + HMAC compound AEAD of §4.5.1."""
        return self.nka != 0


def _params(suite: SFrameCipherSuite, hash_: type[hashes.HashAlgorithm], nka: int, nt: int,
            in_rfc: bool = True) -> CipherSuiteParams:
    nh = hash_.digest_size  # type: ignore[attr-defined]
    nk = nka + nh if nka else (16 if suite == SFrameCipherSuite.AES_128_GCM_SHA256_128 else 32)
    return CipherSuiteParams(suite, hash_, nh, nka, nk, 12, nt, in_rfc)


CIPHER_SUITES: dict[SFrameCipherSuite, CipherSuiteParams] = {
    p.suite: p
    for p in (
        _params(SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_80, hashes.SHA256, 16, 10),
        _params(SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_64, hashes.SHA256, 16, 8),
        _params(SFrameCipherSuite.AES_128_CTR_HMAC_SHA256_32, hashes.SHA256, 16, 4),
        _params(SFrameCipherSuite.AES_128_GCM_SHA256_128, hashes.SHA256, 0, 16),
        _params(SFrameCipherSuite.AES_256_GCM_SHA512_128, hashes.SHA512, 0, 16),
        _params(SFrameCipherSuite.AES_256_CTR_HMAC_SHA512_80, hashes.SHA512, 32, 10, False),
        _params(SFrameCipherSuite.AES_256_CTR_HMAC_SHA512_64, hashes.SHA512, 32, 8, False),
        _params(SFrameCipherSuite.AES_256_CTR_HMAC_SHA512_32, hashes.SHA512, 32, 4, False),
    )
}


def suite_params(suite: int) -> CipherSuiteParams:
    """The constants of ``suite``; :class:`UnsupportedCipherSuite` if unknown."""
    try:
        return CIPHER_SUITES[SFrameCipherSuite(suite)]
    except (ValueError, KeyError):
        raise UnsupportedCipherSuite(f"unsupported SFrame cipher suite {suite!r}") from None


class AEAD(Protocol):
    """RFC 5116 AEAD with the tag appended to the ciphertext (RFC 9605 §4.4).

    ``decrypt`` raises :class:`AuthenticationFailure` (compound AEAD) or
    ``cryptography.exceptions.InvalidTag`` (AESGCM): callers map both.
    """

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class AesCtrHmac:
    """The AES-CTR + HMAC encrypt-then-MAC AEAD of RFC 9605 §4.5.1.

    ``key`` is ``enc_key || auth_key`` (Nka + Nh bytes).  The keyed HMAC
    state is built once and copied per frame; one AES-CTR context is built
    once and re-pointed at each frame's counter block with ``reset_nonce``
    (every frame has its own nonce, so no keystream is ever used twice).  A
    lock keeps the reset and the keystream use of one frame together when
    several threads share a key.
    """

    __slots__ = ("_ctr", "_ctr_lock", "_hmac", "_nt", "_nt_bytes")

    def __init__(self, params: CipherSuiteParams, key: bytes) -> None:
        if not params.is_compound:
            raise InvalidParameter(f"{params.suite.name} is not an AES-CTR+HMAC suite")
        if len(key) != params.nka + params.nh:
            raise InvalidParameter(f"AEAD key must be {params.nka + params.nh} bytes")
        # AES-CTR encryption and decryption are the same keystream XOR.
        self._ctr = Cipher(algorithms.AES(key[: params.nka]),  # enc_key
                           modes.CTR(bytes(16))).encryptor()
        self._ctr_lock = threading.Lock()
        self._hmac = crypto_hmac.HMAC(key[params.nka :], params.hash())  # auth_key
        self._nt = params.nt
        self._nt_bytes = params.nt.to_bytes(8, "big")

    def __repr__(self) -> str:
        return f"AesCtrHmac(nt={self._nt})"

    def _tag(self, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        """``compute_tag`` of §4.5.1, truncated to Nt bytes."""
        mac = self._hmac.copy()
        mac.update(struct.pack(">QQ", len(aad), len(ct)) + self._nt_bytes + nonce)
        mac.update(aad)
        mac.update(ct)
        return mac.finalize()[: self._nt]

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """``AEAD.Encrypt(key, nonce, aad, pt)``: AES-CTR ciphertext || tag."""
        ct = self._keystream_xor(nonce, data)
        return ct + self._tag(nonce, associated_data or b"", ct)

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """``AEAD.Decrypt(key, nonce, aad, ct)``; :class:`AuthenticationFailure`
        on a wrong tag or a ciphertext shorter than Nt."""
        nt = self._nt
        if len(data) < nt:
            raise AuthenticationFailure("ciphertext shorter than the authentication tag")
        inner = data[: len(data) - nt]
        tag = data[len(data) - nt :]
        if not _stdlib_hmac.compare_digest(self._tag(nonce, associated_data or b"", inner), tag):
            raise AuthenticationFailure("authentication tag mismatch")
        return self._keystream_xor(nonce, inner)

    def _keystream_xor(self, nonce: bytes, data: bytes) -> bytes:
        """AES-CTR of ``data`` from the counter block ``nonce || 0^32`` (§4.5.1)."""
        with self._ctr_lock:
            self._ctr.reset_nonce(nonce + b"\x00\x00\x00\x00")
            return self._ctr.update(data)


def make_aead(params: CipherSuiteParams, key: bytes) -> AEAD:
    """The AEAD of ``params`` keyed with ``key`` (built once, reused per frame)."""
    if params.is_compound:
        return AesCtrHmac(params, key)
    if len(key) != params.nk:
        raise InvalidParameter(f"AEAD key must be {params.nk} bytes")
    return AESGCM(key)
