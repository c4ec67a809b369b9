"""MLS cipher suites 1-7 (RFC 9420 §5.1, §17.1) and the labeled operations of §5.

``CipherSuite`` works on serialized keys and raw bytes only; labels are passed WITHOUT the
"MLS 1.0 " prefix, which the *_with_label functions add (§5.1.2, §5.1.3, §8). ``ref_hash``
takes its label verbatim, as RefHash does in §5.2 (see ``KEY_PACKAGE_REF_LABEL``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mls.crypto import aead as _aead
from mls.crypto import kem as _kem
from mls.crypto._encoding import opaque
from mls.crypto.aead import Aead
from mls.crypto.hpke import Hpke
from mls.crypto.kdf import Kdf
from mls.crypto.signature import BatchVerifier, EdDsa, Ecdsa, SignatureScheme
from mls.errors import CryptoError, UnsupportedCipherSuiteError

#: The prefix every MLS label carries (§5.1.2, §5.1.3, §8).
LABEL_PREFIX = b"MLS 1.0 "
#: RefHash labels of §5.2.
KEY_PACKAGE_REF_LABEL = b"MLS 1.0 KeyPackage Reference"
PROPOSAL_REF_LABEL = b"MLS 1.0 Proposal Reference"

@dataclass(frozen=True)
class _SuiteParameters:
    kem_id: int
    aead_id: int
    hash_name: str
    signature: str


_SUITES: dict[int, _SuiteParameters] = {
    0x0001: _SuiteParameters(_kem.DHKEM_X25519, _aead.AES_128_GCM, "SHA256", "Ed25519"),
    0x0002: _SuiteParameters(_kem.DHKEM_P256, _aead.AES_128_GCM, "SHA256", "P256"),
    0x0003: _SuiteParameters(_kem.DHKEM_X25519, _aead.CHACHA20_POLY1305, "SHA256", "Ed25519"),
    0x0004: _SuiteParameters(_kem.DHKEM_X448, _aead.AES_256_GCM, "SHA512", "Ed448"),
    0x0005: _SuiteParameters(_kem.DHKEM_P521, _aead.AES_256_GCM, "SHA512", "P521"),
    0x0006: _SuiteParameters(_kem.DHKEM_X448, _aead.CHACHA20_POLY1305, "SHA512", "Ed448"),
    0x0007: _SuiteParameters(_kem.DHKEM_P384, _aead.AES_256_GCM, "SHA384", "P384"),
}

_HASHES: dict[str, tuple[type[hashes.HashAlgorithm], int]] = {
    "SHA256": (hashes.SHA256, 0x0001),
    "SHA384": (hashes.SHA384, 0x0002),
    "SHA512": (hashes.SHA512, 0x0003),
}


def _signature_scheme(name: str) -> SignatureScheme:  # type: ignore[type-arg]
    if name == "Ed25519":
        return EdDsa(ed448_curve=False)
    if name == "Ed448":
        return EdDsa(ed448_curve=True)
    curve, algorithm = {
        "P256": (ec.SECP256R1(), hashes.SHA256()),
        "P384": (ec.SECP384R1(), hashes.SHA384()),
        "P521": (ec.SECP521R1(), hashes.SHA512()),
    }[name]
    return Ecdsa(curve, algorithm)


class CipherSuite:
    """One MLS cipher suite: KDF/hash, AEAD, HPKE and signature scheme (§5.1).

    Obtain instances with ``cipher_suite(suite_id)``; they are shared and stateless apart
    from caches of parsed keys and cipher objects.
    """

    def __init__(self, suite_id: int) -> None:
        parameters = _SUITES[suite_id]
        hash_type, kdf_id = _HASHES[parameters.hash_name]
        self.suite_id = suite_id
        #: the signature scheme's name ("Ed25519", "P256", ...): suites sharing it share identities
        self.signature_scheme: str = parameters.signature
        self._kdf = Kdf(hash_type(), kdf_id)
        self._aead = Aead(parameters.aead_id)
        self._hpke = Hpke(_kem.make_kem(parameters.kem_id), self._kdf, self._aead)
        self._signature = _signature_scheme(parameters.signature)
        self.Nh: int = self._kdf.Nh
        self.Nk: int = self._aead.Nk
        self.Nn: int = self._aead.Nn

    def __repr__(self) -> str:
        return f"CipherSuite({self.suite_id})"

    # --- hash, MAC, KDF (§5.1, §8) -------------------------------------------------------
    def hash(self, data: bytes) -> bytes:
        """Hash(data) with the suite hash."""
        return self._kdf.hash(data)

    def mac(self, key: bytes, data: bytes) -> bytes:
        """MAC(key, data): HMAC with the suite hash (§5.1)."""
        return self._kdf.mac(key, data)

    def kdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        """KDF.Extract(salt, ikm) (HKDF-Extract)."""
        return self._kdf.extract(salt, ikm)

    def kdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """KDF.Expand(prk, info, length) (HKDF-Expand)."""
        return self._kdf.expand(prk, info, length)

    def expand_with_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        """ExpandWithLabel(Secret, Label, Context, Length) with KDFLabel (§8)."""
        kdf_label = length.to_bytes(2, "big") + opaque(LABEL_PREFIX + label) + opaque(context)
        return self._kdf.expand(secret, kdf_label, length)

    def derive_secret(self, secret: bytes, label: bytes) -> bytes:
        """DeriveSecret(Secret, Label) = ExpandWithLabel(Secret, Label, "", Nh) (§8)."""
        return self.expand_with_label(secret, label, b"", self.Nh)

    def derive_tree_secret(self, secret: bytes, label: bytes, generation: int, length: int) -> bytes:
        """DeriveTreeSecret(Secret, Label, Generation, Length) (§9): context = uint32 generation."""
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    def ref_hash(self, label: bytes, value: bytes) -> bytes:
        """RefHash(label, value) = Hash(RefHashInput) (§5.2); ``label`` is used verbatim."""
        return self._kdf.hash(opaque(label) + opaque(value))

    # --- AEAD ---------------------------------------------------------------------------
    def aead_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """AEAD.Seal(key, nonce, aad, plaintext) -> ciphertext || tag."""
        return self._aead.seal(key, nonce, aad, plaintext)

    def aead_open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """AEAD.Open; ``CryptoError`` when authentication fails."""
        return self._aead.open(key, nonce, aad, ciphertext)

    # --- signatures (§5.1.2) ------------------------------------------------------------
    def sign_with_label(self, signature_private_key: bytes, label: bytes, content: bytes) -> bytes:
        """SignWithLabel(SignatureKey, Label, Content): sign SignContent (§5.1.2)."""
        return self._signature.sign(signature_private_key, _sign_content(label, content))

    def verify_with_label(
        self, signature_public_key: bytes, label: bytes, content: bytes, signature: bytes
    ) -> None:
        """VerifyWithLabel; ``SignatureError`` if invalid, ``CryptoError`` if the key is malformed."""
        self._signature.verify(signature_public_key, _sign_content(label, content), signature)

    def verify_with_label_many(
        self, label: bytes, checks: Sequence[tuple[bytes, bytes, bytes]], verify_batch: BatchVerifier
    ) -> list[bool]:
        """VerifyWithLabel of each ``(public key, content, signature)`` under one label, through
        ``verify_batch`` (possibly concurrent): True per valid signature, False per invalid one
        or malformed key. ``CryptoError`` if ``verify_batch`` does not return one result per check.
        """
        prefix = opaque(LABEL_PREFIX + label)
        results = verify_batch(
            self._signature.is_valid,
            [(key, prefix + opaque(content), signature) for key, content, signature in checks],
        )
        if len(results) != len(checks):
            raise CryptoError("the batch signature verifier returned a wrong number of results")
        return [result is True for result in results]

    def generate_signature_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh signature key pair (private, public), serialized as in the vectors."""
        return self._signature.generate_key_pair()

    def signature_public_key(self, signature_private_key: bytes) -> bytes:
        """The signature public key of a private key."""
        return self._signature.public_key(signature_private_key)

    # --- public-key encryption (§5.1.3) ---------------------------------------------------
    def encrypt_with_label(
        self, public_key: bytes, label: bytes, context: bytes, plaintext: bytes
    ) -> tuple[bytes, bytes]:
        """EncryptWithLabel = SealBase(pk, EncryptContext, "", pt) -> (kem_output, ciphertext)."""
        return self._hpke.seal_base(public_key, _encrypt_context(label, context), b"", plaintext)

    def encrypt_with_label_many(
        self, label: bytes, context: bytes, recipients: Iterable[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """EncryptWithLabel of each ``(public_key, plaintext)`` under one ``label`` and ``context``.

        The same result as one ``encrypt_with_label`` each, with the EncryptContext
        built and hashed once (a Welcome's context is the whole encrypted GroupInfo).
        """
        return self._hpke.seal_base_many(recipients, _encrypt_context(label, context), b"")

    def decrypt_with_label(
        self, private_key: bytes, label: bytes, context: bytes, kem_output: bytes, ciphertext: bytes
    ) -> bytes:
        """DecryptWithLabel = OpenBase(kem_output, sk, EncryptContext, "", ct); ``CryptoError``."""
        return self._hpke.open_base(
            kem_output, private_key, _encrypt_context(label, context), b"", ciphertext
        )

    def hpke_seal(
        self, public_key: bytes, info: bytes, aad: bytes, plaintext: bytes
    ) -> tuple[bytes, bytes]:
        """HPKE SealBase single shot -> (kem_output, ciphertext) (RFC 9180 §6.1)."""
        return self._hpke.seal_base(public_key, info, aad, plaintext)

    def hpke_open(
        self, private_key: bytes, kem_output: bytes, info: bytes, aad: bytes, ciphertext: bytes
    ) -> bytes:
        """HPKE OpenBase single shot; ``CryptoError`` on failure (RFC 9180 §6.1)."""
        return self._hpke.open_base(kem_output, private_key, info, aad, ciphertext)

    def hpke_export_sender(
        self, public_key: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> tuple[bytes, bytes]:
        """SetupBaseS + Export -> (kem_output, exported secret) (RFC 9180 §6.2; RFC 9420 §8.3)."""
        return self._hpke.send_export_base(public_key, info, exporter_context, length)

    def hpke_export_receiver(
        self, kem_output: bytes, private_key: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> bytes:
        """SetupBaseR + Export -> exported secret; ``CryptoError`` on a bad kem_output (§6.2)."""
        return self._hpke.receive_export_base(kem_output, private_key, info, exporter_context, length)

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair(ikm) -> (private, public), serialized (RFC 9180 §7.1.3)."""
        return self._hpke.kem.derive_key_pair(ikm)

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh HPKE key pair (private, public), serialized."""
        return self._hpke.kem.generate_key_pair()

    def hpke_public_key(self, private_key: bytes) -> bytes:
        """SerializePublicKey of the HPKE private key's public key."""
        return self._hpke.kem.public_key(private_key)


def _sign_content(label: bytes, content: bytes) -> bytes:
    """SignContent { opaque label<V> = "MLS 1.0 " + Label; opaque content<V>; } (§5.1.2)."""
    return opaque(LABEL_PREFIX + label) + opaque(content)


def _encrypt_context(label: bytes, context: bytes) -> bytes:
    """EncryptContext { opaque label<V> = "MLS 1.0 " + Label; opaque context<V>; } (§5.1.3)."""
    return opaque(LABEL_PREFIX + label) + opaque(context)


@lru_cache(maxsize=None)
def _make(suite_id: int) -> CipherSuite:
    return CipherSuite(suite_id)


def cipher_suite(suite_id: int) -> CipherSuite:
    """The shared ``CipherSuite`` for ``suite_id``; ``UnsupportedCipherSuiteError`` if not 1-7."""
    if isinstance(suite_id, bool) or not isinstance(suite_id, int) or suite_id not in _SUITES:
        raise UnsupportedCipherSuiteError(f"unsupported cipher suite {suite_id!r}")
    return _make(int(suite_id))  # one shared instance, whether given an int or a CipherSuiteId


SUPPORTED_CIPHER_SUITES: tuple[int, ...] = tuple(_SUITES)
