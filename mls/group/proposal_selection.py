"""Choosing the cached proposals a Commit covers (RFC 9420 §12.2, §12.4).

A committer includes its own by-value proposals and every cached proposal
that keeps the list valid; a cached proposal that is invalid together with
those chosen before it is left out (§12.4 SHOULD). ``ProposalSelection``
checks each candidate against a summary of the list so far (signature and
encryption keys, leaves updated or removed, credential support, the
GroupContext extensions, PSK ids, ReInit), so choosing among P cached
proposals costs O(P) checks, not P applications of the whole list, and
verifies no signature again: cached proposals were verified when they
entered the cache (``CachedProposal.verified``). A GroupContextExtensions
or unknown-type candidate is checked against every member, O(N) once.

The checks are those of ``apply_proposals`` or stricter, never more
lenient, so the chosen list always applies. Stricter only where exact
bookkeeping would cost O(N) per candidate: the keys of parent nodes blanked
by a Remove or Update are not counted as freed, and an Update's new leaf must
support the group's extensions even in a Commit that adds no one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace

from mls.errors import MLSError, ValidationError
from mls.group.proposals import (
    ProposalEntry,
    check_group_extensions,
    check_psk_id,
    check_successor_credential,
    supports_required,
    validate_key_package,
    validate_proposal_sender,
)
from mls.group.state import GroupState, required_capabilities_of
from mls.tree import DEFAULT_EXTENSION_TYPES, check_leaf_node_content, validate_leaf_node, verify_leaf_signature
from mls.wire.enums import LeafNodeSource, ProtocolVersion, SenderType
from mls.wire.extensions import Extension
from mls.wire.framing import Sender
from mls.wire.key_package import KeyPackage
from mls.wire.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    ReInit,
    Remove,
    UnknownProposal,
    Update,
)
from mls.wire.tree import LeafNode

__all__ = ["ProposalSelection"]


class ProposalSelection:
    """The proposal list of a regular Commit being created, grown one valid proposal at a time.

    ``own`` are the committer's by-value proposals, already checked together
    (``apply_proposals``); ``offer`` adds a cached proposal if the list stays
    valid (§12.2). ``chosen`` holds the accepted ones in order, each marked
    ``verified``.
    """

    def __init__(self, state: GroupState, committer: Sender, own: Sequence[ProposalEntry], now: int | None) -> None:
        self._state = state
        self._committer = committer
        self._now = now
        self.chosen: list[ProposalEntry] = []
        self._count = 0
        self._reinit = False
        self._gce = False
        self._extensions: tuple[Extension, ...] = state.context.extensions
        self._required = required_capabilities_of(self._extensions)
        #: every leaf of the provisional tree was checked against the current extensions
        self._group_checked = False
        self._touched: set[int] = set()
        self._removed: set[int] = set()
        self._updated: dict[int, LeafNode] = {}
        self._added: list[LeafNode] = []
        # changes to the tree's own counters made by the list so far (§7.3 bookkeeping)
        self._members = state.tree.member_count
        self._signature_keys: Counter[bytes] = Counter()
        self._encryption_keys: Counter[bytes] = Counter()
        self._in_use: Counter[int] = Counter()
        self._supported: Counter[int] = Counter()
        self._psks: set[bytes] = set()
        self._unknown: set[int] = set()
        for entry in own:
            self._take(entry)

    def offer(self, entry: ProposalEntry) -> bool:
        """Append ``entry`` if the list stays valid with it (§12.2); False leaves it out (§12.4)."""
        try:
            self._check(entry)
        except MLSError:  # invalid together with the others, or on its own
            return False
        if not entry.verified:  # its signatures were verified by _check
            entry = replace(entry, verified=True)
        self._take(entry)
        self.chosen.append(entry)
        return True

    # --- checks ------------------------------------------------------------------------

    def _check(self, entry: ProposalEntry) -> None:
        proposal, sender = entry.proposal, entry.sender
        body = proposal.body
        validate_proposal_sender(self._state, proposal, sender)  # type: ignore[arg-type]
        if self._reinit or (isinstance(body, ReInit) and self._count):
            raise ValidationError("ReInit must be the only proposal of a Commit")
        if isinstance(body, Add):
            self._check_add(body.key_package, entry.verified)
        elif isinstance(body, Update):
            self._check_update(sender, body.leaf_node, entry.verified)
        elif isinstance(body, Remove):
            self._check_remove(body.removed)
        elif isinstance(body, GroupContextExtensions):
            self._check_extensions(body.extensions)
        elif isinstance(body, PreSharedKey):
            check_psk_id(self._state.suite, body.psk)
            if body.psk.encode() in self._psks:
                raise ValidationError("Commit repeats a PreSharedKeyID")
        elif isinstance(body, ReInit):
            if body.version < ProtocolVersion.MLS10:
                raise ValidationError("ReInit version is lower than the group's")
        elif isinstance(body, ExternalInit):
            raise ValidationError("a regular Commit cannot contain ExternalInit")
        elif isinstance(body, UnknownProposal):
            for leaf in self._leaves():
                if body.proposal_type not in leaf.capabilities.proposals:
                    raise ValidationError(f"proposal type {body.proposal_type} is not supported by every member")

    def _check_add(self, key_package: KeyPackage, verified: bool) -> None:
        """§10.1, §7.3 against the provisional tree: no key of the new leaf is in use."""
        suite = self._state.suite
        leaf = key_package.leaf_node
        validate_key_package(suite, key_package, None, now=self._now, verified=verified)
        if not verified:
            verify_leaf_signature(suite, leaf, None, None)
        check_leaf_node_content(leaf, now=self._now, required_capabilities=self._required)
        if self._signature_key_count(leaf.signature_key):
            raise ValidationError("two Adds for the same client, or an Add of a member's signature key")
        if self._encryption_key_count(leaf.encryption_key):
            raise ValidationError("LeafNode encryption_key already appears in the tree")
        self._check_credential_support(leaf, None)
        self._check_group_support(leaf)
        if not self._group_checked:  # an Add makes every member subject to the extensions (§12.2)
            check_group_extensions(self._leaves(), self._extensions)
            self._group_checked = True

    def _check_update(self, sender: Sender, leaf: LeafNode, verified: bool) -> None:
        """§12.2: one Update/Remove per leaf, never the committer's; §7.3 against the tree and the list."""
        state = self._state
        index = sender.index
        if sender.sender_type != SenderType.MEMBER or index is None:
            raise ValidationError("Update proposals come from members only")
        if index == self._committer.index:
            raise ValidationError("Commit contains an Update from the committer")
        if index in self._touched:
            raise ValidationError("several Updates/Removes for one leaf")
        old = self._member(index)
        validate_leaf_node(
            state.tree,
            leaf,
            source=LeafNodeSource.UPDATE,
            group_id=state.group_id,
            leaf_index=index,
            now=self._now,
            required_capabilities=self._required,
            verified=verified,
        )
        check_successor_credential(old, leaf)
        if self._signature_key_count(leaf.signature_key) > (old.signature_key == leaf.signature_key):
            raise ValidationError("LeafNode signature_key is already used by another member")
        if self._encryption_key_count(leaf.encryption_key) > (old.encryption_key == leaf.encryption_key):
            raise ValidationError("LeafNode encryption_key already appears in the tree")
        self._check_credential_support(leaf, old)
        self._check_group_support(leaf)

    def _check_remove(self, removed: int) -> None:
        if removed == self._committer.index:
            raise ValidationError("Commit removes the committer")
        if removed in self._touched:
            raise ValidationError("several Updates/Removes for one leaf")
        self._member(removed)

    def _check_extensions(self, extensions: tuple[Extension, ...]) -> None:
        """§12.1.7: one GroupContextExtensions per Commit; every member (added ones too) supports it."""
        if self._gce:
            raise ValidationError("Commit contains several GroupContextExtensions")
        check_group_extensions(self._leaves(), extensions)

    def _check_credential_support(self, leaf: LeafNode, replaced: LeafNode | None) -> None:
        """§7.3: every other member supports the leaf's credential type, and the leaf supports theirs."""
        tree = self._state.tree
        kind = leaf.credential.credential_type
        others = self._members - (replaced is not None)
        support = tree.credential_type_support(kind) + self._supported[kind]
        if replaced is not None and kind in replaced.capabilities.credentials:
            support -= 1
        if support < others:
            raise ValidationError(f"credential type {kind} is not supported by every member")
        supported = leaf.capabilities.credentials
        for used in tree.credential_types_in_use() | set(self._in_use):
            if used in supported:
                continue
            usage = tree.credential_type_usage(used) + self._in_use[used]
            if replaced is not None and replaced.credential.credential_type == used:
                usage -= 1
            if usage > 0:
                raise ValidationError(f"LeafNode does not support credential type {used} used in the group")

    def _check_group_support(self, leaf: LeafNode) -> None:
        """A new leaf supports the group's required capabilities, extensions and chosen proposal types."""
        capabilities = leaf.capabilities
        if self._required is not None and not supports_required(leaf, self._required):
            raise ValidationError("a new leaf does not support the group's required capabilities")
        for extension in self._extensions:
            kind = extension.extension_type
            if kind not in DEFAULT_EXTENSION_TYPES and kind not in capabilities.extensions:
                raise ValidationError("a new leaf does not support a GroupContext extension")
        if any(kind not in capabilities.proposals for kind in self._unknown):
            raise ValidationError("a new leaf does not support a proposal type of the Commit")

    # --- the provisional state ----------------------------------------------------------

    def _member(self, leaf_index: int) -> LeafNode:
        """The current member at ``leaf_index``; ``ValidationError`` if blank or outside the tree."""
        tree = self._state.tree
        leaf = tree.leaf(leaf_index) if 0 <= leaf_index < tree.leaf_count else None
        if leaf is None:
            raise ValidationError("Update or Remove of a blank or missing leaf")
        return leaf

    def _leaves(self) -> Iterator[LeafNode]:
        """Every leaf of the provisional tree: members not removed (updated ones replaced), then the added."""
        removed, updated = self._removed, self._updated
        for leaf_index, leaf in self._state.tree.members():
            if leaf_index not in removed:
                yield updated.get(leaf_index, leaf)
        yield from self._added

    def _signature_key_count(self, key: bytes) -> int:
        return self._state.tree.signature_key_count(key) + self._signature_keys[key]

    def _encryption_key_count(self, key: bytes) -> int:
        return self._state.tree.encryption_key_count(key) + self._encryption_keys[key]

    def _count_leaf(self, leaf: LeafNode, sign: int) -> None:
        self._members += sign
        self._signature_keys[leaf.signature_key] += sign
        self._encryption_keys[leaf.encryption_key] += sign
        self._in_use[leaf.credential.credential_type] += sign
        for kind in set(leaf.capabilities.credentials):
            self._supported[kind] += sign

    def _take(self, entry: ProposalEntry) -> None:
        """Record a proposal of the list in the summary the checks read."""
        self._count += 1
        body = entry.proposal.body
        if isinstance(body, Add):
            leaf = body.key_package.leaf_node
            self._count_leaf(leaf, +1)
            self._added.append(leaf)
        elif isinstance(body, Update):
            index = entry.sender.index
            assert index is not None
            self._count_leaf(self._member(index), -1)
            self._count_leaf(body.leaf_node, +1)
            self._touched.add(index)
            self._updated[index] = body.leaf_node
        elif isinstance(body, Remove):
            self._count_leaf(self._member(body.removed), -1)
            self._touched.add(body.removed)
            self._removed.add(body.removed)
        elif isinstance(body, GroupContextExtensions):
            self._gce = True
            self._extensions = body.extensions
            self._required = required_capabilities_of(body.extensions)
            self._group_checked = True  # _check_extensions checked every leaf (own ones: apply_proposals)
        elif isinstance(body, PreSharedKey):
            self._psks.add(body.psk.encode())
        elif isinstance(body, ReInit):
            self._reinit = True
        elif isinstance(body, UnknownProposal):
            self._unknown.add(body.proposal_type)
