"""Checker for ``psk_secret.json``: ``psk_secret`` from external PSKs (RFC 9420 §8.4)."""

from __future__ import annotations

from typing import Any

from mls.crypto import cipher_suite
from mls.psk import psk_secret
from mls.vectors import expect
from mls.wire.psk import PreSharedKeyID


def check(case: dict[str, Any]) -> None:
    """Chain the case's external PSKs, in order, and compare ``psk_secret``."""
    suite = cipher_suite(int(case["cipher_suite"]))
    psks = [
        (
            PreSharedKeyID.external(bytes.fromhex(entry["psk_id"]), bytes.fromhex(entry["psk_nonce"])),
            bytes.fromhex(entry["psk"]),
        )
        for entry in case["psks"]
    ]
    expect("psk_secret", psk_secret(suite, psks), bytes.fromhex(case["psk_secret"]))
