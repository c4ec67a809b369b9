"""KeyPackage (RFC 9420 §10)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.wire.codec import CachedEncoding, Reader, WireStruct, Writer, encode_varint, open_enum
from mls.wire.enums import CipherSuite, ProtocolVersion
from mls.wire.extensions import Extension, read_extensions
from mls.wire.tree import LeafNode

__all__ = ["KeyPackage", "KeyPackageTBS"]


@dataclass(frozen=True, slots=True)
class KeyPackage(CachedEncoding):
    """§10 ``KeyPackage``; ``signature`` is SignWithLabel over ``KeyPackageTBS``.

    ``version`` and ``cipher_suite`` are ``ProtocolVersion`` / ``CipherSuite``
    members when known, plain ints otherwise (validation rejects them later).
    """

    version: int
    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""
    _encoding: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def content_encoding(self) -> bytes:
        """The encoding of the ``KeyPackageTBS`` fields (all but the signature)."""
        encoding = self.encode()
        return encoding[: len(encoding) - len(self.signature) - len(encode_varint(len(self.signature)))]

    def write_content(self, writer: Writer) -> None:
        """Write the ``KeyPackageTBS`` fields (all but the signature)."""
        writer.u16(self.version)
        writer.u16(self.cipher_suite)
        writer.opaque(self.init_key)
        self.leaf_node.write(writer)
        writer.structs(self.extensions)

    def write_fields(self, writer: Writer) -> None:
        self.write_content(writer)
        writer.opaque(self.signature)

    @classmethod
    def read_content(cls, reader: Reader) -> KeyPackage:
        """Read the ``KeyPackageTBS`` fields; the signature is left empty."""
        return cls(*_read_key_package_content(reader))

    @classmethod
    def read_fields(cls, reader: Reader) -> KeyPackage:
        content = _read_key_package_content(reader)
        return cls(*content, reader.opaque("KeyPackage.signature"))


def _read_key_package_content(reader: Reader) -> tuple:  # type: ignore[type-arg]
    """The ``KeyPackageTBS`` fields, in declaration order."""
    version = open_enum(ProtocolVersion, reader.u16("KeyPackage.version"))
    cipher_suite = open_enum(CipherSuite, reader.u16("KeyPackage.cipher_suite"))
    init_key = reader.opaque("KeyPackage.init_key")
    leaf_node = LeafNode.read(reader)
    return version, cipher_suite, init_key, leaf_node, read_extensions(reader, "KeyPackage.extensions")


@dataclass(frozen=True, slots=True)
class KeyPackageTBS(WireStruct):
    """§10 ``KeyPackageTBS``: ``key_package`` without its signature.

    ``key_package.signature`` is ignored when encoding and ``b""`` after decoding.
    """

    key_package: KeyPackage

    def write(self, writer: Writer) -> None:
        writer.raw(self.key_package.content_encoding())

    @classmethod
    def read(cls, reader: Reader) -> KeyPackageTBS:
        return cls(KeyPackage.read_content(reader))
