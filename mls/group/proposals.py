"""Proposal validation (RFC 9420 §12.1, §12.2) and application to a provisional state (§12.3).

``resolve_proposals`` turns a Commit's ProposalOrRef list into proposals with
their senders; ``apply_proposals`` checks the list (regular or external
Commit) and applies it, in the order of §12.3, to a copy of the ratchet tree
and GroupContext extensions. Nothing of the current state is modified.
Proposals from the cache were checked on their own when they entered it
(``CachedProposal.verified``): their signatures are not verified again; the
others' signatures are verified once, in one batch (``GroupConfig.verify_batch``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mls.crypto import PROPOSAL_REF_LABEL, CipherSuite
from mls.crypto.signature import BatchVerifier, verify_serially
from mls.errors import ValidationError
from mls.group.state import GroupState, PublicView, required_capabilities_of
from mls.tree import DEFAULT_EXTENSION_TYPES, RatchetTree, leaf_node_tbs, validate_leaf_node
from mls.wire.enums import (
    LeafNodeSource,
    ProposalType,
    ProtocolVersion,
    PSKType,
    ResumptionPSKUsage,
    SenderType,
)
from mls.wire.extensions import Extension, ExternalSenders, RequiredCapabilities, find_extension
from mls.wire.enums import ExtensionType
from mls.wire.framing import AuthenticatedContent, Sender
from mls.wire.key_package import KeyPackage, KeyPackageTBS
from mls.wire.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    ReInit,
    Remove,
    UnknownProposal,
    Update,
)
from mls.wire.psk import PreSharedKeyID
from mls.wire.tree import LeafNode

__all__ = [
    "AppliedProposals",
    "ProposalEntry",
    "apply_proposals",
    "check_group_extensions",
    "check_proposal",
    "check_psk_id",
    "check_successor_credential",
    "supports_required",
    "proposal_ref",
    "resolve_proposals",
    "validate_key_package",
    "validate_proposal_sender",
    "verify_proposal_signatures",
]

_KEY_PACKAGE_TBS = b"KeyPackageTBS"
_LEAF_NODE_TBS = b"LeafNodeTBS"

#: Proposal types an ``external`` sender may send (§12.1.8).
_EXTERNAL_SENDER_TYPES = frozenset(
    {ProposalType.ADD, ProposalType.REMOVE, ProposalType.PSK, ProposalType.REINIT, ProposalType.GROUP_CONTEXT_EXTENSIONS}
)
#: Proposal types that require an UpdatePath (§12.4).
_PATH_REQUIRED = frozenset(
    {ProposalType.UPDATE, ProposalType.REMOVE, ProposalType.EXTERNAL_INIT, ProposalType.GROUP_CONTEXT_EXTENSIONS}
)
_DEFAULT_PROPOSAL_TYPES = frozenset(int(t) for t in ProposalType if t != ProposalType.RESERVED)


def proposal_ref(suite: CipherSuite, content: AuthenticatedContent) -> bytes:
    """``ProposalRef = RefHash("MLS 1.0 Proposal Reference", AuthenticatedContent)`` (§5.2)."""
    return suite.ref_hash(PROPOSAL_REF_LABEL, content.encode())


@dataclass(frozen=True)
class ProposalEntry:
    """A committed proposal with its sender; ``ref`` is None when it came by value.

    ``verified``: its signatures were verified already (``CachedProposal.verified``).
    """

    proposal: Proposal
    sender: Sender
    ref: bytes | None = None
    verified: bool = False


@dataclass
class AppliedProposals:
    """The provisional state after applying a proposal list (§12.3)."""

    tree: RatchetTree
    extensions: tuple[Extension, ...]
    added: list[tuple[int, KeyPackage]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    updated: list[tuple[int, LeafNode]] = field(default_factory=list)
    psks: list[PreSharedKeyID] = field(default_factory=list)
    external_init: ExternalInit | None = None
    reinit: ReInit | None = None
    path_required: bool = False


# --- individual checks ---------------------------------------------------------------------


def validate_key_package(
    suite: CipherSuite,
    key_package: KeyPackage,
    tree: RatchetTree | None,
    *,
    now: int | None,
    required: RequiredCapabilities | None = None,
    verified: bool = False,
) -> None:
    """KeyPackage validation (§10.1); with ``tree``, its leaf is checked against the group (§7.3).

    ``verified``: the KeyPackage and LeafNode signatures were verified before
    and are not verified again. Without ``tree`` the LeafNode signature is
    not verified at all.
    """
    _check_key_package_header(suite, key_package)
    leaf = key_package.leaf_node
    if not verified:
        suite.verify_with_label(leaf.signature_key, _KEY_PACKAGE_TBS, _key_package_tbs(key_package), key_package.signature)
    if leaf.encryption_key == key_package.init_key:
        raise ValidationError("KeyPackage init_key equals its leaf encryption_key")
    for extension in key_package.extensions:
        kind = extension.extension_type
        if kind not in DEFAULT_EXTENSION_TYPES and kind not in leaf.capabilities.extensions:
            raise ValidationError(f"KeyPackage extension {kind} is missing from its capabilities")
    if tree is not None:
        validate_leaf_node(
            tree,
            leaf,
            source=LeafNodeSource.KEY_PACKAGE,
            group_id=None,
            now=now,
            required_capabilities=required,
            verified=verified,
        )
    elif leaf.lifetime is not None and now is not None:
        if not leaf.lifetime.not_before <= now <= leaf.lifetime.not_after:
            raise ValidationError("KeyPackage lifetime does not cover the current time")


def _check_key_package_header(suite: CipherSuite, key_package: KeyPackage) -> None:
    """The checks of §10.1 done before any signature: version, cipher suite, leaf source."""
    if key_package.version != ProtocolVersion.MLS10:
        raise ValidationError("KeyPackage version is not mls10")
    if key_package.cipher_suite != suite.suite_id:
        raise ValidationError("KeyPackage cipher suite differs from the group's")
    if key_package.leaf_node.leaf_node_source != LeafNodeSource.KEY_PACKAGE:
        raise ValidationError("KeyPackage leaf_node_source must be key_package")


def check_successor_credential(old: LeafNode | None, new: LeafNode) -> None:
    """§5.3.1: a credential that replaces a member's (Update, a Commit's UpdatePath, an
    external "resync" Commit, §12.2) must be a valid successor of the old one.

    Policy: the credential stays the same, so no member can take another's identity.
    """
    if old is not None and new.credential != old.credential:
        raise ValidationError("a member's new LeafNode changes its credential (§5.3.1 successor check)")


def check_proposal(state: PublicView, proposal: Proposal, sender: Sender, now: int | None) -> None:
    """The checks of one proposal that need no Commit around it (§12.1), signatures included.

    KeyPackages (§10.1), Update leaves (§7.3) and their credential (§5.3.1),
    Remove targets (§12.1.3), PreSharedKey ids (§12.1.4), ReInit versions
    (§12.1.5). A proposal enters a cache (a member's or a ``PublicGroup``'s)
    only after these (``CachedProposal.verified``): a Commit that covers it
    does not verify its signatures again.
    """
    body = proposal.body
    tree = state.tree
    if isinstance(body, Add):
        validate_key_package(state.suite, body.key_package, tree, now=now, required=state.required_capabilities())
    elif isinstance(body, Update):
        if sender.sender_type != SenderType.MEMBER or sender.index is None:
            raise ValidationError("Update proposals come from members only")
        validate_leaf_node(
            tree,
            body.leaf_node,
            source=LeafNodeSource.UPDATE,
            group_id=state.group_id,
            leaf_index=sender.index,
            now=now,
            required_capabilities=state.required_capabilities(),
        )
        check_successor_credential(tree.leaf(sender.index), body.leaf_node)
    elif isinstance(body, Remove):
        if not 0 <= body.removed < tree.leaf_count or tree.leaf(body.removed) is None:
            raise ValidationError("Remove of a blank or missing leaf")
    elif isinstance(body, PreSharedKey):
        check_psk_id(state.suite, body.psk)
    elif isinstance(body, ReInit):
        if body.version < ProtocolVersion.MLS10:
            raise ValidationError("ReInit version is lower than the group's")


def validate_proposal_sender(state: GroupState, proposal: Proposal, sender: Sender) -> None:
    """Who may send which proposal (§12.1.2, §12.1.8): members, external senders, new members."""
    kind = proposal.proposal_type
    sender_type = sender.sender_type
    if sender_type == SenderType.MEMBER:
        if kind == ProposalType.EXTERNAL_INIT:
            raise ValidationError("ExternalInit is only valid in an external Commit")
        return
    if sender_type == SenderType.EXTERNAL:
        if kind not in _EXTERNAL_SENDER_TYPES:
            raise ValidationError(f"proposal type {kind} cannot be sent by an external sender")
        return
    if sender_type == SenderType.NEW_MEMBER_PROPOSAL:
        if kind != ProposalType.ADD:
            raise ValidationError("a new_member_proposal sender may only propose its own Add")
        return
    raise ValidationError("a new_member_commit sender sends no standalone proposals")


def check_psk_id(suite: CipherSuite, psk: PreSharedKeyID) -> None:
    """§12.1.4: nonce of length KDF.Nh; resumption PSKs with usage reinit/branch are invalid here."""
    if len(psk.psk_nonce) != suite.Nh:
        raise ValidationError("PreSharedKey psk_nonce must be KDF.Nh bytes")
    if psk.psktype == PSKType.RESUMPTION and psk.usage != ResumptionPSKUsage.APPLICATION:
        raise ValidationError("PreSharedKey proposal with resumption usage reinit/branch")


def supports_required(leaf: LeafNode, required: RequiredCapabilities) -> bool:
    """§11.1: the leaf's capabilities cover every required extension, proposal and credential type."""
    capabilities = leaf.capabilities
    return (
        all(k in DEFAULT_EXTENSION_TYPES or k in capabilities.extensions for k in required.extension_types)
        and all(k in _DEFAULT_PROPOSAL_TYPES or k in capabilities.proposals for k in required.proposal_types)
        and all(k in capabilities.credentials for k in required.credential_types)
    )


def check_group_extensions(leaves: Iterable[LeafNode], extensions: Sequence[Extension]) -> None:
    """§12.1.7, §11.1: every member's leaf supports the required capabilities and extensions."""
    kinds = [e.extension_type for e in extensions]
    if len(set(kinds)) != len(kinds):
        raise ValidationError("GroupContext extensions repeat a type")
    required = required_capabilities_of(tuple(extensions))
    senders = find_extension(extensions, ExtensionType.EXTERNAL_SENDERS)
    if senders is not None:
        ExternalSenders.from_extension(senders)  # must parse
    custom = [k for k in kinds if k not in DEFAULT_EXTENSION_TYPES]
    if required is None and not custom:
        return  # nothing any leaf must support
    for leaf in leaves:
        if required is not None and not supports_required(leaf, required):
            raise ValidationError("a member does not support the group's required capabilities")
        if any(k not in leaf.capabilities.extensions for k in custom):
            raise ValidationError("a member does not support a GroupContext extension")


# --- resolving and applying a list ---------------------------------------------------------


def resolve_proposals(state: GroupState, proposals: Iterable[ProposalOrRef], committer: Sender) -> list[ProposalEntry]:
    """Look up proposals by reference in the epoch's cache; by-value ones are the committer's (§12.4)."""
    entries: list[ProposalEntry] = []
    for item in proposals:
        body = item.body
        if isinstance(body, bytes):
            if committer.sender_type != SenderType.MEMBER:
                raise ValidationError("an external Commit cannot include proposals by reference")
            cached = state.proposals.get(body)
            if cached is None:
                raise ValidationError("Commit references an unknown proposal")
            entries.append(ProposalEntry(cached.proposal, cached.sender, cached.ref, cached.verified))
        else:
            entries.append(ProposalEntry(body, committer))
    return entries


def apply_proposals(
    state: GroupState,
    entries: Sequence[ProposalEntry],
    committer: Sender,
    *,
    now: int | None,
    verify_batch: BatchVerifier = verify_serially,
) -> AppliedProposals:
    """Validate a committed proposal list (§12.2) and apply it to a copy of the tree (§12.3).

    ``committer`` is ``Sender.member(i)`` or ``Sender.new_member_commit()``.
    Signatures of entries not ``verified`` are verified in one batch.
    Raises ``ValidationError`` (or ``SignatureError``) on an invalid list.
    """
    suite = state.suite
    external = committer.sender_type == SenderType.NEW_MEMBER_COMMIT
    by_type: dict[int, list[ProposalEntry]] = {}
    for entry in entries:
        by_type.setdefault(entry.proposal.proposal_type, []).append(entry)
        if not external:
            validate_proposal_sender(state, entry.proposal, entry.sender)

    if external:
        _check_external_list(by_type)
    else:
        _check_regular_list(state, by_type, committer)
    verify_proposal_signatures(suite, state.group_id, entries, verify_batch)  # all verified from here on

    # GroupContextExtensions first: the new extensions govern the rest (§12.3).
    extensions = state.context.extensions
    gce = by_type.get(ProposalType.GROUP_CONTEXT_EXTENSIONS, [])
    if gce:
        body = gce[0].proposal.body
        assert isinstance(body, GroupContextExtensions)
        extensions = body.extensions
    required = required_capabilities_of(extensions)
    tree = state.tree.copy()
    result = AppliedProposals(tree, extensions)

    for entry in by_type.get(ProposalType.UPDATE, []):
        update = entry.proposal.body
        assert isinstance(update, Update) and entry.sender.index is not None
        validate_leaf_node(
            state.tree,
            update.leaf_node,
            source=LeafNodeSource.UPDATE,
            group_id=state.group_id,
            leaf_index=entry.sender.index,
            now=now,
            required_capabilities=required,
            verified=True,
        )
        check_successor_credential(state.tree.leaf(entry.sender.index), update.leaf_node)
        tree.update_leaf(entry.sender.index, update.leaf_node)
        result.updated.append((entry.sender.index, update.leaf_node))

    for entry in by_type.get(ProposalType.REMOVE, []):
        remove = entry.proposal.body
        assert isinstance(remove, Remove)
        if not 0 <= remove.removed < tree.leaf_count or tree.leaf(remove.removed) is None:
            raise ValidationError("Remove of a blank or missing leaf")
        tree.remove_leaf(remove.removed)
        result.removed.append(remove.removed)

    for entry in by_type.get(ProposalType.ADD, []):
        add = entry.proposal.body
        assert isinstance(add, Add)
        validate_key_package(suite, add.key_package, tree, now=now, required=required, verified=True)
        result.added.append((tree.add_leaf(add.key_package.leaf_node), add.key_package))

    for entry in entries:
        body = entry.proposal.body
        if isinstance(body, PreSharedKey):
            check_psk_id(suite, body.psk)
            result.psks.append(body.psk)
        elif isinstance(body, ExternalInit):
            result.external_init = body
        elif isinstance(body, ReInit):
            if body.version < ProtocolVersion.MLS10:
                raise ValidationError("ReInit version is lower than the group's")
            result.reinit = body
        elif isinstance(body, UnknownProposal):
            for leaf_index, leaf in tree.members():
                if body.proposal_type not in leaf.capabilities.proposals:
                    raise ValidationError(f"proposal type {body.proposal_type} is not supported by every member")

    if len({psk.encode() for psk in result.psks}) != len(result.psks):
        raise ValidationError("Commit repeats a PreSharedKeyID")
    if gce or result.added:
        check_group_extensions((leaf for _, leaf in tree.members()), extensions)
    result.path_required = not entries or any(e.proposal.proposal_type in _PATH_REQUIRED for e in entries)
    return result


def _key_package_tbs(key_package: KeyPackage) -> bytes:
    return KeyPackageTBS(key_package).encode()


def verify_proposal_signatures(
    suite: CipherSuite,
    group_id: bytes,
    entries: Sequence[ProposalEntry],
    verify_batch: BatchVerifier = verify_serially,
) -> None:
    """Verify the signatures of the Adds (KeyPackage and LeafNode, §10.1) and Updates
    (LeafNode, §7.3) not ``verified`` yet, in one batch per label.

    A signature found invalid raises what the serial check raises for it
    (``SignatureError``; ``CryptoError`` for a malformed key). A LeafNode of
    the wrong ``leaf_node_source`` is left to the checks that refuse it.
    """
    checks: dict[bytes, list[tuple[bytes, bytes, bytes]]] = {_KEY_PACKAGE_TBS: [], _LEAF_NODE_TBS: []}
    for entry in entries:
        body = entry.proposal.body
        if entry.verified:
            continue
        if isinstance(body, Add):
            key_package = body.key_package
            try:
                _check_key_package_header(suite, key_package)
            except ValidationError:
                continue  # refused by validate_key_package, before any signature
            leaf = key_package.leaf_node
            checks[_KEY_PACKAGE_TBS].append((leaf.signature_key, _key_package_tbs(key_package), key_package.signature))
            checks[_LEAF_NODE_TBS].append((leaf.signature_key, leaf_node_tbs(leaf, None, None), leaf.signature))
        elif isinstance(body, Update) and entry.sender.index is not None:
            leaf = body.leaf_node
            if leaf.leaf_node_source == LeafNodeSource.UPDATE:
                tbs = leaf_node_tbs(leaf, group_id, entry.sender.index)
                checks[_LEAF_NODE_TBS].append((leaf.signature_key, tbs, leaf.signature))
    for label, items in checks.items():
        if items:
            for item, valid in zip(items, suite.verify_with_label_many(label, items, verify_batch)):
                if not valid:  # the precise typed error, from the serial check
                    suite.verify_with_label(item[0], label, item[1], item[2])


def _check_regular_list(state: GroupState, by_type: dict[int, list[ProposalEntry]], committer: Sender) -> None:
    """The regular-Commit rules of §12.2 that do not need the provisional tree."""
    if ProposalType.EXTERNAL_INIT in by_type:
        raise ValidationError("a regular Commit cannot contain ExternalInit")
    if len(by_type.get(ProposalType.GROUP_CONTEXT_EXTENSIONS, [])) > 1:
        raise ValidationError("Commit contains several GroupContextExtensions")
    if ProposalType.REINIT in by_type and sum(len(v) for v in by_type.values()) > 1:
        raise ValidationError("ReInit must be the only proposal of a Commit")
    touched: set[int] = set()
    for entry in by_type.get(ProposalType.UPDATE, []):
        if entry.sender.sender_type != SenderType.MEMBER or entry.sender.index is None:
            raise ValidationError("Update proposals come from members only")
        if entry.sender.index == committer.index:
            raise ValidationError("Commit contains an Update from the committer")
        if entry.sender.index in touched:
            raise ValidationError("several Updates/Removes for one leaf")
        touched.add(entry.sender.index)
    for entry in by_type.get(ProposalType.REMOVE, []):
        removed = entry.proposal.body
        assert isinstance(removed, Remove)
        if removed.removed == committer.index:
            raise ValidationError("Commit removes the committer")
        if removed.removed in touched:
            raise ValidationError("several Updates/Removes for one leaf")
        touched.add(removed.removed)
    keys = set()
    for entry in by_type.get(ProposalType.ADD, []):
        add = entry.proposal.body
        assert isinstance(add, Add)
        key = add.key_package.leaf_node.signature_key
        if key in keys:
            raise ValidationError("two Adds for the same client")
        keys.add(key)


def _check_external_list(by_type: dict[int, list[ProposalEntry]]) -> None:
    """§12.2 for external Commits: one ExternalInit, at most one Remove, PSKs, nothing else."""
    if len(by_type.get(ProposalType.EXTERNAL_INIT, [])) != 1:
        raise ValidationError("an external Commit needs exactly one ExternalInit")
    if len(by_type.get(ProposalType.REMOVE, [])) > 1:
        raise ValidationError("an external Commit has at most one Remove")
    allowed = {ProposalType.EXTERNAL_INIT, ProposalType.REMOVE, ProposalType.PSK}
    if any(kind not in allowed for kind in by_type):
        raise ValidationError("an external Commit contains a proposal other than ExternalInit, Remove, PSK")
