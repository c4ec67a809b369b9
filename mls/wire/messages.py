"""MLSMessage (RFC 9420 §6): the envelope of everything sent on the wire."""

from __future__ import annotations

from dataclasses import dataclass

from mls.errors import EncodeError
from mls.wire.codec import Reader, WireStruct, Writer, closed_enum
from mls.wire.enums import ProtocolVersion, WireFormat
from mls.wire.framing import PrivateMessage, PublicMessage
from mls.wire.group_context import read_mls10
from mls.wire.key_package import KeyPackage
from mls.wire.welcome import GroupInfo, Welcome

__all__ = ["MLSBody", "MLSMessage"]

#: What an MLSMessage carries, selected by its wire format.
MLSBody = PublicMessage | PrivateMessage | Welcome | GroupInfo | KeyPackage

_WIRE_FORMATS: dict[type, WireFormat] = {
    PublicMessage: WireFormat.MLS_PUBLIC_MESSAGE,
    PrivateMessage: WireFormat.MLS_PRIVATE_MESSAGE,
    Welcome: WireFormat.MLS_WELCOME,
    GroupInfo: WireFormat.MLS_GROUP_INFO,
    KeyPackage: WireFormat.MLS_KEY_PACKAGE,
}
_BODY_CLASSES = {wire_format: cls for cls, wire_format in _WIRE_FORMATS.items()}


@dataclass(frozen=True, slots=True)
class MLSMessage(WireStruct):
    """§6 ``MLSMessage``: ``version`` (always mls10), ``wire_format`` (from ``body``'s class), ``body``."""

    body: MLSBody
    version: ProtocolVersion = ProtocolVersion.MLS10

    @property
    def wire_format(self) -> WireFormat:
        """The ``WireFormat`` selecting ``body``."""
        wire_format = _WIRE_FORMATS.get(type(self.body))
        if wire_format is None:
            raise EncodeError(f"MLSMessage: invalid body {type(self.body).__name__}")
        return wire_format

    def write(self, writer: Writer) -> None:
        writer.u16(self.version)
        writer.u16(self.wire_format)
        self.body.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> MLSMessage:
        version = read_mls10(reader, "MLSMessage.version")
        raw_format = reader.u16("MLSMessage.wire_format")
        wire_format: WireFormat = closed_enum(WireFormat, raw_format, "MLSMessage.wire_format")
        return cls(_BODY_CLASSES[wire_format].read(reader), version)
