"""Checker for crypto-basics.json (RFC 9420 §5 labeled operations; FORMAT.md "Crypto Basics")."""

from __future__ import annotations

from typing import Any

from mls.crypto import cipher_suite
from mls.vectors import expect


def check(case: dict[str, Any]) -> None:
    """Verify one cipher suite's ref_hash, KDF, signature and HPKE values."""
    suite = cipher_suite(case["cipher_suite"])
    h = bytes.fromhex

    ref = case["ref_hash"]
    expect("ref_hash", suite.ref_hash(ref["label"].encode(), h(ref["value"])), h(ref["out"]))

    ewl = case["expand_with_label"]
    got = suite.expand_with_label(h(ewl["secret"]), ewl["label"].encode(), h(ewl["context"]), ewl["length"])
    expect("expand_with_label", got, h(ewl["out"]))

    ds = case["derive_secret"]
    expect("derive_secret", suite.derive_secret(h(ds["secret"]), ds["label"].encode()), h(ds["out"]))

    dts = case["derive_tree_secret"]
    got = suite.derive_tree_secret(
        h(dts["secret"]), dts["label"].encode(), dts["generation"], dts["length"]
    )
    expect("derive_tree_secret", got, h(dts["out"]))

    swl = case["sign_with_label"]
    label, content, public = swl["label"].encode(), h(swl["content"]), h(swl["pub"])
    expect("signature public key", suite.signature_public_key(h(swl["priv"])), public)
    suite.verify_with_label(public, label, content, h(swl["signature"]))
    suite.verify_with_label(public, label, content, suite.sign_with_label(h(swl["priv"]), label, content))

    ewl = case["encrypt_with_label"]
    private, label, context = h(ewl["priv"]), ewl["label"].encode(), h(ewl["context"])
    plaintext = h(ewl["plaintext"])
    expect("HPKE public key", suite.hpke_public_key(private), h(ewl["pub"]))
    got = suite.decrypt_with_label(private, label, context, h(ewl["kem_output"]), h(ewl["ciphertext"]))
    expect("decrypt_with_label", got, plaintext)
    kem_output, ciphertext = suite.encrypt_with_label(h(ewl["pub"]), label, context, plaintext)
    expect("round trip", suite.decrypt_with_label(private, label, context, kem_output, ciphertext), plaintext)
