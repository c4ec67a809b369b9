"""Pre-shared key identifiers (RFC 9420 §8.4)."""

from __future__ import annotations

from dataclasses import dataclass

from mls.errors import DecodeError, EncodeError
from mls.wire.codec import Reader, WireStruct, Writer, open_enum
from mls.wire.enums import PSKType, ResumptionPSKUsage

__all__ = ["PSKLabel", "PreSharedKeyID"]


@dataclass(frozen=True, slots=True)
class PreSharedKeyID(WireStruct):
    """§8.4 ``PreSharedKeyID``.

    ``external``: ``psk_id`` is set. ``resumption``: ``usage``,
    ``psk_group_id`` and ``psk_epoch`` are set. ``psk_nonce`` always.
    """

    psktype: PSKType
    psk_nonce: bytes
    psk_id: bytes | None = None
    usage: int | None = None
    psk_group_id: bytes | None = None
    psk_epoch: int | None = None

    @classmethod
    def external(cls, psk_id: bytes, psk_nonce: bytes) -> PreSharedKeyID:
        """An external PSK identifier."""
        return cls(PSKType.EXTERNAL, psk_nonce, psk_id=psk_id)

    @classmethod
    def resumption(cls, usage: int, psk_group_id: bytes, psk_epoch: int, psk_nonce: bytes) -> PreSharedKeyID:
        """A resumption PSK identifier (§8.6)."""
        return cls(PSKType.RESUMPTION, psk_nonce, usage=usage, psk_group_id=psk_group_id, psk_epoch=psk_epoch)

    def write(self, writer: Writer) -> None:
        writer.u8(self.psktype)
        if self.psktype == PSKType.EXTERNAL:
            if self.psk_id is None:
                raise EncodeError("PreSharedKeyID: external PSK needs psk_id")
            writer.opaque(self.psk_id)
        elif self.psktype == PSKType.RESUMPTION:
            if self.usage is None or self.psk_group_id is None or self.psk_epoch is None:
                raise EncodeError("PreSharedKeyID: resumption PSK needs usage, psk_group_id, psk_epoch")
            writer.u8(self.usage)
            writer.opaque(self.psk_group_id)
            writer.u64(self.psk_epoch)
        else:
            raise EncodeError(f"PreSharedKeyID: invalid psktype {self.psktype}")
        writer.opaque(self.psk_nonce)

    @classmethod
    def read(cls, reader: Reader) -> PreSharedKeyID:
        psktype = reader.u8("PreSharedKeyID.psktype")
        if psktype == PSKType.EXTERNAL:
            psk_id = reader.opaque("PreSharedKeyID.psk_id")
            return cls(PSKType.EXTERNAL, reader.opaque("PreSharedKeyID.psk_nonce"), psk_id=psk_id)
        if psktype == PSKType.RESUMPTION:
            usage = open_enum(ResumptionPSKUsage, reader.u8("PreSharedKeyID.usage"))
            group_id = reader.opaque("PreSharedKeyID.psk_group_id")
            epoch = reader.u64("PreSharedKeyID.psk_epoch")
            nonce = reader.opaque("PreSharedKeyID.psk_nonce")
            return cls(PSKType.RESUMPTION, nonce, usage=usage, psk_group_id=group_id, psk_epoch=epoch)
        raise DecodeError(f"PreSharedKeyID.psktype: invalid value {psktype}")


@dataclass(frozen=True, slots=True)
class PSKLabel(WireStruct):
    """§8.4 ``PSKLabel``: context of ``ExpandWithLabel(., "derived psk", PSKLabel, Nh)``."""

    id: PreSharedKeyID
    index: int
    count: int

    def write(self, writer: Writer) -> None:
        self.id.write(writer)
        writer.u16(self.index)
        writer.u16(self.count)

    @classmethod
    def read(cls, reader: Reader) -> PSKLabel:
        psk_id = PreSharedKeyID.read(reader)
        return cls(psk_id, reader.u16("PSKLabel.index"), reader.u16("PSKLabel.count"))
