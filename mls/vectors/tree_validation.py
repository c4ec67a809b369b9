"""Checker for ``tree-validation.json``: resolutions, tree hashes, parent hashes, leaf signatures
(RFC 9420 §4.1.1, §7.8, §7.9.2, §7.3)."""

from __future__ import annotations

from mls.crypto import cipher_suite
from mls.tree import RatchetTree, verify_leaf_signature, verify_parent_hashes
from mls.vectors import expect


def check(case: dict) -> None:  # type: ignore[type-arg]
    """Every node's resolution and tree hash, then parent-hash validity and every leaf signature."""
    suite = cipher_suite(int(case["cipher_suite"]))
    tree = RatchetTree.decode(suite, bytes.fromhex(case["tree"]))
    expect("node count", tree.node_count, len(case["tree_hashes"]))
    for node_index, (resolution, tree_hash) in enumerate(zip(case["resolutions"], case["tree_hashes"])):
        expect(f"resolution[{node_index}]", tree.resolution(node_index), [int(x) for x in resolution])
        expect(f"tree_hash[{node_index}]", tree.tree_hash(node_index), bytes.fromhex(tree_hash))
    verify_parent_hashes(tree)
    group_id = bytes.fromhex(case["group_id"])
    for leaf_index, leaf_node in tree.members():
        verify_leaf_signature(suite, leaf_node, group_id, leaf_index)
