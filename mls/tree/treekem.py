"""TreeKEM (RFC 9420 §7.4-§7.6, §12.4.1-§12.4.2): create and process UpdatePaths.

Creating a path is two steps because the provisional GroupContext used as
HPKE context contains the tree hash *after* the path is merged:

1. ``create_update_path(tree, ...)`` merges fresh keys and the signed leaf
   into ``tree`` and returns a ``PendingUpdatePath`` (secrets kept out of reprs);
2. after building the provisional GroupContext, ``pending.encrypt(tree,
   group_context, new_leaves)`` yields the wire ``UpdatePath``.

Processing mirrors it: ``apply_update_path`` merges the public part into
``tree`` (checks of §12.4.2), then ``decrypt_update_path`` recovers the path
secret with the member's ``TreeKEMPrivate`` and returns the commit secret.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field

from mls import tree_math
from mls.crypto import CipherSuite
from mls.errors import ValidationError
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.validation import sign_leaf_node
from mls.wire.crypto_structs import HPKECiphertext
from mls.wire.enums import LeafNodeSource
from mls.wire.proposals import UpdatePath, UpdatePathNode
from mls.wire.tree import LeafNode

__all__ = [
    "DecryptedPath",
    "PendingUpdatePath",
    "TreeKEMPrivate",
    "apply_update_path",
    "create_update_path",
    "decrypt_update_path",
    "derive_node_key_pair",
]

_UPDATE_PATH_NODE = b"UpdatePathNode"


def derive_node_key_pair(cipher_suite: CipherSuite, path_secret: bytes) -> tuple[bytes, bytes]:
    """``node_secret = DeriveSecret(path_secret, "node")``; ``DeriveKeyPair(node_secret)`` (§7.4)."""
    return cipher_suite.derive_key_pair(cipher_suite.derive_secret(path_secret, b"node"))


def _next_path_secret(cipher_suite: CipherSuite, path_secret: bytes) -> bytes:
    """``path_secret[n] = DeriveSecret(path_secret[n-1], "path")`` (§7.4)."""
    return cipher_suite.derive_secret(path_secret, b"path")


class TreeKEMPrivate:
    """A member's private view of the tree (§4.2): own leaf index and HPKE private keys.

    Keys are stored per node index with their public key, so a stale key is
    never used for a node whose public key changed. Key material never
    appears in ``repr``.
    """

    __slots__ = ("leaf_index", "_keys")

    def __init__(self, leaf_index: int) -> None:
        self.leaf_index = leaf_index
        self._keys: dict[int, tuple[bytes, bytes]] = {}

    @classmethod
    def for_leaf(cls, leaf_index: int, encryption_private_key: bytes, encryption_key: bytes) -> TreeKEMPrivate:
        """The view of a member that knows only its leaf key pair (e.g. just joined)."""
        view = cls(leaf_index)
        view.set_key(2 * leaf_index, encryption_private_key, encryption_key)
        return view

    def __repr__(self) -> str:
        return f"TreeKEMPrivate(leaf_index={self.leaf_index}, nodes={sorted(self._keys)})"

    def copy(self) -> TreeKEMPrivate:
        """An independent copy (key bytes are immutable and shared)."""
        other = TreeKEMPrivate(self.leaf_index)
        other._keys = dict(self._keys)
        return other

    def nodes(self) -> list[int]:
        """Node indices for which a private key is held."""
        return sorted(self._keys)

    def private_key(self, node_index: int) -> bytes | None:
        """The HPKE private key of a node, if held."""
        entry = self._keys.get(node_index)
        return None if entry is None else entry[0]

    def key_for(self, tree: RatchetTree, node_index: int) -> bytes | None:
        """The private key of a node if held and matching the node's current public key."""
        entry = self._keys.get(node_index)
        if entry is None:
            return None
        value = tree.node(node_index)
        if value is None or value.encryption_key != entry[1]:
            return None
        return entry[0]

    def set_key(self, node_index: int, private_key: bytes, public_key: bytes) -> None:
        """Record the key pair of a node."""
        self._keys[node_index] = (private_key, public_key)

    def set_path_secret(self, cipher_suite: CipherSuite, node_index: int, path_secret: bytes) -> bytes:
        """Derive a node's key pair from its path secret (§7.4), record it, return the public key."""
        private_key, public_key = derive_node_key_pair(cipher_suite, path_secret)
        self._keys[node_index] = (private_key, public_key)
        return public_key

    def check(self, tree: RatchetTree) -> None:
        """``ValidationError`` unless every held key matches a non-blank node of ``tree``."""
        for node_index, (_, public_key) in self._keys.items():
            if node_index >= tree.node_count:
                raise ValidationError(f"private key for node {node_index} outside the tree")
            value = tree.node(node_index)
            if value is None or value.encryption_key != public_key:
                raise ValidationError(f"private key for node {node_index} does not match the tree")
        if 2 * self.leaf_index not in self._keys:
            raise ValidationError("no private key for the own leaf")

    def prune(self, tree: RatchetTree) -> None:
        """Forget keys of nodes that were blanked, replaced or truncated away (§7.5 deletion)."""
        stale = [x for x in self._keys if x >= tree.node_count or self.key_for(tree, x) is None]
        for node_index in stale:
            del self._keys[node_index]

    def apply_path_secret(self, tree: RatchetTree, sender: int, path_secret: bytes) -> None:
        """Install the path secret a Welcome carries (§12.4.3.1).

        The secret belongs to the lowest common ancestor of the own leaf and
        the committer ``sender``; secrets for the nodes above it on the
        sender's filtered direct path are derived from it. Each derived public
        key must equal the tree's (``ValidationError`` otherwise).
        """
        cipher_suite = tree.cipher_suite
        ancestor = tree_math.common_ancestor(2 * self.leaf_index, 2 * sender)
        path = tree.filtered_direct_path(sender)
        if ancestor not in path:
            raise ValidationError("the common ancestor is not on the committer's filtered direct path")
        secret = path_secret
        for x in path[path.index(ancestor) :]:
            private_key, public_key = derive_node_key_pair(cipher_suite, secret)
            value = tree.node(x)
            if value is None or value.encryption_key != public_key:
                raise ValidationError(f"path secret does not match the public key of node {x}")
            self._keys[x] = (private_key, public_key)
            secret = _next_path_secret(cipher_suite, secret)


@dataclass(frozen=True)
class PendingUpdatePath:
    """A path merged into the committer's tree, not yet encrypted (§7.5, §12.4.1).

    ``nodes`` pairs each filtered-direct-path node with its copath child;
    ``path_secrets`` and ``commit_secret`` are secret and kept out of reprs.
    """

    sender: int
    leaf_node: LeafNode
    nodes: tuple[tuple[int, int], ...]
    encryption_keys: tuple[bytes, ...]
    path_secrets: tuple[bytes, ...] = field(repr=False)
    commit_secret: bytes = field(repr=False)
    private: TreeKEMPrivate = field(repr=False)

    def path_secret_for(self, leaf_index: int) -> bytes | None:
        """Path secret of the lowest common ancestor of the sender and a new member (§12.4.3.1).

        ``None`` when that ancestor is not on the filtered direct path.
        """
        ancestor = tree_math.common_ancestor(2 * self.sender, 2 * leaf_index)
        for (node_index, _), secret in zip(self.nodes, self.path_secrets):
            if node_index == ancestor:
                return secret
        return None

    def encrypt(self, tree: RatchetTree, group_context: bytes, new_leaves: Collection[int] = ()) -> UpdatePath:
        """Encrypt each path secret to the copath resolution (§7.6) and build the ``UpdatePath``.

        ``tree`` is the committer's new tree, ``group_context`` the encoded
        provisional GroupContext, ``new_leaves`` the leaves added by this
        Commit (excluded from the resolutions).
        """
        cipher_suite = tree.cipher_suite
        exclude = frozenset(new_leaves)
        recipients: list[tuple[bytes, bytes]] = []
        counts = []
        for (_, copath_child), secret in zip(self.nodes, self.path_secrets):
            resolution = tree.resolution(copath_child, exclude)
            for target in resolution:
                value = tree.node(target)
                assert value is not None
                recipients.append((value.encryption_key, secret))
            counts.append(len(resolution))
        ciphertexts = [
            HPKECiphertext(kem_output, ciphertext)
            for kem_output, ciphertext in cipher_suite.encrypt_with_label_many(_UPDATE_PATH_NODE, group_context, recipients)
        ]
        path_nodes = []
        start = 0
        for public_key, count in zip(self.encryption_keys, counts):
            path_nodes.append(UpdatePathNode(public_key, tuple(ciphertexts[start : start + count])))
            start += count
        return UpdatePath(self.leaf_node, tuple(path_nodes))


def create_update_path(
    tree: RatchetTree,
    sender: int,
    *,
    group_id: bytes,
    signature_private_key: bytes,
    leaf_template: LeafNode | None = None,
    leaf_secret: bytes | None = None,
) -> PendingUpdatePath:
    """Generate fresh path keys for ``sender`` and merge them into ``tree`` (§7.4, §7.5, §7.9).

    The new leaf keeps ``signature_key``, ``credential``, ``capabilities`` and
    ``extensions`` of ``leaf_template`` (default: the sender's current leaf),
    gets ``leaf_node_source = commit`` and the computed parent hash, and is
    signed with ``signature_private_key``. ``leaf_secret`` (default: random)
    seeds the leaf key pair and the path secrets:
    ``leaf key = DeriveKeyPair(DeriveSecret(leaf_secret, "node"))``,
    ``path_secret[0] = DeriveSecret(leaf_secret, "path")``.
    ``tree`` is modified in place.
    """
    cipher_suite = tree.cipher_suite
    template = leaf_template if leaf_template is not None else tree.leaf(sender)
    if template is None:
        raise ValidationError(f"no leaf template for blank leaf {sender}")
    if leaf_secret is None:
        leaf_secret = os.urandom(cipher_suite.Nh)

    path = tree.filtered_path(sender)
    private = TreeKEMPrivate(sender)
    leaf_private, leaf_public = derive_node_key_pair(cipher_suite, leaf_secret)
    private.set_key(2 * sender, leaf_private, leaf_public)
    secrets: list[bytes] = []
    public_keys: list[bytes] = []
    secret = _next_path_secret(cipher_suite, leaf_secret)
    for node_index, _ in path:
        secrets.append(secret)
        public_keys.append(private.set_path_secret(cipher_suite, node_index, secret))
        secret = _next_path_secret(cipher_suite, secret)
    commit_secret = secret

    parent_hash = tree.merge_path(sender, public_keys)
    unsigned = LeafNode(
        leaf_public,
        template.signature_key,
        template.credential,
        template.capabilities,
        LeafNodeSource.COMMIT,
        None,
        parent_hash,
        template.extensions,
    )
    leaf_node = sign_leaf_node(cipher_suite, unsigned, signature_private_key, group_id, sender)
    tree.set_leaf(sender, leaf_node)
    return PendingUpdatePath(
        sender, leaf_node, tuple(path), tuple(public_keys), tuple(secrets), commit_secret, private
    )


def apply_update_path(
    tree: RatchetTree, sender: int, update_path: UpdatePath, new_leaves: Collection[int] = ()
) -> None:
    """Merge a received UpdatePath into ``tree`` (§7.5, §12.4.2); ``ValidationError`` if invalid.

    Checks: ``leaf_node_source`` is commit; one UpdatePathNode per
    filtered-direct-path node, each with one ciphertext per member of the
    copath resolution (``new_leaves`` excluded); no new public key already in
    the tree; the leaf's ``parent_hash`` matches the recomputed one. The leaf
    node's own validation (§7.3, signature) is the caller's, before merging.
    ``tree`` is modified in place even on failure: pass a copy.
    """
    leaf_node = update_path.leaf_node
    if leaf_node.leaf_node_source != LeafNodeSource.COMMIT:
        raise ValidationError("UpdatePath leaf_node_source must be commit")
    path = tree.filtered_path(sender)
    if len(update_path.nodes) != len(path):
        raise ValidationError(
            f"UpdatePath has {len(update_path.nodes)} nodes, the filtered direct path {len(path)}"
        )
    exclude = frozenset(new_leaves)
    for (_, copath_child), path_node in zip(path, update_path.nodes):
        if len(path_node.encrypted_path_secret) != len(tree.resolution(copath_child, exclude)):
            raise ValidationError("UpdatePathNode ciphertext count differs from the copath resolution")
    keys = [leaf_node.encryption_key, *(node.encryption_key for node in update_path.nodes)]
    if len(set(keys)) != len(keys) or any(tree.encryption_key_count(key) for key in keys):
        raise ValidationError("UpdatePath public key already appears in the tree")
    parent_hash = tree.merge_path(sender, keys[1:])
    if leaf_node.parent_hash != parent_hash:
        raise ValidationError("UpdatePath leaf parent_hash does not match the tree")
    tree.set_leaf(sender, leaf_node)


@dataclass(frozen=True)
class DecryptedPath:
    """Result of ``decrypt_update_path``: the updated private view and the secrets (§12.4.2)."""

    private: TreeKEMPrivate = field(repr=False)
    path_secret: bytes = field(repr=False)
    commit_secret: bytes = field(repr=False)


def decrypt_update_path(
    tree: RatchetTree,
    private: TreeKEMPrivate,
    sender: int,
    update_path: UpdatePath,
    group_context: bytes,
    new_leaves: Collection[int] = (),
) -> DecryptedPath:
    """Decrypt a merged UpdatePath (§7.5 "decrypts the path secrets", §12.4.2).

    ``tree`` already holds the merged path (``apply_update_path``);
    ``group_context`` is the encoded provisional GroupContext. Finds the
    filtered-direct-path node whose copath child covers the own leaf, opens
    the ciphertext for the resolution node whose private key is held, derives
    the secrets above it and checks each derived public key against the
    UpdatePath. ``private`` is not modified; the new view is returned.
    Raises ``ValidationError`` or ``CryptoError``.
    """
    cipher_suite = tree.cipher_suite
    me = private.leaf_index
    if me == sender:
        raise ValidationError("a member does not decrypt its own UpdatePath")
    path = tree.filtered_path(sender)
    if len(path) != len(update_path.nodes):
        raise ValidationError("UpdatePath does not match the filtered direct path")
    position, copath_child = _covering_node(path, me)
    resolution = tree.resolution(copath_child, frozenset(new_leaves))
    ciphertexts = update_path.nodes[position].encrypted_path_secret
    if len(ciphertexts) != len(resolution):
        raise ValidationError("UpdatePathNode ciphertext count differs from the copath resolution")
    for target, ciphertext in zip(resolution, ciphertexts):
        private_key = private.key_for(tree, target)
        if private_key is not None:
            break
    else:
        raise ValidationError("no private key for any node of the copath resolution")
    path_secret = cipher_suite.decrypt_with_label(
        private_key, _UPDATE_PATH_NODE, group_context, ciphertext.kem_output, ciphertext.ciphertext
    )
    updated = private.copy()
    updated.prune(tree)
    secret = path_secret
    for (node_index, _), path_node in zip(path[position:], update_path.nodes[position:]):
        if updated.set_path_secret(cipher_suite, node_index, secret) != path_node.encryption_key:
            raise ValidationError(f"derived public key differs from the UpdatePath at node {node_index}")
        secret = _next_path_secret(cipher_suite, secret)
    return DecryptedPath(updated, path_secret, secret)


def _covering_node(path: list[tuple[int, int]], leaf_index: int) -> tuple[int, int]:
    """Position and copath child of the first path node whose copath child holds ``leaf_index``."""
    for position, (_, copath_child) in enumerate(path):
        if leaf_index in tree_math.subtree_leaves(copath_child):
            return position, copath_child
    raise ValidationError(f"leaf {leaf_index} is not covered by the sender's filtered direct path")
