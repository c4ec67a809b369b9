"""Signature schemes of the MLS cipher suites (RFC 9420 §5.1.2, §17.1), on ``cryptography``.

Key encodings are those of the MLS test vectors: EdDSA private keys are the RFC 8032 seeds
(32 bytes for Ed25519, 57 for Ed448) and public keys the raw encodings; ECDSA private keys
are big-endian scalars (left-padded when shorter, as some P-521 keys are) and public keys
uncompressed SEC1 points; ECDSA signatures are DER-encoded (RFC 9420 §5.1.2, SEC 1).

Many signatures at once (a joiner's ratchet tree, §12.4.3.1) go through a
``BatchVerifier`` the application may supply: ``verify_serially`` by default.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Generic, TypeVar, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mls.errors import CryptoError, SignatureError

_Private = TypeVar("_Private")
_Public = TypeVar("_Public")

_CACHE_SIZE = 1024

#: One signature to check: ``(public key, signed message, signature)``, serialized.
SignatureCheck = tuple[bytes, bytes, bytes]
#: ``verify_batch(verify, checks)`` returns ``[verify(c) for c in checks]`` (True: valid), in the
#: order of ``checks``; it may call ``verify`` in any order and from several threads at once
#: (``verify`` is thread-safe and OpenSSL releases the GIL while verifying).
BatchVerifier = Callable[[Callable[[SignatureCheck], bool], Sequence[SignatureCheck]], Sequence[bool]]


def verify_serially(verify: Callable[[SignatureCheck], bool], checks: Sequence[SignatureCheck]) -> list[bool]:
    """The default ``BatchVerifier``: one check after the other, in the calling thread."""
    return [verify(check) for check in checks]


class SignatureScheme(ABC, Generic[_Private, _Public]):
    """Sign/Verify over serialized keys, with parsed keys cached."""

    def __init__(self) -> None:
        self._cached_private = lru_cache(maxsize=_CACHE_SIZE)(self._load_private)
        self._cached_public = lru_cache(maxsize=_CACHE_SIZE)(self._load_public)
        self._cached_public_key = lru_cache(maxsize=_CACHE_SIZE)(self._public_key)

    @abstractmethod
    def _load_private(self, data: bytes) -> _Private:
        """Parse a serialized private key; ``CryptoError`` if malformed."""

    @abstractmethod
    def _load_public(self, data: bytes) -> _Public:
        """Parse a serialized public key; ``CryptoError`` if malformed."""

    @abstractmethod
    def _public_key(self, private_key: bytes) -> bytes:
        """Serialized public key of a serialized private key."""

    @abstractmethod
    def _sign(self, key: _Private, message: bytes) -> bytes:
        """Signature of ``message``."""

    @abstractmethod
    def _verify(self, key: _Public, message: bytes, signature: bytes) -> None:
        """Raise ``InvalidSignature`` unless ``signature`` is valid."""

    @abstractmethod
    def generate_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh (private, public) key pair, serialized."""

    def public_key(self, private_key: bytes) -> bytes:
        """The serialized public key of ``private_key`` (cached)."""
        return self._cached_public_key(bytes(private_key))

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        """Sign ``message`` with a serialized private key."""
        return self._sign(self._cached_private(bytes(private_key)), message)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        """``SignatureError`` unless ``signature`` over ``message`` is valid."""
        key = self._cached_public(bytes(public_key))
        try:
            self._verify(key, message, bytes(signature))
        except InvalidSignature:
            raise SignatureError("signature verification failed") from None

    def is_valid(self, check: SignatureCheck) -> bool:
        """True if the signature of a ``SignatureCheck`` is valid; False also for a malformed key.

        Thread-safe. Keys are parsed without the key cache: a batch (a whole
        tree's leaves) would only evict the keys of members who sign often.
        """
        public_key, message, signature = check
        try:
            self._verify(self._load_public(bytes(public_key)), message, bytes(signature))
        except (InvalidSignature, CryptoError):
            return False
        return True


_EdPrivate = Union[ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey]
_EdPublic = Union[ed25519.Ed25519PublicKey, ed448.Ed448PublicKey]


class EdDsa(SignatureScheme[_EdPrivate, _EdPublic]):
    """Ed25519 or Ed448 (RFC 8032), pure mode."""

    def __init__(self, ed448_curve: bool) -> None:
        if ed448_curve:
            self._private_type: type = ed448.Ed448PrivateKey
            self._public_type: type = ed448.Ed448PublicKey
            self.key_length = 57
        else:
            self._private_type = ed25519.Ed25519PrivateKey
            self._public_type = ed25519.Ed25519PublicKey
            self.key_length = 32
        super().__init__()

    def _load_private(self, data: bytes) -> _EdPrivate:
        if len(data) != self.key_length:
            raise CryptoError("signature private key has the wrong length")
        return self._private_type.from_private_bytes(data)  # type: ignore[no-any-return]

    def _load_public(self, data: bytes) -> _EdPublic:
        if len(data) != self.key_length:
            raise CryptoError("signature public key has the wrong length")
        try:
            return self._public_type.from_public_bytes(data)  # type: ignore[no-any-return]
        except ValueError:
            raise CryptoError("signature public key is not a valid point") from None

    def _public_key(self, private_key: bytes) -> bytes:
        return self._load_private(private_key).public_key().public_bytes_raw()

    def _sign(self, key: _EdPrivate, message: bytes) -> bytes:
        return key.sign(message)

    def _verify(self, key: _EdPublic, message: bytes, signature: bytes) -> None:
        key.verify(signature, message)

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        private = self._private_type.generate()
        return private.private_bytes_raw(), private.public_key().public_bytes_raw()


class Ecdsa(SignatureScheme[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]):
    """ECDSA over a NIST curve with its matching hash; DER signatures (RFC 9420 §5.1.2)."""

    def __init__(self, curve: ec.EllipticCurve, algorithm: hashes.HashAlgorithm) -> None:
        self.curve = curve
        self.scalar_length = (curve.key_size + 7) // 8
        self.point_length = 1 + 2 * self.scalar_length
        self._algorithm = ec.ECDSA(algorithm)
        super().__init__()

    def _load_private(self, data: bytes) -> ec.EllipticCurvePrivateKey:
        if not data or len(data) > self.scalar_length:
            raise CryptoError("signature private key has the wrong length")
        try:
            return ec.derive_private_key(int.from_bytes(data, "big"), self.curve)
        except ValueError:
            raise CryptoError("signature private key is not a valid scalar") from None

    def _load_public(self, data: bytes) -> ec.EllipticCurvePublicKey:
        if len(data) != self.point_length or data[0] != 0x04:
            raise CryptoError("signature public key is not an uncompressed point")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self.curve, data)
        except ValueError:
            raise CryptoError("signature public key is not a point on the curve") from None

    def _public_key(self, private_key: bytes) -> bytes:
        key = self._load_private(private_key).public_key()
        return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def _sign(self, key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
        return key.sign(message, self._algorithm)

    def _verify(self, key: ec.EllipticCurvePublicKey, message: bytes, signature: bytes) -> None:
        key.verify(signature, message, self._algorithm)

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        private = ec.generate_private_key(self.curve)
        scalar = private.private_numbers().private_value.to_bytes(self.scalar_length, "big")
        public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return scalar, public
