"""The group engine: create a group, propose, send, receive (RFC 9420 §6, §11, §12).

Functions here take a ``GroupState`` and return results. A received
message that fails any check raises before the state is touched (ratchet
keys are consumed only by messages that open and verify); a valid Commit
yields a new merged state in the result, which the caller keeps instead.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field

from mls.crypto import CipherSuite
from mls.errors import DecodeError, GroupInactiveError, ValidationError
from mls.group.commit import StagedCommit, merge, stage_commit
from mls.group.config import GroupConfig
from mls.group.framing import open_message, protect, sign_content
from mls.group.proposals import check_proposal, proposal_ref, validate_proposal_sender
from mls.group.psk import PskResolver
from mls.group.state import CachedProposal, GroupState
from mls.key_schedule import EpochSecrets
from mls.transcript import interim_transcript_hash
from mls.tree import RatchetTree, TreeKEMPrivate, sign_leaf_node
from mls.wire.enums import ContentType, LeafNodeSource, SenderType, WireFormat
from mls.wire.extensions import Extension
from mls.wire.framing import AuthenticatedContent, FramedContent, FramedContentAuthData, PrivateMessage, PublicMessage, Sender
from mls.wire.group_context import GroupContext
from mls.wire.messages import MLSMessage
from mls.wire.proposals import Add, Commit, Proposal, Update
from mls.wire.tree import LeafNode

__all__ = [
    "ReceiveKind",
    "ReceiveResult",
    "create_group",
    "message_digest",
    "propose",
    "receive",
    "send_application",
]


class ReceiveKind(enum.Enum):
    """What ``receive`` found in a message."""

    APPLICATION = "application-message-plaintext"
    PROPOSAL = "proposal"
    COMMIT = "commit-processed"


@dataclass
class ReceiveResult:
    """Outcome of ``receive``.

    ``state`` is the member's state afterwards (a new object after a Commit).
    ``content``: the plaintext, the encoded Proposal, or the Commit message.
    ``own``: the message is one we sent, echoed back by the delivery service.
    """

    kind: ReceiveKind
    content: bytes
    epoch: int
    sender: Sender
    state: GroupState = field(repr=False)
    authenticated_data: bytes = b""
    own: bool = False
    staged: StagedCommit | None = field(default=None, repr=False)
    sender_key: bytes | None = field(default=None, repr=False)


def message_digest(suite: CipherSuite, message: bytes) -> bytes:
    """Digest by which a member recognises its own handshake messages echoed back."""
    return suite.hash(message)


def create_group(
    suite: CipherSuite,
    signature_private_key: bytes,
    leaf_node: LeafNode,
    encryption_private_key: bytes,
    config: GroupConfig,
    *,
    group_id: bytes | None = None,
    extensions: tuple[Extension, ...] = (),
) -> GroupState:
    """A one-member group at epoch 0 (§11): fresh epoch secret, confirmation tag over "" ."""
    if group_id is None:
        group_id = os.urandom(suite.Nh)
    tree = RatchetTree.create(suite, leaf_node)
    context = GroupContext(suite.suite_id, group_id, 0, tree.tree_hash(), b"", tuple(extensions))
    secrets = EpochSecrets.from_joiner_secret(suite, os.urandom(suite.Nh), None, context.encode())
    tag = secrets.confirmation_tag(b"")
    return GroupState(
        suite=suite,
        context=context,
        tree=tree,
        private=TreeKEMPrivate.for_leaf(0, encryption_private_key, leaf_node.encryption_key),
        signature_private_key=signature_private_key,
        secrets=secrets,
        interim_transcript_hash=interim_transcript_hash(suite, b"", tag),
        confirmation_tag=tag,
        secret_tree=config.secret_tree(secrets, 1),
        resumption_psks={0: secrets.resumption_psk},
        padding_block=config.padding_block,
    )


def send_application(state: GroupState, plaintext: bytes, authenticated_data: bytes = b"") -> bytes:
    """Encrypt application data as a PrivateMessage of the current epoch (§6.3, §15)."""
    state.check_active()
    if state.pending is not None:
        raise ValidationError("a Commit is pending: merge or discard it before sending application data (§12.4)")
    content = FramedContent(state.group_id, state.epoch, Sender.member(state.leaf_index), authenticated_data, plaintext)
    wire_format = WireFormat.MLS_PRIVATE_MESSAGE
    signature = sign_content(state, wire_format, content)
    return protect(state, content, FramedContentAuthData(signature), wire_format).encode()


def propose(
    state: GroupState, proposal: Proposal, config: GroupConfig, authenticated_data: bytes = b""
) -> bytes:
    """Send a proposal by reference (§12.1): frame, sign, cache it under its ProposalRef."""
    state.check_active()
    me = Sender.member(state.leaf_index)
    validate_proposal_sender(state, proposal, me)
    check_proposal(state, proposal, me, config.now())
    wire_format = config.handshake_wire_format
    content = FramedContent(state.group_id, state.epoch, me, authenticated_data, proposal)
    signature = sign_content(state, wire_format, content)
    auth = FramedContentAuthData(signature)
    message = protect(state, content, auth, wire_format).encode()
    ref = proposal_ref(state.suite, AuthenticatedContent(wire_format, content, auth))
    state.proposals[ref] = CachedProposal(ref, proposal, me, verified=True)
    state.own_messages.add(message_digest(state.suite, message))
    return message


def update_proposal(state: GroupState, config: GroupConfig) -> Proposal:
    """An Update proposal with a fresh leaf key (§12.1.2); its private key is kept in ``state``."""
    leaf = state.own_leaf
    private_key, public_key = state.suite.generate_key_pair()
    unsigned = LeafNode(
        public_key, leaf.signature_key, leaf.credential, leaf.capabilities, LeafNodeSource.UPDATE, extensions=leaf.extensions
    )
    signed = sign_leaf_node(state.suite, unsigned, state.signature_private_key, state.group_id, state.leaf_index)
    state.update_keys[public_key] = private_key
    return Proposal(Update(signed))


def receive(
    state: GroupState, data: bytes, config: GroupConfig, resolver: PskResolver | None = None
) -> ReceiveResult:
    """Process one MLSMessage of this group (§6, §12.1, §12.4.2).

    Application data and proposals leave ``state`` the current state (with the
    ratchet step or the cached proposal recorded); a Commit, if valid, yields
    a new merged state. Our own pending Commit echoed back is merged as is.
    """
    try:
        message = MLSMessage.decode(data)
    except DecodeError:
        raise
    except (ValueError, KeyError, IndexError) as exc:  # malformed bytes never escape untyped
        raise DecodeError(f"malformed MLSMessage: {type(exc).__name__}") from None
    body = message.body
    if not isinstance(body, (PublicMessage, PrivateMessage)):
        raise ValidationError("only PublicMessage and PrivateMessage are received by a group")
    suite = state.suite
    pending = state.pending
    if pending is not None and data == pending.message:
        nxt = merge(state, pending.next_state, config)
        return ReceiveResult(ReceiveKind.COMMIT, data, nxt.epoch, Sender.member(state.leaf_index), nxt, own=True)
    if state.own_messages and message_digest(suite, data) in state.own_messages:
        return ReceiveResult(ReceiveKind.PROPOSAL, b"", state.epoch, Sender.member(state.leaf_index), state, own=True)
    if state.removed:
        raise GroupInactiveError("this member was removed from the group")

    authenticated = open_message(state, body)
    content = authenticated.content
    sender_key = _sender_key(state, content)
    if content.epoch == state.epoch and state.reinit is not None:  # §12.4.2: the group is not used anymore
        raise GroupInactiveError("the group was reinitialized (ReInit committed): it takes no more messages")
    if content.content_type == ContentType.APPLICATION:  # of this epoch, or late from a retained one
        assert isinstance(content.body, bytes)
        return ReceiveResult(
            ReceiveKind.APPLICATION,
            content.body,
            content.epoch,
            content.sender,
            state,
            content.authenticated_data,
            sender_key=sender_key,
        )
    if content.content_type == ContentType.PROPOSAL:
        proposal = content.body
        assert isinstance(proposal, Proposal)
        validate_proposal_sender(state, proposal, content.sender)
        check_proposal(state, proposal, content.sender, config.received_now())
        ref = proposal_ref(suite, authenticated)
        state.proposals[ref] = CachedProposal(ref, proposal, content.sender, verified=True)
        return ReceiveResult(
            ReceiveKind.PROPOSAL,
            proposal.encode(),
            state.epoch,
            content.sender,
            state,
            content.authenticated_data,
            sender_key=sender_key,
        )
    assert isinstance(content.body, Commit)
    staged = stage_commit(state, authenticated, config, resolver)
    if staged.next_state is None:  # removed from the group: keep the old epoch, marked removed
        state.removed = True
        state.pending = None
        return ReceiveResult(
            ReceiveKind.COMMIT,
            data,
            state.epoch,
            content.sender,
            state,
            content.authenticated_data,
            staged=staged,
            sender_key=sender_key,
        )
    nxt = merge(state, staged.next_state, config)
    return ReceiveResult(
        ReceiveKind.COMMIT,
        data,
        nxt.epoch,
        content.sender,
        nxt,
        content.authenticated_data,
        staged=staged,
        sender_key=sender_key,
    )


def _sender_key(state: GroupState, content: FramedContent) -> bytes | None:
    """The signature key that authenticated ``content`` (names the sender to the application)."""
    sender = content.sender
    body = content.body
    if sender.sender_type == SenderType.MEMBER and sender.index is not None:
        if content.epoch == state.epoch:
            return state.signature_key_of(sender.index)
        for past in state.past:
            if past.epoch == content.epoch:
                return past.signature_key_of(sender.index)
        return None
    if sender.sender_type == SenderType.EXTERNAL and sender.index is not None:
        senders = state.external_senders()
        return None if senders is None else senders.external_senders[sender.index].signature_key
    if isinstance(body, Commit) and body.path is not None:
        return body.path.leaf_node.signature_key
    if isinstance(body, Proposal) and isinstance(body.body, Add):
        return body.body.key_package.leaf_node.signature_key
    return None


def apply_pending_commit(state: GroupState, config: GroupConfig) -> GroupState:
    """Merge our pending Commit without waiting for it to come back (Web API ``applyPendingCommit``)."""
    if state.pending is None:
        raise ValidationError("no pending Commit")
    return merge(state, state.pending.next_state, config)
