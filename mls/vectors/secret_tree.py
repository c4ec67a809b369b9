"""Checker for ``secret-tree.json``: sender-data keys and per-leaf ratchets (RFC 9420 §6.3.2, §9)."""

from __future__ import annotations

from typing import Any

from mls.crypto import cipher_suite
from mls.message_protection import sender_data_key_nonce
from mls.secret_tree import RatchetType, SecretTree
from mls.vectors import expect


def check(case: dict[str, Any]) -> None:
    """Compare the sender-data key/nonce, then every listed generation of every leaf."""
    suite = cipher_suite(int(case["cipher_suite"]))
    sender_data = case["sender_data"]
    key, nonce = sender_data_key_nonce(
        suite, bytes.fromhex(sender_data["sender_data_secret"]), bytes.fromhex(sender_data["ciphertext"])
    )
    expect("sender_data.key", key, bytes.fromhex(sender_data["key"]))
    expect("sender_data.nonce", nonce, bytes.fromhex(sender_data["nonce"]))

    leaves = case["leaves"]
    tree = SecretTree(suite, bytes.fromhex(case["encryption_secret"]), len(leaves))
    for leaf_index, generations in enumerate(leaves):
        for entry in generations:
            generation = int(entry["generation"])
            for kind, ratchet_type in (("handshake", RatchetType.HANDSHAKE), ("application", RatchetType.APPLICATION)):
                got = tree.get_key(leaf_index, ratchet_type, generation)
                where = f"leaf {leaf_index} generation {generation} {kind}"
                expect(f"{where} key", got.key, bytes.fromhex(entry[f"{kind}_key"]))
                expect(f"{where} nonce", got.nonce, bytes.fromhex(entry[f"{kind}_nonce"]))
