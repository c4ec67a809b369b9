"""Ratchet tree nodes (RFC 9420 §7): LeafNode, ParentNode, Node, the tree itself
(§12.4.3.3 ``ratchet_tree`` extension) and the tree/parent hash inputs (§7.8, §7.9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mls.errors import DecodeError, EncodeError
from mls.wire.codec import Reader, SignedEncoding, WireStruct, Writer
from mls.wire.credentials import Credential
from mls.wire.enums import ExtensionType, LeafNodeSource, NodeType
from mls.wire.extensions import Extension, ExtensionContent, read_extensions

__all__ = [
    "Capabilities",
    "LeafNode",
    "LeafNodeHashInput",
    "LeafNodeTBS",
    "Lifetime",
    "Node",
    "ParentHashInput",
    "ParentNode",
    "ParentNodeHashInput",
    "RatchetTreeExtension",
    "TreeHashInput",
]


@dataclass(frozen=True, slots=True)
class Capabilities(WireStruct):
    """§7.2 ``Capabilities``: the code points a client supports (plain ``uint16`` values)."""

    versions: tuple[int, ...] = ()
    cipher_suites: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()
    proposals: tuple[int, ...] = ()
    credentials: tuple[int, ...] = ()

    def write(self, writer: Writer) -> None:
        writer.u16_vector(self.versions)
        writer.u16_vector(self.cipher_suites)
        writer.u16_vector(self.extensions)
        writer.u16_vector(self.proposals)
        writer.u16_vector(self.credentials)

    @classmethod
    def read(cls, reader: Reader) -> Capabilities:
        return cls(
            reader.u16_vector("Capabilities.versions"),
            reader.u16_vector("Capabilities.cipher_suites"),
            reader.u16_vector("Capabilities.extensions"),
            reader.u16_vector("Capabilities.proposals"),
            reader.u16_vector("Capabilities.credentials"),
        )


@dataclass(frozen=True, slots=True)
class Lifetime(WireStruct):
    """§7.2 ``Lifetime``: seconds since the Unix epoch, both bounds inclusive."""

    not_before: int
    not_after: int

    def write(self, writer: Writer) -> None:
        writer.u64(self.not_before)
        writer.u64(self.not_after)

    @classmethod
    def read(cls, reader: Reader) -> Lifetime:
        return cls(reader.u64("Lifetime.not_before"), reader.u64("Lifetime.not_after"))


@dataclass(frozen=True, slots=True)
class LeafNode(SignedEncoding):
    """§7.2 ``LeafNode``.

    ``lifetime`` is set exactly when ``leaf_node_source`` is ``key_package``
    and ``parent_hash`` exactly when it is ``commit``. The signature covers
    ``LeafNodeTBS`` (see ``LeafNodeTBS``); build an unsigned node with
    ``signature=b""`` and ``dataclasses.replace`` the signature in.
    """

    encryption_key: bytes
    signature_key: bytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: LeafNodeSource
    lifetime: Lifetime | None = None
    parent_hash: bytes | None = None
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""
    _encoding: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def write_content(self, writer: Writer) -> None:
        """Write every field up to and including ``extensions`` (the TBS prefix)."""
        writer.opaque(self.encryption_key)
        writer.opaque(self.signature_key)
        self.credential.write(writer)
        self.capabilities.write(writer)
        source = self.leaf_node_source
        writer.u8(source)
        if source == LeafNodeSource.KEY_PACKAGE:
            if self.lifetime is None or self.parent_hash is not None:
                raise EncodeError("LeafNode: key_package source needs a lifetime and no parent_hash")
            self.lifetime.write(writer)
        elif source == LeafNodeSource.COMMIT:
            if self.parent_hash is None or self.lifetime is not None:
                raise EncodeError("LeafNode: commit source needs a parent_hash and no lifetime")
            writer.opaque(self.parent_hash)
        elif source == LeafNodeSource.UPDATE:
            if self.lifetime is not None or self.parent_hash is not None:
                raise EncodeError("LeafNode: update source carries neither lifetime nor parent_hash")
        else:
            raise EncodeError(f"LeafNode: invalid leaf_node_source {source}")
        writer.structs(self.extensions)

    @classmethod
    def read_content_fields(cls, reader: Reader) -> tuple[Any, ...]:
        """The fields of the TBS prefix, in declaration order."""
        encryption_key = reader.opaque("LeafNode.encryption_key")
        signature_key = reader.opaque("LeafNode.signature_key")
        credential = Credential.read(reader)
        capabilities = Capabilities.read(reader)
        raw_source = reader.u8("LeafNode.leaf_node_source")
        lifetime = None
        parent_hash = None
        if raw_source == LeafNodeSource.KEY_PACKAGE:
            lifetime = Lifetime.read(reader)
        elif raw_source == LeafNodeSource.COMMIT:
            parent_hash = reader.opaque("LeafNode.parent_hash")
        elif raw_source != LeafNodeSource.UPDATE:
            raise DecodeError(f"LeafNode.leaf_node_source: invalid value {raw_source}")
        extensions = read_extensions(reader, "LeafNode.extensions")
        return (
            encryption_key,
            signature_key,
            credential,
            capabilities,
            LeafNodeSource(raw_source),
            lifetime,
            parent_hash,
            extensions,
        )


@dataclass(frozen=True, slots=True)
class LeafNodeTBS(WireStruct):
    """§7.2 ``LeafNodeTBS``: ``leaf_node`` without its signature, plus context.

    For ``update`` and ``commit`` sources the TBS binds the leaf to
    ``group_id`` and ``leaf_index``; for ``key_package`` both must be None.
    ``leaf_node.signature`` is ignored when encoding and is ``b""`` after decoding.
    """

    leaf_node: LeafNode
    group_id: bytes | None = None
    leaf_index: int | None = None

    def write(self, writer: Writer) -> None:
        writer.raw(self.leaf_node.content_encoding())
        if self.leaf_node.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
            if self.group_id is not None or self.leaf_index is not None:
                raise EncodeError("LeafNodeTBS: key_package leaves carry no group_id/leaf_index")
            return
        if self.group_id is None or self.leaf_index is None:
            raise EncodeError("LeafNodeTBS: update/commit leaves need group_id and leaf_index")
        writer.opaque(self.group_id)
        writer.u32(self.leaf_index)

    @classmethod
    def read(cls, reader: Reader) -> LeafNodeTBS:
        leaf_node = LeafNode.read_content(reader)
        if leaf_node.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
            return cls(leaf_node)
        group_id = reader.opaque("LeafNodeTBS.group_id")
        return cls(leaf_node, group_id, reader.u32("LeafNodeTBS.leaf_index"))


@dataclass(frozen=True, slots=True)
class ParentNode(WireStruct):
    """§7.1 ``ParentNode``."""

    encryption_key: bytes
    parent_hash: bytes
    unmerged_leaves: tuple[int, ...] = ()

    def write(self, writer: Writer) -> None:
        writer.opaque(self.encryption_key)
        writer.opaque(self.parent_hash)
        writer.u32_vector(self.unmerged_leaves)

    @classmethod
    def read(cls, reader: Reader) -> ParentNode:
        return cls(
            reader.opaque("ParentNode.encryption_key"),
            reader.opaque("ParentNode.parent_hash"),
            reader.u32_vector("ParentNode.unmerged_leaves"),
        )


def _node_type(body: LeafNode | ParentNode) -> NodeType:
    if isinstance(body, LeafNode):
        return NodeType.LEAF
    if isinstance(body, ParentNode):
        return NodeType.PARENT
    raise EncodeError(f"Node: body must be LeafNode or ParentNode, not {type(body).__name__}")


def _write_node(writer: Writer, body: LeafNode | ParentNode) -> None:
    writer.u8(_node_type(body))
    body.write(writer)


def _read_node_body(reader: Reader) -> LeafNode | ParentNode:
    node_type = reader.u8("Node.node_type")
    if node_type == NodeType.LEAF:
        return LeafNode.read(reader)
    if node_type == NodeType.PARENT:
        return ParentNode.read(reader)
    raise DecodeError(f"Node.node_type: invalid value {node_type}")


def _read_optional_node(reader: Reader) -> LeafNode | ParentNode | None:
    return _read_node_body(reader) if reader.present("optional<Node>") else None


def _write_optional_node(writer: Writer, body: LeafNode | ParentNode | None) -> None:
    writer.optional(body, _write_node)


@dataclass(frozen=True, slots=True)
class Node(WireStruct):
    """§12.4.3.3 ``Node``: ``body`` is a ``LeafNode`` or a ``ParentNode``."""

    body: LeafNode | ParentNode

    @property
    def node_type(self) -> NodeType:
        """``leaf`` or ``parent``, from the body's class."""
        return _node_type(self.body)

    def write(self, writer: Writer) -> None:
        _write_node(writer, self.body)

    @classmethod
    def read(cls, reader: Reader) -> Node:
        return cls(_read_node_body(reader))


@dataclass(frozen=True, slots=True)
class RatchetTreeExtension(ExtensionContent):
    """§12.4.3.3 ``optional<Node> ratchet_tree<V>`` (also the ``ratchet_tree`` extension).

    ``nodes`` is the array representation (Appendix C): even indices hold
    ``LeafNode`` or None, odd indices ``ParentNode`` or None. Only the
    syntax is checked here; tree shape is validated by the tree layer.
    """

    EXTENSION_TYPE: ClassVar[ExtensionType] = ExtensionType.RATCHET_TREE
    nodes: tuple[LeafNode | ParentNode | None, ...]

    def write(self, writer: Writer) -> None:
        writer.vector(self.nodes, _write_optional_node)

    @classmethod
    def read(cls, reader: Reader) -> RatchetTreeExtension:
        return cls(reader.vector(_read_optional_node, "ratchet_tree"))


@dataclass(frozen=True, slots=True)
class LeafNodeHashInput(WireStruct):
    """§7.8 ``LeafNodeHashInput``."""

    leaf_index: int
    leaf_node: LeafNode | None

    def write(self, writer: Writer) -> None:
        writer.u32(self.leaf_index)
        writer.optional_struct(self.leaf_node)

    @classmethod
    def read(cls, reader: Reader) -> LeafNodeHashInput:
        leaf_index = reader.u32("LeafNodeHashInput.leaf_index")
        return cls(leaf_index, reader.optional(LeafNode.read, "LeafNodeHashInput.leaf_node"))


@dataclass(frozen=True, slots=True)
class ParentNodeHashInput(WireStruct):
    """§7.8 ``ParentNodeHashInput``."""

    parent_node: ParentNode | None
    left_hash: bytes
    right_hash: bytes

    def write(self, writer: Writer) -> None:
        writer.optional_struct(self.parent_node)
        writer.opaque(self.left_hash)
        writer.opaque(self.right_hash)

    @classmethod
    def read(cls, reader: Reader) -> ParentNodeHashInput:
        parent_node = reader.optional(ParentNode.read, "ParentNodeHashInput.parent_node")
        left_hash = reader.opaque("ParentNodeHashInput.left_hash")
        return cls(parent_node, left_hash, reader.opaque("ParentNodeHashInput.right_hash"))


@dataclass(frozen=True, slots=True)
class TreeHashInput(WireStruct):
    """§7.8 ``TreeHashInput``: the node type, then the leaf or parent hash input."""

    body: LeafNodeHashInput | ParentNodeHashInput

    def write(self, writer: Writer) -> None:
        if isinstance(self.body, LeafNodeHashInput):
            writer.u8(NodeType.LEAF)
        elif isinstance(self.body, ParentNodeHashInput):
            writer.u8(NodeType.PARENT)
        else:
            raise EncodeError(f"TreeHashInput: invalid body {type(self.body).__name__}")
        self.body.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> TreeHashInput:
        node_type = reader.u8("TreeHashInput.node_type")
        if node_type == NodeType.LEAF:
            return cls(LeafNodeHashInput.read(reader))
        if node_type == NodeType.PARENT:
            return cls(ParentNodeHashInput.read(reader))
        raise DecodeError(f"TreeHashInput.node_type: invalid value {node_type}")


@dataclass(frozen=True, slots=True)
class ParentHashInput(WireStruct):
    """§7.9 ``ParentHashInput``."""

    encryption_key: bytes
    parent_hash: bytes
    original_sibling_tree_hash: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.encryption_key)
        writer.opaque(self.parent_hash)
        writer.opaque(self.original_sibling_tree_hash)

    @classmethod
    def read(cls, reader: Reader) -> ParentHashInput:
        return cls(
            reader.opaque("ParentHashInput.encryption_key"),
            reader.opaque("ParentHashInput.parent_hash"),
            reader.opaque("ParentHashInput.original_sibling_tree_hash"),
        )
