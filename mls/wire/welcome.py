"""GroupInfo and Welcome (RFC 9420 §12.4.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.wire.codec import Reader, WireStruct, Writer, open_enum
from mls.wire.crypto_structs import HPKECiphertext
from mls.wire.enums import CipherSuiteId
from mls.wire.extensions import Extension, read_extensions
from mls.wire.group_context import GroupContext
from mls.wire.psk import PreSharedKeyID

__all__ = [
    "EncryptedGroupSecrets",
    "GroupInfo",
    "GroupInfoTBS",
    "GroupSecrets",
    "PathSecret",
    "Welcome",
]


@dataclass(frozen=True, slots=True)
class GroupInfo(WireStruct):
    """§12.4.3 ``GroupInfo``; ``signature`` is SignWithLabel over ``GroupInfoTBS``."""

    group_context: GroupContext
    extensions: tuple[Extension, ...]
    confirmation_tag: bytes
    signer: int
    signature: bytes = b""

    def write_content(self, writer: Writer) -> None:
        """Write the ``GroupInfoTBS`` fields (all but the signature)."""
        self.group_context.write(writer)
        writer.structs(self.extensions)
        writer.opaque(self.confirmation_tag)
        writer.u32(self.signer)

    def write(self, writer: Writer) -> None:
        self.write_content(writer)
        writer.opaque(self.signature)

    @classmethod
    def read_content(cls, reader: Reader) -> GroupInfo:
        """Read the ``GroupInfoTBS`` fields; the signature is left empty."""
        group_context = GroupContext.read(reader)
        extensions = read_extensions(reader, "GroupInfo.extensions")
        confirmation_tag = reader.opaque("GroupInfo.confirmation_tag")
        return cls(group_context, extensions, confirmation_tag, reader.u32("GroupInfo.signer"))

    @classmethod
    def read(cls, reader: Reader) -> GroupInfo:
        content = cls.read_content(reader)
        signature = reader.opaque("GroupInfo.signature")
        return cls(content.group_context, content.extensions, content.confirmation_tag, content.signer, signature)


@dataclass(frozen=True, slots=True)
class GroupInfoTBS(WireStruct):
    """§12.4.3 ``GroupInfoTBS``: ``group_info`` without its signature.

    ``group_info.signature`` is ignored when encoding and ``b""`` after decoding.
    """

    group_info: GroupInfo

    def write(self, writer: Writer) -> None:
        self.group_info.write_content(writer)

    @classmethod
    def read(cls, reader: Reader) -> GroupInfoTBS:
        return cls(GroupInfo.read_content(reader))


@dataclass(frozen=True, slots=True)
class PathSecret(WireStruct):
    """§12.4.3.1 ``struct { opaque path_secret<V>; } PathSecret``."""

    path_secret: bytes = field(repr=False)

    def write(self, writer: Writer) -> None:
        writer.opaque(self.path_secret)

    @classmethod
    def read(cls, reader: Reader) -> PathSecret:
        return cls(reader.opaque("PathSecret.path_secret"))


@dataclass(frozen=True, slots=True)
class GroupSecrets(WireStruct):
    """§12.4.3.1 ``GroupSecrets``: HPKE plaintext of ``EncryptedGroupSecrets``."""

    joiner_secret: bytes = field(repr=False)
    path_secret: PathSecret | None = None
    psks: tuple[PreSharedKeyID, ...] = ()

    def write(self, writer: Writer) -> None:
        writer.opaque(self.joiner_secret)
        writer.optional_struct(self.path_secret)
        writer.structs(self.psks)

    @classmethod
    def read(cls, reader: Reader) -> GroupSecrets:
        joiner_secret = reader.opaque("GroupSecrets.joiner_secret")
        path_secret = reader.optional(PathSecret.read, "GroupSecrets.path_secret")
        return cls(joiner_secret, path_secret, reader.vector(PreSharedKeyID.read, "GroupSecrets.psks"))


@dataclass(frozen=True, slots=True)
class EncryptedGroupSecrets(WireStruct):
    """§12.4.3.1 ``EncryptedGroupSecrets``: ``new_member`` is a KeyPackageRef."""

    new_member: bytes
    encrypted_group_secrets: HPKECiphertext

    def write(self, writer: Writer) -> None:
        writer.opaque(self.new_member)
        self.encrypted_group_secrets.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> EncryptedGroupSecrets:
        new_member = reader.opaque("EncryptedGroupSecrets.new_member")
        return cls(new_member, HPKECiphertext.read(reader))


@dataclass(frozen=True, slots=True)
class Welcome(WireStruct):
    """§12.4.3.1 ``Welcome``."""

    cipher_suite: int
    secrets: tuple[EncryptedGroupSecrets, ...]
    encrypted_group_info: bytes

    def write(self, writer: Writer) -> None:
        writer.u16(self.cipher_suite)
        writer.structs(self.secrets)
        writer.opaque(self.encrypted_group_info)

    @classmethod
    def read(cls, reader: Reader) -> Welcome:
        cipher_suite = open_enum(CipherSuiteId, reader.u16("Welcome.cipher_suite"))
        secrets = reader.vector(EncryptedGroupSecrets.read, "Welcome.secrets")
        return cls(cipher_suite, secrets, reader.opaque("Welcome.encrypted_group_info"))
