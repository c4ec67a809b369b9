"""Structs fed to cryptographic primitives (RFC 9420 §5.1-§5.2, §7.6, §8).

These are never sent on the wire on their own; they are the exact byte
strings signed, hashed, used as HPKE info or as KDF labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from mls.wire.codec import Reader, WireStruct, Writer

__all__ = [
    "LABEL_PREFIX",
    "EncryptContext",
    "HPKECiphertext",
    "KDFLabel",
    "RefHashInput",
    "SignContent",
]

#: Prefix of every signature, encryption and KDF label (§5.1.2, §5.1.3, §8).
LABEL_PREFIX = b"MLS 1.0 "


def _label(label: bytes | str) -> bytes:
    raw = label.encode() if isinstance(label, str) else label
    return LABEL_PREFIX + raw


@dataclass(frozen=True, slots=True)
class HPKECiphertext(WireStruct):
    """§7.6: ``struct { opaque kem_output<V>; opaque ciphertext<V>; }``."""

    kem_output: bytes
    ciphertext: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.kem_output)
        writer.opaque(self.ciphertext)

    @classmethod
    def read(cls, reader: Reader) -> HPKECiphertext:
        return cls(reader.opaque("HPKECiphertext.kem_output"), reader.opaque("HPKECiphertext.ciphertext"))


@dataclass(frozen=True, slots=True)
class SignContent(WireStruct):
    """§5.1.2: the input of ``SignWithLabel``; ``label`` includes ``"MLS 1.0 "``."""

    label: bytes
    content: bytes

    @classmethod
    def make(cls, label: bytes | str, content: bytes) -> SignContent:
        """``SignContent`` for ``Label`` (the ``"MLS 1.0 "`` prefix is added)."""
        return cls(_label(label), content)

    def write(self, writer: Writer) -> None:
        writer.opaque(self.label)
        writer.opaque(self.content)

    @classmethod
    def read(cls, reader: Reader) -> SignContent:
        return cls(reader.opaque("SignContent.label"), reader.opaque("SignContent.content"))


@dataclass(frozen=True, slots=True)
class EncryptContext(WireStruct):
    """§5.1.3: HPKE ``info`` of ``EncryptWithLabel``; ``label`` includes ``"MLS 1.0 "``."""

    label: bytes
    context: bytes

    @classmethod
    def make(cls, label: bytes | str, context: bytes) -> EncryptContext:
        """``EncryptContext`` for ``Label`` (the ``"MLS 1.0 "`` prefix is added)."""
        return cls(_label(label), context)

    def write(self, writer: Writer) -> None:
        writer.opaque(self.label)
        writer.opaque(self.context)

    @classmethod
    def read(cls, reader: Reader) -> EncryptContext:
        return cls(reader.opaque("EncryptContext.label"), reader.opaque("EncryptContext.context"))


@dataclass(frozen=True, slots=True)
class RefHashInput(WireStruct):
    """§5.2: ``RefHash(label, value) = Hash(RefHashInput)``; ``label`` is used as is."""

    label: bytes
    value: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.label)
        writer.opaque(self.value)

    @classmethod
    def read(cls, reader: Reader) -> RefHashInput:
        return cls(reader.opaque("RefHashInput.label"), reader.opaque("RefHashInput.value"))


@dataclass(frozen=True, slots=True)
class KDFLabel(WireStruct):
    """§8: ``ExpandWithLabel``'s info; ``label`` includes ``"MLS 1.0 "``."""

    length: int
    label: bytes
    context: bytes

    @classmethod
    def make(cls, label: bytes | str, context: bytes, length: int) -> KDFLabel:
        """``KDFLabel`` for ``Label`` (the ``"MLS 1.0 "`` prefix is added)."""
        return cls(length, _label(label), context)

    def write(self, writer: Writer) -> None:
        writer.u16(self.length)
        writer.opaque(self.label)
        writer.opaque(self.context)

    @classmethod
    def read(cls, reader: Reader) -> KDFLabel:
        return cls(reader.u16("KDFLabel.length"), reader.opaque("KDFLabel.label"), reader.opaque("KDFLabel.context"))
