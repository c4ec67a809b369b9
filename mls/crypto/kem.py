"""DHKEM (RFC 9180 §4.1) over X25519, X448, P-256, P-384 and P-521, with DeriveKeyPair (§7.1.3).

Keys cross this module's boundary serialized: SerializePublicKey / SerializePrivateKey of
RFC 9180 §7.1.1 (raw bytes for X25519/X448, uncompressed SEC1 points and big-endian
scalars for the NIST curves). Parsed key objects are cached: MLS decrypts and encrypts to
the same tree keys many times.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Generic, TypeVar, Union

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mls.crypto.hpke_labels import labeled_expand, labeled_extract
from mls.crypto.kdf import Kdf
from mls.errors import CryptoError

#: KEM identifiers (RFC 9180 §7.1).
DHKEM_P256 = 0x0010
DHKEM_P384 = 0x0011
DHKEM_P521 = 0x0012
DHKEM_X25519 = 0x0020
DHKEM_X448 = 0x0021

_Private = TypeVar("_Private")
_Public = TypeVar("_Public")

_CACHE_SIZE = 1024

#: Group orders of the NIST curves (SEC 2 §2.4.2, §2.5.1, §2.6.1), for DeriveKeyPair.
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
_P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
    "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)
_P521_ORDER = int(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
    "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)


class DHKem(ABC, Generic[_Private, _Public]):
    """DHKEM(Group, KDF): Encap/Decap built on Diffie-Hellman and ExtractAndExpand (§4.1)."""

    Nsecret: int
    Nenc: int
    Npk: int
    Nsk: int

    def __init__(self, kem_id: int, kdf: Kdf) -> None:
        self.kem_id = kem_id
        self.kdf = kdf
        self.Nsecret = kdf.Nh
        self.suite_id = b"KEM" + kem_id.to_bytes(2, "big")
        self._cached_private = lru_cache(maxsize=_CACHE_SIZE)(self._load_private)
        self._cached_public = lru_cache(maxsize=_CACHE_SIZE)(self._load_public)
        self._cached_public_key = lru_cache(maxsize=_CACHE_SIZE)(self._public_key)

    def load_private(self, data: bytes) -> _Private:
        """DeserializePrivateKey, cached; ``CryptoError`` on malformed bytes."""
        return self._cached_private(bytes(data))

    def load_public(self, data: bytes) -> _Public:
        """DeserializePublicKey, cached; ``CryptoError`` on malformed bytes."""
        return self._cached_public(bytes(data))

    def public_key(self, private_key: bytes) -> bytes:
        """SerializePublicKey(pk(skX)), cached."""
        return self._cached_public_key(bytes(private_key))

    # --- group operations, per curve -------------------------------------------------
    @abstractmethod
    def _load_private(self, data: bytes) -> _Private:
        """DeserializePrivateKey; ``CryptoError`` on malformed bytes."""

    @abstractmethod
    def _load_public(self, data: bytes) -> _Public:
        """DeserializePublicKey; ``CryptoError`` on malformed bytes."""

    @abstractmethod
    def _serialize_private(self, key: _Private) -> bytes:
        """SerializePrivateKey."""

    @abstractmethod
    def _serialize_public(self, key: _Public) -> bytes:
        """SerializePublicKey."""

    @abstractmethod
    def _public_of(self, key: _Private) -> _Public:
        """The public key matching ``key``."""

    @abstractmethod
    def _generate(self) -> _Private:
        """A fresh random private key."""

    @abstractmethod
    def _dh(self, private: _Private, public: _Public) -> bytes:
        """DH(skX, pkY): the Ndh-byte shared secret; ``CryptoError`` if invalid."""

    @abstractmethod
    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair(ikm) -> (SerializePrivateKey(sk), SerializePublicKey(pk)) (§7.1.3)."""

    # --- KEM ---------------------------------------------------------------------------
    def _public_key(self, private_key: bytes) -> bytes:
        return self._serialize_public(self._public_of(self.load_private(private_key)))

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        """GenerateKeyPair() -> (private, public), both serialized."""
        private = self._generate()
        return self._serialize_private(private), self._serialize_public(self._public_of(private))

    def _extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        eae_prk = labeled_extract(self.kdf, self.suite_id, b"", b"eae_prk", dh)
        return labeled_expand(
            self.kdf, self.suite_id, eae_prk, b"shared_secret", kem_context, self.Nsecret
        )

    def encap(self, public_key: bytes) -> tuple[bytes, bytes]:
        """Encap(pkR) -> (shared_secret, enc) with a fresh ephemeral key (§4.1)."""
        recipient = self.load_public(public_key)
        ephemeral = self._generate()
        enc = self._serialize_public(self._public_of(ephemeral))
        dh = self._dh(ephemeral, recipient)
        return self._extract_and_expand(dh, enc + bytes(public_key)), enc

    def decap(self, enc: bytes, private_key: bytes) -> bytes:
        """Decap(enc, skR) -> shared_secret (§4.1)."""
        enc = bytes(enc)
        ephemeral = self.load_public(enc)
        dh = self._dh(self.load_private(private_key), ephemeral)
        return self._extract_and_expand(dh, enc + self.public_key(private_key))

    def _dkp_prk(self, ikm: bytes) -> bytes:
        return labeled_extract(self.kdf, self.suite_id, b"", b"dkp_prk", ikm)


_XPrivate = Union[x25519.X25519PrivateKey, x448.X448PrivateKey]
_XPublic = Union[x25519.X25519PublicKey, x448.X448PublicKey]


class XKem(DHKem[_XPrivate, _XPublic]):
    """DHKEM(X25519, HKDF-SHA256) and DHKEM(X448, HKDF-SHA512) (RFC 7748 keys, raw bytes)."""

    def __init__(self, kem_id: int) -> None:
        if kem_id == DHKEM_X25519:
            self._private_type: type = x25519.X25519PrivateKey
            self._public_type: type = x25519.X25519PublicKey
            self.Nsk = self.Npk = self.Nenc = 32
            kdf = Kdf(hashes.SHA256(), 0x0001)
        else:
            self._private_type = x448.X448PrivateKey
            self._public_type = x448.X448PublicKey
            self.Nsk = self.Npk = self.Nenc = 56
            kdf = Kdf(hashes.SHA512(), 0x0003)
        super().__init__(kem_id, kdf)

    def _load_private(self, data: bytes) -> _XPrivate:
        if len(data) != self.Nsk:
            raise CryptoError("HPKE private key has the wrong length")
        return self._private_type.from_private_bytes(bytes(data))  # type: ignore[no-any-return]

    def _load_public(self, data: bytes) -> _XPublic:
        if len(data) != self.Npk:
            raise CryptoError("HPKE public key has the wrong length")
        return self._public_type.from_public_bytes(bytes(data))  # type: ignore[no-any-return]

    def _serialize_private(self, key: _XPrivate) -> bytes:
        return key.private_bytes_raw()

    def _serialize_public(self, key: _XPublic) -> bytes:
        return key.public_bytes_raw()

    def _public_of(self, key: _XPrivate) -> _XPublic:
        return key.public_key()

    def _generate(self) -> _XPrivate:
        return self._private_type.generate()  # type: ignore[no-any-return]

    def _dh(self, private: _XPrivate, public: _XPublic) -> bytes:
        try:
            return private.exchange(public)  # type: ignore[arg-type]
        except ValueError:  # all-zero output: small-order point (RFC 7748 §6)
            raise CryptoError("X25519/X448 key exchange failed") from None

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """sk = LabeledExpand(dkp_prk, "sk", "", Nsk) (RFC 9180 §7.1.3)."""
        sk = labeled_expand(self.kdf, self.suite_id, self._dkp_prk(ikm), b"sk", b"", self.Nsk)
        return sk, self.public_key(sk)


class EcKem(DHKem[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]):
    """DHKEM(P-256/P-384/P-521): uncompressed points, big-endian scalars, x-coordinate DH."""

    #: kem_id -> (curve, hash, kdf_id, Nsk, order, DeriveKeyPair bitmask) (RFC 9180 §7.1.3).
    _PARAMETERS: dict[int, tuple[ec.EllipticCurve, hashes.HashAlgorithm, int, int, int, int]] = {
        DHKEM_P256: (ec.SECP256R1(), hashes.SHA256(), 0x0001, 32, _P256_ORDER, 0xFF),
        DHKEM_P384: (ec.SECP384R1(), hashes.SHA384(), 0x0002, 48, _P384_ORDER, 0xFF),
        DHKEM_P521: (ec.SECP521R1(), hashes.SHA512(), 0x0003, 66, _P521_ORDER, 0x01),
    }

    def __init__(self, kem_id: int) -> None:
        self.curve, algorithm, kdf_id, self.Nsk, self.order, self.bitmask = self._PARAMETERS[kem_id]
        self.Npk = self.Nenc = 1 + 2 * self.Nsk
        super().__init__(kem_id, Kdf(algorithm, kdf_id))

    def _load_private(self, data: bytes) -> ec.EllipticCurvePrivateKey:
        scalar = int.from_bytes(data, "big")
        if not data or len(data) > self.Nsk or not 0 < scalar < self.order:
            raise CryptoError("HPKE private key is not a valid scalar")
        try:
            return ec.derive_private_key(scalar, self.curve)
        except ValueError:
            raise CryptoError("HPKE private key is not a valid scalar") from None

    def _load_public(self, data: bytes) -> ec.EllipticCurvePublicKey:
        if len(data) != self.Npk or data[0] != 0x04:
            raise CryptoError("HPKE public key is not an uncompressed point")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self.curve, bytes(data))
        except ValueError:
            raise CryptoError("HPKE public key is not a point on the curve") from None

    def _serialize_private(self, key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_numbers().private_value.to_bytes(self.Nsk, "big")

    def _serialize_public(self, key: ec.EllipticCurvePublicKey) -> bytes:
        return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def _public_of(self, key: ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePublicKey:
        return key.public_key()

    def _generate(self) -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(self.curve)

    def _dh(self, private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey) -> bytes:
        try:
            return private.exchange(ec.ECDH(), public)
        except ValueError:
            raise CryptoError("ECDH key exchange failed") from None

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """Rejection sampling of "candidate" scalars, counter 0..255 (RFC 9180 §7.1.3)."""
        dkp_prk = self._dkp_prk(ikm)
        for counter in range(256):
            candidate = bytearray(
                labeled_expand(
                    self.kdf, self.suite_id, dkp_prk, b"candidate", bytes([counter]), self.Nsk
                )
            )
            candidate[0] &= self.bitmask
            scalar = int.from_bytes(candidate, "big")
            if 0 < scalar < self.order:
                sk = bytes(candidate)
                return sk, self.public_key(sk)
        raise CryptoError("DeriveKeyPair found no valid scalar")  # probability ~2^-256


def make_kem(kem_id: int) -> DHKem:  # type: ignore[type-arg]
    """The DHKEM for an RFC 9180 KEM identifier."""
    if kem_id in (DHKEM_X25519, DHKEM_X448):
        return XKem(kem_id)
    return EcKem(kem_id)
