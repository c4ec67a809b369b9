"""Credentials (RFC 9420 §5.3)."""

from __future__ import annotations

from dataclasses import dataclass

from mls.wire.codec import Reader, WireStruct, Writer, open_enum
from mls.wire.enums import CredentialType

__all__ = ["Credential"]


@dataclass(frozen=True, slots=True)
class Credential(WireStruct):
    """§5.3 ``Credential``.

    * ``basic``: ``opaque identity<V>`` (``identity``).
    * ``x509``: ``Certificate certificates<V>`` where ``Certificate`` is
      ``struct { opaque cert_data<V>; }`` (``certificates`` holds each
      ``cert_data``, leaf certificate first).
    * Any other type: RFC 9420 leaves the body to the type's definition; both
      defined types are one ``<V>`` vector, and deployed stacks (OpenMLS,
      mls-rs) frame custom credentials the same way, so the body is kept
      as ``data`` (the vector's content) and re-encoded unchanged.
    """

    credential_type: int
    identity: bytes = b""
    certificates: tuple[bytes, ...] = ()
    data: bytes = b""

    @classmethod
    def basic(cls, identity: bytes) -> Credential:
        """A ``basic`` credential carrying ``identity``."""
        return cls(CredentialType.BASIC, identity=identity)

    @classmethod
    def x509(cls, certificates: tuple[bytes, ...]) -> Credential:
        """An ``x509`` credential: DER certificates, end-entity first."""
        return cls(CredentialType.X509, certificates=tuple(certificates))

    def write(self, writer: Writer) -> None:
        writer.u16(self.credential_type)
        if self.credential_type == CredentialType.BASIC:
            writer.opaque(self.identity)
        elif self.credential_type == CredentialType.X509:
            writer.vector(self.certificates, Writer.opaque)
        else:
            writer.opaque(self.data)

    @classmethod
    def read(cls, reader: Reader) -> Credential:
        credential_type = open_enum(CredentialType, reader.u16("Credential.credential_type"))
        if credential_type == CredentialType.BASIC:
            return cls(credential_type, identity=reader.opaque("Credential.identity"))
        if credential_type == CredentialType.X509:
            certificates = reader.vector(_read_certificate, "Credential.certificates")
            return cls(credential_type, certificates=certificates)
        return cls(credential_type, data=reader.opaque("Credential.data"))


def _read_certificate(reader: Reader) -> bytes:
    return reader.opaque("Certificate.cert_data")
