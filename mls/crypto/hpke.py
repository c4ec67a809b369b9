"""HPKE base mode, single shot (RFC 9180 §5.1, §6.1): SealBase / OpenBase.

MLS only uses mode_base with an empty PSK and one operation per context: one message
(EncryptWithLabel, RFC 9420 §5.1.3), so the nonce is ``base_nonce`` itself, or one export
(external init, RFC 9420 §8.3), so the secret-export API of §6.2.
"""

from __future__ import annotations

from mls.crypto.aead import Aead
from mls.crypto.hpke_labels import labeled_expand, labeled_extract
from mls.crypto.kdf import Kdf
from mls.crypto.kem import DHKem

_MODE_BASE = b"\x00"


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

    def _key_schedule(self, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
        """KeySchedule for mode_base -> (secret, key_schedule_context) (§5.1)."""
        info_hash = labeled_extract(self.kdf, self.suite_id, b"", b"info_hash", info)
        context = _MODE_BASE + self._psk_id_hash + info_hash
        return labeled_extract(self.kdf, self.suite_id, shared_secret, b"secret", b""), context

    def _key_and_nonce(self, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
        secret, context = self._key_schedule(shared_secret, info)
        key = labeled_expand(self.kdf, self.suite_id, secret, b"key", context, self.aead.Nk)
        nonce = labeled_expand(self.kdf, self.suite_id, secret, b"base_nonce", context, self.aead.Nn)
        return key, nonce

    def _export(self, shared_secret: bytes, info: bytes, exporter_context: bytes, length: int) -> bytes:
        """Context.Export(exporter_context, L) (§5.3)."""
        secret, context = self._key_schedule(shared_secret, info)
        exporter_secret = labeled_expand(self.kdf, self.suite_id, secret, b"exp", context, self.kdf.Nh)
        return labeled_expand(self.kdf, self.suite_id, exporter_secret, b"sec", exporter_context, length)

    def seal_base(self, public_key: bytes, info: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """SealBase(pkR, info, aad, pt) -> (enc, ct) (§6.1)."""
        shared_secret, enc = self.kem.encap(public_key)
        key, nonce = self._key_and_nonce(shared_secret, info)
        return enc, self.aead.seal(key, nonce, aad, plaintext)

    def open_base(self, enc: bytes, private_key: bytes, info: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """OpenBase(enc, skR, info, aad, ct) -> pt; ``CryptoError`` on failure (§6.1)."""
        shared_secret = self.kem.decap(enc, private_key)
        key, nonce = self._key_and_nonce(shared_secret, info)
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
