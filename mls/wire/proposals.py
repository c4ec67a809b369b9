"""Proposals, Commit and UpdatePath (RFC 9420 §12.1, §12.4, §7.6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Union

from mls.errors import DecodeError, EncodeError
from mls.wire.codec import CachedEncoding, Reader, WireStruct, Writer, open_enum
from mls.wire.crypto_structs import HPKECiphertext
from mls.wire.enums import CipherSuiteId, ProposalOrRefType, ProposalType, ProtocolVersion
from mls.wire.extensions import Extension, read_extensions
from mls.wire.key_package import KeyPackage
from mls.wire.psk import PreSharedKeyID
from mls.wire.tree import LeafNode

__all__ = [
    "Add",
    "Commit",
    "ExternalInit",
    "GroupContextExtensions",
    "PreSharedKey",
    "Proposal",
    "ProposalBody",
    "ProposalOrRef",
    "ReInit",
    "Remove",
    "UnknownProposal",
    "Update",
    "UpdatePath",
    "UpdatePathNode",
]


@dataclass(frozen=True, slots=True)
class Add(WireStruct):
    """§12.1.1 ``struct { KeyPackage key_package; } Add``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.ADD
    key_package: KeyPackage

    def write(self, writer: Writer) -> None:
        self.key_package.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> Add:
        return cls(KeyPackage.read(reader))


@dataclass(frozen=True, slots=True)
class Update(WireStruct):
    """§12.1.2 ``struct { LeafNode leaf_node; } Update``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.UPDATE
    leaf_node: LeafNode

    def write(self, writer: Writer) -> None:
        self.leaf_node.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> Update:
        return cls(LeafNode.read(reader))


@dataclass(frozen=True, slots=True)
class Remove(WireStruct):
    """§12.1.3 ``struct { uint32 removed; } Remove`` (a leaf index)."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.REMOVE
    removed: int

    def write(self, writer: Writer) -> None:
        writer.u32(self.removed)

    @classmethod
    def read(cls, reader: Reader) -> Remove:
        return cls(reader.u32("Remove.removed"))


@dataclass(frozen=True, slots=True)
class PreSharedKey(WireStruct):
    """§12.1.4 ``struct { PreSharedKeyID psk; } PreSharedKey``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.PSK
    psk: PreSharedKeyID

    def write(self, writer: Writer) -> None:
        self.psk.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> PreSharedKey:
        return cls(PreSharedKeyID.read(reader))


@dataclass(frozen=True, slots=True)
class ReInit(WireStruct):
    """§12.1.5 ``ReInit``; ``version``/``cipher_suite`` stay ints when unknown."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.REINIT
    group_id: bytes
    version: int
    cipher_suite: int
    extensions: tuple[Extension, ...] = ()

    def write(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.u16(self.version)
        writer.u16(self.cipher_suite)
        writer.structs(self.extensions)

    @classmethod
    def read(cls, reader: Reader) -> ReInit:
        group_id = reader.opaque("ReInit.group_id")
        version = open_enum(ProtocolVersion, reader.u16("ReInit.version"))
        cipher_suite = open_enum(CipherSuiteId, reader.u16("ReInit.cipher_suite"))
        return cls(group_id, version, cipher_suite, read_extensions(reader, "ReInit.extensions"))


@dataclass(frozen=True, slots=True)
class ExternalInit(WireStruct):
    """§12.1.6 ``struct { opaque kem_output<V>; } ExternalInit``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.EXTERNAL_INIT
    kem_output: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.kem_output)

    @classmethod
    def read(cls, reader: Reader) -> ExternalInit:
        return cls(reader.opaque("ExternalInit.kem_output"))


@dataclass(frozen=True, slots=True)
class GroupContextExtensions(WireStruct):
    """§12.1.7 ``struct { Extension extensions<V>; } GroupContextExtensions``."""

    PROPOSAL_TYPE: ClassVar[ProposalType] = ProposalType.GROUP_CONTEXT_EXTENSIONS
    extensions: tuple[Extension, ...] = ()

    def write(self, writer: Writer) -> None:
        writer.structs(self.extensions)

    @classmethod
    def read(cls, reader: Reader) -> GroupContextExtensions:
        return cls(read_extensions(reader, "GroupContextExtensions.extensions"))


@dataclass(frozen=True, slots=True)
class UnknownProposal(WireStruct):
    """A proposal of a type this implementation does not define (§13.3).

    RFC 9420 leaves the body to each new type's definition; as deployed
    stacks (OpenMLS, mls-rs) do, the body is taken to be one ``opaque<V>``
    vector, kept in ``data`` and re-encoded unchanged.
    """

    proposal_type: int
    data: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.data)

    @classmethod
    def read(cls, reader: Reader) -> UnknownProposal:
        raise DecodeError("UnknownProposal: read through Proposal, which knows the type")


ProposalBody = Union[Add, Update, Remove, PreSharedKey, ReInit, ExternalInit, GroupContextExtensions, UnknownProposal]

_PROPOSAL_CLASSES: dict[int, type[ProposalBody]] = {
    cls.PROPOSAL_TYPE: cls
    for cls in (Add, Update, Remove, PreSharedKey, ReInit, ExternalInit, GroupContextExtensions)
}


@dataclass(frozen=True, slots=True)
class Proposal(WireStruct):
    """§12.1 ``Proposal``: the type (from ``body``'s class), then the body."""

    body: ProposalBody

    @property
    def proposal_type(self) -> int:
        """The ``ProposalType`` (a plain int for ``UnknownProposal``)."""
        body = self.body
        if isinstance(body, UnknownProposal):
            return body.proposal_type
        return body.PROPOSAL_TYPE

    def write(self, writer: Writer) -> None:
        proposal_type = self.proposal_type
        if isinstance(self.body, UnknownProposal) and proposal_type in _PROPOSAL_CLASSES:
            raise EncodeError(f"Proposal: type {proposal_type} is defined, use its class")
        writer.u16(proposal_type)
        self.body.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> Proposal:
        proposal_type = reader.u16("Proposal.proposal_type")
        body_class = _PROPOSAL_CLASSES.get(proposal_type)
        if body_class is not None:
            return cls(body_class.read(reader))
        return cls(UnknownProposal(open_enum(ProposalType, proposal_type), reader.opaque("Proposal.data")))


@dataclass(frozen=True, slots=True)
class ProposalOrRef(WireStruct):
    """§12.4 ``ProposalOrRef``: a ``Proposal`` by value or a ``ProposalRef`` (bytes)."""

    body: Proposal | bytes

    @property
    def type(self) -> ProposalOrRefType:
        """``proposal`` or ``reference``, from ``body``'s type."""
        return ProposalOrRefType.REFERENCE if isinstance(self.body, bytes) else ProposalOrRefType.PROPOSAL

    def write(self, writer: Writer) -> None:
        body = self.body
        if isinstance(body, bytes):
            writer.u8(ProposalOrRefType.REFERENCE)
            writer.opaque(body)
        elif isinstance(body, Proposal):
            writer.u8(ProposalOrRefType.PROPOSAL)
            body.write(writer)
        else:
            raise EncodeError(f"ProposalOrRef: invalid body {type(body).__name__}")

    @classmethod
    def read(cls, reader: Reader) -> ProposalOrRef:
        kind = reader.u8("ProposalOrRef.type")
        if kind == ProposalOrRefType.PROPOSAL:
            return cls(Proposal.read(reader))
        if kind == ProposalOrRefType.REFERENCE:
            return cls(reader.opaque("ProposalOrRef.reference"))
        raise DecodeError(f"ProposalOrRef.type: invalid value {kind}")


@dataclass(frozen=True, slots=True)
class UpdatePathNode(WireStruct):
    """§7.6 ``UpdatePathNode``: a new parent key and the path secret encrypted to its copath resolution."""

    encryption_key: bytes
    encrypted_path_secret: tuple[HPKECiphertext, ...]

    def write(self, writer: Writer) -> None:
        writer.opaque(self.encryption_key)
        writer.structs(self.encrypted_path_secret)

    @classmethod
    def read(cls, reader: Reader) -> UpdatePathNode:
        encryption_key = reader.opaque("UpdatePathNode.encryption_key")
        return cls(encryption_key, reader.vector(HPKECiphertext.read, "UpdatePathNode.encrypted_path_secret"))


@dataclass(frozen=True, slots=True)
class UpdatePath(CachedEncoding):
    """§7.6 ``UpdatePath``: the committer's new leaf and one node per filtered direct-path entry."""

    leaf_node: LeafNode
    nodes: tuple[UpdatePathNode, ...]
    _encoding: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def write_fields(self, writer: Writer) -> None:
        self.leaf_node.write(writer)
        writer.structs(self.nodes)

    @classmethod
    def read_fields(cls, reader: Reader) -> UpdatePath:
        leaf_node = LeafNode.read(reader)
        return cls(leaf_node, reader.vector(UpdatePathNode.read, "UpdatePath.nodes"))


@dataclass(frozen=True, slots=True)
class Commit(WireStruct):
    """§12.4 ``struct { ProposalOrRef proposals<V>; optional<UpdatePath> path; } Commit``."""

    proposals: tuple[ProposalOrRef, ...] = ()
    path: UpdatePath | None = None

    def write(self, writer: Writer) -> None:
        writer.structs(self.proposals)
        writer.optional_struct(self.path)

    @classmethod
    def read(cls, reader: Reader) -> Commit:
        proposals = reader.vector(ProposalOrRef.read, "Commit.proposals")
        return cls(proposals, reader.optional(UpdatePath.read, "Commit.path"))
