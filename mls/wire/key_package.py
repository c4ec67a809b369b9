"""KeyPackage (RFC 9420 §10)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.wire.codec import Reader, SignedEncoding, WireStruct, Writer, open_enum
from mls.wire.enums import CipherSuiteId, ProtocolVersion
from mls.wire.extensions import Extension, read_extensions
from mls.wire.tree import LeafNode

__all__ = ["KeyPackage", "KeyPackageTBS"]


@dataclass(frozen=True, slots=True)
class KeyPackage(SignedEncoding):
    """§10 ``KeyPackage``; ``signature`` is SignWithLabel over ``KeyPackageTBS``.

    ``version`` and ``cipher_suite`` are ``ProtocolVersion`` / ``CipherSuiteId``
    members when known, plain ints otherwise (validation rejects them later).
    """

    version: int
    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""
    _encoding: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def write_content(self, writer: Writer) -> None:
        """Write the ``KeyPackageTBS`` fields (all but the signature)."""
        writer.u16(self.version)
        writer.u16(self.cipher_suite)
        writer.opaque(self.init_key)
        self.leaf_node.write(writer)
        writer.structs(self.extensions)

    @classmethod
    def read_content_fields(cls, reader: Reader) -> tuple[int, int, bytes, LeafNode, tuple[Extension, ...]]:
        """The ``KeyPackageTBS`` fields, in declaration order."""
        version = open_enum(ProtocolVersion, reader.u16("KeyPackage.version"))
        cipher_suite = open_enum(CipherSuiteId, reader.u16("KeyPackage.cipher_suite"))
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
