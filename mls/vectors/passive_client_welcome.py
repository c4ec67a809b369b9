"""Checker for ``passive-client-welcome.json``: joining by Welcome, tree in or beside it (RFC 9420 §12.4.3.1).

The same follow-along logic serves ``passive-client-handling-commit.json``
(``follow``): join, then apply each epoch's proposals and Commit and compare
the ``epoch_authenticator``.
"""

from __future__ import annotations


from mls.crypto import cipher_suite
from mls.group import engine
from mls.group.config import GroupConfig
from mls.group.key_package import key_package_ref
from mls.group.psk import PskStore
from mls.group.welcome import JoinKeys, join_from_welcome
from mls.vectors import MLSVectorMismatch, expect
from mls.wire.key_package import KeyPackage
from mls.wire.messages import MLSMessage
from mls.wire.welcome import Welcome

#: The vectors' leaves have long expired: no clock, no lifetime checks.
VECTOR_CONFIG = GroupConfig(clock=lambda: None, past_epochs=0)


def follow(case: dict) -> None:  # type: ignore[type-arg]
    """Join as the passive client, then follow every epoch (FORMAT.md, Passive Client Scenarios)."""
    suite = cipher_suite(int(case["cipher_suite"]))
    key_package = MLSMessage.decode(bytes.fromhex(case["key_package"])).body
    welcome = MLSMessage.decode(bytes.fromhex(case["welcome"])).body
    if not isinstance(key_package, KeyPackage) or not isinstance(welcome, Welcome):
        raise MLSVectorMismatch("key_package/welcome are not a KeyPackage/Welcome MLSMessage")
    signature_priv = bytes.fromhex(case["signature_priv"])
    encryption_priv = bytes.fromhex(case["encryption_priv"])
    init_priv = bytes.fromhex(case["init_priv"])
    leaf = key_package.leaf_node
    expect("signature key", suite.signature_public_key(signature_priv), leaf.signature_key)
    expect("encryption key", suite.hpke_public_key(encryption_priv), leaf.encryption_key)
    expect("init key", suite.hpke_public_key(init_priv), key_package.init_key)

    keys = {key_package_ref(suite, key_package): JoinKeys(key_package, init_priv, encryption_priv, signature_priv)}
    psks = PskStore((bytes.fromhex(p["psk_id"]), bytes.fromhex(p["psk"])) for p in case["external_psks"])
    tree = bytes.fromhex(case["ratchet_tree"]) if case["ratchet_tree"] is not None else None
    config = VECTOR_CONFIG
    state = join_from_welcome(welcome, keys.get, config, ratchet_tree=tree, resolver=psks).state
    expect("initial_epoch_authenticator", state.secrets.epoch_authenticator, bytes.fromhex(case["initial_epoch_authenticator"]))

    for number, epoch in enumerate(case["epochs"]):
        for proposal in epoch["proposals"]:
            state = engine.receive(state, bytes.fromhex(proposal), config, psks).state
        result = engine.receive(state, bytes.fromhex(epoch["commit"]), config, psks)
        if result.kind is not engine.ReceiveKind.COMMIT or result.state.epoch != state.epoch + 1:
            raise MLSVectorMismatch(f"epochs[{number}]: the commit did not advance the epoch")
        state = result.state
        expect(f"epochs[{number}] epoch_authenticator", state.secrets.epoch_authenticator, bytes.fromhex(epoch["epoch_authenticator"]))


def check(case: dict) -> None:  # type: ignore[type-arg]
    """Join from the Welcome and check the initial epoch authenticator."""
    follow(case)


__all__ = ["VECTOR_CONFIG", "check", "follow"]
