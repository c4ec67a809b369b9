"""Framing of outgoing content and opening of incoming messages for the group engine (RFC 9420 §6).

Commits need their signature before their ``confirmation_tag`` exists (the
signature feeds the confirmed transcript hash, §8.2), so outgoing content is
signed once (:func:`sign_content`) and the finished ``FramedContentAuthData``
is then wrapped as a PublicMessage (§6.2) or sealed as a PrivateMessage
(§6.3) by the current epoch's ``MessageProtection``. Signing twice would
break ECDSA suites, whose signatures are randomized.
"""

from __future__ import annotations

from mls.errors import StaleCommitError, UnknownSenderError, ValidationError, WrongEpochError, WrongGroupError
from mls.group.state import GroupState, PastEpoch, PublicView
from mls.wire.enums import ContentType, SenderType, WireFormat
from mls.wire.framing import AuthenticatedContent, FramedContent, FramedContentAuthData, PrivateMessage, PublicMessage
from mls.wire.messages import MLSMessage
from mls.wire.proposals import Add, Commit, Proposal

__all__ = ["open_message", "protect", "sender_signature_key", "sign_content"]


def sign_content(state: GroupState, wire_format: WireFormat, content: FramedContent) -> bytes:
    """``SignWithLabel(., "FramedContentTBS", FramedContentTBS)`` with our key in the current epoch (§6.1)."""
    return state.protection().sign(wire_format, content, state.signature_private_key)


def protect(
    state: GroupState,
    content: FramedContent,
    auth: FramedContentAuthData,
    wire_format: WireFormat,
) -> MLSMessage:
    """Wrap signed content of the current epoch as a PublicMessage or PrivateMessage."""
    protection = state.protection()
    if wire_format == WireFormat.MLS_PUBLIC_MESSAGE:
        return MLSMessage(protection.seal_public(content, auth))
    if wire_format == WireFormat.MLS_PRIVATE_MESSAGE:
        return MLSMessage(protection.seal_private(content, auth))
    raise ValidationError(f"wire format {wire_format} cannot carry framed content")


def sender_signature_key(state: PublicView, content: FramedContent) -> bytes:
    """The signature key that must verify ``content`` of a PublicMessage, chosen by sender type (§6.1):
    the member's leaf, the ``external_senders`` entry, the UpdatePath leaf of a ``new_member_commit``
    or the KeyPackage leaf of a ``new_member_proposal``."""
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


def _wrong_epoch(state: GroupState, epoch: int, content_type: ContentType) -> WrongEpochError:
    if content_type == ContentType.COMMIT and epoch < state.epoch:
        return StaleCommitError(f"Commit for epoch {epoch}, the group is at epoch {state.epoch}")
    return WrongEpochError(f"message for epoch {epoch}, the group is at epoch {state.epoch}")


def open_message(state: GroupState, message: PublicMessage | PrivateMessage) -> AuthenticatedContent:
    """Verify and (for PrivateMessage) decrypt a message of this group (§6.2, §6.3).

    Current-epoch messages of any content type; application messages of a
    retained past epoch (§15.3). Raises ``WrongEpochError``/``StaleCommitError``,
    ``ValidationError``, ``UnknownSenderError``, ``CryptoError``,
    ``SecretTreeError``, ``DecodeError``.
    """
    if isinstance(message, PublicMessage):
        group_id, epoch, content_type = message.content.group_id, message.content.epoch, message.content.content_type
    else:
        group_id, epoch, content_type = message.group_id, message.epoch, message.content_type
    if group_id != state.group_id:
        raise WrongGroupError("message is for another group")
    if epoch != state.epoch:
        if isinstance(message, PrivateMessage) and content_type == ContentType.APPLICATION:
            past = _past_epoch(state, epoch)
            if past is not None:
                return past.protection(state.suite).unprotect_private(message, past.signature_key_of)
        raise _wrong_epoch(state, epoch, content_type)
    protection = state.protection()
    if isinstance(message, PublicMessage):
        return protection.unprotect_public(message, sender_signature_key(state, message.content))
    return protection.unprotect_private(message, state.signature_key_of)


def _past_epoch(state: GroupState, epoch: int) -> PastEpoch | None:
    for past in state.past:
        if past.epoch == epoch:
            return past
    return None
