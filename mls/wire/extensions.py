"""Extensions (RFC 9420 §13.4) and the typed contents of the defined ones.

Every ``Extension`` keeps its ``extension_data`` as the raw bytes received,
so unknown (and GREASE, §13.5) extensions re-encode exactly and decoding a
message never recurses into extension contents. The typed views below
(``ApplicationId``, ``RequiredCapabilities``, ``ExternalPub``,
``ExternalSenders``; ``RatchetTreeExtension`` lives in ``mls.wire.tree``) parse
``extension_data`` on demand with ``from_extension`` and build an
``Extension`` with ``to_extension``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from mls.errors import DecodeError
from mls.wire.codec import Reader, WireStruct, Writer, open_enum
from mls.wire.credentials import Credential
from mls.wire.enums import ExtensionType

E = TypeVar("E", bound="ExtensionContent")

__all__ = [
    "ApplicationId",
    "Extension",
    "ExternalPub",
    "ExternalSender",
    "ExternalSenders",
    "RequiredCapabilities",
    "ExtensionContent",
    "find_extension",
    "read_extensions",
]


@dataclass(frozen=True, slots=True)
class Extension(WireStruct):
    """§7.2: ``struct { ExtensionType extension_type; opaque extension_data<V>; }``."""

    extension_type: int
    extension_data: bytes

    def write(self, writer: Writer) -> None:
        writer.u16(self.extension_type)
        writer.opaque(self.extension_data)

    @classmethod
    def read(cls, reader: Reader) -> Extension:
        extension_type = open_enum(ExtensionType, reader.u16("Extension.extension_type"))
        return cls(extension_type, reader.opaque("Extension.extension_data"))


def read_extensions(reader: Reader, what: str) -> tuple[Extension, ...]:
    """Read ``Extension what<V>``."""
    return reader.vector(Extension.read, what)


def find_extension(extensions: Iterable[Extension], extension_type: int) -> Extension | None:
    """The first extension of ``extension_type`` in ``extensions``, if any."""
    for extension in extensions:
        if extension.extension_type == extension_type:
            return extension
    return None


class ExtensionContent(WireStruct):
    """Base of the typed extension contents: ``EXTENSION_TYPE`` plus conversions."""

    __slots__ = ()
    EXTENSION_TYPE: ClassVar[ExtensionType]

    def to_extension(self) -> Extension:
        """This value as an ``Extension`` of type ``EXTENSION_TYPE``."""
        return Extension(self.EXTENSION_TYPE, self.encode())

    @classmethod
    def from_extension(cls: type[E], extension: Extension) -> E:
        """Parse ``extension.extension_data``; the type must be ``EXTENSION_TYPE``."""
        if extension.extension_type != cls.EXTENSION_TYPE:
            raise DecodeError(
                f"{cls.__name__}: extension type {extension.extension_type} is not {int(cls.EXTENSION_TYPE)}"
            )
        return cls.decode(extension.extension_data)


@dataclass(frozen=True, slots=True)
class ApplicationId(ExtensionContent):
    """§5.3.3 ``application_id`` extension: ``opaque application_id<V>``."""

    EXTENSION_TYPE: ClassVar[ExtensionType] = ExtensionType.APPLICATION_ID
    application_id: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.application_id)

    @classmethod
    def read(cls, reader: Reader) -> ApplicationId:
        return cls(reader.opaque("ApplicationId.application_id"))


@dataclass(frozen=True, slots=True)
class RequiredCapabilities(ExtensionContent):
    """§11.1 ``required_capabilities`` extension."""

    EXTENSION_TYPE: ClassVar[ExtensionType] = ExtensionType.REQUIRED_CAPABILITIES
    extension_types: tuple[int, ...] = ()
    proposal_types: tuple[int, ...] = ()
    credential_types: tuple[int, ...] = ()

    def write(self, writer: Writer) -> None:
        writer.u16_vector(self.extension_types)
        writer.u16_vector(self.proposal_types)
        writer.u16_vector(self.credential_types)

    @classmethod
    def read(cls, reader: Reader) -> RequiredCapabilities:
        return cls(
            reader.u16_vector("RequiredCapabilities.extension_types"),
            reader.u16_vector("RequiredCapabilities.proposal_types"),
            reader.u16_vector("RequiredCapabilities.credential_types"),
        )


@dataclass(frozen=True, slots=True)
class ExternalPub(ExtensionContent):
    """§12.4.3.2 ``external_pub`` extension: ``struct { HPKEPublicKey external_pub; }``."""

    EXTENSION_TYPE: ClassVar[ExtensionType] = ExtensionType.EXTERNAL_PUB
    external_pub: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.external_pub)

    @classmethod
    def read(cls, reader: Reader) -> ExternalPub:
        return cls(reader.opaque("ExternalPub.external_pub"))


@dataclass(frozen=True, slots=True)
class ExternalSender(WireStruct):
    """§12.1.8.1: ``struct { SignaturePublicKey signature_key; Credential credential; }``."""

    signature_key: bytes
    credential: Credential

    def write(self, writer: Writer) -> None:
        writer.opaque(self.signature_key)
        self.credential.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> ExternalSender:
        return cls(reader.opaque("ExternalSender.signature_key"), Credential.read(reader))


@dataclass(frozen=True, slots=True)
class ExternalSenders(ExtensionContent):
    """§12.1.8.1 ``external_senders`` extension: ``ExternalSender external_senders<V>``."""

    EXTENSION_TYPE: ClassVar[ExtensionType] = ExtensionType.EXTERNAL_SENDERS
    external_senders: tuple[ExternalSender, ...] = ()

    def write(self, writer: Writer) -> None:
        writer.structs(self.external_senders)

    @classmethod
    def read(cls, reader: Reader) -> ExternalSenders:
        return cls(reader.vector(ExternalSender.read, "ExternalSenders.external_senders"))
