"""HPKE base mode, single shot (RFC 9180 §5.1, §6.1): SealBase / OpenBase.

MLS only uses mode_base with an empty PSK and one operation per context: one message
(EncryptWithLabel, RFC 9420 §5.1.3), so the nonce is ``base_nonce`` itself, or one export
(external init, RFC 9420 §8.3), so the secret-export API of §6.2.

Sealing with an empty aad and a short info (EncryptWithLabel of UpdatePath secrets)
goes through ``cryptography``'s own single-shot HPKE where it has the KEM (all but
X448): the same construction done in one native call, which matters when a Commit
seals to hundreds of members. A batch with a long info (a Welcome's) hashes it once.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives import hpke as _native

from mls.crypto import aead as _aead
from mls.crypto import kem as _kem
from mls.crypto.aead import Aead
from mls.crypto.hpke_labels import labeled_expand, labeled_extract
from mls.crypto.kdf import Kdf
from mls.crypto.kem import DHKem
from mls.errors import CryptoError

_MODE_BASE = b"\x00"

#: The native call hashes ``info`` on every seal; above this size (a Welcome's context is
#: the whole encrypted GroupInfo) hashing it once for the batch costs less.
_NATIVE_MAX_INFO = 2048

_NATIVE_KEMS = {
    _kem.DHKEM_X25519: _native.KEM.X25519,
    _kem.DHKEM_P256: _native.KEM.P256,
    _kem.DHKEM_P384: _native.KEM.P384,
    _kem.DHKEM_P521: _native.KEM.P521,
}
_NATIVE_KDFS = {0x0001: _native.KDF.HKDF_SHA256, 0x0002: _native.KDF.HKDF_SHA384, 0x0003: _native.KDF.HKDF_SHA512}
_NATIVE_AEADS = {
    _aead.AES_128_GCM: _native.AEAD.AES_128_GCM,
    _aead.AES_256_GCM: _native.AEAD.AES_256_GCM,
    _aead.CHACHA20_POLY1305: _native.AEAD.CHACHA20_POLY1305,
}


class Hpke:
    """One HPKE ciphersuite (KEM, KDF, AEAD)."""

    def __init__(self, kem: DHKem, kdf: Kdf, aead: Aead) -> None:  # type: ignore[type-arg]
        self.kem = kem
        self.kdf = kdf
        self.aead = aead
        self.suite_id = (
            b"HPKE"
            + kem.kem_id.to_bytes(2, "big")
            + kdf.kdf_id.to_bytes(2, "big")
            + aead.aead_id.to_bytes(2, "big")
        )
        self._psk_id_hash = labeled_extract(kdf, self.suite_id, b"", b"psk_id_hash", b"")
        native_kem = _NATIVE_KEMS.get(kem.kem_id)
        self._native = (
            _native.Suite(native_kem, _NATIVE_KDFS[kdf.kdf_id], _NATIVE_AEADS[aead.aead_id])
            if native_kem is not None
            else None
        )

    def _info_hash(self, info: bytes) -> bytes:
        return labeled_extract(self.kdf, self.suite_id, b"", b"info_hash", info)

    def _key_schedule(self, shared_secret: bytes, info_hash: bytes) -> tuple[bytes, bytes]:
        """KeySchedule for mode_base -> (secret, key_schedule_context) (§5.1), given ``info_hash``."""
        context = _MODE_BASE + self._psk_id_hash + info_hash
        return labeled_extract(self.kdf, self.suite_id, shared_secret, b"secret", b""), context

    def _key_and_nonce(self, shared_secret: bytes, info_hash: bytes) -> tuple[bytes, bytes]:
        secret, context = self._key_schedule(shared_secret, info_hash)
        key = labeled_expand(self.kdf, self.suite_id, secret, b"key", context, self.aead.Nk)
        nonce = labeled_expand(self.kdf, self.suite_id, secret, b"base_nonce", context, self.aead.Nn)
        return key, nonce

    def _export(self, shared_secret: bytes, info: bytes, exporter_context: bytes, length: int) -> bytes:
        """Context.Export(exporter_context, L) (§5.3)."""
        secret, context = self._key_schedule(shared_secret, self._info_hash(info))
        exporter_secret = labeled_expand(self.kdf, self.suite_id, secret, b"exp", context, self.kdf.Nh)
        return labeled_expand(self.kdf, self.suite_id, exporter_secret, b"sec", exporter_context, length)

    def seal_base(self, public_key: bytes, info: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """SealBase(pkR, info, aad, pt) -> (enc, ct) (§6.1)."""
        return self.seal_base_many([(public_key, plaintext)], info, aad)[0]

    def seal_base_many(
        self, recipients: Iterable[tuple[bytes, bytes]], info: bytes, aad: bytes
    ) -> list[tuple[bytes, bytes]]:
        """SealBase(pkR, info, aad, pt) for each ``(pkR, pt)``, hashing the shared ``info`` once (§6.1)."""
        native = self._native
        if native is not None and not aad and len(info) <= _NATIVE_MAX_INFO:
            load, n_enc = self.kem.load_public, self.kem.Nenc
            sealed_all = []
            for public_key, plaintext in recipients:
                try:
                    sealed = native.encrypt(plaintext, load(public_key), info=info)
                except ValueError:  # e.g. a small-order point
                    raise CryptoError("HPKE encapsulation failed") from None
                sealed_all.append((sealed[:n_enc], sealed[n_enc:]))
            return sealed_all
        info_hash = self._info_hash(info)
        encap, seal = self.kem.encap, self.aead.seal
        result = []
        for public_key, plaintext in recipients:
            shared_secret, enc = encap(public_key)
            key, nonce = self._key_and_nonce(shared_secret, info_hash)
            result.append((enc, seal(key, nonce, aad, plaintext)))
        return result

    def open_base(self, enc: bytes, private_key: bytes, info: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """OpenBase(enc, skR, info, aad, ct) -> pt; ``CryptoError`` on failure (§6.1)."""
        shared_secret = self.kem.decap(enc, private_key)
        key, nonce = self._key_and_nonce(shared_secret, self._info_hash(info))
        return self.aead.open(key, nonce, aad, ciphertext)

    def send_export_base(
        self, public_key: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> tuple[bytes, bytes]:
        """SendExportBase(pkR, info, exporter_context, L) -> (enc, exported) (§6.2)."""
        shared_secret, enc = self.kem.encap(public_key)
        return enc, self._export(shared_secret, info, exporter_context, length)

    def receive_export_base(
        self, enc: bytes, private_key: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> bytes:
        """ReceiveExportBase(enc, skR, info, exporter_context, L) (§6.2)."""
        shared_secret = self.kem.decap(enc, private_key)
        return self._export(shared_secret, info, exporter_context, length)
