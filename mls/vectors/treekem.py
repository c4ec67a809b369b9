"""Checker for ``treekem.json``: processing and creating UpdatePaths (RFC 9420 §7.4-§7.6, §7.9)."""

from __future__ import annotations

from mls.crypto import CipherSuite, cipher_suite
from mls.tree import (
    RatchetTree,
    TreeKEMPrivate,
    apply_update_path,
    create_update_path,
    decrypt_update_path,
    verify_leaf_signature,
    verify_parent_hashes,
)
from mls.vectors import MLSVectorMismatch, expect
from mls.wire.group_context import GroupContext
from mls.wire.proposals import UpdatePath


def check(case: dict) -> None:  # type: ignore[type-arg]
    """Load every private view, then process each UpdatePath and a freshly created one."""
    suite = cipher_suite(int(case["cipher_suite"]))
    group_id = bytes.fromhex(case["group_id"])
    tree = RatchetTree.decode(suite, bytes.fromhex(case["ratchet_tree"]))
    tree.tree_hash()  # fill the hash cache once; every copy below shares it

    def group_context(merged: RatchetTree) -> bytes:
        return GroupContext(
            suite.suite_id,
            group_id,
            int(case["epoch"]),
            merged.tree_hash(),
            bytes.fromhex(case["confirmed_transcript_hash"]),
        ).encode()

    privates, signature_keys = _load_privates(suite, tree, case["leaves_private"])

    for number, entry in enumerate(case["update_paths"]):
        where = f"update_paths[{number}]"
        sender = int(entry["sender"])
        update_path = UpdatePath.decode(bytes.fromhex(entry["update_path"]))
        verify_leaf_signature(suite, update_path.leaf_node, group_id, sender)
        merged = tree.copy()
        apply_update_path(merged, sender, update_path)
        verify_parent_hashes(merged)
        expect(f"{where} tree_hash_after", merged.tree_hash(), bytes.fromhex(entry["tree_hash_after"]))
        context = group_context(merged)
        for leaf_index, private in privates.items():
            if leaf_index == sender:
                continue
            result = decrypt_update_path(merged, private, sender, update_path, context)
            want = entry["path_secrets"][leaf_index]
            expect(f"{where} path_secret[{leaf_index}]", result.path_secret.hex(), want)
            expect(f"{where} commit_secret[{leaf_index}]", result.commit_secret, bytes.fromhex(entry["commit_secret"]))

        created = tree.copy()
        pending = create_update_path(
            created, sender, group_id=group_id, signature_private_key=signature_keys[sender]
        )
        new_context = group_context(created)
        new_path = pending.encrypt(created, new_context)
        verify_parent_hashes(created)
        for leaf_index, private in privates.items():
            if leaf_index == sender:
                continue
            receiver_tree = tree.copy()
            apply_update_path(receiver_tree, sender, new_path)
            expect(f"{where} new tree hash", receiver_tree.tree_hash(), created.tree_hash())
            result = decrypt_update_path(receiver_tree, private, sender, new_path, new_context)
            expect(f"{where} new commit_secret[{leaf_index}]", result.commit_secret, pending.commit_secret)


def _load_privates(
    suite: CipherSuite, tree: RatchetTree, entries: list[dict]  # type: ignore[type-arg]
) -> tuple[dict[int, TreeKEMPrivate], dict[int, bytes]]:
    """Build ``TreeKEMPrivate`` per listed leaf and check it against the tree."""
    privates: dict[int, TreeKEMPrivate] = {}
    signature_keys: dict[int, bytes] = {}
    for entry in entries:
        leaf_index = int(entry["index"])
        leaf = tree.leaf(leaf_index)
        if leaf is None:
            raise MLSVectorMismatch(f"leaves_private[{leaf_index}] is a blank leaf")
        encryption_priv = bytes.fromhex(entry["encryption_priv"])
        expect(f"leaf {leaf_index} public key", suite.hpke_public_key(encryption_priv), leaf.encryption_key)
        private = TreeKEMPrivate.for_leaf(leaf_index, encryption_priv, leaf.encryption_key)
        for secret in entry["path_secrets"]:
            private.set_path_secret(suite, int(secret["node"]), bytes.fromhex(secret["path_secret"]))
        private.check(tree)
        privates[leaf_index] = private
        signature_keys[leaf_index] = bytes.fromhex(entry["signature_priv"])
    return privates, signature_keys
