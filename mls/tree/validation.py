"""Leaf node validation (RFC 9420 §7.3) and ratchet tree validation on join (§12.4.3.1).

Time is passed in, never read: ``now`` is seconds since the Unix epoch from
the caller's clock (``None`` skips the lifetime check, which §7.3 only
recommends for received leaves), so tests can pin the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from mls import tree_math
from mls.crypto import CipherSuite
from mls.crypto.signature import BatchVerifier, verify_serially
from mls.errors import ValidationError
from mls.tree.ratchet_tree import RatchetTree
from mls.wire.enums import ExtensionType, LeafNodeSource
from mls.wire.extensions import RequiredCapabilities
from mls.wire.tree import LeafNode, LeafNodeTBS

__all__ = [
    "DEFAULT_EXTENSION_TYPES",
    "check_leaf_node_content",
    "leaf_node_tbs",
    "sign_leaf_node",
    "validate_leaf_node",
    "validate_ratchet_tree",
    "verify_leaf_signature",
    "verify_leaf_signatures",
    "verify_parent_hashes",
]

#: Extension types that are "default" (§7.2) and so are never listed in capabilities.
DEFAULT_EXTENSION_TYPES = frozenset(
    {
        ExtensionType.APPLICATION_ID,
        ExtensionType.RATCHET_TREE,
        ExtensionType.REQUIRED_CAPABILITIES,
        ExtensionType.EXTERNAL_PUB,
        ExtensionType.EXTERNAL_SENDERS,
    }
)

_LEAF_NODE_TBS = b"LeafNodeTBS"


def leaf_node_tbs(leaf_node: LeafNode, group_id: bytes | None, leaf_index: int | None) -> bytes:
    """``LeafNodeTBS`` (§7.2): group context only for the update and commit sources."""
    if leaf_node.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
        return leaf_node.content_encoding()  # the LeafNodeTBS is the content alone
    if group_id is None or leaf_index is None:
        raise ValidationError("an update/commit LeafNode is signed with group_id and leaf_index")
    return LeafNodeTBS(leaf_node, group_id, leaf_index).encode()


def sign_leaf_node(
    cipher_suite: CipherSuite,
    leaf_node: LeafNode,
    signature_private_key: bytes,
    group_id: bytes | None = None,
    leaf_index: int | None = None,
) -> LeafNode:
    """Return ``leaf_node`` with ``SignWithLabel(., "LeafNodeTBS", LeafNodeTBS)`` set (§7.2)."""
    signature = cipher_suite.sign_with_label(
        signature_private_key, _LEAF_NODE_TBS, leaf_node_tbs(leaf_node, group_id, leaf_index)
    )
    return replace(leaf_node, signature=signature)


def verify_leaf_signature(
    cipher_suite: CipherSuite, leaf_node: LeafNode, group_id: bytes | None, leaf_index: int | None
) -> None:
    """Verify the LeafNode signature with its own ``signature_key`` (§7.3); ``SignatureError``."""
    cipher_suite.verify_with_label(
        leaf_node.signature_key,
        _LEAF_NODE_TBS,
        leaf_node_tbs(leaf_node, group_id, leaf_index),
        leaf_node.signature,
    )


def verify_leaf_signatures(
    tree: RatchetTree,
    leaves: Sequence[tuple[int, LeafNode]],
    group_id: bytes | None,
    verify_batch: BatchVerifier = verify_serially,
) -> None:
    """Verify the signatures of ``(leaf_index, LeafNode)`` pairs of ``tree`` in one batch (§7.3).

    ``verify_batch`` may verify them concurrently (``GroupConfig.verify_batch``).
    The first leaf found invalid raises what ``verify_leaf_signature`` raises
    for it (``SignatureError``; ``CryptoError`` for a malformed key).
    """
    cipher_suite = tree.cipher_suite
    checks = [(leaf.signature_key, leaf_node_tbs(leaf, group_id, index), leaf.signature) for index, leaf in leaves]
    results = cipher_suite.verify_with_label_many(_LEAF_NODE_TBS, checks, verify_batch)
    for (index, leaf), valid in zip(leaves, results):
        if not valid:  # the precise typed error, from the serial check
            verify_leaf_signature(cipher_suite, leaf, group_id, index)


def validate_leaf_node(
    tree: RatchetTree,
    leaf_node: LeafNode,
    *,
    source: LeafNodeSource | None,
    group_id: bytes | None,
    leaf_index: int | None = None,
    now: int | None = None,
    max_lifetime: int | None = None,
    required_capabilities: RequiredCapabilities | None = None,
    verified: bool = False,
) -> None:
    """Validate a LeafNode against the group's tree (§7.3).

    ``leaf_index`` is the leaf the node occupies or replaces (Update, Commit,
    or a leaf already in ``tree`` when validating a whole tree); ``None`` for
    a node about to be added. That leaf's current content is left out of the
    uniqueness and credential-support checks. ``source`` is the required
    ``leaf_node_source`` (``None`` accepts any, as in a received tree).
    ``verified``: the signature was verified before (a cached proposal, a
    batch of a tree's leaves) and is not verified again.
    Raises ``ValidationError``, or ``SignatureError`` for a bad signature.
    """
    if source is not None and leaf_node.leaf_node_source != source:
        raise ValidationError(f"leaf_node_source must be {source.name.lower()}")
    if not verified:
        verify_leaf_signature(tree.cipher_suite, leaf_node, group_id, leaf_index)
    check_leaf_node_content(
        leaf_node, now=now, max_lifetime=max_lifetime, required_capabilities=required_capabilities
    )

    replaced = tree.leaf(leaf_index) if leaf_index is not None else None
    _check_credential_support(tree, leaf_node, replaced)

    if replaced is not None and leaf_node.leaf_node_source in (LeafNodeSource.UPDATE, LeafNodeSource.COMMIT):
        if replaced is not leaf_node and leaf_node.encryption_key == replaced.encryption_key:
            raise ValidationError("LeafNode must carry a new encryption_key")

    own_signature = 1 if replaced is not None and replaced.signature_key == leaf_node.signature_key else 0
    if tree.signature_key_count(leaf_node.signature_key) > own_signature:
        raise ValidationError("LeafNode signature_key is already used by another member")
    own_encryption = 1 if replaced is not None and replaced.encryption_key == leaf_node.encryption_key else 0
    if tree.encryption_key_count(leaf_node.encryption_key) > own_encryption:
        raise ValidationError("LeafNode encryption_key already appears in the tree")


def check_leaf_node_content(
    leaf_node: LeafNode,
    *,
    now: int | None,
    max_lifetime: int | None = None,
    required_capabilities: RequiredCapabilities | None = None,
) -> None:
    """The checks of §7.3 that need neither the tree nor the signature.

    The capabilities cover the leaf's credential type and extensions, and
    the group's ``required_capabilities`` (§11.1); the lifetime covers
    ``now`` (None: not checked) and lasts at most ``max_lifetime``.
    """
    capabilities = leaf_node.capabilities
    credential_type = leaf_node.credential.credential_type
    if credential_type not in capabilities.credentials:
        raise ValidationError("LeafNode credential type is missing from its capabilities")
    for extension in leaf_node.extensions:
        kind = extension.extension_type
        if kind not in DEFAULT_EXTENSION_TYPES and kind not in capabilities.extensions:
            raise ValidationError(f"LeafNode extension {kind} is missing from its capabilities")
    if required_capabilities is not None:
        _check_required(leaf_node, required_capabilities)
    if leaf_node.lifetime is not None:
        lifetime = leaf_node.lifetime
        if max_lifetime is not None and lifetime.not_after - lifetime.not_before > max_lifetime:
            raise ValidationError("LeafNode lifetime is longer than the allowed maximum")
        if now is not None and not lifetime.not_before <= now <= lifetime.not_after:
            raise ValidationError("LeafNode lifetime does not cover the current time")


def _check_required(leaf_node: LeafNode, required: RequiredCapabilities) -> None:
    """§11.1: every required extension, proposal and credential type is supported."""
    capabilities = leaf_node.capabilities
    for kind in required.extension_types:
        if kind not in DEFAULT_EXTENSION_TYPES and kind not in capabilities.extensions:
            raise ValidationError(f"LeafNode lacks required extension type {kind}")
    for kind in required.proposal_types:
        if kind > 7 and kind not in capabilities.proposals:  # 1-7 are default (§7.2)
            raise ValidationError(f"LeafNode lacks required proposal type {kind}")
    for kind in required.credential_types:
        if kind not in capabilities.credentials:
            raise ValidationError(f"LeafNode lacks required credential type {kind}")


def _check_credential_support(tree: RatchetTree, leaf_node: LeafNode, replaced: LeafNode | None) -> None:
    """§7.3: the leaf's credential type is supported by every other member, and vice versa."""
    others = tree.member_count - (1 if replaced is not None else 0)
    credential_type = leaf_node.credential.credential_type
    support = tree.credential_type_support(credential_type)
    if replaced is not None and credential_type in replaced.capabilities.credentials:
        support -= 1
    if support < others:
        raise ValidationError(f"credential type {credential_type} is not supported by every member")
    supported = leaf_node.capabilities.credentials
    for kind in tree.credential_types_in_use():
        if kind in supported:
            continue
        in_use = tree.credential_type_usage(kind)
        if replaced is not None and replaced.credential.credential_type == kind:
            in_use -= 1
        if in_use > 0:
            raise ValidationError(f"LeafNode does not support credential type {kind} used in the group")


def verify_parent_hashes(tree: RatchetTree) -> None:
    """Check that every non-blank parent node is parent-hash valid (§7.9.2), top down.

    Each non-blank parent P must have exactly one descendant D, in the
    resolution of one of its children C, such that P's unmerged leaves under C
    are exactly the rest of that resolution and ``D.parent_hash`` equals the
    parent hash of P with the other child S as copath child. Chains then run
    from every parent down to a leaf. Raises ``ValidationError``.
    """
    for node_index, parent in tree.parents():
        unmerged = parent.unmerged_leaves
        valid = 0
        left, right = tree_math.left(node_index), tree_math.right(node_index)
        for child, sibling in ((left, right), (right, left)):
            below = _chain_node(tree, child, unmerged)
            if below is None:
                continue
            value = tree.node(below)
            assert value is not None
            if value.parent_hash is None:  # a leaf not set by a commit
                continue
            expected = tree.parent_hash(node_index, sibling, tree.original_tree_hash(sibling, unmerged))
            if value.parent_hash == expected:
                valid += 1
        if valid != 1:
            raise ValidationError(f"parent node {node_index} is not parent-hash valid")


def _chain_node(tree: RatchetTree, child: int, unmerged: tuple[int, ...]) -> int | None:
    """The node D of §7.9.2 under ``child``: its resolution minus the unmerged leaves, if one node."""
    leaves = tree_math.subtree_leaves(child)
    unmerged_here = {2 * leaf for leaf in unmerged if leaf in leaves}
    resolution = tree.resolution(child)
    if len(resolution) != len(unmerged_here) + 1:
        return None
    rest = [x for x in resolution if x not in unmerged_here]
    return rest[0] if len(rest) == 1 else None


def validate_ratchet_tree(
    tree: RatchetTree,
    *,
    group_id: bytes,
    tree_hash: bytes,
    now: int | None = None,
    max_lifetime: int | None = None,
    required_capabilities: RequiredCapabilities | None = None,
    verify_batch: BatchVerifier = verify_serially,
) -> None:
    """Verify the integrity of a received ratchet tree (§12.4.3.1), linear in its size.

    Tree hash equals ``tree_hash``; every leaf passes ``validate_leaf_node``
    (signatures with ``group_id``); every non-blank parent is parent-hash
    valid; unmerged leaves are sorted, are non-blank descendants and
    are recorded on every non-blank node between them and the parent; parent
    encryption keys are unique in the tree. The leaf signatures are verified
    in one batch through ``verify_batch``. Raises ``ValidationError`` (or
    ``SignatureError``, ``CryptoError`` for a malformed signature key).
    """
    if tree.tree_hash() != tree_hash:
        raise ValidationError("ratchet tree hash does not match the GroupContext tree_hash")
    members = list(tree.members())
    verify_leaf_signatures(tree, members, group_id, verify_batch)
    for leaf_index, leaf_node in members:
        validate_leaf_node(
            tree,
            leaf_node,
            source=None,
            group_id=group_id,
            leaf_index=leaf_index,
            now=now,
            max_lifetime=max_lifetime,
            required_capabilities=required_capabilities,
            verified=True,
        )
    verify_parent_hashes(tree)
    n = tree.leaf_count
    for node_index, parent in tree.parents():
        if tree.encryption_key_count(parent.encryption_key) != 1:
            raise ValidationError(f"encryption key of parent node {node_index} appears elsewhere in the tree")
        unmerged = parent.unmerged_leaves
        if any(a >= b for a, b in zip(unmerged, unmerged[1:])):
            raise ValidationError(f"unmerged_leaves of node {node_index} are not sorted")
        covered = tree_math.subtree_leaves(node_index)
        for leaf_index in unmerged:
            if leaf_index not in covered or tree.leaf(leaf_index) is None:
                raise ValidationError(f"unmerged leaf {leaf_index} of node {node_index} is not a member below it")
            x = tree_math.parent(2 * leaf_index, n)
            while x != node_index:
                between = tree.parent_node(x)
                if between is not None and leaf_index not in between.unmerged_leaves:
                    raise ValidationError(f"unmerged leaf {leaf_index} is missing from node {x}")
                x = tree_math.parent(x, n)
