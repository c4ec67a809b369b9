"""Message framing (RFC 9420 §6): senders, FramedContent, authentication data,
PublicMessage, PrivateMessage and the structs built from them for signing,
MACs, AEAD and transcript hashes (§6.1-§6.3, §8.2)."""

from __future__ import annotations

from dataclasses import dataclass

from mls.errors import DecodeError, EncodeError
from mls.wire.codec import Reader, WireStruct, Writer, closed_enum
from mls.wire.enums import ContentType, ProtocolVersion, SenderType, WireFormat
from mls.wire.group_context import GroupContext, read_mls10
from mls.wire.proposals import Commit, Proposal

__all__ = [
    "AuthenticatedContent",
    "AuthenticatedContentTBM",
    "ConfirmedTranscriptHashInput",
    "ContentBody",
    "FramedContent",
    "FramedContentAuthData",
    "FramedContentTBS",
    "InterimTranscriptHashInput",
    "PrivateContentAAD",
    "PrivateMessage",
    "PrivateMessageContent",
    "PublicMessage",
    "Sender",
    "SenderData",
    "SenderDataAAD",
    "content_type_of",
]

#: The ``select (content_type)`` part of FramedContent / PrivateMessageContent:
#: ``bytes`` (application_data), ``Proposal`` or ``Commit``.
ContentBody = bytes | Proposal | Commit

_INDEXED_SENDERS = (SenderType.MEMBER, SenderType.EXTERNAL)


@dataclass(frozen=True, slots=True)
class Sender(WireStruct):
    """§6 ``Sender``: ``index`` is the ``leaf_index`` of a member or the
    ``sender_index`` of an external sender, and None for new members."""

    sender_type: SenderType
    index: int | None = None

    @classmethod
    def member(cls, leaf_index: int) -> Sender:
        """A group member at ``leaf_index``."""
        return cls(SenderType.MEMBER, leaf_index)

    @classmethod
    def external(cls, sender_index: int) -> Sender:
        """The external sender at ``sender_index`` of the ``external_senders`` extension."""
        return cls(SenderType.EXTERNAL, sender_index)

    @classmethod
    def new_member_proposal(cls) -> Sender:
        """A would-be member proposing its own Add (§12.1.8)."""
        return cls(SenderType.NEW_MEMBER_PROPOSAL)

    @classmethod
    def new_member_commit(cls) -> Sender:
        """A joiner sending an external Commit (§12.4.3.2)."""
        return cls(SenderType.NEW_MEMBER_COMMIT)

    def write(self, writer: Writer) -> None:
        sender_type = self.sender_type
        if sender_type in _INDEXED_SENDERS:
            if self.index is None:
                raise EncodeError(f"Sender: {sender_type.name.lower()} sender needs an index")
            writer.u8(sender_type)
            writer.u32(self.index)
        elif sender_type in (SenderType.NEW_MEMBER_PROPOSAL, SenderType.NEW_MEMBER_COMMIT):
            if self.index is not None:
                raise EncodeError("Sender: new member senders carry no index")
            writer.u8(sender_type)
        else:
            raise EncodeError(f"Sender: invalid sender_type {sender_type}")

    @classmethod
    def read(cls, reader: Reader) -> Sender:
        sender_type: SenderType = closed_enum(SenderType, reader.u8("Sender.sender_type"), "Sender.sender_type")
        if sender_type in _INDEXED_SENDERS:
            return cls(sender_type, reader.u32("Sender.index"))
        return cls(sender_type)


def content_type_of(body: ContentBody) -> ContentType:
    """The ``ContentType`` selecting ``body``: application, proposal or commit."""
    if isinstance(body, bytes):
        return ContentType.APPLICATION
    if isinstance(body, Proposal):
        return ContentType.PROPOSAL
    if isinstance(body, Commit):
        return ContentType.COMMIT
    raise EncodeError(f"content must be bytes, Proposal or Commit, not {type(body).__name__}")


def _write_body(writer: Writer, body: ContentBody) -> None:
    if isinstance(body, bytes):
        writer.opaque(body)
    else:
        body.write(writer)


def _read_body(reader: Reader, content_type: ContentType) -> ContentBody:
    if content_type == ContentType.APPLICATION:
        return reader.opaque("application_data")
    if content_type == ContentType.PROPOSAL:
        return Proposal.read(reader)
    if content_type == ContentType.COMMIT:
        return Commit.read(reader)
    raise DecodeError(f"content_type: invalid value {content_type}")


def _read_content_type(reader: Reader, what: str) -> ContentType:
    content_type: ContentType = closed_enum(ContentType, reader.u8(what), what)
    return content_type


def _read_wire_format(reader: Reader, what: str) -> WireFormat:
    wire_format: WireFormat = closed_enum(WireFormat, reader.u16(what), what)
    return wire_format


@dataclass(frozen=True, slots=True)
class FramedContent(WireStruct):
    """§6 ``FramedContent``; ``body`` is application data (bytes), a Proposal or a Commit."""

    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes
    body: ContentBody

    @property
    def content_type(self) -> ContentType:
        """The ``ContentType``, from ``body``'s type."""
        return content_type_of(self.body)

    def write(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.u64(self.epoch)
        self.sender.write(writer)
        writer.opaque(self.authenticated_data)
        writer.u8(content_type_of(self.body))
        _write_body(writer, self.body)

    @classmethod
    def read(cls, reader: Reader) -> FramedContent:
        group_id = reader.opaque("FramedContent.group_id")
        epoch = reader.u64("FramedContent.epoch")
        sender = Sender.read(reader)
        authenticated_data = reader.opaque("FramedContent.authenticated_data")
        content_type = _read_content_type(reader, "FramedContent.content_type")
        return cls(group_id, epoch, sender, authenticated_data, _read_body(reader, content_type))


@dataclass(frozen=True, slots=True)
class FramedContentAuthData(WireStruct):
    """§6.1 ``FramedContentAuthData``: ``confirmation_tag`` is set exactly for commits.

    Decoding depends on the content type: use ``read_with`` / ``decode_with``.
    """

    signature: bytes
    confirmation_tag: bytes | None = None

    def write(self, writer: Writer) -> None:
        writer.opaque(self.signature)
        if self.confirmation_tag is not None:
            writer.opaque(self.confirmation_tag)

    def check(self, content_type: ContentType) -> None:
        """Raise ``EncodeError`` unless the tag's presence matches ``content_type``."""
        if (self.confirmation_tag is not None) != (content_type == ContentType.COMMIT):
            raise EncodeError("FramedContentAuthData: confirmation_tag is required for commits only")

    @classmethod
    def read(cls, reader: Reader) -> FramedContentAuthData:
        raise DecodeError("FramedContentAuthData: the content type is needed, use read_with")

    @classmethod
    def read_with(cls, reader: Reader, content_type: ContentType) -> FramedContentAuthData:
        """Read the auth data of content of type ``content_type``."""
        signature = reader.opaque("FramedContentAuthData.signature")
        if content_type == ContentType.COMMIT:
            return cls(signature, reader.opaque("FramedContentAuthData.confirmation_tag"))
        return cls(signature)

    @classmethod
    def decode_with(cls, data: bytes, content_type: ContentType) -> FramedContentAuthData:
        """Decode auth data spanning all of ``data``, for content of type ``content_type``."""
        reader = Reader(data)
        value = cls.read_with(reader, content_type)
        reader.finish(cls.__name__)
        return value


def _write_content_and_auth(writer: Writer, content: FramedContent, auth: FramedContentAuthData) -> None:
    content.write(writer)
    auth.check(content.content_type)
    auth.write(writer)


@dataclass(frozen=True, slots=True)
class FramedContentTBS(WireStruct):
    """§6.1 ``FramedContentTBS``: signed with label ``"FramedContentTBS"``.

    ``context`` (the current GroupContext) is present exactly when the
    sender is ``member`` or ``new_member_commit``.
    """

    wire_format: WireFormat
    content: FramedContent
    context: GroupContext | None = None
    version: ProtocolVersion = ProtocolVersion.MLS10

    def write(self, writer: Writer) -> None:
        writer.u16(self.version)
        writer.u16(self.wire_format)
        self.content.write(writer)
        needs_context = self.content.sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)
        if needs_context != (self.context is not None):
            raise EncodeError("FramedContentTBS: context is required for member and new_member_commit senders only")
        if self.context is not None:
            self.context.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> FramedContentTBS:
        version = read_mls10(reader, "FramedContentTBS.version")
        wire_format = _read_wire_format(reader, "FramedContentTBS.wire_format")
        content = FramedContent.read(reader)
        context = None
        if content.sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT):
            context = GroupContext.read(reader)
        return cls(wire_format, content, context, version)


@dataclass(frozen=True, slots=True)
class AuthenticatedContent(WireStruct):
    """§6 ``AuthenticatedContent``; ``RefHash("MLS 1.0 Proposal Reference", .)`` of it is a ProposalRef."""

    wire_format: WireFormat
    content: FramedContent
    auth: FramedContentAuthData

    def write(self, writer: Writer) -> None:
        writer.u16(self.wire_format)
        _write_content_and_auth(writer, self.content, self.auth)

    @classmethod
    def read(cls, reader: Reader) -> AuthenticatedContent:
        wire_format = _read_wire_format(reader, "AuthenticatedContent.wire_format")
        content = FramedContent.read(reader)
        return cls(wire_format, content, FramedContentAuthData.read_with(reader, content.content_type))


@dataclass(frozen=True, slots=True)
class AuthenticatedContentTBM(WireStruct):
    """§6.2 ``AuthenticatedContentTBM``: input of the ``membership_tag`` MAC."""

    content_tbs: FramedContentTBS
    auth: FramedContentAuthData

    def write(self, writer: Writer) -> None:
        self.content_tbs.write(writer)
        self.auth.check(self.content_tbs.content.content_type)
        self.auth.write(writer)

    @classmethod
    def read(cls, reader: Reader) -> AuthenticatedContentTBM:
        content_tbs = FramedContentTBS.read(reader)
        return cls(content_tbs, FramedContentAuthData.read_with(reader, content_tbs.content.content_type))


@dataclass(frozen=True, slots=True)
class PublicMessage(WireStruct):
    """§6.2 ``PublicMessage``: ``membership_tag`` is present exactly for member senders."""

    content: FramedContent
    auth: FramedContentAuthData
    membership_tag: bytes | None = None

    def write(self, writer: Writer) -> None:
        _write_content_and_auth(writer, self.content, self.auth)
        is_member = self.content.sender.sender_type == SenderType.MEMBER
        if is_member != (self.membership_tag is not None):
            raise EncodeError("PublicMessage: membership_tag is required for member senders only")
        if self.membership_tag is not None:
            writer.opaque(self.membership_tag)

    @classmethod
    def read(cls, reader: Reader) -> PublicMessage:
        content = FramedContent.read(reader)
        auth = FramedContentAuthData.read_with(reader, content.content_type)
        if content.sender.sender_type == SenderType.MEMBER:
            return cls(content, auth, reader.opaque("PublicMessage.membership_tag"))
        return cls(content, auth)


@dataclass(frozen=True, slots=True)
class PrivateMessage(WireStruct):
    """§6.3 ``PrivateMessage``."""

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes
    encrypted_sender_data: bytes
    ciphertext: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.u64(self.epoch)
        writer.u8(self.content_type)
        writer.opaque(self.authenticated_data)
        writer.opaque(self.encrypted_sender_data)
        writer.opaque(self.ciphertext)

    @classmethod
    def read(cls, reader: Reader) -> PrivateMessage:
        group_id = reader.opaque("PrivateMessage.group_id")
        epoch = reader.u64("PrivateMessage.epoch")
        content_type = _read_content_type(reader, "PrivateMessage.content_type")
        authenticated_data = reader.opaque("PrivateMessage.authenticated_data")
        encrypted_sender_data = reader.opaque("PrivateMessage.encrypted_sender_data")
        ciphertext = reader.opaque("PrivateMessage.ciphertext")
        return cls(group_id, epoch, content_type, authenticated_data, encrypted_sender_data, ciphertext)


@dataclass(frozen=True, slots=True)
class PrivateMessageContent(WireStruct):
    """§6.3.1 ``PrivateMessageContent``: the AEAD plaintext of a PrivateMessage.

    ``padding_length`` zero bytes follow ``auth``. Decoding needs the
    PrivateMessage's content type (``decode_with``) and rejects any
    non-zero padding byte as malformed.
    """

    body: ContentBody
    auth: FramedContentAuthData
    padding_length: int = 0

    @property
    def content_type(self) -> ContentType:
        """The ``ContentType``, from ``body``'s type."""
        return content_type_of(self.body)

    def write(self, writer: Writer) -> None:
        content_type = content_type_of(self.body)
        _write_body(writer, self.body)
        self.auth.check(content_type)
        self.auth.write(writer)
        if self.padding_length < 0:
            raise EncodeError("PrivateMessageContent: negative padding length")
        writer.raw(bytes(self.padding_length))

    @classmethod
    def read(cls, reader: Reader) -> PrivateMessageContent:
        raise DecodeError("PrivateMessageContent: the content type is needed, use decode_with")

    @classmethod
    def decode_with(cls, data: bytes, content_type: ContentType) -> PrivateMessageContent:
        """Decode a decrypted plaintext of content type ``content_type``, padding included."""
        reader = Reader(data)
        body = _read_body(reader, content_type)
        auth = FramedContentAuthData.read_with(reader, content_type)
        padding = reader.data[reader.pos : reader.end]
        if padding.count(0) != len(padding):
            raise DecodeError("PrivateMessageContent.padding: non-zero padding byte")
        return cls(body, auth, len(padding))


@dataclass(frozen=True, slots=True)
class PrivateContentAAD(WireStruct):
    """§6.3.1 ``PrivateContentAAD``: AAD of the content encryption."""

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.u64(self.epoch)
        writer.u8(self.content_type)
        writer.opaque(self.authenticated_data)

    @classmethod
    def read(cls, reader: Reader) -> PrivateContentAAD:
        group_id = reader.opaque("PrivateContentAAD.group_id")
        epoch = reader.u64("PrivateContentAAD.epoch")
        content_type = _read_content_type(reader, "PrivateContentAAD.content_type")
        return cls(group_id, epoch, content_type, reader.opaque("PrivateContentAAD.authenticated_data"))


@dataclass(frozen=True, slots=True)
class SenderData(WireStruct):
    """§6.3.2 ``SenderData``: ``reuse_guard`` is exactly 4 bytes."""

    leaf_index: int
    generation: int
    reuse_guard: bytes

    def write(self, writer: Writer) -> None:
        writer.u32(self.leaf_index)
        writer.u32(self.generation)
        writer.fixed(self.reuse_guard, 4)

    @classmethod
    def read(cls, reader: Reader) -> SenderData:
        leaf_index = reader.u32("SenderData.leaf_index")
        generation = reader.u32("SenderData.generation")
        return cls(leaf_index, generation, reader.fixed(4, "SenderData.reuse_guard"))


@dataclass(frozen=True, slots=True)
class SenderDataAAD(WireStruct):
    """§6.3.2 ``SenderDataAAD``: AAD of the sender data encryption."""

    group_id: bytes
    epoch: int
    content_type: ContentType

    def write(self, writer: Writer) -> None:
        writer.opaque(self.group_id)
        writer.u64(self.epoch)
        writer.u8(self.content_type)

    @classmethod
    def read(cls, reader: Reader) -> SenderDataAAD:
        group_id = reader.opaque("SenderDataAAD.group_id")
        epoch = reader.u64("SenderDataAAD.epoch")
        return cls(group_id, epoch, _read_content_type(reader, "SenderDataAAD.content_type"))


@dataclass(frozen=True, slots=True)
class ConfirmedTranscriptHashInput(WireStruct):
    """§8.2 ``ConfirmedTranscriptHashInput`` (``content`` holds a Commit)."""

    wire_format: WireFormat
    content: FramedContent
    signature: bytes

    @classmethod
    def from_authenticated_content(cls, authenticated: AuthenticatedContent) -> ConfirmedTranscriptHashInput:
        """The confirmed-transcript part of ``authenticated``."""
        return cls(authenticated.wire_format, authenticated.content, authenticated.auth.signature)

    def write(self, writer: Writer) -> None:
        writer.u16(self.wire_format)
        self.content.write(writer)
        writer.opaque(self.signature)

    @classmethod
    def read(cls, reader: Reader) -> ConfirmedTranscriptHashInput:
        wire_format = _read_wire_format(reader, "ConfirmedTranscriptHashInput.wire_format")
        content = FramedContent.read(reader)
        return cls(wire_format, content, reader.opaque("ConfirmedTranscriptHashInput.signature"))


@dataclass(frozen=True, slots=True)
class InterimTranscriptHashInput(WireStruct):
    """§8.2 ``struct { MAC confirmation_tag; } InterimTranscriptHashInput``."""

    confirmation_tag: bytes

    def write(self, writer: Writer) -> None:
        writer.opaque(self.confirmation_tag)

    @classmethod
    def read(cls, reader: Reader) -> InterimTranscriptHashInput:
        return cls(reader.opaque("InterimTranscriptHashInput.confirmation_tag"))
