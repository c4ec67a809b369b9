"""Ratchet tree and TreeKEM (RFC 9420 §4, §7, §12.4.3.1).

Official vectors (tree-operations.json, tree-validation.json, treekem.json)
run case by case; unit tests cover validation failures, tree evolution, the
hash cache and the TreeKEM round trip of a simulated group.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls.crypto import CipherSuite, cipher_suite
from mls.errors import CryptoError, SignatureError, ValidationError
from mls.tree import (
    RatchetTree,
    TreeKEMPrivate,
    apply_update_path,
    create_update_path,
    decrypt_update_path,
    sign_leaf_node,
    validate_leaf_node,
    validate_ratchet_tree,
    verify_leaf_signature,
    verify_parent_hashes,
)
from mls.vectors import tree_operations, tree_validation, treekem
from mls.wire.credentials import Credential
from mls.wire.crypto_structs import HPKECiphertext
from mls.wire.enums import CredentialType, LeafNodeSource
from mls.wire.extensions import RequiredCapabilities
from mls.wire.group_context import GroupContext
from mls.wire.proposals import UpdatePath, UpdatePathNode
from mls.wire.tree import Capabilities, LeafNode, Lifetime, ParentNode
from mls.wire.tree import RatchetTreeExtension

from conftest import SHARED

TREE_OPERATIONS_CASES = 5
TREE_VALIDATION_CASES = 98
TREEKEM_CASES = 77
GROUP_ID = b"test group"
SUITE = cipher_suite(1)


@cache
def _load(name: str) -> list[dict[str, Any]]:
    path = SHARED / "vectors" / "mls" / name
    cases: list[dict[str, Any]] = json.loads(path.read_text())
    return cases


# --- official vectors ---------------------------------------------------------------------


def test_vector_files_have_expected_case_counts(vectors_dir: Path) -> None:
    assert (vectors_dir / "mls" / "treekem.json").is_file()
    assert len(_load("tree-operations.json")) == TREE_OPERATIONS_CASES
    assert len(_load("tree-validation.json")) == TREE_VALIDATION_CASES
    assert len(_load("treekem.json")) == TREEKEM_CASES
    for name in ("tree-validation.json", "treekem.json"):
        assert sorted({case["cipher_suite"] for case in _load(name)}) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("index", range(TREE_OPERATIONS_CASES))
def test_tree_operations_vector(index: int) -> None:
    tree_operations.check(_load("tree-operations.json")[index])


@pytest.mark.parametrize("index", range(TREE_VALIDATION_CASES))
def test_tree_validation_vector(index: int) -> None:
    tree_validation.check(_load("tree-validation.json")[index])


@pytest.mark.parametrize("index", range(TREEKEM_CASES))
def test_treekem_vector(index: int) -> None:
    treekem.check(_load("treekem.json")[index])


def test_treekem_checker_rejects_altered_commit_secret() -> None:
    case = json.loads(json.dumps(_load("treekem.json")[0]))
    secret = case["update_paths"][0]["commit_secret"]
    case["update_paths"][0]["commit_secret"] = ("00" if secret[:2] != "00" else "11") + secret[2:]
    with pytest.raises(AssertionError, match="commit_secret"):
        treekem.check(case)


# --- helpers: members and a simulated group ----------------------------------------------------


@dataclass
class Identity:
    """A client's key material (test only)."""

    signature_private: bytes = field(repr=False)
    signature_public: bytes
    encryption_private: bytes = field(repr=False)
    encryption_public: bytes


def new_identity(suite: CipherSuite = SUITE) -> Identity:
    signature_private, signature_public = suite.generate_signature_key_pair()
    encryption_private, encryption_public = suite.generate_key_pair()
    return Identity(signature_private, signature_public, encryption_private, encryption_public)


def key_package_leaf(
    identity: Identity,
    name: bytes,
    *,
    lifetime: tuple[int, int] = (0, 2**64 - 1),
    credential_type: int = CredentialType.BASIC,
    supported: tuple[int, ...] = (CredentialType.BASIC,),
    suite: CipherSuite = SUITE,
) -> LeafNode:
    credential = Credential.basic(name) if credential_type == CredentialType.BASIC else Credential.x509((name,))
    unsigned = LeafNode(
        identity.encryption_public,
        identity.signature_public,
        credential,
        Capabilities(versions=(1,), cipher_suites=(suite.suite_id,), credentials=supported),
        LeafNodeSource.KEY_PACKAGE,
        Lifetime(*lifetime),
    )
    return sign_leaf_node(suite, unsigned, identity.signature_private)


class Group:
    """Drives a tree through Add and path-carrying Commits, checking every member agrees."""

    def __init__(self, size: int, suite: CipherSuite = SUITE) -> None:
        self.suite = suite
        self.epoch = 0
        first = new_identity(suite)
        self.identities = {0: first}
        self.tree = RatchetTree.create(suite, key_package_leaf(first, b"m0", suite=suite))
        self.private = {0: TreeKEMPrivate.for_leaf(0, first.encryption_private, first.encryption_public)}
        if size > 1:
            self.commit(0, adds=size - 1)

    def context(self, tree: RatchetTree) -> bytes:
        return GroupContext(self.suite.suite_id, GROUP_ID, self.epoch + 1, tree.tree_hash(), b"").encode()

    def commit(self, sender: int, adds: int = 0, removes: tuple[int, ...] = ()) -> bytes:
        """Commit removes/adds with a path from ``sender``; every member must get the same secret."""
        joiners = {}
        for _ in range(adds):
            identity = new_identity(self.suite)
            joiners[identity.encryption_public] = identity
        new_tree = self.tree.copy()
        for removed in removes:
            new_tree.remove_leaf(removed)
        added = [
            new_tree.add_leaf(key_package_leaf(identity, b"m", suite=self.suite)) for identity in joiners.values()
        ]
        pending = create_update_path(
            new_tree, sender, group_id=GROUP_ID, signature_private_key=self.identities[sender].signature_private
        )
        context = self.context(new_tree)
        update_path = pending.encrypt(new_tree, context, added)
        for member, private in list(self.private.items()):
            if member == sender or member in removes:
                continue
            tree = self.tree.copy()
            for removed in removes:
                tree.remove_leaf(removed)
            for identity in joiners.values():
                tree.add_leaf(key_package_leaf(identity, b"m", suite=self.suite))
            verify_leaf_signature(self.suite, update_path.leaf_node, GROUP_ID, sender)
            apply_update_path(tree, sender, update_path, added)
            assert tree.tree_hash() == new_tree.tree_hash()
            result = decrypt_update_path(tree, private, sender, update_path, self.context(tree), added)
            assert result.commit_secret == pending.commit_secret
            result.private.check(new_tree)
            self.private[member] = result.private
        for removed in removes:
            del self.private[removed]
            del self.identities[removed]
        for leaf_index, identity in zip(added, joiners.values()):
            private = TreeKEMPrivate.for_leaf(leaf_index, identity.encryption_private, identity.encryption_public)
            secret = pending.path_secret_for(leaf_index)
            assert secret is not None
            private.apply_path_secret(new_tree, sender, secret)
            private.check(new_tree)
            self.private[leaf_index] = private
            self.identities[leaf_index] = identity
        self.private[sender] = pending.private
        self.tree = new_tree
        self.epoch += 1
        return pending.commit_secret

    def add_without_path(self) -> int:
        """A Commit of one Add and no path: the joiner becomes an unmerged leaf (§12.1.1)."""
        identity = new_identity(self.suite)
        leaf_index = self.tree.add_leaf(key_package_leaf(identity, b"m", suite=self.suite))
        self.private[leaf_index] = TreeKEMPrivate.for_leaf(
            leaf_index, identity.encryption_private, identity.encryption_public
        )
        self.identities[leaf_index] = identity
        self.epoch += 1
        return leaf_index


def fresh_hashes(tree: RatchetTree) -> list[bytes]:
    """Every node's tree hash computed from scratch (a re-decoded tree has an empty cache)."""
    rebuilt = RatchetTree.decode(tree.cipher_suite, tree.encode())
    return [rebuilt.tree_hash(x) for x in range(rebuilt.node_count)]


# --- whole-tree validation (§12.4.3.1) -------------------------------------------------------


@pytest.fixture(scope="module")
def group() -> Group:
    group = Group(5)
    group.commit(3)
    group.commit(1, adds=2)
    group.commit(4)
    group.add_without_path()
    return group


def test_grown_tree_validates_and_members_agree(group: Group) -> None:
    validate_ratchet_tree(group.tree, group_id=GROUP_ID, tree_hash=group.tree.tree_hash(), now=1_700_000_000)
    assert group.tree.member_count == 8
    assert any(parent.unmerged_leaves for _, parent in group.tree.parents())
    for member, private in group.private.items():
        assert private.leaf_index == member
        private.check(group.tree)


def test_tampered_leaf_signature_rejected(group: Group) -> None:
    tree = group.tree.copy()
    leaf = tree.leaf(2)
    assert leaf is not None
    tree.set_leaf(2, replace(leaf, signature=bytes([leaf.signature[0] ^ 1]) + leaf.signature[1:]))
    with pytest.raises(SignatureError):
        validate_ratchet_tree(tree, group_id=GROUP_ID, tree_hash=tree.tree_hash())


def test_leaf_signed_for_another_group_rejected(group: Group) -> None:
    with pytest.raises(SignatureError):
        validate_ratchet_tree(group.tree, group_id=b"other group", tree_hash=group.tree.tree_hash())


def test_tampered_parent_hash_rejected(group: Group) -> None:
    tree = group.tree.copy()
    node_index, parent = next(iter(tree.parents()))
    tree.set_parent(node_index, replace(parent, parent_hash=bytes(len(parent.parent_hash) or 32)))
    with pytest.raises(ValidationError, match="parent-hash valid"):
        verify_parent_hashes(tree)
    with pytest.raises(ValidationError, match="parent-hash valid"):
        validate_ratchet_tree(tree, group_id=GROUP_ID, tree_hash=tree.tree_hash())


def test_tampered_parent_key_in_vector_tree_rejected() -> None:
    case = _load("tree-validation.json")[2]  # full tree of 8 leaves, suite 1
    tree = RatchetTree.decode(cipher_suite(case["cipher_suite"]), bytes.fromhex(case["tree"]))
    verify_parent_hashes(tree)
    node_index, parent = next(iter(tree.parents()))
    tree.set_parent(node_index, replace(parent, encryption_key=bytes(32)))
    with pytest.raises(ValidationError):
        verify_parent_hashes(tree)


def test_tree_hash_mismatch_rejected(group: Group) -> None:
    with pytest.raises(ValidationError, match="tree hash"):
        validate_ratchet_tree(group.tree, group_id=GROUP_ID, tree_hash=bytes(32))


def test_inconsistent_unmerged_leaves_rejected(group: Group) -> None:
    tree = group.tree.copy()
    node_index, parent = next((x, p) for x, p in tree.parents() if p.unmerged_leaves)
    tree.set_parent(node_index, replace(parent, unmerged_leaves=()))
    with pytest.raises(ValidationError):
        validate_ratchet_tree(tree, group_id=GROUP_ID, tree_hash=tree.tree_hash())


def test_expired_leaf_rejected_with_clock_set() -> None:
    identity = new_identity()
    tree = RatchetTree.create(SUITE, key_package_leaf(identity, b"m0"))
    joiner = key_package_leaf(new_identity(), b"m1", lifetime=(1000, 2000))
    source = LeafNodeSource.KEY_PACKAGE
    validate_leaf_node(tree, joiner, source=source, group_id=None, now=1500)
    validate_leaf_node(tree, joiner, source=source, group_id=None, now=None)
    with pytest.raises(ValidationError, match="lifetime"):
        validate_leaf_node(tree, joiner, source=source, group_id=None, now=2001)
    with pytest.raises(ValidationError, match="lifetime"):
        validate_leaf_node(tree, joiner, source=source, group_id=None, now=999)
    with pytest.raises(ValidationError, match="maximum"):
        validate_leaf_node(tree, joiner, source=source, group_id=None, now=1500, max_lifetime=999)
    tree.add_leaf(joiner)
    with pytest.raises(ValidationError, match="lifetime"):
        validate_ratchet_tree(tree, group_id=GROUP_ID, tree_hash=tree.tree_hash(), now=3000)


def test_leaf_node_uniqueness_and_source() -> None:
    first = new_identity()
    tree = RatchetTree.create(SUITE, key_package_leaf(first, b"m0"))
    same_signature = replace(new_identity(), signature_private=first.signature_private,
                             signature_public=first.signature_public)
    same_encryption = replace(new_identity(), encryption_private=first.encryption_private,
                              encryption_public=first.encryption_public)
    with pytest.raises(ValidationError, match="signature_key"):
        validate_leaf_node(tree, key_package_leaf(same_signature, b"x"), source=LeafNodeSource.KEY_PACKAGE,
                           group_id=None)
    with pytest.raises(ValidationError, match="encryption_key"):
        validate_leaf_node(tree, key_package_leaf(same_encryption, b"x"), source=LeafNodeSource.KEY_PACKAGE,
                           group_id=None)
    with pytest.raises(ValidationError, match="leaf_node_source"):
        validate_leaf_node(tree, key_package_leaf(new_identity(), b"x"), source=LeafNodeSource.UPDATE,
                           group_id=GROUP_ID, leaf_index=0)


def test_update_leaf_needs_new_encryption_key_and_required_capabilities() -> None:
    member = new_identity()
    tree = RatchetTree.create(SUITE, key_package_leaf(member, b"m0"))
    current = tree.leaf(0)
    assert current is not None
    unchanged = sign_leaf_node(
        SUITE, replace(current, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None),
        member.signature_private, GROUP_ID, 0,
    )
    with pytest.raises(ValidationError, match="new encryption_key"):
        validate_leaf_node(tree, unchanged, source=LeafNodeSource.UPDATE, group_id=GROUP_ID, leaf_index=0)
    fresh = sign_leaf_node(
        SUITE, replace(unchanged, encryption_key=SUITE.generate_key_pair()[1]), member.signature_private, GROUP_ID, 0
    )
    validate_leaf_node(tree, fresh, source=LeafNodeSource.UPDATE, group_id=GROUP_ID, leaf_index=0)
    with pytest.raises(SignatureError):
        verify_leaf_signature(SUITE, fresh, b"other group", 0)
    with pytest.raises(SignatureError):
        verify_leaf_signature(SUITE, fresh, GROUP_ID, 1)
    required = RequiredCapabilities(extension_types=(0xFF00,))
    with pytest.raises(ValidationError, match="required extension"):
        validate_leaf_node(tree, fresh, source=LeafNodeSource.UPDATE, group_id=GROUP_ID, leaf_index=0,
                           required_capabilities=required)


def test_credential_type_support_checked() -> None:
    tree = RatchetTree.create(SUITE, key_package_leaf(new_identity(), b"m0"))
    x509_member = key_package_leaf(
        new_identity(), b"cert", credential_type=CredentialType.X509,
        supported=(CredentialType.BASIC, CredentialType.X509),
    )
    with pytest.raises(ValidationError, match="not supported by every member"):
        validate_leaf_node(tree, x509_member, source=LeafNodeSource.KEY_PACKAGE, group_id=None)
    both = RatchetTree.create(
        SUITE, key_package_leaf(new_identity(), b"m0", supported=(CredentialType.BASIC, CredentialType.X509))
    )
    validate_leaf_node(both, x509_member, source=LeafNodeSource.KEY_PACKAGE, group_id=None)
    both.add_leaf(x509_member)
    basic_only = key_package_leaf(new_identity(), b"m2")
    with pytest.raises(ValidationError, match="does not support credential type"):
        validate_leaf_node(both, basic_only, source=LeafNodeSource.KEY_PACKAGE, group_id=None)


# --- tree evolution (§4.1, §7.7, §12.1) --------------------------------------------------------


def _dummy_leaf(tag: int) -> LeafNode:
    return LeafNode(
        bytes([tag]) * 32, bytes([tag, 1]) * 16, Credential.basic(bytes([tag])),
        Capabilities(credentials=(1,)), LeafNodeSource.UPDATE,
    )


def test_add_remove_truncate_and_leftmost_free_leaf() -> None:
    tree = RatchetTree.create(SUITE, _dummy_leaf(0))
    assert [tree.add_leaf(_dummy_leaf(tag)) for tag in range(1, 5)] == [1, 2, 3, 4]
    assert tree.leaf_count == 8 and tree.member_count == 5
    tree.remove_leaf(4)
    assert tree.leaf_count == 4, "the all-blank right half is truncated"
    tree.remove_leaf(1)
    assert tree.leaf_count == 4 and tree.leaf(1) is None
    assert tree.add_leaf(_dummy_leaf(9)) == 1, "adds take the leftmost blank leaf"
    tree.remove_leaf(3)
    tree.remove_leaf(2)
    assert tree.leaf_count == 2
    tree.remove_leaf(1)
    assert tree.leaf_count == 1 and tree.node_count == 1
    with pytest.raises(ValidationError):
        tree.remove_leaf(5)
    with pytest.raises(ValidationError):
        tree.update_leaf(3, _dummy_leaf(7))
    tree.add_leaf(_dummy_leaf(8))
    tree.add_leaf(_dummy_leaf(9))
    tree.set_leaf(1, None)
    with pytest.raises(ValidationError, match="blank"):
        tree.remove_leaf(1)


def test_add_marks_unmerged_and_blank_path() -> None:
    tree = RatchetTree(SUITE, [_dummy_leaf(0), ParentNode(b"k" * 32, b""), _dummy_leaf(1)])
    assert tree.add_leaf(_dummy_leaf(2)) == 2
    root = tree.parent_node(3)
    assert root is None, "a new root is blank"
    assert tree.parent_node(1) is not None and tree.parent_node(1).unmerged_leaves == ()  # type: ignore[union-attr]
    tree.set_parent(3, ParentNode(b"r" * 32, b""))
    assert tree.add_leaf(_dummy_leaf(3)) == 3
    assert tree.parent_node(3).unmerged_leaves == (3,)  # type: ignore[union-attr]
    assert tree.resolution(3) == [3, 6]
    assert tree.resolution(5) == [4, 6]
    tree.update_leaf(0, _dummy_leaf(7))
    assert tree.parent_node(1) is None and tree.parent_node(3) is None
    assert tree.resolution(3) == [0, 2, 4, 6]


def _rfc_resolution(nodes: list[LeafNode | ParentNode | None], x: int, exclude: frozenset[int]) -> list[int]:
    """§4.1.1 word for word, recursively (the reference for the iterative one)."""
    value = nodes[x]
    if isinstance(value, LeafNode):
        return [] if x // 2 in exclude else [x]
    if isinstance(value, ParentNode):
        return [x, *(2 * leaf for leaf in value.unmerged_leaves if leaf not in exclude)]
    if x % 2 == 0:
        return []
    half = 1 << ((x ^ (x + 1)).bit_length() - 2)
    return _rfc_resolution(nodes, x - half, exclude) + _rfc_resolution(nodes, x + half, exclude)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 4).flatmap(lambda log: st.tuples(
    st.lists(st.booleans(), min_size=1 << log, max_size=1 << log),
    st.lists(st.booleans(), min_size=(1 << log) - 1, max_size=(1 << log) - 1),
    st.sets(st.integers(0, (1 << log) - 1)),
    st.randoms(use_true_random=False))))
def test_resolution_matches_the_rfc_definition(shape: tuple[list[bool], list[bool], set[int], Any]) -> None:
    leaves, parents, exclude, rng = shape
    width = 2 * len(leaves) - 1
    nodes: list[LeafNode | ParentNode | None] = [None] * width
    for i, present in enumerate(leaves):
        nodes[2 * i] = _dummy_leaf(i) if present else None
    for j, present in enumerate(parents):
        x = 2 * j + 1
        if present:
            half = (1 << ((x ^ (x + 1)).bit_length() - 1)) - 1
            below = [leaf for leaf in range((x - half) // 2, (x + half) // 2 + 1) if leaves[leaf]]
            unmerged = tuple(sorted(rng.sample(below, rng.randint(0, len(below)))))
            nodes[x] = ParentNode(bytes([100 + j]) * 32, b"", unmerged)
    tree = RatchetTree(SUITE, nodes)
    for x in range(width):
        expected = _rfc_resolution(nodes, x, frozenset(exclude))
        assert tree.resolution(x, frozenset(exclude)) == expected
        assert tree.has_nonempty_resolution(x) == bool(_rfc_resolution(nodes, x, frozenset()))


def test_filtered_direct_path_matches_rfc_example() -> None:
    """The five-member tree of §4.1.2 (T, X, Y, W set; U, V, Z blank)."""
    leaves = {0: 1, 1: 2, 4: 3, 5: 4, 6: 5}
    nodes: list[LeafNode | ParentNode | None] = [None] * 15
    for leaf_index, tag in leaves.items():
        nodes[2 * leaf_index] = _dummy_leaf(tag)
    for node_index in (1, 9, 11, 7):
        nodes[node_index] = ParentNode(bytes([node_index + 100]) * 32, b"")
    tree = RatchetTree(SUITE, nodes)
    assert tree.filtered_direct_path(0) == [1, 7]  # A: T, W
    assert tree.filtered_direct_path(1) == [1, 7]  # B: T, W
    assert tree.filtered_direct_path(4) == [9, 11, 7]  # E: X, Y, W
    assert tree.filtered_direct_path(6) == [11, 7]  # G: Y, W


def test_ratchet_tree_extension_round_trip_and_rules() -> None:
    tree = RatchetTree.create(SUITE, _dummy_leaf(0))
    for tag in range(1, 3):
        tree.add_leaf(_dummy_leaf(tag))
    data = tree.encode()
    assert RatchetTree.decode(SUITE, data) == tree
    assert len(tree.to_extension().nodes) == 5, "trailing blanks are not sent"
    with pytest.raises(ValidationError, match="last node"):
        RatchetTree.from_extension(SUITE, RatchetTreeExtension((_dummy_leaf(0), None)))
    with pytest.raises(ValidationError, match="ParentNode"):
        RatchetTree(SUITE, [_dummy_leaf(0), _dummy_leaf(1), _dummy_leaf(2)])


def test_out_of_range_indices_raise_validation_error() -> None:
    tree = RatchetTree.create(SUITE, _dummy_leaf(0))
    for call in (lambda: tree.leaf(1), lambda: tree.node(-1), lambda: tree.resolution(3),
                 lambda: tree.filtered_direct_path(2), lambda: tree.tree_hash(9)):
        with pytest.raises(ValidationError):
            call()


# --- hash cache (§7.8) ---------------------------------------------------------------------


class CountingSuite:
    """Delegates to a real cipher suite, counting ``hash`` calls."""

    def __init__(self, suite: CipherSuite) -> None:
        self._suite = suite
        self.hashes = 0

    def hash(self, data: bytes) -> bytes:
        self.hashes += 1
        return self._suite.hash(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._suite, name)


def test_cached_hash_after_path_update_equals_fresh(group: Group) -> None:
    tree = group.tree.copy()
    tree.tree_hash()
    create_update_path(tree, 4, group_id=GROUP_ID, signature_private_key=group.identities[4].signature_private)
    assert [tree.tree_hash(x) for x in range(tree.node_count)] == fresh_hashes(tree)
    verify_parent_hashes(tree)


def test_commit_hashing_is_logarithmic() -> None:
    size = 64
    nodes: list[LeafNode | ParentNode | None] = [None] * (2 * size - 1)
    identities = {}
    for leaf_index in range(size):
        identities[leaf_index] = new_identity()
        nodes[2 * leaf_index] = key_package_leaf(identities[leaf_index], b"m")
    tree = RatchetTree(SUITE, nodes)
    tree.tree_hash()
    counting = CountingSuite(SUITE)
    tree.cipher_suite = counting  # type: ignore[assignment]
    create_update_path(tree, 37, group_id=GROUP_ID, signature_private_key=identities[37].signature_private)
    tree.tree_hash()
    # depth 6: 6 parent hashes + 7 tree hashes on the path, against 127 for a full recomputation
    assert counting.hashes <= 2 * 6 + 7
    tree.cipher_suite = SUITE
    assert [tree.tree_hash(x) for x in range(tree.node_count)] == fresh_hashes(tree)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "update", "parent"]), st.integers(0, 15)),
                max_size=30))
def test_cache_matches_fresh_hashes_after_any_operations(operations: list[tuple[str, int]]) -> None:
    tree = RatchetTree.create(SUITE, _dummy_leaf(0))
    tag = 1
    for operation, argument in operations:
        tree.tree_hash()
        members = [index for index, _ in tree.members()]
        tag = (tag + 1) % 250
        if operation == "add":
            tree.add_leaf(_dummy_leaf(tag))
        elif operation == "remove" and len(members) > 1:
            tree.remove_leaf(members[argument % len(members)])
        elif operation == "update":
            tree.update_leaf(members[argument % len(members)], _dummy_leaf(tag))
        elif operation == "parent" and tree.node_count > 1:
            tree.set_parent(2 * (argument % (tree.node_count // 2)) + 1, ParentNode(bytes([tag]) * 32, b""))
    assert [tree.tree_hash(x) for x in range(tree.node_count)] == fresh_hashes(tree)
    counts = Counter(value.encryption_key for x in range(tree.node_count) if (value := tree.node(x)))
    assert all(tree.encryption_key_count(bytes([t]) * 32) == counts[bytes([t]) * 32] for t in range(256))
    assert tree.member_count == sum(1 for _ in tree.members())


# --- TreeKEM (§7.4-§7.6) --------------------------------------------------------------------


def test_group_epochs_with_adds_removes_and_updates() -> None:
    group = Group(6)
    secrets = {group.commit(2), group.commit(5, removes=(1, 3)), group.commit(0, adds=3)}
    assert len(secrets) == 3
    assert group.tree.member_count == 7
    group.commit(6)
    validate_ratchet_tree(group.tree, group_id=GROUP_ID, tree_hash=group.tree.tree_hash())


def test_private_material_not_in_reprs(group: Group) -> None:
    tree = group.tree.copy()
    pending = create_update_path(tree, 0, group_id=GROUP_ID,
                                 signature_private_key=group.identities[0].signature_private)
    text = repr(pending) + repr(pending.private) + repr(group.private[0])
    for secret in (*pending.path_secrets, pending.commit_secret):
        assert secret.hex() not in text and repr(secret) not in text
    for node_index in pending.private.nodes():
        key = pending.private.private_key(node_index)
        assert key is not None and key.hex() not in text and repr(key) not in text


def _received(group: Group, sender: int) -> tuple[RatchetTree, UpdatePath, bytes]:
    created = group.tree.copy()
    pending = create_update_path(created, sender, group_id=GROUP_ID,
                                 signature_private_key=group.identities[sender].signature_private)
    return created, pending.encrypt(created, group.context(created)), group.context(created)


def test_tampered_ciphertext_fails_and_leaves_state(group: Group) -> None:
    _, update_path, context = _received(group, 0)

    def flip(ciphertext: HPKECiphertext) -> HPKECiphertext:
        return HPKECiphertext(ciphertext.kem_output, bytes([ciphertext.ciphertext[0] ^ 1]) + ciphertext.ciphertext[1:])

    tampered = replace(update_path, nodes=tuple(
        UpdatePathNode(node.encryption_key, tuple(flip(c) for c in node.encrypted_path_secret))
        for node in update_path.nodes
    ))
    tree = group.tree.copy()
    apply_update_path(tree, 0, tampered)
    for member, private in group.private.items():
        if member == 0:
            continue
        before = private.nodes()
        with pytest.raises(CryptoError):
            decrypt_update_path(tree, private, 0, tampered, context)
        assert private.nodes() == before


def test_wrong_public_key_or_parent_hash_rejected(group: Group) -> None:
    _, update_path, _ = _received(group, 0)
    other_key = SUITE.generate_key_pair()[1]
    top = update_path.nodes[-1]
    swapped = replace(update_path, nodes=(*update_path.nodes[:-1], replace(top, encryption_key=other_key)))
    with pytest.raises(ValidationError, match="parent_hash"):
        apply_update_path(group.tree.copy(), 0, swapped)
    reused_key = update_path.nodes[0].encryption_key
    reused = replace(update_path, nodes=(*update_path.nodes[:-1], replace(top, encryption_key=reused_key)))
    with pytest.raises(ValidationError, match="already appears"):
        apply_update_path(group.tree.copy(), 0, reused)
    with pytest.raises(ValidationError, match="nodes"):
        apply_update_path(group.tree.copy(), 0, replace(update_path, nodes=update_path.nodes[:-1]))


def test_derived_key_mismatch_rejected(group: Group) -> None:
    """A correctly signed path whose top key does not derive from the encrypted secret."""
    forged_tree = group.tree.copy()
    pending = create_update_path(forged_tree, 0, group_id=GROUP_ID,
                                 signature_private_key=group.identities[0].signature_private)
    keys = (*pending.encryption_keys[:-1], SUITE.generate_key_pair()[1])
    parent_hash = forged_tree.merge_path(0, keys)
    leaf = sign_leaf_node(SUITE, replace(pending.leaf_node, parent_hash=parent_hash),
                          group.identities[0].signature_private, GROUP_ID, 0)
    forged_tree.set_leaf(0, leaf)
    forged = replace(pending, leaf_node=leaf, encryption_keys=keys)
    update_path = forged.encrypt(forged_tree, group.context(forged_tree))
    receiving = group.tree.copy()
    apply_update_path(receiving, 0, update_path)
    assert receiving.tree_hash() == forged_tree.tree_hash()
    with pytest.raises(ValidationError, match="derived public key"):
        decrypt_update_path(receiving, group.private[1], 0, update_path, group.context(receiving))


def test_joiner_path_secret_must_match_tree(group: Group) -> None:
    joiner = new_identity()
    tree = group.tree.copy()
    leaf_index = tree.add_leaf(key_package_leaf(joiner, b"late"))
    pending = create_update_path(tree, 2, group_id=GROUP_ID, signature_private_key=group.identities[2].signature_private)
    secret = pending.path_secret_for(leaf_index)
    assert secret is not None
    private = TreeKEMPrivate.for_leaf(leaf_index, joiner.encryption_private, joiner.encryption_public)
    with pytest.raises(ValidationError, match="does not match"):
        private.copy().apply_path_secret(tree, 2, bytes(len(secret)))
    private.apply_path_secret(tree, 2, secret)
    private.check(tree)
    assert len(private.nodes()) > 1
