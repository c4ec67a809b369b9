"""Keyless inspection of RFC 9420 messages: what anyone may read without a group secret.

A delivery service, a signaling server or a media adapter sometimes needs the
clear parts of an MLS message: the header of a framed message (§6: wire
format, group id, epoch, content type; for a PublicMessage, §6.2, also its
sender), the cipher suite, credential, signature key and KeyPackageRef of a
KeyPackage (§10, §5.2), the KeyPackageRefs a Welcome is for (§12.4.3.1), the
group id and epoch of a GroupInfo (§12.4.3) and the identity of a basic
Credential (§5.3). This module reads exactly those, holds no key and verifies
no signature: nothing it returns is authenticated.

Every function takes the encoded bytes and returns a frozen dataclass whose
enum fields are the code points re-exported here (``WireFormat``,
``ContentType``, ``CredentialType``, ``SenderType``), so code outside ``mls``
never imports ``mls.wire``. Malformed bytes raise ``mls.errors.DecodeError``;
a well-formed MLSMessage of another kind than the function reads raises
``mls.errors.ValidationError``; an argument that is not bytes-like raises
``mls.errors.InvalidArgumentTypeError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from mls.crypto import KEY_PACKAGE_REF_LABEL, cipher_suite
from mls.errors import InvalidArgumentTypeError, MLSError, ValidationError
from mls.wire.credentials import Credential
from mls.wire.enums import ContentType, CredentialType, SenderType, WireFormat
from mls.wire.framing import PrivateMessage, PublicMessage
from mls.wire.key_package import KeyPackage
from mls.wire.messages import MLSMessage
from mls.wire.welcome import GroupInfo, Welcome

__all__ = [
    "ContentType",
    "CredentialSummary",
    "CredentialType",
    "GroupInfoSummary",
    "KeyPackageSummary",
    "MessageHeader",
    "SenderType",
    "WelcomeSummary",
    "WireFormat",
    "credential_identity",
    "inspect_credential",
    "inspect_group_info",
    "inspect_key_package",
    "inspect_message",
    "inspect_welcome",
]

BytesLike = bytes | bytearray | memoryview
Body = TypeVar("Body", KeyPackage, Welcome, GroupInfo)


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """The clear header of an ``MLSMessage`` (§6).

    ``group_id``, ``epoch`` and ``content_type`` are set for the framed wire
    formats (PublicMessage §6.2, PrivateMessage §6.3) and None otherwise.
    ``sender_type`` is set for a PublicMessage only (a PrivateMessage
    encrypts its sender, §6.3.2); ``leaf_index`` only when that sender is a
    member (an external sender's index names no leaf, §12.1.8.1).
    """

    wire_format: WireFormat
    group_id: bytes | None = None
    epoch: int | None = None
    content_type: ContentType | None = None
    sender_type: SenderType | None = None
    leaf_index: int | None = None

    @property
    def is_framed(self) -> bool:
        """True for a PublicMessage or PrivateMessage (a message of some group's epoch, §6)."""
        return self.wire_format in (WireFormat.MLS_PUBLIC_MESSAGE, WireFormat.MLS_PRIVATE_MESSAGE)


@dataclass(frozen=True, slots=True)
class CredentialSummary:
    """A ``Credential`` (§5.3): its type, its encoding, and the identity of a basic one.

    ``credential_type`` is a ``CredentialType`` member when known, a plain int
    otherwise (the registry is open, §17.5); ``identity`` is None unless the
    type is ``basic``.
    """

    credential_type: int
    encoded: bytes
    identity: bytes | None


@dataclass(frozen=True, slots=True)
class KeyPackageSummary:
    """A KeyPackage (§10): cipher suite, leaf credential, signature key and KeyPackageRef (§5.2)."""

    cipher_suite: int
    credential: CredentialSummary
    signature_key: bytes
    ref: bytes


@dataclass(frozen=True, slots=True)
class WelcomeSummary:
    """A Welcome (§12.4.3.1): its cipher suite and the KeyPackageRef of each new member, in order."""

    cipher_suite: int
    key_package_refs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class GroupInfoSummary:
    """A GroupInfo (§12.4.3): the group id, epoch and cipher suite of its GroupContext (§8.1)."""

    group_id: bytes
    epoch: int
    cipher_suite: int


def _as_wire(data: BytesLike, what: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InvalidArgumentTypeError(f"{what} must be bytes (RFC 9420 encoding), not {type(data).__name__}")


def _body(data: BytesLike, kind: type[Body], name: str) -> Body:
    """The body of the MLSMessage in ``data``, which must be a ``kind``."""
    message = MLSMessage.decode(_as_wire(data, name))
    body = message.body
    if not isinstance(body, kind):
        raise ValidationError(f"expected an MLSMessage carrying a {name}, "
                              f"got a {message.wire_format.name.lower()}")
    return body


def _credential(credential: Credential) -> CredentialSummary:
    identity = credential.identity if credential.credential_type == CredentialType.BASIC else None
    return CredentialSummary(credential.credential_type, credential.encode(), identity)


def inspect_message(data: BytesLike) -> MessageHeader:
    """The clear header of any encoded ``MLSMessage`` (§6).

    Raises ``DecodeError`` unless ``data`` is exactly one MLSMessage.
    """
    message = MLSMessage.decode(_as_wire(data, "MLSMessage"))
    body = message.body
    if isinstance(body, PublicMessage):
        content = body.content
        sender = content.sender
        leaf_index = sender.index if sender.sender_type is SenderType.MEMBER else None
        return MessageHeader(message.wire_format, content.group_id, content.epoch, content.content_type,
                             sender.sender_type, leaf_index)
    if isinstance(body, PrivateMessage):
        return MessageHeader(message.wire_format, body.group_id, body.epoch, body.content_type)
    return MessageHeader(message.wire_format)


def inspect_key_package(data: BytesLike) -> KeyPackageSummary:
    """An ``MLSMessage`` carrying a KeyPackage (§10), as ``MLS.generate_key_package`` returns it.

    ``ref`` is ``RefHash("MLS 1.0 KeyPackage Reference", KeyPackage)`` (§5.2)
    with the KeyPackage's own suite; a suite other than 1-7 raises
    ``UnsupportedCipherSuiteError``. The signature is not verified.
    """
    key_package = _body(data, KeyPackage, "KeyPackage")
    ref = cipher_suite(key_package.cipher_suite).ref_hash(KEY_PACKAGE_REF_LABEL, key_package.encode())
    leaf = key_package.leaf_node
    return KeyPackageSummary(key_package.cipher_suite, _credential(leaf.credential), leaf.signature_key, ref)


def inspect_welcome(data: BytesLike) -> WelcomeSummary:
    """An ``MLSMessage`` carrying a Welcome (§12.4.3.1): whose KeyPackages it is for.

    Each ``EncryptedGroupSecrets.new_member`` is the KeyPackageRef of one joiner.
    """
    welcome = _body(data, Welcome, "Welcome")
    return WelcomeSummary(welcome.cipher_suite, tuple(secrets.new_member for secrets in welcome.secrets))


def inspect_group_info(data: BytesLike) -> GroupInfoSummary:
    """An ``MLSMessage`` carrying a GroupInfo (§12.4.3); its signature is not verified."""
    group_info = _body(data, GroupInfo, "GroupInfo")
    context = group_info.group_context
    return GroupInfoSummary(context.group_id, context.epoch, context.cipher_suite)


def inspect_credential(data: BytesLike) -> CredentialSummary:
    """An encoded ``Credential`` (§5.3), as ``MLS.generate_credential`` returns it."""
    return _credential(Credential.decode(_as_wire(data, "Credential")))


def credential_identity(data: BytesLike) -> str | None:
    """The identity of an encoded basic Credential (§5.3) as UTF-8 text; ``None`` for anything
    else (malformed bytes, another credential type, an identity that is not UTF-8).

    The name an application (mlscall: the room token's identity) binds to a leaf.
    """
    try:
        identity = inspect_credential(data).identity
        return None if identity is None else identity.decode()
    except (MLSError, UnicodeDecodeError):
        return None
