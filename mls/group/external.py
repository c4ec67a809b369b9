"""Joining by external Commit (RFC 9420 §12.4.3.2, §8.3).

The joiner takes a GroupInfo with an ``external_pub`` extension, derives the
``init_secret`` with HPKE export (ExternalInit), places itself at the
leftmost free leaf and sends a Commit with a path, signed as
``new_member_commit``. Existing members process it with ``stage_commit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mls.crypto import cipher_suite
from mls.errors import ValidationError
from mls.group.config import GroupConfig
from mls.group.framing import protect, sign_content
from mls.group.group_info import build_group_info, external_pub_of, verified_ratchet_tree
from mls.group.proposals import ProposalEntry, apply_proposals, check_successor_credential
from mls.group.psk import PskResolver, gather_psks, psk_secret_of
from mls.group.state import GroupState
from mls.key_schedule import EpochSecrets, external_init_sender
from mls.message_protection import MessageProtection
from mls.secret_tree import SecretTree
from mls.transcript import interim_transcript_hash, update_transcript_hashes
from mls.tree import RatchetTree, TreeKEMPrivate, create_update_path
from mls.wire.enums import WireFormat
from mls.wire.framing import AuthenticatedContent, FramedContent, FramedContentAuthData, Sender
from mls.wire.group_context import GroupContext
from mls.wire.messages import MLSMessage
from mls.wire.proposals import Commit, ExternalInit, PreSharedKey, Proposal, ProposalOrRef, Remove
from mls.wire.psk import PreSharedKeyID
from mls.wire.tree import LeafNode
from mls.wire.welcome import GroupInfo

__all__ = ["ExternalJoin", "external_proposal", "join_by_external_commit"]


@dataclass
class ExternalJoin:
    """The joiner's new state and the Commit (MLSMessage bytes) to send to the group."""

    state: GroupState = field(repr=False)
    commit: bytes
    group_info: bytes
    ratchet_tree: bytes


def join_by_external_commit(
    group_info: GroupInfo,
    leaf_template: LeafNode,
    signature_private_key: bytes,
    config: GroupConfig,
    *,
    ratchet_tree: RatchetTree | bytes | None = None,
    psk_ids: Sequence[PreSharedKeyID] = (),
    resolver: PskResolver | None = None,
    resync_leaf: int | None = None,
    authenticated_data: bytes = b"",
) -> ExternalJoin:
    """Build an external Commit from a GroupInfo and the joiner's state after it (§12.4.3.2).

    ``leaf_template`` supplies signature key, credential, capabilities and
    extensions of the new leaf. ``resync_leaf`` removes an old appearance of
    the joiner ("resync", §12.4.3.2).
    """
    suite = cipher_suite(group_info.group_context.cipher_suite)
    context = group_info.group_context
    tree = verified_ratchet_tree(suite, group_info, ratchet_tree, config.received_now(), config.verify_batch)
    kem_output, init_secret = external_init_sender(suite, external_pub_of(group_info))

    proposals: list[Proposal] = [Proposal(ExternalInit(kem_output))]
    if resync_leaf is not None:
        proposals.append(Proposal(Remove(resync_leaf)))
    proposals.extend(Proposal(PreSharedKey(psk)) for psk in psk_ids)
    joiner = Sender.new_member_commit()
    # A stand-in state of the epoch as the GroupInfo describes it, for validation.
    observed = _observed_state(group_info, tree, signature_private_key, config)
    applied = apply_proposals(observed, [ProposalEntry(p, joiner) for p in proposals], joiner, now=config.now())
    if resync_leaf is not None:  # the members check the same (§12.2)
        check_successor_credential(tree.leaf(resync_leaf), leaf_template)
    new_tree = applied.tree
    my_leaf = new_tree.free_leaf()
    if my_leaf == new_tree.leaf_count:
        new_tree.extend()
    pending_path = create_update_path(
        new_tree,
        my_leaf,
        group_id=context.group_id,
        signature_private_key=signature_private_key,
        leaf_template=leaf_template,
    )
    provisional = GroupContext(
        suite.suite_id, context.group_id, context.epoch + 1, new_tree.tree_hash(), context.confirmed_transcript_hash, applied.extensions
    )
    update_path = pending_path.encrypt(new_tree, provisional.encode())
    psks = gather_psks(None, applied.psks, resolver)
    content = FramedContent(
        context.group_id,
        context.epoch,
        joiner,
        authenticated_data,
        Commit(tuple(ProposalOrRef(p) for p in proposals), update_path),
    )
    wire_format = WireFormat.MLS_PUBLIC_MESSAGE  # §12.1.8: no keys for a PrivateMessage yet
    signature = sign_content(observed, wire_format, content)
    interim_before = interim_transcript_hash(suite, context.confirmed_transcript_hash, group_info.confirmation_tag)
    partial = AuthenticatedContent(wire_format, content, FramedContentAuthData(signature, b""))
    confirmed, _ = update_transcript_hashes(suite, interim_before, partial)
    new_context = GroupContext(
        suite.suite_id, context.group_id, context.epoch + 1, new_tree.tree_hash(), confirmed, applied.extensions
    )
    secrets = EpochSecrets.from_init_secret(
        suite, init_secret, pending_path.commit_secret, psk_secret_of(suite, psks), new_context.encode()
    )
    tag = secrets.confirmation_tag(confirmed)
    message = protect(observed, content, FramedContentAuthData(signature, tag), wire_format)
    state = GroupState(
        suite=suite,
        context=new_context,
        tree=new_tree,
        private=pending_path.private,
        signature_private_key=signature_private_key,
        secrets=secrets,
        interim_transcript_hash=interim_transcript_hash(suite, confirmed, tag),
        confirmation_tag=tag,
        secret_tree=config.secret_tree(secrets, new_tree.leaf_count),
        resumption_psks={new_context.epoch: secrets.resumption_psk},
        padding_block=config.padding_block,
    )
    info = build_group_info(state, ratchet_tree=config.ratchet_tree_in_group_info, external_pub=config.external_pub)
    return ExternalJoin(state, message.encode(), MLSMessage(info).encode(), new_tree.encode())


def _observed_state(group_info: GroupInfo, tree: RatchetTree, signature_private_key: bytes, config: GroupConfig) -> GroupState:
    """A key-less GroupState of the GroupInfo's epoch: enough to validate and frame the external Commit."""
    suite = tree.cipher_suite
    context = group_info.group_context
    dummy = bytes(suite.Nh)
    secrets = EpochSecrets.from_joiner_secret(suite, dummy, None, context.encode())
    if group_info.signer >= tree.leaf_count:
        raise ValidationError("GroupInfo signer is outside the tree")
    return GroupState(
        suite=suite,
        context=context,
        tree=tree,
        private=TreeKEMPrivate(group_info.signer),
        signature_private_key=signature_private_key,
        secrets=secrets,
        interim_transcript_hash=b"",
        confirmation_tag=group_info.confirmation_tag,
        secret_tree=SecretTree(suite, dummy, tree.leaf_count),
        padding_block=config.padding_block,
    )


def external_proposal(
    context: GroupContext,
    sender_index: int,
    proposal: Proposal,
    signature_private_key: bytes,
    authenticated_data: bytes = b"",
) -> bytes:
    """A proposal from an ``external`` sender listed in ``external_senders`` (§12.1.8.1), as a PublicMessage."""
    suite = cipher_suite(context.cipher_suite)
    content = FramedContent(context.group_id, context.epoch, Sender.external(sender_index), authenticated_data, proposal)
    return MLSMessage(MessageProtection(suite, context).protect_public(content, signature_private_key)).encode()
