"""Checker for ``key-schedule.json``: every epoch's secrets (RFC 9420 §8, §8.5)."""

from __future__ import annotations

from typing import Any

from mls.crypto import cipher_suite
from mls.key_schedule import EpochSecrets
from mls.vectors import expect
from mls.wire.group_context import GroupContext


def check(case: dict[str, Any]) -> None:
    """Walk the epochs from ``initial_init_secret``, comparing every derived value."""
    suite_id = int(case["cipher_suite"])
    suite = cipher_suite(suite_id)
    group_id = bytes.fromhex(case["group_id"])
    init_secret = bytes.fromhex(case["initial_init_secret"])
    for epoch, vector in enumerate(case["epochs"]):
        def want(name: str) -> bytes:
            return bytes.fromhex(vector[name])

        group_context = GroupContext(
            suite_id, group_id, epoch, want("tree_hash"), want("confirmed_transcript_hash")
        ).encode()
        expect(f"epoch {epoch} group_context", group_context, want("group_context"))
        secrets = EpochSecrets.from_init_secret(
            suite, init_secret, want("commit_secret"), want("psk_secret"), group_context
        )
        for name in (
            "joiner_secret",
            "welcome_secret",
            "init_secret",
            "sender_data_secret",
            "encryption_secret",
            "exporter_secret",
            "epoch_authenticator",
            "external_secret",
            "confirmation_key",
            "membership_key",
            "resumption_psk",
        ):
            expect(f"epoch {epoch} {name}", getattr(secrets, name), want(name))
        expect(f"epoch {epoch} external_pub", secrets.external_key_pair()[1], want("external_pub"))
        exporter = vector["exporter"]  # its label is a plain string (FORMAT.md), not hex
        exported = secrets.export(
            exporter["label"].encode(), bytes.fromhex(exporter["context"]), int(exporter["length"])
        )
        expect(f"epoch {epoch} exporter.secret", exported, bytes.fromhex(exporter["secret"]))
        init_secret = secrets.init_secret
