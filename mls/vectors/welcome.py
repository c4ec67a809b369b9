"""Checker for ``welcome.json``: decrypting a Welcome and checking its GroupInfo (RFC 9420 §12.4.3.1)."""

from __future__ import annotations

from mls.crypto import cipher_suite
from mls.group.key_package import key_package_ref
from mls.key_schedule import EpochSecrets, welcome_key_nonce, welcome_secret
from mls.vectors import MLSVectorMismatch, expect
from mls.wire.key_package import KeyPackage
from mls.wire.messages import MLSMessage
from mls.wire.welcome import GroupInfo, GroupInfoTBS, GroupSecrets, Welcome


def check(case: dict) -> None:  # type: ignore[type-arg]
    """Find our entry, open GroupSecrets and GroupInfo, verify signature and confirmation tag."""
    suite = cipher_suite(int(case["cipher_suite"]))
    key_package = MLSMessage.decode(bytes.fromhex(case["key_package"])).body
    welcome = MLSMessage.decode(bytes.fromhex(case["welcome"])).body
    if not isinstance(key_package, KeyPackage) or not isinstance(welcome, Welcome):
        raise MLSVectorMismatch("key_package/welcome are not a KeyPackage/Welcome MLSMessage")
    expect("welcome cipher_suite", welcome.cipher_suite, suite.suite_id)
    ref = key_package_ref(suite, key_package)
    entry = next((e for e in welcome.secrets if e.new_member == ref), None)
    if entry is None:
        raise MLSVectorMismatch("no EncryptedGroupSecrets for the KeyPackage")
    encrypted = entry.encrypted_group_secrets
    group_secrets = GroupSecrets.decode(
        suite.decrypt_with_label(
            bytes.fromhex(case["init_priv"]),
            b"Welcome",
            welcome.encrypted_group_info,
            encrypted.kem_output,
            encrypted.ciphertext,
        )
    )
    expect("psks", group_secrets.psks, ())
    key, nonce = welcome_key_nonce(suite, welcome_secret(suite, group_secrets.joiner_secret))
    group_info = GroupInfo.decode(suite.aead_open(key, nonce, b"", welcome.encrypted_group_info))
    suite.verify_with_label(
        bytes.fromhex(case["signer_pub"]), b"GroupInfoTBS", GroupInfoTBS(group_info).encode(), group_info.signature
    )
    context = group_info.group_context
    secrets = EpochSecrets.from_joiner_secret(suite, group_secrets.joiner_secret, None, context.encode())
    expect(
        "confirmation_tag",
        secrets.confirmation_tag(context.confirmed_transcript_hash),
        group_info.confirmation_tag,
    )
