"""GroupContext (RFC 9420 §8.1)."""

from __future__ import annotations

from dataclasses import dataclass

from mls.errors import DecodeError
from mls.wire.codec import Reader, WireStruct, Writer, open_enum
from mls.wire.enums import CipherSuiteId, ProtocolVersion
from mls.wire.extensions import Extension, read_extensions

__all__ = ["GroupContext", "read_mls10"]


def read_mls10(reader: Reader, what: str) -> ProtocolVersion:
    """Read a ``ProtocolVersion version = mls10`` field: any other value is malformed."""
    version = reader.u16(what)
    if version != ProtocolVersion.MLS10:
        raise DecodeError(f"{what}: unsupported protocol version {version}")
    return ProtocolVersion.MLS10


@dataclass(frozen=True, slots=True)
class GroupContext(WireStruct):
    """§8.1 ``GroupContext`` (``version`` is always mls10)."""

    cipher_suite: int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: tuple[Extension, ...] = ()
    version: ProtocolVersion = ProtocolVersion.MLS10

    def write(self, writer: Writer) -> None:
        writer.u16(self.version)
        writer.u16(self.cipher_suite)
        writer.opaque(self.group_id)
        writer.u64(self.epoch)
        writer.opaque(self.tree_hash)
        writer.opaque(self.confirmed_transcript_hash)
        writer.structs(self.extensions)

    @classmethod
    def read(cls, reader: Reader) -> GroupContext:
        version = read_mls10(reader, "GroupContext.version")
        cipher_suite = open_enum(CipherSuiteId, reader.u16("GroupContext.cipher_suite"))
        group_id = reader.opaque("GroupContext.group_id")
        epoch = reader.u64("GroupContext.epoch")
        tree_hash = reader.opaque("GroupContext.tree_hash")
        confirmed = reader.opaque("GroupContext.confirmed_transcript_hash")
        extensions = read_extensions(reader, "GroupContext.extensions")
        return cls(cipher_suite, group_id, epoch, tree_hash, confirmed, extensions, version)
