"""Checker for ``tree-operations.json``: Add / Update / Remove applied to a tree (RFC 9420 §7.7, §7.8, §12.1)."""

from __future__ import annotations

from mls.crypto import cipher_suite
from mls.tree import RatchetTree
from mls.vectors import MLSVectorMismatch, expect
from mls.wire.proposals import Add, Proposal, Remove, Update


def check(case: dict) -> None:  # type: ignore[type-arg]
    """Tree hash before, apply the proposal from ``proposal_sender``, then tree and hash after."""
    suite = cipher_suite(int(case["cipher_suite"]))
    tree = RatchetTree.decode(suite, bytes.fromhex(case["tree_before"]))
    expect("tree_hash_before", tree.tree_hash(), bytes.fromhex(case["tree_hash_before"]))

    body = Proposal.decode(bytes.fromhex(case["proposal"])).body
    if isinstance(body, Add):
        tree.add_leaf(body.key_package.leaf_node)
    elif isinstance(body, Update):
        tree.update_leaf(int(case["proposal_sender"]), body.leaf_node)
    elif isinstance(body, Remove):
        tree.remove_leaf(body.removed)
    else:
        raise MLSVectorMismatch(f"unexpected proposal {type(body).__name__}")

    expect("tree_after", tree.encode(), bytes.fromhex(case["tree_after"]))
    expect("tree_hash_after", tree.tree_hash(), bytes.fromhex(case["tree_hash_after"]))
