"""The public ratchet tree (RFC 9420 §4.1, §7): array representation with cached hashes.

Nodes live in a flat array (Appendix C): leaf ``L`` at index ``2*L``, parent
nodes at odd indices; the tree always has a power-of-two number of leaves
(§7.7). Blank nodes are ``None``.

Tree hashes (§7.8) are cached per node and invalidated along the direct path of
a changed node only, so a commit costs O(log n) hashes plus the (amortized)
hashes of a newly grown blank subtree. Key and credential bookkeeping needed by
leaf node validation (§7.3) is kept in counters updated on every change, so
uniqueness and credential-support checks are O(1). The encoding of each node
(§12.4.3.3 ``optional<Node>``) is cached the same way, so encoding the tree
again after a change only encodes the changed nodes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace

from mls import tree_math
from mls.crypto import CipherSuite
from mls.errors import ValidationError
from mls.wire.codec import encode_varint
from mls.wire.tree import (
    LeafNode,
    LeafNodeHashInput,
    ParentHashInput,
    ParentNode,
    ParentNodeHashInput,
    TreeHashInput,
)
from mls.wire.tree import RatchetTreeExtension

__all__ = ["NodeValue", "RatchetTree"]

#: The content of a non-blank node: a ``LeafNode`` at even, a ``ParentNode`` at odd indices.
NodeValue = LeafNode | ParentNode


class RatchetTree:
    """The public state of a group's ratchet tree (§4.1, §7) for one cipher suite.

    Mutating methods change the tree in place; callers that must not change
    state on failure work on ``copy()`` (cheap: O(n) pointer copies, no hashing).
    """

    __slots__ = (
        "cipher_suite",
        "_nodes",
        "_hashes",
        "_chunks",
        "_encoding",
        "_encryption_keys",
        "_signature_keys",
        "_credentials_in_use",
        "_credentials_supported",
        "_members",
    )

    def __init__(self, cipher_suite: CipherSuite, nodes: Sequence[NodeValue | None]) -> None:
        """Build a tree from an array of node values; pads with blanks to a full width.

        Raises ``ValidationError`` if a leaf position holds a ``ParentNode``
        or a parent position a ``LeafNode``, or if the array is empty.
        """
        if not nodes:
            raise ValidationError("a ratchet tree has at least one leaf")
        width = 1
        while width < len(nodes):
            width = 2 * width + 1
        self.cipher_suite = cipher_suite
        self._nodes: list[NodeValue | None] = [None] * width
        self._hashes: list[bytes | None] = [None] * width
        #: per node, its ``optional<Node>`` encoding once computed; the whole tree's encoding
        self._chunks: list[bytes | None] = [None] * width
        self._encoding: bytes | None = None
        self._encryption_keys: Counter[bytes] = Counter()
        self._signature_keys: Counter[bytes] = Counter()
        self._credentials_in_use: Counter[int] = Counter()
        self._credentials_supported: Counter[int] = Counter()
        self._members = 0
        for index, value in enumerate(nodes):
            if value is None:
                continue
            expected = LeafNode if index % 2 == 0 else ParentNode
            if not isinstance(value, expected):
                raise ValidationError(f"node {index} must be a {expected.__name__}")
            self._nodes[index] = value
            self._count(value, index, +1)

    # --- construction and (de)serialization (§12.4.3.3) ---------------------------------

    @classmethod
    def create(cls, cipher_suite: CipherSuite, leaf_node: LeafNode) -> RatchetTree:
        """The one-member tree of a new group (§11): a single leaf."""
        return cls(cipher_suite, [leaf_node])

    @classmethod
    def decode(cls, cipher_suite: CipherSuite, data: bytes) -> RatchetTree:
        """Parse the ``ratchet_tree`` extension form ``optional<Node> ratchet_tree<V>``.

        Per §12.4.3.3 the last entry must be non-blank; the array is then
        extended to the right with the fewest blanks giving a full tree.
        Raises ``DecodeError`` on malformed bytes, ``ValidationError`` on a
        well-formed but impossible tree.
        """
        return cls.from_extension(cipher_suite, RatchetTreeExtension.decode(data))

    @classmethod
    def from_extension(cls, cipher_suite: CipherSuite, extension: RatchetTreeExtension) -> RatchetTree:
        """Build a tree from a decoded ``ratchet_tree`` extension (§12.4.3.3 rules)."""
        if not extension.nodes or extension.nodes[-1] is None:
            raise ValidationError("ratchet_tree: the last node must not be blank")
        return cls(cipher_suite, extension.nodes)

    def to_extension(self) -> RatchetTreeExtension:
        """The ``ratchet_tree`` extension content, trailing blanks removed (§12.4.3.3)."""
        nodes = self._nodes
        last = len(nodes) - 1
        while last > 0 and nodes[last] is None:
            last -= 1
        return RatchetTreeExtension(tuple(nodes[: last + 1]))

    def encode(self) -> bytes:
        """The ``ratchet_tree`` extension data: ``optional<Node> ratchet_tree<V>`` (cached)."""
        encoding = self._encoding
        if encoding is None:
            nodes, chunks = self._nodes, self._chunks
            last = len(nodes) - 1
            while last > 0 and nodes[last] is None:
                last -= 1
            for x in range(last + 1):
                if chunks[x] is None:
                    value = nodes[x]
                    if value is None:
                        chunks[x] = b"\x00"
                    else:  # present, node_type (leaf 1 at even, parent 2 at odd indices), body
                        chunks[x] = (b"\x01\x02" if x % 2 else b"\x01\x01") + value.encode()
            body = b"".join(chunks[: last + 1])  # type: ignore[arg-type]
            encoding = self._encoding = encode_varint(len(body)) + body
        return encoding

    def copy(self) -> RatchetTree:
        """An independent copy sharing the (immutable) node values and hash cache entries."""
        other = RatchetTree.__new__(RatchetTree)
        other.cipher_suite = self.cipher_suite
        other._nodes = list(self._nodes)
        other._hashes = list(self._hashes)
        other._chunks = list(self._chunks)
        other._encoding = self._encoding
        other._encryption_keys = Counter(self._encryption_keys)
        other._signature_keys = Counter(self._signature_keys)
        other._credentials_in_use = Counter(self._credentials_in_use)
        other._credentials_supported = Counter(self._credentials_supported)
        other._members = self._members
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RatchetTree):
            return NotImplemented
        return self.cipher_suite is other.cipher_suite and self._nodes == other._nodes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RatchetTree(suite={self.cipher_suite.suite_id}, leaves={self.leaf_count}, members={self._members})"

    # --- shape and access ----------------------------------------------------------------

    @property
    def leaf_count(self) -> int:
        """Number of leaves (a power of two), blank ones included."""
        return (len(self._nodes) + 1) // 2

    @property
    def node_count(self) -> int:
        """Number of nodes in the array (``2 * leaf_count - 1``)."""
        return len(self._nodes)

    @property
    def member_count(self) -> int:
        """Number of non-blank leaves."""
        return self._members

    @property
    def root(self) -> int:
        """Node index of the root."""
        return tree_math.root(self.leaf_count)

    def node(self, node_index: int) -> NodeValue | None:
        """The value at ``node_index`` (``None`` if blank); ``ValidationError`` if out of range."""
        self._check_node(node_index)
        return self._nodes[node_index]

    def leaf(self, leaf_index: int) -> LeafNode | None:
        """The ``LeafNode`` at ``leaf_index`` (``None`` if blank); ``ValidationError`` if out of range."""
        self._check_leaf(leaf_index)
        value = self._nodes[2 * leaf_index]
        assert value is None or isinstance(value, LeafNode)
        return value

    def parent_node(self, node_index: int) -> ParentNode | None:
        """The ``ParentNode`` at odd ``node_index`` (``None`` if blank)."""
        self._check_node(node_index)
        if node_index % 2 == 0:
            raise ValidationError(f"node {node_index} is a leaf, not a parent")
        value = self._nodes[node_index]
        assert value is None or isinstance(value, ParentNode)
        return value

    def members(self) -> Iterator[tuple[int, LeafNode]]:
        """``(leaf_index, LeafNode)`` for every non-blank leaf, left to right."""
        for index in range(0, len(self._nodes), 2):
            value = self._nodes[index]
            if value is not None:
                assert isinstance(value, LeafNode)
                yield index // 2, value

    def parents(self) -> Iterator[tuple[int, ParentNode]]:
        """``(node_index, ParentNode)`` for every non-blank parent node."""
        for index in range(1, len(self._nodes), 2):
            value = self._nodes[index]
            if value is not None:
                assert isinstance(value, ParentNode)
                yield index, value

    def direct_path(self, node_index: int) -> list[int]:
        """Direct path of a node, leaf to root (§4.1.2)."""
        self._check_node(node_index)
        return tree_math.direct_path(node_index, self.leaf_count)

    def copath(self, node_index: int) -> list[int]:
        """Copath of a node, leaf to root (§4.1.2)."""
        self._check_node(node_index)
        return tree_math.copath(node_index, self.leaf_count)

    # --- key and credential bookkeeping (§7.3) -----------------------------------------

    def encryption_key_count(self, key: bytes) -> int:
        """How many nodes (leaf or parent) hold ``key`` as their encryption key."""
        return self._encryption_keys[key]

    def signature_key_count(self, key: bytes) -> int:
        """How many leaves hold ``key`` as their signature key."""
        return self._signature_keys[key]

    def credential_types_in_use(self) -> set[int]:
        """Credential types of the current members' credentials."""
        return {kind for kind, count in self._credentials_in_use.items() if count}

    def credential_type_usage(self, credential_type: int) -> int:
        """How many members have a credential of ``credential_type``."""
        return self._credentials_in_use[credential_type]

    def credential_type_support(self, credential_type: int) -> int:
        """How many members list ``credential_type`` in ``capabilities.credentials``."""
        return self._credentials_supported[credential_type]

    def _count(self, value: NodeValue, index: int, sign: int) -> None:
        # c[k] = c.get(k, 0) + sign, not c[k] += sign: a new key would call Counter.__missing__
        keys = self._encryption_keys
        keys[value.encryption_key] = keys.get(value.encryption_key, 0) + sign
        if index % 2 == 0:
            assert isinstance(value, LeafNode)
            keys = self._signature_keys
            keys[value.signature_key] = keys.get(value.signature_key, 0) + sign
            in_use, credential_type = self._credentials_in_use, value.credential.credential_type
            in_use[credential_type] = in_use.get(credential_type, 0) + sign
            supported = self._credentials_supported
            for kind in set(value.capabilities.credentials):
                supported[kind] = supported.get(kind, 0) + sign
            self._members += sign

    # --- resolution and filtered direct path (§4.1.1, §4.1.2) --------------------------

    def resolution(self, node_index: int, exclude: frozenset[int] | set[int] = frozenset()) -> list[int]:
        """Resolution of a node as node indices (§4.1.1), leaving out the leaves in ``exclude``.

        ``exclude`` holds leaf indices (e.g. members added by the current
        Commit, which §7.6 leaves out of UpdatePath encryption).
        """
        self._check_node(node_index)
        nodes = self._nodes
        result: list[int] = []
        append = result.append
        stack = [node_index]
        pop, push = stack.pop, stack.append
        while stack:
            x = pop()
            value = nodes[x]
            if value is not None:
                if not x & 1:
                    if x >> 1 not in exclude:
                        append(x)
                else:
                    assert isinstance(value, ParentNode)
                    append(x)
                    result.extend(2 * leaf for leaf in value.unmerged_leaves if leaf not in exclude)
            elif x & 1:  # a blank parent
                start, stop = tree_math.subtree_nodes(x)
                if not any(nodes[start + 1 : stop : 2]):  # no parent below: its non-blank leaves
                    result.extend(i for i in range(start, stop, 2) if nodes[i] is not None and i >> 1 not in exclude)
                else:  # its children (x -/+ 2^(level-1)), left first
                    half = 1 << ((x ^ (x + 1)).bit_length() - 2)
                    push(x + half)
                    push(x - half)
        return result

    def has_nonempty_resolution(self, node_index: int) -> bool:
        """True if the resolution of ``node_index`` is non-empty: some node of its subtree is non-blank."""
        start, stop = tree_math.subtree_nodes(node_index)
        return any(self._nodes[start:stop])  # node values are objects, never false

    def filtered_path(self, leaf_index: int) -> list[tuple[int, int]]:
        """``(node, copath child)`` pairs of the filtered direct path of a leaf (§4.1.2).

        A direct-path node is kept when its child on the leaf's copath has a
        non-empty resolution (unmerged leaves count).
        """
        self._check_leaf(leaf_index)
        n = self.leaf_count
        x = 2 * leaf_index
        return [
            (parent, sibling)
            for parent, sibling in zip(tree_math.direct_path(x, n), tree_math.copath(x, n))
            if self.has_nonempty_resolution(sibling)
        ]

    def filtered_direct_path(self, leaf_index: int) -> list[int]:
        """Filtered direct path of a leaf as node indices, leaf to root (§4.1.2)."""
        return [parent for parent, _ in self.filtered_path(leaf_index)]

    # --- tree hash (§7.8) and parent hash (§7.9) ------------------------------------------

    def tree_hash(self, node_index: int | None = None) -> bytes:
        """Tree hash of the subtree under ``node_index`` (default: the root), cached (§7.8)."""
        if node_index is None:
            node_index = self.root
        else:
            self._check_node(node_index)
        return self._tree_hash(node_index)

    def _tree_hash(self, x: int) -> bytes:
        cached = self._hashes[x]
        if cached is not None:
            return cached
        if x % 2 == 0:
            digest = self._leaf_hash(x // 2, self._nodes[x])
        else:
            left = self._tree_hash(tree_math.left(x))
            right = self._tree_hash(tree_math.right(x))
            digest = self._parent_tree_hash(self._nodes[x], left, right)
        self._hashes[x] = digest
        return digest

    def _leaf_hash(self, leaf_index: int, value: NodeValue | None) -> bytes:
        """Hash(TreeHashInput{leaf, LeafNodeHashInput{leaf_index, optional<LeafNode>}})."""
        assert value is None or isinstance(value, LeafNode)
        if value is None:
            return self.cipher_suite.hash(TreeHashInput(LeafNodeHashInput(leaf_index, None)).encode())
        # node_type leaf (1), uint32 leaf_index, present (1), the LeafNode's (cached) encoding
        return self.cipher_suite.hash(b"\x01" + leaf_index.to_bytes(4, "big") + b"\x01" + value.encode())

    def _parent_tree_hash(self, value: NodeValue | None, left: bytes, right: bytes) -> bytes:
        """Hash(TreeHashInput{parent, ParentNodeHashInput{optional<ParentNode>, left, right}})."""
        assert value is None or isinstance(value, ParentNode)
        if value is None:  # node_type parent (2), absent (0), opaque left_hash<V>, opaque right_hash<V>
            return self.cipher_suite.hash(
                b"\x02\x00" + encode_varint(len(left)) + left + encode_varint(len(right)) + right
            )
        return self.cipher_suite.hash(TreeHashInput(ParentNodeHashInput(value, left, right)).encode())

    def original_tree_hash(self, node_index: int, removed_leaves: Sequence[int]) -> bytes:
        """Tree hash of a subtree with ``removed_leaves`` blanked and dropped from unmerged lists.

        This is the ``original_sibling_tree_hash`` of §7.9 for a parent whose
        ``unmerged_leaves`` are ``removed_leaves``. Subtrees holding none of
        them reuse the cached hash, so the cost is O(|removed| * log n).
        """
        removed = [leaf for leaf in removed_leaves if leaf in tree_math.subtree_leaves(node_index)]
        if not removed:
            return self._tree_hash(node_index)
        return self._original_hash(node_index, frozenset(removed))

    def _original_hash(self, x: int, removed: frozenset[int]) -> bytes:
        leaves = tree_math.subtree_leaves(x)
        if not any(leaf in leaves for leaf in removed):
            return self._tree_hash(x)
        if x % 2 == 0:
            return self._leaf_hash(x // 2, None)
        value = self._nodes[x]
        if value is not None:
            assert isinstance(value, ParentNode)
            kept = tuple(leaf for leaf in value.unmerged_leaves if leaf not in removed)
            value = replace(value, unmerged_leaves=kept)
        left = self._original_hash(tree_math.left(x), removed)
        right = self._original_hash(tree_math.right(x), removed)
        return self._parent_tree_hash(value, left, right)

    def parent_hash(self, node_index: int, copath_child: int, original_sibling_tree_hash: bytes | None = None) -> bytes:
        """Parent hash of the parent node at ``node_index`` with copath child ``copath_child`` (§7.9).

        ``Hash(ParentHashInput{encryption_key, parent_hash, original_sibling_tree_hash})``;
        the sibling hash defaults to the current tree hash of ``copath_child``.
        """
        value = self.parent_node(node_index)
        if value is None:
            raise ValidationError(f"parent hash of blank node {node_index}")
        if original_sibling_tree_hash is None:
            original_sibling_tree_hash = self._tree_hash(copath_child)
        hash_input = ParentHashInput(value.encryption_key, value.parent_hash, original_sibling_tree_hash)
        return self.cipher_suite.hash(hash_input.encode())

    # --- evolution (§7.4, §7.7, §12.1) --------------------------------------------------------

    def _set(self, x: int, value: NodeValue | None) -> None:
        """Replace node ``x`` and invalidate cached hashes on its path to the root."""
        old = self._nodes[x]
        if old is value:
            return
        if old is not None:
            self._count(old, x, -1)
        if value is not None:
            self._count(value, x, +1)
        self._nodes[x] = value
        self._chunks[x] = None
        self._encoding = None
        self._invalidate(x)

    def _invalidate(self, x: int) -> None:
        hashes = self._hashes
        root = tree_math.root(self.leaf_count)
        k = tree_math.level(x)
        # Invariant: a node whose hash is not cached has no cached ancestor
        # (hashes are computed children first), so the walk stops early.
        while hashes[x] is not None:
            hashes[x] = None
            if x == root:
                return
            x = (x | (1 << k)) ^ (((x >> (k + 1)) & 0x01) << (k + 1))  # tree_math.parent
            k += 1

    def set_leaf(self, leaf_index: int, leaf_node: LeafNode | None) -> None:
        """Put ``leaf_node`` (or a blank) at ``leaf_index`` without touching other nodes."""
        self._check_leaf(leaf_index)
        self._set(2 * leaf_index, leaf_node)

    def set_parent(self, node_index: int, parent_node: ParentNode | None) -> None:
        """Put ``parent_node`` (or a blank) at odd ``node_index``."""
        self._check_node(node_index)
        if node_index % 2 == 0:
            raise ValidationError(f"node {node_index} is a leaf, not a parent")
        self._set(node_index, parent_node)

    def blank_path(self, leaf_index: int) -> None:
        """Blank every node on the direct path of a leaf (§7.4, §12.1.2, §12.1.3)."""
        for x in self.direct_path(2 * leaf_index):
            self._set(x, None)

    def free_leaf(self) -> int:
        """Index of the leftmost blank leaf, or ``leaf_count`` if all are taken (§12.1.1)."""
        nodes = self._nodes
        for x in range(0, len(nodes), 2):
            if nodes[x] is None:
                return x // 2
        return self.leaf_count

    def extend(self) -> None:
        """Double the number of leaves: a new blank root over a new blank right subtree (§7.7)."""
        growth = len(self._nodes) + 1
        self._nodes.extend([None] * growth)
        self._hashes.extend([None] * growth)
        self._chunks.extend([None] * growth)
        self._encoding = None

    def truncate(self) -> None:
        """Drop right subtrees holding no member (§7.7, §12.1.3).

        The result has ``2^d`` leaves for the smallest ``d`` with ``2^d`` greater
        than the rightmost non-blank leaf index.
        """
        nodes = self._nodes
        last = len(nodes) - 1  # node index of the rightmost leaf
        while last > 0 and nodes[last] is None:
            last -= 2
        leaves = 1
        while 2 * leaves <= last:
            leaves *= 2
        width = 2 * leaves - 1
        if width == len(nodes):
            return
        for x in range(width, len(nodes)):
            value = nodes[x]
            if value is not None:
                self._count(value, x, -1)
        del nodes[width:]
        del self._hashes[width:]
        del self._chunks[width:]
        self._encoding = None

    def add_leaf(self, leaf_node: LeafNode) -> int:
        """Apply an Add (§12.1.1): place ``leaf_node`` at the leftmost free leaf, return its index.

        Extends the tree when full; adds the new leaf to ``unmerged_leaves`` of
        every non-blank parent on its direct path.
        """
        leaf_index = self.free_leaf()
        if leaf_index == self.leaf_count:
            self.extend()
        self._set(2 * leaf_index, leaf_node)
        for x in self.direct_path(2 * leaf_index):
            value = self._nodes[x]
            if value is not None:
                assert isinstance(value, ParentNode)
                unmerged = tuple(sorted({*value.unmerged_leaves, leaf_index}))
                self._set(x, replace(value, unmerged_leaves=unmerged))
        return leaf_index

    def update_leaf(self, leaf_index: int, leaf_node: LeafNode) -> None:
        """Apply an Update (§12.1.2): replace the sender's leaf and blank its direct path."""
        if self.leaf(leaf_index) is None:
            raise ValidationError(f"update of blank leaf {leaf_index}")
        self._set(2 * leaf_index, leaf_node)
        self.blank_path(leaf_index)

    def remove_leaf(self, leaf_index: int) -> None:
        """Apply a Remove (§12.1.3): blank the leaf and its direct path, then truncate."""
        if self.leaf(leaf_index) is None:
            raise ValidationError(f"remove of blank leaf {leaf_index}")
        self._set(2 * leaf_index, None)
        self.blank_path(leaf_index)
        self.truncate()

    def merge_path(self, leaf_index: int, encryption_keys: Sequence[bytes]) -> bytes:
        """Install new keys on a leaf's filtered direct path; return the leaf's parent hash.

        §7.5 / §7.9: blank the direct path, set each filtered-direct-path node
        to ``ParentNode(key, parent_hash, [])`` with parent hashes chained from
        the root down, and return the parent hash the leaf must carry. The leaf
        itself is left to the caller (``set_leaf``). ``ValidationError`` if the
        number of keys differs from the filtered direct path length.
        """
        path = self.filtered_path(leaf_index)
        if len(encryption_keys) != len(path):
            raise ValidationError(
                f"path of {len(encryption_keys)} keys for a filtered direct path of {len(path)} nodes"
            )
        self.blank_path(leaf_index)
        parent_hash = b""
        for (node_index, copath_child), key in zip(reversed(path), reversed(encryption_keys)):
            self._set(node_index, ParentNode(key, parent_hash, ()))
            parent_hash = self.parent_hash(node_index, copath_child)
        return parent_hash

    # --- checks ------------------------------------------------------------------------

    def _check_node(self, node_index: int) -> None:
        if not 0 <= node_index < len(self._nodes):
            raise ValidationError(f"node index {node_index} outside a tree of {len(self._nodes)} nodes")

    def _check_leaf(self, leaf_index: int) -> None:
        if not 0 <= leaf_index < self.leaf_count:
            raise ValidationError(f"leaf index {leaf_index} outside a tree of {self.leaf_count} leaves")
