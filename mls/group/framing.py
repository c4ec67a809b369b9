"""Framing of outgoing content and opening of incoming messages for the group engine (RFC 9420 §6).

Commits need their signature before their ``confirmation_tag`` exists (the
signature feeds the confirmed transcript hash, §8.2), so outgoing content is
signed once here and the finished ``FramedContentAuthData`` is then wrapped
as a PublicMessage (§6.2) or sealed as a PrivateMessage (§6.3) with the
current epoch's keys. Signing twice would break ECDSA suites, whose
signatures are randomized.
"""

from __future__ import annotations

import os

from mls.crypto import CipherSuite
from mls.errors import StaleCommit, UnknownSenderError, ValidationError, WrongEpoch
from mls.group.state import GroupState, PastEpoch
from mls.message_protection import FRAMED_CONTENT_TBS_LABEL, sender_data_key_nonce
from mls.secret_tree import RatchetType
from mls.wire.enums import ContentType, SenderType, WireFormat
from mls.wire.framing import (
    AuthenticatedContent,
    AuthenticatedContentTBM,
    FramedContent,
    FramedContentAuthData,
    FramedContentTBS,
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    SenderData,
    SenderDataAAD,
)
from mls.wire.group_context import GroupContext
from mls.wire.messages import MLSMessage
from mls.wire.proposals import Add, Commit, Proposal

__all__ = ["open_message", "protect", "sign_content"]


def sign_content(
    suite: CipherSuite,
    signature_private_key: bytes,
    wire_format: WireFormat,
    content: FramedContent,
    context: GroupContext | None,
) -> bytes:
    """``SignWithLabel(., "FramedContentTBS", FramedContentTBS)`` (§6.1)."""
    needs_context = content.sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)
    tbs = FramedContentTBS(wire_format, content, context if needs_context else None)
    return suite.sign_with_label(signature_private_key, FRAMED_CONTENT_TBS_LABEL, tbs.encode())


def protect(
    state: GroupState,
    content: FramedContent,
    auth: FramedContentAuthData,
    wire_format: WireFormat,
) -> MLSMessage:
    """Wrap signed content of the current epoch as a PublicMessage or PrivateMessage."""
    if wire_format == WireFormat.MLS_PUBLIC_MESSAGE:
        if content.content_type == ContentType.APPLICATION:
            raise ValidationError("application data must be sent as PrivateMessage (§6)")
        tag = None
        if content.sender.sender_type == SenderType.MEMBER:
            tbm = AuthenticatedContentTBM(FramedContentTBS(wire_format, content, state.context), auth)
            tag = state.suite.mac(state.secrets.membership_key, tbm.encode())
        return MLSMessage(PublicMessage(content, auth, tag))
    if wire_format == WireFormat.MLS_PRIVATE_MESSAGE:
        return MLSMessage(_seal_private(state, content, auth))
    raise ValidationError(f"wire format {wire_format} cannot carry framed content")


def _seal_private(state: GroupState, content: FramedContent, auth: FramedContentAuthData) -> PrivateMessage:
    """§6.3.1-§6.3.2: encrypt content and sender data with the next key of our own ratchet."""
    suite = state.suite
    sender = content.sender
    if sender.sender_type != SenderType.MEMBER or sender.index is None:
        raise ValidationError("only members send PrivateMessages (§6.3.2)")
    content_type = content.content_type
    plaintext = PrivateMessageContent(content.body, auth).encode()
    if state.padding_block > 1:
        plaintext += bytes(-len(plaintext) % state.padding_block)
    ratchet = RatchetType.APPLICATION if content_type == ContentType.APPLICATION else RatchetType.HANDSHAKE
    key = state.secret_tree.next_key(sender.index, ratchet)
    reuse_guard = os.urandom(4)
    guarded = (int.from_bytes(key.nonce[:4], "big") ^ int.from_bytes(reuse_guard, "big")).to_bytes(4, "big")
    aad = PrivateContentAAD(content.group_id, content.epoch, content_type, content.authenticated_data).encode()
    ciphertext = suite.aead_seal(key.key, guarded + key.nonce[4:], aad, plaintext)
    sender_key, sender_nonce = sender_data_key_nonce(suite, state.secrets.sender_data_secret, ciphertext)
    sender_data = SenderData(sender.index, key.generation, reuse_guard).encode()
    sender_aad = SenderDataAAD(content.group_id, content.epoch, content_type).encode()
    encrypted_sender_data = suite.aead_seal(sender_key, sender_nonce, sender_aad, sender_data)
    return PrivateMessage(
        content.group_id, content.epoch, content_type, content.authenticated_data, encrypted_sender_data, ciphertext
    )


def _public_sender_key(state: GroupState, message: PublicMessage) -> bytes:
    """The signature key that must verify a PublicMessage, chosen by sender type (§6.1)."""
    content = message.content
    sender = content.sender
    if sender.sender_type == SenderType.MEMBER:
        key = state.signature_key_of(sender.index if sender.index is not None else -1)
        if key is None:
            raise UnknownSenderError("no member at the sender's leaf")
        return key
    if sender.sender_type == SenderType.EXTERNAL:
        senders = state.external_senders()
        index = sender.index if sender.index is not None else -1
        if senders is None or not 0 <= index < len(senders.external_senders):
            raise UnknownSenderError("no such external sender in the external_senders extension")
        return senders.external_senders[index].signature_key
    body = content.body
    if sender.sender_type == SenderType.NEW_MEMBER_COMMIT:
        if not isinstance(body, Commit) or body.path is None:
            raise ValidationError("a new_member_commit sender must send a Commit with a path")
        return body.path.leaf_node.signature_key
    if sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL:
        if not isinstance(body, Proposal) or not isinstance(body.body, Add):
            raise ValidationError("a new_member_proposal sender must send an Add proposal")
        return body.body.key_package.leaf_node.signature_key
    raise ValidationError("invalid sender type")


def _wrong_epoch(state: GroupState, epoch: int, content_type: ContentType) -> WrongEpoch:
    if content_type == ContentType.COMMIT and epoch < state.epoch:
        return StaleCommit(f"Commit for epoch {epoch}, the group is at epoch {state.epoch}")
    return WrongEpoch(f"message for epoch {epoch}, the group is at epoch {state.epoch}")


def open_message(state: GroupState, message: PublicMessage | PrivateMessage) -> AuthenticatedContent:
    """Verify and (for PrivateMessage) decrypt a message of this group (§6.2, §6.3).

    Current-epoch messages of any content type; application messages of a
    retained past epoch (§14.3). Raises ``WrongEpoch``/``StaleCommit``,
    ``ValidationError``, ``UnknownSenderError``, ``CryptoError``,
    ``SecretTreeError``, ``DecodeError``.
    """
    if isinstance(message, PublicMessage):
        group_id, epoch, content_type = message.content.group_id, message.content.epoch, message.content.content_type
    else:
        group_id, epoch, content_type = message.group_id, message.epoch, message.content_type
    if group_id != state.group_id:
        raise ValidationError("message is for another group")
    if epoch != state.epoch:
        if isinstance(message, PrivateMessage) and content_type == ContentType.APPLICATION:
            past = _past_epoch(state, epoch)
            if past is not None:
                return past.protection(state.suite).unprotect_private(message, past.signature_key_of)
        raise _wrong_epoch(state, epoch, content_type)
    protection = state.protection()
    if isinstance(message, PublicMessage):
        return protection.unprotect_public(message, _public_sender_key(state, message))
    return protection.unprotect_private(message, state.signature_key_of)


def _past_epoch(state: GroupState, epoch: int) -> PastEpoch | None:
    for past in state.past:
        if past.epoch == epoch:
            return past
    return None
