"""Commits: create, stage (validate), merge (RFC 9420 §12.4).

A Commit is never applied in place. ``create_commit`` builds the next
epoch's state next to the current one and keeps it as the member's
``PendingCommit``; ``stage_commit`` validates a received Commit completely
(§12.4.2: proposal list, UpdatePath, transcript, confirmation tag) into a
``StagedCommit``; ``merge`` links a next state to its predecessor (past
epochs, resumption PSKs). Only a fully valid Commit produces a next state.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from mls.errors import CommitConflictError, ValidationError
from mls.group.config import GroupConfig
from mls.group.framing import protect, sign_content
from mls.group.group_info import build_group_info
from mls.group.proposal_selection import ProposalSelection
from mls.group.proposals import (
    AppliedProposals,
    ProposalEntry,
    apply_proposals,
    check_successor_credential,
    resolve_proposals,
)
from mls.group.psk import PskResolver, gather_psks, psk_secret_of
from mls.group.state import GroupState, PendingCommit, PublicView, required_capabilities_of
from mls.group.welcome import build_welcome
from mls.key_schedule import EpochSecrets, external_init_receiver
from mls.transcript import interim_transcript_hash, update_transcript_hashes
from mls.tree import (
    RatchetTree,
    TreeKEMPrivate,
    apply_update_path,
    create_update_path,
    decrypt_update_path,
    validate_leaf_node,
)
from mls.wire.enums import LeafNodeSource, SenderType
from mls.wire.framing import AuthenticatedContent, FramedContent, FramedContentAuthData, Sender
from mls.wire.group_context import GroupContext
from mls.wire.messages import MLSMessage
from mls.wire.proposals import Commit, Proposal, ProposalOrRef, ReInit, UpdatePath
from mls.wire.psk import PreSharedKeyID

__all__ = ["StagedCommit", "create_commit", "merge", "merge_received_path", "new_epoch_state", "stage_commit"]


@dataclass
class StagedCommit:
    """A received Commit that passed every check of §12.4.2, ready to merge.

    ``next_state`` is None when the Commit removes this member (it cannot
    derive the new epoch and must stop using the group).
    """

    committer: Sender
    committer_leaf: int
    proposals: list[ProposalEntry]
    added: list[int]
    removed: list[int]
    reinit: ReInit | None
    next_state: GroupState | None = field(repr=False)

    @property
    def removed_self(self) -> bool:
        return self.next_state is None


def new_epoch_state(
    prev: GroupState,
    context: GroupContext,
    tree: RatchetTree,
    private: TreeKEMPrivate,
    secrets: EpochSecrets,
    confirmation_tag: bytes,
    config: GroupConfig,
    reinit: ReInit | None = None,
) -> GroupState:
    """The state of the epoch a Commit starts, not yet linked to ``prev`` (see ``merge``)."""
    suite = prev.suite
    return GroupState(
        suite=suite,
        context=context,
        tree=tree,
        private=private,
        signature_private_key=prev.signature_private_key,
        secrets=secrets,
        interim_transcript_hash=interim_transcript_hash(suite, context.confirmed_transcript_hash, confirmation_tag),
        confirmation_tag=confirmation_tag,
        secret_tree=config.secret_tree(secrets, tree.leaf_count),
        reinit=reinit,
        padding_block=config.padding_block,
    )


def merge(prev: GroupState, nxt: GroupState, config: GroupConfig) -> GroupState:
    """Make ``nxt`` the current state: retain ``prev`` as a past epoch (§15.3) and its resumption PSKs (§8.6)."""
    past = [prev.as_past_epoch(), *prev.past] if config.past_epochs > 0 else []
    nxt.past = past[: config.past_epochs]
    resumption = dict(prev.resumption_psks)
    resumption[nxt.epoch] = nxt.secrets.resumption_psk
    for epoch in sorted(resumption)[: max(0, len(resumption) - config.resumption_epochs)]:
        del resumption[epoch]
    nxt.resumption_psks = resumption
    nxt.padding_block = config.padding_block
    return nxt


# --- processing (§12.4.2) ---------------------------------------------------------------------


def stage_commit(
    state: GroupState,
    authenticated: AuthenticatedContent,
    config: GroupConfig,
    resolver: PskResolver | None = None,
) -> StagedCommit:
    """Validate a received Commit of the current epoch (§12.4.2); the current state is unchanged."""
    content = authenticated.content
    commit = content.body
    if not isinstance(commit, Commit):
        raise ValidationError("not a Commit")
    suite = state.suite
    sender = content.sender
    external = sender.sender_type == SenderType.NEW_MEMBER_COMMIT
    if sender.sender_type == SenderType.MEMBER:
        assert sender.index is not None
        committer_leaf = sender.index
        if committer_leaf == state.leaf_index:
            raise ValidationError("a Commit from this member that is not its pending Commit")
    elif not external:
        raise ValidationError("Commits come from members or new members (new_member_commit)")

    entries = resolve_proposals(state, commit.proposals, sender)
    now = config.received_now()
    applied = apply_proposals(state, entries, sender, now=now, verify_batch=config.verify_batch)
    if commit.path is None and (applied.path_required or external):
        raise ValidationError("this Commit requires an UpdatePath")
    tree = applied.tree
    if external:
        committer_leaf = tree.free_leaf()
        if committer_leaf == tree.leaf_count:
            tree.extend()
    added = [leaf for leaf, _ in applied.added]
    me = state.leaf_index
    staged = StagedCommit(sender, committer_leaf, entries, added, applied.removed, applied.reinit, None)
    extensions = applied.extensions
    if commit.path is not None:  # validated and merged even by a member the Commit removes (§12.4.2)
        merge_received_path(state, applied, committer_leaf, commit.path, external=external, now=now)
    if me in applied.removed:
        return staged

    private = state.private.copy()
    for leaf_index, leaf in applied.updated:
        if leaf_index == me:
            key = state.update_keys.get(leaf.encryption_key)
            if key is None:
                raise ValidationError("Commit applies an Update of ours whose key we do not hold")
            private.set_key(2 * me, key, leaf.encryption_key)

    if commit.path is not None:
        commit_secret, private = _decrypt_path(state, tree, private, committer_leaf, commit.path, added, extensions)
    else:
        private.prune(tree)
        commit_secret = bytes(suite.Nh)

    psk_secret = psk_secret_of(suite, gather_psks(state, applied.psks, resolver))
    if applied.external_init is not None:
        init_secret = external_init_receiver(
            suite, state.secrets.external_key_pair()[0], applied.external_init.kem_output
        )
    else:
        init_secret = state.secrets.init_secret
    confirmed, _ = update_transcript_hashes(suite, state.interim_transcript_hash, authenticated)
    context = GroupContext(suite.suite_id, state.group_id, state.epoch + 1, tree.tree_hash(), confirmed, extensions)
    secrets = EpochSecrets.from_init_secret(suite, init_secret, commit_secret, psk_secret, context.encode())
    tag = authenticated.auth.confirmation_tag
    if tag is None or not secrets.verify_confirmation_tag(confirmed, tag):
        raise ValidationError("Commit confirmation_tag does not verify")
    staged.next_state = new_epoch_state(state, context, tree, private, secrets, tag, config, applied.reinit)
    return staged


def merge_received_path(
    state: PublicView,
    applied: AppliedProposals,
    committer_leaf: int,
    path: UpdatePath,
    *,
    external: bool,
    now: int | None,
) -> None:
    """Validate a received UpdatePath and merge it into ``applied.tree`` (§7.5, §12.4.2).

    The committer's new credential must succeed the one it replaces (§5.3.1:
    its own leaf, or for an external "resync" Commit the removed leaf, §12.2);
    the LeafNode is validated (§7.3) under the Commit's new extensions; the
    path's keys and parent hash are checked as it is merged (§7.9.2). Needs
    no secret: members and the keyless ``PublicGroup`` share it.
    """
    if external:
        replaced = state.tree.leaf(applied.removed[0]) if applied.removed else None
    else:
        replaced = state.tree.leaf(committer_leaf)
    check_successor_credential(replaced, path.leaf_node)
    validate_leaf_node(
        applied.tree,
        path.leaf_node,
        source=LeafNodeSource.COMMIT,
        group_id=state.group_id,
        leaf_index=committer_leaf,
        now=now,
        required_capabilities=required_capabilities_of(applied.extensions),
    )
    apply_update_path(applied.tree, committer_leaf, path, [leaf for leaf, _ in applied.added])


def _decrypt_path(
    state: GroupState,
    tree: RatchetTree,
    private: TreeKEMPrivate,
    committer_leaf: int,
    path: UpdatePath,
    added: list[int],
    extensions: tuple,  # type: ignore[type-arg]
) -> tuple[bytes, TreeKEMPrivate]:
    """Decrypt our path secret from a merged UpdatePath (§12.4.2): ``(commit_secret, private)``."""
    provisional = GroupContext(
        state.suite.suite_id,
        state.group_id,
        state.epoch + 1,
        tree.tree_hash(),
        state.context.confirmed_transcript_hash,
        extensions,
    )
    decrypted = decrypt_update_path(tree, private, committer_leaf, path, provisional.encode(), added)
    return decrypted.commit_secret, decrypted.private


# --- creation (§12.4.1) ---------------------------------------------------------------------


def _select_proposals(
    state: GroupState, by_value: Sequence[Proposal], include_cached: bool, config: GroupConfig
) -> tuple[list[ProposalEntry], AppliedProposals]:
    """The by-value proposals (which must be valid together) plus every cached proposal that
    keeps the list valid (§12.4), each checked once against those before it (``ProposalSelection``)."""
    me = Sender.member(state.leaf_index)
    now = config.now()
    own = [ProposalEntry(proposal, me) for proposal in by_value]
    applied = apply_proposals(state, own, me, now=now, verify_batch=config.verify_batch)
    if not include_cached or not state.proposals:
        return own, applied
    own = [replace(entry, verified=True) for entry in own]  # verified just now
    selection = ProposalSelection(state, me, own, now)
    for cached in state.proposals.values():
        selection.offer(ProposalEntry(cached.proposal, cached.sender, cached.ref, cached.verified))
    if not selection.chosen:
        return own, applied
    entries = [*selection.chosen, *own]
    return entries, apply_proposals(state, entries, me, now=now)


def create_commit(
    state: GroupState,
    config: GroupConfig,
    *,
    by_value: Sequence[Proposal] = (),
    include_cached: bool = True,
    force_path: bool | None = None,
    resolver: PskResolver | None = None,
    authenticated_data: bytes = b"",
    injected_psks: Sequence[tuple[PreSharedKeyID, bytes]] = (),
) -> PendingCommit:
    """Create a Commit of cached and by-value proposals (§12.4.1) and keep it pending in ``state``.

    Returns the ``PendingCommit``: the MLSMessage to send, the Welcome for
    added members, the new epoch's GroupInfo and ratchet tree. ``state``
    itself only records the pending Commit (and, for a PrivateMessage, the
    handshake ratchet step it used).

    ``injected_psks`` enter the key schedule and the Welcome without a
    PreSharedKey proposal: the ``reinit`` (or ``branch``) resumption PSK of a
    new group's first Commit, which no proposal may carry (§11.2, §11.3).
    """
    state.check_active()
    if state.pending is not None:
        raise CommitConflictError("a Commit is already pending: merge it, or discard it first")
    if injected_psks and state.epoch != 0:
        raise ValidationError("only a new group's first Commit injects PSKs without a proposal (§11.2, §11.3)")
    suite = state.suite
    me = state.leaf_index
    entries, applied = _select_proposals(state, by_value, include_cached, config)
    tree = applied.tree
    added = [leaf for leaf, _ in applied.added]
    extensions = applied.extensions
    use_path = applied.path_required or (config.always_path if force_path is None else force_path)
    if applied.path_required and force_path is False:
        raise ValidationError("these proposals require an UpdatePath")

    pending_path = None
    update_path = None
    if use_path:
        pending_path = create_update_path(
            tree, me, group_id=state.group_id, signature_private_key=state.signature_private_key
        )
        provisional = GroupContext(
            suite.suite_id, state.group_id, state.epoch + 1, tree.tree_hash(), state.context.confirmed_transcript_hash, extensions
        )
        update_path = pending_path.encrypt(tree, provisional.encode(), added)
        private = pending_path.private
        commit_secret = pending_path.commit_secret
    else:
        private = state.private.copy()
        private.prune(tree)
        commit_secret = bytes(suite.Nh)

    psks = [*injected_psks, *gather_psks(state, applied.psks, resolver)]
    psk_secret = psk_secret_of(suite, psks)
    proposal_list = tuple(
        ProposalOrRef(entry.ref) if entry.ref is not None else ProposalOrRef(entry.proposal) for entry in entries
    )
    wire_format = config.handshake_wire_format
    content = FramedContent(
        state.group_id, state.epoch, Sender.member(me), authenticated_data, Commit(proposal_list, update_path)
    )
    signature = sign_content(state, wire_format, content)
    partial = AuthenticatedContent(wire_format, content, FramedContentAuthData(signature, b""))
    confirmed, _ = update_transcript_hashes(suite, state.interim_transcript_hash, partial)
    context = GroupContext(suite.suite_id, state.group_id, state.epoch + 1, tree.tree_hash(), confirmed, extensions)
    secrets = EpochSecrets.from_init_secret(suite, state.secrets.init_secret, commit_secret, psk_secret, context.encode())
    tag = secrets.confirmation_tag(confirmed)
    message = protect(state, content, FramedContentAuthData(signature, tag), wire_format)
    next_state = new_epoch_state(state, context, tree, private, secrets, tag, config, applied.reinit)

    group_info = build_group_info(
        next_state, ratchet_tree=config.ratchet_tree_in_group_info, external_pub=config.external_pub
    )
    welcome = None
    if applied.added:
        welcome_info = group_info
        if config.ratchet_tree_in_welcome != config.ratchet_tree_in_group_info:
            welcome_info = build_group_info(
                next_state, ratchet_tree=config.ratchet_tree_in_welcome, external_pub=config.external_pub
            )
        path_secret_for = pending_path.path_secret_for if pending_path is not None else None
        welcome = build_welcome(next_state, welcome_info, applied.added, [psk for psk, _ in psks], path_secret_for)
    pending = PendingCommit(
        message=message.encode(),
        next_state=next_state,
        welcome=MLSMessage(welcome).encode() if welcome is not None else None,
        group_info=MLSMessage(group_info).encode(),
        tree_apart=welcome is not None and not config.ratchet_tree_in_welcome,
    )
    state.pending = pending
    return pending


def fresh_nonce(state: GroupState) -> bytes:
    """A random ``psk_nonce`` of ``KDF.Nh`` bytes (§12.1.4)."""
    return os.urandom(state.suite.Nh)
